//! `firedrill status`: per drill and environment, the last run, its outcome and TTR, the next
//! scheduled run, and why a drill is held back. Pure over a catalog and the run history.

use chrono::{DateTime, Utc};

use super::catalog::Entry;
use super::promotion::{self, Gate, RunSummary};

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub drill: String,
    pub environment: String,
    pub last_run: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub last_ttr: Option<std::time::Duration>,
    pub next_run: Option<DateTime<Utc>>,
    /// Empty when nothing holds the drill back.
    pub held: String,
}

pub fn rows(entries: &[Entry], history: &[RunSummary], now: DateTime<Utc>) -> Vec<Row> {
    entries
        .iter()
        .map(|e| {
            let last = history
                .iter()
                .filter(|r| r.experiment == e.experiment.name && r.environment == e.env.name)
                .max_by_key(|r| r.finished_at);
            let held = match promotion::gate(
                history,
                &e.experiment.name,
                &e.experiment.source.content_hash,
                &e.env,
                now,
            ) {
                Gate::Open => String::new(),
                Gate::Held(h) => h.to_string(),
            };
            let next_run = e
                .schedule
                .as_ref()
                .and_then(|s| super::next_open(s, &e.env.schedule, now));
            let held = match (&e.schedule, next_run, held.is_empty()) {
                (None, _, true) => "no schedule (runs on demand)".into(),
                (Some(_), None, true) => "no open tick ahead (windows or blackouts)".into(),
                _ => held,
            };
            Row {
                drill: e.experiment.name.clone(),
                environment: e.env.name.clone(),
                last_run: last.map(|r| r.finished_at),
                outcome: last.map(|r| r.outcome.to_string()),
                last_ttr: last.and_then(|r| r.ttr),
                next_run,
                held,
            }
        })
        .collect()
}

/// A plain table for the terminal.
pub fn render(rows: &[Row]) -> String {
    let mut t = tabled::builder::Builder::default();
    t.push_record([
        "drill",
        "env",
        "last run",
        "outcome",
        "last TTR",
        "next run",
        "held back",
    ]);
    let when = |d: Option<DateTime<Utc>>| {
        d.map_or("-".into(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    for r in rows {
        t.push_record([
            r.drill.clone(),
            r.environment.clone(),
            when(r.last_run),
            r.outcome.clone().unwrap_or_else(|| "-".into()),
            r.last_ttr
                .map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64())),
            when(r.next_run),
            if r.held.is_empty() {
                "-".into()
            } else {
                r.held.clone()
            },
        ]);
    }
    let mut table = t.build();
    table.with(tabled::settings::Style::blank());
    format!("{table}\n")
}
