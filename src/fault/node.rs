//! Node faults: `node-drain`, `node-down` and `zone-outage` take whole machines out.
//!
//! The choice is made once per trial by [`NodeFault::prepare`], recorded, and only then acted
//! on. It refuses, touching nothing: a name that is no node; more nodes than the caps allow
//! (`max-nodes`, a share of the ready nodes); the node firedrill itself runs on; the last ready
//! control-plane node; the simulated power switch on a cluster that is not firedrill's
//! simulator.
//!
//! A drain cordons the nodes, then evicts their pods through the Eviction API, several at a
//! time. An eviction a PodDisruptionBudget refuses (HTTP 429) is retried until the drain's
//! `timeout`, and the wait is reported; a budget is never bypassed by deleting the pod. Pods
//! of DaemonSets and static (mirror) pods stay, as `kubectl drain --ignore-daemonsets` leaves
//! them. The revert uncordons exactly the nodes the drill cordoned (a node that was cordoned
//! before stays so).
//!
//! A node going down is the machine stopping: the simulated cluster's power annotation, or a
//! command per node (a cloud CLI). Kubernetes then notices by itself (NotReady after its grace,
//! `unreachable` taints, evictions after the pods' toleration): the drill observes that from the
//! API, it does not fake it. The revert powers the machines on again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use kube::Client;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use super::{FaultError, Injection, RevertPlan};
use crate::experiment::model::node::{
    NodeAction, NodeFaultSpec, NodeSelection, NodeTarget, PowerProvider, RUNNER_NODE_ENV,
    SIM_POWER_ANNOTATION, ZONE_LABEL,
};
use crate::platform::retry::{retry, Backoff};

/// Evictions in flight at once (as [`super::pod_kill`]'s deletes).
const EVICTIONS_IN_FLIGHT: usize = 16;
/// The labels that mark a control-plane node.
const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];
/// The simulated cluster's kubelet version ends so; its power switch works nowhere else.
const SIM_KUBELET_MARK: &str = "firedrill-sim";

/// A node as a fault chose it: what the revert and a power command need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
}

impl NodeRef {
    /// What a power command is told about its node.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FIREDRILL_NODE", self.name.clone()),
            ("FIREDRILL_NODE_ZONE", self.zone.clone().unwrap_or_default()),
            (
                "FIREDRILL_NODE_PROVIDER_ID",
                self.provider_id.clone().unwrap_or_default(),
            ),
        ]
    }
}

/// The nodes one trial takes, and what it found them like.
#[derive(Debug, Clone, Default)]
struct Chosen {
    nodes: Vec<NodeRef>,
    /// Those already cordoned before the drill: the revert leaves them cordoned.
    cordoned_before: BTreeSet<String>,
}

pub struct NodeFault {
    client: Client,
    spec: NodeFaultSpec,
    /// The `nodes` target, for node-drain and node-down.
    target: Option<NodeTarget>,
    rng: Mutex<ChaCha8Rng>,
    chosen: Mutex<Chosen>,
    /// The node this process runs on, if known (never taken).
    runner_node: Option<String>,
}

/// A node as listed, reduced to what the choice needs.
#[derive(Debug, Clone)]
struct Seen {
    r: NodeRef,
    ready: bool,
    unschedulable: bool,
    control_plane: bool,
    simulated: bool,
}

fn seen(n: &Node) -> Option<Seen> {
    let name = n.metadata.name.clone()?;
    let labels = n.metadata.labels.clone().unwrap_or_default();
    let status = n.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let spec = n.spec.as_ref();
    Some(Seen {
        r: NodeRef {
            name,
            zone: labels.get(ZONE_LABEL).cloned(),
            provider_id: spec.and_then(|s| s.provider_id.clone()),
        },
        ready,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        control_plane: CONTROL_PLANE_LABELS.iter().any(|l| labels.contains_key(*l)),
        simulated: status
            .and_then(|s| s.node_info.as_ref())
            .is_some_and(|i| i.kubelet_version.contains(SIM_KUBELET_MARK)),
    })
}

/// The node this process runs on: `FIREDRILL_NODE_NAME` (set by `firedrill deploy` from the
/// pod's `spec.nodeName`), else the host name (a runner started on a node itself).
fn runner_node() -> Option<String> {
    std::env::var(RUNNER_NODE_ENV)
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
}

fn names(nodes: &[NodeRef]) -> String {
    let v: Vec<String> = nodes
        .iter()
        .map(|n| match &n.zone {
            Some(z) => format!("{} ({z})", n.name),
            None => n.name.clone(),
        })
        .collect();
    v.join(", ")
}

impl NodeFault {
    pub fn new(client: Client, spec: NodeFaultSpec, target: Option<NodeTarget>, seed: u64) -> Self {
        NodeFault {
            client,
            spec,
            target,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            chosen: Mutex::new(Chosen::default()),
            runner_node: runner_node(),
        }
    }

    /// For tests: pretend the runner is on this node.
    pub fn with_runner_node(mut self, node: Option<String>) -> Self {
        self.runner_node = node;
        self
    }

    pub fn label(&self) -> String {
        match &self.spec.selection {
            NodeSelection::Target(t) => format!("{} {t}", self.spec.kind.key()),
            NodeSelection::Zone(z) => format!(
                "zone-outage {}",
                z.zone.as_deref().unwrap_or("(random zone)")
            ),
        }
    }

    fn how(&self) -> String {
        match &self.spec.action {
            NodeAction::Drain(d) => format!(
                "cordon and drain (evictions honour PodDisruptionBudgets, retried for up to {}{})",
                humantime::format_duration(d.timeout),
                match d.grace_period {
                    Some(g) => format!(", grace {}s", g.as_secs()),
                    None => String::new(),
                }
            ),
            NodeAction::Down(PowerProvider::Simulated) => {
                "power off (the simulated cluster's switch); power on at the end of the trial"
                    .into()
            }
            NodeAction::Down(PowerProvider::Command { stop, start, .. }) => format!(
                "stop with {stop:?} per node; start again with {start:?} at the end of the trial"
            ),
        }
    }

    pub fn describe(&self) -> String {
        let which = match (&self.spec.selection, &self.target) {
            (NodeSelection::Zone(z), _) => format!(
                "every node of zone {} (at most {}% of the ready nodes)",
                z.zone.as_deref().unwrap_or("chosen at random"),
                z.max_percent
            ),
            (NodeSelection::Target(_), Some(t)) => {
                let mut filters = Vec::new();
                if !t.names.is_empty() {
                    filters.push(format!("named {}", t.names.join(", ")));
                }
                if let Some(s) = &t.selector {
                    filters.push(format!("matching `{s}`"));
                }
                if let Some(z) = &t.zone {
                    filters.push(format!("in zone {z}"));
                }
                format!(
                    "{} node(s) {} (caps: {} node(s), {}% of the ready nodes)",
                    match t.amount {
                        crate::experiment::Amount::Count(n) => n.to_string(),
                        crate::experiment::Amount::Percent(p) => format!("{p}% of the"),
                    },
                    filters.join(", "),
                    t.max_nodes,
                    t.max_percent
                )
            }
            (NodeSelection::Target(t), None) => format!("target {t}"),
        };
        format!("{}: {which}", self.how())
    }

    /// The nodes the last [`NodeFault::prepare`] chose.
    pub fn chosen(&self) -> Vec<NodeRef> {
        self.lock_chosen().nodes.clone()
    }

    fn lock_chosen(&self) -> std::sync::MutexGuard<'_, Chosen> {
        self.chosen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolve and choose this trial's nodes; nothing is touched.
    pub async fn prepare(&self) -> Result<String, FaultError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut lp = ListParams::default();
        if let Some(sel) = self.target.as_ref().and_then(|t| t.selector.as_deref()) {
            lp = lp.labels(sel);
        }
        let every = ListParams::default();
        let all_nodes = retry("list nodes", &Backoff::default(), || api.list(&every))
            .await
            .map_err(|e| FaultError::inject_by("cannot list nodes", e))?;
        let all: Vec<Seen> = all_nodes.items.iter().filter_map(seen).collect();
        let matching: BTreeSet<String> = if lp.label_selector.is_some() {
            retry("list nodes", &Backoff::default(), || api.list(&lp))
                .await
                .map_err(|e| FaultError::inject_by("cannot list nodes", e))?
                .items
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect()
        } else {
            all.iter().map(|s| s.r.name.clone()).collect()
        };
        let ready = all.iter().filter(|s| s.ready).count();
        let (chosen, why) = match (&self.spec.selection, &self.target) {
            (NodeSelection::Zone(z), _) => self.choose_zone(&all, z)?,
            (NodeSelection::Target(_), Some(t)) => self.choose_nodes(&all, &matching, t)?,
            (NodeSelection::Target(t), None) => {
                return Err(FaultError::NoTarget(format!("no nodes target named `{t}`")))
            }
        };
        let chosen: Vec<&Seen> = chosen;
        // Caps, then the nodes a drill never takes.
        let max_percent = match (&self.spec.selection, &self.target) {
            (NodeSelection::Zone(z), _) => z.max_percent,
            (_, Some(t)) => t.max_percent,
            _ => 34,
        };
        let share_cap = ready * usize::from(max_percent) / 100;
        if chosen.len() > share_cap {
            return Err(FaultError::NoTarget(format!(
                "{} would take {} node(s), more than {max_percent}% of the {ready} ready node(s) allows ({share_cap}); raise `max-percent` to allow it",
                self.label(),
                chosen.len()
            )));
        }
        if let Some(t) = self.target.as_ref() {
            if chosen.len() > t.max_nodes as usize {
                return Err(FaultError::NoTarget(format!(
                    "{} would take {} node(s), more than `max-nodes` ({}) allows; raise it on the target to allow it",
                    self.label(),
                    chosen.len(),
                    t.max_nodes
                )));
            }
        }
        if let Some(me) = &self.runner_node {
            if chosen.iter().any(|s| &s.r.name == me) {
                return Err(FaultError::NoTarget(format!(
                    "{} would take node {me}, the node firedrill itself runs on; a drill never takes its own runner's machine",
                    self.label()
                )));
            }
        }
        let cp_ready: Vec<&Seen> = all.iter().filter(|s| s.control_plane && s.ready).collect();
        if !cp_ready.is_empty()
            && cp_ready
                .iter()
                .all(|c| chosen.iter().any(|s| s.r.name == c.r.name))
        {
            return Err(FaultError::NoTarget(format!(
                "{} would take every ready control-plane node ({}); a drill never takes the last one",
                self.label(),
                cp_ready
                    .iter()
                    .map(|c| c.r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if matches!(self.spec.action, NodeAction::Down(PowerProvider::Simulated)) {
            if let Some(real) = chosen.iter().find(|s| !s.simulated) {
                return Err(FaultError::Unsupported {
                    fault: self.label(),
                    why: format!(
                        "`provider: simulated` switches machines of firedrill's simulated cluster only, and node {} is not one; use `provider: {{ command: {{ stop: [...], start: [...] }} }}`",
                        real.r.name
                    ),
                });
            }
        }
        let nodes: Vec<NodeRef> = chosen.iter().map(|s| s.r.clone()).collect();
        let cordoned_before: BTreeSet<String> = chosen
            .iter()
            .filter(|s| s.unschedulable)
            .map(|s| s.r.name.clone())
            .collect();
        let mut note = format!(
            "chose node {} ({why}; {ready} of {} node(s) ready, cap {})",
            names(&nodes),
            all.len(),
            self.target
                .as_ref()
                .map_or(share_cap, |t| share_cap.min(t.max_nodes as usize))
        );
        if !cordoned_before.is_empty() {
            let v: Vec<&str> = cordoned_before.iter().map(String::as_str).collect();
            note.push_str(&format!(
                "; {} already cordoned, left cordoned afterwards",
                v.join(", ")
            ));
        }
        *self.lock_chosen() = Chosen {
            nodes,
            cordoned_before,
        };
        Ok(note)
    }

    fn choose_zone<'a>(
        &self,
        all: &'a [Seen],
        z: &crate::experiment::model::node::ZoneChoice,
    ) -> Result<(Vec<&'a Seen>, String), FaultError> {
        let zones: BTreeSet<&str> = all.iter().filter_map(|s| s.r.zone.as_deref()).collect();
        if zones.is_empty() {
            return Err(FaultError::NoTarget(format!(
                "no node has the label {ZONE_LABEL}, so there is no zone to take out"
            )));
        }
        let zone = match &z.zone {
            Some(zone) => {
                if !zones.contains(zone.as_str()) {
                    let have: Vec<&str> = zones.iter().copied().collect();
                    return Err(FaultError::NoTarget(format!(
                        "no node is in zone `{zone}`; the zones are {}",
                        have.join(", ")
                    )));
                }
                zone.clone()
            }
            None => {
                let have: Vec<&str> = zones.iter().copied().collect();
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                have[sample(&mut *rng, have.len(), 1).index(0)].to_string()
            }
        };
        let chosen: Vec<&Seen> = all
            .iter()
            .filter(|s| s.r.zone.as_deref() == Some(zone.as_str()))
            .collect();
        let how = if z.zone.is_some() {
            format!("every node of zone {zone}")
        } else {
            format!(
                "every node of zone {zone}, drawn with the run's seed among {}",
                zones.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        Ok((chosen, how))
    }

    fn choose_nodes<'a>(
        &self,
        all: &'a [Seen],
        matching: &BTreeSet<String>,
        t: &NodeTarget,
    ) -> Result<(Vec<&'a Seen>, String), FaultError> {
        for name in &t.names {
            if !all.iter().any(|s| &s.r.name == name) {
                return Err(FaultError::NoTarget(format!(
                    "there is no node named `{name}`"
                )));
            }
        }
        let candidates: Vec<&Seen> = all
            .iter()
            .filter(|s| matching.contains(&s.r.name))
            .filter(|s| t.names.is_empty() || t.names.contains(&s.r.name))
            .filter(|s| t.zone.is_none() || s.r.zone == t.zone)
            // A random choice passes over the runner's node; a named one is refused later.
            .filter(|s| {
                t.names.is_empty() && self.runner_node.as_ref() != Some(&s.r.name)
                    || !t.names.is_empty()
            })
            .collect();
        if candidates.is_empty() {
            return Err(FaultError::NoTarget(
                "the nodes target matches no node (other than the one firedrill runs on)".into(),
            ));
        }
        let want = t.amount.of(candidates.len());
        if want > candidates.len() {
            return Err(FaultError::NoTarget(format!(
                "the nodes target asks for {want} node(s) but only {} match",
                candidates.len()
            )));
        }
        let idx = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let mut v = sample(&mut *rng, candidates.len(), want).into_vec();
            v.sort_unstable();
            v
        };
        let chosen = idx
            .into_iter()
            .filter_map(|i| candidates.get(i).copied())
            .collect();
        Ok((
            chosen,
            format!(
                "{} of {} matching, drawn with the run's seed",
                want,
                candidates.len()
            ),
        ))
    }

    /// How the injection will be undone, known once the nodes are chosen.
    pub fn planned_revert(&self) -> RevertPlan {
        let chosen = self.lock_chosen().clone();
        match &self.spec.action {
            NodeAction::Drain(_) => RevertPlan::Uncordon {
                nodes: chosen
                    .nodes
                    .iter()
                    .filter(|n| !chosen.cordoned_before.contains(&n.name))
                    .map(|n| n.name.clone())
                    .collect(),
            },
            NodeAction::Down(PowerProvider::Simulated) => RevertPlan::SimPowerOn {
                nodes: chosen.nodes.iter().map(|n| n.name.clone()).collect(),
            },
            NodeAction::Down(PowerProvider::Command { start, timeout, .. }) => {
                RevertPlan::NodeCommand {
                    argv: start.clone(),
                    nodes: chosen.nodes.clone(),
                    timeout: *timeout,
                }
            }
        }
    }

    pub async fn inject(
        &self,
        label: String,
        spawned: &(dyn Fn(crate::platform::child::ChildId) + Send + Sync),
    ) -> Result<Injection, FaultError> {
        let chosen = self.lock_chosen().clone();
        if chosen.nodes.is_empty() {
            return Err(FaultError::inject("no nodes were chosen (prepare first)"));
        }
        // The pods on the nodes now: what the fault takes away, whose replacements the drill
        // follows.
        let on_nodes = pods_on(&self.client, &chosen.nodes).await?;
        let revert = self.planned_revert();
        match &self.spec.action {
            NodeAction::Drain(d) => {
                let sent_at = Instant::now();
                let to_cordon: Vec<&NodeRef> = chosen
                    .nodes
                    .iter()
                    .filter(|n| !chosen.cordoned_before.contains(&n.name))
                    .collect();
                each_node(&to_cordon, |n| async move {
                    set_unschedulable(&self.client, &n.name, true)
                        .await
                        .map_err(|e| {
                            FaultError::inject_by(format!("cannot cordon node {}", n.name), e)
                        })
                })
                .await?;
                let cordoned_at = Instant::now();
                let evictable: Vec<&Pod> = on_nodes.iter().filter(|p| evictable(p)).collect();
                let outcome = evict_all(&self.client, &evictable, d.grace_period, d.timeout).await;
                let accepted_at = outcome.first_accepted.unwrap_or(cordoned_at);
                let mut detail = format!(
                    "cordoned node {}; evicted {} pod(s)",
                    names(&chosen.nodes),
                    outcome.evicted.len()
                );
                let kept = on_nodes.len() - evictable.len();
                if kept > 0 {
                    detail.push_str(&format!(
                        " ({kept} DaemonSet, static or finished pod(s) left in place)"
                    ));
                }
                for w in &outcome.waited {
                    detail.push_str(&format!("; {w}"));
                }
                if let Some(e) = outcome.failed {
                    return Err(FaultError::inject(format!(
                        "the drain of {} did not finish: {e}; {detail}",
                        names(&chosen.nodes)
                    )));
                }
                Ok(Injection {
                    fault: label,
                    sent_at,
                    accepted_at,
                    detail,
                    affected: chosen.nodes.iter().map(|n| n.name.clone()).collect(),
                    deleted_pods: outcome.evicted,
                    revert,
                    duration: None,
                    restore: None,
                })
            }
            NodeAction::Down(provider) => {
                let sent_at = Instant::now();
                match provider {
                    PowerProvider::Simulated => {
                        let all: Vec<&NodeRef> = chosen.nodes.iter().collect();
                        each_node(&all, |n| async move {
                            sim_power(&self.client, &n.name, false).await.map_err(|e| {
                                FaultError::inject_by(
                                    format!("cannot power node {} off", n.name),
                                    e,
                                )
                            })
                        })
                        .await?;
                    }
                    PowerProvider::Command { stop, timeout, .. } => {
                        let all: Vec<&NodeRef> = chosen.nodes.iter().collect();
                        each_node(&all, |n| async move {
                            run_for_node(stop, n, *timeout, spawned)
                                .await
                                .map(|_| ())
                                .map_err(FaultError::inject)
                        })
                        .await?;
                    }
                }
                let accepted_at = Instant::now();
                // Kubernetes notices a machine that is gone only after its grace: until then
                // a passing probe says nothing, so the injection lasts until the nodes are
                // seen NotReady (the executor judges recovery only after it returns).
                let noticed = wait_not_ready(
                    &self.client,
                    &chosen.nodes,
                    accepted_at,
                    self.spec.not_ready_within,
                )
                .await?;
                let lost: Vec<String> = on_nodes
                    .iter()
                    .filter(|p| evictable(p))
                    .filter_map(pod_key)
                    .collect();
                Ok(Injection {
                    fault: label,
                    sent_at,
                    accepted_at,
                    detail: format!(
                        "stopped node {}; {} pod(s) were on it; Kubernetes marked {noticed}",
                        names(&chosen.nodes),
                        lost.len()
                    ),
                    affected: chosen.nodes.iter().map(|n| n.name.clone()).collect(),
                    deleted_pods: lost,
                    revert,
                    duration: None,
                    restore: None,
                })
            }
        }
    }
}

/// Runs `f` for every node, several at a time (a zone of 300 machines is stopped in about the
/// time of one call, not of 300 in a row); the first error is the result, after every call
/// has ended (what the others did is then reverted with them).
async fn each_node<'a, F, Fut>(nodes: &[&'a NodeRef], f: F) -> Result<(), FaultError>
where
    F: Fn(&'a NodeRef) -> Fut,
    Fut: std::future::Future<Output = Result<(), FaultError>>,
{
    let results: Vec<Result<(), FaultError>> = futures::stream::iter(nodes.iter().copied())
        .map(f)
        .buffer_unordered(EVICTIONS_IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Waits until none of `nodes` is Ready (polling every 100ms); says for people when each was
/// first seen so, counted from `since`. Past `within` the injection failed: the machines were
/// stopped (or the command said so) and Kubernetes still reports them Ready.
async fn wait_not_ready(
    client: &Client,
    nodes: &[NodeRef],
    since: Instant,
    within: Duration,
) -> Result<String, FaultError> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = since + within;
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    let every = ListParams::default();
    loop {
        // One list a round, however many machines: a zone is hundreds.
        match api.list(&every).await {
            Ok(list) => {
                let ready: BTreeSet<String> = list
                    .items
                    .iter()
                    .filter(|n| seen_ready(n))
                    .filter_map(|n| n.metadata.name.clone())
                    .collect();
                for n in nodes {
                    // Not Ready, or its object gone (a cloud's node controller deletes the
                    // node with its machine): either way, noticed.
                    if !ready.contains(&n.name) && !seen.contains_key(&n.name) {
                        seen.insert(n.name.clone(), since.elapsed());
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot list nodes"),
        }
        if seen.len() == nodes.len() {
            if seen.len() > 5 {
                let first = seen.values().min().copied().unwrap_or_default();
                let last = seen.values().max().copied().unwrap_or_default();
                return Ok(format!(
                    "{} nodes NotReady {} to {} after the stop",
                    seen.len(),
                    crate::timeline::human(first),
                    crate::timeline::human(last)
                ));
            }
            let v: Vec<String> = seen
                .iter()
                .map(|(n, d)| format!("{n} NotReady {}", crate::timeline::human(*d)))
                .collect();
            return Ok(format!("{} after the stop", v.join(", ")));
        }
        if Instant::now() >= deadline {
            let still: Vec<&str> = nodes
                .iter()
                .filter(|n| !seen.contains_key(&n.name))
                .map(|n| n.name.as_str())
                .collect();
            return Err(FaultError::inject(format!(
                "node {} still Ready {} after it was stopped; the stop did not take (or Kubernetes did not notice within `not-ready-within`)",
                still.join(", "),
                crate::timeline::human(within)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seen_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `namespace/name`: how node faults name pods, since they span namespaces.
fn pod_key(p: &Pod) -> Option<String> {
    Some(format!(
        "{}/{}",
        p.metadata.namespace.as_deref()?,
        p.metadata.name.as_deref()?
    ))
}

/// A pod a drain evicts: not a DaemonSet's, not a static pod's mirror, not finished, not
/// already going.
fn evictable(p: &Pod) -> bool {
    let daemon = p
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let finished = matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    !daemon && !mirror && !finished && p.metadata.deletion_timestamp.is_none()
}

/// The pods bound to these nodes, in every namespace, sorted.
async fn pods_on(client: &Client, nodes: &[NodeRef]) -> Result<Vec<Pod>, FaultError> {
    let api: Api<Pod> = Api::all(client.clone());
    let mut out = Vec::new();
    if nodes.len() > 3 {
        // A zone: one list of the cluster's pods beats a filtered list per machine.
        let names: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let lp = ListParams::default();
        let list = retry("list pods", &Backoff::default(), || api.list(&lp))
            .await
            .map_err(|e| FaultError::inject_by("cannot list the pods", e))?;
        out.extend(list.items.into_iter().filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| names.contains(n))
        }));
        out.sort_by_key(pod_key);
        return Ok(out);
    }
    for n in nodes {
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", n.name));
        let list = retry("list pods", &Backoff::default(), || api.list(&lp))
            .await
            .map_err(|e| {
                FaultError::inject_by(format!("cannot list the pods on node {}", n.name), e)
            })?;
        out.extend(list.items);
    }
    out.sort_by_key(pod_key);
    Ok(out)
}

async fn set_unschedulable(
    client: &Client,
    node: &str,
    on: bool,
) -> Result<(), crate::platform::retry::Failed> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"spec": {"unschedulable": if on { json!(true) } else { json!(null) }}});
    let (pp, merge) = (PatchParams::default(), Patch::Merge(&patch));
    retry("patch node", &Backoff::default(), || {
        api.patch(node, &pp, &merge)
    })
    .await
    .map(|_| ())
}

async fn sim_power(
    client: &Client,
    node: &str,
    on: bool,
) -> Result<(), crate::platform::retry::Failed> {
    let api: Api<Node> = Api::all(client.clone());
    let value = if on { json!(null) } else { json!("off") };
    let patch = json!({"metadata": {"annotations": {SIM_POWER_ANNOTATION: value}}});
    let (pp, merge) = (PatchParams::default(), Patch::Merge(&patch));
    retry("patch node", &Backoff::default(), || {
        api.patch(node, &pp, &merge)
    })
    .await
    .map(|_| ())
}

async fn run_for_node(
    argv: &[String],
    node: &NodeRef,
    timeout: Duration,
    spawned: &(dyn Fn(crate::platform::child::ChildId) + Send + Sync),
) -> Result<String, String> {
    let (status, stderr) =
        crate::probe::command::run_argv_tracked_env(argv, &node.env(), timeout, spawned).await?;
    if status.success() {
        Ok(format!("ran {argv:?} for node {}", node.name))
    } else {
        Err(format!(
            "{argv:?} for node {} failed: {}",
            node.name,
            crate::probe::command::failure_reason(&status, &stderr)
        ))
    }
}

/// What a drain's evictions came to.
#[derive(Debug, Default)]
struct Evictions {
    /// `namespace/name` of each pod evicted (or gone before its eviction).
    evicted: Vec<String>,
    first_accepted: Option<Instant>,
    /// For people: which budget held which eviction, and for how long.
    waited: Vec<String>,
    /// Why the drain could not finish.
    failed: Option<String>,
}

/// An eviction granted: when, and how long (and why) a budget held it first.
type Granted = (Instant, Option<(Duration, String)>);

/// The budget's words from a 429's Status, e.g. "The disruption budget checkout needs 4
/// healthy pods and has 3 currently".
fn refusal_reason(s: &kube::core::Status) -> String {
    s.details
        .as_ref()
        .and_then(|d| d.causes.first())
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| s.message.clone())
}

/// Evicts every pod, several at a time; a refusal by a PodDisruptionBudget is retried (0.2s
/// doubling to 2s) until `timeout` from the start.
async fn evict_all(
    client: &Client,
    pods: &[&Pod],
    grace: Option<Duration>,
    timeout: Duration,
) -> Evictions {
    let deadline = Instant::now() + timeout;
    let ep = EvictParams {
        delete_options: grace.map(|g| DeleteParams {
            grace_period_seconds: Some(g.as_secs() as u32),
            ..Default::default()
        }),
        ..Default::default()
    };
    let results: Vec<(String, Result<Granted, String>)> =
        futures::stream::iter(pods.iter().filter_map(|p| {
            Some((
                pod_key(p)?,
                p.metadata.namespace.clone()?,
                p.metadata.name.clone()?,
            ))
        }))
        .map(|(key, ns, name)| {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let ep = &ep;
            async move {
                let mut pause = Duration::from_millis(200);
                let mut refused: Option<(Instant, String)> = None;
                let mut failures = 0u32;
                loop {
                    // Not through the generic retry: it would wait out a 429 itself, and a
                    // budget's refusal is the finding here, to be timed and reported.
                    let r = api.evict(&name, ep).await;
                    let waited = |at: Instant| {
                        refused
                            .as_ref()
                            .map(|(since, why)| (at.saturating_duration_since(*since), why.clone()))
                    };
                    match r {
                        Ok(_) => {
                            let at = Instant::now();
                            return (key, Ok((at, waited(at))));
                        }
                        // Gone already: nothing left to evict.
                        Err(kube::Error::Api(s)) if s.code == 404 => {
                            let at = Instant::now();
                            return (key, Ok((at, waited(at))));
                        }
                        Err(kube::Error::Api(s)) if s.code == 429 => {
                            let why = refusal_reason(&s);
                            let since = refused.as_ref().map_or_else(Instant::now, |r| r.0);
                            refused = Some((since, why.clone()));
                            if Instant::now() + pause > deadline {
                                return (
                                    key.clone(),
                                    Err(format!(
                                        "the eviction of {key} was refused for {} by a PodDisruptionBudget ({why})",
                                        crate::timeline::human(
                                            Instant::now().saturating_duration_since(since)
                                        )
                                    )),
                                );
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(2));
                        }
                        // Anything else (the API restarting, a reset) is retried a few times.
                        Err(e) => {
                            failures += 1;
                            if failures >= 4 || Instant::now() + pause > deadline {
                                return (
                                    key.clone(),
                                    Err(format!("cannot evict {key} (after {failures} attempts): {}", crate::platform::kube::describe(&e))),
                                );
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            }
        })
        .buffered(EVICTIONS_IN_FLIGHT)
        .collect()
        .await;
    let mut out = Evictions::default();
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, r) in results {
        match r {
            Ok((at, waited)) => {
                if out.first_accepted.is_none_or(|f| at < f) {
                    out.first_accepted = Some(at);
                }
                if let Some((d, why)) = waited {
                    held.entry(why)
                        .or_default()
                        .push(format!("{key} for {}", crate::timeline::human(d)));
                }
                out.evicted.push(key);
            }
            Err(e) => {
                if out.failed.is_none() {
                    out.failed = Some(e);
                }
            }
        }
    }
    for (why, pods) in held {
        out.waited.push(format!(
            "a PodDisruptionBudget held the eviction of {} ({why})",
            pods.join(", ")
        ));
    }
    out
}

/// Uncordon these nodes, several at a time (a 404: the node is gone, nothing to undo).
pub async fn uncordon(client: &Client, nodes: &[String]) -> Result<String, FaultError> {
    let refs = node_refs(nodes);
    let all: Vec<&NodeRef> = refs.iter().collect();
    each_node(&all, |n| async move {
        match set_unschedulable(client, &n.name, false).await {
            Err(f) if !matches!(&f.last, Some(kube::Error::Api(s)) if s.code == 404) => Err(
                FaultError::revert_by(format!("cannot uncordon node {}", n.name), f),
            ),
            _ => Ok(()),
        }
    })
    .await?;
    Ok(format!("uncordoned node {}", nodes.join(", ")))
}

/// Power these simulated nodes on again, several at a time.
pub async fn sim_power_on(client: &Client, nodes: &[String]) -> Result<String, FaultError> {
    let refs = node_refs(nodes);
    let all: Vec<&NodeRef> = refs.iter().collect();
    each_node(&all, |n| async move {
        match sim_power(client, &n.name, true).await {
            Err(f) if !matches!(&f.last, Some(kube::Error::Api(s)) if s.code == 404) => Err(
                FaultError::revert_by(format!("cannot power node {} on", n.name), f),
            ),
            _ => Ok(()),
        }
    })
    .await?;
    Ok(format!("powered node {} on", nodes.join(", ")))
}

fn node_refs(nodes: &[String]) -> Vec<NodeRef> {
    nodes
        .iter()
        .map(|n| NodeRef {
            name: n.clone(),
            zone: None,
            provider_id: None,
        })
        .collect()
}

/// Start these machines again with the provider's command, one run per node.
pub async fn start_nodes(
    argv: &[String],
    nodes: &[NodeRef],
    timeout: Duration,
) -> Result<String, FaultError> {
    let mut done = Vec::new();
    for n in nodes {
        done.push(
            run_for_node(argv, n, timeout, &|_| {})
                .await
                .map_err(FaultError::revert)?,
        );
    }
    Ok(done.join("; "))
}
