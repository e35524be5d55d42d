//! Child processes that cannot outlive firedrill unnoticed.
//!
//! A `command` fault's argv runs in its own process group, with a parent-death signal
//! (SIGKILL) set before the program starts: a runner killed with SIGKILL takes its injector
//! with it, and whatever the injector started stays in the group, where `recover` finds it by
//! the pid, process group and start time journalled beside the intent (see [`ChildId`]).
//!
//! The parent-death signal needs a call in the child between fork and exec. The crate forbids
//! `unsafe` (a `pre_exec` hook is unsafe), so the binary spawns itself as a trampoline:
//! `/proc/self/exe __firedrill-child PARENT_PID PROGRAM ARGS…` sets the signal on itself,
//! checks that its parent is still the one that spawned it (else the signal would never come),
//! and execs the program in place: same pid, same process group. The signal belongs to the
//! spawning thread, a runtime worker that lives as long as the run. Library users that have
//! not called [`enable_trampoline`] (unit tests) get the process group only.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::process::{process_start, stat_fields};

const TRAMPOLINE_ARG: &str = "__firedrill-child";

static TRAMPOLINE: AtomicBool = AtomicBool::new(false);

/// Children spawned from now on get a parent-death signal through the firedrill binary.
/// Called by the binary's `main`, never by a test harness (its own executable is not one).
pub fn enable_trampoline() {
    TRAMPOLINE.store(true, Ordering::Relaxed);
}

/// Which process a journal entry's child was, in a form that survives pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildId {
    pub pid: u32,
    /// Its process group (the child leads it: equal to `pid`).
    pub pgid: u32,
    /// Field 22 of `/proc/PID/stat` (clock ticks after boot): a reused pid has another.
    pub start_time: u64,
    /// Its session (the runner's: the child leaves the group, not the session). Once the
    /// leader is gone, only processes of this session count as the group's.
    #[serde(default)]
    pub sid: u32,
}

/// A tokio command for `argv` in a new process group, through the trampoline when enabled.
pub fn command(argv: &[String]) -> Result<tokio::process::Command, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = if TRAMPOLINE.load(Ordering::Relaxed) {
        let mut c = tokio::process::Command::new("/proc/self/exe");
        c.arg(TRAMPOLINE_ARG)
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args);
        c
    } else {
        let mut c = tokio::process::Command::new(program);
        c.args(args);
        c
    };
    cmd.process_group(0);
    Ok(cmd)
}

/// The identity of a child just spawned (its start time read from `/proc`).
pub fn identify(pid: u32) -> ChildId {
    ChildId {
        pid,
        pgid: pid,
        start_time: process_start(pid).unwrap_or(0),
        sid: stat_fields(pid)
            .and_then(|f| f.get(3)?.parse().ok())
            .unwrap_or(0),
    }
}

/// Live (not zombie) processes whose process group is `pgid` (and session `sid`, when known).
/// A zombie has done all it will do; some containers' init never reaps them, so they must not
/// count.
fn group_members(pgid: u32, sid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid).is_some_and(|f| {
                f.first().is_some_and(|s| s != "Z" && s != "X")
                    && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
                    && (sid == 0 || f.get(3).and_then(|g| g.parse::<u32>().ok()) == Some(sid))
            })
        })
        .collect()
}

/// What [`kill_group`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Killed {
    /// No process of the group was left.
    Gone,
    /// The pid now belongs to another process (started later): its group is not ours.
    Reused,
    /// These processes were killed and are gone.
    Killed(usize),
    /// Still alive after the wait (e.g. another user's processes we may not signal).
    Survived(Vec<u32>),
}

/// Kills the process group of a journalled child and waits (up to `wait`) until none of its
/// processes is left. The group is ours when its leader is the journalled process (same start
/// time) or when the leader is gone but the group lives on: Linux does not hand out a pid
/// still in use as a process group id, so a live group of that id is the child's — unless
/// the pid was reused by a later group leader that died in turn, which the session check
/// narrows to one of the runner's own session.
pub async fn kill_group(child: &ChildId, wait: Duration) -> Killed {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    if let Some(now) = process_start(child.pid) {
        if child.start_time != 0 && now != child.start_time {
            return Killed::Reused;
        }
    }
    let members = group_members(child.pgid, child.sid);
    if members.is_empty() {
        return Killed::Gone;
    }
    let Ok(pgid) = i32::try_from(child.pgid) else {
        return Killed::Gone;
    };
    if pgid <= 1 {
        return Killed::Gone;
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = group_members(child.pgid, child.sid);
        if left.is_empty() {
            return Killed::Killed(members.len());
        }
        if tokio::time::Instant::now() >= deadline {
            return Killed::Survived(left);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kills a child's whole group now (a timed-out command): its own children die with it.
pub fn kill_group_now(pgid: u32) {
    if let Ok(p) = i32::try_from(pgid) {
        if p > 1 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The trampoline side: when the binary was started as `__firedrill-child`, set the
/// parent-death signal and exec the program; returns the exit code when the exec failed.
/// `None` means this is an ordinary invocation.
pub fn trampoline() -> Option<ExitCode> {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os().skip(1);
    if args.next()? != TRAMPOLINE_ARG {
        return None;
    }
    let parent = args
        .next()
        .and_then(|p| p.to_str().and_then(|p| p.parse::<i32>().ok()));
    let rest: Vec<OsString> = args.collect();
    let (Some(parent), Some((program, args))) = (parent, rest.split_first()) else {
        eprintln!("firedrill: {TRAMPOLINE_ARG} needs PARENT_PID PROGRAM [ARGS...]");
        return Some(ExitCode::from(127));
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("firedrill: cannot set the parent-death signal: {e}");
        return Some(ExitCode::from(127));
    }
    // The parent may have died before the signal was set: it would never come.
    if nix::unistd::getppid().as_raw() != parent {
        return Some(ExitCode::from(127));
    }
    let err = std::process::Command::new(program).args(args).exec();
    eprintln!("cannot run `{}`: {err}", program.to_string_lossy());
    Some(ExitCode::from(127))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_is_killed_with_what_it_started_and_a_reused_pid_is_left_alone() {
        let argv: Vec<String> = ["sh", "-c", "sleep 30 & sleep 30 & wait"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut cmd = command(&argv).unwrap();
        let mut child = cmd.spawn().unwrap();
        let id = identify(child.id().unwrap());
        assert_eq!(id.pgid, id.pid);
        assert_ne!(id.start_time, 0);
        for _ in 0..200 {
            if group_members(id.pgid, id.sid).len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(group_members(id.pgid, id.sid).len(), 3);
        // The child keeps the runner's session. In a container whose session leader lives
        // outside its PID namespace, /proc reports that session as 0 (unknown) for both.
        let own_sid: u32 = stat_fields(std::process::id()).unwrap()[3].parse().unwrap();
        assert_eq!(id.sid, own_sid);
        assert!(group_members(id.pgid, id.sid + 1).is_empty());
        let other = ChildId {
            start_time: id.start_time + 1,
            ..id
        };
        assert_eq!(
            kill_group(&other, Duration::from_secs(1)).await,
            Killed::Reused
        );
        assert_eq!(
            kill_group(&id, Duration::from_secs(5)).await,
            Killed::Killed(3)
        );
        let _ = child.wait().await;
        assert_eq!(kill_group(&id, Duration::from_secs(1)).await, Killed::Gone);
    }
}
