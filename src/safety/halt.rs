//! The halt lever: `firedrill halt --reason TEXT` writes `<state-dir>/HALT`; while it exists,
//! running drills stop and revert (they poll it every [`POLL`]) and new runs refuse before
//! touching anything. `firedrill halt --release` removes it.
//!
//! In a cluster, the same lever is a ConfigMap `firedrill-halt` in namespace `firedrill`
//! annotated `firedrill.io/halt: REASON` ([`in_cluster`]): every drill whose environment
//! talks to that cluster refuses to start and stops while it exists, wherever it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often a running drill looks for the halt file.
pub const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Halt {
    pub reason: String,
    pub since: String,
    /// Who pulled the lever (`$USER`, else the pid).
    pub by: String,
}

impl Halt {
    pub fn describe(&self) -> String {
        format!(
            "drills are halted since {} by {}: {}",
            self.since, self.by, self.reason
        )
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("HALT")
}

pub fn set(state_dir: &Path, reason: &str) -> std::io::Result<Halt> {
    let halt = Halt {
        reason: reason.into(),
        since: crate::platform::now_rfc3339(),
        by: std::env::var("USER").unwrap_or_else(|_| format!("pid {}", std::process::id())),
    };
    let bytes = serde_json::to_vec_pretty(&halt).map_err(std::io::Error::other)?;
    crate::platform::fs::write_file_atomic(&path(state_dir), &bytes)?;
    Ok(halt)
}

/// Removes the halt; `false` when there was none.
pub fn release(state_dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path(state_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// What makes the state directory unusable, if anything: not a directory, or one that
/// cannot be listed. A missing one is fine (it is created when first needed). Checked before
/// [`current`], whose fail-closed reading would otherwise call this a halt.
pub fn state_dir_problem(state_dir: &Path) -> Option<String> {
    let what = |e: &dyn std::fmt::Display| {
        format!(
            "the state directory {} cannot be used: {e}",
            state_dir.display()
        )
    };
    match std::fs::metadata(state_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(what(&e)),
        Ok(m) if !m.is_dir() => Some(what(&"it is not a directory")),
        Ok(_) => std::fs::read_dir(state_dir).err().map(|e| what(&e)),
    }
}

/// The current halt. A halt file that exists but cannot be parsed still halts: failing
/// closed is the point of a lever.
pub fn current(state_dir: &Path) -> Option<Halt> {
    match crate::platform::fs::read_nofollow(&path(state_dir)) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| Halt {
            reason: String::from_utf8_lossy(&bytes).trim().to_string(),
            since: "unknown".into(),
            by: "unknown".into(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Halt {
            reason: format!("the halt file cannot be read: {e}"),
            since: "unknown".into(),
            by: "unknown".into(),
        }),
    }
}

pub const CLUSTER_NAMESPACE: &str = "firedrill";
pub const CLUSTER_CONFIGMAP: &str = "firedrill-halt";
pub const CLUSTER_ANNOTATION: &str = "firedrill.io/halt";

/// Why the cluster's halt could not be read: it fails closed, so this keeps a drill from
/// starting (and stops one that cannot read it for [`CLUSTER_READ_GRACE`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the cluster's halt (ConfigMap {CLUSTER_NAMESPACE}/{CLUSTER_CONFIGMAP}){}: {cause}",
    if *.unreachable { ": the cluster's API cannot be reached" } else { "" }
)]
pub struct HaltReadError {
    pub cause: String,
    /// No answer from the API at all (refused, timed out), rather than an answer that says no.
    pub unreachable: bool,
}

/// How long a running drill tolerates an unreadable cluster halt (a restarting API) before it
/// stops as if halted: within the 5s in which a halt must reach every running drill.
pub const CLUSTER_READ_GRACE: std::time::Duration = std::time::Duration::from_secs(4);

/// The cluster's halt, when the annotated ConfigMap exists (`Ok(None)`: it does not, or has
/// no halt annotation). Read-only. An API that cannot be asked is an error, never "no halt":
/// a halt firedrill cannot see must not let a drill run.
pub async fn in_cluster(client: &kube::Client) -> Result<Option<Halt>, HaltReadError> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), CLUSTER_NAMESPACE);
    let cm = api
        .get_opt(CLUSTER_CONFIGMAP)
        .await
        .map_err(|e| HaltReadError {
            cause: crate::platform::kube::describe(&e),
            unreachable: !matches!(e, kube::Error::Api(_)),
        })?;
    Ok(cm.and_then(halt_of))
}

fn halt_of(cm: k8s_openapi::api::core::v1::ConfigMap) -> Option<Halt> {
    let reason = cm
        .metadata
        .annotations
        .as_ref()?
        .get(CLUSTER_ANNOTATION)?
        .clone();
    Some(Halt {
        reason,
        since: cm
            .metadata
            .creation_timestamp
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| "unknown".into()),
        by: format!("ConfigMap {CLUSTER_NAMESPACE}/{CLUSTER_CONFIGMAP} in the cluster"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_current_release() {
        let dir = tempfile::tempdir().unwrap();
        assert!(current(dir.path()).is_none());
        set(dir.path(), "incident 42").unwrap();
        assert_eq!(current(dir.path()).unwrap().reason, "incident 42");
        assert!(release(dir.path()).unwrap());
        assert!(current(dir.path()).is_none());
        assert!(!release(dir.path()).unwrap());
    }
}
