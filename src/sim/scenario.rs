//! The scenario file of the simulated cluster: which namespaces and workloads exist at start and
//! how fast the simulated kubelet and endpoints controller react.
//!
//! The raw YAML types are strict (`deny_unknown_fields`, kebab-case); the resolved per-workload
//! kubelet timings are computed once with [`KubeletSpec::resolve`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// A whole simulated cluster: default timings and the namespaces with their workloads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// Default kubelet timings; each workload may override single fields.
    #[serde(default)]
    pub kubelet: KubeletSpec,
    #[serde(default)]
    pub endpoints: EndpointsSpec,
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceSpec>,
    /// Node groups; absent: the single node `sim-node-1` with room for everything.
    #[serde(default)]
    pub nodes: Option<Vec<NodeGroup>>,
    #[serde(default)]
    pub node_lifecycle: NodeLifecycleSpec,
}

/// One node (`name:`) or a numbered group of nodes (`prefix:` + `count:`, named P-1..P-K).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeGroup {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub count: Option<u32>,
    /// Sets `topology.kubernetes.io/zone` (and `topology.kubernetes.io/region: sim`).
    pub zone: Option<String>,
    /// Allocatable CPU (default 4).
    pub cpu: Option<Quantity>,
    /// Allocatable memory (default 16Gi).
    pub memory: Option<Quantity>,
    /// Most pods the node takes (default 110).
    pub pods: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<TaintSpec>,
    /// Adds the label `node-role.kubernetes.io/control-plane: ""`.
    #[serde(default)]
    pub control_plane: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaintSpec {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// One node as the cluster creates it, every default filled in.
#[derive(Debug, Clone)]
pub struct NodeDef {
    pub name: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<TaintSpec>,
    /// Allocatable CPU in millicores.
    pub cpu_milli: i64,
    /// Allocatable memory in bytes.
    pub memory_bytes: i64,
    pub pods: i64,
}

/// The node lifecycle controller and the DefaultTolerationSeconds admission, with the
/// simulation's short defaults (Kubernetes: 40s grace, 300s toleration).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeLifecycleSpec {
    /// Kubelet silent this long → node Ready=Unknown and tainted unreachable (default 2s).
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    /// tolerationSeconds of the not-ready/unreachable tolerations every new pod gets (default 5s).
    #[serde(default, with = "humantime_serde")]
    pub default_toleration: Option<Duration>,
    /// Power on → node Ready (default 500ms).
    #[serde(default, with = "humantime_serde")]
    pub boot_delay: Option<Duration>,
}

impl NodeLifecycleSpec {
    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(Duration::from_secs(2))
    }
    pub fn boot_delay(&self) -> Duration {
        self.boot_delay.unwrap_or(Duration::from_millis(500))
    }
    /// Whole seconds, rounded up, as tolerationSeconds is.
    pub fn default_toleration_seconds(&self) -> i64 {
        let d = self.default_toleration.unwrap_or(Duration::from_secs(5));
        d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0)
    }
}

/// A Kubernetes quantity (`4`, `3500m`, `16Gi`, `0.5`), as milli-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(pub i128);

impl Quantity {
    /// Parses `text` into milli-units: a decimal number with an optional suffix (m, k, M, G,
    /// T, P, E, Ki, Mi, Gi, Ti, Pi, Ei).
    pub fn parse(text: &str) -> Result<Quantity, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        let mult: i128 = match suffix {
            "" => 1000,
            "m" => 1,
            "k" => 1000 * 1000,
            "M" => 1000 * 1_000_000,
            "G" => 1000 * 1_000_000_000,
            "T" => 1000 * 1_000_000_000_000,
            "P" => 1000 * 1_000_000_000_000_000,
            "E" => 1000 * 1_000_000_000_000_000_000,
            "Ki" => 1000 << 10,
            "Mi" => 1000 << 20,
            "Gi" => 1000 << 30,
            "Ti" => 1000 << 40,
            "Pi" => 1000 << 50,
            "Ei" => 1000 << 60,
            _ => {
                return Err(format!(
                    "invalid quantity {t:?}: expected a number with an optional suffix (m, k, M, G, T, Ki, Mi, Gi, Ti), like 500m, 4 or 16Gi"
                ))
            }
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if num.is_empty() || int.len() > 18 || frac.len() > 9 || frac.contains('.') {
            return Err(format!(
                "invalid quantity {t:?}: expected a number like 500m, 4 or 16Gi"
            ));
        }
        let parse = |s: &str| -> Result<i128, String> {
            if s.is_empty() {
                Ok(0)
            } else {
                s.parse::<i128>()
                    .map_err(|_| format!("invalid quantity {t:?}"))
            }
        };
        let scale = 10i128.pow(frac.len() as u32);
        let value = parse(int)? * scale + parse(frac)?;
        // Round up, as Kubernetes rounds a request to the next milli-unit.
        Ok(Quantity((value * mult + scale - 1) / scale))
    }

    pub fn milli(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// Whole units, rounded up (bytes of a memory quantity).
    pub fn units(self) -> i64 {
        i64::try_from((self.0 + 999) / 1000).unwrap_or(i64::MAX)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "invalid quantity {other}: expected a number or a string like 500m or 16Gi"
                )))
            }
        };
        Quantity::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Resource requests put on every container of a workload's pods.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RequestsSpec {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
}

impl RequestsSpec {
    /// `resources.requests` of a container, canonical text (`500m`, `256Mi`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(c) = self.cpu {
            m.insert("cpu".into(), format_cpu(c.milli()).into());
        }
        if let Some(mem) = self.memory {
            m.insert("memory".into(), format_bytes(mem.units()).into());
        }
        serde_json::Value::Object(m)
    }
}

/// Millicores as Kubernetes prints them: `4`, `3500m`.
pub fn format_cpu(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Bytes as Kubernetes prints them: `16Gi`, `256Mi`, `1000`.
pub fn format_bytes(bytes: i64) -> String {
    for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes != 0 && bytes % (1i64 << shift) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A toleration in the pod spec's own terms (`toleration-seconds` for `tolerationSeconds`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TolerationSpec {
    #[serde(default)]
    pub key: Option<String>,
    /// `Equal` (default) or `Exists`.
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub effect: Option<TaintEffect>,
    #[serde(default)]
    pub toleration_seconds: Option<i64>,
}

impl TolerationSpec {
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(k) = &self.key {
            m.insert("key".into(), k.clone().into());
        }
        if let Some(o) = &self.operator {
            m.insert("operator".into(), o.clone().into());
        }
        if let Some(v) = &self.value {
            m.insert("value".into(), v.clone().into());
        }
        if let Some(e) = self.effect {
            m.insert("effect".into(), e.as_str().into());
        }
        if let Some(s) = self.toleration_seconds {
            m.insert("tolerationSeconds".into(), s.into());
        }
        serde_json::Value::Object(m)
    }
}

/// A PodDisruptionBudget of a namespace: exactly one of min-available and max-unavailable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PdbSpec {
    pub selector_labels: BTreeMap<String, String>,
    pub min_available: Option<IntOrPercent>,
    pub max_unavailable: Option<IntOrPercent>,
}

/// An integer or a percentage (`"50%"`), as PodDisruptionBudget fields take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(i64),
    Percent(i64),
}

impl IntOrPercent {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            IntOrPercent::Int(i) => (*i).into(),
            IntOrPercent::Percent(p) => format!("{p}%").into(),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "invalid value {v}: expected a non-negative integer or a percentage like \"50%\""
            ))
        };
        match &v {
            serde_json::Value::Number(n) => n
                .as_i64()
                .filter(|i| *i >= 0)
                .map(IntOrPercent::Int)
                .ok_or_else(bad),
            serde_json::Value::String(s) => match s.strip_suffix('%') {
                Some(p) => p
                    .parse::<i64>()
                    .ok()
                    .filter(|p| (0..=100).contains(p))
                    .map(IntOrPercent::Percent)
                    .ok_or_else(bad),
                None => s
                    .parse::<i64>()
                    .ok()
                    .filter(|i| *i >= 0)
                    .map(IntOrPercent::Int)
                    .ok_or_else(bad),
            },
            _ => Err(bad()),
        }
    }
}

/// Kubelet timings. Every field is optional so that a workload can override only one of them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubeletSpec {
    /// From pod creation to `spec.nodeName` and the PodScheduled condition (default 20ms).
    pub schedule_delay: Option<Delay>,
    /// From scheduled to phase Running (default 200ms).
    pub start_delay: Option<Delay>,
    /// From Running to the Ready condition (default 300ms).
    pub ready_delay: Option<Delay>,
    /// `terminationGracePeriodSeconds` of the pods the controllers create, rounded up to whole
    /// seconds (default 1s: simulated containers stop at once, so a long grace only slows drills).
    #[serde(default, with = "humantime_serde")]
    pub termination_grace: Option<Duration>,
}

/// Kubelet timings with every default filled in.
#[derive(Debug, Clone)]
pub struct KubeletTimings {
    pub schedule_delay: Delay,
    pub start_delay: Delay,
    pub ready_delay: Delay,
    pub termination_grace_seconds: i64,
}

impl KubeletSpec {
    /// Fills the fields this spec leaves out from `base`, then the built-in defaults.
    pub fn resolve(&self, base: &KubeletSpec) -> KubeletTimings {
        let pick = |own: &Option<Delay>, inherited: &Option<Delay>, default_ms: u64| {
            own.clone()
                .or_else(|| inherited.clone())
                .unwrap_or(Delay::fixed(Duration::from_millis(default_ms)))
        };
        let grace = self
            .termination_grace
            .or(base.termination_grace)
            .unwrap_or(Duration::from_secs(1));
        let mut grace_seconds = grace.as_secs() as i64;
        if grace.subsec_nanos() > 0 {
            grace_seconds += 1;
        }
        KubeletTimings {
            schedule_delay: pick(&self.schedule_delay, &base.schedule_delay, 20),
            start_delay: pick(&self.start_delay, &base.start_delay, 200),
            ready_delay: pick(&self.ready_delay, &base.ready_delay, 300),
            termination_grace_seconds: grace_seconds,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EndpointsSpec {
    /// How long a readiness change takes to show in Endpoints and in the traffic routing.
    #[serde(with = "humantime_serde", default = "default_propagation")]
    pub propagation_delay: Duration,
}

fn default_propagation() -> Duration {
    Duration::from_millis(100)
}

impl Default for EndpointsSpec {
    fn default() -> Self {
        EndpointsSpec {
            propagation_delay: default_propagation(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NamespaceSpec {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentSpec>,
    #[serde(default)]
    pub statefulsets: BTreeMap<String, StatefulSetSpec>,
    #[serde(default)]
    pub pdbs: BTreeMap<String, PdbSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeploymentSpec {
    #[serde(default = "one", deserialize_with = "bounded_replicas")]
    pub replicas: u32,
    /// Pod labels and selector; `app: <name>` when empty.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Give the deployment a Service, Endpoints and a loopback HTTP endpoint routed over them.
    #[serde(default)]
    pub http: bool,
    #[serde(default)]
    pub kubelet: KubeletSpec,
    /// `resources.requests` of every container of the pods.
    #[serde(default)]
    pub requests: Option<RequestsSpec>,
    #[serde(default)]
    pub tolerations: Vec<TolerationSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StatefulSetSpec {
    #[serde(default = "one", deserialize_with = "bounded_replicas")]
    pub replicas: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub kubelet: KubeletSpec,
    #[serde(default)]
    pub requests: Option<RequestsSpec>,
    #[serde(default)]
    pub tolerations: Vec<TolerationSpec>,
}

fn one() -> u32 {
    1
}

/// The name of the only node of a scenario without `nodes:`.
pub const DEFAULT_NODE: &str = "sim-node-1";

/// The most nodes a simulated cluster may have.
pub const MAX_NODES: u32 = 5000;

/// The most replicas one simulated workload may have: every pod is a live object with its
/// own timers in this process, and a simulation is for drills, not for load.
pub const MAX_REPLICAS: u32 = 1000;

fn bounded_replicas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u64::deserialize(d)?;
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_REPLICAS)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "replicas must be between 0 and {MAX_REPLICAS} in the simulated cluster, found {n}"
            ))
        })
}

/// A fixed duration (`200ms`) or a range (`200ms..400ms`) sampled uniformly per use from the
/// cluster's seeded RNG.
#[derive(Clone, PartialEq, Eq)]
pub struct Delay {
    pub min: Duration,
    pub max: Duration,
}

impl Delay {
    pub fn fixed(d: Duration) -> Self {
        Delay { min: d, max: d }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        let span = (self.max - self.min).as_nanos() as u64;
        self.min + Duration::from_nanos(rng.random_range(0..=span))
    }

    fn parse(text: &str) -> Result<Delay, String> {
        let one = |s: &str| {
            humantime::parse_duration(s.trim())
                .map_err(|e| format!("invalid duration {:?}: {e}", s.trim()))
        };
        match text.split_once("..") {
            None => Ok(Delay::fixed(one(text)?)),
            Some((lo, hi)) => {
                let (min, max) = (one(lo)?, one(hi)?);
                if max < min {
                    return Err(format!("range {text:?} ends before it starts"));
                }
                Ok(Delay { min, max })
            }
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{:?}", self.min)
        } else {
            write!(f, "{:?}..{:?}", self.min, self.max)
        }
    }
}

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Delay::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The scenario used when none is given: one namespace with an HTTP deployment and a database.
pub const BUILTIN_SCENARIO: &str = r#"
kubelet: { schedule-delay: 20ms, start-delay: 200ms, ready-delay: 300ms }
endpoints: { propagation-delay: 100ms }
namespaces:
  shop:
    labels: { firedrill.io/allow: "true" }
    deployments:
      checkout: { replicas: 3, labels: { app: checkout }, http: true }
      cart: { replicas: 2, labels: { app: cart }, http: true }
    statefulsets:
      db: { replicas: 2, labels: { app: db } }
"#;

/// Reads and validates a scenario file with the project's YAML loader: every error names
/// file:line:column and the YAML path.
pub fn load_scenario(path: &Path) -> Result<Scenario, crate::experiment::Diagnostics> {
    use crate::experiment::{parse_yaml, Diagnostic, Diagnostics};
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostics::single(Diagnostic::error(
            path,
            1,
            1,
            format!("cannot read scenario: {e}"),
        ))
    })?;
    let scenario: Scenario = parse_yaml(path, &bytes)?;
    scenario.check().map_err(|m| {
        Diagnostics::single(Diagnostic::error(path, 1, 1, m).with_help(Some(
            "namespace and workload names are DNS labels; node names DNS subdomains".into(),
        )))
    })?;
    Ok(scenario)
}

impl Scenario {
    /// Namespace and name of every deployment with a loopback HTTP endpoint.
    pub fn http_deployments(&self) -> Vec<(String, String)> {
        self.namespaces
            .iter()
            .flat_map(|(ns, spec)| {
                spec.deployments
                    .iter()
                    .filter(|(_, d)| d.http)
                    .map(move |(name, _)| (ns.clone(), name.clone()))
            })
            .collect()
    }

    /// Everything serde cannot check: names, node groups, disruption budgets.
    fn check(&self) -> Result<(), String> {
        self.check_names()?;
        self.node_defs()?;
        for (ns, spec) in &self.namespaces {
            for (name, pdb) in &spec.pdbs {
                if !crate::experiment::check::is_dns_subdomain(name) {
                    return Err(format!("pdb {ns}/{name}: not a valid name"));
                }
                if pdb.min_available.is_some() == pdb.max_unavailable.is_some() {
                    return Err(format!(
                        "pdb {ns}/{name}: give exactly one of min-available and max-unavailable"
                    ));
                }
                if pdb.selector_labels.is_empty() {
                    return Err(format!(
                        "pdb {ns}/{name}: selector-labels must not be empty"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The nodes the cluster starts with: the scenario's groups expanded, or the single
    /// default node `sim-node-1` (127.0.0.1) with room for every pod of any scenario.
    pub fn node_defs(&self) -> Result<Vec<NodeDef>, String> {
        let Some(groups) = &self.nodes else {
            let mut labels = BTreeMap::new();
            labels.insert(
                "kubernetes.io/hostname".to_string(),
                DEFAULT_NODE.to_string(),
            );
            return Ok(vec![NodeDef {
                name: DEFAULT_NODE.into(),
                ip: "127.0.0.1".into(),
                labels,
                taints: Vec::new(),
                cpu_milli: 1_000_000_000,
                memory_bytes: 1 << 50,
                pods: 1_000_000,
            }]);
        };
        if groups.is_empty() {
            return Err(
                "nodes: list at least one node, or leave `nodes` out for the single default node"
                    .into(),
            );
        }
        let mut out: Vec<NodeDef> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (gi, g) in groups.iter().enumerate() {
            let names: Vec<String> = match (&g.name, &g.prefix, g.count) {
                (Some(n), None, None) => vec![n.clone()],
                (None, Some(p), Some(k)) if (1..=MAX_NODES).contains(&k) => {
                    (1..=k).map(|i| format!("{p}-{i}")).collect()
                }
                (None, Some(_), Some(k)) => {
                    return Err(format!(
                        "nodes[{gi}]: count must be between 1 and {MAX_NODES}, found {k}"
                    ))
                }
                (None, Some(_), None) => {
                    return Err(format!("nodes[{gi}]: a prefix needs a count"))
                }
                _ => {
                    return Err(format!(
                        "nodes[{gi}]: give either `name` or `prefix` with `count`"
                    ))
                }
            };
            let cpu = g.cpu.map_or(4000, Quantity::milli);
            let memory = g.memory.map_or(16 << 30, Quantity::units);
            if cpu <= 0 || memory <= 0 {
                return Err(format!("nodes[{gi}]: cpu and memory must be positive"));
            }
            for name in names {
                if !crate::experiment::check::is_dns_subdomain(&name) {
                    return Err(format!("nodes[{gi}]: {name:?} is not a valid node name"));
                }
                if !seen.insert(name.clone()) {
                    return Err(format!("nodes[{gi}]: node {name:?} is declared twice"));
                }
                let i = out.len();
                if i >= MAX_NODES as usize {
                    return Err(format!(
                        "nodes: at most {MAX_NODES} nodes in the simulated cluster"
                    ));
                }
                let mut labels = BTreeMap::new();
                labels.insert("kubernetes.io/hostname".to_string(), name.clone());
                labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
                labels.insert("kubernetes.io/arch".to_string(), "amd64".to_string());
                if g.control_plane {
                    labels.insert(
                        "node-role.kubernetes.io/control-plane".to_string(),
                        String::new(),
                    );
                }
                labels.extend(g.labels.clone());
                if let Some(z) = &g.zone {
                    labels.insert("topology.kubernetes.io/zone".to_string(), z.clone());
                    labels.insert(
                        "topology.kubernetes.io/region".to_string(),
                        "sim".to_string(),
                    );
                }
                out.push(NodeDef {
                    // Loopback only: 127.0.2.1 upwards.
                    ip: format!("127.0.{}.{}", 2 + i / 250, 1 + i % 250),
                    name,
                    labels,
                    taints: g.taints.clone(),
                    cpu_milli: cpu,
                    memory_bytes: memory,
                    pods: i64::from(g.pods.unwrap_or(110)),
                });
            }
        }
        Ok(out)
    }

    fn check_names(&self) -> Result<(), String> {
        for (ns, spec) in &self.namespaces {
            let names = spec.deployments.keys().chain(spec.statefulsets.keys());
            for name in std::iter::once(ns).chain(names) {
                if !crate::experiment::check::is_dns_label(name) {
                    return Err(format!(
                        "{name:?} is not a valid name: use lowercase letters, digits and '-'"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Parses scenario YAML text; the error is a message without the file name.
pub fn parse_scenario(text: &str) -> Result<Scenario, String> {
    let value = yaml_to_json(text)?;
    let scenario: Scenario = serde_json::from_value(value).map_err(|e| e.to_string())?;
    scenario.check()?;
    Ok(scenario)
}

/// YAML → JSON value. Kept in one small function so that the project's spanned YAML loader can
/// replace it without touching the scenario types.
fn yaml_to_json(text: &str) -> Result<serde_json::Value, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    fn convert(y: &Yaml) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        Ok(match y {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => r
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("invalid number {r}"))?,
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Array(items) => {
                Value::Array(items.iter().map(convert).collect::<Result<_, _>>()?)
            }
            Yaml::Hash(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Real(r) => r.clone(),
                        other => return Err(format!("unsupported mapping key {other:?}")),
                    };
                    out.insert(key, convert(v)?);
                }
                Value::Object(out)
            }
            Yaml::Alias(_) => return Err("YAML aliases are not supported".into()),
            Yaml::BadValue => return Err("invalid YAML value".into()),
        })
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    match docs.as_slice() {
        [] => Ok(serde_json::Value::Object(Default::default())),
        [doc] => convert(doc),
        _ => Err("expected one YAML document, found several".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_scenario_parses() {
        let s = parse_scenario(BUILTIN_SCENARIO).unwrap();
        let shop = &s.namespaces["shop"];
        assert_eq!(shop.deployments["checkout"].replicas, 3);
        assert!(shop.deployments["checkout"].http);
        assert_eq!(shop.statefulsets["db"].replicas, 2);
    }

    #[test]
    fn ranges_and_overrides() {
        let s = parse_scenario(
            "kubelet: { ready-delay: 100ms..300ms }\nnamespaces:\n  a:\n    deployments:\n      w: { kubelet: { start-delay: 1s } }\n",
        )
        .unwrap();
        let w = &s.namespaces["a"].deployments["w"];
        let t = w.kubelet.resolve(&s.kubelet);
        assert_eq!(t.start_delay, Delay::fixed(Duration::from_secs(1)));
        assert_eq!(t.ready_delay.min, Duration::from_millis(100));
        assert_eq!(t.ready_delay.max, Duration::from_millis(300));
        assert_eq!(t.schedule_delay, Delay::fixed(Duration::from_millis(20)));
        assert_eq!(w.replicas, 1);
    }

    #[test]
    fn node_groups_expand_with_zones_and_defaults() {
        let s = parse_scenario(
            r#"
nodes:
  - { name: cp, control-plane: true, taints: [ { key: k, effect: NoSchedule } ] }
  - { prefix: a, count: 2, zone: zone-a, cpu: "3500m", memory: 8Gi, pods: 30, labels: { tier: x } }
node-lifecycle: { grace: 1s, default-toleration: 1500ms }
namespaces:
  shop:
    deployments:
      web: { requests: { cpu: 500m, memory: 256Mi }, tolerations: [ { key: k, operator: Exists } ] }
    pdbs:
      web: { selector-labels: { app: web }, max-unavailable: "25%" }
"#,
        )
        .unwrap();
        let nodes = s.node_defs().unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["cp", "a-1", "a-2"]);
        assert_eq!(nodes[0].labels["node-role.kubernetes.io/control-plane"], "");
        assert_eq!(nodes[0].cpu_milli, 4000);
        assert_eq!(nodes[0].pods, 110);
        assert_eq!(nodes[1].cpu_milli, 3500);
        assert_eq!(nodes[1].memory_bytes, 8 << 30);
        assert_eq!(nodes[2].labels["topology.kubernetes.io/zone"], "zone-a");
        assert_eq!(nodes[2].labels["topology.kubernetes.io/region"], "sim");
        assert_eq!(nodes[2].labels["tier"], "x");
        assert!(nodes.iter().all(|n| n.ip.starts_with("127.0.")));
        assert_eq!(s.node_lifecycle.default_toleration_seconds(), 2);
        assert_eq!(s.node_lifecycle.boot_delay(), Duration::from_millis(500));
        let web = &s.namespaces["shop"].deployments["web"];
        let r = web.requests.as_ref().unwrap().to_json();
        assert_eq!(r, serde_json::json!({"cpu": "500m", "memory": "256Mi"}));
        assert_eq!(
            s.namespaces["shop"].pdbs["web"].max_unavailable,
            Some(IntOrPercent::Percent(25))
        );
        // Without `nodes`: the one default node, as before.
        let d = parse_scenario("").unwrap().node_defs().unwrap();
        assert_eq!(
            (d.len(), d[0].name.as_str(), d[0].ip.as_str()),
            (1, DEFAULT_NODE, "127.0.0.1")
        );
    }

    #[test]
    fn quantities_and_node_groups_fail_clearly() {
        assert_eq!(Quantity::parse("2").unwrap().milli(), 2000);
        assert_eq!(Quantity::parse("0.5").unwrap().milli(), 500);
        assert_eq!(Quantity::parse("1Ki").unwrap().units(), 1024);
        for bad in ["lots", "4 cores", "1.2.3", "", "5Q"] {
            let e = Quantity::parse(bad).unwrap_err();
            assert!(e.contains("invalid quantity"), "{bad}: {e}");
        }
        let e = parse_scenario("nodes: [ { name: a, cpu: many } ]").unwrap_err();
        assert!(e.contains("invalid quantity \"many\""), "{e}");
        let e = parse_scenario("nodes: [ { name: a, prefix: b, count: 2 } ]").unwrap_err();
        assert!(e.contains("either `name` or `prefix`"), "{e}");
        let e = parse_scenario("nodes: [ { prefix: b } ]").unwrap_err();
        assert!(e.contains("needs a count"), "{e}");
        let e = parse_scenario("nodes: [ { name: a }, { name: a } ]").unwrap_err();
        assert!(e.contains("declared twice"), "{e}");
        let e = parse_scenario("nodes: [ { name: a, zoen: z } ]").unwrap_err();
        assert!(e.contains("unknown field `zoen`"), "{e}");
        let e = parse_scenario("nodes: []").unwrap_err();
        assert!(e.contains("at least one node"), "{e}");
        let e = parse_scenario(
            "namespaces: { a: { pdbs: { b: { selector-labels: { app: x }, min-available: 1, max-unavailable: 1 } } } }",
        )
        .unwrap_err();
        assert!(e.contains("exactly one of"), "{e}");
        let e = parse_scenario(
            "namespaces: { a: { pdbs: { b: { selector-labels: { app: x }, min-available: \"150%\" } } } }",
        )
        .unwrap_err();
        assert!(e.contains("percentage"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_errors() {
        let e = parse_scenario("kubelet: { shedule-delay: 1s }").unwrap_err();
        assert!(e.contains("unknown field `shedule-delay`"), "{e}");
        let e = parse_scenario("kubelet: { start-delay: soon }").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
        let e = parse_scenario("kubelet: { start-delay: 2s..1s }").unwrap_err();
        assert!(e.contains("ends before it starts"), "{e}");
        let e = parse_scenario("namespaces: { Shop: {} }").unwrap_err();
        assert!(e.contains("not a valid name"), "{e}");
    }
}
