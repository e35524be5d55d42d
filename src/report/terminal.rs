//! The terminal summary printed on stdout after a run.

use tabled::settings::Style;
use tabled::{Table, Tabled};

use super::record::RunRecord;
use super::text::{
    bracket_or_point, headline, lost_text, opt_text, scheduled_text, stuck_lines,
    trial_outcome_text, ttr_text,
};
use crate::timeline::human;

#[derive(Tabled)]
struct Row {
    trial: u32,
    outcome: &'static str,
    #[tabled(rename = "time to detect")]
    ttd: String,
    #[tabled(rename = "time to recover")]
    ttr: String,
    #[tabled(rename = "truth lies in")]
    bracket: String,
    #[tabled(rename = "worst probe")]
    worst: String,
}

/// Recovery phases of a killed pod, from the injection.
#[derive(Tabled)]
struct PhaseRow {
    trial: u32,
    #[tabled(rename = "killed pod")]
    pod: String,
    deleted: String,
    replacement: String,
    created: String,
    scheduled: String,
    running: String,
    ready: String,
    #[tabled(rename = "all ready")]
    whole: String,
}

pub fn render(r: &RunRecord, report_path: Option<&std::path::Path>) -> String {
    let rows: Vec<Row> = r
        .trials
        .iter()
        .map(|t| {
            let v = t.verdict.as_ref();
            let worst = t
                .probes
                .iter()
                .filter(|p| r.recovery.probes.contains(&p.name))
                .max_by_key(|p| p.verdict.ttr.map(|b| b.estimate))
                .filter(|p| p.verdict.impact())
                .map(|p| format!("{} ({:.1}% avail.)", p.name, p.verdict.availability * 100.0))
                .unwrap_or_default();
            Row {
                trial: t.index,
                outcome: trial_outcome_text(t.outcome),
                ttd: bracket_or_point(v.and_then(|v| v.ttd_bracket), v.and_then(|v| v.ttd)),
                ttr: ttr_text(&v.and_then(|v| v.ttr)),
                bracket: v
                    .and_then(|v| v.ttr)
                    .map(|b| format!("[{}, {}]", human(b.lower), human(b.upper)))
                    .unwrap_or_default(),
                worst,
            }
        })
        .collect();
    let mut out = format!(
        "{} [{}] {} — {}\n",
        r.experiment.name,
        r.environment,
        r.outcome.to_string().to_uppercase(),
        headline(r)
    );
    if !rows.is_empty() {
        out.push_str(&Table::new(rows).with(Style::rounded()).to_string());
        out.push('\n');
    }
    let phases: Vec<PhaseRow> = r
        .trials
        .iter()
        .flat_map(|t| {
            t.pod_recovery.iter().map(move |p| PhaseRow {
                trial: t.index,
                pod: p.pod.clone(),
                replacement: p.replacement.clone().unwrap_or_else(|| "—".into()),
                deleted: lost_text(p),
                created: opt_text(p.created),
                scheduled: scheduled_text(p),
                running: opt_text(p.running),
                ready: opt_text(p.ready),
                whole: opt_text(t.workload_ready),
            })
        })
        .collect();
    if !phases.is_empty() {
        out.push_str(&Table::new(phases).with(Style::rounded()).to_string());
        out.push('\n');
    }
    for d in &r.data_loss {
        match &d.rpo {
            Some(rpo) => out.push_str(&format!(
                "data loss ({}): {} of {} acknowledged writes lost; {} indeterminate\n",
                d.probe, rpo.lost, rpo.acknowledged, rpo.indeterminate
            )),
            None => out.push_str(&format!(
                "data loss ({}): unknown — {}\n",
                d.probe,
                d.error.as_deref().unwrap_or("not checked")
            )),
        }
    }
    for t in &r.trials {
        for line in super::text::restore_lines(t) {
            out.push_str(&format!("trial {}: {line}\n", t.index));
        }
        for line in stuck_lines(t) {
            out.push_str(&format!("trial {}: {line}\n", t.index));
        }
        if let Some(line) = t.hold_text() {
            out.push_str(&format!("trial {}: {line}\n", t.index));
        }
        if let Some(line) = super::text::human_marks_text(r, t) {
            out.push_str(&format!("trial {}: {line}\n", t.index));
        }
    }
    out.push_str(&r.reason);
    out.push('\n');
    if let Some(p) = report_path {
        out.push_str(&format!("report: {}\n", p.display()));
    }
    out
}
