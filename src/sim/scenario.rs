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
}

fn one() -> u32 {
    1
}

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
    scenario.check_names().map_err(|m| {
        Diagnostics::single(
            Diagnostic::error(path, 1, 1, m)
                .with_help(Some("namespace and workload names are DNS labels".into())),
        )
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
    for (ns, spec) in &scenario.namespaces {
        let names = spec.deployments.keys().chain(spec.statefulsets.keys());
        for name in std::iter::once(ns).chain(names) {
            if !crate::experiment::check::is_dns_label(name) {
                return Err(format!(
                    "{name:?} is not a valid name: use lowercase letters, digits and '-'"
                ));
            }
        }
    }
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
