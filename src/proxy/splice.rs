//! The zero-toxic path for bulk streams on Linux: socket → pipe → socket with splice(2),
//! driven by tokio's readiness, so that pass-through data is never copied into user space.
//! Small exchanges stay on read/write (one syscall each way instead of two, and no pipe): the
//! pump moves a direction here when a read fills its whole buffer, and back when splices keep
//! moving little (see [`Outcome::Small`]).
//!
//! A direction owns one pipe. Each round splices what the source has (up to the pipe's size)
//! into the pipe, then drains the pipe into the destination before reading again, so the pipe
//! is empty whenever the pump leaves this path for the toxic pipeline: no byte is held back
//! and no byte overtakes another.
//!
//! `FIREDRILL_PROXY_SPLICE=off` in the environment turns it off (the user-space copy then
//! does the job): an escape hatch, and how `bench/proxy-vs-fault-cli.sh` measures both.

use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::toxic::ToxicSet;

/// Pipe size asked for: a loopback TCP window's worth per syscall. The kernel may grant less
/// (fs.pipe-max-size, per-user pipe quotas); whatever it grants works.
const PIPE_SIZE: i32 = 1 << 20;

pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

/// False when `FIREDRILL_PROXY_SPLICE=off`.
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("FIREDRILL_PROXY_SPLICE").map_or(true, |v| v != "off"))
}

/// A splice that moves less than this is a small exchange...
const SMALL: usize = 16 * 1024;
/// ...and this many in a row send the direction back to read/write.
const SMALL_IN_A_ROW: u32 = 8;

impl Pipe {
    /// A pipe for one direction (None from the caller's view when descriptors run out: the
    /// user-space copy then does the job).
    pub(crate) fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A smaller pipe only means more syscalls; keep the default when refused.
        let size = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE))
            .or_else(|_| fcntl(&write, FcntlArg::F_GETPIPE_SZ))
            .map_or(64 * 1024, |n| n as usize);
        Ok(Pipe { read, write, size })
    }
}

pub(crate) enum Outcome {
    /// The source closed; the pipe is drained.
    Eof,
    /// The toxic set changed; the pipe is drained.
    ToxicsChanged,
    /// splice(2) refused these descriptors before moving any byte.
    Unsupported,
    /// The last splices each moved little: small exchanges are cheaper with read/write. The
    /// pipe is drained.
    Small,
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// Forwards `src` to `dst` until EOF or until the toxic set changes.
pub(crate) async fn forward(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    toxics: &mut watch::Receiver<ToxicSet>,
    watching: &mut bool,
) -> io::Result<Outcome> {
    let mut moved_any = false;
    let mut small = 0;
    loop {
        tokio::select! {
            biased;
            r = toxics.changed(), if *watching => {
                if r.is_err() { *watching = false; } else { return Ok(Outcome::ToxicsChanged); }
                continue;
            }
            r = src.readable() => r?,
        }
        let n = match src.try_io(Interest::READABLE, || {
            splice(src, None, &pipe.write, None, pipe.size, FLAGS).map_err(io::Error::from)
        }) {
            Ok(0) => return Ok(Outcome::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if !moved_any && e.raw_os_error() == Some(Errno::EINVAL as i32) => {
                return Ok(Outcome::Unsupported)
            }
            Err(e) => return Err(e),
        };
        moved_any = true;
        small = if n < SMALL { small + 1 } else { 0 };
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, dst, None, left, FLAGS).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if small >= SMALL_IN_A_ROW {
            return Ok(Outcome::Small);
        }
    }
}
