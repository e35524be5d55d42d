//! The kubelet of a node: it runs a pod bound to it (Running after the start delay, Ready after
//! the ready delay), only while the node is on, and writes the container statuses a real one
//! reports. The scheduler, the controllers and the node lifecycle all start it here; it needs
//! none of them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{is_terminating, now_rfc3339, pods, set_at, Sim};
use crate::sim::store::meta_str;
use crate::sim::TruthKind;

pub fn condition(kind: &str, status: bool) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" },
           "lastTransitionTime": now_rfc3339(), "lastProbeTime": null})
}

/// Applies one kubelet step to the pod if it is still the same, live incarnation and its node's
/// kubelet still runs.
fn kubelet_step(
    sim: &Sim,
    (ns, name, uid): (&str, &str, &str),
    kubelet: &CancellationToken,
    what: TruthKind,
    step: impl FnOnce(&Sim, &mut Value),
) -> bool {
    let mut applied = false;
    sim.store.mutate(&pods(), ns, name, |p| {
        if meta_str(p, "uid") != uid || is_terminating(p) || kubelet.is_cancelled() {
            return false;
        }
        step(sim, p);
        applied = true;
        true
    });
    if applied {
        sim.record_truth(ns, name, what);
    }
    applied
}

pub fn container_statuses(pod: &Value, ready: bool, running: bool, ip_time: &str) -> Value {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Value::Array(
        containers
            .iter()
            .map(|c| {
                let name = c.get("name").cloned().unwrap_or(json!("app"));
                let image = c.get("image").cloned().unwrap_or(json!("sim"));
                let state = if running {
                    json!({"running": {"startedAt": ip_time}})
                } else {
                    json!({"waiting": {"reason": "ContainerCreating"}})
                };
                json!({"name": name, "image": image, "imageID": "", "ready": ready,
                       "started": running, "restartCount": 0, "state": state,
                       "containerID": if running { json!(format!("sim://{}", meta_str(pod, "uid"))) } else { Value::Null }})
            })
            .collect(),
    )
}

/// The kubelet of a booted node starting a bound pod again: Running after `start`, Ready after
/// `ready` more.
pub fn spawn_run(
    sim: Arc<Sim>,
    ns: String,
    name: String,
    uid: String,
    node: String,
    start: Duration,
    ready: Duration,
) {
    tokio::spawn(run(sim, ns, name, uid, node, start, ready));
}

pub async fn run(
    sim: Arc<Sim>,
    ns: String,
    name: String,
    uid: String,
    node: String,
    start: Duration,
    ready: Duration,
) {
    // A node that is off runs nothing; it starts its pods again when it boots.
    let Some(kubelet) = sim.kubelet(&node) else {
        return;
    };
    let wait = |d: Duration| {
        let (sim, kubelet) = (sim.clone(), kubelet.clone());
        async move {
            tokio::select! {
                _ = sim.cancel.cancelled() => false,
                _ = kubelet.cancelled() => false,
                _ = tokio::time::sleep(d) => true,
            }
        }
    };
    let id = (ns.as_str(), name.as_str(), uid.as_str());
    if !wait(start).await {
        return;
    }
    let running = kubelet_step(&sim, id, &kubelet, TruthKind::PodRunning, |sim, p| {
        let now = now_rfc3339();
        let ip = sim.next_pod_ip();
        set_at(p, &["status", "phase"], json!("Running"));
        set_at(p, &["status", "podIP"], json!(ip));
        set_at(p, &["status", "podIPs"], json!([{"ip": ip}]));
        set_at(p, &["status", "startTime"], json!(now));
        set_at(
            p,
            &["status", "conditions"],
            json!([
                condition("PodScheduled", true),
                condition("Initialized", true),
                condition("ContainersReady", false),
                condition("Ready", false),
            ]),
        );
        let cs = container_statuses(p, false, true, &now);
        set_at(p, &["status", "containerStatuses"], cs);
    });
    if !running || !wait(ready).await {
        return;
    }
    kubelet_step(&sim, id, &kubelet, TruthKind::PodReady, |_, p| {
        let started = p
            .pointer("/status/startTime")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        set_at(
            p,
            &["status", "conditions"],
            json!([
                condition("PodScheduled", true),
                condition("Initialized", true),
                condition("ContainersReady", true),
                condition("Ready", true),
            ]),
        );
        let cs = container_statuses(p, true, true, &started);
        set_at(p, &["status", "containerStatuses"], cs);
    });
}
