//! History: every run record under a reports folder, per experiment and environment — runs over
//! time, MTTR with n/median/p90/max, whether recovery is trending slower or faster, and which
//! drills are overdue.
//!
//! Records are read by the one reader of the folder ([`super::store`]); the numbers come from
//! [`crate::analysis::summary`] and [`crate::analysis::trend`]. The summaries are pure
//! functions of the runs and of `now`; the rest of this file formats them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tabled::settings::Style;
use tabled::{Table, Tabled};

use super::html::{esc, CSS};
use super::record::Outcome;
use super::store::{self, StoredRun};
use crate::analysis::{summary, Stats};
use crate::timeline::human;

/// What history keeps of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub experiment: String,
    pub environment: String,
    pub started_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub objective: Duration,
    /// TTR estimates of the trials that had impact and recovered.
    pub ttrs: Vec<Duration>,
}

impl RunSummary {
    pub fn median_ttr(&self) -> Option<Duration> {
        crate::analysis::summary::median(&self.ttrs)
    }
}

impl From<StoredRun> for RunSummary {
    fn from(r: StoredRun) -> Self {
        RunSummary {
            ttrs: r.recovered_ttrs(),
            run_id: r.run_id,
            experiment: r.experiment,
            environment: r.environment,
            started_at: r.started_at,
            outcome: r.outcome,
            objective: r.objective,
        }
    }
}

/// Parse the fields history needs from one record's bytes ([`super::store::parse`]).
pub fn parse(bytes: &[u8]) -> Result<RunSummary, store::RecordError> {
    store::parse(bytes).map(RunSummary::from)
}

/// Read every record under `root` ([`super::store::read_runs`]); unreadable files are
/// returned beside the runs.
pub fn read_runs(root: &Path) -> (Vec<RunSummary>, Vec<(PathBuf, String)>) {
    let (runs, errors) = store::read_runs(root);
    (runs.into_iter().map(RunSummary::from).collect(), errors)
}

pub use super::store::record_paths;

impl Trend {
    pub fn word(&self) -> &'static str {
        match self.direction {
            Direction::Slower => "slower",
            Direction::Faster => "faster",
            Direction::Steady => "steady",
            Direction::TooFew => "—",
        }
    }

    /// The trend in plain words, with the evidence.
    pub fn explain(&self) -> String {
        if self.direction == Direction::TooFew {
            return format!(
                "too few runs with a recovery time for a trend ({} of {MIN_TREND_RUNS})",
                self.runs
            );
        }
        let d = |s: f64| human(Duration::from_secs_f64(s.max(0.0)));
        let pct = self.change_percent();
        let week = self.slope_per_week();
        let verb = match self.direction {
            Direction::Slower => "recovery is getting slower",
            Direction::Faster => "recovery is getting faster",
            _ => "recovery time is steady",
        };
        let support = if self.direction == Direction::Steady {
            format!("no clear trend, Mann–Kendall p={:.2}", self.p_value)
        } else {
            format!("Mann–Kendall p={:.3}", self.p_value)
        };
        format!(
            "{verb}: fitted {} → {} ({pct:+.0}%) over the last {} runs (Theil–Sen slope {}{}/week; {support})",
            d(self.from),
            d(self.to),
            self.runs,
            if week < 0.0 { "-" } else { "+" },
            d(week.abs())
        )
    }
}

pub use crate::analysis::trend::{
    mann_kendall, theil_sen, Direction, Trend, MIN_TREND_RUNS, STEADY_WITHIN, TREND_ALPHA,
    TREND_WINDOW,
};

/// The trend of a drill's recent runs (sorted by time): per-run median TTR over days
/// ([`crate::analysis::trend::fit`]).
pub fn trend(runs: &[RunSummary]) -> Trend {
    let pts: Vec<(DateTime<Utc>, f64)> = runs
        .iter()
        .filter_map(|r| r.median_ttr().map(|t| (r.started_at, t.as_secs_f64())))
        .collect();
    crate::analysis::trend::fit(&pts)
}

/// One drill (experiment × environment) over time.
#[derive(Debug, Clone)]
pub struct Drill {
    pub experiment: String,
    pub environment: String,
    /// Sorted by start time.
    pub runs: Vec<RunSummary>,
    /// Over every recovered trial of every run.
    pub mttr: Option<Stats>,
    pub passed: usize,
    pub trend: Trend,
    /// How long since the last run, when longer than the threshold.
    pub overdue: Option<Duration>,
}

impl Drill {
    pub fn last(&self) -> Option<&RunSummary> {
        self.runs.last()
    }
}

/// Group runs per experiment and environment, with their numbers as of `now`.
pub fn summarize(runs: Vec<RunSummary>, now: DateTime<Utc>, overdue_after: Duration) -> Vec<Drill> {
    let mut groups: BTreeMap<(String, String), Vec<RunSummary>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.experiment.clone(), r.environment.clone()))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((experiment, environment), mut runs)| {
            runs.sort_by(|a, b| {
                a.started_at
                    .cmp(&b.started_at)
                    .then(a.run_id.cmp(&b.run_id))
            });
            let since = runs
                .last()
                .map(|r| (now - r.started_at).to_std().unwrap_or_default())
                .unwrap_or_default();
            Drill {
                mttr: summary::mttr_over_runs(runs.iter().map(|r| r.ttrs.as_slice())),
                passed: runs.iter().filter(|r| r.outcome == Outcome::Passed).count(),
                trend: trend(&runs),
                overdue: summary::overdue(since, overdue_after),
                experiment,
                environment,
                runs,
            }
        })
        .collect()
}

/// A duration in days and hours for "last run" columns.
pub fn ago(d: Duration) -> String {
    let h = d.as_secs() / 3600;
    match (h / 24, h % 24) {
        (0, 0) => format!("{}m", d.as_secs() / 60),
        (0, h) => format!("{h}h"),
        (days, _) => format!("{days}d"),
    }
}

fn stats_cells(m: &Option<Stats>) -> [String; 4] {
    match m {
        Some(m) => [
            format!("{} (n={})", human(m.mean), m.n),
            human(m.median),
            human(m.p90),
            human(m.max),
        ],
        None => ["—".into(), "—".into(), "—".into(), "—".into()],
    }
}

#[derive(Tabled)]
struct Row {
    drill: String,
    env: String,
    runs: String,
    #[tabled(rename = "last run")]
    last: String,
    #[tabled(rename = "MTTR (n)")]
    mttr: String,
    median: String,
    p90: String,
    max: String,
    trend: String,
    overdue: String,
}

fn row(d: &Drill, now: DateTime<Utc>) -> Row {
    let [mttr, median, p90, max] = stats_cells(&d.mttr);
    let last = d
        .last()
        .map(|r| {
            format!(
                "{} ago, {}",
                ago((now - r.started_at).to_std().unwrap_or_default()),
                r.outcome
            )
        })
        .unwrap_or_default();
    Row {
        drill: d.experiment.clone(),
        env: d.environment.clone(),
        runs: format!("{} ({} passed)", d.runs.len(), d.passed),
        last,
        mttr,
        median,
        p90,
        max,
        trend: d.trend.word().into(),
        overdue: d
            .overdue
            .map(|s| format!("OVERDUE ({} since)", ago(s)))
            .unwrap_or_else(|| "no".into()),
    }
}

/// The terminal table, then one line of evidence per drill with a trend or overdue.
pub fn render_table(drills: &[Drill], now: DateTime<Utc>, overdue_after: Duration) -> String {
    if drills.is_empty() {
        return "no run records found\n".into();
    }
    let rows: Vec<Row> = drills.iter().map(|d| row(d, now)).collect();
    let mut out = Table::new(rows).with(Style::rounded()).to_string();
    out.push('\n');
    for d in drills {
        out.push_str(&format!(
            "{} [{}]: {}\n",
            d.experiment,
            d.environment,
            d.trend.explain()
        ));
    }
    let overdue: Vec<&Drill> = drills.iter().filter(|d| d.overdue.is_some()).collect();
    if !overdue.is_empty() {
        out.push_str(&format!(
            "{} drill(s) without a run for more than {}\n",
            overdue.len(),
            humantime::format_duration(overdue_after)
        ));
    }
    out
}

pub fn render_markdown(drills: &[Drill], now: DateTime<Utc>, overdue_after: Duration) -> String {
    let mut o = String::from("# Drill history\n\n");
    if drills.is_empty() {
        o.push_str("No run records found.\n");
        return o;
    }
    o.push_str("| drill | env | runs | last run | MTTR (n) | median | p90 | max | trend | overdue |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for d in drills {
        let r = row(d, now);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.drill, r.env, r.runs, r.last, r.mttr, r.median, r.p90, r.max, r.trend, r.overdue
        );
    }
    o.push('\n');
    for d in drills {
        let _ = writeln!(
            o,
            "- **{}** [{}]: {}",
            d.experiment,
            d.environment,
            d.trend.explain()
        );
    }
    let _ = writeln!(
        o,
        "\nOverdue: no run for more than {}. As of {}.",
        humantime::format_duration(overdue_after),
        now.format("%Y-%m-%d %H:%M UTC")
    );
    o
}

pub fn render_html(drills: &[Drill], now: DateTime<Utc>, overdue_after: Duration) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Drill history</title><style>{CSS}</style></head><body><main>\n<h1>Drill history</h1>\n<p class=\"muted\">As of {}; a drill is overdue after {} without a run.</p>\n",
        now.format("%Y-%m-%d %H:%M UTC"),
        humantime::format_duration(overdue_after)
    );
    if drills.is_empty() {
        o.push_str("<p>No run records found.</p></main></body></html>\n");
        return o;
    }
    o.push_str("<table class=\"history\"><tr><th>drill</th><th>env</th><th>runs</th><th>last run</th><th>MTTR (n)</th><th>median</th><th>p90</th><th>max</th><th>trend</th><th>overdue</th></tr>\n");
    for (i, d) in drills.iter().enumerate() {
        let r = row(d, now);
        let overdue = if d.overdue.is_some() {
            format!("<span class=\"bad\">{}</span>", esc(&r.overdue))
        } else {
            esc(&r.overdue)
        };
        let _ = writeln!(
            o,
            "<tr data-drill=\"{}\" data-env=\"{}\"><td><a href=\"#drill-{i}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{overdue}</td></tr>",
            esc(&d.experiment),
            esc(&d.environment),
            esc(&r.drill),
            esc(&r.env),
            esc(&r.runs),
            esc(&r.last),
            esc(&r.mttr),
            esc(&r.median),
            esc(&r.p90),
            esc(&r.max),
            esc(&r.trend)
        );
    }
    o.push_str("</table>\n");
    for (i, d) in drills.iter().enumerate() {
        let _ = writeln!(
            o,
            "<h2 id=\"drill-{i}\">{} <span class=\"muted\">[{}]</span></h2><p>{}</p>",
            esc(&d.experiment),
            esc(&d.environment),
            esc(&d.trend.explain())
        );
        o.push_str(&ttr_chart(d));
    }
    o.push_str("</main></body></html>\n");
    o
}

/// TTR over time: a dot per recovered trial, the per-run median joined by a line, the
/// objective as a dashed line and the fitted trend.
fn ttr_chart(d: &Drill) -> String {
    let (x0, w, top, h) = (60.0, 860.0, 14.0, 200.0);
    let mut o = String::new();
    let points: Vec<(DateTime<Utc>, Vec<f64>)> = d
        .runs
        .iter()
        .map(|r| {
            (
                r.started_at,
                r.ttrs.iter().map(|t| t.as_secs_f64()).collect(),
            )
        })
        .collect();
    let (Some(first), Some(last)) = (d.runs.first(), d.runs.last()) else {
        return o;
    };
    let t0 = first.started_at;
    let span = ((last.started_at - t0).num_milliseconds() as f64 / 1000.0).max(1.0);
    let objective = last.objective.as_secs_f64();
    let ymax = points
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(objective, f64::max)
        * 1.1;
    let ymax = if ymax > 0.0 { ymax } else { 1.0 };
    let x = |at: DateTime<Utc>| x0 + (at - t0).num_milliseconds() as f64 / 1000.0 / span * w;
    let y = |v: f64| top + h - v / ymax * h;
    let _ = writeln!(
        o,
        "<svg class=\"ttr-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"100%\" data-drill=\"{}\" data-env=\"{}\" data-ymax=\"{ymax:.6}\">",
        x0 + w + 20.0,
        top + h + 34.0,
        esc(&d.experiment),
        esc(&d.environment)
    );
    let _ = writeln!(
        o,
        "<g class=\"axis\"><line x1=\"{x0}\" x2=\"{x0}\" y1=\"{top}\" y2=\"{}\"/><line x1=\"{x0}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>",
        top + h,
        x0 + w,
        top + h,
        top + h
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            y(v) + 4.0,
            human(Duration::from_secs_f64(v))
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"{x0}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></g>",
        top + h + 16.0,
        t0.format("%Y-%m-%d"),
        x0 + w,
        top + h + 16.0,
        last.started_at.format("%Y-%m-%d")
    );
    let _ = writeln!(
        o,
        "<g class=\"objective\"><line x1=\"{x0}\" x2=\"{}\" y1=\"{:.2}\" y2=\"{:.2}\" style=\"stroke:#c0392b;stroke-dasharray:6 4\"/><text x=\"{}\" y=\"{:.2}\" text-anchor=\"end\" style=\"fill:#c0392b\">objective {}</text></g>",
        x0 + w,
        y(objective),
        y(objective),
        x0 + w,
        y(objective) - 4.0,
        human(last.objective)
    );
    let mut line = String::new();
    for r in &d.runs {
        if let Some(m) = r.median_ttr() {
            let _ = write!(line, "{:.2},{:.2} ", x(r.started_at), y(m.as_secs_f64()));
        }
    }
    if !line.is_empty() {
        let _ = writeln!(
            o,
            "<polyline class=\"median\" points=\"{}\" style=\"fill:none;stroke:#2b6cb0;stroke-width:1.5\"/>",
            line.trim_end()
        );
    }
    for (r, (at, vals)) in d.runs.iter().zip(&points) {
        for v in vals {
            let color = if *v > r.objective.as_secs_f64() {
                "#c0392b"
            } else {
                "#2b6cb0"
            };
            let _ = writeln!(
                o,
                "<circle class=\"run\" data-run=\"{}\" data-ttr=\"{v:.6}\" cx=\"{:.2}\" cy=\"{:.2}\" r=\"3\" style=\"fill:{color}\"><title>{} {}: TTR {}</title></circle>",
                esc(&r.run_id),
                x(*at),
                y(*v),
                r.started_at.format("%Y-%m-%d %H:%M"),
                r.outcome,
                human(Duration::from_secs_f64(*v))
            );
        }
        if vals.is_empty() {
            let _ = writeln!(
                o,
                "<circle class=\"run no-ttr\" data-run=\"{}\" cx=\"{:.2}\" cy=\"{:.2}\" r=\"3\" style=\"fill:none;stroke:#6b7280\"><title>{} {}: no recovery time</title></circle>",
                esc(&r.run_id),
                x(*at),
                top + h,
                r.started_at.format("%Y-%m-%d %H:%M"),
                r.outcome
            );
        }
    }
    if d.trend.direction != Direction::TooFew {
        let recent: Vec<&RunSummary> = d.runs.iter().filter(|r| !r.ttrs.is_empty()).collect();
        let window = &recent[recent.len().saturating_sub(TREND_WINDOW)..];
        if let (Some(a), Some(b)) = (window.first(), window.last()) {
            let _ = writeln!(
                o,
                "<line class=\"trend {}\" x1=\"{:.2}\" x2=\"{:.2}\" y1=\"{:.2}\" y2=\"{:.2}\" style=\"stroke:#dd6b20;stroke-width:2;stroke-dasharray:3 3\"/>",
                d.trend.word(),
                x(a.started_at),
                x(b.started_at),
                y(d.trend.from),
                y(d.trend.to)
            );
        }
    }
    o.push_str("</svg>\n");
    o
}

/// How `firedrill report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Html,
    /// The numbers per drill as data.
    Json,
    Yaml,
}

/// One drill over time, as data (`report --format json|yaml`): the numbers the table shows.
#[derive(serde::Serialize)]
struct DrillView<'a> {
    experiment: &'a str,
    environment: &'a str,
    runs: usize,
    passed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    last: Option<LastRun<'a>>,
    /// Over every recovered trial of every run.
    #[serde(skip_serializing_if = "Option::is_none")]
    mttr: Option<&'a Stats>,
    trend: TrendView,
    /// How long since the last run, when longer than the threshold.
    #[serde(
        rename = "overdue_s",
        with = "crate::timeline::secs::opt",
        skip_serializing_if = "Option::is_none"
    )]
    overdue: Option<Duration>,
}

#[derive(serde::Serialize)]
struct LastRun<'a> {
    run_id: &'a str,
    started_at: DateTime<Utc>,
    outcome: Outcome,
    #[serde(
        rename = "median_ttr_s",
        with = "crate::timeline::secs::opt",
        skip_serializing_if = "Option::is_none"
    )]
    median_ttr: Option<Duration>,
}

#[derive(serde::Serialize)]
struct TrendView {
    /// slower, faster, steady, or too-few (runs with a TTR).
    direction: &'static str,
    runs: usize,
    slope_s_per_week: f64,
    change_percent: f64,
    p_value: f64,
}

fn data(drills: &[Drill], format: super::text::DataFormat) -> Result<String, super::ReportError> {
    let views: Vec<DrillView> = drills
        .iter()
        .map(|d| DrillView {
            experiment: &d.experiment,
            environment: &d.environment,
            runs: d.runs.len(),
            passed: d.passed,
            last: d.last().map(|r| LastRun {
                run_id: &r.run_id,
                started_at: r.started_at,
                outcome: r.outcome,
                median_ttr: r.median_ttr(),
            }),
            mttr: d.mttr.as_ref(),
            trend: TrendView {
                direction: match d.trend.direction {
                    Direction::TooFew => "too-few",
                    _ => d.trend.word(),
                },
                runs: d.trend.runs,
                slope_s_per_week: d.trend.slope_per_week(),
                change_percent: d.trend.change_percent(),
                p_value: d.trend.p_value,
            },
            overdue: d.overdue,
        })
        .collect();
    super::text::data(&views, format).map_err(super::ReportError::Encode)
}

/// `firedrill report`: read the folder, summarise, render to stdout or `out`.
pub fn command(
    dir: &Path,
    format: Format,
    out: Option<&Path>,
    overdue_after: Duration,
    as_of: Option<DateTime<Utc>>,
) -> Result<(), super::ReportError> {
    if !dir.exists() {
        return Err(super::ReportError::Read {
            path: dir.to_path_buf(),
            message: "no such reports folder".into(),
        });
    }
    let (runs, errors) = read_runs(dir);
    render_command(runs, &errors, format, out, overdue_after, as_of)
}

/// `firedrill report` over runs already read (from a reports folder or the shared store):
/// the same runs give the same output, whichever they came from.
pub fn render_command(
    runs: Vec<RunSummary>,
    errors: &[(PathBuf, String)],
    format: Format,
    out: Option<&Path>,
    overdue_after: Duration,
    as_of: Option<DateTime<Utc>>,
) -> Result<(), super::ReportError> {
    for (p, e) in errors.iter().take(5) {
        eprintln!("warning: skipped {}: {e}", p.display());
    }
    if errors.len() > 5 {
        eprintln!(
            "warning: skipped {} more unreadable records",
            errors.len() - 5
        );
    }
    let now = as_of.unwrap_or_else(Utc::now);
    let drills = summarize(runs, now, overdue_after);
    let text = match format {
        Format::Table => render_table(&drills, now, overdue_after),
        Format::Markdown => render_markdown(&drills, now, overdue_after),
        Format::Html => render_html(&drills, now, overdue_after),
        Format::Json => data(&drills, super::text::DataFormat::Json)?,
        Format::Yaml => data(&drills, super::text::DataFormat::Yaml)?,
    };
    match out {
        Some(p) => super::write_atomic(p, text.as_bytes()),
        None => {
            crate::safety::redact::print_stdout(&text);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exp: &str, env: &str, day: i64, ttrs_ms: &[u64]) -> RunSummary {
        RunSummary {
            run_id: format!("{exp}-{env}-{day}"),
            experiment: exp.into(),
            environment: env.into(),
            started_at: DateTime::from_timestamp(1_700_000_000 + day * 86_400, 0).unwrap(),
            outcome: Outcome::Passed,
            objective: Duration::from_secs(5),
            ttrs: ttrs_ms.iter().map(|&m| Duration::from_millis(m)).collect(),
        }
    }

    fn now(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + day * 86_400, 0).unwrap()
    }

    #[test]
    fn noise_is_not_a_trend() {
        // A scrambled but flat series: Theil–Sen finds a slope, Mann–Kendall says it is noise.
        let ttrs = [1300, 1000, 1500, 1100, 1250, 1450, 1050, 1350, 1200, 1400];
        let runs: Vec<_> = ttrs
            .iter()
            .enumerate()
            .map(|(d, t)| run("a", "s", d as i64, &[*t]))
            .collect();
        let t = trend(&runs);
        assert_eq!(t.direction, Direction::Steady, "{}", t.explain());
        assert!(t.p_value > 0.05);
    }

    #[test]
    fn slower_faster_steady_and_too_few() {
        let slower: Vec<_> = (0..8)
            .map(|d| run("a", "s", d, &[1000 + d as u64 * 200]))
            .collect();
        let t = trend(&slower);
        assert_eq!(t.direction, Direction::Slower);
        assert!(t.explain().contains("slower"), "{}", t.explain());
        assert!((t.slope_per_day - 0.2).abs() < 1e-9);
        let faster: Vec<_> = (0..8)
            .map(|d| run("a", "s", d, &[3000 - d as u64 * 200]))
            .collect();
        assert_eq!(trend(&faster).direction, Direction::Faster);
        let steady: Vec<_> = (0..8)
            .map(|d| run("a", "s", d, &[1000 + (d as u64 % 2) * 20]))
            .collect();
        assert_eq!(trend(&steady).direction, Direction::Steady);
        assert_eq!(trend(&slower[..3]).direction, Direction::TooFew);
    }

    #[test]
    fn groups_per_experiment_and_environment_with_overdue_flags() {
        let runs = vec![
            run("checkout", "staging", 0, &[1000, 1200]),
            run("checkout", "staging", 9, &[1400]),
            run("checkout", "production", 1, &[2000]),
            run("db", "staging", 2, &[]),
        ];
        let drills = summarize(runs, now(10), Duration::from_secs(7 * 86_400));
        let names: Vec<_> = drills
            .iter()
            .map(|d| (d.experiment.as_str(), d.environment.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("checkout", "production"),
                ("checkout", "staging"),
                ("db", "staging")
            ]
        );
        let staging = &drills[1];
        assert_eq!(staging.mttr.unwrap().n, 3);
        assert_eq!(staging.mttr.unwrap().mean, Duration::from_millis(1200));
        assert!(staging.overdue.is_none());
        assert_eq!(drills[0].overdue, Some(Duration::from_secs(9 * 86_400)));
        assert!(drills[2].mttr.is_none());
        let table = render_table(&drills, now(10), Duration::from_secs(7 * 86_400));
        assert!(table.contains("OVERDUE (9d since)"), "{table}");
        assert!(table.contains("1.200s (n=3)"), "{table}");
    }
}
