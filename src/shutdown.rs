//! Signals, in one place. `main` creates the root [`CancellationToken`] and passes it down
//! (the mini-redis pattern); a command that must outlive a signal to clean up asks for the
//! signals here when it reaches that point, and everything it runs watches the root token or
//! a child of it. Commands that never ask (validate, plan, sim, proxy …) keep the default:
//! a signal ends them.
//!
//! - A drill ([`revert_on_signals`]): every terminating signal a process can catch cancels the
//!   token, and the executor then reverts. Further signals are reported but never skip a
//!   revert.
//! - The scheduler ([`stop_on_interrupt`]): SIGINT or SIGTERM cancels its running drills
//!   (which revert) and then the daemon exits.

use tokio_util::sync::CancellationToken;

// What this module prints goes through the central redactor, like every message.
use crate::eprintln_redacted as eprintln;

/// The root token of the process: `main` creates it once and hands it to the command.
pub fn root() -> CancellationToken {
    CancellationToken::new()
}

/// Every terminating signal a process can catch cancels `token`; the drill then reverts.
/// (SIGHUP: the terminal or SSH session closed; SIGQUIT, SIGUSR1/2, SIGALRM … would otherwise
/// end the process with the fault in place.) SIGPIPE is ignored by the Rust runtime: a closed
/// stream is a write error, and no print here panics on one. The synchronous faults (SIGSEGV,
/// SIGBUS, SIGILL, SIGFPE) cannot be caught safely and SIGKILL not at all: their journal is left
/// for `recover`. Further signals are reported but never skip the revert.
pub fn revert_on_signals(token: &CancellationToken) {
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{signal, SignalKind};
    const CAUGHT: [Signal; 14] = [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGTERM,
        Signal::SIGSTKFLT,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGIO,
        Signal::SIGPWR,
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for sig in CAUGHT {
        match signal(SignalKind::from_raw(sig as i32)) {
            Ok(mut stream) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if tx.send(sig).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("cannot catch {sig}: {e}; it would end firedrill without reverting")
            }
        }
    }
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(sig) = rx.recv().await {
            n += 1;
            if n == 1 {
                eprintln!("stopping ({sig}): reverting every injected fault (signals now only repeat this message)");
                cancel.cancel();
            } else {
                eprintln!("still reverting; firedrill exits when every fault is rolled back");
            }
        }
    });
}

/// SIGINT or SIGTERM cancels `token` once: the scheduler's running drills revert, then it
/// exits.
pub fn stop_on_interrupt(token: &CancellationToken) {
    let shutdown = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        eprintln!("stopping: cancelling running drills and reverting their faults");
        shutdown.cancel();
    });
}
