//! Records the store could not take wait here — `<state-dir>/spool/<run-id>.json`, 0600,
//! written atomically — until the next run (or `firedrill store sync`) uploads them. A record
//! leaves the spool only after the store committed it (or already had it: uploads are
//! idempotent by run id), so nothing is lost and nothing is stored twice.

use std::path::{Path, PathBuf};

use super::{spool_dir, Store, StoreError};

/// Keep `json` (a masked record) for a later upload; returns where.
pub fn keep(state_dir: &Path, run_id: &str, json: &[u8]) -> std::io::Result<PathBuf> {
    let path = spool_dir(state_dir).join(format!("{run_id}.json"));
    crate::platform::fs::write_file_atomic(&path, json)?;
    Ok(path)
}

/// What an upload of the spool did.
#[derive(Debug, Default)]
pub struct Uploaded {
    /// Runs the store did not have yet.
    pub new: usize,
    /// Runs it had already (a previous upload committed, then the file stayed).
    pub known: usize,
    /// Files that are not records (left in place, named).
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Upload every spooled record, removing each once the store has it. Stops at the first
/// store error (the rest stay for the next time).
pub async fn upload(state_dir: &Path, store: &Store) -> Result<Uploaded, StoreError> {
    let mut done = Uploaded::default();
    for path in spooled(state_dir) {
        let bytes = match crate::platform::fs::read_nofollow(&path) {
            Ok(b) => b,
            Err(e) => {
                done.unreadable.push((path, e.to_string()));
                continue;
            }
        };
        if let Err(e) = crate::report::store::parse(&bytes) {
            done.unreadable.push((path, crate::platform::render(&e)));
            continue;
        }
        match store.put_json(&bytes).await? {
            true => done.new += 1,
            false => done.known += 1,
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a spooled record the store now has");
        }
    }
    Ok(done)
}

/// How many records wait in the spool.
pub fn pending(state_dir: &Path) -> usize {
    spooled(state_dir).len()
}

/// The spooled records, oldest run first (run ids begin with their start time).
fn spooled(state_dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(spool_dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
}
