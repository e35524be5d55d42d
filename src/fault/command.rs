//! `command` fault: run any program (no shell) to inject, and optionally another to revert.
//! This is how firedrill drives what it has no built-in fault for (a managed database's CLI,
//! `systemctl stop`, a feature flag).

use std::time::Duration;

use tokio::time::Instant;

use super::{FaultError, Injection, RevertPlan};
use crate::platform::child::ChildId;
use crate::probe::command::{failure_reason, run_argv_tracked};

pub struct CommandFault {
    run: Vec<String>,
    revert: Option<Vec<String>>,
    timeout: Duration,
}

impl CommandFault {
    pub fn new(run: Vec<String>, revert: Option<Vec<String>>, timeout: Duration) -> Self {
        CommandFault {
            run,
            revert,
            timeout,
        }
    }

    pub fn program(&self) -> &str {
        self.run.first().map(String::as_str).unwrap_or("")
    }

    pub fn describe(&self) -> String {
        match &self.revert {
            Some(r) => format!("run {:?}; revert with {:?}", self.run, r),
            None => format!("run {:?}; no revert command", self.run),
        }
    }

    /// Runs the inject argv; `spawned` learns its child's identity as soon as it exists.
    pub async fn inject(
        &self,
        label: String,
        spawned: &(dyn Fn(ChildId) + Send + Sync),
    ) -> Result<Injection, FaultError> {
        let sent_at = Instant::now();
        let (status, stderr) = run_argv_tracked(&self.run, self.timeout, spawned)
            .await
            .map_err(FaultError::inject)?;
        let accepted_at = Instant::now();
        if !status.success() {
            return Err(FaultError::inject(format!(
                "{:?} failed: {}",
                self.run,
                failure_reason(&status, &stderr)
            )));
        }
        Ok(Injection {
            fault: label,
            sent_at,
            accepted_at,
            detail: format!("ran {:?}", self.run),
            affected: vec![],
            deleted_pods: vec![],
            revert: self.revert_plan(),
            duration: None,
            restore: None,
        })
    }

    pub fn revert_plan(&self) -> RevertPlan {
        match &self.revert {
            Some(argv) => RevertPlan::Command {
                argv: argv.clone(),
                timeout: self.timeout,
            },
            None => RevertPlan::Irreversible {
                why: "the experiment gives no revert command".into(),
            },
        }
    }
}

pub async fn run_revert(argv: &[String], timeout: Duration) -> Result<String, FaultError> {
    let (status, stderr) = run_argv_tracked(argv, timeout, &|_| {})
        .await
        .map_err(FaultError::revert)?;
    if status.success() {
        Ok(format!("ran {argv:?}"))
    } else {
        Err(FaultError::revert(format!(
            "{argv:?} failed: {}",
            failure_reason(&status, &stderr)
        )))
    }
}
