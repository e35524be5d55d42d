//! Faults: what a drill breaks, and how it is undone.
//!
//! The seam is `inject → RevertPlan`: injecting returns a serializable, idempotent description
//! of how to undo it, so that the executor (and later a `recover` command reading a journal)
//! can roll back without the object that injected. A fault that cannot be undone — a killed
//! process is restarted by its supervisor, not by us — says so with
//! [`RevertPlan::Irreversible`] instead of pretending.

pub mod command;
pub mod process_kill;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::experiment::{Experiment, FaultSpec, TargetKind};

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    Inject(String),
    #[error("{0}")]
    Revert(String),
    #[error("fault `{fault}` is not supported here: {why}")]
    Unsupported { fault: String, why: String },
}

/// How to undo an injected fault. Serializable so it can be journalled before the fault is
/// applied; reverting twice is harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RevertPlan {
    /// Nothing to undo, and why (the platform heals it, or the fault has no inverse).
    Irreversible { why: String },
    /// Run this argv (no shell) within the timeout; exit status 0 means reverted.
    Command {
        argv: Vec<String>,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    },
}

/// What an injection did.
#[derive(Debug, Clone)]
pub struct Injection {
    /// The fault's label, e.g. `process-kill demo`.
    pub fault: String,
    /// When the mutating call was made.
    pub sent_at: Instant,
    /// When the target accepted it (signal delivered, command exited, delete answered).
    pub accepted_at: Instant,
    /// For people: what exactly was done to what.
    pub detail: String,
    /// The objects affected (pids, pod names).
    pub affected: Vec<String>,
    pub revert: RevertPlan,
}

/// A fault ready to inject, built from the experiment.
pub enum Fault {
    ProcessKill(process_kill::ProcessKill),
    Command(command::CommandFault),
}

impl Fault {
    pub fn build(spec: &FaultSpec, exp: &Experiment) -> Result<Fault, FaultError> {
        match spec {
            FaultSpec::ProcessKill { target, signal } => {
                let t = exp
                    .target(target)
                    .ok_or_else(|| FaultError::NoTarget(format!("no target named `{target}`")))?;
                let TargetKind::Process(p) = &t.kind else {
                    return Err(FaultError::NoTarget(format!(
                        "process-kill needs a process target; `{target}` is not one"
                    )));
                };
                Ok(Fault::ProcessKill(process_kill::ProcessKill::new(
                    target, p, signal,
                )?))
            }
            FaultSpec::Command {
                run,
                revert,
                timeout,
            } => Ok(Fault::Command(command::CommandFault::new(
                run.clone(),
                revert.clone(),
                *timeout,
            ))),
            FaultSpec::PodKill { .. } => Err(FaultError::Unsupported {
                fault: "pod-kill".into(),
                why: "this build has no Kubernetes support".into(),
            }),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Fault::ProcessKill(f) => format!("process-kill {}", f.target_name()),
            Fault::Command(f) => format!("command {}", f.program()),
        }
    }

    /// Describe what would be touched, touching nothing.
    pub fn describe(&self) -> String {
        match self {
            Fault::ProcessKill(f) => f.describe(),
            Fault::Command(f) => f.describe(),
        }
    }

    pub async fn inject(&self) -> Result<Injection, FaultError> {
        match self {
            Fault::ProcessKill(f) => f.inject(self.label()).await,
            Fault::Command(f) => f.inject(self.label()).await,
        }
    }
}

/// Undo an injection. Idempotent: reverting what is already reverted succeeds.
pub async fn revert(plan: &RevertPlan) -> Result<String, FaultError> {
    match plan {
        RevertPlan::Irreversible { why } => Ok(format!("nothing to revert: {why}")),
        RevertPlan::Command { argv, timeout } => command::run_revert(argv, *timeout).await,
    }
}
