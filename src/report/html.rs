//! The HTML view of a run record: one self-contained file (inline CSS and SVG, no scripts, no
//! fetches) that someone who was not there can read: the verdict first, then each trial's
//! timeline as a picture, the numbers per probe, what was done to which targets, and where.
//!
//! The timeline SVG carries its scale and every element's time as data attributes
//! (`data-t0`, `data-t1`, `data-x0`, `data-width` on the `<svg>`, `data-t` on markers,
//! `data-start`/`data-end` on bands), so tests and tools can check the picture without pixels:
//! `x = x0 + (t - t0) / (t1 - t0) × width`.

use std::fmt::Write;
use std::time::Duration;

use super::record::{LatencySummary, Outcome, RunRecord, TrialRecord};
use super::text::{bracket_or_point, headline, opt_text, trial_outcome_text, ttr_text};
use crate::analysis::operators;
use crate::timeline::{human, Event, EventKind};

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Shared page chrome: the report and the history index look alike.
pub const CSS: &str = r#"
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}
.outcome{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff;font-size:14px;vertical-align:middle}
.outcome.passed{background:#2e8b57}.outcome.failed{background:#c0392b}.outcome.aborted,.outcome.inconclusive{background:#b7791f}
.headline{font-size:20px;font-weight:600;margin:14px 0 4px}.reason{color:#4a5568;margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #e3e6ea;border-radius:8px;padding:8px 14px;min-width:140px}
.card b{display:block;font-size:18px}.card span{color:#5a6473;font-size:13px}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#c0392b;font-weight:600} .muted{color:#6b7280}
svg text{font:12px system-ui,sans-serif;fill:#1d2330}
svg .stretch.ok{fill:#3fa66a} svg .stretch.fail{fill:#d64545}
svg .lane{fill:#f1f3f6} svg .axis line{stroke:#9aa3ae} svg .axis text{fill:#5a6473;font-size:11px}
svg .marker line{stroke-width:1.5} svg .marker text{font-size:11px}
svg .inject line{stroke:#111;stroke-dasharray:4 3} svg .revert line{stroke:#6b7280;stroke-dasharray:2 3}
svg .detected line{stroke:#dd6b20} svg .recovered line{stroke:#2b6cb0;stroke-width:2}
svg .judged line{stroke:#2b6cb0;stroke-dasharray:1 3} svg .mark line{stroke:#805ad5;stroke-width:2}
svg .ttr-bracket{fill:#2b6cb0;opacity:.15}
svg .phase.pending{fill:#f6ad55} svg .phase.scheduling{fill:#f6e05e} svg .phase.starting{fill:#90cdf4} svg .phase.readying{fill:#9ae6b4}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
footer{margin-top:36px;color:#6b7280;font-size:13px}
"#;

pub fn render(r: &RunRecord) -> String {
    let mut o = String::new();
    let title = format!("{} — {}", r.experiment.name, r.outcome);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body><main>\n",
        esc(&title)
    );
    let outcome_class = match r.outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Aborted => "aborted",
        Outcome::Inconclusive => "inconclusive",
    };
    let _ = writeln!(
        o,
        "<h1>{} <span class=\"outcome {outcome_class}\" id=\"outcome\">{}</span></h1>",
        esc(&r.experiment.name),
        r.outcome
    );
    if let Some(d) = &r.experiment.description {
        let _ = writeln!(o, "<p class=\"muted\">{}</p>", esc(d));
    }
    let _ = writeln!(o, "<p class=\"headline\">{}</p>", esc(&headline(r)));
    let _ = writeln!(o, "<p class=\"reason\">{}</p>", esc(&r.reason));
    summary_cards(&mut o, r);

    for t in &r.trials {
        trial_section(&mut o, r, t);
    }

    environment_section(&mut o, r);
    let _ = writeln!(
        o,
        "<footer>Rendered from the run record <code>{}.json</code> (schema {}). The JSON is the source; this page can be rendered again from it.</footer>",
        esc(&r.run_id),
        esc(&r.schema)
    );
    o.push_str("</main></body></html>\n");
    o
}

fn card(o: &mut String, id: &str, value: &str, label: &str) {
    let _ = writeln!(
        o,
        "<div class=\"card\" id=\"{id}\"><b>{}</b><span>{}</span></div>",
        esc(value),
        esc(label)
    );
}

fn summary_cards(o: &mut String, r: &RunRecord) {
    o.push_str("<div class=\"cards\">\n");
    let ttr = match r.trials.as_slice() {
        [t] => ttr_text(&t.verdict.as_ref().and_then(|v| v.ttr)),
        _ => r
            .summary
            .mttr
            .map(|m| human(m.mean))
            .unwrap_or_else(|| "—".into()),
    };
    let label = if r.trials.len() == 1 {
        "time to recover (± resolution)".to_string()
    } else {
        match r.summary.mttr {
            Some(m) => format!(
                "MTTR over n={} (median {}, p90 {}, max {})",
                m.n,
                human(m.median),
                human(m.p90),
                human(m.max)
            ),
            None => "MTTR (no recovery measured)".into(),
        }
    };
    card(o, "ttr", &ttr, &label);
    card(
        o,
        "objective",
        &human(r.recovery.objective),
        "recovery objective",
    );
    card(
        o,
        "met",
        &format!("{} / {}", r.summary.objective_met, r.summary.trials),
        "trials within the objective",
    );
    let ttd = r
        .summary
        .ttd
        .map(|s| human(s.median))
        .unwrap_or_else(|| "—".into());
    card(o, "ttd", &ttd, "median time to detect (probes)");
    let humans = operators::first_marked(r.trials.iter().map(|t| t.operator_times(&r.events)));
    if let Some(d) = humans.detected {
        card(o, "human-ttd", &human(d), "time to detect (operator mark)");
    }
    if let Some(d) = humans.mitigated {
        card(
            o,
            "human-ttm",
            &human(d),
            "time to mitigate (operator mark)",
        );
    }
    o.push_str("</div>\n");
    let _ = writeln!(
        o,
        "<p class=\"muted\">Judged by {} passing for {} after the fault; timeout {}. The truth of each time lies within ± the probe's sampling resolution.</p>",
        esc(&r.recovery.probes.join(", ")),
        human(r.recovery.stable_for),
        human(r.recovery.timeout)
    );
}

fn lat_cells(o: &mut String, l: &LatencySummary) {
    if l.count == 0 {
        o.push_str("<td class=\"num muted\" colspan=\"4\">no samples</td>");
    } else {
        let _ = write!(
            o,
            "<td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td>",
            l.p50, l.p90, l.p99, l.max
        );
    }
}

fn trial_section(o: &mut String, r: &RunRecord, t: &TrialRecord) {
    let v = t.verdict.as_ref();
    let _ = writeln!(
        o,
        "<h2 id=\"trial-{}\">Trial {} — {}</h2>",
        t.index,
        t.index,
        trial_outcome_text(t.outcome)
    );
    let humans = t.operator_times(&r.events);
    let _ = writeln!(
        o,
        "<p>Injected {}; detected after {} (probes{}); recovered after {}{}.</p>",
        t.injected_at
            .map(|w| w.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
            .unwrap_or_else(|| "never".into()),
        bracket_or_point(v.and_then(|v| v.ttd_bracket), v.and_then(|v| v.ttd)),
        humans
            .detected
            .map(|d| format!("; {} by the operators", human(d)))
            .unwrap_or_default(),
        ttr_text(&v.and_then(|v| v.ttr)),
        humans
            .mitigated
            .map(|d| format!("; mitigated after {} by the operators", human(d)))
            .unwrap_or_default(),
    );
    if let Some(n) = &t.note {
        let _ = writeln!(o, "<p class=\"muted\">{}</p>", esc(n));
    }
    o.push_str(&timeline_svg(r, t));
    o.push_str(
        "<div class=\"legend\"><span><i style=\"background:#3fa66a\"></i>probe passing</span>\
         <span><i style=\"background:#d64545\"></i>probe failing</span>\
         <span><i style=\"background:#2b6cb0;opacity:.3\"></i>recovery happened here (± resolution)</span>\
         <span><i style=\"background:#f6ad55\"></i>pod: waiting for a replacement</span>\
         <span><i style=\"background:#f6e05e\"></i>scheduling</span>\
         <span><i style=\"background:#90cdf4\"></i>starting</span>\
         <span><i style=\"background:#9ae6b4\"></i>becoming ready</span>\
         <span><i style=\"background:#805ad5\"></i>operator mark</span></div>\n",
    );

    // Probes: the numbers, and check latency per phase.
    let _ = writeln!(
        o,
        "<h3>Probes</h3><table class=\"probes\"><tr><th>probe</th><th>TTD</th><th>TTR</th><th>downtime</th><th>availability</th><th>samples (failed)</th><th>first failure</th></tr>"
    );
    let row = |o: &mut String, name: &str, pv: &crate::analysis::ProbeVerdict, ttr: String| {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}%</td><td class=\"num\">{} ({})</td><td>{}</td></tr>",
            name,
            bracket_or_point(pv.ttd_bracket, pv.ttd),
            ttr,
            bracket_or_point(pv.downtime_bracket, Some(pv.downtime)),
            pv.availability * 100.0,
            pv.samples,
            pv.failed,
            esc(pv.first_failure.as_deref().unwrap_or(""))
        );
    };
    for p in &t.probes {
        row(o, &esc(&p.name), &p.verdict, ttr_text(&p.verdict.ttr));
        // A scenario's steps, each from its own faults on.
        let last = p.steps.len().saturating_sub(1);
        for (i, step) in p.steps.iter().enumerate() {
            let sv = &step.verdict;
            let ttr = if i < last && !sv.recovered {
                "<span class=\"muted\">not recovered before the next step</span>".to_string()
            } else {
                ttr_text(&sv.ttr)
            };
            let name = format!(
                "<span class=\"muted\">&#8627; step {}</span>",
                esc(&step.faults.join(" + "))
            );
            row(o, &name, sv, ttr);
        }
    }
    o.push_str("</table>\n");
    let _ = writeln!(
        o,
        "<h3>Check latency (ms)</h3><table class=\"latency\"><tr><th rowspan=\"2\">probe</th><th colspan=\"4\">before the fault</th><th colspan=\"4\">during (until judged)</th><th colspan=\"4\">after</th></tr>\
         <tr>{0}{0}{0}</tr>",
        "<th>p50</th><th>p90</th><th>p99</th><th>max</th>"
    );
    for p in &t.probes {
        let _ = write!(
            o,
            "<tr data-probe=\"{}\"><td>{}</td>",
            esc(&p.name),
            esc(&p.name)
        );
        lat_cells(o, &p.latency.before);
        lat_cells(o, &p.latency.during);
        lat_cells(o, &p.latency.after);
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n");

    let restore = super::text::restore_lines(t);
    if !restore.is_empty() {
        o.push_str("<h3>Restore</h3><ul class=\"restore\">\n");
        for line in restore {
            let _ = writeln!(o, "<li>{}</li>", esc(&line));
        }
        o.push_str("</ul>\n");
    }
    if !t.pod_recovery.is_empty() {
        let _ = writeln!(
            o,
            "<h3>Recovery phases (from the kill)</h3><table class=\"phases\"><tr><th>killed pod</th><th>deleted</th><th>replacement</th><th>created</th><th>scheduled</th><th>running</th><th>ready</th></tr>"
        );
        for p in &t.pod_recovery {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&p.pod),
                esc(&super::text::lost_text(p)),
                esc(p.replacement.as_deref().unwrap_or("—")),
                opt_text(p.created),
                esc(&super::text::scheduled_text(p)),
                opt_text(p.running),
                opt_text(p.ready)
            );
        }
        let _ = writeln!(
            o,
            "</table><p>Workload back at full capacity {} after the kill.</p>",
            opt_text(t.workload_ready)
        );
        for line in super::text::stuck_lines(t) {
            let _ = writeln!(o, "<p class=\"stuck\">{}</p>", esc(&line));
        }
    }

    // Targets and what was done to them.
    let chosen: Vec<(&str, &str)> = r
        .events
        .iter()
        .filter(|e| e.trial == Some(t.index))
        .filter_map(|e| match &e.kind {
            EventKind::FaultTargets { fault, chosen } => Some((fault.as_str(), chosen.as_str())),
            _ => None,
        })
        .collect();
    if !t.faults.is_empty() || !chosen.is_empty() {
        let _ = writeln!(
            o,
            "<h3>Targets and what was done</h3><table class=\"faults\"><tr><th>fault</th><th>chosen targets</th><th>what was done</th><th>affected</th><th>accepted at</th><th>revert</th></tr>"
        );
        for f in &t.faults {
            let targets = chosen
                .iter()
                .filter(|(name, _)| *name == f.fault)
                .map(|(_, c)| esc(c))
                .collect::<Vec<_>>()
                .join("<br>");
            let plan = f.revert.describe();
            let revert = match (&f.reverted, &f.revert_error) {
                (_, Some(e)) => format!("<span class=\"bad\">REVERT FAILED: {}</span>", esc(e)),
                (Some(d), None) => esc(d),
                (None, None) => format!("<span class=\"muted\">planned: {}</span>", esc(&plan)),
            };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.3}s</td><td>{}</td></tr>",
                esc(&f.fault),
                targets,
                match &f.step {
                    Some(step) => format!(
                        "{}<br><span class=\"muted\">step: started {}</span>",
                        esc(&f.detail),
                        esc(step)
                    ),
                    None => esc(&f.detail),
                },
                esc(&f.affected.join(", ")),
                f.accepted.as_secs_f64(),
                revert
            );
        }
        o.push_str("</table>\n");
    }

    let marks: Vec<&Event> = r
        .events
        .iter()
        .filter(|e| e.trial == Some(t.index) && matches!(e.kind, EventKind::Mark { .. }))
        .collect();
    if !marks.is_empty() {
        o.push_str("<h3>Operator marks</h3><table class=\"marks\"><tr><th>after the fault</th><th>mark</th><th>note</th></tr>\n");
        for e in marks {
            if let EventKind::Mark { mark, text } = &e.kind {
                let _ = writeln!(
                    o,
                    "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                    t.t_inject
                        .map(|t0| human(e.at.saturating_sub(t0)))
                        .unwrap_or_else(|| format!("{:.3}s", e.at.as_secs_f64())),
                    esc(&mark.to_string()),
                    esc(text)
                );
            }
        }
        o.push_str("</table>\n");
    }
}

fn environment_section(o: &mut String, r: &RunRecord) {
    let _ = writeln!(o, "<h2>Where and how</h2><table class=\"environment\">");
    let row = |o: &mut String, k: &str, v: &str| {
        let _ = writeln!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), v);
    };
    row(o, "environment", &esc(&r.environment));
    row(o, "run", &format!("<code>{}</code>", esc(&r.run_id)));
    row(
        o,
        "started",
        &r.started_at.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    );
    row(
        o,
        "finished",
        &r.finished_at
            .format("%Y-%m-%d %H:%M:%S%.3f UTC")
            .to_string(),
    );
    row(
        o,
        "experiment",
        &format!(
            "<code>{}</code> (sha256 <code>{}</code>)",
            esc(&r.experiment.path),
            esc(r
                .experiment
                .content_hash
                .get(..12)
                .unwrap_or(&r.experiment.content_hash))
        ),
    );
    row(
        o,
        "seed",
        &format!("{} (rerun with <code>--seed {}</code>)", r.seed, r.seed),
    );
    row(o, "firedrill", &esc(&r.firedrill_version));
    o.push_str("</table>\n<h3>Probes</h3><table class=\"probe-info\"><tr><th>probe</th><th>kind</th><th>checks</th><th>every</th><th>while observing</th><th>role</th></tr>\n");
    for p in &r.probes {
        let role = match (p.steady_state, p.recovery) {
            (true, true) => "steady state, recovery",
            (true, false) => "steady state",
            (false, true) => "recovery",
            (false, false) => "observed",
        };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{role}</td></tr>",
            esc(&p.name),
            esc(&p.kind),
            esc(&p.checks),
            human(p.every),
            human(p.every_during)
        );
    }
    o.push_str("</table>\n");
    if r.events_dropped > 0 {
        let _ = writeln!(
            o,
            "<p class=\"bad\">{} events were not kept (the record's event cap).</p>",
            r.events_dropped
        );
    }
}

/// Horizontal layout of the timeline, in SVG user units.
pub const X0: f64 = 170.0;
pub const WIDTH: f64 = 780.0;
const ROW: f64 = 22.0;
const GAP: f64 = 8.0;
const LABEL_LANES: usize = 3;
/// Below the marker labels.
const TOP: f64 = 12.0 + LABEL_LANES as f64 * 13.0 + 4.0;

/// Map a time to an x coordinate.
pub fn x_of(t: f64, t0: f64, t1: f64) -> f64 {
    let span = (t1 - t0).max(1e-9);
    X0 + (t - t0).clamp(0.0, span) / span * WIDTH
}

fn f(v: f64) -> String {
    format!("{v:.2}")
}

/// The picture of one trial: one band per probe coloured by its trace, one row per killed pod
/// with its recovery phases, and vertical markers for faults, detection, recovery and marks.
pub fn timeline_svg(r: &RunRecord, t: &TrialRecord) -> String {
    let trial_events: Vec<&Event> = r
        .events
        .iter()
        .filter(|e| e.trial == Some(t.index))
        .collect();
    let t_inject = t.t_inject.map(|d| d.as_secs_f64());
    let stretch_ends = t
        .probes
        .iter()
        .flat_map(|p| p.trace.stretches.iter())
        .map(|s| s.last.end.as_secs_f64());
    let stretch_starts = t
        .probes
        .iter()
        .flat_map(|p| p.trace.stretches.iter())
        .map(|s| s.first.start.as_secs_f64());
    let interesting = trial_events.iter().filter(|e| {
        !matches!(
            e.kind,
            EventKind::Phase { .. } | EventKind::ProbeChanged { .. }
        )
    });
    // From the first observed check (or the fault) to the last thing that happened in the trial.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in stretch_starts
        .chain(t_inject)
        .chain(t.faults.iter().map(|f| f.sent.as_secs_f64()))
    {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    for v in stretch_ends
        .chain(interesting.map(|e| e.at.as_secs_f64()))
        .chain(t.t_judged.map(|d| d.as_secs_f64()))
    {
        hi = hi.max(v);
        lo = lo.min(if lo.is_finite() { lo } else { v });
    }
    if !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    let pad = ((hi - lo) * 0.03).max(0.05);
    let (t0, t1) = ((lo - pad).max(0.0), hi + pad);
    let x = |v: f64| x_of(v, t0, t1);

    let pod_rows = t.pod_recovery.len();
    let rows = t.probes.len() + pod_rows;
    let plot_h = rows as f64 * (ROW + GAP);
    let height = TOP + plot_h + 36.0;
    let total_w = X0 + WIDTH + 20.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg class=\"timeline\" id=\"timeline-{}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"100%\" role=\"img\" aria-label=\"timeline of trial {}\" data-trial=\"{}\" data-t0=\"{:.6}\" data-t1=\"{:.6}\" data-x0=\"{}\" data-width=\"{}\">",
        t.index,
        f(total_w),
        f(height),
        t.index,
        t.index,
        t0,
        t1,
        X0,
        WIDTH
    );

    // The recovery bracket, under everything else.
    let ttr_origin = t.ttr_origin().map(|d| d.as_secs_f64());
    let ended = if t.t_removed.is_some() {
        "the fault was removed"
    } else {
        "the fault"
    };
    if let (Some(t0), Some(b)) = (ttr_origin, t.verdict.as_ref().and_then(|v| v.ttr)) {
        let (a, z) = (t0 + b.lower.as_secs_f64(), t0 + b.upper.as_secs_f64());
        let _ = writeln!(
            o,
            "<rect class=\"ttr-bracket\" data-start=\"{a:.6}\" data-end=\"{z:.6}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>recovery happened between {} and {} after {ended}</title></rect>",
            f(x(a)),
            f(TOP - 6.0),
            f((x(z) - x(a)).max(1.0)),
            f(plot_h + 6.0),
            human(b.lower),
            human(b.upper)
        );
    }

    let mut y = TOP;
    for p in &t.probes {
        let _ = writeln!(
            o,
            "<g class=\"band\" data-probe=\"{}\"><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"lane\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            esc(&p.name),
            f(X0 - 8.0),
            f(y + ROW * 0.7),
            esc(&p.name),
            f(X0),
            f(y),
            f(WIDTH),
            f(ROW)
        );
        let st = &p.trace.stretches;
        for (i, s) in st.iter().enumerate() {
            let a = s.first.start.as_secs_f64();
            // A stretch lasts until the next one begins: the change happened in between.
            let z = st
                .get(i + 1)
                .map(|n| n.first.start)
                .unwrap_or(s.last.end)
                .as_secs_f64();
            let class = if s.ok { "ok" } else { "fail" };
            let why = s
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "<rect class=\"stretch {class}\" data-start=\"{a:.6}\" data-end=\"{z:.6}\" data-samples=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{} {} for {} samples{}</title></rect>",
                s.samples,
                f(x(a)),
                f(y),
                f((x(z) - x(a)).max(0.5)),
                f(ROW),
                esc(&p.name),
                if s.ok { "passing" } else { "failing" },
                s.samples,
                esc(&why)
            );
        }
        o.push_str("</g>\n");
        y += ROW + GAP;
    }

    for p in &t.pod_recovery {
        let Some(ti) = t_inject else { break };
        let abs = |d: Option<Duration>| d.map(|d| ti + d.as_secs_f64());
        let _ = writeln!(
            o,
            "<g class=\"pod\" data-pod=\"{}\"><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"lane\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            esc(&p.pod),
            f(X0 - 8.0),
            f(y + ROW * 0.7),
            esc(&short(&p.pod, 22)),
            f(X0),
            f(y),
            f(WIDTH),
            f(ROW)
        );
        let steps = [
            ("pending", abs(p.deleted).or(Some(ti)), abs(p.created)),
            ("scheduling", abs(p.created), abs(p.scheduled)),
            ("starting", abs(p.scheduled), abs(p.running)),
            ("readying", abs(p.running), abs(p.ready)),
        ];
        for (class, a, z) in steps {
            if let (Some(a), Some(z)) = (a, z) {
                let _ = writeln!(
                    o,
                    "<rect class=\"phase {class}\" data-start=\"{a:.6}\" data-end=\"{z:.6}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{class}: {:.3}s → {:.3}s</title></rect>",
                    f(x(a)),
                    f(y + 3.0),
                    f((x(z) - x(a)).max(1.0)),
                    f(ROW - 6.0),
                    a - ti,
                    z - ti
                );
            }
        }
        if let Some(ready) = abs(p.ready) {
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\">ready {}</text>",
                f(x(ready) + 4.0),
                f(y + ROW * 0.7),
                human(Duration::from_secs_f64(ready - ti))
            );
        }
        o.push_str("</g>\n");
        y += ROW + GAP;
    }

    // Markers: vertical lines over the whole plot with a label on top.
    let mut markers: Vec<(&str, String, f64, String)> = Vec::new();
    for e in &trial_events {
        let at = e.at.as_secs_f64();
        match &e.kind {
            EventKind::FaultReverted { fault, detail } => {
                markers.push(("revert", "revert".into(), at, format!("{fault}: {detail}")))
            }
            EventKind::RevertFailed { fault, error } => markers.push((
                "revert",
                "REVERT FAILED".into(),
                at,
                format!("{fault}: {error}"),
            )),
            EventKind::Recovered => markers.push((
                "judged",
                "judged".into(),
                at,
                "every recovery probe stable for stable-for".into(),
            )),
            EventKind::Aborted { reason } => {
                markers.push(("revert", "aborted".into(), at, reason.clone()))
            }
            EventKind::Mark { mark, text } => {
                markers.push(("mark", mark.to_string(), at, text.clone()))
            }
            _ => {}
        }
    }
    // A fault is drawn at the instant its target accepted it: the origin of TTD and TTR.
    for fr in &t.faults {
        markers.push((
            "inject",
            "fault".into(),
            fr.accepted.as_secs_f64(),
            format!("{}: {}", fr.fault, fr.detail),
        ));
    }
    if let (Some(ti), Some(v)) = (t_inject, t.verdict.as_ref()) {
        if let Some(d) = v.ttd {
            markers.push((
                "detected",
                "detected".into(),
                ti + d.as_secs_f64(),
                format!("first failing check, {} after the fault", human(d)),
            ));
        }
        if let (Some(b), Some(t0)) = (v.ttr, t.ttr_origin()) {
            markers.push((
                "recovered",
                "recovered".into(),
                t0.as_secs_f64() + b.estimate.as_secs_f64(),
                format!(
                    "time to recover {} ± {}",
                    human(b.estimate),
                    human(b.uncertainty())
                ),
            ));
        }
    }
    markers.sort_by(|a, b| a.2.total_cmp(&b.2));
    // Labels sit above the plot, each in the first lane where it overlaps no other label.
    let mut placed: Vec<(usize, f64, f64)> = Vec::new();
    for (class, label, at, title) in &markers {
        let mx = x(*at);
        let (a, z) = (mx, mx + 4.0 + label.chars().count() as f64 * 6.5);
        let lane = (0..LABEL_LANES)
            .find(|l| {
                !placed
                    .iter()
                    .any(|(pl, pa, pz)| pl == l && *pa < z && a < *pz)
            })
            .unwrap_or(LABEL_LANES - 1);
        placed.push((lane, a, z));
        let ly = 12.0 + lane as f64 * 13.0;
        let extra = if *class == "mark" {
            format!(" data-mark=\"{}\"", esc(label))
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "<g class=\"marker {class}\" data-t=\"{at:.6}\"{extra}><line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text><title>{} at {:.3}s: {}</title></g>",
            f(mx),
            f(mx),
            f(ly + 2.0),
            f(TOP + plot_h + 2.0),
            f(mx + 2.0),
            f(ly),
            esc(label),
            esc(label),
            at,
            esc(title)
        );
    }

    // Axis: seconds from the injection (what people talk about), ticks at round steps.
    let origin = t_inject.unwrap_or(t0);
    let step = nice_step((t1 - t0) / 8.0);
    let ay = TOP + plot_h + 26.0;
    let _ = writeln!(
        o,
        "<g class=\"axis\"><line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>",
        f(X0),
        f(X0 + WIDTH),
        f(ay - 10.0),
        f(ay - 10.0)
    );
    let first = ((t0 - origin) / step).ceil() as i64;
    let last = ((t1 - origin) / step).floor() as i64;
    for k in first..=last {
        let rel = k as f64 * step;
        let tx = x(origin + rel);
        let _ = writeln!(
            o,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            f(tx),
            f(tx),
            f(ay - 14.0),
            f(ay - 6.0),
            f(tx),
            f(ay + 4.0),
            tick_label(rel)
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">s after fault</text></g>",
        f(X0 - 8.0),
        f(ay + 4.0)
    );
    o.push_str("</svg>\n");
    o
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}

/// A round tick step (1, 2 or 5 × 10ⁿ) near `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    let n = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    n * mag
}

fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}
