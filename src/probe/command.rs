//! `command` probe: run a program (no shell); exit status 0 is healthy.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::Reason;
use crate::experiment::CommandProbe;

pub struct CommandChecker {
    argv: Vec<String>,
    timeout: Duration,
}

impl CommandChecker {
    pub fn new(spec: &CommandProbe) -> Result<Self, super::BuildError> {
        if spec.argv.is_empty() {
            return Err(super::BuildError::NoProgram);
        }
        Ok(CommandChecker {
            argv: spec.argv.clone(),
            timeout: spec.timeout,
        })
    }

    pub async fn check(&mut self) -> Result<(), Reason> {
        let (out, err) = run_argv(&self.argv, self.timeout).await?;
        match out.code() {
            Some(0) => Ok(()),
            _ => Err(failure_reason(&out, &err)),
        }
    }
}

/// Run an argv with stdin closed and stdout discarded; returns its status and the start of
/// its stderr. The child is killed when the timeout passes (or the caller goes away).
pub async fn run_argv(
    argv: &[String],
    timeout: Duration,
) -> Result<(std::process::ExitStatus, String), Reason> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    wait_child(cmd, program, timeout, None).await
}

/// Like [`run_argv`], for a fault's command: the child leads its own process group, gets a
/// parent-death signal (see [`crate::platform::child`]), is reported to `spawned` as soon as
/// it exists (so the journal can name it), and on a timeout its whole group is killed.
pub async fn run_argv_tracked(
    argv: &[String],
    timeout: Duration,
    spawned: &(dyn Fn(crate::platform::child::ChildId) + Send + Sync),
) -> Result<(std::process::ExitStatus, String), Reason> {
    run_argv_tracked_env(argv, &[], timeout, spawned).await
}

/// [`run_argv_tracked`] with these variables added to the child's environment (what a node
/// fault's command is told about the node).
pub async fn run_argv_tracked_env(
    argv: &[String],
    env: &[(&str, String)],
    timeout: Duration,
    spawned: &(dyn Fn(crate::platform::child::ChildId) + Send + Sync),
) -> Result<(std::process::ExitStatus, String), Reason> {
    let program = argv.first().ok_or("empty command")?;
    let mut cmd = crate::platform::child::command(argv)?;
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    wait_child(cmd, program, timeout, Some(spawned)).await
}

async fn wait_child(
    mut cmd: Command,
    program: &str,
    timeout: Duration,
    spawned: Option<&(dyn Fn(crate::platform::child::ChildId) + Send + Sync)>,
) -> Result<(std::process::ExitStatus, String), Reason> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let group = match (spawned, child.id()) {
        (Some(report), Some(pid)) => {
            report(crate::platform::child::identify(pid));
            Some(pid)
        }
        _ => None,
    };
    // A fault's call abandoned mid-way (a stop while it runs): its whole group is killed, so
    // nothing of it goes on after its effect was reverted.
    let mut abandoned = GroupGuard(group);
    let mut stderr = child.stderr.take();
    let wait = async {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            // Bounded: a chatty command must not grow our memory.
            let _ = s.take(4096).read_to_end(&mut buf).await;
        }
        let status = child.wait().await;
        (status, buf)
    };
    let result = tokio::time::timeout(timeout, wait).await;
    abandoned.0 = None;
    match result {
        Ok((Ok(status), buf)) => Ok((status, first_line(&buf))),
        Ok((Err(e), _)) => Err(format!("`{program}`: {e}")),
        Err(_) => {
            if let Some(pgid) = group {
                crate::platform::child::kill_group_now(pgid);
            }
            Err(format!(
                "`{program}` timed out after {}",
                humantime::format_duration(timeout)
            ))
        }
    }
}

/// Kills a process group when dropped, unless disarmed (`.0 = None`).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            crate::platform::child::kill_group_now(pgid);
        }
    }
}

pub fn failure_reason(status: &std::process::ExitStatus, stderr: &str) -> String {
    let what = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    if stderr.is_empty() {
        what
    } else {
        format!("{what}: {stderr}")
    }
}

fn first_line(buf: &[u8]) -> String {
    let s = String::from_utf8_lossy(buf);
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(argv: &[&str], timeout_ms: u64) -> CommandChecker {
        CommandChecker::new(&CommandProbe {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn exit_status_decides_and_stderr_explains() {
        assert_eq!(checker(&["true"], 5000).check().await, Ok(()));
        let r = checker(&["sh", "-c", "echo 'db is read-only' >&2; exit 3"], 5000)
            .check()
            .await;
        assert_eq!(r, Err("exit status 3: db is read-only".to_string()));
    }

    #[tokio::test]
    async fn a_hanging_command_fails_at_its_timeout() {
        let r = checker(&["sleep", "10"], 100).check().await;
        assert!(r.unwrap_err().contains("timed out after 100ms"));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure_not_a_pass() {
        let r = checker(&["/nonexistent/firedrill-check"], 1000)
            .check()
            .await;
        assert!(r.unwrap_err().contains("cannot run"));
    }
}
