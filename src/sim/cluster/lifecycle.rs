//! The node lifecycle controller and taint manager of the simulated cluster.
//!
//! Power (`sim.firedrill.io/power` on a Node): "off" stops the node's kubelet at once (the
//! store observer cancels it, so no pod step runs after the write); after the scenario's
//! `grace` the node is Ready=Unknown, tainted `node.kubernetes.io/unreachable` (NoSchedule and
//! NoExecute) and its pods are marked not ready. Removing the annotation (or "on") boots the
//! node: after `boot-delay` it is Ready again, untainted, its terminating pods are finished
//! and its other pods run their kubelet steps again.
//!
//! Cordon: `spec.unschedulable` adds the `node.kubernetes.io/unschedulable:NoSchedule` taint
//! (removed on uncordon). Taint manager: a pod on a node with a NoExecute taint it does not
//! tolerate is deleted at once; one tolerating it for tolerationSeconds when they run out,
//! counted from when the taint was added.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::nodes::{
    powered_off, taints_of, tolerations_of, unschedulable, Taint, TAINT_NOT_READY,
    TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE,
};
use super::{is_ready, is_terminating, lock, now_rfc3339, pods, set_at, Sim};
use crate::sim::store::{meta_str, ResId};
use crate::sim::TruthKind;

pub fn nodes() -> ResId {
    ResId::new("", "nodes")
}

/// What the controller last acted on, per node.
#[derive(Debug, Default)]
struct Life {
    powered: bool,
    /// Bumped on every power transition: a timer of an older one does nothing.
    generation: u64,
    cordoned: bool,
    no_execute: Vec<Taint>,
}

type Lives = Arc<std::sync::Mutex<HashMap<String, Life>>>;

pub fn start(
    sim: Arc<Sim>,
    mut rx: mpsc::UnboundedReceiver<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let lives: Lives = Arc::default();
        // Nodes created before the controller started.
        for n in sim.store.list(&nodes(), None, |_| true).0 {
            reconcile(&sim, &lives, meta_str(&n, "name"));
        }
        loop {
            let name = tokio::select! {
                _ = sim.cancel.cancelled() => return,
                n = rx.recv() => match n { Some(n) => n, None => return },
            };
            reconcile(&sim, &lives, &name);
        }
    })
}

fn reconcile(sim: &Arc<Sim>, lives: &Lives, name: &str) {
    let Some(node) = sim.store.get(&nodes(), "", name) else {
        lock(lives).remove(name);
        return;
    };
    let off = powered_off(&node);
    let cordon = unschedulable(&node);
    let no_execute: Vec<Taint> = taints_of(&node)
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    let mut all = lock(lives);
    let life = all.entry(name.to_string()).or_insert_with(|| Life {
        powered: true,
        cordoned: false,
        ..Life::default()
    });
    if off == life.powered {
        life.powered = !off;
        life.generation += 1;
        let (delay, generation) = if off {
            (sim.scenario.node_lifecycle.grace(), life.generation)
        } else {
            (sim.scenario.node_lifecycle.boot_delay(), life.generation)
        };
        let (sim2, lives2, name2) = (sim.clone(), lives.clone(), name.to_string());
        tokio::spawn(async move {
            tokio::select! {
                _ = sim2.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let current = lock(&lives2).get(&name2).map(|l| l.generation);
            if current != Some(generation) {
                return;
            }
            if off {
                not_ready(&sim2, &name2);
            } else {
                ready(&sim2, &name2);
            }
        });
    }
    if cordon != life.cordoned {
        life.cordoned = cordon;
        set_cordon_taint(sim, name, cordon);
        let what = if cordon {
            TruthKind::NodeCordoned
        } else {
            TruthKind::NodeUncordoned
        };
        sim.record_truth_with("", name, what, Some(name), None);
    }
    if no_execute != life.no_execute {
        // A NoExecute taint that went away starts afresh if it comes back.
        lock(&sim.taint_added)
            .retain(|(n, key), _| n != name || no_execute.iter().any(|t| &t.key == key));
        life.no_execute = no_execute;
        drop(all);
        // The table's guard must be gone before a pod is touched: the store's observer
        // locks it again (a `for` keeps the temporaries of its head alive for the loop).
        let on = lock(&sim.nodes).pods_on(name);
        for (ns, pod) in on {
            sweep_pod(sim, &ns, &pod);
        }
    }
}

fn taint(key: &str, effect: &str) -> Value {
    json!({"key": key, "effect": effect, "timeAdded": now_rfc3339()})
}

fn set_cordon_taint(sim: &Sim, name: &str, on: bool) {
    sim.store.mutate(&nodes(), "", name, |n| {
        let mut taints = n
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let has = taints
            .iter()
            .any(|t| t.get("key").and_then(Value::as_str) == Some(TAINT_UNSCHEDULABLE));
        if has == on {
            return false;
        }
        if on {
            taints.push(taint(TAINT_UNSCHEDULABLE, "NoSchedule"));
        } else {
            taints.retain(|t| t.get("key").and_then(Value::as_str) != Some(TAINT_UNSCHEDULABLE));
        }
        set_at(n, &["spec", "taints"], json!(taints));
        true
    });
}

fn set_ready_condition(n: &mut Value, ready: bool) {
    let cond = if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()})
    } else {
        json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
            "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()})
    };
    let mut conds = n
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("Ready"));
    conds.push(cond);
    set_at(n, &["status", "conditions"], json!(conds));
}

/// Grace over with the kubelet silent: Ready=Unknown, unreachable taints, pods not ready.
fn not_ready(sim: &Arc<Sim>, name: &str) {
    let now = Instant::now();
    {
        let mut added = lock(&sim.taint_added);
        added.insert((name.to_string(), TAINT_UNREACHABLE.to_string()), now);
    }
    let changed = sim.store.mutate(&nodes(), "", name, |n| {
        set_ready_condition(n, false);
        let mut taints = n
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for effect in ["NoSchedule", "NoExecute"] {
            let has = taints.iter().any(|t| {
                t.get("key").and_then(Value::as_str) == Some(TAINT_UNREACHABLE)
                    && t.get("effect").and_then(Value::as_str) == Some(effect)
            });
            if !has {
                taints.push(taint(TAINT_UNREACHABLE, effect));
            }
        }
        set_at(n, &["spec", "taints"], json!(taints));
        true
    });
    if changed.is_none() {
        return;
    }
    sim.record_truth_with("", name, TruthKind::NodeNotReady, Some(name), None);
    // Not `for .. in lock(..)`: the guard would live through the loop, and the store's
    // observer locks the node table on every mutation.
    let on = lock(&sim.nodes).pods_on(name);
    for (ns, pod) in on {
        sim.store.mutate(&pods(), &ns, &pod, |p| {
            if !is_ready(p) && p.pointer("/status/phase").and_then(Value::as_str) != Some("Running")
            {
                return false;
            }
            let mut conds = p
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for c in conds.iter_mut() {
                let t = c.get("type").and_then(Value::as_str).unwrap_or("");
                if t == "Ready" || t == "ContainersReady" {
                    c["status"] = json!("False");
                    c["lastTransitionTime"] = json!(now_rfc3339());
                }
            }
            set_at(p, &["status", "conditions"], json!(conds));
            if let Some(cs) = p
                .pointer_mut("/status/containerStatuses")
                .and_then(Value::as_array_mut)
            {
                for c in cs {
                    c["ready"] = json!(false);
                }
            }
            true
        });
    }
}

/// Booted: Ready=True, unreachable and not-ready taints gone, terminating pods finished, the
/// others run their kubelet steps again.
fn ready(sim: &Arc<Sim>, name: &str) {
    let changed = sim.store.mutate(&nodes(), "", name, |n| {
        set_ready_condition(n, true);
        let taints: Vec<Value> = n
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| {
                let k = t.get("key").and_then(Value::as_str);
                k != Some(TAINT_UNREACHABLE) && k != Some(TAINT_NOT_READY)
            })
            .collect();
        set_at(n, &["spec", "taints"], json!(taints));
        true
    });
    if changed.is_none() {
        return;
    }
    lock(&sim.taint_added).retain(|(n, _), _| n != name);
    let token = CancellationToken::new();
    lock(&sim.kubelets).insert(name.to_string(), token);
    sim.record_truth_with("", name, TruthKind::NodeReady, Some(name), None);
    let on_node = lock(&sim.nodes).pods_on(name);
    for (ns, pod) in on_node {
        let Some(p) = sim.store.get(&pods(), &ns, &pod) else {
            continue;
        };
        let uid = meta_str(&p, "uid").to_string();
        if is_terminating(&p) {
            sim.remove(&pods(), &ns, &pod, Some(&uid));
        } else if !is_ready(&p) {
            let t = sim.timings_for(&p);
            let n = sim
                .restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut rng = sim.keyed_rng(&format!("{ns}/{pod}"), 1 + n);
            let start = t.start_delay.sample(&mut rng);
            let ready = t.ready_delay.sample(&mut rng);
            super::kubelet::spawn_run(sim.clone(), ns, pod, uid, name.to_string(), start, ready);
        }
    }
}

/// When the taints of the pod's node say it must go: now, at an instant, or never.
fn eviction_due(sim: &Sim, node: &str, taints: &[Taint], pod: &Value) -> Option<(Instant, String)> {
    let tolerations = tolerations_of(pod);
    let now = Instant::now();
    let mut due: Option<(Instant, String)> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations.iter().filter(|x| x.tolerates(t)).collect();
        if matching.is_empty() {
            return Some((now, t.key.clone()));
        }
        // Tolerated forever by one of them: this taint never evicts.
        if matching.iter().any(|x| x.seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|x| x.seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        // A taint the controller did not add (kubectl taint) counts from when it was first
        // seen, kept so that a later look does not restart its clock.
        let added = *lock(&sim.taint_added)
            .entry((node.to_string(), t.key.clone()))
            .or_insert(now);
        let at = added + Duration::from_secs(secs as u64);
        if due.as_ref().is_none_or(|(d, _)| at < *d) {
            due = Some((at, t.key.clone()));
        }
    }
    due
}

/// Evicts the pod now if its node's NoExecute taints say so, or sets a timer that looks again
/// when its toleration runs out.
pub fn sweep_pod(sim: &Arc<Sim>, ns: &str, name: &str) {
    let Some(pod) = sim.store.get(&pods(), ns, name) else {
        return;
    };
    if is_terminating(&pod) {
        return;
    }
    let Some(node) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return;
    };
    let Some(node_obj) = sim.store.get(&nodes(), "", node) else {
        return;
    };
    let taints = taints_of(&node_obj);
    let Some((at, key)) = eviction_due(sim, node, &taints, &pod) else {
        return;
    };
    if at <= Instant::now() {
        if sim.delete(&pods(), ns, name, None).is_ok() {
            sim.record_truth_with(
                ns,
                name,
                TruthKind::PodEvictedByTaint,
                Some(node),
                Some(&key),
            );
        }
        return;
    }
    let uid = meta_str(&pod, "uid").to_string();
    let (sim, ns, name) = (sim.clone(), ns.to_string(), name.to_string());
    tokio::spawn(async move {
        tokio::select! {
            _ = sim.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(at) => {}
        }
        let same = sim
            .store
            .get(&pods(), &ns, &name)
            .is_some_and(|p| meta_str(&p, "uid") == uid);
        if same {
            sweep_pod(&sim, &ns, &name);
        }
    });
}
