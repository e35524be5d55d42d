//! Safety: never leave a fault behind, stop early, guard production.
//!
//! Everything here lives in one state directory (`--state-dir`, `FIREDRILL_STATE_DIR`, else
//! `$XDG_STATE_HOME/firedrill` or `~/.local/state/firedrill`), created 0700, files 0600:
//! - [`journal`]: a write-ahead record of every mutating call and how to undo it, replayed by
//!   `firedrill recover` and by every `run` for the stale journals of its scope;
//! - [`lock`]: one drill per target scope (a file lock naming its holder);
//! - [`halt`]: the operator's lever that stops running drills and refuses new ones;
//! - [`guard`]: the conditions a protected environment demands before anything is touched;
//! - [`loopback`]: who may talk to the local HTTP APIs (Host and Origin checks);
//! - [`redact`]: the one place secrets are scrubbed from every string that leaves the process.

pub mod guard;
pub mod halt;
pub mod journal;
pub mod lock;
pub mod loopback;
pub mod redact;
pub mod watchdog;

use std::fs;
use std::path::{Path, PathBuf};

/// The state directory: explicit flag, then `FIREDRILL_STATE_DIR` (clap reads it into the
/// flag), then the XDG state home.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("firedrill");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/firedrill"),
        None => PathBuf::from(".firedrill-state"),
    }
}

/// Why a state directory is not trusted. Journals in it hold commands that `run` and
/// `recover` execute, and lock and halt files are written there: a directory another local
/// user can write to would let them choose what firedrill runs (as root, perhaps) or
/// overwrites.
#[derive(Debug, thiserror::Error)]
#[error("refusing state directory {dir}: {path} {why}\n  = help: journals in it hold commands that `run` and `recover` execute, so only the user running firedrill (uid {uid}) may write to it; {fix}, or choose another --state-dir")]
pub struct Untrusted {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub why: String,
    pub uid: u32,
    pub fix: String,
}

/// How deep [`check_state_dir`] looks (the layout is two levels: `journal/<run>.jsonl`).
const CHECK_DEPTH: usize = 3;

/// Refuses a state directory (and every file in it) that is not owned by the running user,
/// is writable by its group or by others, or contains a symbolic link. A directory that does
/// not exist yet is fine: firedrill creates it 0700.
pub fn check_state_dir(dir: &Path) -> Result<(), Untrusted> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    let untrusted = |path: &Path, why: String, fix: String| Untrusted {
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
        why,
        uid,
        fix,
    };
    let check = |path: &Path, meta: &fs::Metadata| -> Result<(), Untrusted> {
        if meta.file_type().is_symlink() {
            return Err(untrusted(
                path,
                "is a symbolic link (firedrill never follows one in its state directory)".into(),
                format!("remove it (`rm {}`)", path.display()),
            ));
        }
        if meta.uid() != uid {
            return Err(untrusted(
                path,
                format!("is owned by uid {}, not by uid {uid}", meta.uid()),
                format!(
                    "remove it, or take it over after checking its contents (`chown -R {uid} {}`)",
                    path.display()
                ),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(untrusted(
                path,
                format!("is writable by its group or by others (mode {mode:04o})"),
                format!("check its contents, then `chmod go-w {}`", path.display()),
            ));
        }
        Ok(())
    };
    // The directory itself may be reached through a link the user made; what it points to
    // must be theirs.
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(untrusted(
                dir,
                format!("cannot be read: {e}"),
                "fix its permissions".into(),
            ))
        }
    };
    check(dir, &meta)?;
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| {
            untrusted(
                &d,
                format!("cannot be listed: {e}"),
                "fix its permissions".into(),
            )
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| {
                untrusted(&path, format!("cannot be read: {e}"), "remove it".into())
            })?;
            check(&path, &meta)?;
            if meta.is_dir() && depth + 1 < CHECK_DEPTH {
                stack.push((path, depth + 1));
            }
        }
    }
    Ok(())
}
