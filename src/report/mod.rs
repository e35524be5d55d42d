//! Reports: the JSON record is the durable source of truth; Markdown, HTML and the terminal
//! summary are views rendered from it (and can be rendered again later from the file alone).
//!
//! Layout: `<dir>/<experiment>/<environment>/<run-id>.{json,md,html}`. Files are written atomically
//! (temporary file, fsync, rename) and created with mode 0600: reports may name internal hosts.

pub mod ci;
pub mod history;
pub mod html;
pub mod markdown;
pub mod record;
pub mod terminal;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
}

/// Where a run's files go.
pub fn run_dir(root: &Path, record: &RunRecord) -> PathBuf {
    root.join(&record.experiment.name).join(&record.environment)
}

/// Write the JSON record and its Markdown and HTML views; returns the JSON path.
pub fn write(root: &Path, record: &RunRecord) -> Result<PathBuf, ReportError> {
    // Secrets never reach a report, whichever field carries them.
    let redacted = redacted(record);
    let record = redacted.as_ref().unwrap_or(record);
    let dir = run_dir(root, record);
    fs::create_dir_all(&dir).map_err(|source| ReportError::Write {
        path: dir.clone(),
        source,
    })?;
    let json_path = dir.join(format!("{}.json", record.run_id));
    let mut json = serde_json::to_vec_pretty(record).map_err(|e| ReportError::Write {
        path: json_path.clone(),
        source: std::io::Error::other(e),
    })?;
    json.push(b'\n');
    write_atomic(&json_path, &json)?;
    let md_path = dir.join(format!("{}.md", record.run_id));
    write_atomic(&md_path, markdown::render(record).as_bytes())?;
    let html_path = dir.join(format!("{}.html", record.run_id));
    write_atomic(&html_path, html::render(record).as_bytes())?;
    Ok(json_path)
}

/// The record with every string masked by the central redactor (`None`: it had no secrets).
fn redacted(record: &RunRecord) -> Option<RunRecord> {
    let mut v = serde_json::to_value(record).ok()?;
    let before = v.clone();
    crate::safety::redact::json(&mut v);
    if v == before {
        return None;
    }
    serde_json::from_value(v).ok()
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
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
