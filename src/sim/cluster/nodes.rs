//! What the scheduler and the node controllers know about nodes, kept exact and cheap: a table
//! updated synchronously by the store on every committed node and pod change (so it never lags
//! the store), with per-node usage tallies and per-owner spread counts, and the scheduling
//! decision itself as a pure function of that table.
//!
//! A pod counts against its node's allocatable from binding until it is removed from the store
//! (terminating pods still count, as in Kubernetes); for spreading only pods that are not
//! terminating count.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::is_terminating;
use crate::sim::scenario::Quantity;
use crate::sim::store::{meta_str, Change, ChangeKind};

/// The annotation of the simulated power switch: "off" stops the node's kubelet at once.
pub const POWER_ANNOTATION: &str = "sim.firedrill.io/power";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub operator: String,
    pub value: String,
    pub effect: String,
    pub seconds: Option<i64>,
}

impl Toleration {
    /// Kubernetes' ToleratesTaint: effect and key match (empty means any), then Exists or an
    /// equal value.
    pub fn tolerates(&self, t: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != t.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != t.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => self.value == t.value,
            _ => false,
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn taints_of(node: &Value) -> Vec<Taint> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| Taint {
                    key: str_at(t, "key").to_string(),
                    value: str_at(t, "value").to_string(),
                    effect: str_at(t, "effect").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn tolerations_of(pod: &Value) -> Vec<Toleration> {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| Toleration {
                    key: str_at(t, "key").to_string(),
                    operator: str_at(t, "operator").to_string(),
                    value: str_at(t, "value").to_string(),
                    effect: str_at(t, "effect").to_string(),
                    seconds: t.get("tolerationSeconds").and_then(Value::as_i64),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "type") == "Ready" && str_at(c, "status") == "True")
        })
}

pub fn powered_off(node: &Value) -> bool {
    node.pointer("/metadata/annotations")
        .and_then(|a| a.get(POWER_ANNOTATION))
        .and_then(Value::as_str)
        == Some("off")
}

pub fn unschedulable(node: &Value) -> bool {
    node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
}

/// A quantity field of a Kubernetes object (string or number) as milli-units; 0 if absent or
/// unreadable (a request nobody can parse requests nothing).
fn quantity_at(v: Option<&Value>) -> i64 {
    let text = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return 0,
    };
    Quantity::parse(&text).map(Quantity::milli).unwrap_or(0)
}

/// One node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub zone: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    /// Allocatable millicores, bytes and pods.
    pub cpu: i64,
    pub mem: i64,
    pub pods: i64,
}

impl NodeInfo {
    pub fn of(node: &Value) -> NodeInfo {
        let labels: BTreeMap<String, String> = node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let alloc = node.pointer("/status/allocatable");
        let get = |k: &str| alloc.and_then(|a| a.get(k));
        let ip = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|x| str_at(x, "type") == "InternalIP")
                    .map(|x| str_at(x, "address").to_string())
            })
            .unwrap_or_default();
        NodeInfo {
            zone: labels.get(ZONE_LABEL).cloned().unwrap_or_default(),
            ip,
            ready: node_ready(node),
            unschedulable: unschedulable(node),
            taints: taints_of(node),
            cpu: quantity_at(get("cpu")),
            mem: quantity_at(get("memory")) / 1000,
            pods: quantity_at(get("pods")) / 1000,
            labels,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: i64,
    pub mem: i64,
    pub pods: i64,
}

/// What a pod asks of a node.
#[derive(Debug, Clone, Default)]
pub struct PodReq {
    pub cpu: i64,
    pub mem: i64,
    pub tolerations: Vec<Toleration>,
    pub selector: BTreeMap<String, String>,
    /// uid of the controlling owner, for spreading.
    pub owner: Option<String>,
}

impl PodReq {
    pub fn of(pod: &Value) -> PodReq {
        let (mut cpu, mut mem) = (0, 0);
        for c in pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = c.pointer("/resources/requests");
            cpu += quantity_at(req.and_then(|r| r.get("cpu")));
            mem += quantity_at(req.and_then(|r| r.get("memory"))) / 1000;
        }
        let selector = pod
            .pointer("/spec/nodeSelector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        PodReq {
            cpu,
            mem,
            tolerations: tolerations_of(pod),
            selector,
            owner: super::owner(pod)
                .map(|(_, _, uid)| uid.to_string())
                .filter(|u| !u.is_empty()),
        }
    }

    /// Pods with the same shape fit the same nodes: one failure answers for all of them in
    /// a scheduling pass.
    pub fn shape(&self) -> String {
        format!(
            "{}/{}/{:?}/{:?}",
            self.cpu, self.mem, self.tolerations, self.selector
        )
    }

    pub fn tolerates(&self, t: &Taint) -> bool {
        self.tolerations.iter().any(|x| x.tolerates(t))
    }
}

/// A pod's claim on its node, as counted.
#[derive(Debug, Clone)]
struct Slot {
    node: String,
    zone: usize,
    cpu: i64,
    mem: i64,
    owner: Option<String>,
    /// Not terminating: counts for spreading.
    active: bool,
}

/// A node with what is bound to it.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub info: NodeInfo,
    pub usage: Usage,
    /// Index of the node's zone in the table's zone list.
    zone: usize,
}

#[derive(Debug, Default)]
pub struct NodeTable {
    /// By name: the scheduler scans them in this order, so ties go to the first name.
    pub nodes: BTreeMap<String, NodeEntry>,
    /// Usage on node names that have no Node object (deleted, or never created).
    orphans: HashMap<String, Usage>,
    /// Pods bound to each node, by (namespace, name).
    pub on_node: HashMap<String, BTreeSet<(String, String)>>,
    slots: HashMap<(String, String), Slot>,
    zones: Vec<String>,
    /// Per owner uid: its active pods per node name and per zone index.
    owner_node: HashMap<String, HashMap<String, u32>>,
    owner_zone: HashMap<String, Vec<u32>>,
}

/// What a change means beyond the table: the scheduler should look again.
pub struct Observed {
    pub node_changed: Option<String>,
    pub capacity_freed: bool,
}

impl NodeTable {
    fn zone_index(&mut self, zone: &str) -> usize {
        match self.zones.iter().position(|z| z == zone) {
            Some(i) => i,
            None => {
                self.zones.push(zone.to_string());
                self.zones.len() - 1
            }
        }
    }

    /// Applies one committed change; called by the store under its lock, in commit order.
    pub fn observe(&mut self, c: &Change) -> Observed {
        let mut out = Observed {
            node_changed: None,
            capacity_freed: false,
        };
        match c.res.plural.as_str() {
            "nodes" if c.res.group.is_empty() => {
                let name = meta_str(&c.obj, "name").to_string();
                if c.kind == ChangeKind::Deleted {
                    if let Some(gone) = self.nodes.remove(&name) {
                        self.orphans.insert(name.clone(), gone.usage);
                    }
                } else {
                    let info = NodeInfo::of(&c.obj);
                    let zone = self.zone_index(&info.zone);
                    let usage = match self.nodes.get(&name) {
                        Some(e) => e.usage,
                        None => self.orphans.remove(&name).unwrap_or_default(),
                    };
                    self.nodes
                        .insert(name.clone(), NodeEntry { info, usage, zone });
                }
                out.node_changed = Some(name);
            }
            "pods" if c.res.group.is_empty() => {
                let key = (
                    meta_str(&c.obj, "namespace").to_string(),
                    meta_str(&c.obj, "name").to_string(),
                );
                let new = if c.kind == ChangeKind::Deleted {
                    None
                } else {
                    self.slot_of(&c.obj)
                };
                let old = self.slots.remove(&key);
                if let Some(old) = &old {
                    self.tally(&key, old, -1);
                }
                if let Some(new) = new {
                    self.tally(&key, &new, 1);
                    self.slots.insert(key, new);
                } else if old.is_some() {
                    out.capacity_freed = true;
                }
            }
            _ => {}
        }
        out
    }

    fn slot_of(&mut self, pod: &Value) -> Option<Slot> {
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str)?;
        if node.is_empty() {
            return None;
        }
        let req = PodReq::of(pod);
        let zone = match self.nodes.get(node) {
            Some(e) => e.zone,
            None => self.zone_index(""),
        };
        Some(Slot {
            node: node.to_string(),
            zone,
            cpu: req.cpu,
            mem: req.mem,
            owner: req.owner,
            active: !is_terminating(pod),
        })
    }

    /// The usage of a node, with or without a Node object.
    #[cfg(test)]
    pub fn usage(&self, node: &str) -> Usage {
        match self.nodes.get(node) {
            Some(e) => e.usage,
            None => self.orphans.get(node).copied().unwrap_or_default(),
        }
    }

    fn tally(&mut self, key: &(String, String), s: &Slot, sign: i64) {
        let u = match self.nodes.get_mut(&s.node) {
            Some(e) => &mut e.usage,
            None => self.orphans.entry(s.node.clone()).or_default(),
        };
        u.cpu += sign * s.cpu;
        u.mem += sign * s.mem;
        u.pods += sign;
        let set = self.on_node.entry(s.node.clone()).or_default();
        if sign > 0 {
            set.insert(key.clone());
        } else {
            set.remove(key);
        }
        if let (Some(owner), true) = (&s.owner, s.active) {
            let step = |n: &mut u32| {
                *n = if sign > 0 {
                    *n + 1
                } else {
                    n.saturating_sub(1)
                };
            };
            let per = self.owner_node.entry(owner.clone()).or_default();
            step(per.entry(s.node.clone()).or_default());
            let zones = self.owner_zone.entry(owner.clone()).or_default();
            if zones.len() <= s.zone {
                zones.resize(s.zone + 1, 0);
            }
            step(&mut zones[s.zone]);
        }
    }

    /// Pods bound to `node`, by (namespace, name).
    pub fn pods_on(&self, node: &str) -> Vec<(String, String)> {
        self.on_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Why `node` cannot take the pod (Kubernetes' filter messages, in its plugin order),
    /// or nothing when it can.
    fn filter(entry: &NodeEntry, req: &PodReq) -> Vec<String> {
        let node = &entry.info;
        if node.unschedulable
            && !req.tolerates(&Taint {
                key: TAINT_UNSCHEDULABLE.into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            })
        {
            return vec!["node(s) were unschedulable".into()];
        }
        if req
            .selector
            .iter()
            .any(|(k, v)| node.labels.get(k) != Some(v))
        {
            return vec!["node(s) didn't match Pod's node affinity/selector".into()];
        }
        if let Some(t) = node
            .taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .find(|t| !req.tolerates(t))
        {
            return vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key, t.value
            )];
        }
        if !node.ready {
            return vec![format!(
                "node(s) had untolerated taint {{{TAINT_NOT_READY}: }}"
            )];
        }
        let used = entry.usage;
        let mut why = Vec::new();
        if used.pods + 1 > node.pods {
            why.push("Too many pods".to_string());
        }
        if req.cpu > 0 && used.cpu + req.cpu > node.cpu {
            why.push("Insufficient cpu".to_string());
        }
        if req.mem > 0 && used.mem + req.mem > node.mem {
            why.push("Insufficient memory".to_string());
        }
        why
    }

    /// The node for the pod: feasible nodes scored by fewest pods of the same owner in the
    /// zone, then on the node, then the least requested CPU share, then the name. Otherwise
    /// the scheduler's message, "0/N nodes are available: ...".
    pub fn schedule(&self, req: &PodReq) -> Result<String, String> {
        let zones = req.owner.as_ref().and_then(|o| self.owner_zone.get(o));
        let per_node = req.owner.as_ref().and_then(|o| self.owner_node.get(o));
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        // (zone count, node count, cpu used after, cpu allocatable, name)
        let mut best: Option<(u32, u32, i64, i64, &str)> = None;
        for (name, entry) in &self.nodes {
            let why = Self::filter(entry, req);
            if !why.is_empty() {
                for r in why {
                    *reasons.entry(r).or_default() += 1;
                }
                continue;
            }
            let zc = zones.and_then(|z| z.get(entry.zone)).copied().unwrap_or(0);
            // Only a node that ties on the zone count needs its own count (a hash lookup).
            if best.is_some_and(|b| zc > b.0) {
                continue;
            }
            let nc = per_node.and_then(|n| n.get(name)).copied().unwrap_or(0);
            let cand = (
                zc,
                nc,
                entry.usage.cpu + req.cpu,
                entry.info.cpu.max(1),
                name.as_str(),
            );
            let better = match &best {
                None => true,
                Some(b) => {
                    // used/allocatable compared without division.
                    let mine = i128::from(cand.2) * i128::from(b.3);
                    let theirs = i128::from(b.2) * i128::from(cand.3);
                    (cand.0, cand.1)
                        .cmp(&(b.0, b.1))
                        .then(mine.cmp(&theirs))
                        .is_lt()
                }
            };
            if better {
                best = Some(cand);
            }
        }
        if let Some(b) = best {
            return Ok(b.4.to_string());
        }
        Err(unschedulable_message(self.nodes.len(), &reasons))
    }
}

/// Kubernetes' FitError text: the reasons as "COUNT REASON", sorted as strings, then the
/// preemption post-filter's verdict.
pub fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    if total == 0 {
        return "0/0 nodes are available: no nodes available to schedule pods.".into();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::store::{Obj, ResId};
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, zone: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {ZONE_LABEL: zone}},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "3"},
                "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str) -> Value {
        let mut p = json!({"metadata": {"namespace": "a", "name": name,
                "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    fn change(plural: &str, kind: ChangeKind, obj: Value) -> Change {
        Change {
            rv: 1,
            res: ResId::new("", plural),
            kind,
            obj: Arc::new(Obj::new(obj)),
            prev: None,
        }
    }

    #[test]
    fn spreads_over_zones_then_nodes_and_explains_a_misfit() {
        let mut t = NodeTable::default();
        for (n, z) in [("a-1", "a"), ("a-2", "a"), ("b-1", "b")] {
            t.observe(&change("nodes", ChangeKind::Added, node(n, z, "1")));
        }
        let req = PodReq::of(&pod("x", None, "500m"));
        // Empty cluster: ties broken by name.
        assert_eq!(t.schedule(&req).unwrap(), "a-1");
        t.observe(&change(
            "pods",
            ChangeKind::Added,
            pod("p1", Some("a-1"), "500m"),
        ));
        // Zone b has none of the owner's pods.
        assert_eq!(t.schedule(&req).unwrap(), "b-1");
        t.observe(&change(
            "pods",
            ChangeKind::Added,
            pod("p2", Some("b-1"), "500m"),
        ));
        // Both zones have one: the node without one wins.
        assert_eq!(t.schedule(&req).unwrap(), "a-2");
        let big = PodReq::of(&pod("y", None, "2"));
        assert_eq!(
            t.schedule(&big).unwrap_err(),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        // Removal frees capacity.
        t.observe(&change(
            "pods",
            ChangeKind::Deleted,
            pod("p1", Some("a-1"), "500m"),
        ));
        assert_eq!(t.usage("a-1"), Usage::default());
    }

    #[test]
    fn taints_cordons_and_readiness_filter_with_kubernetes_reasons() {
        let mut t = NodeTable::default();
        let mut tainted = node("n-1", "a", "4");
        tainted["spec"]["taints"] = json!([{"key": TAINT_UNREACHABLE, "effect": "NoExecute"}]);
        let mut cordoned = node("n-2", "a", "4");
        cordoned["spec"]["unschedulable"] = json!(true);
        for n in [tainted, cordoned, node("n-3", "a", "100m")] {
            t.observe(&change("nodes", ChangeKind::Added, n));
        }
        let msg = t.schedule(&PodReq::of(&pod("x", None, "1"))).unwrap_err();
        assert!(
            msg.starts_with("0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable. preemption:"),
            "{msg}"
        );
        let mut tolerant = pod("x", None, "1");
        tolerant["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        assert_eq!(t.schedule(&PodReq::of(&tolerant)).unwrap(), "n-1");
    }
}
