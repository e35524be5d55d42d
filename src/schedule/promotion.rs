//! The promotion gate: an environment with `promote-from: staging` runs a drill only when
//! the same drill (same content hash) passed in staging `passes` times within `within`, and
//! after the last time it failed here (a failed run demotes until staging passes again).
//!
//! Pure over run summaries; [`history`] reads them from the reports folder.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::experiment::Environment;
use crate::report::record::{Outcome, RunRecord};
use crate::report::store::StoredRun;

/// What the gate needs of one run record.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub experiment: String,
    pub environment: String,
    pub content_hash: String,
    pub outcome: Outcome,
    pub finished_at: DateTime<Utc>,
    /// Mean TTR of the run's trials, when any recovered.
    pub ttr: Option<Duration>,
    /// Mean TTD of the run's trials, when any saw impact.
    pub ttd: Option<Duration>,
    /// Faults the run could not revert (see `RunRecord::faults_left`), described.
    pub faults_left: Vec<String>,
}

impl From<&RunRecord> for RunSummary {
    fn from(r: &RunRecord) -> Self {
        RunSummary {
            experiment: r.experiment.name.clone(),
            environment: r.environment.clone(),
            content_hash: r.experiment.content_hash.clone(),
            outcome: r.outcome,
            finished_at: r.finished_at,
            ttr: r.summary.mttr.as_ref().map(|s| s.mean),
            ttd: r.summary.ttd.as_ref().map(|s| s.mean),
            faults_left: r.faults_left.iter().map(|f| f.describe()).collect(),
        }
    }
}

impl From<&StoredRun> for RunSummary {
    fn from(r: &StoredRun) -> Self {
        RunSummary {
            experiment: r.experiment.clone(),
            environment: r.environment.clone(),
            content_hash: r.content_hash.clone(),
            outcome: r.outcome,
            finished_at: r.finished_at,
            ttr: r.mttr_mean,
            ttd: r.ttd_mean,
            faults_left: r.faults_left.iter().map(|f| f.describe()).collect(),
        }
    }
}

/// Every readable run record under `root` (`<experiment>/<environment>/<run-id>.json`),
/// oldest first, read by the reports folder's one reader ([`crate::report::store`]).
/// Unreadable files are logged and skipped: history is best effort, and a missing pass only
/// keeps a drill held.
pub fn history(root: &Path) -> Vec<RunSummary> {
    let (runs, errors) = crate::report::store::read_runs(root);
    history_of(&runs, &errors)
}

/// [`history`] of runs already read (from a reports folder or the shared store).
pub fn history_of(
    runs: &[crate::report::store::StoredRun],
    errors: &[(std::path::PathBuf, String)],
) -> Vec<RunSummary> {
    for (path, e) in errors {
        tracing::warn!(path = %path.display(), error = %e, "skipping report");
    }
    let mut out: Vec<RunSummary> = runs.iter().map(RunSummary::from).collect();
    out.sort_by_key(|r| r.finished_at);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    Held(Held),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Not enough passing runs of this version upstream within the window.
    NeedsPasses {
        from: String,
        have: u32,
        need: u32,
        within: Option<Duration>,
    },
    /// It failed here; held until it passes upstream again.
    Demoted {
        from: String,
        failed_at: DateTime<Utc>,
    },
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::NeedsPasses {
                from,
                have,
                need,
                within,
            } => {
                write!(f, "needs {need} passing run(s) of this version in {from}")?;
                if let Some(w) = within {
                    write!(f, " within {}", humantime::format_duration(*w))?;
                }
                write!(f, ", has {have}")
            }
            Held::Demoted { from, failed_at } => write!(
                f,
                "demoted: failed here at {}; needs a new pass in {from}",
                failed_at.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }
}

/// Whether `experiment` at version `content_hash` may run in `env` at `now`.
pub fn gate(
    runs: &[RunSummary],
    experiment: &str,
    content_hash: &str,
    env: &Environment,
    now: DateTime<Utc>,
) -> Gate {
    let Some(from) = &env.promote_from else {
        return Gate::Open;
    };
    let ours = |r: &&RunSummary| r.experiment == experiment;
    // Any failure here demotes, whatever version failed: the system, not the file, failed.
    let demoted_at = runs
        .iter()
        .filter(ours)
        .filter(|r| r.environment == env.name && r.outcome == Outcome::Failed)
        .map(|r| r.finished_at)
        .max();
    let oldest = env
        .promote_within
        .and_then(|w| chrono::Duration::from_std(w).ok())
        .map(|w| now - w);
    let passes = runs
        .iter()
        .filter(ours)
        .filter(|r| {
            r.environment == *from
                && r.content_hash == content_hash
                && r.outcome == Outcome::Passed
                && r.finished_at <= now
                && oldest.is_none_or(|o| r.finished_at >= o)
                && demoted_at.is_none_or(|d| r.finished_at > d)
        })
        .count();
    let have = u32::try_from(passes).unwrap_or(u32::MAX);
    let need = env.schedule.passes();
    if have >= need {
        return Gate::Open;
    }
    Gate::Held(match demoted_at {
        Some(failed_at) if have == 0 => Held::Demoted {
            from: from.clone(),
            failed_at,
        },
        _ => Held::NeedsPasses {
            from: from.clone(),
            have,
            need,
            within: env.promote_within,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap_or_default()
    }

    fn run(env: &str, hash: &str, outcome: Outcome, at: i64) -> RunSummary {
        RunSummary {
            experiment: "kill".into(),
            environment: env.into(),
            content_hash: hash.into(),
            outcome,
            finished_at: t(at),
            ttr: None,
            ttd: None,
            faults_left: vec![],
        }
    }

    fn production(passes: u32) -> Environment {
        let mut e = Environment::local();
        e.name = "production".into();
        e.promote_from = Some("staging".into());
        e.promote_within = Some(Duration::from_secs(7 * 24 * 3600));
        e.schedule.promote_passes = passes;
        e
    }

    #[test]
    fn no_promote_from_is_always_open() {
        assert_eq!(
            gate(&[], "kill", "h1", &Environment::local(), t(0)),
            Gate::Open
        );
    }

    #[test]
    fn needs_a_recent_pass_of_the_same_version() {
        let prod = production(1);
        assert!(matches!(
            gate(&[], "kill", "h1", &prod, t(0)),
            Gate::Held(Held::NeedsPasses { have: 0, .. })
        ));
        let runs = [run("staging", "h1", Outcome::Passed, 0)];
        assert_eq!(gate(&runs, "kill", "h1", &prod, t(1)), Gate::Open);
        // Another version of the file, an old pass, or a failed run do not count.
        assert!(matches!(
            gate(&runs, "kill", "h2", &prod, t(1)),
            Gate::Held(_)
        ));
        assert!(matches!(
            gate(&runs, "kill", "h1", &prod, t(8 * 24)),
            Gate::Held(_)
        ));
        let failed = [run("staging", "h1", Outcome::Failed, 0)];
        assert!(matches!(
            gate(&failed, "kill", "h1", &prod, t(1)),
            Gate::Held(_)
        ));
        let other = [RunSummary {
            experiment: "other".into(),
            ..run("staging", "h1", Outcome::Passed, 0)
        }];
        assert!(matches!(
            gate(&other, "kill", "h1", &prod, t(1)),
            Gate::Held(_)
        ));
    }

    #[test]
    fn counts_passes() {
        let prod = production(2);
        let mut runs = vec![run("staging", "h1", Outcome::Passed, 0)];
        let held = gate(&runs, "kill", "h1", &prod, t(1));
        assert_eq!(
            held.clone(),
            Gate::Held(Held::NeedsPasses {
                from: "staging".into(),
                have: 1,
                need: 2,
                within: prod.promote_within
            })
        );
        if let Gate::Held(h) = held {
            assert_eq!(
                h.to_string(),
                "needs 2 passing run(s) of this version in staging within 7days, has 1"
            );
        }
        runs.push(run("staging", "h1", Outcome::Passed, 1));
        assert_eq!(gate(&runs, "kill", "h1", &prod, t(2)), Gate::Open);
    }

    #[test]
    fn a_production_failure_demotes_until_a_new_staging_pass() {
        let prod = production(1);
        let mut runs = vec![
            run("staging", "h1", Outcome::Passed, 0),
            run("production", "h1", Outcome::Failed, 2),
        ];
        assert!(matches!(
            gate(&runs, "kill", "h1", &prod, t(3)),
            Gate::Held(Held::Demoted { .. })
        ));
        runs.push(run("staging", "h1", Outcome::Passed, 4));
        assert_eq!(gate(&runs, "kill", "h1", &prod, t(5)), Gate::Open);
        // An aborted or passed production run does not demote.
        let runs = [
            run("staging", "h1", Outcome::Passed, 0),
            run("production", "h1", Outcome::Aborted, 2),
        ];
        assert_eq!(gate(&runs, "kill", "h1", &prod, t(3)), Gate::Open);
    }
}
