//! The Markdown view of a run record: MTTR first, then the trials, the probes, the faults and
//! the timeline. Suitable for a CI job summary or a game-day write-up.

use std::fmt::Write;

use super::record::{LatencySummary, RunRecord};
use super::text::{
    bracket_or_point, headline, human_marks_text, opt_text, trial_outcome_text, ttr_text,
};
use crate::timeline::{human, EventKind};

fn lat(l: &LatencySummary) -> String {
    if l.count == 0 {
        "—".into()
    } else {
        format!("{:.1} / {:.1} ms", l.p50, l.p99)
    }
}

pub fn render(r: &RunRecord) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {} — {}\n", r.experiment.name, r.outcome);
    let _ = writeln!(o, "**{}**\n", headline(r));
    let _ = writeln!(o, "> {}\n", r.reason);
    if let Some(d) = &r.experiment.description {
        let _ = writeln!(o, "{d}\n");
    }
    let ttd = r
        .summary
        .ttd
        .map(|s| human(s.median))
        .unwrap_or_else(|| "—".into());
    let _ = writeln!(
        o,
        "| environment | run | started | trials | recovered | objective met | median TTD | seed |\n|---|---|---|---|---|---|---|---|\n| {} | `{}` | {} | {} | {} | {} | {} | {} |\n",
        r.environment,
        r.run_id,
        r.started_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
        r.summary.trials,
        r.summary.recovered,
        r.summary.objective_met,
        ttd,
        r.seed
    );
    let _ = writeln!(
        o,
        "Recovery: objective {}, stable for {}, timeout {}; judged by {}.\n",
        human(r.recovery.objective),
        human(r.recovery.stable_for),
        human(r.recovery.timeout),
        r.recovery.probes.join(", ")
    );

    let _ = writeln!(o, "## Trials\n");
    let _ = writeln!(
        o,
        "| trial | outcome | time to detect | time to recover | truth lies in | note |\n|---|---|---|---|---|---|"
    );
    for t in &r.trials {
        let v = t.verdict.as_ref();
        let bracket = v
            .and_then(|v| v.ttr)
            .map(|b| format!("[{}, {}]", human(b.lower), human(b.upper)))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            t.index,
            trial_outcome_text(t.outcome),
            bracket_or_point(v.and_then(|v| v.ttd_bracket), v.and_then(|v| v.ttd)),
            ttr_text(&v.and_then(|v| v.ttr)),
            bracket,
            t.note.as_deref().unwrap_or("")
        );
    }

    for t in &r.trials {
        if let Some(line) = t.hold_text() {
            let _ = writeln!(o, "\nTrial {}: {line}.", t.index);
        }
        if let Some(line) = human_marks_text(r, t) {
            let _ = writeln!(o, "\nTrial {}: {line}.", t.index);
        }
    }

    for t in &r.trials {
        let _ = writeln!(o, "\n## Trial {}: probes\n", t.index);
        let _ = writeln!(
            o,
            "| probe | TTD | TTR | downtime | availability | samples (failed) | latency p50/p99 before | during | after | lateness p99 |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for p in &t.probes {
            let v = &p.verdict;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.2}% | {} ({}) | {} | {} | {} | {:.2} ms |",
                p.name,
                bracket_or_point(v.ttd_bracket, v.ttd),
                ttr_text(&v.ttr),
                bracket_or_point(v.downtime_bracket, Some(v.downtime)),
                v.availability * 100.0,
                v.samples,
                v.failed,
                lat(&p.latency.before),
                lat(&p.latency.during),
                lat(&p.latency.after),
                p.lateness.p99
            );
        }
        let stepped: Vec<_> = t.probes.iter().filter(|p| !p.steps.is_empty()).collect();
        if !stepped.is_empty() {
            let _ = writeln!(
                o,
                "\nPer step (each from its own faults on):\n\n| probe | step | TTD | TTR | downtime |\n|---|---|---|---|---|"
            );
            for p in stepped {
                let last = p.steps.len() - 1;
                for (i, step) in p.steps.iter().enumerate() {
                    let v = &step.verdict;
                    let ttr = if i < last && !v.recovered {
                        "not recovered before the next step".to_string()
                    } else {
                        ttr_text(&v.ttr)
                    };
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {ttr} | {} |",
                        p.name,
                        step.faults.join(" + "),
                        bracket_or_point(v.ttd_bracket, v.ttd),
                        bracket_or_point(v.downtime_bracket, Some(v.downtime)),
                    );
                }
            }
        }
        let attributed: Vec<String> = t
            .probes
            .iter()
            .filter(|p| !p.after.is_empty())
            .map(|p| format!("{} from {}", p.name, p.after.join(" and ")))
            .collect();
        if !attributed.is_empty() {
            let _ = writeln!(
                o,
                "
Time to recover counts from the fault each probe watches: {}.",
                attributed.join("; ")
            );
        }
        let restore = super::text::restore_lines(t);
        if !restore.is_empty() {
            let _ = writeln!(o, "\n**Restore**\n");
            for line in restore {
                let _ = writeln!(o, "- {line}");
            }
        }
        if !t.pod_recovery.is_empty() {
            let _ = writeln!(
                o,
                "\n| killed pod | deleted | replacement | created | scheduled | running | ready |\n|---|---|---|---|---|---|---|"
            );
            for p in &t.pod_recovery {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    p.pod,
                    super::text::lost_text(p),
                    p.replacement.as_deref().unwrap_or("—"),
                    opt_text(p.created),
                    super::text::scheduled_text(p),
                    opt_text(p.running),
                    opt_text(p.ready)
                );
            }
            for line in super::text::stuck_lines(t) {
                let _ = writeln!(o, "\n- {line}");
            }
            let _ = writeln!(
                o,
                "\nWorkload back at full capacity: {} after the kill.",
                opt_text(t.workload_ready)
            );
        }
        if !t.faults.is_empty() {
            let _ = writeln!(
                o,
                "\n| fault | what was done | accepted at | revert |\n|---|---|---|---|"
            );
            for f in &t.faults {
                let revert = match (&f.reverted, &f.revert_error) {
                    (_, Some(e)) => format!("**FAILED: {e}**"),
                    (Some(d), None) => d.clone(),
                    (None, None) => "—".into(),
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | {:.3}s | {} |",
                    f.fault,
                    f.detail,
                    f.accepted.as_secs_f64(),
                    revert
                );
            }
        }
    }

    for d in &r.data_loss {
        let _ = writeln!(o, "\n## Data loss: {}\n", d.probe);
        match (&d.rpo, &d.error) {
            (Some(rpo), _) => {
                let span = rpo
                    .lost_span
                    .map(|s| format!(", covering {}", human(s.length())))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "**{} acknowledged write(s) lost{span}** (RPO) of {} acknowledged; {} failed; {} indeterminate ({} committed, {} not — never counted as lost).\n",
                    rpo.lost,
                    rpo.acknowledged,
                    rpo.failed,
                    rpo.indeterminate,
                    rpo.indeterminate_found,
                    rpo.indeterminate_missing
                );
                if !rpo.lost_seqs.is_empty() {
                    let seqs: Vec<String> = rpo.lost_seqs.iter().map(u64::to_string).collect();
                    let _ = writeln!(o, "Lost sequence numbers: {}.\n", seqs.join(", "));
                }
            }
            (None, Some(e)) => {
                let _ = writeln!(o, "**Data loss unknown**: {e}.\n");
            }
            (None, None) => {}
        }
        let _ = writeln!(
            o,
            "| trial | write-path RTO | writes impossible for | last ack before | first ack after |\n|---|---|---|---|---|"
        );
        for (i, w) in d.write_path.iter().enumerate() {
            match w {
                Some(w) => {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} |",
                        i + 1,
                        ttr_text(&Some(w.rto)),
                        ttr_text(&Some(w.outage)),
                        w.last_ack_before
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "—".into()),
                        w.first_ack_after
                    );
                }
                None => {
                    let _ = writeln!(o, "| {} | no write failed | — | — | — |", i + 1);
                }
            }
        }
    }

    let _ = writeln!(
        o,
        "\n## Timeline\n\n| t (s) | trial | event |\n|---|---|---|"
    );
    for e in &r.events {
        let what = match &e.kind {
            EventKind::Phase { phase } => format!("phase: {phase}"),
            EventKind::FaultTargets { fault, chosen } => format!("targets of {fault}: {chosen}"),
            EventKind::StepStarted { fault, after } => format!("**step** {fault} starts: {after}"),
            EventKind::FaultInjected { fault, detail } => format!("**injected** {fault}: {detail}"),
            EventKind::FaultFailed { fault, error } => {
                format!("**inject failed** {fault}: {error}")
            }
            EventKind::FaultReverted { fault, detail } => format!("reverted {fault}: {detail}"),
            EventKind::RevertFailed { fault, error } => {
                format!("**REVERT FAILED** {fault}: {error}")
            }
            EventKind::ProbeChanged { probe, ok, reason } => match (ok, reason) {
                (true, _) => format!("{probe} passing"),
                (false, Some(r)) => format!("{probe} failing: {r}"),
                (false, None) => format!("{probe} failing"),
            },
            EventKind::Recovery {
                object,
                step,
                detail,
            } => match detail {
                Some(d) => format!("{object}: {step} ({d})"),
                None => format!("{object}: {step}"),
            },
            EventKind::Recovered => "**recovered** (every recovery probe stable)".into(),
            EventKind::Aborted { reason } => format!("**aborted**: {reason}"),
            EventKind::Mark { mark, text } => format!("mark {mark}: {text}"),
        };
        let trial = e.trial.map(|t| t.to_string()).unwrap_or_default();
        let _ = writeln!(
            o,
            "| {:.3} | {} | {} |",
            e.at.as_secs_f64(),
            trial,
            what.replace('|', "\\|")
        );
    }
    if r.events_dropped > 0 {
        let _ = writeln!(o, "\n{} further events were not kept.", r.events_dropped);
    }
    let _ = writeln!(
        o,
        "\n---\nExperiment `{}` (sha256 `{}`), firedrill {}.",
        r.experiment.path,
        r.experiment
            .content_hash
            .get(..12)
            .unwrap_or(&r.experiment.content_hash),
        r.firedrill_version
    );
    o
}
