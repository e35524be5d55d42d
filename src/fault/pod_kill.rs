//! `pod-kill` fault: delete pods chosen at random (seeded) among those a label selector (and
//! optionally a workload) matches, with a grace period.
//!
//! The choice is made once per trial by [`PodKill::prepare`], recorded, and only then acted on.
//! The drill refuses when the selector matches nothing, when the choice asks for more pods
//! than match, or when it would exceed the blast-radius cap: `max-targets`, by default 1 pod or
//! 34% of the ready replicas, whichever is smaller.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::Client;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::{FaultError, Injection, RevertPlan};
use crate::experiment::{Amount, KubeTarget, WorkloadKind, WorkloadRef};
use crate::platform::kube::{owned_by, pod_ready, KubeError};
use crate::platform::retry::{retry, Backoff};

/// Delete requests in flight at once: enough to kill 1,000 pods in well under a second on a
/// responsive API server, few enough not to trip its rate limits.
const DELETES_IN_FLIGHT: usize = 16;

pub struct PodKill {
    client: Client,
    target_name: String,
    target: KubeTarget,
    grace: Duration,
    rng: Mutex<ChaCha8Rng>,
    /// Name and uid of each chosen pod: the delete is conditional on the uid, so a pod
    /// replaced under the same name meanwhile (a StatefulSet's) is not the one deleted.
    chosen: Mutex<Vec<(String, Option<String>)>>,
}

/// The pods a selector matches now and the choice among them.
#[derive(Debug, Clone)]
pub struct Choice {
    pub matched: usize,
    pub ready: usize,
    pub cap: usize,
    pub chosen: Vec<String>,
}

/// The pods `selector` matches in `namespace` that are not being deleted, sorted by name
/// (read-only; the list is retried like every API read).
pub(crate) async fn live_pods(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<LivePod>, FaultError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // Paged, and each pod kept only as what choosing reads: an unpaged list of 100,000 whole
    // pods held 1.6 GiB in the runner, and 100,000 pods as API objects, even slimmed, ~240 MiB.
    let mut lp = ListParams::default().labels(selector).limit(LIST_PAGE);
    let mut live: Vec<LivePod> = Vec::new();
    loop {
        let page = retry("list pods", &Backoff::default(), || api.list(&lp))
            .await
            .map_err(|e| FaultError::inject_by("cannot list pods", e))?;
        live.extend(
            page.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(LivePod::of),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => lp.continue_token = Some(next),
            None => break,
        }
    }
    live.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(live)
}

/// Pods per page of a list (the page is the runner's peak, not the namespace).
const LIST_PAGE: u32 = 500;

/// What choosing a pod reads of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LivePod {
    pub name: String,
    pub uid: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The uids of its owners (a ReplicaSet, a StatefulSet).
    pub owners: Vec<String>,
    /// Ready and not being deleted.
    pub ready: bool,
}

impl LivePod {
    fn of(p: &Pod) -> Option<LivePod> {
        Some(LivePod {
            name: p.metadata.name.clone()?,
            uid: p.metadata.uid.clone(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            owners: p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.clone())
                .collect(),
            ready: pod_ready(p),
        })
    }
}

/// The refusal when a selector matches no live pod.
pub(crate) fn no_running_pods(selector: &str, namespace: &str) -> FaultError {
    FaultError::NoTarget(format!(
        "selector `{selector}` matches no running pods in namespace `{namespace}`"
    ))
}

impl PodKill {
    pub fn new(
        client: Client,
        target_name: &str,
        target: &KubeTarget,
        grace: Duration,
        seed: u64,
    ) -> Self {
        PodKill {
            client,
            target_name: target_name.into(),
            target: target.clone(),
            grace,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            chosen: Mutex::new(Vec::new()),
        }
    }

    pub fn target_name(&self) -> &str {
        &self.target_name
    }

    pub fn namespace(&self) -> &str {
        &self.target.namespace
    }

    pub fn selector(&self) -> &str {
        &self.target.selector
    }

    /// The pods the last [`PodKill::prepare`] chose: name and uid.
    pub fn chosen(&self) -> Vec<(String, Option<String>)> {
        self.chosen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many pods a trial asks for.
    pub fn amount(&self) -> Amount {
        self.target.amount
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    pub fn describe(&self) -> String {
        let amount = match self.target.amount {
            Amount::Count(n) => format!("{n} pod(s)"),
            Amount::Percent(p) => format!("{p}% of the pods (rounded down, at least 1)"),
        };
        format!(
            "delete {amount} matching `{}` in namespace `{}` (grace {}s)",
            self.target.selector,
            self.target.namespace,
            self.grace.as_secs()
        )
    }

    /// Resolve and choose the pods for this trial; nothing is touched.
    pub async fn prepare(&self) -> Result<Choice, FaultError> {
        let amount = self.target.amount;
        self.prepare_by(|live| {
            let want = amount.of(live.len());
            if want > live.len() {
                return Err(FaultError::NoTarget(format!(
                    "target `{}` asks for {want} pods but only {} match",
                    self.target_name,
                    live.len()
                )));
            }
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            Ok(sample(&mut *rng, live.len(), want).into_vec())
        })
        .await
    }

    /// Resolve the live pods the target matches (sorted by name) and let `pick` choose among
    /// them, by index; the blast-radius cap applies to whatever it picks. Nothing is touched.
    pub async fn prepare_by(
        &self,
        pick: impl FnOnce(&[&LivePod]) -> Result<Vec<usize>, FaultError>,
    ) -> Result<Choice, FaultError> {
        let t = &self.target;
        let pods = live_pods(&self.client, &t.namespace, &t.selector).await?;
        let owners = match &t.workload {
            Some(w) => Some(pod_owner_uids(&self.client, w).await.map_err(|e| {
                FaultError::NoTarget(format!("workload {}/{}: {e}", w.namespace, w.name))
            })?),
            None => None,
        };
        let live: Vec<&LivePod> = pods
            .iter()
            .filter(|p| {
                owners
                    .as_ref()
                    .is_none_or(|o| o.iter().any(|uid| p.owners.contains(uid)))
            })
            .collect();
        if live.is_empty() {
            return Err(no_running_pods(&t.selector, &t.namespace));
        }
        let ready = live.iter().filter(|p| p.ready).count();
        let cap = match t.max_targets {
            Some(m) => m as usize,
            None => 1.min(ready * 34 / 100),
        };
        let mut idx = pick(&live)?;
        idx.sort_unstable();
        idx.dedup();
        let want = idx.len();
        if want > cap {
            let why = match t.max_targets {
                Some(m) => format!("max-targets is {m}"),
                None => format!(
                    "the default cap is 1 pod or 34% of the {ready} ready replicas, whichever is smaller"
                ),
            };
            return Err(FaultError::NoTarget(format!(
                "target `{}` would kill {want} pod(s), more than the blast-radius cap allows ({why}); raise `max-targets` on the target to allow it",
                self.target_name
            )));
        }
        let chosen: Vec<(String, Option<String>)> = idx
            .into_iter()
            .filter_map(|i| live.get(i))
            .map(|p| (p.name.clone(), p.uid.clone()))
            .collect();
        *self.chosen.lock().unwrap_or_else(|e| e.into_inner()) = chosen.clone();
        Ok(Choice {
            matched: live.len(),
            ready,
            cap,
            chosen: chosen.into_iter().map(|(name, _)| name).collect(),
        })
    }

    pub async fn inject(&self, label: String) -> Result<Injection, FaultError> {
        let chosen = self
            .chosen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if chosen.is_empty() {
            return Err(FaultError::inject("no pods were chosen (prepare first)"));
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.target.namespace);
        let grace = Some(self.grace.as_secs() as u32);
        // Deletes go out several at a time: one by one, a kill of 1,000 pods took seconds
        // (one API round trip each), smearing what should be one blow over a long window.
        // Outcomes are judged in the chosen order, by the same rules as one at a time. Each
        // delete carries the chosen pod's uid, so a new pod under the same name is not hit.
        let sent_and_answered: Vec<_> = futures::stream::iter(&chosen)
            .map(|(name, uid)| {
                let api = &api;
                let dp = DeleteParams {
                    grace_period_seconds: grace,
                    preconditions: uid.as_ref().map(|uid| Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                async move {
                    let sent = Instant::now();
                    // Only the outcome is kept: the deleted Pod the server answers with is
                    // ~7 KB once decoded, and a kill of 10,000 held them all until the end.
                    let r = retry("delete pod", &Backoff::default(), || api.delete(name, &dp))
                        .await
                        .map(drop);
                    (sent, Instant::now(), r)
                }
            })
            .buffered(DELETES_IN_FLIGHT)
            .collect()
            .await;
        // Whether anything was touched decides between "nothing deleted" and a partial kill.
        let any_deleted = sent_and_answered.iter().any(|(_, _, r)| r.is_ok());
        let mut first: Option<(Instant, Instant)> = None;
        let mut deleted = Vec::new();
        for ((name, _), (sent, answered, r)) in chosen.iter().zip(sent_and_answered) {
            match r {
                Ok(_) => {
                    if first.is_none_or(|(_, a)| answered < a) {
                        first = Some((sent, answered));
                    }
                    deleted.push(name.clone());
                }
                // A 404 after a failed attempt: that attempt may have deleted it.
                Err(f) if f.uncertain => {
                    return Err(FaultError::inject(format!(
                        "the outcome of deleting pod {name} is unknown: {f}"
                    )));
                }
                // Gone already (its controller or someone else deleted it), or replaced by a
                // new pod of the same name (409: the uid differs): not our kill.
                Err(f) if matches!(&f.last, Some(kube::Error::Api(s)) if s.code == 404 || s.code == 409) =>
                    {}
                Err(f) => {
                    if !any_deleted {
                        return Err(FaultError::inject_by(
                            format!("cannot delete pod {name}"),
                            f,
                        ));
                    }
                    tracing::warn!(pod = %name, error = %f, "delete failed after other pods were deleted");
                }
            }
        }
        let Some((sent_at, accepted_at)) = first else {
            return Err(FaultError::NoTarget(
                "every chosen pod was gone before it could be deleted".into(),
            ));
        };
        Ok(Injection {
            fault: label,
            sent_at,
            accepted_at,
            detail: format!(
                "deleted pod {} in namespace {} (grace {}s)",
                deleted.join(", "),
                self.target.namespace,
                self.grace.as_secs()
            ),
            affected: deleted.clone(),
            deleted_pods: deleted,
            revert: RevertPlan::Irreversible {
                why: "a deleted pod is replaced by its workload controller, not by firedrill"
                    .into(),
            },
            duration: None,
            restore: None,
        })
    }
}
/// The uids of the objects that own the workload's pods: the workload itself, or for a
/// deployment its replica sets.
pub async fn pod_owner_uids(
    client: &Client,
    w: &WorkloadRef,
) -> Result<BTreeSet<String>, KubeError> {
    let uid = |m: &kube::api::ObjectMeta| m.uid.clone().unwrap_or_default();
    Ok(match w.kind {
        WorkloadKind::StatefulSet => {
            let s = Api::<StatefulSet>::namespaced(client.clone(), &w.namespace)
                .get(&w.name)
                .await?;
            BTreeSet::from([uid(&s.metadata)])
        }
        WorkloadKind::ReplicaSet => {
            let s = Api::<ReplicaSet>::namespaced(client.clone(), &w.namespace)
                .get(&w.name)
                .await?;
            BTreeSet::from([uid(&s.metadata)])
        }
        WorkloadKind::Deployment => {
            let d = Api::<Deployment>::namespaced(client.clone(), &w.namespace)
                .get(&w.name)
                .await?;
            let duid = uid(&d.metadata);
            Api::<ReplicaSet>::namespaced(client.clone(), &w.namespace)
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|rs| owned_by(&rs.metadata, &duid))
                .map(|rs| uid(&rs.metadata))
                .collect()
        }
    })
}
