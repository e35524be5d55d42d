//! A restore drill's numbers: restore RTO with its phases, throughput, backup age and data
//! age (RPO), and how a restore makes a trial's verdict.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Bracket, TrialVerdict};
use crate::timeline::secs;

/// Measured from the restore's start; the instants of each phase are brackets (polled phases
/// are known to lie between two polls).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreNumbers {
    /// Restore started → validation passed: the restore's recovery time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<Bracket>,
    /// Bytes restored per second of the files phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_bytes_per_s: Option<f64>,
    /// The restore's start − the backup's end: how old the newest usable backup was.
    #[serde(
        rename = "backup_age_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_age: Option<Duration>,
    /// The restore's start − the newest committed transaction present in the restore (the
    /// freshness query): the data the restore would lose, its RPO.
    #[serde(
        rename = "data_age_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data_age: Option<Duration>,
    /// The same, counted to `pg_last_xact_replay_timestamp()` (the last transaction WAL
    /// replay applied): the cross-check of `data_age`.
    #[serde(
        rename = "replay_age_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub replay_age: Option<Duration>,
}

/// The instants one restore measured, as the analysis reads them.
pub struct Measured {
    pub files: Option<Bracket>,
    pub validated: Option<Bracket>,
    pub bytes: Option<u64>,
    pub started_at: DateTime<Utc>,
    pub backup_end: Option<DateTime<Utc>>,
    pub newest_commit: Option<DateTime<Utc>>,
    pub replay_timestamp: Option<DateTime<Utc>>,
}

/// `later − earlier` when it is not negative.
fn age(later: DateTime<Utc>, earlier: Option<DateTime<Utc>>) -> Option<Duration> {
    (later - earlier?).to_std().ok()
}

pub fn numbers(m: &Measured) -> RestoreNumbers {
    let throughput = match (m.bytes, m.files) {
        (Some(b), Some(f)) if !f.estimate.is_zero() => Some(b as f64 / f.estimate.as_secs_f64()),
        _ => None,
    };
    RestoreNumbers {
        rto: m.validated,
        throughput_bytes_per_s: throughput,
        backup_age: age(m.started_at, m.backup_end),
        data_age: age(m.started_at, m.newest_commit),
        replay_age: age(m.started_at, m.replay_timestamp),
    }
}

/// A trial with a restore: its time to recover is the restore's RTO, and it recovered only
/// when the backup restored and validated (`restored`); probes of the source still count
/// towards detection and towards `recovered`.
pub fn trial_verdict(
    probes: TrialVerdict,
    rto: Option<Bracket>,
    restored: bool,
    objective: Duration,
) -> TrialVerdict {
    let recovered = probes.recovered && restored && rto.is_some();
    TrialVerdict {
        ttr: rto,
        recovered,
        objective_met: recovered && rto.is_some_and(|b| b.estimate <= objective),
        ..probes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    #[test]
    fn ages_count_back_from_the_restore_start_and_throughput_from_the_files_phase() {
        let files = Bracket::new(Duration::from_secs(4), Duration::from_secs(4));
        let n = numbers(&Measured {
            files: Some(files),
            validated: Some(Bracket::new(Duration::from_secs(9), Duration::from_secs(9))),
            bytes: Some(400),
            started_at: at(1_000),
            backup_end: Some(at(400)),
            newest_commit: Some(at(990)),
            replay_timestamp: Some(at(989)),
        });
        assert_eq!(n.throughput_bytes_per_s, Some(100.0));
        assert_eq!(n.backup_age, Some(Duration::from_secs(600)));
        assert_eq!(n.data_age, Some(Duration::from_secs(10)));
        assert_eq!(n.replay_age, Some(Duration::from_secs(11)));
        assert_eq!(n.rto.unwrap().estimate, Duration::from_secs(9));
        // A commit "after" the start (clocks of two hosts) has no age rather than a wrong one.
        let n = numbers(&Measured {
            files: None,
            validated: None,
            bytes: None,
            started_at: at(1_000),
            backup_end: None,
            newest_commit: Some(at(1_001)),
            replay_timestamp: None,
        });
        assert_eq!(n.data_age, None);
    }

    #[test]
    fn a_restore_that_did_not_validate_did_not_recover_whatever_the_probes_say() {
        let probes = TrialVerdict {
            ttd: None,
            ttd_bracket: None,
            ttr: None,
            recovered: true,
            impact: false,
            objective_met: true,
        };
        let rto = Some(Bracket::new(
            Duration::from_secs(50),
            Duration::from_secs(50),
        ));
        let v = trial_verdict(probes.clone(), rto, false, Duration::from_secs(60));
        assert!(!v.recovered && !v.objective_met);
        let v = trial_verdict(probes.clone(), rto, true, Duration::from_secs(60));
        assert!(v.recovered && v.objective_met);
        assert_eq!(v.ttr, rto);
        let v = trial_verdict(probes, rto, true, Duration::from_secs(40));
        assert!(v.recovered && !v.objective_met);
    }
}
