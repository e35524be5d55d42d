//! `db-failover` fault: make a PostgreSQL HA cluster change its primary, three ways.
//!
//! - `patroni`: ask Patroni for a graceful `switchover` (or a `failover`) through its REST API,
//!   optionally to a named candidate. Patroni answers only once the new leader holds the lock,
//!   so the fault counts as accepted when the request is sent, and the reply time is recorded.
//! - `kill-primary`: kill the primary hard, so the cluster has to *detect* the failure.
//!   - On this host: find the leader through the REST API and SIGKILL its postmaster. The pid
//!     comes from the data directory's `postmaster.pid` when a `data-dir` template is given,
//!     else from the process whose command line carries the leader's port.
//!   - On Kubernetes (`target`: the database's pods): delete the primary's pod through the
//!     pod-kill path (same listing, blast-radius cap, journal and uid-conditional delete). The
//!     pod is found by its role label — Patroni's `role=primary` (Patroni 4 and later) or
//!     `role=master` (earlier), CloudNativePG's `cnpg.io/instanceRole=primary` or older
//!     `role=primary` — and, for Patroni, must also be the leader its REST API names: a stale
//!     label never gets a replica killed. Exactly one pod may carry the label.
//! - `command`: run an argv (a managed database's CLI, a script).
//!
//! [`DbFailover::prepare`] resolves who leads and who can take over, touching nothing. Every
//! provider is irreversible: the cluster heals itself (the old primary rejoins as a replica), and
//! firedrill does not switch back — the revert plan says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::pod_kill::{LivePod, PodKill};
use super::{FaultError, Injection, RevertPlan};
use crate::experiment::model::db_failover::{
    DbFailoverProvider, DbFailoverSpec, PatroniAction, RoleLabels,
};
use crate::platform::patroni::{Member, PatroniClient, PatroniError, Role};
use crate::probe::command::{failure_reason, run_argv};

/// Whether the pod carries one of the labels that mark the primary.
fn marks_primary(labels: RoleLabels, pod: &LivePod) -> bool {
    labels
        .primary()
        .iter()
        .any(|(k, v)| pod.labels.get(*k).is_some_and(|x| x == v))
}

/// What [`DbFailover::prepare`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The leader now (`None` for a `command` without Patroni URLs).
    pub leader: Option<Member>,
    /// The named candidate, or the members that could take over.
    pub candidates: Vec<Member>,
    /// `kill-primary`: the postmaster to kill.
    pub pid: Option<i32>,
    /// `kill-primary` on Kubernetes: the primary's pod.
    pub pod: Option<String>,
}

/// What a failover did, for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverRecord {
    pub old_leader: Option<String>,
    /// The timeline the old leader was on (it ends with the switch).
    pub old_timeline: Option<u64>,
    /// Known at once for `patroni` (Patroni replies after the change); otherwise see
    /// [`DbFailover::await_new_leader`].
    pub new_leader: Option<String>,
    /// Patroni's reply, or what was signalled or run.
    pub detail: String,
    /// How long after the request Patroni replied (`patroni` only).
    #[serde(with = "humantime_serde", default)]
    pub reply_after: Option<Duration>,
    /// Patroni's own wall-clock timestamp of the switch away from `old_timeline`, from
    /// `/history`, when known.
    pub switched_at: Option<String>,
}

pub struct DbFailover {
    name: String,
    spec: DbFailoverSpec,
    client: Option<PatroniClient>,
    /// `kill-primary` on Kubernetes: the pod-kill of the database's pods.
    pods: Option<PodKill>,
}

impl DbFailover {
    /// Build the fault named `name` (for labels) from its spec; checks the spec, touches nothing.
    pub fn new(name: &str, spec: DbFailoverSpec) -> Result<Self, FaultError> {
        if spec.needs_patroni() && spec.patroni.is_empty() {
            return Err(FaultError::NoTarget(format!(
                "db-failover `{name}`: give the Patroni REST URLs under `patroni`"
            )));
        }
        if let DbFailoverProvider::Command { run } = &spec.provider {
            if run.is_empty() {
                return Err(FaultError::NoTarget(format!(
                    "db-failover `{name}`: `run` is empty"
                )));
            }
        }
        if let DbFailoverProvider::Patroni {
            action: PatroniAction::Failover,
            candidate: None,
        } = &spec.provider
        {
            return Err(FaultError::NoTarget(format!(
                "db-failover `{name}`: Patroni fails over only to a named `candidate`; use `action: switchover` to let it choose"
            )));
        }
        let client = if spec.patroni.is_empty() {
            None
        } else {
            let mut c = PatroniClient::new(spec.patroni.clone())
                .map_err(|e| FaultError::NoTarget(format!("db-failover `{name}`: {e}")))?;
            c.action_timeout = spec.timeout;
            match (&spec.patroni_username, &spec.patroni_password_env) {
                (Some(user), Some(var)) => {
                    let password = std::env::var(var).map_err(|_| {
                        FaultError::NoTarget(format!(
                            "db-failover `{name}`: patroni-password-env `{var}` is not set"
                        ))
                    })?;
                    crate::safety::redact::register(&password);
                    c = c.with_basic_auth(user, &password);
                }
                (None, None) => {}
                _ => {
                    return Err(FaultError::NoTarget(format!(
                        "db-failover `{name}`: give both patroni-username and patroni-password-env, or neither"
                    )))
                }
            }
            Some(c)
        };
        Ok(DbFailover {
            name: name.to_string(),
            spec,
            client,
            pods: None,
        })
    }

    /// `kill-primary` on Kubernetes: delete the primary's pod among those `pods` resolves.
    pub fn with_pods(mut self, pods: PodKill) -> Self {
        self.pods = Some(pods);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> &DbFailoverSpec {
        &self.spec
    }

    pub fn describe(&self) -> String {
        match &self.spec.provider {
            DbFailoverProvider::Patroni { action, candidate } => format!(
                "ask Patroni ({}) for a {} to {}",
                self.spec.patroni.join(", "),
                match action {
                    PatroniAction::Switchover => "switchover",
                    PatroniAction::Failover => "failover",
                },
                candidate.as_deref().unwrap_or("a member Patroni chooses")
            ),
            DbFailoverProvider::KillPrimary {
                target: Some(target),
                labels,
                ..
            } => {
                let labels = labels.unwrap_or(RoleLabels::Patroni);
                let whose = match labels {
                    RoleLabels::Patroni => format!(
                        "of the leader Patroni ({}) names, when it is labelled {}",
                        self.spec.patroni.join(", "),
                        labels.describe()
                    ),
                    RoleLabels::CloudnativePg => {
                        format!("CloudNativePG labels {}", labels.describe())
                    }
                };
                match &self.pods {
                    Some(p) => format!(
                        "delete the pod {whose}, among the pods matching `{}` in namespace `{}` (target `{target}`, grace {}s)",
                        p.selector(),
                        p.namespace(),
                        p.grace().as_secs()
                    ),
                    None => format!("delete the pod {whose}, among target `{target}`"),
                }
            }
            DbFailoverProvider::KillPrimary { data_dir, .. } => format!(
                "SIGKILL the postmaster of the leader Patroni ({}) names, found {}",
                self.spec.patroni.join(", "),
                match data_dir {
                    Some(d) => format!("by the pid file in {d}"),
                    None => "by its port on the command line".into(),
                }
            ),
            DbFailoverProvider::Command { run } => format!("run {run:?}"),
        }
    }

    /// Resolve the leader, the candidate(s) and (kill-primary) the postmaster pid or the
    /// primary's pod.
    pub async fn prepare(&self) -> Result<Resolved, FaultError> {
        let (leader, candidates) = match &self.client {
            Some(client) => {
                let (l, c) = self.ask_patroni(client).await?;
                (Some(l), c)
            }
            None => (None, vec![]),
        };
        let mut resolved = Resolved {
            leader,
            candidates,
            pid: None,
            pod: None,
        };
        match &self.spec.provider {
            DbFailoverProvider::KillPrimary {
                target: Some(_),
                labels,
                ..
            } => {
                let labels = labels.unwrap_or(RoleLabels::Patroni);
                resolved.pod = Some(
                    self.primary_pod(labels, resolved.leader.as_ref().map(|m| m.name.as_str()))
                        .await?,
                );
            }
            DbFailoverProvider::KillPrimary { data_dir, .. } => {
                let leader = resolved
                    .leader
                    .as_ref()
                    .ok_or_else(|| self.err(PatroniError::NoLeader))?;
                resolved.pid = Some(self.postmaster_pid(leader, data_dir.as_deref())?);
            }
            _ => {}
        }
        Ok(resolved)
    }

    /// The leader and who could take over, from Patroni's `/cluster`.
    async fn ask_patroni(
        &self,
        client: &PatroniClient,
    ) -> Result<(Member, Vec<Member>), FaultError> {
        let cluster = client.cluster().await.map_err(|e| self.err(e))?;
        let leader = cluster
            .leader()
            .cloned()
            .ok_or_else(|| self.err(PatroniError::NoLeader))?;
        let mut candidates: Vec<Member> = cluster.candidates().into_iter().cloned().collect();
        if cluster.pause {
            return Err(FaultError::NoTarget(format!(
                "db-failover `{}`: the cluster is paused (maintenance mode); Patroni will not fail over",
                self.name
            )));
        }
        if let DbFailoverProvider::Patroni {
            candidate: Some(want),
            action,
        } = &self.spec.provider
        {
            let m = cluster.member(want).ok_or_else(|| {
                self.err(PatroniError::NoCandidate(format!(
                    "no member named `{want}`"
                )))
            })?;
            if m.is_leader() {
                return Err(self.err(PatroniError::NoCandidate(format!(
                    "`{want}` is the leader already"
                ))));
            }
            if *action == PatroniAction::Switchover
                && cluster.members.iter().any(|m| m.role == Role::SyncStandby)
                && m.role != Role::SyncStandby
            {
                return Err(self.err(PatroniError::NoCandidate(format!(
                    "`{want}` is not the synchronous standby; in synchronous mode Patroni switches over only to it"
                ))));
            }
            candidates = vec![m.clone()];
        }
        if candidates.is_empty()
            && !matches!(self.spec.provider, DbFailoverProvider::Command { .. })
        {
            return Err(self.err(PatroniError::NoCandidate(format!(
                "no running replica besides the leader `{}`",
                leader.name
            ))));
        }
        Ok((leader, candidates))
    }

    /// The one pod labelled primary, which for Patroni must be the `leader` too.
    async fn primary_pod(
        &self,
        labels: RoleLabels,
        leader: Option<&str>,
    ) -> Result<String, FaultError> {
        let pods = self.pods.as_ref().ok_or_else(|| FaultError::Unsupported {
            fault: format!("db-failover {}", self.name),
            why:
                "kill-primary on Kubernetes needs a cluster: set `kube-context` for the environment"
                    .into(),
        })?;
        let choice = pods
            .prepare_by(|live| {
                pick_primary(live, labels, leader)
                    .map(|i| vec![i])
                    .map_err(|why| {
                        FaultError::NoTarget(format!("db-failover `{}`: {why}", self.name))
                    })
            })
            .await?;
        choice.chosen.into_iter().next().ok_or_else(|| {
            FaultError::NoTarget(format!(
                "db-failover `{}`: no primary pod chosen",
                self.name
            ))
        })
    }

    pub async fn inject(&self, label: String) -> Result<Injection, FaultError> {
        self.inject_recorded(label).await.map(|(i, _)| i)
    }

    /// Inject, and return what happened in a structured form beside the [`Injection`].
    pub async fn inject_recorded(
        &self,
        label: String,
    ) -> Result<(Injection, FailoverRecord), FaultError> {
        // What the drill's own prepare chose (and journalled), to hold the fresh choice to.
        let journalled = self.pods.as_ref().map(|p| p.chosen()).unwrap_or_default();
        let resolved = self.prepare().await?;
        let old = resolved.leader.as_ref().map(|m| m.name.clone());
        let why = "the cluster heals itself (the old primary rejoins as a replica); firedrill does not switch back".to_string();
        match &self.spec.provider {
            DbFailoverProvider::Patroni { action, candidate } => {
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| FaultError::inject("no Patroni client"))?;
                let leader = old.clone().unwrap_or_default();
                // Patroni records the request at once and replies when the switch is done:
                // the fault is accepted when the request is sent.
                let sent_at = Instant::now();
                let reply = match action {
                    PatroniAction::Switchover => {
                        client.switchover(&leader, candidate.as_deref()).await
                    }
                    PatroniAction::Failover => {
                        client
                            .failover(candidate.as_deref().unwrap_or_default())
                            .await
                    }
                }
                .map_err(|e| FaultError::inject(format!("db-failover `{}`: {e}", self.name)))?;
                let reply_after = sent_at.elapsed();
                let new_leader = client.primary_member().await.ok().map(|m| m.name);
                let old_timeline = resolved.leader.as_ref().and_then(|m| m.timeline);
                // One look only: Patroni may record the switch a few seconds later;
                // `await_new_leader` waits for it.
                let switched_at = switch_time(client, old_timeline, Duration::ZERO).await;
                let detail = format!(
                    "{} from {leader} to {}: Patroni replied after {} `{reply}`",
                    match action {
                        PatroniAction::Switchover => "switchover",
                        PatroniAction::Failover => "failover",
                    },
                    new_leader.as_deref().unwrap_or("?"),
                    crate::timeline::human(reply_after),
                );
                let record = FailoverRecord {
                    old_leader: old.clone(),
                    old_timeline,
                    new_leader,
                    detail: detail.clone(),
                    reply_after: Some(reply_after),
                    switched_at,
                };
                Ok((
                    Injection {
                        fault: label,
                        sent_at,
                        accepted_at: sent_at,
                        detail,
                        affected: old.into_iter().collect(),
                        deleted_pods: vec![],
                        revert: RevertPlan::Irreversible { why },
                        duration: None,
                        restore: None,
                    },
                    record,
                ))
            }
            DbFailoverProvider::KillPrimary {
                target: Some(_),
                labels,
                ..
            } => {
                let pods = self
                    .pods
                    .as_ref()
                    .ok_or_else(|| FaultError::inject("no Kubernetes client"))?;
                let pod = resolved
                    .pod
                    .clone()
                    .ok_or_else(|| FaultError::inject("no primary pod"))?;
                // The choice was just made again, against the leader and labels as they are
                // now; it must still be the pod that was chosen (and journalled) before.
                let fresh = pods.chosen();
                if !journalled.is_empty() && journalled != fresh {
                    let names = |c: &[(String, Option<String>)]| {
                        c.iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    return Err(FaultError::NoTarget(format!(
                        "db-failover `{}`: the primary's pod changed from {} to {} since it was chosen; nothing was deleted",
                        self.name,
                        names(&journalled),
                        names(&fresh)
                    )));
                }
                let mut inj = pods.inject(label).await?;
                let labels = labels.unwrap_or(RoleLabels::Patroni);
                let old_leader = old.clone().unwrap_or_else(|| pod.clone());
                inj.detail = match labels {
                    RoleLabels::Patroni => format!(
                        "{}: Patroni's leader `{old_leader}`, labelled {}",
                        inj.detail,
                        labels.describe()
                    ),
                    RoleLabels::CloudnativePg => format!(
                        "{}: the primary CloudNativePG labels {}",
                        inj.detail,
                        labels.describe()
                    ),
                };
                inj.revert = RevertPlan::Irreversible { why };
                let detail = inj.detail.clone();
                Ok((
                    inj,
                    FailoverRecord {
                        old_leader: Some(old_leader),
                        old_timeline: resolved.leader.as_ref().and_then(|m| m.timeline),
                        new_leader: None,
                        detail,
                        reply_after: None,
                        switched_at: None,
                    },
                ))
            }
            DbFailoverProvider::KillPrimary { data_dir, .. } => {
                let leader = resolved
                    .leader
                    .as_ref()
                    .ok_or_else(|| FaultError::inject("no leader"))?;
                let pid = resolved
                    .pid
                    .ok_or_else(|| FaultError::inject("no postmaster pid"))?;
                // Re-check right before the signal: the pid must still be this postmaster.
                let again = self.postmaster_pid(leader, data_dir.as_deref())?;
                if again != pid {
                    return Err(FaultError::inject(format!(
                        "the postmaster of `{}` changed from pid {pid} to {again} while preparing",
                        leader.name
                    )));
                }
                let sent_at = Instant::now();
                kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| {
                    FaultError::inject_by(
                        format!(
                            "cannot SIGKILL the postmaster (pid {pid}) of `{}`",
                            leader.name
                        ),
                        e,
                    )
                })?;
                let accepted_at = Instant::now();
                let detail = format!(
                    "sent SIGKILL to the postmaster (pid {pid}) of leader `{}`",
                    leader.name
                );
                Ok((
                    Injection {
                        fault: label,
                        sent_at,
                        accepted_at,
                        detail: detail.clone(),
                        affected: vec![leader.name.clone(), format!("pid {pid}")],
                        deleted_pods: vec![],
                        revert: RevertPlan::Irreversible { why },
                        duration: None,
                        restore: None,
                    },
                    FailoverRecord {
                        old_leader: old,
                        old_timeline: resolved.leader.as_ref().and_then(|m| m.timeline),
                        new_leader: None,
                        detail,
                        reply_after: None,
                        switched_at: None,
                    },
                ))
            }
            DbFailoverProvider::Command { run } => {
                let sent_at = Instant::now();
                let (status, stderr) = run_argv(run, self.spec.timeout)
                    .await
                    .map_err(FaultError::inject)?;
                let accepted_at = Instant::now();
                if !status.success() {
                    return Err(FaultError::inject(format!(
                        "{run:?} failed: {}",
                        failure_reason(&status, &stderr)
                    )));
                }
                let detail = format!("ran {run:?}");
                Ok((
                    Injection {
                        fault: label,
                        sent_at,
                        accepted_at,
                        detail: detail.clone(),
                        affected: old.clone().into_iter().collect(),
                        deleted_pods: vec![],
                        revert: RevertPlan::Irreversible { why },
                        duration: None,
                        restore: None,
                    },
                    FailoverRecord {
                        old_leader: old,
                        old_timeline: resolved.leader.as_ref().and_then(|m| m.timeline),
                        new_leader: None,
                        detail,
                        reply_after: None,
                        switched_at: None,
                    },
                ))
            }
        }
    }

    /// Poll `/cluster` until a leader other than the old one is running, and fill in the
    /// record's new leader and Patroni's timestamp of the switch (which Patroni writes to
    /// `/history` after the promotion's checkpoint: this waits for it, up to `within` in all).
    pub async fn await_new_leader(
        &self,
        record: &mut FailoverRecord,
        within: Duration,
    ) -> Result<(), FaultError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| FaultError::Unsupported {
                fault: self.name.clone(),
                why: "no Patroni URLs to ask who leads".into(),
            })?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(c) = client.cluster().await {
                if let Some(l) = c.leader() {
                    if Some(&l.name) != record.old_leader.as_ref() && l.state == "running" {
                        record.new_leader = Some(l.name.clone());
                        if record.switched_at.is_none() {
                            let left = deadline.saturating_duration_since(Instant::now());
                            record.switched_at =
                                switch_time(client, record.old_timeline, left).await;
                        }
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(FaultError::inject(format!(
                    "db-failover `{}`: no new leader within {}",
                    self.name,
                    crate::timeline::human(within)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn err(&self, e: PatroniError) -> FaultError {
        FaultError::NoTarget(format!("db-failover `{}`: {e}", self.name))
    }

    /// The leader's postmaster: from `postmaster.pid` in its data directory, or the process
    /// listening on its port according to its command line.
    fn postmaster_pid(&self, leader: &Member, data_dir: Option<&str>) -> Result<i32, FaultError> {
        let host = leader.host.as_deref().unwrap_or("");
        if !is_local(host) {
            return Err(FaultError::Unsupported {
                fault: format!("db-failover {}", self.name),
                why: format!(
                    "kill-primary signals a local postmaster, and leader `{}` runs on `{host}`",
                    leader.name
                ),
            });
        }
        match data_dir {
            Some(template) => {
                let dir = PathBuf::from(template.replace("{member}", &leader.name));
                pid_from_data_dir(&dir)
                    .map_err(|why| FaultError::NoTarget(format!("leader `{}`: {why}", leader.name)))
            }
            None => {
                let port = leader.port.ok_or_else(|| {
                    FaultError::NoTarget(format!(
                        "Patroni gives no port for leader `{}`",
                        leader.name
                    ))
                })?;
                pid_by_port(port).ok_or_else(|| {
                    FaultError::NoTarget(format!(
                        "no local postmaster with --port={port} (leader `{}`); give `data-dir` to use its pid file",
                        leader.name
                    ))
                })
            }
        }
    }
}

/// Patroni's timestamp of the switch away from `timeline`: Patroni writes the history entry
/// on its next loop after the promotion, so poll briefly.
async fn switch_time(
    client: &PatroniClient,
    timeline: Option<u64>,
    within: Duration,
) -> Option<String> {
    let tl = timeline?;
    let deadline = Instant::now() + within;
    loop {
        if let Ok(h) = client.history().await {
            if let Some(s) = h.iter().rev().find(|s| s.timeline == tl) {
                return s.at.clone();
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Which of the live pods (sorted by name) is the primary: the only one carrying a primary
/// role label, which must be Patroni's `leader` when there is one, with some other pod ready
/// to take over. Anything else is refused, naming what was found.
fn pick_primary(
    live: &[&LivePod],
    labels: RoleLabels,
    leader: Option<&str>,
) -> Result<usize, String> {
    let name = |p: &LivePod| p.name.clone();
    let labelled: Vec<usize> = (0..live.len())
        .filter(|&i| marks_primary(labels, live[i]))
        .collect();
    let i = match labelled.as_slice() {
        [] => {
            return Err(format!(
                "no pod among {} carries the primary's role label ({})",
                live.iter().map(|p| name(p)).collect::<Vec<_>>().join(", "),
                labels.describe()
            ))
        }
        [i] => *i,
        many => {
            return Err(format!(
                "{} pods carry the primary's role label ({}): {}; the labels are stale or changing, so nothing is deleted",
                many.len(),
                labels.describe(),
                many.iter().map(|&i| name(live[i])).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let pod = name(live[i]);
    if let Some(leader) = leader {
        if pod != leader {
            return Err(format!(
                "pod `{pod}` is labelled primary but Patroni's leader is `{leader}`; the label is stale, so nothing is deleted"
            ));
        }
    }
    if !(0..live.len()).any(|j| j != i && live[j].ready) {
        return Err(format!(
            "no ready pod besides the primary `{pod}` could take over"
        ));
    }
    Ok(i)
}

fn is_local(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host.starts_with('/')
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The first line of `postmaster.pid`, checked against the running process's command line.
fn pid_from_data_dir(dir: &Path) -> Result<i32, String> {
    let file = dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let pid: i32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{} does not start with a pid", file.display()))?;
    let cmd = argv(pid)
        .ok_or_else(|| format!("{} names pid {pid}, which is not running", file.display()))?;
    let want = dir.to_string_lossy();
    if !cmd.iter().any(|a| a.contains(want.as_ref())) {
        return Err(format!(
            "pid {pid} from {} is not that data directory's postmaster",
            file.display()
        ));
    }
    Ok(pid)
}

/// A postgres process whose argv has `--port=PORT` (how Patroni starts it) or `-p PORT`, and
/// whose parent is not one too (backends are the postmaster's children).
fn pid_by_port(port: u16) -> Option<i32> {
    let want_long = format!("--port={port}");
    let want_short = port.to_string();
    let found: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let a = argv(pid)?;
            let prog = a.first()?;
            if !(prog == "postgres" || prog.ends_with("/postgres")) {
                return None;
            }
            let matches =
                a.contains(&want_long) || a.windows(2).any(|w| w[0] == "-p" && w[1] == want_short);
            matches.then(|| (pid, ppid(pid).unwrap_or(0)))
        })
        .collect();
    let pids: Vec<i32> = found.iter().map(|(p, _)| *p).collect();
    found
        .iter()
        .find(|(_, parent)| !pids.contains(parent))
        .map(|(p, _)| *p)
}

fn argv(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(provider: DbFailoverProvider, urls: Vec<String>) -> DbFailoverSpec {
        DbFailoverSpec {
            patroni: urls,
            provider,
            patroni_username: None,
            patroni_password_env: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn specs_that_cannot_work_are_refused_before_anything_runs() {
        let e = DbFailover::new(
            "db",
            spec(
                DbFailoverProvider::KillPrimary {
                    data_dir: None,
                    target: None,
                    labels: None,
                    grace_period: None,
                },
                vec![],
            ),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("Patroni REST URLs"), "{e}");
        let e = DbFailover::new(
            "db",
            spec(
                DbFailoverProvider::Patroni {
                    action: PatroniAction::Failover,
                    candidate: None,
                },
                vec!["http://127.0.0.1:1".into()],
            ),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("named `candidate`"), "{e}");
        assert!(DbFailover::new(
            "db",
            spec(DbFailoverProvider::Command { run: vec![] }, vec![])
        )
        .is_err());
    }

    #[tokio::test]
    async fn a_down_rest_api_fails_prepare_clearly() {
        let (_closed, addr) = crate::testing::refusing_addr();
        let url = format!("http://{addr}");
        let f = DbFailover::new(
            "db",
            spec(
                DbFailoverProvider::Patroni {
                    action: PatroniAction::Switchover,
                    candidate: None,
                },
                vec![url],
            ),
        )
        .unwrap();
        let e = f.prepare().await.unwrap_err().to_string();
        assert!(e.contains("unreachable") && e.contains("refused"), "{e}");
    }

    #[tokio::test]
    async fn the_command_provider_runs_its_argv() {
        let f = DbFailover::new(
            "db",
            spec(
                DbFailoverProvider::Command {
                    run: vec!["true".into()],
                },
                vec![],
            ),
        )
        .unwrap();
        let (inj, rec) = f.inject_recorded("db-failover db".into()).await.unwrap();
        assert!(matches!(inj.revert, RevertPlan::Irreversible { .. }));
        assert_eq!(rec.old_leader, None);
        let f = DbFailover::new(
            "db",
            spec(
                DbFailoverProvider::Command {
                    run: vec!["false".into()],
                },
                vec![],
            ),
        )
        .unwrap();
        assert!(f
            .inject("x".into())
            .await
            .unwrap_err()
            .to_string()
            .contains("exit status 1"));
    }

    #[test]
    fn the_spec_reads_as_an_experiment_file_writes_it() {
        let s: DbFailoverSpec = serde_json::from_value(serde_json::json!({
            "patroni": ["http://127.0.0.1:8008"],
            "provider": {"patroni": {"action": "switchover", "candidate": "n2"}},
            "timeout": "20s"
        }))
        .unwrap();
        assert_eq!(s.timeout, Duration::from_secs(20));
        let k: DbFailoverSpec = serde_json::from_value(serde_json::json!({
            "patroni": ["http://127.0.0.1:8008"],
            "provider": {"kill-primary": {"data-dir": "/srv/{member}/data"}}
        }))
        .unwrap();
        assert_eq!(k.timeout, Duration::from_secs(30));
        let bad = serde_json::from_value::<DbFailoverSpec>(serde_json::json!({
            "provider": {"command": {"run": ["x"]}}, "nope": 1
        }));
        assert!(bad.is_err());
    }

    fn pod(name: &str, labels: &[(&str, &str)], ready: bool) -> LivePod {
        LivePod {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ready,
            ..LivePod::default()
        }
    }

    #[test]
    fn the_primary_pod_is_the_one_labelled_and_led_or_none() {
        use RoleLabels::{CloudnativePg, Patroni};
        let pods = [
            pod("db-0", &[("role", "replica")], true),
            pod("db-1", &[("role", "primary")], true),
            pod("db-2", &[("role", "replica")], true),
        ];
        let live: Vec<&LivePod> = pods.iter().collect();
        assert_eq!(pick_primary(&live, Patroni, Some("db-1")), Ok(1));
        assert_eq!(pick_primary(&live, Patroni, None), Ok(1));
        // CloudNativePG's older label is `role=primary` too.
        assert_eq!(pick_primary(&live, CloudnativePg, None), Ok(1));
        // A label that disagrees with Patroni's leader is stale: refused.
        let e = pick_primary(&live, Patroni, Some("db-2")).unwrap_err();
        assert!(
            e.contains("`db-1` is labelled primary") && e.contains("`db-2`"),
            "{e}"
        );

        let master = [
            pod("db-0", &[("role", "master")], true),
            pod("db-1", &[("role", "replica")], true),
        ];
        let live: Vec<&LivePod> = master.iter().collect();
        assert_eq!(pick_primary(&live, Patroni, Some("db-0")), Ok(0));
        assert!(
            pick_primary(&live, CloudnativePg, None).is_err(),
            "master is not a CNPG label"
        );

        let two = [
            pod("db-0", &[("cnpg.io/instanceRole", "primary")], true),
            pod("db-1", &[("role", "primary")], true),
        ];
        let live: Vec<&LivePod> = two.iter().collect();
        let e = pick_primary(&live, CloudnativePg, None).unwrap_err();
        assert!(e.contains("2 pods") && e.contains("db-0, db-1"), "{e}");

        // Nobody ready to take over: refused.
        let alone = [
            pod("db-0", &[("cnpg.io/instanceRole", "primary")], true),
            pod("db-1", &[("cnpg.io/instanceRole", "replica")], false),
        ];
        let live: Vec<&LivePod> = alone.iter().collect();
        let e = pick_primary(&live, CloudnativePg, None).unwrap_err();
        assert!(e.contains("could take over"), "{e}");
        let none = [pod("db-0", &[], true)];
        let live: Vec<&LivePod> = none.iter().collect();
        assert!(pick_primary(&live, Patroni, Some("db-0"))
            .unwrap_err()
            .contains("no pod among db-0"));
    }

    #[test]
    fn the_kubernetes_kill_primary_reads_from_yaml() {
        let k: DbFailoverSpec = serde_json::from_value(serde_json::json!({
            "provider": {"kill-primary": {"target": "orders-db", "labels": "cloudnative-pg", "grace-period": "5s"}}
        }))
        .unwrap();
        assert!(!k.needs_patroni());
        assert_eq!(k.pod_target(), Some("orders-db"));
        assert!(matches!(
            k.provider,
            DbFailoverProvider::KillPrimary { grace_period: Some(g), .. } if g == Duration::from_secs(5)
        ));
        let p: DbFailoverSpec = serde_json::from_value(serde_json::json!({
            "patroni": ["http://127.0.0.1:8008"],
            "provider": {"kill-primary": {"target": "orders-db"}}
        }))
        .unwrap();
        assert!(p.needs_patroni());
    }

    #[test]
    fn ppid_reads_past_odd_process_names() {
        let me = std::process::id() as i32;
        assert!(ppid(me).is_some_and(|p| p > 0));
    }
}
