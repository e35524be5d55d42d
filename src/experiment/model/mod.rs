//! The validated experiment: what the loader produces from a YAML file once every key, type,
//! reference and `${var}` has been checked. Nothing here touches a target; the executor turns
//! an [`Experiment`] plus an environment into a plan before anything is injected.
//!
//! Durations are `std::time::Duration`; names keep file order so reports list things the way
//! the author wrote them.

pub mod db_failover;
pub mod network;
pub mod node;
pub mod postgres;
pub mod restore;
pub mod schedule;
pub mod step;
pub mod window;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// A drill, validated and interpolated.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub name: String,
    pub description: Option<String>,
    /// Environments this drill may run in, in promotion order (`local` is always allowed).
    pub environments: Vec<String>,
    /// Optional 5-field cron expression (evaluated by the scheduler, not by `run`).
    pub schedule: Option<String>,
    /// The simulated cluster to start in-process when the environment has no kube context.
    pub simulation: Option<Simulation>,
    /// Proxies firedrill runs for the drill (latency faults act on them).
    pub proxies: Vec<ProxyDecl>,
    pub targets: Vec<Target>,
    pub probes: Vec<ProbeSpec>,
    /// Probe names that must all pass before each injection and after the final revert.
    pub steady_state: Vec<String>,
    pub faults: Vec<FaultSpec>,
    /// The `name:` of each fault, in `faults` order; `None` where the file gives none (the
    /// fault is then called by its kind and target).
    pub fault_names: Vec<Option<String>>,
    /// The `wait:` of each fault, in `faults` order: `Some` makes the fault a step that starts
    /// when its condition holds; `None` injects it right after the fault before it.
    pub fault_waits: Vec<Option<step::StepWait>>,
    pub recovery: Recovery,
    pub abort_when: Vec<AbortCondition>,
    /// Number of trials (inject → recover) in one run; at least 1.
    pub repeat: u32,
    /// Pause between a trial's final steady state and the next injection.
    pub cooldown: Duration,
    /// A hard ceiling on the whole run: when it passes, every fault is reverted whatever the
    /// drill is waiting for, and the run ends aborted.
    pub max_duration: Option<Duration>,
    /// Where it came from; the hash identifies "the same drill" across runs (promotion gates).
    pub source: Source,
    /// Values that came from `${env:...}` or secret files: redacted from every output.
    #[serde(skip)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub content_hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// Scenario file for the embedded simulated cluster, resolved relative to the experiment.
    pub scenario: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Kubernetes(KubeTarget),
    Process(ProcessTarget),
    /// Kubernetes nodes (the node faults').
    Nodes(node::NodeTarget),
}

#[derive(Debug, Clone, Serialize)]
pub struct KubeTarget {
    pub namespace: String,
    /// Label selector in Kubernetes syntax (`app=checkout,tier!=canary`).
    pub selector: String,
    /// Restrict to the pods of one workload.
    pub workload: Option<WorkloadRef>,
    pub amount: Amount,
    /// Blast-radius cap on the resolved set; `None` means the default
    /// (1 pod or 34% of ready replicas, whichever is smaller).
    pub max_targets: Option<u32>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Amount {
    Count(u32),
    /// 1..=100
    Percent(u8),
}

impl Amount {
    /// How many of `matching` pods this amount hits. A share rounds *down*, never toward more
    /// harm (as Chaos Mesh's fixed-percent and Litmus's PODS_AFFECTED_PERC do), and is at
    /// least 1: the loader accepts 1..=100, so a percentage always asks for something.
    pub fn of(self, matching: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => (matching * usize::from(p) / 100).max(1),
        }
    }

    /// For people: how [`Amount::of`] came to its number.
    pub fn derivation(self, matching: usize) -> String {
        let n = self.of(matching);
        match self {
            Amount::Count(c) => format!("count {c}"),
            Amount::Percent(p) => {
                let exact = matching * usize::from(p);
                let how = if exact.is_multiple_of(100) {
                    String::new()
                } else if exact < 100 {
                    ", raised to the minimum of 1".to_string()
                } else {
                    ", rounded down".to_string()
                };
                format!(
                    "{p}% of {matching} = {}.{:02}{how}: {n}",
                    exact / 100,
                    exact % 100
                )
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    ReplicaSet,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessTarget {
    /// A file holding the pid (first line).
    PidFile(PathBuf),
    /// Processes whose full command line (argv joined by single spaces) equals `line`
    /// exactly; an injection that would signal more than `max_targets` of them (the
    /// blast-radius cap, like pod-kill's: 1 unless the target raises it) is refused.
    CommandLine { line: String, max_targets: u32 },
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSpec {
    pub name: String,
    pub kind: ProbeKind,
    /// Sampling interval in steady state.
    pub every: Duration,
    /// Sampling interval right after injection and while failing (default `every / 10`, >= 1ms).
    pub every_during: Duration,
    /// The faults (indices into `faults`) whose recovery this probe measures: named by its
    /// `after:`, or derived where the file makes it clear (a kubernetes probe of the workload a
    /// pod-kill targets; an http or tcp probe of the proxy a network fault acts on). `None`:
    /// every fault of the trial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watches: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Command(CommandProbe),
    Kubernetes(KubeProbe),
    /// Node readiness: `kubernetes: { nodes: SELECTOR, ready: all }`.
    KubeNodes(KubeNodesProbe),
    /// A read check, or a writer whose acknowledged writes are later checked for loss (RPO).
    Postgres(postgres::PostgresProbeSpec),
    /// A PromQL instant query whose value must meet a threshold (business signals).
    Prometheus(PrometheusProbe),
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpProbe {
    pub url: String,
    /// Upper-case HTTP method, default GET.
    pub method: String,
    pub headers: Vec<(String, String)>,
    /// Accepted statuses; default: any 2xx.
    pub expect_status: Vec<u16>,
    pub body_contains: Option<String>,
    /// Request timeout, default 1s.
    pub timeout: Duration,
    /// A sample slower than this fails (degradation counts as impact).
    pub max_latency: Option<Duration>,
    /// PEM certificates of a private CA to trust for an https `url`, besides the public roots
    /// (verification stays on).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrometheusProbe {
    /// The server's base URL (`http://prometheus:9090`, or with a path prefix);
    /// `/api/v1/query` is appended.
    pub url: String,
    /// A PromQL expression, evaluated as an instant query at the time of each check.
    pub query: String,
    /// The condition every considered value must meet.
    pub expect: Threshold,
    pub series: SeriesRule,
    /// `GET` (default) or `POST` (form body: long queries, proxies that log URLs).
    pub method: String,
    /// Extra request headers (e.g. `X-Scope-OrgID` for a multi-tenant Mimir or Cortex).
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub auth: Option<PrometheusAuth>,
    /// Bound on each query, also sent as the server-side evaluation timeout (default 2s).
    pub timeout: Duration,
}

/// Credentials for a Prometheus behind an authenticating proxy; never serialized.
#[derive(Clone, PartialEq, Eq)]
pub enum PrometheusAuth {
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for PrometheusAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrometheusAuth::Bearer(_) => f.write_str("Bearer(***)"),
            PrometheusAuth::Basic { username, .. } => write!(f, "Basic({username}:***)"),
        }
    }
}

/// Which series of an instant vector must meet the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeriesRule {
    /// Exactly one series (or a scalar): a business signal is one number, so the query must
    /// aggregate (`sum(...)`); several series fail rather than pass on an arbitrary one.
    One,
    /// At least one series, and every one of them meets the threshold.
    All,
}

/// `>= 50`, `< 0.01`: a comparison with a finite number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    pub op: CmpOp,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl CmpOp {
    pub const ALL: [CmpOp; 6] = [
        CmpOp::Ge,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Lt,
        CmpOp::Eq,
        CmpOp::Ne,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

impl Threshold {
    /// Whether `v` meets the threshold. NaN never does, whatever the operator.
    pub fn holds(&self, v: f64) -> bool {
        if v.is_nan() {
            return false;
        }
        match self.op {
            CmpOp::Gt => v > self.value,
            CmpOp::Ge => v >= self.value,
            CmpOp::Lt => v < self.value,
            CmpOp::Le => v <= self.value,
            CmpOp::Eq => v == self.value,
            CmpOp::Ne => v != self.value,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.value)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpProbe {
    /// host:port
    pub address: String,
    /// default 1s
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommandProbe {
    /// Program and arguments; no shell.
    pub argv: Vec<String>,
    /// default 5s
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct KubeProbe {
    pub workload: WorkloadRef,
    pub ready: Readiness,
}

/// The nodes a label selector matches (empty: every node) are Ready: all of them, or at least
/// a number.
#[derive(Debug, Clone, Serialize)]
pub struct KubeNodesProbe {
    pub selector: String,
    pub ready: Readiness,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    /// ready replicas == desired replicas
    All,
    AtLeast(u32),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultSpec {
    PodKill {
        target: String,
        grace_period: Duration,
    },
    ProcessKill {
        target: String,
        /// Signal name such as `SIGKILL` (default) or `SIGTERM`.
        signal: String,
    },
    Command {
        run: Vec<String>,
        revert: Option<Vec<String>>,
        /// default 30s
        timeout: Duration,
    },
    /// Fail a database cluster over (Patroni switchover/failover, kill the primary, or a command).
    DbFailover(db_failover::DbFailoverSpec),
    /// A network fault for a duration: latency, bandwidth, loss, down or partition (built-in
    /// proxy, Toxiproxy or Chaos Mesh).
    Network(network::NetworkSpec),
    /// A machine (or a zone of them) goes down: `node-drain`, `node-down`, `zone-outage`.
    Node(node::NodeFaultSpec),
    /// Restore a backup into a scratch instance, validate and measure it; the revert tears
    /// the instance down.
    Restore(Box<restore::RestoreSpec>),
}

/// The fault kinds: each is one key of a `faults:` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    PodKill,
    ProcessKill,
    Command,
    DbFailover,
    Network(network::NetworkKind),
    Node(node::NodeFaultKind),
    Restore,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::PodKill,
        FaultKind::ProcessKill,
        FaultKind::Command,
        FaultKind::DbFailover,
        FaultKind::Network(network::NetworkKind::Latency),
        FaultKind::Network(network::NetworkKind::Bandwidth),
        FaultKind::Network(network::NetworkKind::Loss),
        FaultKind::Network(network::NetworkKind::Down),
        FaultKind::Network(network::NetworkKind::Partition),
        FaultKind::Node(node::NodeFaultKind::NodeDrain),
        FaultKind::Node(node::NodeFaultKind::NodeDown),
        FaultKind::Node(node::NodeFaultKind::ZoneOutage),
        FaultKind::Restore,
    ];

    /// The experiment file's key.
    pub fn key(self) -> &'static str {
        match self {
            FaultKind::PodKill => "pod-kill",
            FaultKind::ProcessKill => "process-kill",
            FaultKind::Command => "command",
            FaultKind::DbFailover => "db-failover",
            FaultKind::Network(n) => n.key(),
            FaultKind::Node(n) => n.key(),
            FaultKind::Restore => "restore",
        }
    }

    /// The kind a key names, if any.
    pub fn parse(key: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.key() == key)
    }
}

impl FaultSpec {
    /// The fault's key in the file (`pod-kill`, `latency`, ...).
    pub fn kind(&self) -> &'static str {
        self.fault_kind().key()
    }

    pub fn fault_kind(&self) -> FaultKind {
        match self {
            FaultSpec::PodKill { .. } => FaultKind::PodKill,
            FaultSpec::ProcessKill { .. } => FaultKind::ProcessKill,
            FaultSpec::Command { .. } => FaultKind::Command,
            FaultSpec::DbFailover(_) => FaultKind::DbFailover,
            FaultSpec::Network(n) => FaultKind::Network(n.effect.network_kind()),
            FaultSpec::Node(n) => FaultKind::Node(n.kind),
            FaultSpec::Restore(_) => FaultKind::Restore,
        }
    }

    /// How long a lasting fault is held before firedrill removes it (its TTR counts from the
    /// removal); `None` for a fault that acts once.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            FaultSpec::Network(spec) => Some(spec.duration),
            _ => None,
        }
    }

    /// The Kubernetes target whose pods this fault deletes: a pod-kill's, or a kill-primary's
    /// on Kubernetes.
    pub fn pod_target(&self) -> Option<&str> {
        match self {
            FaultSpec::PodKill { target, .. } => Some(target),
            FaultSpec::DbFailover(spec) => spec.pod_target(),
            _ => None,
        }
    }
}

/// A TCP proxy firedrill runs for the drill's duration (the `proxy:` section).
#[derive(Debug, Clone, Serialize)]
pub struct ProxyDecl {
    pub name: String,
    pub listen: std::net::SocketAddr,
    /// host:port
    pub upstream: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// TTR at or below this meets the objective.
    pub objective: Duration,
    /// A recovered probe must stay passing this long (default 3s).
    pub stable_for: Duration,
    /// Give up (outcome `failed`) when not recovered this long after injection (default 5m).
    pub timeout: Duration,
    /// Probes whose recovery is measured; default: every probe.
    pub probes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbortCondition {
    /// Abort when the probe has been failing continuously this long.
    FailingFor {
        probe: String,
        duration: Duration,
        /// Counted only from this fault's injection (an index into `faults`).
        after: Option<usize>,
    },
    /// Abort when more than `above` (0..1) of the probe's samples in the trailing `window` failed.
    ErrorRate {
        probe: String,
        above: f64,
        window: Duration,
        /// Counted only from this fault's injection (an index into `faults`).
        after: Option<usize>,
    },
}

/// `firedrill.yaml`: the environments beside the experiments, and where the shared store is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EnvironmentsFile {
    pub environments: Vec<Environment>,
    pub store: Option<StoreRef>,
}

/// Where firedrill.yaml says the shared store's DSN is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StoreRef {
    /// In this environment variable.
    Env(String),
    /// In this file's first line (resolved against firedrill.yaml's folder).
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub kube_context: Option<String>,
    /// IANA name, default UTC.
    pub time_zone: String,
    pub vars: BTreeMap<String, String>,
    /// A protected environment (production) needs explicit confirmation.
    pub protected: bool,
    pub promote_from: Option<String>,
    pub promote_within: Option<Duration>,
    /// Windows, blackouts, jitter, starting deadline and promotion passes for scheduled drills.
    pub schedule: schedule::Rules,
}

impl Environment {
    /// The built-in environment: this machine and the embedded simulated cluster.
    pub fn local() -> Self {
        Environment {
            name: "local".into(),
            kube_context: None,
            time_zone: "UTC".into(),
            vars: BTreeMap::new(),
            protected: false,
            promote_from: None,
            promote_within: None,
            schedule: Default::default(),
        }
    }
}

impl Experiment {
    pub fn probe(&self, name: &str) -> Option<&ProbeSpec> {
        self.probes.iter().find(|p| p.name == name)
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// How a duration is written in a file (`500ms`, `30s`, `1h 30m`, or `0`): the JSON Schema of
/// every duration, whether the loader reads it through `raw::Dur` or `humantime_serde`.
/// Fractions and negative values are refused by the loader, so the pattern has none.
pub struct DurationText;

impl DurationText {
    /// humantime's units, longest spelling first so a regex engine tries `ms` before `m`.
    const UNITS: &'static str = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y";

    /// The pattern of a duration string (humantime's grammar without fractions).
    pub fn pattern() -> String {
        format!(r"^\s*(?:0|(?:[0-9][0-9\s]*(?:{})\s*)+)\s*$", Self::UNITS)
    }
}

impl schemars::JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: a number and a unit, e.g. `500ms`, `30s`, `2m`, `1h 30m` (units ns, us, ms, s, m, h, d, w); `0` for none.",
            "anyOf": [
                { "type": "string", "pattern": Self::pattern() },
                { "type": "integer", "const": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Amount;

    #[test]
    fn a_share_of_the_pods_rounds_down_and_is_at_least_one() {
        assert_eq!(Amount::Percent(67).of(3), 2);
        assert_eq!(
            Amount::Percent(67).derivation(3),
            "67% of 3 = 2.01, rounded down: 2"
        );
        assert_eq!(Amount::Percent(50).of(3), 1);
        assert_eq!(Amount::Percent(100).of(3), 3);
        assert_eq!(Amount::Percent(100).derivation(3), "100% of 3 = 3.00: 3");
        assert_eq!(Amount::Percent(1).of(3), 1);
        assert_eq!(
            Amount::Percent(10).derivation(3),
            "10% of 3 = 0.30, raised to the minimum of 1: 1"
        );
        assert_eq!(Amount::Percent(34).of(1000), 340);
        assert_eq!(Amount::Count(2).of(3), 2);
    }
}
