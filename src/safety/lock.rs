//! One drill per target scope. A scope names what a drill touches within an environment:
//! `<env>/kube/<namespace>`, `<env>/db/<cluster>`, or `<env>/experiment/<name>` when the
//! faults have no narrower scope. Each scope is an advisory `flock(2)` on
//! `<state-dir>/locks/<scope>.lock`, which the holder fills with who it is (pid, run id,
//! since). The kernel drops the lock when the holder exits however it exits, so a crash never
//! leaves a scope locked; the file itself is kept (deleting it would race with new lockers).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub run_id: String,
    pub experiment: String,
    pub since: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held_message(.scope, .holder.as_ref()))]
    Held {
        scope: String,
        holder: Option<Holder>,
    },
    #[error("cannot lock scope `{scope}` ({path}): {source}")]
    Io {
        scope: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn held_message(scope: &str, holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!(
            "scope `{scope}` is busy: drill `{}` (run {}, pid {}) holds it since {}",
            h.experiment, h.run_id, h.pid, h.since
        ),
        None => format!("scope `{scope}` is busy: another drill holds it"),
    }
}

/// The scopes a drill touches in an environment, sorted: each Kubernetes namespace of a
/// pod-kill target, each database cluster (its Patroni endpoints) of a db-failover, and the
/// experiment itself for faults without a narrower scope. A cluster simulated inside this
/// process (`simulated`) is private to it: its scope names this process.
pub fn scopes(
    exp: &crate::experiment::Experiment,
    environment: &str,
    simulated: bool,
) -> Vec<String> {
    use crate::experiment::{FaultSpec, TargetKind};
    let mut out = Vec::new();
    for f in &exp.faults {
        let scope = match f {
            FaultSpec::PodKill { .. } if simulated => {
                format!("simulation/pid-{}", std::process::id())
            }
            FaultSpec::PodKill { target, .. } => match exp.target(target).map(|t| &t.kind) {
                Some(TargetKind::Kubernetes(k)) => format!("kube/{}", k.namespace),
                _ => format!("experiment/{}", exp.name),
            },
            FaultSpec::DbFailover(spec) if !spec.patroni.is_empty() => {
                let mut members = spec.patroni.clone();
                members.sort();
                format!("db/{}", members.join(","))
            }
            _ => format!("experiment/{}", exp.name),
        };
        out.push(format!("{environment}/{scope}"));
    }
    if out.is_empty() {
        out.push(format!("{environment}/experiment/{}", exp.name));
    }
    out.sort();
    out.dedup();
    out
}

/// The locks of one run; dropping releases them.
pub struct ScopeLock {
    _held: Vec<Flock<File>>,
    pub scopes: Vec<String>,
}

/// A file name for a scope: readable, and unique through a short hash of the full name.
fn file_name(scope: &str) -> String {
    use sha2::Digest;
    let readable: String = scope
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = sha2::Sha256::digest(scope.as_bytes());
    let tag: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{tag}.lock")
}

/// Takes every scope's lock without waiting, in sorted order; fails naming the holder of the
/// first busy one (and releases what it took).
pub fn acquire(
    state_dir: &Path,
    scopes: &[String],
    holder: &Holder,
) -> Result<ScopeLock, LockError> {
    let dir = state_dir.join("locks");
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut held = Vec::new();
    for scope in &sorted {
        let path = dir.join(file_name(scope));
        let err = |source| LockError::Io {
            scope: scope.clone(),
            path: path.clone(),
            source,
        };
        super::ensure_dir(&dir).map_err(err)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut f) => {
                let info = serde_json::to_vec(holder).unwrap_or_default();
                f.set_len(0).map_err(err)?;
                f.seek(SeekFrom::Start(0)).map_err(err)?;
                f.write_all(&info).map_err(err)?;
                f.sync_data().map_err(err)?;
                held.push(f);
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(LockError::Held {
                    scope: scope.clone(),
                    holder: read_holder(&path),
                });
            }
            Err((_, e)) => return Err(err(std::io::Error::from(e))),
        }
    }
    Ok(ScopeLock {
        _held: held,
        scopes: sorted,
    })
}

/// The holder a lock file names. The holder writes right after locking: retry briefly.
fn read_holder(path: &Path) -> Option<Holder> {
    for _ in 0..20 {
        let mut text = String::new();
        if let Ok(mut f) = File::open(path) {
            let _ = f.read_to_string(&mut text);
        }
        if let Ok(h) = serde_json::from_str(&text) {
            return Some(h);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            run_id: run.into(),
            experiment: "e".into(),
            since: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_second_holder_is_refused_naming_the_first_until_it_releases() {
        let dir = tempfile::tempdir().unwrap();
        let scopes = vec!["staging/kube/shop".to_string()];
        let first = acquire(dir.path(), &scopes, &holder("r1")).unwrap();
        let e = acquire(dir.path(), &scopes, &holder("r2")).err().unwrap();
        let msg = e.to_string();
        assert!(msg.contains("r1") && msg.contains("2026-01-01"), "{msg}");
        // Another scope is free.
        acquire(
            dir.path(),
            &["staging/kube/other".to_string()],
            &holder("r3"),
        )
        .unwrap();
        drop(first);
        acquire(dir.path(), &scopes, &holder("r2")).unwrap();
    }
}
