//! The one reader of a reports folder: every run record under it, read with a lean view that
//! keeps only what history, the regression gate's baseline and the promotion gate need (serde
//! skips the rest, traces and events included, without building them), parsed on every core,
//! so a folder of ten thousand runs reads in well under a second.
//!
//! Views of the folder ([`super::history::RunSummary`],
//! [`crate::schedule::promotion::RunSummary`]) are projections of [`StoredRun`]; the numbers
//! they carry come from [`crate::analysis::summary`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::record::{FaultLeft, Outcome, Summary, SCHEMA};
use crate::analysis::{summary, Bracket};
use crate::timeline::secs;

/// What is kept of one run record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    pub run_id: String,
    pub experiment: String,
    /// The experiment file's content hash (its version); empty in hand-written records.
    pub content_hash: String,
    pub environment: String,
    pub started_at: DateTime<Utc>,
    /// `started_at` in records without it.
    pub finished_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub objective: Duration,
    /// Per trial with an injection: whether it recovered, and its TTR bracket.
    pub trials: Vec<StoredVerdict>,
    /// MTTR and TTD as the run computed them (its record's `summary`).
    pub mttr_mean: Option<Duration>,
    pub ttd_mean: Option<Duration>,
    pub faults_left: Vec<FaultLeft>,
}

/// What is kept of one trial's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct StoredVerdict {
    pub ttr: Option<Bracket>,
    pub recovered: bool,
}

impl StoredRun {
    /// TTR estimates of the trials that count towards MTTR ([`summary::counted_ttr`]).
    pub fn recovered_ttrs(&self) -> Vec<Duration> {
        self.trials
            .iter()
            .filter_map(|v| summary::counted_ttr(v.recovered, v.ttr))
            .collect()
    }
}

#[derive(Deserialize)]
struct Lean {
    schema: String,
    run_id: String,
    experiment: LeanExperiment,
    environment: String,
    started_at: DateTime<Utc>,
    #[serde(default)]
    finished_at: Option<DateTime<Utc>>,
    outcome: Outcome,
    recovery: LeanRecovery,
    #[serde(default)]
    summary: Option<Summary>,
    trials: Vec<LeanTrial>,
    #[serde(default)]
    faults_left: Vec<FaultLeft>,
}

#[derive(Deserialize)]
struct LeanExperiment {
    name: String,
    #[serde(default)]
    content_hash: String,
}

#[derive(Deserialize)]
struct LeanRecovery {
    #[serde(rename = "objective_s", with = "secs")]
    objective: Duration,
}

#[derive(Deserialize)]
struct LeanTrial {
    verdict: Option<StoredVerdict>,
}

/// Why a file of the reports folder is not a record this version reads.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a run record")]
    Json(#[source] serde_json::Error),
    #[error("schema `{0}` is not the supported `{SCHEMA}`")]
    Schema(String),
}

/// Parse what is kept of one record from its bytes.
pub fn parse(bytes: &[u8]) -> Result<StoredRun, RecordError> {
    // Most of a record is probe traces and events, which no reader of the folder looks at.
    // Records are written pretty-printed by `report::write`, so those parts can be cut out by
    // their indentation before parsing; anything unexpected falls back to parsing the whole
    // file.
    let l: Lean = match skim(bytes).map(|b| serde_json::from_str::<Lean>(&b)) {
        Some(Ok(l)) => l,
        _ => serde_json::from_slice(bytes).map_err(RecordError::Json)?,
    };
    stored(l)
}

fn stored(l: Lean) -> Result<StoredRun, RecordError> {
    if l.schema != SCHEMA {
        return Err(RecordError::Schema(l.schema));
    }
    Ok(StoredRun {
        run_id: l.run_id,
        experiment: l.experiment.name,
        content_hash: l.experiment.content_hash,
        environment: l.environment,
        finished_at: l.finished_at.unwrap_or(l.started_at),
        started_at: l.started_at,
        outcome: l.outcome,
        objective: l.recovery.objective,
        trials: l.trials.into_iter().filter_map(|t| t.verdict).collect(),
        mttr_mean: l.summary.as_ref().and_then(|s| s.mttr).map(|s| s.mean),
        ttd_mean: l.summary.as_ref().and_then(|s| s.ttd).map(|s| s.mean),
        faults_left: l.faults_left,
    })
}

/// The record without its top-level `events` and without each trial's `probes` (keeping the
/// `faults_left` written after the events), relying on the layout of
/// `serde_json::to_vec_pretty` (two spaces per level). `None` when the layout is not the
/// expected one. (`str::find` runs std's optimised substring search.)
fn skim(bytes: &[u8]) -> Option<String> {
    const EVENTS: &str = ",\n  \"events\": [";
    const PROBES: &str = ",\n      \"probes\": [\n";
    const PROBES_END: &str = "\n      ]";
    const FAULTS_LEFT: &str = ",\n  \"faults_left\": [";
    const TOP_END: &str = "\n  ]";
    let text = std::str::from_utf8(bytes).ok()?;
    let events = text.find(EVENTS)?;
    let head = &text[..events];
    let mut out = String::with_capacity(head.len() / 4);
    let mut rest = head;
    while let Some(p) = rest.find(PROBES) {
        out.push_str(&rest[..p]);
        let after = &rest[p + PROBES.len()..];
        rest = &after[after.find(PROBES_END)? + PROBES_END.len()..];
    }
    out.push_str(rest);
    // A key at two spaces' indentation can only be a top-level one (a string's newlines are
    // escaped), and `faults_left` is written near the end.
    if let Some(f) = text[events..].rfind(FAULTS_LEFT).map(|f| events + f) {
        let len = text[f..].find(TOP_END)? + TOP_END.len();
        out.push_str(&text[f..f + len]);
    }
    out.push_str("\n}");
    Some(out)
}

/// Every `*.json` under `root` (or `root` itself when it is a file).
pub fn record_paths(root: &Path) -> Vec<PathBuf> {
    if root.is_file() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) if p.extension().is_some_and(|x| x == "json") => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Read every record under `root` in parallel; unreadable files are returned beside the runs.
pub fn read_runs(root: &Path) -> (Vec<StoredRun>, Vec<(PathBuf, String)>) {
    let paths = record_paths(root);
    parse_parallel(&paths, |p| {
        // Shown once, here, with the error it came from.
        std::fs::read(p)
            .map_err(|e| crate::platform::render(&e))
            .and_then(|b| parse(&b).map_err(|e| crate::platform::render(&e)))
            .map_err(|e| (p.clone(), e))
    })
}

/// `read` applied to every item on every core (records parse independently); what fails is
/// returned beside the runs, named by the item.
pub fn parse_parallel<T: Sync>(
    items: &[T],
    read: impl Fn(&T) -> Result<StoredRun, (PathBuf, String)> + Sync,
) -> (Vec<StoredRun>, Vec<(PathBuf, String)>) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let chunk = items.len().div_ceil(threads).max(1);
    let read = &read;
    let results: Vec<Vec<Result<StoredRun, (PathBuf, String)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(read).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut runs = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for r in results.into_iter().flatten() {
        match r {
            Ok(run) => runs.push(run),
            Err(e) => errors.push(e),
        }
    }
    (runs, errors)
}

/// What the readers of history keep of a record, as JSON text: exactly the fields [`Lean`]
/// reads (a few hundred bytes: the shared store keeps it beside the whole record, small enough
/// to be stored uncompressed), or the whole record when it is not a JSON object.
/// [`parse_lean`] (and [`parse`]) read it back to the same [`StoredRun`] as the whole record.
pub fn lean(bytes: &[u8]) -> String {
    use serde_json::Value;
    let whole = || String::from_utf8_lossy(bytes).into_owned();
    let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(bytes) else {
        return whole();
    };
    let keep = |v: &mut Value, keys: &[&str]| {
        if let Value::Object(m) = v {
            m.retain(|k, _| keys.contains(&k.as_str()));
        }
    };
    top.retain(|k, _| LEAN_KEYS.contains(&k.as_str()));
    if let Some(e) = top.get_mut("experiment") {
        keep(e, &["name", "content_hash"]);
    }
    if let Some(r) = top.get_mut("recovery") {
        keep(r, &["objective_s"]);
    }
    if let Some(Value::Array(trials)) = top.get_mut("trials") {
        for t in trials {
            keep(t, &["verdict"]);
        }
    }
    serde_json::to_string(&top).unwrap_or_else(|_| whole())
}

/// The top-level keys [`Lean`] reads.
const LEAN_KEYS: [&str; 11] = [
    "schema",
    "run_id",
    "experiment",
    "environment",
    "started_at",
    "finished_at",
    "outcome",
    "recovery",
    "summary",
    "trials",
    "faults_left",
];

/// [`parse`] of text made by [`lean`]: read at once (there is nothing to skim).
pub fn parse_lean(bytes: &[u8]) -> Result<StoredRun, RecordError> {
    stored(serde_json::from_slice(bytes).map_err(RecordError::Json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skimming_keeps_what_history_reads() {
        let json = r#"{"schema":"firedrill.run/v1","run_id":"r1","experiment":{"name":"e","path":"x"},
            "environment":"staging","started_at":"2025-01-01T00:00:00Z","outcome":"passed",
            "recovery":{"objective_s":5.0},
            "trials":[{"verdict":{"ttd_s":0.1,"ttr":{"estimate_s":1.5,"lower_s":1.4,"upper_s":1.6},"recovered":true},
                       "probes":[{"name":"p","trace":{"stretches":[]}}]},
                      {"verdict":null,"probes":[]}],
            "events":[{"at_s":0.0,"event":"recovered"}]}"#;
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        let skimmed = skim(&pretty).expect("pretty records can be skimmed");
        assert!(skimmed.len() < pretty.len());
        let run = parse(&pretty).unwrap();
        assert_eq!(run, parse(json.as_bytes()).unwrap());
        assert_eq!(run.recovered_ttrs(), [Duration::from_millis(1500)]);
        assert!(serde_json::from_str::<serde_json::Value>(&skimmed).is_ok());
        let lean = lean(&pretty);
        assert!(lean.len() < pretty.len() / 2, "{lean}");
        assert_eq!(parse_lean(lean.as_bytes()).unwrap(), run);
        assert_eq!(parse(lean.as_bytes()).unwrap(), run);
    }

    #[test]
    fn a_written_record_keeps_what_the_gates_read() {
        // The promotion gate reads the version, the end, the summary and the faults left in
        // place, which are written after the events the skim cuts out.
        let json = r#"{"schema":"firedrill.run/v1","run_id":"r2","experiment":{"name":"e","path":"x","content_hash":"abc"},
            "environment":"prod","started_at":"2025-01-01T00:00:00Z","finished_at":"2025-01-01T00:05:00Z","outcome":"failed",
            "recovery":{"objective_s":5.0},
            "summary":{"trials":1,"recovered":0,"objective_met":0,"no_visible_impact":0,"mttr":null,
                       "ttd":{"n":1,"mean_s":0.25,"median_s":0.25,"p90_s":0.25,"min_s":0.25,"max_s":0.25}},
            "trials":[{"verdict":{"ttd_s":0.25,"ttr":null,"recovered":false},"probes":[{"name":"p"}]}],
            "events":[{"at_s":0.0,"event":"recovered","faults_left":"not this one"}],
            "events_dropped":0,
            "faults_left":[{"trial":1,"fault":"command","revert":"run `false`","error":"exit 1"}],
            "firedrill_version":"0"}"#;
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        let skimmed = skim(&pretty).expect("pretty records can be skimmed");
        assert!(!skimmed.contains("not this one"), "{skimmed}");
        let run = parse(&pretty).unwrap();
        assert_eq!(run, parse(json.as_bytes()).unwrap());
        assert_eq!(run.content_hash, "abc");
        assert_eq!(run.finished_at.to_rfc3339(), "2025-01-01T00:05:00+00:00");
        assert_eq!(run.ttd_mean, Some(Duration::from_millis(250)));
        assert_eq!(run.mttr_mean, None);
        assert_eq!(run.faults_left.len(), 1);
        assert_eq!(run.faults_left[0].error, "exit 1");
        assert!(
            run.recovered_ttrs().is_empty(),
            "a trial that did not recover never counts"
        );
        // The lean text keeps what the gates read, whatever the key order of the record.
        assert_eq!(parse_lean(lean(json.as_bytes()).as_bytes()).unwrap(), run);
        assert!(!lean(json.as_bytes()).contains("not this one"));
    }
}
