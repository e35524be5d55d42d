//! Words and numbers as people read them, shared by every view of a run (Markdown, HTML,
//! terminal, CI): the views import this module, never each other. Formatting only: every
//! number shown here was computed in [`crate::analysis`].

use std::time::Duration;

use super::record::{RunRecord, TrialOutcome, TrialRecord};
use crate::analysis::Bracket;
use crate::timeline::human;

/// Data for programs and GitOps repositories: the same structure as JSON or as YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    Json,
    Yaml,
}

/// A value that JSON or YAML could not express, with the serializer's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot write it as JSON")]
    Json(#[source] serde_json::Error),
    #[error("cannot write it as YAML")]
    Yaml(#[source] serde_yaml::Error),
}

/// `value` as pretty JSON or block YAML, ending with a newline.
pub fn data<T: serde::Serialize>(value: &T, format: DataFormat) -> Result<String, DataError> {
    let mut text = match format {
        DataFormat::Json => serde_json::to_string_pretty(value).map_err(DataError::Json)?,
        DataFormat::Yaml => serde_yaml::to_string(value).map_err(DataError::Yaml)?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

pub fn ttr_text(b: &Option<Bracket>) -> String {
    match b {
        Some(b) => format!("{} ± {}", human(b.estimate), human(b.uncertainty())),
        None => "—".into(),
    }
}

/// A time to detect or a downtime with its ± when the record has the bracket (records
/// written before it existed carry only the point).
pub fn bracket_or_point(b: Option<Bracket>, d: Option<Duration>) -> String {
    match b {
        Some(b) => ttr_text(&Some(b)),
        None => opt_text(d),
    }
}

/// When a replacement was scheduled, and where: `0.412s on node-b1 (zone-b)`.
pub fn scheduled_text(p: &crate::analysis::phases::PodRecovery) -> String {
    match (&p.node, p.scheduled) {
        (Some(n), Some(_)) => format!("{} on {n}", opt_text(p.scheduled)),
        _ => opt_text(p.scheduled),
    }
}

/// When a killed pod was lost: deleted at once, or marked Terminating first (an eviction's or
/// a taint's grace, a node that is down) and gone later, if it went.
pub fn lost_text(p: &crate::analysis::phases::PodRecovery) -> String {
    match (p.terminating, p.deleted) {
        (Some(t), Some(d)) => format!("{} (gone {})", opt_text(Some(t)), opt_text(Some(d))),
        (Some(t), None) => format!("{} (still terminating)", opt_text(Some(t))),
        (None, d) => opt_text(d),
    }
}

/// One line per pod left without a ready replacement, with the platform's reason.
pub fn stuck_lines(t: &TrialRecord) -> Vec<String> {
    t.pod_recovery
        .iter()
        .filter_map(|p| Some(format!("{} stuck: {}", p.pod, p.stuck.as_deref()?)))
        .collect()
}

pub fn opt_text(d: Option<Duration>) -> String {
    d.map(human).unwrap_or_else(|| "—".into())
}

pub fn trial_outcome_text(o: TrialOutcome) -> &'static str {
    match o {
        TrialOutcome::Recovered => "recovered",
        TrialOutcome::MissedObjective => "missed objective",
        TrialOutcome::NotRecovered => "not recovered",
        TrialOutcome::NotSteadyAfter => "not steady after revert",
        TrialOutcome::Aborted => "aborted",
        TrialOutcome::Inconclusive => "inconclusive",
    }
}

/// The headline: what a person needs in one line.
pub fn headline(r: &RunRecord) -> String {
    let obj = human(r.recovery.objective);
    match (&r.summary.mttr, r.trials.len()) {
        (Some(_), 1) => {
            let b = r.trials[0].verdict.as_ref().and_then(|v| v.ttr);
            format!("time to recover {} (objective {obj})", ttr_text(&b))
        }
        (Some(m), _) => format!(
            "MTTR {} over n={} (median {}, p90 {}, max {}; objective {obj})",
            human(m.mean),
            m.n,
            human(m.median),
            human(m.p90),
            human(m.max)
        ),
        (None, _) if r.summary.no_visible_impact > 0 => {
            format!("no visible impact on the recovery probes (objective {obj})")
        }
        (None, _) => format!("no recovery measured (objective {obj})"),
    }
}

/// The operators' times beside the probes', in words; `None` without marks in the trial.
pub fn human_marks_text(r: &RunRecord, t: &TrialRecord) -> Option<String> {
    let m = t.operator_times(&r.events);
    if m.is_empty() {
        return None;
    }
    Some(format!(
        "operators detected it after {} (probes: {}) and mitigated it after {} (recovered: {})",
        opt_text(m.detected),
        opt_text(t.verdict.as_ref().and_then(|v| v.ttd)),
        opt_text(m.mitigated),
        ttr_text(&t.verdict.as_ref().and_then(|v| v.ttr))
    ))
}

/// A restore drill's restore, for people: what was restored, its phases from the restore's
/// start, its numbers, its checks, and why it failed. One line each; every view prints them.
pub fn restore_lines(t: &TrialRecord) -> Vec<String> {
    use super::record::RestorePhase;
    use crate::platform::bytes_text;
    let Some(r) = &t.restore else {
        return vec![];
    };
    let run = &r.run;
    let n = &r.numbers;
    let mut out = Vec::new();
    let backup = match &run.backup {
        Some(b) => format!(
            "backup {} ({}, ended {}, {}{})",
            b.label,
            b.kind,
            b.stopped_at.format("%Y-%m-%d %H:%M:%S UTC"),
            bytes_text(b.size),
            n.backup_age
                .map(|a| format!(", {} old", human(a)))
                .unwrap_or_default()
        ),
        None => "no backup chosen".into(),
    };
    let place = match (&run.scratch, run.port) {
        (Some(d), Some(p)) => format!(" into {d} (127.0.0.1:{p})"),
        (Some(d), None) => format!(" into {d}"),
        _ => String::new(),
    };
    out.push(format!(
        "{} [{}]: {backup}, recovery point {}{place}",
        r.fault, run.provider, run.recovery_point
    ));
    if !run.phases.is_empty() {
        let phases: Vec<String> = [
            RestorePhase::FilesRestored,
            RestorePhase::Consistent,
            RestorePhase::Accepting,
            RestorePhase::Validated,
        ]
        .iter()
        .filter_map(|p| {
            let m = run.phase(*p)?;
            let b = Bracket::new(m.lower, m.upper);
            Some(if b.uncertainty().is_zero() {
                format!("{} {}", p.describe(), human(b.estimate))
            } else {
                format!("{} {}", p.describe(), ttr_text(&Some(b)))
            })
        })
        .collect();
        out.push(format!(
            "restore phases from its start: {}",
            phases.join(" → ")
        ));
    }
    let mut numbers = Vec::new();
    if let Some(b) = n.rto {
        numbers.push(format!("restore RTO {}", ttr_text(&Some(b))));
    }
    if let (Some(bytes), Some(tp)) = (run.bytes_restored, n.throughput_bytes_per_s) {
        numbers.push(format!(
            "{} restored at {}/s",
            bytes_text(bytes),
            bytes_text(tp as u64)
        ));
    }
    if let (Some(age), Some(at)) = (n.data_age, run.newest_commit) {
        numbers.push(format!(
            "data age (RPO) {} (newest commit {})",
            human(age),
            at.format("%Y-%m-%d %H:%M:%S%.3f UTC")
        ));
    }
    if let Some(age) = n.replay_age {
        numbers.push(format!("last replayed transaction {} old", human(age)));
    }
    if !numbers.is_empty() {
        out.push(numbers.join("; "));
    }
    for c in &run.checks {
        out.push(format!(
            "check {}: {}{}",
            c.name,
            if c.passed { "passed" } else { "FAILED" },
            match (&c.value, &c.reason) {
                (_, Some(why)) => format!(" — {why}"),
                (Some(v), None) => format!(" (value `{v}`)"),
                (None, None) => String::new(),
            }
        ));
    }
    if let Some(why) = &run.failure {
        out.push(format!("RESTORE FAILED: {why}"));
    }
    out
}
