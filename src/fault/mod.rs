//! Faults: what a drill breaks, and how it is undone.
//!
//! The seam is `inject → RevertPlan`: injecting returns a serializable, idempotent description
//! of how to undo it, so that the executor (and later a `recover` command reading a journal)
//! can roll back without the object that injected. A fault that cannot be undone — a killed
//! process is restarted by its supervisor, not by us — says so with
//! [`RevertPlan::Irreversible`] instead of pretending.

pub mod command;
pub mod db_failover;
pub mod network;
pub mod node;
pub mod pod_kill;
pub mod process_kill;
pub mod restore;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::experiment::{Experiment, FaultSpec, TargetKind};

/// The error a fault came from (a Kubernetes, HTTP, I/O or Patroni error), kept as it was.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a fault could not be prepared, injected or reverted. The message says what failed, in
/// the drill's words; the error it came from is its `source`, shown once where the error is
/// shown ([`FaultError::render`]).
#[derive(Debug)]
pub enum FaultError {
    /// Nothing to act on (no pod matches, no leader, the target changed).
    NoTarget(String),
    Inject {
        what: String,
        cause: Option<Cause>,
    },
    Revert {
        what: String,
        cause: Option<Cause>,
    },
    Unsupported {
        fault: String,
        why: String,
    },
}

impl FaultError {
    pub fn inject(what: impl Into<String>) -> Self {
        FaultError::Inject {
            what: what.into(),
            cause: None,
        }
    }

    /// An injection that failed because of `cause`.
    pub fn inject_by(what: impl Into<String>, cause: impl Into<Cause>) -> Self {
        FaultError::Inject {
            what: what.into(),
            cause: Some(cause.into()),
        }
    }

    pub fn revert(what: impl Into<String>) -> Self {
        FaultError::Revert {
            what: what.into(),
            cause: None,
        }
    }

    /// A revert that failed because of `cause`.
    pub fn revert_by(what: impl Into<String>, cause: impl Into<Cause>) -> Self {
        FaultError::Revert {
            what: what.into(),
            cause: Some(cause.into()),
        }
    }

    /// For people (records, journals, the terminal): what failed and, once, why.
    pub fn render(&self) -> String {
        crate::platform::render(self)
    }
}

impl std::fmt::Display for FaultError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultError::NoTarget(what)
            | FaultError::Inject { what, .. }
            | FaultError::Revert { what, .. } => f.write_str(what),
            FaultError::Unsupported { fault, why } => {
                write!(f, "fault `{fault}` is not supported here: {why}")
            }
        }
    }
}

impl std::error::Error for FaultError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FaultError::Inject { cause, .. } | FaultError::Revert { cause, .. } => cause
                .as_deref()
                .map(|c| c as &(dyn std::error::Error + 'static)),
            FaultError::NoTarget(_) | FaultError::Unsupported { .. } => None,
        }
    }
}

/// How to undo an injected fault. Serializable so it can be journalled before the fault is
/// applied; reverting twice is harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum RevertPlan {
    /// Nothing to undo, and why (the platform heals it, or the fault has no inverse).
    Irreversible { why: String },
    /// Run this argv (no shell) within the timeout; exit status 0 means reverted.
    Command {
        argv: Vec<String>,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    },
    /// Remove a toxic from a proxy the drill runs (it also expires by itself).
    ProxyToxic { proxy: String, toxic: String },
    /// Enable again a proxy the drill runs (a `down` fault disabled it).
    ProxyEnable { proxy: String },
    /// DELETE this URL (a Toxiproxy toxic); 404 means already reverted.
    HttpDelete { url: String },
    /// POST this JSON body to this URL (enable a Toxiproxy proxy again); 404 means gone.
    HttpPost {
        url: String,
        body: serde_json::Value,
    },
    /// Send SIGCONT to these processes (a `process-kill` stopped them), each only while its
    /// pid is still the same process (command line and start time).
    ContinueProcesses {
        processes: Vec<process_kill::ProcessRef>,
    },
    /// Delete this Kubernetes object (a NetworkChaos); 404 means already reverted.
    KubeDelete {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
    },
    /// Make these nodes schedulable again (a drain cordoned them); a node that is gone is
    /// left gone.
    Uncordon { nodes: Vec<String> },
    /// Power these nodes of the simulated cluster on again.
    SimPowerOn { nodes: Vec<String> },
    /// Run this argv (no shell) once per node, the node in its environment, each within the
    /// timeout: a `node-down` provider's `start`.
    NodeCommand {
        argv: Vec<String>,
        nodes: Vec<node::NodeRef>,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    },
    /// Stop a restore drill's scratch instance and remove its directory (only one with
    /// firedrill's marker of this run).
    RestoreTeardown {
        dir: std::path::PathBuf,
        run_id: String,
    },
}

impl RevertPlan {
    /// For people: what the revert does.
    pub fn describe(&self) -> String {
        match self {
            RevertPlan::Irreversible { why } => why.clone(),
            RevertPlan::Command { argv, .. } => format!("run `{}`", argv.join(" ")),
            RevertPlan::ProxyToxic { proxy, toxic } => {
                format!("remove toxic {toxic} from proxy {proxy}")
            }
            RevertPlan::ProxyEnable { proxy } => format!("enable proxy {proxy}"),
            RevertPlan::HttpDelete { url } => format!("DELETE {url}"),
            RevertPlan::HttpPost { url, body } => format!("POST {url} {body}"),
            RevertPlan::ContinueProcesses { processes } => {
                let pids: Vec<String> = processes.iter().map(|p| p.pid.to_string()).collect();
                format!("send SIGCONT to pid {}", pids.join(", "))
            }
            RevertPlan::KubeDelete {
                kind,
                namespace,
                name,
                ..
            } => format!("delete {kind} {namespace}/{name}"),
            RevertPlan::Uncordon { nodes } => format!("uncordon node {}", nodes.join(", ")),
            RevertPlan::SimPowerOn { nodes } => format!("power node {} on", nodes.join(", ")),
            RevertPlan::NodeCommand { argv, nodes, .. } => {
                let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                format!("run `{}` for node {}", argv.join(" "), names.join(", "))
            }
            RevertPlan::RestoreTeardown { dir, .. } => {
                format!("stop the scratch instance and remove {}", dir.display())
            }
        }
    }
}

/// What an injection did.
#[derive(Debug, Clone)]
pub struct Injection {
    /// The fault's label, e.g. `process-kill demo`.
    pub fault: String,
    /// When the mutating call was made.
    pub sent_at: Instant,
    /// When the target accepted it (signal delivered, command exited, delete answered).
    pub accepted_at: Instant,
    /// For people: what exactly was done to what.
    pub detail: String,
    /// The objects affected (pids, pod names).
    pub affected: Vec<String>,
    /// The pods this fault took away (a pod-kill's and a Kubernetes kill-primary's deletions,
    /// a drain's evictions — `namespace/name` — or the pods on a machine it stopped): the
    /// drill follows their replacements phase by phase.
    pub deleted_pods: Vec<String>,
    pub revert: RevertPlan,
    /// A fault that lasts (latency) is reverted this long after injection; instant faults
    /// (a kill) have none.
    pub duration: Option<Duration>,
    /// A restore drill's phases, numbers and finding.
    pub restore: Option<Box<restore::RestoreRun>>,
}

/// A fault ready to inject, built from the experiment.
pub enum Fault {
    ProcessKill(process_kill::ProcessKill),
    Command(command::CommandFault),
    PodKill(Box<pod_kill::PodKill>),
    Network(Box<network::NetworkFault>),
    DbFailover(Box<db_failover::DbFailover>),
    Node(Box<node::NodeFault>),
    Restore(Box<restore::RestoreFault>),
}

/// What building faults needs from the platform.
#[derive(Clone, Default)]
pub struct BuildContext {
    /// A client for the environment's cluster, when the experiment has Kubernetes targets.
    pub kube: Option<kube::Client>,
    /// The run's seed: every random choice derives from it.
    pub seed: u64,
    /// The proxies the drill runs (its `proxy:` section).
    pub proxy: Option<std::sync::Arc<crate::proxy::ProxyServer>>,
    /// Names what the run creates (toxics, NetworkChaos objects), so it can be found later.
    pub run_id: String,
}

pub use network::RevertContext;

impl BuildContext {
    /// What reverting needs from this context.
    pub fn revert_context(&self) -> RevertContext {
        RevertContext {
            proxy: self.proxy.clone(),
            kube: self.kube.clone(),
        }
    }
}

impl Fault {
    /// A `db-failover` fault named `name` (the experiment loader builds its spec).
    pub fn db_failover(
        name: &str,
        spec: crate::experiment::model::db_failover::DbFailoverSpec,
    ) -> Result<Fault, FaultError> {
        Ok(Fault::DbFailover(Box::new(db_failover::DbFailover::new(
            name, spec,
        )?)))
    }

    /// The fault `spec`, the `index`-th of experiment `exp` (what it creates is named after
    /// the run and its index, so two faults of a run never pick the same name).
    pub fn build(
        spec: &FaultSpec,
        index: usize,
        exp: &Experiment,
        ctx: &BuildContext,
    ) -> Result<Fault, FaultError> {
        match spec {
            FaultSpec::ProcessKill { target, signal } => {
                let t = exp
                    .target(target)
                    .ok_or_else(|| FaultError::NoTarget(format!("no target named `{target}`")))?;
                let TargetKind::Process(p) = &t.kind else {
                    return Err(FaultError::NoTarget(format!(
                        "process-kill needs a process target; `{target}` is not one"
                    )));
                };
                Ok(Fault::ProcessKill(process_kill::ProcessKill::new(
                    target, p, signal,
                )?))
            }
            FaultSpec::Command {
                run,
                revert,
                timeout,
            } => Ok(Fault::Command(command::CommandFault::new(
                run.clone(),
                revert.clone(),
                *timeout,
            ))),
            FaultSpec::DbFailover(spec) => {
                let f = db_failover::DbFailover::new("db", spec.clone())?;
                let Some(target) = spec.pod_target() else {
                    return Ok(Fault::DbFailover(Box::new(f)));
                };
                // kill-primary on Kubernetes deletes the primary's pod through pod-kill.
                let k = kube_target(exp, target, "db-failover kill-primary")?;
                let client = ctx.kube.clone().ok_or_else(|| FaultError::Unsupported {
                    fault: "db-failover kill-primary".into(),
                    why: "no Kubernetes cluster: set `kube-context` for the environment".into(),
                })?;
                let grace = match &spec.provider {
                    crate::experiment::model::db_failover::DbFailoverProvider::KillPrimary {
                        grace_period,
                        ..
                    } => grace_period.unwrap_or_default(),
                    _ => Duration::ZERO,
                };
                Ok(Fault::DbFailover(Box::new(f.with_pods(
                    pod_kill::PodKill::new(client, target, k, grace, ctx.seed),
                ))))
            }
            FaultSpec::Network(spec) => Ok(Fault::Network(Box::new(network::NetworkFault::new(
                spec.clone(),
                ctx.proxy.clone(),
                ctx.kube.clone(),
                &ctx.run_id,
                index,
            )?))),
            FaultSpec::Node(spec) => {
                let target = match spec.target() {
                    Some(name) => match exp.target(name).map(|t| &t.kind) {
                        Some(TargetKind::Nodes(n)) => Some(n.clone()),
                        _ => {
                            return Err(FaultError::NoTarget(format!(
                                "{} needs a nodes target; `{name}` is not one",
                                spec.kind.key()
                            )))
                        }
                    },
                    None => None,
                };
                let client = ctx.kube.clone().ok_or_else(|| FaultError::Unsupported {
                    fault: spec.kind.key().into(),
                    why: "no Kubernetes cluster: set `kube-context` for the environment, or give the experiment a `simulation` for --env local".into(),
                })?;
                Ok(Fault::Node(Box::new(node::NodeFault::new(
                    client,
                    spec.clone(),
                    target,
                    ctx.seed,
                ))))
            }
            FaultSpec::Restore(spec) => Ok(Fault::Restore(Box::new(restore::RestoreFault::new(
                (**spec).clone(),
                &ctx.run_id,
                index,
                ctx.seed,
            )))),
            FaultSpec::PodKill {
                target,
                grace_period,
            } => {
                let k = kube_target(exp, target, "pod-kill")?;
                let client = ctx.kube.clone().ok_or_else(|| FaultError::Unsupported {
                    fault: "pod-kill".into(),
                    why: "no Kubernetes cluster: set `kube-context` for the environment, or give the experiment a `simulation` for --env local".into(),
                })?;
                Ok(Fault::PodKill(Box::new(pod_kill::PodKill::new(
                    client,
                    target,
                    k,
                    *grace_period,
                    ctx.seed,
                ))))
            }
        }
    }

    /// Resolve this trial's targets before anything is touched; returns what was chosen,
    /// for the record.
    pub async fn prepare(&self) -> Result<Option<String>, FaultError> {
        match self {
            Fault::PodKill(f) => {
                let c = f.prepare().await?;
                Ok(Some(format!(
                    "chose pod {} ({} of {} matching `{}` in `{}` by {}; {} ready, cap {})",
                    c.chosen.join(", "),
                    c.chosen.len(),
                    c.matched,
                    f.selector(),
                    f.namespace(),
                    f.amount().derivation(c.matched),
                    c.ready,
                    c.cap
                )))
            }
            Fault::ProcessKill(f) => {
                let found = f.resolve()?;
                let pids: Vec<String> = found.iter().map(|(p, _)| p.to_string()).collect();
                Ok(Some(format!("chose pid {}", pids.join(", "))))
            }
            Fault::Command(_) => Ok(None),
            Fault::Node(f) => f.prepare().await.map(Some),
            Fault::Restore(f) => f.prepare().await.map(Some),
            Fault::Network(f) => f.prepare().await,
            Fault::DbFailover(f) => {
                let r = f.prepare().await?;
                let leader = r
                    .leader
                    .as_ref()
                    .map(|m| m.name.as_str())
                    .unwrap_or("unknown");
                let candidates: Vec<&str> = r.candidates.iter().map(|m| m.name.as_str()).collect();
                Ok(Some(match (r.pid, &r.pod) {
                    (Some(pid), _) => format!(
                        "leader {leader} (postmaster pid {pid}); candidates {}",
                        candidates.join(", ")
                    ),
                    (None, Some(pod)) if r.leader.is_none() => {
                        format!("primary pod {pod} (by its role label)")
                    }
                    (None, Some(pod)) => format!(
                        "leader {leader} (pod {pod}); candidates {}",
                        candidates.join(", ")
                    ),
                    // Nothing asked Patroni (a `command` provider without `patroni:`
                    // endpoints): the command alone decides what fails over.
                    (None, None) if r.leader.is_none() && candidates.is_empty() => {
                        "nothing to resolve beforehand: without Patroni endpoints firedrill \
                         does not ask which node leads; the provider's command decides what \
                         fails over, and the probes measure the outcome"
                            .to_string()
                    }
                    (None, None) => {
                        format!("leader {leader}; candidates {}", candidates.join(", "))
                    }
                }))
            }
        }
    }

    pub fn label(&self) -> String {
        match self {
            Fault::ProcessKill(f) => format!("process-kill {}", f.target_name()),
            Fault::Command(f) => format!("command {}", f.program()),
            Fault::PodKill(f) => format!("pod-kill {}", f.target_name()),
            Fault::Network(f) => f.label(),
            Fault::DbFailover(f) => format!("db-failover {}", f.name()),
            Fault::Node(f) => f.label(),
            Fault::Restore(f) => f.label(),
        }
    }

    /// Describe what would be touched, touching nothing.
    pub fn describe(&self) -> String {
        match self {
            Fault::ProcessKill(f) => f.describe(),
            Fault::Command(f) => f.describe(),
            Fault::PodKill(f) => f.describe(),
            Fault::Network(f) => f.describe(),
            Fault::DbFailover(f) => f.describe(),
            Fault::Node(f) => f.describe(),
            Fault::Restore(f) => f.describe(),
        }
    }

    /// How the injection will be undone, known before it is made: the write-ahead journal
    /// records it with the intent, so that a crash mid-call can still be reverted.
    pub fn planned_revert(&self) -> RevertPlan {
        match self {
            Fault::Command(f) => f.revert_plan(),
            Fault::ProcessKill(f) => f.planned_revert(),
            Fault::PodKill(_) => RevertPlan::Irreversible {
                why: "a deleted pod is replaced by its workload controller, not by firedrill"
                    .into(),
            },
            Fault::DbFailover(_) => RevertPlan::Irreversible {
                why: "a failover is settled by the cluster manager, not undone by firedrill".into(),
            },
            Fault::Network(f) => f.planned_revert(),
            Fault::Node(f) => f.planned_revert(),
            Fault::Restore(f) => f.planned_revert(),
        }
    }

    /// Inject, recording the fault under `label` (its [`Fault::label_with`]).
    pub async fn inject(&self, label: String) -> Result<Injection, FaultError> {
        self.inject_tracked(label, &|_| {}).await
    }

    /// Injects; a fault that runs a program reports its child to `spawned` as soon as it
    /// exists, so that the journal names it before it can do anything.
    pub async fn inject_tracked(
        &self,
        label: String,
        spawned: &(dyn Fn(crate::platform::child::ChildId) + Send + Sync),
    ) -> Result<Injection, FaultError> {
        match self {
            Fault::ProcessKill(f) => f.inject(label).await,
            Fault::Command(f) => f.inject(label, spawned).await,
            Fault::PodKill(f) => f.inject(label).await,
            Fault::Network(f) => f.inject(label).await,
            Fault::DbFailover(f) => f.inject(label).await,
            Fault::Node(f) => f.inject(label, spawned).await,
            Fault::Restore(f) => f.inject(label, spawned).await,
        }
    }

    /// How records, reports and the journal call the fault: its `name:` when it has one.
    pub fn label_with(&self, name: Option<&str>) -> String {
        name.map_or_else(|| self.label(), str::to_string)
    }
}

/// The `kubernetes` target named `target`, for the fault `fault`.
fn kube_target<'e>(
    exp: &'e Experiment,
    target: &str,
    fault: &str,
) -> Result<&'e crate::experiment::KubeTarget, FaultError> {
    let t = exp
        .target(target)
        .ok_or_else(|| FaultError::NoTarget(format!("no target named `{target}`")))?;
    match &t.kind {
        TargetKind::Kubernetes(k) => Ok(k),
        _ => Err(FaultError::NoTarget(format!(
            "{fault} needs a kubernetes target; `{target}` is not one"
        ))),
    }
}

/// How a revert is retried: up to 4 attempts, 200ms .. 3s of jittered backoff between them
/// (about 1.5s of waiting in all), each attempt bounded by its own timeout. A revert is the
/// promise that the system is left as it was found: one refused call (an API restarting, a
/// lock held for a moment) must not break it, and a revert that still fails must be reported
/// at once rather than retried for minutes while the fault stays.
pub const REVERT_RETRY: crate::platform::retry::Backoff = crate::platform::retry::Backoff {
    attempts: 4,
    base: Duration::from_millis(200),
    max: Duration::from_secs(3),
    attempt_timeout: Duration::from_secs(60),
    max_retry_after: Duration::from_secs(3),
};

impl crate::platform::retry::Attempt for FaultError {
    fn verdict(&self) -> crate::platform::retry::Verdict {
        // Reverts are idempotent by contract: a retry is always safe, and why it failed
        // (an exit status, a 503) says nothing about whether the next attempt will.
        crate::platform::retry::Verdict::Retry(None)
    }

    fn maybe_applied(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.render()
    }
}

/// Undo an injection, retried within [`REVERT_RETRY`]. Idempotent: reverting what is already
/// reverted succeeds. The error names the last attempt's failure and how many were made.
pub async fn revert(plan: &RevertPlan, ctx: &RevertContext) -> Result<String, FaultError> {
    let mut policy = REVERT_RETRY;
    match plan {
        // The command's own timeout bounds it; the policy's only catches what ignores it.
        RevertPlan::Command { timeout, .. } => {
            policy.attempt_timeout = *timeout + Duration::from_secs(1)
        }
        RevertPlan::NodeCommand { timeout, nodes, .. } => {
            policy.attempt_timeout = (*timeout + Duration::from_secs(1)) * nodes.len().max(1) as u32
        }
        _ => {}
    }
    crate::platform::retry::retry("revert", &policy, || revert_once(plan, ctx))
        .await
        .map_err(|f| FaultError::revert(f.to_string()))
}

/// One attempt at undoing an injection.
pub async fn revert_once(plan: &RevertPlan, ctx: &RevertContext) -> Result<String, FaultError> {
    match plan {
        RevertPlan::Irreversible { why } => Ok(format!("nothing to revert: {why}")),
        RevertPlan::Command { argv, timeout } => command::run_revert(argv, *timeout).await,
        RevertPlan::ContinueProcesses { processes } => process_kill::continue_processes(processes),
        RevertPlan::ProxyToxic { .. }
        | RevertPlan::ProxyEnable { .. }
        | RevertPlan::HttpDelete { .. }
        | RevertPlan::HttpPost { .. }
        | RevertPlan::KubeDelete { .. } => network::revert(plan, ctx).await,
        RevertPlan::Uncordon { nodes } => node::uncordon(&revert_kube(ctx)?, nodes).await,
        RevertPlan::SimPowerOn { nodes } => node::sim_power_on(&revert_kube(ctx)?, nodes).await,
        RevertPlan::NodeCommand {
            argv,
            nodes,
            timeout,
        } => node::start_nodes(argv, nodes, *timeout).await,
        RevertPlan::RestoreTeardown { dir, run_id } => restore::teardown(dir, run_id).await,
    }
}

/// The cluster a revert acts on.
fn revert_kube(ctx: &RevertContext) -> Result<kube::Client, FaultError> {
    ctx.kube
        .clone()
        .ok_or_else(|| FaultError::revert("no Kubernetes client to revert with"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn an_error_keeps_its_cause_and_shows_it_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let e = FaultError::revert_by("cannot send SIGCONT to pid 7", io);
        assert_eq!(e.to_string(), "cannot send SIGCONT to pid 7");
        assert_eq!(e.source().unwrap().to_string(), "permission denied");
        assert_eq!(
            e.render(),
            "cannot send SIGCONT to pid 7: permission denied"
        );
        let plain = FaultError::inject("no pods were chosen");
        assert!(plain.source().is_none());
        assert_eq!(plain.render(), "no pods were chosen");
    }
}
