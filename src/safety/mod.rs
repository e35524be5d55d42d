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

/// Never follow a symbolic link where firedrill opens its own files.
pub(crate) const O_NOFOLLOW: i32 = nix::libc::O_NOFOLLOW;

/// Reads a file of the state directory, refusing a symbolic link.
pub(crate) fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(path)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Creates `dir` (and parents) with mode 0700 for the parts it creates.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Temporary file, fsync, rename, 0600: a reader sees the old file or the new one. The
/// temporary file has a random name and is created exclusively (O_EXCL: never through a
/// planted symlink), in the target's folder, created 0700 when missing whatever the umask.
/// The one atomic write of the crate (reports, JUnit, the halt file use it).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    ensure_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether `dir` can take a report: created (0700) if missing, and a file written and removed
/// in it. Checked before anything is injected, so a drill never runs for results it then
/// cannot keep.
pub fn check_writable_dir(dir: &Path) -> std::io::Result<()> {
    ensure_dir(dir)?;
    let probe = tempfile::Builder::new()
        .prefix(".firedrill-write-test.")
        .tempfile_in(dir)?;
    probe.close()
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

/// When a process started: clock ticks after boot (field 22 of `/proc/PID/stat`). With the
/// boot id, a pid and its start time name one process; a bare pid may be reused by another
/// (or be pid 1 in a container).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): start times count from the boot.
pub fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether the process a journal or lock names is still the one running: same boot, the
/// pid alive, and the same start time. Without a recorded start time (older journals) only
/// the pid can be asked.
pub fn same_process(pid: u32, start: Option<u64>, boot: Option<&str>) -> bool {
    if let (Some(recorded), Some(now)) = (boot, boot_id()) {
        if recorded != now {
            return false;
        }
    }
    if !pid_alive(pid) {
        return false;
    }
    match start {
        Some(recorded) => process_start(pid) == Some(recorded),
        None => true,
    }
}

/// Wall-clock now as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
