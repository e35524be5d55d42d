//! The dead-man switch: a watchdog process that outlives its runner and reverts what a dead
//! runner left in place, at once and with no human command.
//!
//! `run` starts the binary again as `__firedrill-watchdog JOURNAL` in a process group of its
//! own (a Ctrl-C or a group kill aimed at the runner does not reach it), with a pipe as its
//! standard input whose write end only the runner holds (pipes are close-on-exec, so a fault's
//! program does not inherit it). The watchdog blocks on that pipe:
//! - a runner that ends on its own terms writes one byte before it lets go: it reverted and
//!   journalled everything it could (a revert that failed is its reported outcome, exit 5),
//!   and the watchdog leaves;
//! - a runner that dies any other way (SIGKILL, the OOM killer, an abort) closes the pipe by
//!   dying: the kernel tells the watchdog at once, and it replays the journal's pending
//!   reverts exactly as `firedrill recover` does, then reports on standard error.
//!
//! The watchdog ignores SIGHUP and SIGINT (a closed terminal or a Ctrl-C aimed at the drill
//! must not kill the one process that would clean up after it); SIGTERM and SIGKILL still end
//! it, and then `recover` remains the way back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitCode, Stdio};

use super::journal;

const WATCHDOG_ARG: &str = "__firedrill-watchdog";

/// The byte a runner writes when it ends on its own terms.
const CLEAN_EXIT: u8 = b'q';

/// The runner's end of the lifeline: dropped when the runner dies; [`Lifeline::release`] when
/// it ends on its own terms.
pub struct Lifeline {
    pipe: ChildStdin,
    /// The watchdog's pid, for people and tests.
    pub pid: u32,
}

impl Lifeline {
    /// The runner is done with the journal (every revert attempted and recorded): the
    /// watchdog leaves without touching anything.
    pub fn release(mut self) {
        let _ = self.pipe.write_all(&[CLEAN_EXIT]);
    }
}

/// Starts the watchdog of the run journalled at `journal`.
pub fn spawn(journal: &Path) -> std::io::Result<Lifeline> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg(WATCHDOG_ARG)
        .arg(journal)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("the watchdog has no lifeline"))?;
    Ok(Lifeline {
        pipe,
        pid: child.id(),
    })
}

/// When the binary was started as the watchdog: watch, act, and the exit code.
pub fn main_if_watchdog() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != WATCHDOG_ARG {
        return None;
    }
    let journal = PathBuf::from(args.next()?);
    Some(watch(&journal))
}

fn watch(journal_path: &Path) -> ExitCode {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    // Installing tokio's handlers replaces the default action (terminate) for good.
    let _ignored = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::hangup()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::pipe()),
        )
    });
    let mut byte = [0u8; 1];
    let clean = loop {
        match std::io::stdin().read(&mut byte) {
            Ok(0) => break false,
            Ok(_) if byte[0] == CLEAN_EXIT => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    if clean {
        return ExitCode::SUCCESS;
    }
    match journal::read(journal_path) {
        Ok(state) if state.closed || state.pending().next().is_none() => return ExitCode::SUCCESS,
        Ok(_) => {}
        Err(e) => {
            say(&format!(
                "firedrill watchdog: cannot read {}: {e}",
                journal_path.display()
            ));
            return ExitCode::FAILURE;
        }
    }
    let done = rt.block_on(journal::recover(journal_path));
    match done {
        Ok(done) => {
            let mut failed = false;
            say(&format!(
                "firedrill watchdog: the runner of {} died with faults in place; reverting:",
                journal_path.display()
            ));
            for r in &done {
                failed |= matches!(r.result, journal::RecoverResult::Failed(_));
                say(&format!("  {}", super::redact::text(&journal::describe(r))));
            }
            if failed {
                say("  = help: `firedrill recover --all` tries again");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            say(&format!("firedrill watchdog: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// A line on standard error; a closed or broken stream is ignored (nobody may be listening).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
