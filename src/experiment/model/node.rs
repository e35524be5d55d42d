//! Machines going down: the `nodes` target and the `node-drain`, `node-down` and `zone-outage`
//! faults.
//!
//! A node fault takes whole Kubernetes nodes out: a drain cordons them and evicts their pods
//! through the Eviction API (PodDisruptionBudgets are honoured: a refused eviction is waited on
//! and reported, never bypassed); a `down` stops the machine (the simulated cluster's power
//! switch, or a command such as a cloud CLI) and lets Kubernetes notice. Either is undone at the
//! end of the trial (uncordon; power on), and recovery counts from the injection: the question
//! is how long the workloads take to be whole again on the remaining machines.

use std::time::Duration;

use serde::Serialize;

use super::Amount;

/// Which nodes a node fault may take, and how many at most (the blast-radius caps).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeTarget {
    /// Exactly these nodes (empty: any node).
    pub names: Vec<String>,
    /// A label selector in Kubernetes syntax.
    pub selector: Option<String>,
    /// Only nodes whose `topology.kubernetes.io/zone` is this.
    pub zone: Option<String>,
    /// How many of the matching nodes, chosen at random with the run's seed.
    pub amount: Amount,
    /// At most this many nodes (default 1).
    pub max_nodes: u32,
    /// At most this share of the ready nodes, rounded down (default 34).
    pub max_percent: u8,
}

/// How the chosen nodes are taken out.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum NodeAction {
    /// Cordon, then evict every pod that is not a DaemonSet's or a static pod.
    Drain(DrainSpec),
    /// Stop the machine.
    Down(PowerProvider),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrainSpec {
    /// The grace period given to evicted pods; `None`: each pod's own.
    pub grace_period: Option<Duration>,
    /// How long evictions refused by a PodDisruptionBudget are retried before the drill gives
    /// up on the injection (default 5m).
    pub timeout: Duration,
}

/// Who stops and starts a machine.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum PowerProvider {
    /// firedrill's simulated cluster: the node's `sim.firedrill.io/power` annotation.
    Simulated,
    /// A program per node (no shell), with the node in the environment: `FIREDRILL_NODE`,
    /// `FIREDRILL_NODE_ZONE`, `FIREDRILL_NODE_PROVIDER_ID`. Exit status 0 means done.
    Command {
        stop: Vec<String>,
        start: Vec<String>,
        timeout: Duration,
    },
}

/// Which nodes a zone outage takes: every node of one zone.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZoneChoice {
    /// The zone; `None` picks one of the cluster's zones at random with the run's seed.
    pub zone: Option<String>,
    /// At most this share of the ready nodes may be in it, rounded down (default 50).
    pub max_percent: u8,
}

/// The nodes a fault acts on.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum NodeSelection {
    /// A `nodes` target, by name.
    Target(String),
    Zone(ZoneChoice),
}

/// The three node faults in the file.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum NodeFaultKind {
    NodeDrain,
    NodeDown,
    ZoneOutage,
}

impl NodeFaultKind {
    pub fn key(self) -> &'static str {
        match self {
            NodeFaultKind::NodeDrain => "node-drain",
            NodeFaultKind::NodeDown => "node-down",
            NodeFaultKind::ZoneOutage => "zone-outage",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeFaultSpec {
    pub kind: NodeFaultKind,
    pub selection: NodeSelection,
    pub action: NodeAction,
    /// The file says, on this fault, that it may run in a protected environment.
    pub allow_protected: bool,
    /// For a machine going down: how long Kubernetes may take to mark it NotReady before the
    /// injection counts as failed (default 5m). Until then the drill cannot tell an outage
    /// nobody noticed from a stop that did not happen, so it judges nothing before.
    pub not_ready_within: Duration,
}

impl NodeFaultSpec {
    /// The `nodes` target this fault names, if any.
    pub fn target(&self) -> Option<&str> {
        match &self.selection {
            NodeSelection::Target(t) => Some(t),
            NodeSelection::Zone(_) => None,
        }
    }
}

/// The label Kubernetes puts the zone in.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Set (by `firedrill deploy`, through the Downward API) to the node firedrill runs on, so
/// that a node fault never takes it.
pub const RUNNER_NODE_ENV: &str = "FIREDRILL_NODE_NAME";
/// The annotation the simulated cluster powers a node off by (`off`) and on (absent or `on`).
pub const SIM_POWER_ANNOTATION: &str = "sim.firedrill.io/power";
