//! `process-kill` fault: send a signal to local processes chosen by pid file or by exact
//! command line. The choice is made at injection time (a supervisor restarts the process with a
//! new pid between trials) and the drill refuses when nothing matches. Before signalling, the
//! command line of each pid is read again, so a pid reused by another program is never hit.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{FaultError, Injection, RevertPlan};
use crate::experiment::ProcessTarget;

/// One process, named so that a reused pid is never taken for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub cmdline: String,
    /// Clock ticks after boot ([`crate::platform::process::process_start`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

impl ProcessRef {
    fn of(pid: i32, cmdline: &str) -> ProcessRef {
        ProcessRef {
            pid,
            cmdline: cmdline.to_string(),
            start_time: u32::try_from(pid)
                .ok()
                .and_then(crate::platform::process::process_start),
        }
    }

    /// Whether the pid still names this process.
    fn still_running(&self) -> bool {
        cmdline(self.pid).as_deref() == Some(self.cmdline.as_str())
            && (self.start_time.is_none()
                || u32::try_from(self.pid)
                    .ok()
                    .and_then(crate::platform::process::process_start)
                    == self.start_time)
    }
}

/// Signals that stop a process rather than end it: the process stays stopped (holding its
/// locks, its connections half-open) until someone sends SIGCONT, so firedrill does.
fn stops(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
    )
}

/// The revert of a stopping signal: SIGCONT to each process that is still the one stopped.
pub fn continue_processes(processes: &[ProcessRef]) -> Result<String, FaultError> {
    let mut continued = Vec::new();
    let mut gone = Vec::new();
    for p in processes {
        if !p.still_running() {
            gone.push(p.pid.to_string());
            continue;
        }
        kill(Pid::from_raw(p.pid), Signal::SIGCONT).map_err(|e| {
            FaultError::revert_by(format!("cannot send SIGCONT to pid {}", p.pid), e)
        })?;
        continued.push(p.pid.to_string());
    }
    let mut out = format!("sent SIGCONT to pid {}", continued.join(", "));
    if continued.is_empty() {
        out = "no stopped process is left to continue".into();
    }
    if !gone.is_empty() {
        out.push_str(&format!(" (pid {} exited or was reused)", gone.join(", ")));
    }
    Ok(out)
}

pub struct ProcessKill {
    target_name: String,
    target: ProcessTarget,
    signal: Signal,
}

impl ProcessKill {
    pub fn new(
        target_name: &str,
        target: &ProcessTarget,
        signal: &str,
    ) -> Result<Self, FaultError> {
        let name = if signal.starts_with("SIG") {
            signal.to_string()
        } else {
            format!("SIG{signal}")
        };
        let signal = Signal::from_str(&name)
            .map_err(|_| FaultError::inject(format!("unknown signal `{signal}`")))?;
        Ok(ProcessKill {
            target_name: target_name.into(),
            target: target.clone(),
            signal,
        })
    }

    pub fn target_name(&self) -> &str {
        &self.target_name
    }

    pub fn describe(&self) -> String {
        let how = match &self.target {
            ProcessTarget::PidFile(p) => format!("the process in pid file {}", p.display()),
            ProcessTarget::CommandLine { line, max_targets } => {
                format!("every process whose command line is `{line}` (at most {max_targets})")
            }
        };
        match self.resolve() {
            Ok(found) => {
                let pids: Vec<String> = found.iter().map(|(p, _)| p.to_string()).collect();
                format!("{} {how} (now: pid {})", self.signal, pids.join(", "))
            }
            Err(e) => format!("{} {how} (now: {})", self.signal, e.render()),
        }
    }

    /// The revert recorded before the signal is sent: for a stopping signal, SIGCONT to the
    /// processes the target names now (the injection records those it actually hit).
    pub fn planned_revert(&self) -> RevertPlan {
        if !stops(self.signal) {
            return RevertPlan::Irreversible {
                why: "a killed process is restarted by its supervisor, not by firedrill".into(),
            };
        }
        let processes = self
            .resolve()
            .unwrap_or_default()
            .iter()
            .map(|(pid, c)| ProcessRef::of(*pid, c))
            .collect();
        RevertPlan::ContinueProcesses { processes }
    }

    /// The processes the target names right now, with their command lines.
    pub fn resolve(&self) -> Result<Vec<(i32, String)>, FaultError> {
        let found = match &self.target {
            ProcessTarget::PidFile(path) => {
                let pid = read_pid_file(path)?;
                let cmdline = cmdline(pid).ok_or_else(|| {
                    FaultError::NoTarget(format!(
                        "pid file {} names pid {pid}, which is not running",
                        path.display()
                    ))
                })?;
                vec![(pid, cmdline)]
            }
            ProcessTarget::CommandLine { line, max_targets } => {
                let found = processes_with_cmdline(line);
                if found.len() > *max_targets as usize {
                    return Err(FaultError::NoTarget(format!(
                        "target `{}` would signal {} processes with the command line `{line}`, more than the blast-radius cap allows (max-targets is {max_targets}); raise `max-targets` on the target to allow it",
                        self.target_name,
                        found.len()
                    )));
                }
                found
            }
        };
        if found.is_empty() {
            let what = match &self.target {
                ProcessTarget::CommandLine { line, .. } => {
                    format!("no running process has the command line `{line}`")
                }
                ProcessTarget::PidFile(p) => format!("no process for pid file {}", p.display()),
            };
            return Err(FaultError::NoTarget(what));
        }
        Ok(found)
    }

    pub async fn inject(&self, label: String) -> Result<Injection, FaultError> {
        let found = self.resolve()?;
        let sent_at = Instant::now();
        let mut hit = Vec::new();
        let mut stopped = Vec::new();
        for (pid, seen) in &found {
            // The pid must still be the process we chose, not a new one that reused its number.
            if cmdline(*pid).as_deref() != Some(seen.as_str()) {
                continue;
            }
            let process = ProcessRef::of(*pid, seen);
            kill(Pid::from_raw(*pid), self.signal).map_err(|e| {
                FaultError::inject_by(format!("cannot send {} to pid {pid}", self.signal), e)
            })?;
            hit.push(pid.to_string());
            stopped.push(process);
        }
        let accepted_at = Instant::now();
        if hit.is_empty() {
            return Err(FaultError::NoTarget(format!(
                "the processes of target `{}` exited before they could be signalled",
                self.target_name
            )));
        }
        Ok(Injection {
            fault: label,
            sent_at,
            accepted_at,
            detail: format!("sent {} to pid {}", self.signal, hit.join(", ")),
            affected: hit,
            deleted_pods: vec![],
            revert: if stops(self.signal) {
                RevertPlan::ContinueProcesses { processes: stopped }
            } else {
                RevertPlan::Irreversible {
                    why: "a signalled process is restarted by its supervisor, not by firedrill"
                        .into(),
                }
            },
            duration: None,
            restore: None,
        })
    }
}

fn read_pid_file(path: &Path) -> Result<i32, FaultError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        FaultError::NoTarget(format!("cannot read pid file {}: {e}", path.display()))
    })?;
    let first = text.lines().next().unwrap_or("").trim();
    first.parse::<i32>().ok().filter(|p| *p > 0).ok_or_else(|| {
        FaultError::NoTarget(format!(
            "pid file {} does not start with a process id (found {first:?})",
            path.display()
        ))
    })
}

/// A process's argv joined by single spaces, or `None` when it is gone (or a zombie).
fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(PathBuf::from(format!("/proc/{pid}/cmdline"))).ok()?;
    if raw.is_empty() {
        return None;
    }
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

fn processes_with_cmdline(want: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut found: Vec<(i32, String)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| cmdline(pid).filter(|c| c == want).map(|c| (pid, c)))
        .collect();
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kills_exactly_the_process_named_by_its_command_line() {
        // A command line no other process on the machine has (tests run in parallel).
        let secs = format!("31.{}", std::process::id());
        let mut child = tokio::process::Command::new("sleep")
            .arg(&secs)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap() as i32;
        let f = ProcessKill::new(
            "sleeper",
            &ProcessTarget::CommandLine {
                line: format!("sleep {secs}"),
                max_targets: 1,
            },
            "KILL",
        )
        .unwrap();
        // The child's command line shows in /proc once its exec completed: wait for that.
        for _ in 0..200 {
            if f.resolve().is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let inj = f.inject("process-kill sleeper".into()).await.unwrap();
        assert_eq!(inj.affected, vec![pid.to_string()]);
        let status = child.wait().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        assert!(matches!(inj.revert, RevertPlan::Irreversible { .. }));
    }

    #[tokio::test]
    async fn refuses_when_nothing_matches() {
        let f = ProcessKill::new(
            "ghost",
            &ProcessTarget::CommandLine {
                line: "no-such-program --firedrill-test".into(),
                max_targets: 1,
            },
            "SIGTERM",
        )
        .unwrap();
        let e = f.inject("x".into()).await.unwrap_err();
        assert!(e.to_string().contains("no running process"), "{e}");
    }

    #[test]
    fn a_stale_pid_file_is_refused_with_a_clear_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pid");
        std::fs::write(&p, "not-a-pid\n").unwrap();
        let f = ProcessKill::new("x", &ProcessTarget::PidFile(p.clone()), "SIGKILL").unwrap();
        assert!(f
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("does not start with a process id"));
        std::fs::write(&p, "999999999\n").unwrap();
        assert!(f.resolve().unwrap_err().to_string().contains("not running"));
    }

    #[test]
    fn unknown_signals_are_refused() {
        let t = ProcessTarget::CommandLine {
            line: "x".into(),
            max_targets: 1,
        };
        assert!(ProcessKill::new("x", &t, "SIGNOPE").is_err());
        assert!(ProcessKill::new("x", &t, "TERM").is_ok());
    }
}
