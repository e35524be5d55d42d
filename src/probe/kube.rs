//! Watch-driven Kubernetes sources.
//!
//! - The `kubernetes` probe: a workload is healthy when its ready replicas reach the desired
//!   count (or a floor). Driven by a watch (kube-runtime's watcher), not polling: a sample is
//!   taken when the API's event *arrives*, so a transition is timed to the event's arrival.
//!   Between events the cached state is re-confirmed at the probe's pace (`every-during` while
//!   failing or observing), which proves `stable-for`. When an event changes the state, the
//!   old state is recorded as a check that ran from its last confirmation to the event's
//!   arrival: the truth lies in that interval, so the recovery bracket is honest about the
//!   API's event latency instead of pretending the arrival instant is exact.
//! - The pod-phase watcher: every lifecycle step of the pods a fault targets (deleted,
//!   created, scheduled, running, ready) goes on the timeline as a platform observation.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::experiment::model::node::ZONE_LABEL;
use kube::runtime::watcher::{self, Event as WEvent};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::time::Instant;

use super::{Observation, Pace, ProbeSample, SourceContext};
use crate::experiment::{KubeNodesProbe, KubeProbe, Readiness, WorkloadKind};
use crate::platform::kube::{describe, pod_ready, replicas, WorkloadObject};
use crate::timeline::Sample;

/// The `kubernetes` probe as a source for the executor.
pub fn workload_probe(
    probe: usize,
    client: Client,
    spec: KubeProbe,
    every: Duration,
    every_during: Duration,
) -> impl FnOnce(SourceContext) + Send {
    move |ctx| {
        tokio::spawn(run_workload(probe, client, spec, every, every_during, ctx));
    }
}

fn judge(spec: &KubeProbe, (desired, ready): (i32, i32)) -> Result<(), String> {
    let ok = match spec.ready {
        Readiness::All => ready >= desired,
        Readiness::AtLeast(n) => ready >= n as i32,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{ready}/{desired} replicas ready"))
    }
}

async fn run_workload(
    probe: usize,
    client: Client,
    spec: KubeProbe,
    every: Duration,
    every_during: Duration,
    mut ctx: SourceContext,
) {
    let w = &spec.workload;
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", w.name));
    let ns = w.namespace.clone();
    // One stream type for the three workload kinds.
    let mut events = match w.kind {
        WorkloadKind::Deployment => workload_events(
            Api::<Deployment>::namespaced(client, &ns),
            cfg,
            WorkloadObject::Deployment,
        ),
        WorkloadKind::StatefulSet => workload_events(
            Api::<StatefulSet>::namespaced(client, &ns),
            cfg,
            WorkloadObject::StatefulSet,
        ),
        WorkloadKind::ReplicaSet => workload_events(
            Api::<ReplicaSet>::namespaced(client, &ns),
            cfg,
            WorkloadObject::ReplicaSet,
        ),
    };
    let mut state: Option<Result<(), String>> = None;
    let mut last_beat = Instant::now();
    loop {
        let failing = matches!(state, Some(Err(_)));
        let fast = failing || *ctx.pace.borrow() == Pace::Fast;
        let beat = last_beat + if fast { every_during } else { every };
        let next: Option<Result<(), String>> = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            e = events.next() => match e {
                None => return,
                Some(Ok(WEvent::Apply(obj) | WEvent::InitApply(obj))) => Some(judge(&spec, replicas(&obj))),
                Some(Ok(WEvent::Delete(_))) => Some(Err(format!("{} {}/{} was deleted", kind_name(w.kind), w.namespace, w.name))),
                Some(Ok(WEvent::Init | WEvent::InitDone)) => None,
                // A probe that cannot see is failing, never passing.
                Some(Err(e)) => Some(Err(format!("watch error: {}", watch_error(&e)))),
            },
            _ = tokio::time::sleep_until(beat) => {
                last_beat = Instant::now();
                if let Some(s) = &state {
                    if send(&ctx, probe, s.clone()).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ = ctx.pace.changed() => continue,
        };
        let Some(new) = next else { continue };
        let changed =
            state.as_ref().map(Result::is_ok) != Some(new.is_ok()) || state.as_ref() != Some(&new);
        if !changed {
            continue;
        }
        if let Some(old) = &state {
            if old.is_ok() != new.is_ok()
                && send_span(&ctx, probe, old.clone(), ctx.clock.offset(last_beat))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if send(&ctx, probe, new.clone()).await.is_err() {
            return;
        }
        let at = ctx.clock.now();
        let step = match &new {
            Ok(()) => "all replicas ready".to_string(),
            Err(r) => r.clone(),
        };
        let _ = ctx
            .tx
            .send(Observation::Platform {
                at,
                object: format!("{}/{}", kind_name(w.kind), w.name),
                step,
                detail: None,
            })
            .await;
        state = Some(new);
        last_beat = Instant::now();
    }
}

/// The `kubernetes` probe of nodes as a source: healthy while the nodes the selector matches
/// are Ready (all of them, or at least a number), judged on every watch event as the workload
/// probe is.
pub fn nodes_probe(
    probe: usize,
    client: Client,
    spec: KubeNodesProbe,
    every: Duration,
    every_during: Duration,
) -> impl FnOnce(SourceContext) + Send {
    move |ctx| {
        tokio::spawn(run_nodes(probe, client, spec, every, every_during, ctx));
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn judge_nodes(spec: &KubeNodesProbe, nodes: &BTreeMap<String, bool>) -> Result<(), String> {
    let ready = nodes.values().filter(|r| **r).count();
    let ok = match spec.ready {
        Readiness::All => ready == nodes.len() && !nodes.is_empty(),
        Readiness::AtLeast(n) => ready >= n as usize,
    };
    if ok {
        return Ok(());
    }
    let not: Vec<&str> = nodes
        .iter()
        .filter(|(_, r)| !**r)
        .map(|(n, _)| n.as_str())
        .take(5)
        .collect();
    let more = nodes.len() - ready;
    Err(format!(
        "{ready}/{} nodes ready{}",
        nodes.len(),
        if not.is_empty() {
            format!(
                "; not ready: {}{}",
                not.join(", "),
                if more > not.len() { ", ..." } else { "" }
            )
        } else {
            String::new()
        }
    ))
}

async fn run_nodes(
    probe: usize,
    client: Client,
    spec: KubeNodesProbe,
    every: Duration,
    every_during: Duration,
    mut ctx: SourceContext,
) {
    let mut cfg = watcher::Config::default();
    if !spec.selector.is_empty() {
        cfg = cfg.labels(&spec.selector);
    }
    let mut events = watcher::watcher(Api::<Node>::all(client), cfg)
        .default_backoff()
        .boxed();
    let mut nodes: BTreeMap<String, bool> = BTreeMap::new();
    let mut listing: BTreeMap<String, bool> = BTreeMap::new();
    let mut state: Option<Result<(), String>> = None;
    let mut last_beat = Instant::now();
    loop {
        let failing = matches!(state, Some(Err(_)));
        let fast = failing || *ctx.pace.borrow() == Pace::Fast;
        let beat = last_beat + if fast { every_during } else { every };
        let next: Option<Result<(), String>> = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            e = events.next() => match e {
                None => return,
                Some(Ok(WEvent::Init)) => { listing.clear(); None }
                Some(Ok(WEvent::InitApply(n))) => {
                    if let Some(name) = n.metadata.name.clone() { listing.insert(name, node_ready(&n)); }
                    None
                }
                Some(Ok(WEvent::InitDone)) => {
                    nodes = std::mem::take(&mut listing);
                    Some(judge_nodes(&spec, &nodes))
                }
                Some(Ok(WEvent::Apply(n))) => {
                    if let Some(name) = n.metadata.name.clone() { nodes.insert(name, node_ready(&n)); }
                    Some(judge_nodes(&spec, &nodes))
                }
                Some(Ok(WEvent::Delete(n))) => {
                    if let Some(name) = n.metadata.name.as_ref() { nodes.remove(name); }
                    Some(judge_nodes(&spec, &nodes))
                }
                // A probe that cannot see is failing, never passing.
                Some(Err(e)) => Some(Err(format!("watch error: {}", watch_error(&e)))),
            },
            _ = tokio::time::sleep_until(beat) => {
                last_beat = Instant::now();
                if let Some(s) = &state {
                    if send(&ctx, probe, s.clone()).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ = ctx.pace.changed() => continue,
        };
        let Some(new) = next else { continue };
        if state.as_ref() == Some(&new) {
            continue;
        }
        if let Some(old) = &state {
            if old.is_ok() != new.is_ok()
                && send_span(&ctx, probe, old.clone(), ctx.clock.offset(last_beat))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if send(&ctx, probe, new.clone()).await.is_err() {
            return;
        }
        state = Some(new);
        last_beat = Instant::now();
    }
}

type WorkloadEvents =
    futures::stream::BoxStream<'static, Result<WEvent<WorkloadObject>, watcher::Error>>;

fn workload_events<K>(
    api: Api<K>,
    cfg: watcher::Config,
    wrap: fn(K) -> WorkloadObject,
) -> WorkloadEvents
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher::watcher(api, cfg)
        .default_backoff()
        .map(move |e| {
            e.map(|e| match e {
                WEvent::Apply(k) => WEvent::Apply(wrap(k)),
                WEvent::Delete(k) => WEvent::Delete(wrap(k)),
                WEvent::InitApply(k) => WEvent::InitApply(wrap(k)),
                WEvent::Init => WEvent::Init,
                WEvent::InitDone => WEvent::InitDone,
            })
        })
        .boxed()
}

fn watch_error(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => describe(k),
        other => other.to_string(),
    }
}

fn kind_name(k: WorkloadKind) -> &'static str {
    match k {
        WorkloadKind::Deployment => "deployment",
        WorkloadKind::StatefulSet => "statefulset",
        WorkloadKind::ReplicaSet => "replicaset",
    }
}

async fn send(ctx: &SourceContext, probe: usize, state: Result<(), String>) -> Result<(), ()> {
    send_span(ctx, probe, state, ctx.clock.now()).await
}

/// A sample of `state` confirmed over `[since, now]`.
async fn send_span(
    ctx: &SourceContext,
    probe: usize,
    state: Result<(), String>,
    since: Duration,
) -> Result<(), ()> {
    let now = ctx.clock.now();
    let sample = Sample {
        scheduled: since,
        start: since.min(now),
        end: now,
        ok: state.is_ok(),
        reason: state.err(),
    };
    ctx.tx
        .send(Observation::Sample(ProbeSample { probe, sample }))
        .await
        .map_err(|_| ())
}

/// The pods' lifecycle steps as platform observations, for the recovery phases.
pub fn pod_phases(
    client: Client,
    namespace: String,
    selector: String,
) -> impl FnOnce(SourceContext) + Send {
    move |ctx| {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let cfg = watcher::Config::default().labels(&selector);
        tokio::spawn(run_pod_phases(api, cfg, Naming::Name, client, ctx));
    }
}

/// The lifecycle steps of every pod in the cluster, named `namespace/name`, with the node (and
/// zone) each is scheduled on and the scheduler's reason when one cannot be: what a node
/// fault takes away spans namespaces, and where the replacements land is the finding.
pub fn node_pod_phases(client: Client) -> impl FnOnce(SourceContext) + Send {
    move |ctx| {
        let api: Api<Pod> = Api::all(client.clone());
        tokio::spawn(run_pod_phases(
            api,
            watcher::Config::default(),
            Naming::NamespaceName,
            client,
            ctx,
        ));
    }
}

/// How a pod is named on the timeline.
#[derive(Clone, Copy)]
enum Naming {
    Name,
    NamespaceName,
}

#[derive(Default, Clone, PartialEq)]
struct PodState {
    scheduled: bool,
    running: bool,
    ready: bool,
    terminating: bool,
    node: Option<String>,
    /// The scheduler's message while the pod cannot be scheduled.
    unschedulable: Option<String>,
}

fn pod_state(p: &Pod) -> PodState {
    let status = p.status.as_ref();
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    let unschedulable = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
        .map(|c| c.message.clone().unwrap_or_else(|| "Unschedulable".into()));
    PodState {
        scheduled: node.is_some(),
        running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
        ready: pod_ready(p),
        terminating: p.metadata.deletion_timestamp.is_some(),
        node,
        unschedulable,
    }
}

fn pod_name(p: &Pod, naming: Naming) -> Option<String> {
    let name = p.metadata.name.clone()?;
    Some(match naming {
        Naming::Name => name,
        Naming::NamespaceName => format!("{}/{name}", p.metadata.namespace.as_deref()?),
    })
}

/// `node-b1 (zone-b)`, or the node alone when its zone is unknown.
fn where_on(node: &str, zones: &BTreeMap<String, String>) -> String {
    match zones.get(node) {
        Some(z) => format!("{node} ({z})"),
        None => node.to_string(),
    }
}

async fn run_pod_phases(
    api: Api<Pod>,
    cfg: watcher::Config,
    naming: Naming,
    client: Client,
    ctx: SourceContext,
) {
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    // Node → zone, kept by a watch of the nodes (a few thousand objects at most), for the
    // cluster-wide watch of a node fault; a pod-kill's namespaced watch does without.
    let mut nodes = match naming {
        Naming::NamespaceName => {
            watcher::watcher(Api::<Node>::all(client), watcher::Config::default())
                .default_backoff()
                .boxed()
        }
        Naming::Name => futures::stream::pending().boxed(),
    };
    let mut zones: BTreeMap<String, String> = BTreeMap::new();
    let mut pods: BTreeMap<String, PodState> = BTreeMap::new();
    let mut initial = true;
    loop {
        let e = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            n = nodes.next() => {
                match n {
                    Some(Ok(WEvent::Apply(n) | WEvent::InitApply(n))) => {
                        if let (Some(name), Some(z)) = (
                            n.metadata.name.clone(),
                            n.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL)).cloned(),
                        ) {
                            zones.insert(name, z);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::debug!(error = %watch_error(&e), "node watch error"),
                    // Nodes cannot be watched (no permission): zones stay unknown.
                    None => nodes = futures::stream::pending().boxed(),
                }
                continue;
            }
            e = events.next() => e,
        };
        let at = ctx.clock.now();
        let mut steps: Vec<(String, &'static str, Option<String>)> = Vec::new();
        match e {
            None => return,
            Some(Ok(WEvent::Init)) => initial = true,
            Some(Ok(WEvent::InitDone)) => initial = false,
            Some(Ok(WEvent::InitApply(p))) => {
                if let Some(name) = pod_name(&p, naming) {
                    pods.insert(name, pod_state(&p));
                }
            }
            Some(Ok(WEvent::Apply(p))) => {
                let Some(name) = pod_name(&p, naming) else {
                    continue;
                };
                let new = pod_state(&p);
                let old = match pods.insert(name.clone(), new.clone()) {
                    Some(o) => o,
                    None => {
                        steps.push((name.clone(), "created", None));
                        PodState::default()
                    }
                };
                if let Some(why) = new
                    .unschedulable
                    .as_ref()
                    .filter(|w| old.unschedulable.as_ref() != Some(*w))
                {
                    steps.push((name.clone(), "unschedulable", Some(why.clone())));
                }
                if new.scheduled && !old.scheduled {
                    let on = new.node.as_deref().map(|n| where_on(n, &zones));
                    steps.push((name.clone(), "scheduled", on));
                }
                if new.running && !old.running {
                    steps.push((name.clone(), "running", None));
                }
                if new.ready && !old.ready {
                    steps.push((name.clone(), "ready", None));
                }
                if !new.ready && old.ready && !new.terminating {
                    steps.push((name.clone(), "not ready", None));
                }
                if new.terminating && !old.terminating {
                    let on = new.node.as_deref().map(|n| where_on(n, &zones));
                    steps.push((name.clone(), "terminating", on));
                }
            }
            Some(Ok(WEvent::Delete(p))) => {
                if let Some(name) = pod_name(&p, naming) {
                    pods.remove(&name);
                    steps.push((name, "deleted", None));
                }
            }
            Some(Err(e)) => tracing::warn!(error = %watch_error(&e), "pod watch error"),
        }
        if initial {
            continue;
        }
        for (name, step, detail) in steps {
            let obs = Observation::Platform {
                at,
                object: format!("pod/{name}"),
                step: step.to_string(),
                detail,
            };
            if ctx.tx.send(obs).await.is_err() {
                return;
            }
        }
    }
}
