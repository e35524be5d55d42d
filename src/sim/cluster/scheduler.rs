//! The simulated scheduler: binds a pod, once its schedule-delay has passed, to the best
//! feasible node of the [`NodeTable`](super::nodes::NodeTable), or marks it Unschedulable with
//! Kubernetes' message and tries again whenever a node changes or a bound pod goes (and every
//! second), binding it as soon as it fits.
//!
//! One task decides for the whole cluster, in arrival order, so decisions never race each
//! other; within one pass a pod whose shape (requests, tolerations, node selector) already
//! failed is not tried again, so a large backlog of identical pods costs one scan.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::nodes::PodReq;
use super::{is_terminating, lock, now_rfc3339, pods, set_at, Sim};
use crate::sim::store::meta_str;
use crate::sim::TruthKind;

/// A pod whose schedule-delay has passed; the reply carries the node it was bound to (it is
/// dropped when the pod goes away first).
pub struct Request {
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub reply: oneshot::Sender<String>,
}

struct Pending {
    req: Request,
    /// The Unschedulable message last written, so that an unchanged verdict is not rewritten.
    last: Option<String>,
}

pub fn start(
    sim: Arc<Sim>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pending: Vec<Pending> = Vec::new();
        loop {
            if pending.is_empty() {
                tokio::select! {
                    _ = sim.cancel.cancelled() => return,
                    r = rx.recv() => match r {
                        Some(req) => pending.push(Pending { req, last: None }),
                        None => return,
                    },
                }
            } else {
                tokio::select! {
                    _ = sim.cancel.cancelled() => return,
                    r = rx.recv() => match r {
                        Some(req) => pending.push(Pending { req, last: None }),
                        None => return,
                    },
                    _ = sim.node_changed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            while let Ok(req) = rx.try_recv() {
                pending.push(Pending { req, last: None });
            }
            pass(&sim, &mut pending);
        }
    })
}

fn pass(sim: &Arc<Sim>, pending: &mut Vec<Pending>) {
    let mut failed: HashMap<String, String> = HashMap::new();
    pending.retain_mut(|p| {
        if sim.cancel.is_cancelled() {
            return true;
        }
        let (ns, name) = (p.req.ns.as_str(), p.req.name.as_str());
        let Some(pod) = sim.store.get(&pods(), ns, name) else {
            return false;
        };
        if meta_str(&pod, "uid") != p.req.uid || is_terminating(&pod) {
            return false;
        }
        let req = PodReq::of(&pod);
        let shape = req.shape();
        let verdict = match failed.get(&shape) {
            Some(msg) => Err(msg.clone()),
            None => lock(&sim.nodes).schedule(&req),
        };
        match verdict {
            Ok(node) => {
                if bind(sim, ns, name, &p.req.uid, &node) {
                    // The kubelet task may be gone (shutdown): nothing to tell then.
                    let (tx, _) = oneshot::channel();
                    let reply = std::mem::replace(&mut p.req.reply, tx);
                    let _ = reply.send(node);
                }
                false
            }
            Err(msg) => {
                failed.insert(shape, msg.clone());
                if p.last.as_deref() != Some(msg.as_str()) {
                    mark_unschedulable(sim, ns, name, &p.req.uid, &msg);
                    p.last = Some(msg);
                }
                true
            }
        }
    });
}

fn condition(status: &str, reason: Option<&str>, message: Option<&str>) -> Value {
    let mut c = json!({"type": "PodScheduled", "status": status,
        "lastTransitionTime": now_rfc3339(), "lastProbeTime": null});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// Binds the pod (still the same incarnation, not terminating, not bound) to `node`: nodeName,
/// hostIP, PodScheduled=True, containers waiting; records `pod-scheduled` with the node.
pub fn bind(sim: &Sim, ns: &str, name: &str, uid: &str, node: &str) -> bool {
    bind_to(sim, ns, name, uid, node, false)
}

/// A pod created with `spec.nodeName` already set: its node's kubelet takes it as it is.
pub fn bind_preset(sim: &Sim, ns: &str, name: &str, uid: &str, node: &str) -> bool {
    bind_to(sim, ns, name, uid, node, true)
}

fn bind_to(sim: &Sim, ns: &str, name: &str, uid: &str, node: &str, preset: bool) -> bool {
    let ip = lock(&sim.nodes)
        .nodes
        .get(node)
        .map(|n| n.info.ip.clone())
        .unwrap_or_default();
    let mut bound = false;
    sim.store.mutate(&pods(), ns, name, |p| {
        let unbound = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if meta_str(p, "uid") != uid || is_terminating(p) || !(unbound || preset) {
            return false;
        }
        set_at(p, &["spec", "nodeName"], json!(node));
        set_at(p, &["status", "hostIP"], json!(ip));
        set_at(p, &["status", "hostIPs"], json!([{"ip": ip}]));
        set_at(
            p,
            &["status", "conditions"],
            json!([condition("True", None, None)]),
        );
        let cs = super::kubelet::container_statuses(p, false, false, "");
        set_at(p, &["status", "containerStatuses"], cs);
        bound = true;
        true
    });
    if bound {
        sim.record_truth_with(ns, name, TruthKind::PodScheduled, Some(node), None);
    }
    bound
}

fn mark_unschedulable(sim: &Sim, ns: &str, name: &str, uid: &str, msg: &str) {
    let mut marked = false;
    sim.store.mutate(&pods(), ns, name, |p| {
        if meta_str(p, "uid") != uid || is_terminating(p) {
            return false;
        }
        set_at(
            p,
            &["status", "conditions"],
            json!([condition("False", Some("Unschedulable"), Some(msg))]),
        );
        marked = true;
        true
    });
    if marked {
        sim.record_truth_with(ns, name, TruthKind::PodUnschedulable, None, Some(msg));
    }
}
