//! Reports: the JSON record is the durable source of truth; Markdown, HTML and the terminal
//! summary are views rendered from it (and can be rendered again later from the file alone).
//! Views only format: their numbers come from [`crate::analysis`]; the words they share are
//! in [`text`] (views import it, never each other), and [`store`] is the one reader of a
//! reports folder (history, the regression gate's baseline, the promotion gate).
//!
//! Layout: `<dir>/<experiment>/<environment>/<run-id>.{json,md,html}`. Files are written atomically
//! (temporary file, fsync, rename) and created with mode 0600: reports may name internal hosts.

pub mod ci;
pub mod history;
pub mod html;
pub mod markdown;
pub mod record;
pub mod store;
pub mod terminal;
pub mod text;
pub mod trail;

use std::fs;
use std::path::{Path, PathBuf};

use record::RunRecord;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write report {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read report {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The report's data could not be serialized (JSON or YAML).
    #[error("cannot encode the report")]
    Encode(#[source] text::DataError),
    /// Masking the record's secrets would make it unreadable: it is not written at all.
    #[error("the record cannot be masked, so it was not written (it would show a secret): {0}")]
    Unmaskable(String),
}

/// Where a run's files go.
pub fn run_dir(root: &Path, record: &RunRecord) -> PathBuf {
    root.join(&record.experiment.name).join(&record.environment)
}

/// Write the JSON record and its Markdown and HTML views; returns the JSON path. The record
/// is masked first ([`redacted`]); when it cannot be, nothing is written.
pub fn write(root: &Path, record: &RunRecord) -> Result<PathBuf, ReportError> {
    // Secrets never reach a report, whichever field carries them.
    let record = redacted(record)?;
    let record = record.as_ref();
    let dir = run_dir(root, record);
    crate::platform::fs::ensure_dir(&dir).map_err(|source| ReportError::Write {
        path: dir.clone(),
        source,
    })?;
    let json_path = dir.join(format!("{}.json", record.run_id));
    let json = json(record).map_err(|e| ReportError::Write {
        path: json_path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&json_path, &json)?;
    let md_path = dir.join(format!("{}.md", record.run_id));
    write_atomic(&md_path, markdown::render(record).as_bytes())?;
    let html_path = dir.join(format!("{}.html", record.run_id));
    write_atomic(&html_path, html::render(record).as_bytes())?;
    Ok(json_path)
}

/// The record's JSON as the reports folder and the store hold it: pretty-printed (the layout
/// [`store::lean`] relies on), one newline at the end. The caller masks it first.
pub fn json(record: &RunRecord) -> Result<Vec<u8>, serde_json::Error> {
    let mut json = serde_json::to_vec_pretty(record)?;
    json.push(b'\n');
    Ok(json)
}

/// More masked strings than this that each break the record are not tried one by one: the
/// record is refused instead (each try deserializes the whole record).
const MAX_STRUCTURAL_TRIES: usize = 64;

/// One step of a path into a JSON value.
enum Step {
    Key(String),
    Index(usize),
}

fn leaf_mut<'a>(v: &'a mut serde_json::Value, path: &[Step]) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// Every string value (never an object key) that the redactor changes: its path and its
/// masked text.
fn masked_leaves(v: &serde_json::Value, path: &mut Vec<Step>, out: &mut Vec<(Vec<Step>, String)>) {
    match v {
        serde_json::Value::String(s) => {
            let masked = crate::safety::redact::text(s);
            if masked != *s {
                let copy = path
                    .iter()
                    .map(|s| match s {
                        Step::Key(k) => Step::Key(k.clone()),
                        Step::Index(i) => Step::Index(*i),
                    })
                    .collect();
                out.push((copy, masked));
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Step::Index(i));
                masked_leaves(x, path, out);
                path.pop();
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                path.push(Step::Key(k.clone()));
                masked_leaves(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The record with every secret masked by the central redactor: every string value, never a
/// key, and never a word the record's structure is made of (an outcome, a phase: a secret
/// `pass` must not turn `passed` into `***ed`, which no reader could parse). Such a word is
/// one of a fixed vocabulary, so keeping it shows nothing of the secret. When the record
/// cannot be masked and stay a record, it is refused (fail closed): nothing that carries it
/// may be written.
pub fn redacted(record: &RunRecord) -> Result<std::borrow::Cow<'_, RunRecord>, ReportError> {
    let refuse = |why: String| ReportError::Unmaskable(why);
    let original = serde_json::to_value(record).map_err(|e| refuse(e.to_string()))?;
    let mut leaves = Vec::new();
    masked_leaves(&original, &mut Vec::new(), &mut leaves);
    if leaves.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(record));
    }
    let apply = |v: &mut serde_json::Value, leaf: &(Vec<Step>, String)| {
        if let Some(x) = leaf_mut(v, &leaf.0) {
            *x = serde_json::Value::String(leaf.1.clone());
        }
    };
    let mut all = original.clone();
    leaves.iter().for_each(|l| apply(&mut all, l));
    if let Ok(r) = serde_json::from_value::<RunRecord>(all) {
        return Ok(std::borrow::Cow::Owned(r));
    }
    // Some masked string is a word of the structure: find which, one at a time.
    if leaves.len() > MAX_STRUCTURAL_TRIES {
        return Err(refuse(format!(
            "a secret occurs in {} strings of the record, and masking them breaks its structure",
            leaves.len()
        )));
    }
    let mut masked = original.clone();
    for leaf in &leaves {
        let mut one = original.clone();
        apply(&mut one, leaf);
        if serde_json::from_value::<RunRecord>(one).is_ok() {
            apply(&mut masked, leaf);
        }
    }
    serde_json::from_value::<RunRecord>(masked)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| {
            refuse(format!(
                "masking a secret breaks the record's structure ({e})"
            ))
        })
}

pub fn read(path: &Path) -> Result<RunRecord, ReportError> {
    let err = |message: String| ReportError::Read {
        path: path.to_path_buf(),
        message,
    };
    let bytes = fs::read(path).map_err(|e| err(e.to_string()))?;
    let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    if record.schema != record::SCHEMA {
        return Err(err(format!(
            "schema `{}` is not the supported `{}`",
            record.schema,
            record::SCHEMA
        )));
    }
    Ok(record)
}

/// Temporary file in the same directory, fsync, rename: a reader sees the old file or the
/// whole new one, never half a report.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::platform::fs::write_file_atomic(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}
