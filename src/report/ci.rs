//! Views for CI: JUnit XML (one testcase per trial and per probe of each trial, TTR/TTD as
//! properties, failure messages that say what missed), the Markdown job summary, and the
//! baseline the regression gate compares against.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::history;
use super::record::{RunRecord, TrialOutcome};
use super::text::{headline, opt_text, trial_outcome_text, ttr_text};
use crate::analysis::regression::Comparison;
use crate::timeline::{human, secs::round_us};

fn secs_prop(name: &str, d: Duration) -> Property {
    Property::new(name, format!("{}", round_us(d)))
}

fn failure(message: String, ty: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
    s.set_message(message).set_type(ty);
    s
}

/// One probe's testcase: its status, and its numbers as properties.
fn probe_case(
    name: String,
    class: &str,
    status: TestCaseStatus,
    pv: &crate::analysis::ProbeVerdict,
    recovery: bool,
) -> TestCase {
    let mut case = TestCase::new(name, status);
    case.set_classname(class.to_string());
    if let Some(b) = pv.ttr {
        case.add_property(secs_prop("ttr_s", b.estimate));
        case.add_property(secs_prop("ttr_uncertainty_s", b.uncertainty()));
    }
    if let Some(d) = pv.ttd {
        case.add_property(secs_prop("ttd_s", d));
    }
    case.add_property(secs_prop("downtime_s", pv.downtime));
    case.add_property(Property::new(
        "availability",
        format!("{:.6}", pv.availability),
    ));
    case.add_property(Property::new("recovery_probe", recovery.to_string()));
    case
}

/// The run as JUnit XML. The regression gate, when given, is one more testcase.
pub fn junit(
    r: &RunRecord,
    gate: Option<&Comparison>,
) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("firedrill");
    let mut suite = TestSuite::new(format!("{} [{}]", r.experiment.name, r.environment));
    suite.add_property(Property::new("run_id", r.run_id.clone()));
    suite.add_property(Property::new("outcome", r.outcome.to_string()));
    suite.add_property(Property::new("seed", r.seed.to_string()));
    suite.add_property(secs_prop("objective_s", r.recovery.objective));
    suite.set_timestamp(r.started_at);
    suite.set_time((r.finished_at - r.started_at).to_std().unwrap_or_default());
    let class = format!("firedrill.{}.{}", r.experiment.name, r.environment);
    let objective = human(r.recovery.objective);
    for t in &r.trials {
        let v = t.verdict.as_ref();
        let ttr = v.and_then(|v| v.ttr);
        let status = match t.outcome {
            TrialOutcome::Recovered => TestCaseStatus::success(),
            TrialOutcome::MissedObjective => failure(
                format!(
                    "recovered in {} (truth in [{}, {}]), missing the {objective} objective",
                    ttr_text(&ttr),
                    opt_text(ttr.map(|b| b.lower)),
                    opt_text(ttr.map(|b| b.upper)),
                ),
                "missed-objective",
            ),
            TrialOutcome::NotRecovered => failure(
                format!(
                    "did not recover within the {} timeout",
                    human(r.recovery.timeout)
                ),
                "not-recovered",
            ),
            TrialOutcome::NotSteadyAfter => failure(
                "recovered, but the steady state did not hold after reverting".into(),
                "not-steady-after",
            ),
            TrialOutcome::Aborted | TrialOutcome::Inconclusive => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(format!("{}: {}", trial_outcome_text(t.outcome), r.reason))
                    .set_type(trial_outcome_text(t.outcome));
                s
            }
        };
        let mut case = TestCase::new(format!("trial {}", t.index), status);
        case.set_classname(class.clone());
        if let (Some(a), Some(b)) = (t.t_inject, t.t_judged) {
            case.set_time(b.saturating_sub(a));
        }
        if let Some(b) = ttr {
            case.add_property(secs_prop("ttr_s", b.estimate));
            case.add_property(secs_prop("ttr_uncertainty_s", b.uncertainty()));
        }
        if let Some(d) = v.and_then(|v| v.ttd) {
            case.add_property(secs_prop("ttd_s", d));
        }
        case.add_property(secs_prop("objective_s", r.recovery.objective));
        suite.add_test_case(case);

        for p in &t.probes {
            let pv = &p.verdict;
            let recovery = r.recovery.probes.contains(&p.name);
            let status = if !recovery || pv.recovered {
                TestCaseStatus::success()
            } else if pv.impact() {
                failure(
                    format!(
                        "{} was still failing when trial {} was judged ({} of {} checks failed, first: {})",
                        p.name,
                        t.index,
                        pv.failed,
                        pv.samples,
                        pv.first_failure.as_deref().unwrap_or("failed")
                    ),
                    "not-recovered",
                )
            } else {
                failure(
                    format!("{} was never proven stable after the fault", p.name),
                    "not-recovered",
                )
            };
            let Some((last, earlier)) = p.steps.split_last() else {
                let name = format!("trial {} / probe {}", t.index, p.name);
                suite.add_test_case(probe_case(name, &class, status, pv, recovery));
                continue;
            };
            // A scenario's steps, one testcase each: an earlier step informs (the next step
            // may start before the system healed, on purpose); the last decides, as the probe.
            for step in earlier {
                let name = format!(
                    "trial {} / {} / probe {}",
                    t.index,
                    step.faults.join("+"),
                    p.name
                );
                let mut case = probe_case(
                    name,
                    &class,
                    TestCaseStatus::success(),
                    &step.verdict,
                    recovery,
                );
                case.add_property(Property::new(
                    "recovered_before_next_step",
                    step.verdict.recovered.to_string(),
                ));
                suite.add_test_case(case);
            }
            let name = format!(
                "trial {} / {} / probe {}",
                t.index,
                last.faults.join("+"),
                p.name
            );
            suite.add_test_case(probe_case(name, &class, status, &last.verdict, recovery));
        }
    }
    if !r.faults_left.is_empty() {
        let left: Vec<String> = r.faults_left.iter().map(|f| f.describe()).collect();
        let status = failure(
            format!("fault left in place: {}", left.join("; ")),
            "fault-left-in-place",
        );
        let mut case = TestCase::new("every fault reverted", status);
        case.set_classname(class.clone());
        suite.add_test_case(case);
    }
    if let Some(g) = gate {
        let status = if g.failed() {
            failure(g.explain(), "recovery-regression")
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new("recovery regression against the baseline", status);
        case.set_classname(class);
        case.add_property(Property::new("p_value", format!("{:.6}", g.p_value)));
        case.add_property(Property::new("median_ratio", format!("{:.6}", g.ratio)));
        case.add_property(Property::new("margin", format!("{:.6}", g.margin)));
        if !g.failed() {
            case.set_system_out(g.explain());
        }
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.to_string()
}

/// Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): the verdict, the trials, the gate.
pub fn summary(r: &RunRecord, gate: Option<&Comparison>, report_path: Option<&Path>) -> String {
    let icon = match r.outcome {
        super::record::Outcome::Passed => "✅",
        super::record::Outcome::Failed => "❌",
        _ => "⚠️",
    };
    let mut o = format!(
        "### {icon} {} [{}] — {}\n\n**{}**\n\n{}\n\n",
        r.experiment.name,
        r.environment,
        r.outcome,
        headline(r),
        r.reason
    );
    o.push_str("| trial | outcome | time to detect | time to recover | truth lies in |\n|---|---|---|---|---|\n");
    for t in &r.trials {
        let v = t.verdict.as_ref();
        let ttr = v.and_then(|v| v.ttr);
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            t.index,
            trial_outcome_text(t.outcome),
            opt_text(v.and_then(|v| v.ttd)),
            ttr_text(&ttr),
            ttr.map(|b| format!("[{}, {}]", human(b.lower), human(b.upper)))
                .unwrap_or_else(|| "—".into())
        ));
    }
    if let Some(g) = gate {
        use crate::analysis::regression::Verdict;
        let mark = match g.verdict {
            Verdict::Regressed => "❌",
            Verdict::WithinNoise => "✅",
            Verdict::TooFewSamples | Verdict::NoData => "⚠️",
        };
        o.push_str(&format!("\n{mark} **Regression gate:** {}\n", g.explain()));
    }
    if let Some(p) = report_path {
        o.push_str(&format!(
            "\nRecord: `{}` (HTML beside it). Seed {} reproduces the target choice.\n",
            p.display(),
            r.seed
        ));
    }
    o.push('\n');
    o
}

/// The baseline's trial TTRs: from one record file, or from every record of the same
/// experiment and environment under a folder. Returns the TTRs and how many runs they came from.
pub fn baseline_ttrs(
    path: &Path,
    experiment: &str,
    environment: &str,
    exclude_run: &str,
) -> Result<(Vec<Duration>, usize), String> {
    if !path.exists() {
        return Err(format!("baseline {} does not exist", path.display()));
    }
    let (runs, errors) = history::read_runs(path);
    if path.is_file() {
        if let Some((p, e)) = errors.first() {
            return Err(format!("cannot read baseline {}: {e}", p.display()));
        }
    }
    Ok(baseline_of(
        runs,
        path.is_file(),
        experiment,
        environment,
        exclude_run,
    ))
}

/// The baseline's trial TTRs from runs already read (a folder's or the shared store's): every
/// run, when they are one chosen record (`one`), else those of the same experiment and
/// environment, never `exclude_run` itself.
pub fn baseline_of(
    runs: Vec<history::RunSummary>,
    one: bool,
    experiment: &str,
    environment: &str,
    exclude_run: &str,
) -> (Vec<Duration>, usize) {
    let chosen: Vec<_> = runs
        .into_iter()
        .filter(|r| r.run_id != exclude_run)
        .filter(|r| one || (r.experiment == experiment && r.environment == environment))
        .collect();
    let n = chosen.len();
    (chosen.into_iter().flat_map(|r| r.ttrs).collect(), n)
}
