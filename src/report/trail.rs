//! The audit trail of a run in progress: `<dir>/<experiment>/<environment>/<run-id>.partial.jsonl`,
//! a header line (what runs, where, since when, with which seed) and then every event as it
//! happens, each line masked and fsynced. A run that ends normally replaces it with its
//! record; a run killed with SIGKILL (or a power loss) leaves it behind, so an aborted drill
//! still shows what was injected and when. The history reader ignores it (not `.json`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::timeline::Event;

pub struct Trail {
    path: PathBuf,
    file: Mutex<File>,
}

/// Where the trail of a run goes.
pub fn path(root: &Path, experiment: &str, environment: &str, run_id: &str) -> PathBuf {
    root.join(experiment)
        .join(environment)
        .join(format!("{run_id}.partial.jsonl"))
}

fn masked_line(mut v: serde_json::Value) -> Vec<u8> {
    crate::safety::redact::json(&mut v);
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    line
}

impl Trail {
    /// Creates the trail and writes its header.
    pub fn start(
        root: &Path,
        experiment: &str,
        environment: &str,
        run_id: &str,
        seed: u64,
    ) -> std::io::Result<Trail> {
        let path = path(root, experiment, environment, run_id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        let header = serde_json::json!({
            "partial": true,
            "note": "the audit trail of a run that has not written its record (yet): if the run is gone, it was interrupted",
            "run_id": run_id,
            "experiment": experiment,
            "environment": environment,
            "seed": seed,
            "started_at": crate::platform::now_rfc3339(),
        });
        file.write_all(&masked_line(header))?;
        file.sync_data()?;
        Ok(Trail {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends one event. A failure loses that line of the trail, never the drill.
    pub fn event(&self, e: &Event) {
        let Ok(v) = serde_json::to_value(e) else {
            return;
        };
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if f.write_all(&masked_line(v)).is_ok() {
            let _ = f.sync_data();
        }
    }

    /// The run wrote its record: the trail is no longer needed.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
