//! `firedrill recover` (replay the undo records of journals whose drill is gone) and
//! `firedrill halt` (pull or release the lever that stops drills and refuses new ones).

use std::path::Path;

use crate::safety::{self, halt, journal};
use crate::{eprintln_redacted as eprintln, println_redacted as println};

use super::Exit;

/// `firedrill recover`: replay the undo records of journals whose drill is gone.
pub(super) async fn recover(
    state_dir: &Path,
    store: Option<&crate::store::Spec>,
    run: Option<&str>,
    all: bool,
) -> anyhow::Result<Exit> {
    // With a shared store, journals other machines' runners left open there (silent for
    // longer than a live runner ever is) are recovered here too.
    let store = match super::store::open(store).await {
        Ok(s) => s,
        Err(exit) => return Ok(exit),
    };
    let mut adopted = Vec::new();
    if let Some(s) = &store {
        let found = crate::store::journal::adopt(s, state_dir, &[], "", run).await?;
        for f in &found.beating {
            println!(
                "run {} of `{}` on {}: heard from {} ago, may still be running; skipped",
                f.run_id,
                f.experiment,
                f.host,
                crate::timeline::human(f.silent_for)
            );
        }
        for f in &found.adopted {
            println!(
                "run {} of `{}` on {}: its journal is open in the store; recovering it here",
                f.run_id, f.experiment, f.host
            );
        }
        adopted = found.paths;
    }
    let code = recover_local(state_dir, run, all).await?;
    if let Some(s) = &store {
        for p in &adopted {
            if let Err(e) = s.mirror_file(p).await {
                eprintln!(
                    "warning: the store does not show the recovery of {}: {e}",
                    p.display()
                );
            }
        }
    }
    Ok(code)
}

/// The journals of this state directory (with those adopted from the store).
async fn recover_local(state_dir: &Path, run: Option<&str>, all: bool) -> anyhow::Result<Exit> {
    let states: Vec<_> = match run {
        Some(id) => {
            let path = journal::journal_dir(state_dir).join(format!("{id}.jsonl"));
            if !path.is_file() {
                eprintln!(
                    "error: no journal for run `{id}` in {}",
                    journal::journal_dir(state_dir).display()
                );
                return Ok(Exit::Invalid);
            }
            vec![journal::read(&path)]
        }
        None if all => journal::list(state_dir),
        None => vec![],
    };
    let mut code = Exit::Passed;
    let mut recovered = 0;
    for state in states {
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                code = Exit::Refused;
                continue;
            }
        };
        let h = &state.header;
        if let Some(w) = state.torn_warning() {
            eprintln!("{w}");
        }
        if state.closed {
            continue;
        }
        if h.pid != std::process::id() && state.runner_alive(state_dir) {
            println!(
                "run {} of `{}`: still running (pid {}), skipped",
                h.run_id, h.experiment, h.pid
            );
            continue;
        }
        let done = match journal::recover(&state.path).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                code = Exit::Refused;
                continue;
            }
        };
        recovered += 1;
        println!(
            "run {} of `{}` in `{}`:",
            h.run_id, h.experiment, h.environment
        );
        if done.is_empty() {
            println!("  nothing was left in place");
        }
        for r in &done {
            println!("  {}", safety::redact::text(&journal::describe(r)));
            if matches!(r.result, journal::RecoverResult::Failed(_)) {
                code = Exit::Refused;
            }
        }
    }
    if recovered == 0 && code == Exit::Passed {
        println!("nothing to recover");
    }
    Ok(code)
}

/// `firedrill halt`: pull or release the lever.
pub(super) async fn halt(
    state_dir: &Path,
    store: Option<&crate::store::Spec>,
    reason: Option<&str>,
    release: bool,
) -> anyhow::Result<Exit> {
    // The local lever first: it never waits on the network.
    if release {
        let local = halt::release(state_dir)?;
        let shared = match super::store::open(store).await {
            Ok(Some(s)) => s.release_halt().await?,
            Ok(None) => false,
            Err(exit) => {
                eprintln!(
                    "the halt of this machine's state directory was released; the store's was not"
                );
                return Ok(exit);
            }
        };
        if local || shared {
            println!("halt released: drills may run again");
        } else {
            println!("no halt was in force");
        }
        return Ok(Exit::Passed);
    }
    let reason = reason.unwrap_or("halted by an operator");
    let h = halt::set(state_dir, reason)?;
    let scope = match super::store::open(store).await {
        Ok(Some(s)) => {
            s.set_halt(&h).await?;
            format!("every runner of the store {}", s.shown())
        }
        Ok(None) => format!("this machine ({})", state_dir.display()),
        Err(exit) => {
            eprintln!(
                "{}\nonly the drills of this machine's state directory stop: the store did not take the halt",
                h.describe()
            );
            return Ok(exit);
        }
    };
    println!(
        "{}\nrunning drills revert and stop ({scope}); new drills refuse until `firedrill halt --release`",
        h.describe()
    );
    Ok(Exit::Passed)
}
