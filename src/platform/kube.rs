//! Kubernetes through kube-rs: a client for an environment's kube context (or the in-cluster
//! config when running as a pod), and the workload/pod helpers faults and probes share.
//! TLS verification stays on: a drill that talks to the wrong cluster is the worst drill.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubernetes config: {0}")]
    Config(String),
    #[error("kubernetes api: {0}")]
    Api(String),
}

impl From<kube::Error> for KubeError {
    fn from(e: kube::Error) -> Self {
        KubeError::Api(describe(&e))
    }
}

/// A short, actionable description of an API error (status code and message, not a debug dump).
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {} ({})", s.code, s.message, s.reason),
        other => crate::platform::root_cause(other),
    }
}

/// Which cluster a run talks to, pinned when the run starts so that a later `firedrill recover`
/// (another process, perhaps after someone switched their current context) reverts against the
/// same cluster: the kubeconfig files (`KUBECONFIG` as it was, or the default file) and the
/// context by name. `None` for both means the in-cluster service account.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl ClusterRef {
    /// The environment's `kube-context` (or, without one, the kubeconfig's current context as
    /// it is now) in the kubeconfig files this process sees.
    pub fn of(kube_context: Option<&str>) -> ClusterRef {
        let kubeconfig = std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty());
        let context = kube_context.map(str::to_owned).or_else(current_context);
        ClusterRef {
            kubeconfig,
            context,
        }
    }

    fn read_kubeconfig(&self) -> Result<Kubeconfig, KubeError> {
        let config = |e: kube::config::KubeconfigError| KubeError::Config(e.to_string());
        match &self.kubeconfig {
            Some(list) => std::env::split_paths(list)
                .filter(|p| !p.as_os_str().is_empty())
                .try_fold(Kubeconfig::default(), |merged, p| {
                    Kubeconfig::read_from(&p).and_then(|c| merged.merge(c))
                })
                .map_err(config),
            None => Kubeconfig::read().map_err(config),
        }
    }
}

/// A client for an environment's cluster, and the cluster it talks to, pinned: its `kube-context`
/// from the kubeconfig, or, without one, the kubeconfig's current context as it is now (no
/// kubeconfig at all: the in-cluster service account). A run journals the same reference it
/// made its client from, so `recover` reaches that cluster even if the current context has
/// moved since.
pub async fn client_for(kube_context: Option<&str>) -> Result<(Client, ClusterRef), KubeError> {
    let cluster = ClusterRef::of(kube_context);
    let client = client_for_cluster(&cluster).await?;
    Ok((client, cluster))
}

/// The kubeconfig's current context (`KUBECONFIG` or `~/.kube/config`).
pub fn current_context() -> Option<String> {
    Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context)
        .filter(|c| !c.is_empty())
}

/// A client for a pinned cluster (see [`ClusterRef`]).
pub async fn client_for_cluster(cluster: &ClusterRef) -> Result<Client, KubeError> {
    let config = match (&cluster.context, &cluster.kubeconfig) {
        (None, None) => Config::infer()
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
        _ => config_for(cluster).await?,
    };
    client_from(config)
}

async fn config_for(cluster: &ClusterRef) -> Result<Config, KubeError> {
    let kc = cluster.read_kubeconfig()?;
    let opts = KubeConfigOptions {
        context: cluster.context.clone(),
        ..Default::default()
    };
    let named = cluster.context.as_deref().unwrap_or("(current)");
    Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| KubeError::Config(format!("context `{named}`: {e}")))
}

fn client_from(mut config: Config) -> Result<Client, KubeError> {
    // kube's own retry layer retries 429/503/504 up to 15 times with delays growing to
    // minutes, hidden from us; the faults retry with their own bounded, jittered policy
    // (platform::retry) so that a drill knows how many calls it made and gives up in time.
    config.default_retry = false;
    Client::try_from(config).map_err(|e| KubeError::Config(describe(&e)))
}

/// Whether a pod is ready (its Ready condition is true) and not being deleted.
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn owned_by(m: &kube::api::ObjectMeta, owner_uid: &str) -> bool {
    m.owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.uid == owner_uid))
}

/// Desired and ready replicas of a workload object.
pub fn replicas(obj: &WorkloadObject) -> (i32, i32) {
    match obj {
        WorkloadObject::Deployment(d) => (
            d.spec.replicas.unwrap_or(1),
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
        ),
        WorkloadObject::StatefulSet(s) => (
            s.spec.replicas.unwrap_or(1),
            s.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
        ),
        WorkloadObject::ReplicaSet(r) => (
            r.spec.replicas.unwrap_or(1),
            r.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
        ),
    }
}

pub enum WorkloadObject {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    ReplicaSet(ReplicaSet),
}
