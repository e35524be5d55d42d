//! The `db-failover` fault as the experiment file gives it: which cluster, which provider.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DurationText;

/// The fault as the experiment file gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DbFailoverSpec {
    /// Patroni REST base URLs (`http://127.0.0.1:8008`, one per member is best). Required by
    /// `patroni` and `kill-primary`; with `command`, used only to record the old and new leader.
    #[serde(default)]
    pub patroni: Vec<String>,
    pub provider: DbFailoverProvider,
    /// User for a REST API that requires authentication (`restapi.authentication`).
    #[serde(default)]
    pub patroni_username: Option<String>,
    /// The environment variable holding that user's password.
    #[serde(default)]
    pub patroni_password_env: Option<String>,
    /// Bound on the whole injection (Patroni's reply, the command).
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "DurationText")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum DbFailoverProvider {
    Patroni {
        action: PatroniAction,
        #[serde(default)]
        candidate: Option<String>,
    },
    KillPrimary {
        /// On this host: the data directory of a member, with `{member}` standing for its
        /// Patroni name.
        #[serde(default)]
        data_dir: Option<String>,
        /// On Kubernetes: a `kubernetes` target matching the database's pods; the primary's
        /// pod is deleted.
        #[serde(default)]
        target: Option<String>,
        /// Whose role labels mark the primary's pod (default `patroni`).
        #[serde(default)]
        labels: Option<RoleLabels>,
        /// The deleted pod's grace period (default 0s: a hard kill).
        #[serde(default, with = "humantime_serde")]
        #[schemars(with = "Option<DurationText>")]
        grace_period: Option<Duration>,
    },
    Command {
        run: Vec<String>,
    },
}

/// Who labels the primary's pod on Kubernetes, and so which labels mark it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoleLabels {
    /// Patroni's Kubernetes integration: `role=primary` since Patroni 4, `role=master`
    /// before. The leader itself comes from Patroni's REST API.
    Patroni,
    /// CloudNativePG: `cnpg.io/instanceRole=primary`, or `role=primary` on older releases.
    /// No Patroni: the label alone says which pod is the primary.
    CloudnativePg,
}

impl RoleLabels {
    /// The `key=value` labels any one of which marks the primary.
    pub fn primary(self) -> &'static [(&'static str, &'static str)] {
        match self {
            RoleLabels::Patroni => &[("role", "primary"), ("role", "master")],
            RoleLabels::CloudnativePg => {
                &[("cnpg.io/instanceRole", "primary"), ("role", "primary")]
            }
        }
    }

    pub fn describe(self) -> String {
        let alts: Vec<String> = self
            .primary()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        alts.join(" or ")
    }
}

impl DbFailoverSpec {
    /// Whether the provider needs Patroni's REST API: every one but `command` and a
    /// CloudNativePG `kill-primary`.
    pub fn needs_patroni(&self) -> bool {
        match &self.provider {
            DbFailoverProvider::Command { .. } => false,
            DbFailoverProvider::KillPrimary { labels, .. } => {
                *labels != Some(RoleLabels::CloudnativePg)
            }
            DbFailoverProvider::Patroni { .. } => true,
        }
    }

    /// The `kubernetes` target of a `kill-primary` on Kubernetes.
    pub fn pod_target(&self) -> Option<&str> {
        match &self.provider {
            DbFailoverProvider::KillPrimary { target, .. } => target.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PatroniAction {
    Switchover,
    Failover,
}
