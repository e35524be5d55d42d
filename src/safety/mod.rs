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

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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

/// Creates `dir` (and parents) with mode 0700 for the parts it creates.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Temporary file, fsync, rename, 0600: a reader sees the old file or the new one.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        ensure_dir(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Whether a process with this pid exists (signal 0). A pid we may not signal exists.
pub fn pid_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Wall-clock now as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
