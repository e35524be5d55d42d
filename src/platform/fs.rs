//! firedrill's own files: created 0700/0600, never through a symbolic link, written whole.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

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
