//! The JSON record of a run: the durable, versioned source every other view renders from.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::phases::PodRecovery;
use crate::analysis::rpo::{RpoReport, WritePathRecovery};
use crate::analysis::{ProbeVerdict, TrialVerdict};
pub use crate::fault::restore::RestorePhase;
use crate::fault::RevertPlan;
use crate::timeline::{secs, Event, Trace};

/// Check latency percentiles: computed in [`crate::analysis::stats`].
pub use crate::analysis::stats::LatencySummary;
/// The summary over a run's trials: computed in [`crate::analysis::summary`].
pub use crate::analysis::summary::Summary;

/// Bumped on any incompatible change to the record's shape.
pub const SCHEMA: &str = "firedrill.run/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: String,
    pub run_id: String,
    pub experiment: ExperimentInfo,
    pub environment: String,
    /// Seed of every random choice in the run (target selection, jitter): rerun with `--seed`.
    pub seed: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// One sentence: why this outcome.
    pub reason: String,
    pub recovery: RecoveryInfo,
    pub summary: Summary,
    pub probes: Vec<ProbeInfo>,
    pub trials: Vec<TrialRecord>,
    /// Per database writer: acknowledged writes lost (RPO) and the write-path recovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_loss: Vec<DataLoss>,
    /// Everything that happened, in order (phases, faults, probe state changes, marks).
    pub events: Vec<Event>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub events_dropped: u64,
    /// Faults whose revert still failed after its retries: the system was left broken, the
    /// run stopped there, and it ends `failed` with exit code [`EXIT_FAULT_LEFT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults_left: Vec<FaultLeft>,
    pub firedrill_version: String,
}

/// The exit code of a run that left a fault in place (beside 0 passed, 1 failed, 2 invalid
/// input, 3 aborted/inconclusive/refused, 4 internal error): someone must act now.
pub const EXIT_FAULT_LEFT: i32 = 5;

/// A fault firedrill could not revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultLeft {
    pub trial: u32,
    pub fault: String,
    /// What the revert would have done.
    pub revert: String,
    /// The last attempt's error.
    pub error: String,
}

impl FaultLeft {
    pub fn describe(&self) -> String {
        format!(
            "{} (trial {}; {}): {}",
            self.fault, self.trial, self.revert, self.error
        )
    }
}

impl RunRecord {
    /// The TTRs of the trials that count towards MTTR (what the regression gate compares).
    pub fn recovered_ttrs(&self) -> Vec<Duration> {
        crate::analysis::summary::recovered_ttrs(
            self.trials.iter().filter_map(|t| t.verdict.as_ref()),
        )
    }

    /// The process exit code: a fault left in place trumps the outcome's own code.
    pub fn exit_code(&self) -> i32 {
        if self.faults_left.is_empty() {
            self.outcome.exit_code()
        } else {
            EXIT_FAULT_LEFT
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub path: String,
    pub content_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryInfo {
    #[serde(rename = "objective_s", with = "secs")]
    pub objective: Duration,
    #[serde(rename = "stable_for_s", with = "secs")]
    pub stable_for: Duration,
    #[serde(rename = "timeout_s", with = "secs")]
    pub timeout: Duration,
    pub probes: Vec<String>,
}

/// What a database writer probe found after the drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataLoss {
    pub probe: String,
    /// The lost-write check over the whole run (`None` when the rows could not be read back).
    pub rpo: Option<RpoReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per trial (in order): recovery as the write path saw it.
    pub write_path: Vec<Option<WritePathRecovery>>,
    pub writes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every trial recovered within the objective.
    Passed,
    /// A trial missed the objective or never recovered before the timeout.
    Failed,
    /// An abort condition or an operator stopped it; faults were reverted.
    Aborted,
    /// Steady state did not hold before injection, or the platform errored.
    Inconclusive,
}

impl Outcome {
    /// The process exit code (DESIGN.md): 0 passed, 1 failed, 3 aborted or inconclusive; a
    /// run that left a fault in place exits [`EXIT_FAULT_LEFT`] instead
    /// ([`RunRecord::exit_code`]).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
            Outcome::Aborted | Outcome::Inconclusive => 3,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
            Outcome::Inconclusive => "inconclusive",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub name: String,
    pub kind: String,
    /// What it checks (url, address, argv, workload), with secrets redacted.
    pub checks: String,
    #[serde(rename = "every_s", with = "secs")]
    pub every: Duration,
    #[serde(rename = "every_during_s", with = "secs")]
    pub every_during: Duration,
    pub steady_state: bool,
    pub recovery: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialOutcome {
    Recovered,
    MissedObjective,
    NotRecovered,
    /// Recovered, but the steady state did not hold after the revert.
    NotSteadyAfter,
    Aborted,
    Inconclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialRecord {
    pub index: u32,
    pub outcome: TrialOutcome,
    /// Wall-clock label of the injection instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<DateTime<Utc>>,
    /// When the first fault's request was sent: the fault acted in `[t_sent, t_inject]`.
    #[serde(
        rename = "t_sent_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub t_sent: Option<Duration>,
    /// Monotonic offset of the injection (the fault accepted) from the run's start; every
    /// probe time is on this axis.
    #[serde(rename = "t_inject_s", with = "secs::opt", default)]
    pub t_inject: Option<Duration>,
    /// When the trial was judged (recovered, timed out, aborted).
    #[serde(rename = "t_judged_s", with = "secs::opt", default)]
    pub t_judged: Option<Duration>,
    /// When a lasting fault (latency, down) was removed: its TTR counts from here.
    #[serde(
        rename = "t_removed_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub t_removed: Option<Duration>,
    pub verdict: Option<TrialVerdict>,
    pub faults: Vec<FaultRecord>,
    pub probes: Vec<ProbeTrial>,
    /// Per killed pod: deleted, replacement created, scheduled, running, ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_recovery: Vec<PodRecovery>,
    /// When the workload had all its replicas ready again, from the injection.
    #[serde(
        rename = "workload_ready_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_ready: Option<Duration>,
    /// A restore drill's restore: phases, numbers, checks, and why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One restore of a trial: what was measured (`run`) and the numbers drawn from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// The fault's label.
    pub fault: String,
    #[serde(flatten)]
    pub run: crate::fault::restore::RestoreRun,
    pub numbers: crate::analysis::restore::RestoreNumbers,
}

impl RestoreRecord {
    pub fn new(fault: String, run: crate::fault::restore::RestoreRun) -> Self {
        use crate::analysis::Bracket;
        use crate::fault::restore::RestorePhase;
        let bracket = |p| run.phase(p).map(|m| Bracket::new(m.lower, m.upper));
        let numbers = crate::analysis::restore::numbers(&crate::analysis::restore::Measured {
            files: bracket(RestorePhase::FilesRestored),
            validated: bracket(RestorePhase::Validated),
            bytes: run.bytes_restored,
            started_at: run.started_at,
            backup_end: run.backup.as_ref().map(|b| b.stopped_at),
            newest_commit: run.newest_commit,
            replay_timestamp: run.replay_timestamp,
        });
        RestoreRecord {
            fault,
            run,
            numbers,
        }
    }
}

impl TrialRecord {
    /// When operators detected and mitigated this trial's fault, from its marks on the run's
    /// timeline `events`.
    pub fn operator_times(&self, events: &[Event]) -> crate::analysis::operators::OperatorTimes {
        crate::analysis::operators::of_trial(events, self.index, self.t_inject)
    }

    /// The instant this trial's TTR counts from, on the run's axis: the removal of a lasting
    /// fault, else the injection.
    pub fn ttr_origin(&self) -> Option<Duration> {
        // The origin of the probe whose recovery is the trial's (each probe counts from the
        // faults it watches); records older than per-probe origins: the trial's.
        let slowest = self
            .probes
            .iter()
            .filter(|p| p.verdict.ttr.is_some())
            .max_by_key(|p| p.verdict.ttr.map(|b| b.upper));
        match slowest.and_then(|p| p.ttr_origin) {
            Some(o) => Some(o),
            None => Some(self.origin()?.recovery),
        }
    }

    /// The instants this trial's numbers count from (`None` before an injection).
    pub fn origin(&self) -> Option<crate::analysis::Origin> {
        let inject = self.t_inject?;
        Some(crate::analysis::Origin::held(
            self.t_sent.unwrap_or(inject),
            inject,
            self.t_removed,
        ))
    }

    /// For people: how long a lasting fault was held, and that TTR counts from its removal
    /// (for the probes that watch it, when the trial has other faults too).
    pub fn hold_text(&self) -> Option<String> {
        // Each lasting fault from its own acceptance (a later step is accepted later).
        let held: Vec<String> = self
            .faults
            .iter()
            .filter_map(|f| {
                let r = f.removed?;
                Some(format!(
                    "{} held for {}",
                    f.fault,
                    crate::timeline::human(r.saturating_sub(f.accepted))
                ))
            })
            .collect();
        if held.is_empty() {
            let held = self.t_removed?.saturating_sub(self.t_inject?);
            return Some(format!(
                "the fault was held for {} and then removed; time to recover counts from the removal",
                crate::timeline::human(held)
            ));
        }
        if held.len() == self.faults.len() {
            return Some(format!(
                "{} and then removed; time to recover counts from the removal",
                held.join(", ")
            ));
        }
        Some(format!(
            "{} and then removed; the probes that watch it count their time to recover from the removal, the others from their own fault",
            held.join(", ")
        ))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub fault: String,
    pub detail: String,
    /// A step's wait, for people (`2s after kill-a, once `web` is failing`); none for a fault
    /// injected right after the one before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub affected: Vec<String>,
    /// The pods the fault deleted, for the recorder's pod recovery phases (not stored: the
    /// phases are).
    #[serde(skip)]
    pub deleted_pods: Vec<String>,
    #[serde(rename = "sent_s", with = "secs")]
    pub sent: Duration,
    #[serde(rename = "accepted_s", with = "secs")]
    pub accepted: Duration,
    /// When a fault held for a duration was removed: its time to recover counts from here.
    #[serde(
        rename = "removed_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub removed: Option<Duration>,
    pub revert: RevertPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeTrial {
    pub name: String,
    /// The faults whose recovery this probe measures (its `after:` or what the file made
    /// clear); empty: every fault of the trial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// The instant this probe's time to recover counts from, on the run's axis.
    #[serde(
        rename = "ttr_origin_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ttr_origin: Option<Duration>,
    /// Judged from the observed window (injection until the trial was judged).
    pub verdict: ProbeVerdict,
    /// In a scenario whose steps this probe watches, its verdict per step: from the step's
    /// faults until the next watched step started (the last one until the trial was judged).
    /// Empty when the probe watches one step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepVerdict>,
    pub latency: PhaseLatency,
    /// How late checks started against their schedule, over the whole trial.
    pub lateness: LatencySummary,
    /// The observed window, run-length encoded (the picture in the HTML report).
    pub trace: Trace,
}

/// What one probe saw of one step of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepVerdict {
    /// The step's faults (the step's own and those injected right after it).
    pub faults: Vec<String>,
    /// Time to detect and to recover counted from those faults; `recovered` false when the
    /// next step started first.
    pub verdict: ProbeVerdict,
}

/// Check latency before the injection, while observing, and after the trial was judged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseLatency {
    pub before: LatencySummary,
    pub during: LatencySummary,
    pub after: LatencySummary,
}
