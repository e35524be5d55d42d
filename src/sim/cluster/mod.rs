//! The shared core of the simulated cluster: the store plus the side effects every writer
//! (API handlers and controllers alike) must trigger — a new pod gets a kubelet, a removed pod
//! is recorded — and the ground-truth and request logs.

/// The controllers and the kubelet: what follows from the objects the cluster stores.
pub mod controllers;
/// PodDisruptionBudget status and the Eviction API's decision.
pub mod disruption;
/// A node's kubelet: runs the pods bound to it while the node is on.
pub mod kubelet;
/// The node lifecycle controller (power, cordon) and the taint manager.
pub mod lifecycle;
/// The node and usage index the scheduler decides on.
pub mod nodes;
/// Binds pending pods to nodes.
pub mod scheduler;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::scenario::{KubeletTimings, Scenario};
pub use super::store::{is_ready, is_terminating, owner};
use super::store::{meta_str, Change, ChangeKind, Obj, ResId, Store, StoreError};
use super::{RequestRecord, TruthEvent, TruthKind};
use nodes::{powered_off, NodeTable, TAINT_NOT_READY, TAINT_UNREACHABLE};

pub fn pods() -> ResId {
    ResId::new("", "pods")
}
pub fn replicasets() -> ResId {
    ResId::new("apps", "replicasets")
}
pub fn deployments() -> ResId {
    ResId::new("apps", "deployments")
}
pub fn statefulsets() -> ResId {
    ResId::new("apps", "statefulsets")
}
pub fn endpoints() -> ResId {
    ResId::new("", "endpoints")
}

/// One published endpoint of an HTTP deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub pod: String,
    pub uid: String,
    pub ip: String,
    pub node: String,
}

/// Round-robin routing state of one HTTP deployment, as last published.
#[derive(Debug, Default)]
pub struct Route {
    pub endpoints: Mutex<Vec<Endpoint>>,
    pub next: AtomicUsize,
    pub url: Mutex<String>,
}

pub struct Sim {
    pub store: Store,
    pub scenario: Scenario,
    pub cancel: CancellationToken,
    pub routes: HashMap<(String, String), Arc<Route>>,
    /// Nodes, usage and who runs where, kept by the store's observer.
    pub nodes: Arc<Mutex<NodeTable>>,
    /// Signalled when a node changes or a bound pod is removed: the scheduler looks again.
    pub node_changed: Arc<Notify>,
    /// The running kubelet of each node that is powered on and booted; cancelled at power off.
    pub kubelets: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// When the lifecycle controller added a taint, exactly (timeAdded has whole seconds).
    pub taint_added: Mutex<HashMap<(String, String), tokio::time::Instant>>,
    pub sched_tx: mpsc::UnboundedSender<scheduler::Request>,
    sched_rx: Mutex<Option<mpsc::UnboundedReceiver<scheduler::Request>>>,
    life_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Kubelet restarts after a node boots: a draw number for their delays.
    pub restarts: AtomicU64,
    rng: Mutex<ChaCha8Rng>,
    truth: Arc<Mutex<Vec<TruthEvent>>>,
    requests: Mutex<Vec<RequestRecord>>,
    next_ip: AtomicU32,
    seed: u64,
    /// The service-account tokens minted through the TokenRequest API.
    pub tokens: crate::sim::auth::Tokens,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Logs and the RNG stay usable after a panic elsewhere; they hold no invariants.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets `v.path[0].path[1]... = value`, turning anything in the way that is not an object into
/// one. Writers use it instead of `v["a"]["b"] = x`, which panics when a client stored a
/// non-object there.
pub fn set_at(v: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *v = value;
        return;
    };
    let mut cur = v;
    for key in parents {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Value::Object(m) = cur else { return };
        cur = m.entry(key.to_string()).or_insert(Value::Null);
    }
    if !cur.is_object() {
        *cur = Value::Object(Default::default());
    }
    if let Value::Object(m) = cur {
        m.insert(last.to_string(), value);
    }
}

/// FNV-1a: a hash that is stable across releases and platforms, unlike std's DefaultHasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Lowercase suffix from the alphabet Kubernetes uses for generated names (no vowels, so no
/// accidental words).
pub fn suffix(rng: &mut impl Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub use crate::platform::now_rfc3339;

fn push_truth(
    truth: &Mutex<Vec<TruthEvent>>,
    namespace: &str,
    object: &str,
    what: TruthKind,
    node: Option<&str>,
    detail: Option<&str>,
) {
    lock(truth).push(TruthEvent {
        at: SystemTime::now(),
        mono: tokio::time::Instant::now(),
        namespace: namespace.to_string(),
        object: object.to_string(),
        what,
        node: node.map(str::to_string),
        detail: detail.map(str::to_string),
    });
}

/// The power switch, applied as the node is written: a new node's kubelet starts (unless it is
/// created off), "off" stops it at once, and both transitions are recorded. Booting again is
/// the lifecycle controller's (after the boot delay).
fn power(
    c: &Change,
    name: &str,
    kubelets: &Mutex<HashMap<String, CancellationToken>>,
    truth: &Mutex<Vec<TruthEvent>>,
) {
    let off = c.kind != ChangeKind::Deleted && powered_off(&c.obj);
    match c.kind {
        ChangeKind::Added => {
            if !off {
                lock(kubelets).insert(name.to_string(), CancellationToken::new());
            }
        }
        ChangeKind::Deleted => {
            if let Some(k) = lock(kubelets).remove(name) {
                k.cancel();
            }
        }
        ChangeKind::Modified => {
            let was_off = c.prev.as_ref().is_some_and(|p| powered_off(p));
            if off && !was_off {
                if let Some(k) = lock(kubelets).remove(name) {
                    k.cancel();
                }
                push_truth(truth, "", name, TruthKind::NodePoweredOff, Some(name), None);
            } else if was_off && !off {
                push_truth(truth, "", name, TruthKind::NodePoweredOn, Some(name), None);
            }
        }
    }
}

/// DefaultTolerationSeconds admission: tolerate not-ready and unreachable (NoExecute) for the
/// scenario's default-toleration, unless the pod already tolerates that key.
fn default_tolerations(pod: &mut Value, seconds: i64) {
    let mut tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let before = tolerations.len();
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        let covered = tolerations.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        });
        if !covered {
            tolerations.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}),
            );
        }
    }
    if tolerations.len() != before {
        set_at(pod, &["spec", "tolerations"], json!(tolerations));
    }
}

impl Sim {
    pub fn new(
        scenario: Scenario,
        seed: u64,
        routes: HashMap<(String, String), Arc<Route>>,
    ) -> Self {
        // 200k changes cover several transitions of every pod of a 10,000-pod scenario, so
        // watchers resuming after a short disconnect rarely need to re-list.
        Self::with_history(scenario, seed, routes, 200_000)
    }

    pub fn with_history(
        scenario: Scenario,
        seed: u64,
        routes: HashMap<(String, String), Arc<Route>>,
        history: usize,
    ) -> Self {
        let (sched_tx, sched_rx) = mpsc::unbounded_channel();
        let (life_tx, life_rx) = mpsc::unbounded_channel();
        let sim = Sim {
            store: Store::new(history),
            scenario,
            cancel: CancellationToken::new(),
            routes,
            nodes: Arc::default(),
            node_changed: Arc::default(),
            kubelets: Arc::default(),
            taint_added: Mutex::default(),
            sched_tx,
            sched_rx: Mutex::new(Some(sched_rx)),
            life_rx: Mutex::new(Some(life_rx)),
            restarts: AtomicU64::new(0),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            truth: Arc::default(),
            requests: Mutex::new(Vec::new()),
            next_ip: AtomicU32::new(1),
            seed,
            tokens: Default::default(),
        };
        let (nodes, notify, kubelets, truth) = (
            sim.nodes.clone(),
            sim.node_changed.clone(),
            sim.kubelets.clone(),
            sim.truth.clone(),
        );
        sim.store.set_observer(Box::new(move |c: &Change| {
            let seen = lock(&nodes).observe(c);
            if let Some(name) = &seen.node_changed {
                power(c, name, &kubelets, &truth);
                // The lifecycle controller may have stopped: nothing to tell then.
                let _ = life_tx.send(name.clone());
                notify.notify_one();
            }
            if seen.capacity_freed {
                notify.notify_one();
            }
        }));
        sim
    }

    /// The scheduler's queue, taken once by the scheduler task.
    pub fn take_scheduler_queue(&self) -> Option<mpsc::UnboundedReceiver<scheduler::Request>> {
        lock(&self.sched_rx).take()
    }

    /// The lifecycle controller's queue of changed nodes, taken once by its task.
    pub fn take_lifecycle_queue(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        lock(&self.life_rx).take()
    }

    /// The kubelet of `node` if it runs (powered on and booted).
    pub fn kubelet(&self, node: &str) -> Option<CancellationToken> {
        lock(&self.kubelets).get(node).cloned()
    }

    pub fn truth(&self) -> Vec<TruthEvent> {
        lock(&self.truth).clone()
    }

    pub fn record_truth(&self, namespace: &str, object: &str, what: TruthKind) {
        self.record_truth_with(namespace, object, what, None, None);
    }

    /// A truth event with the node involved and a detail (message, taint key, budget).
    pub fn record_truth_with(
        &self,
        namespace: &str,
        object: &str,
        what: TruthKind,
        node: Option<&str>,
        detail: Option<&str>,
    ) {
        push_truth(&self.truth, namespace, object, what, node, detail);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.requests).clone()
    }

    pub fn record_request(&self, r: RequestRecord) {
        lock(&self.requests).push(r);
    }

    /// A generator derived from the cluster seed, a stable key and a draw number. Pod names and
    /// kubelet delays come from these rather than from one shared stream, so that the same seed
    /// gives the same names and delays however the concurrent tasks happen to interleave.
    pub fn keyed_rng(&self, key: &str, n: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(
            fnv1a(key.as_bytes()) ^ self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )
    }

    /// Random suffix from the cluster's shared stream (generateName of API requests).
    pub fn suffix(&self, len: usize) -> String {
        suffix(&mut *lock(&self.rng), len)
    }

    pub fn new_uid(&self) -> String {
        let mut rng = lock(&self.rng);
        let (a, b, c, d, e): (u32, u16, u16, u16, u64) = (
            rng.random(),
            rng.random(),
            rng.random(),
            rng.random(),
            rng.random(),
        );
        format!(
            "{a:08x}-{b:04x}-4{:03x}-{:04x}-{:012x}",
            c & 0x0fff,
            (d & 0x3fff) | 0x8000,
            e & 0xffff_ffff_ffff
        )
    }

    /// Next pod address, 127.1.0.1 upwards: loopback, so a fake address can never leave the host.
    pub fn next_pod_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        format!(
            "127.{}.{}.{}",
            1 + (n >> 16) % 200,
            (n >> 8) & 0xff,
            n & 0xff
        )
    }

    /// Fills the server-owned metadata of a new object.
    pub fn stamp_new(&self, obj: &mut Value) {
        let uid = self.new_uid();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), Value::String(uid));
            meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
            meta.insert("generation".into(), json!(1));
            meta.remove("deletionTimestamp");
            meta.remove("resourceVersion");
        }
    }

    /// Stores a new object and starts what follows from it (a kubelet for a pod).
    pub fn create(self: &Arc<Self>, res: &ResId, mut obj: Value) -> Result<Arc<Obj>, StoreError> {
        if *res == pods() {
            let seconds = self.scenario.node_lifecycle.default_toleration_seconds();
            default_tolerations(&mut obj, seconds);
        }
        let stored = self.store.create(res, obj)?;
        if *res == pods() {
            let ns = meta_str(&stored, "namespace");
            let name = meta_str(&stored, "name");
            self.record_truth(ns, name, TruthKind::PodCreated);
            controllers::spawn_kubelet(self.clone(), &stored);
        }
        Ok(stored)
    }

    /// Removes an object now.
    pub fn remove(&self, res: &ResId, ns: &str, name: &str, uid: Option<&str>) -> Option<Arc<Obj>> {
        let gone = self.store.remove(res, ns, name, uid)?;
        if *res == pods() {
            self.record_truth(ns, name, TruthKind::PodDeleted);
        }
        Some(gone)
    }

    /// Deletes like the API server: a scheduled pod with a grace period is marked terminating
    /// and removed when the grace ends; everything else is removed at once.
    pub fn delete(
        self: &Arc<Self>,
        res: &ResId,
        ns: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Arc<Obj>, StoreError> {
        let current = self.store.get(res, ns, name).ok_or(StoreError::NotFound)?;
        if *res != pods() {
            return self.remove(res, ns, name, None).ok_or(StoreError::NotFound);
        }
        let grace = grace
            .or_else(|| {
                current
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0);
        let scheduled = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if grace == 0 || !scheduled {
            return self.remove(res, ns, name, None).ok_or(StoreError::NotFound);
        }
        if is_terminating(&current) {
            return Ok(current);
        }
        let uid = meta_str(&current, "uid").to_string();
        let node = current
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let marked = self
            .store
            .mutate(res, ns, name, |pod| {
                if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                true
            })
            .ok_or(StoreError::NotFound)?;
        let sim = self.clone();
        let (res, ns, name) = (res.clone(), ns.to_string(), name.to_string());
        tokio::spawn(async move {
            tokio::select! {
                _ = sim.cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(grace as u64)) => {
                    // Only a running kubelet finishes a pod; on a node that is off it stays
                    // terminating until the node boots.
                    if sim.kubelet(&node).is_some() {
                        sim.remove(&res, &ns, &name, Some(&uid));
                    }
                }
            }
        });
        Ok(marked)
    }

    /// Kubelet timings of the workload owning `pod` (scenario overrides), else the defaults.
    pub fn timings_for(&self, pod: &Value) -> KubeletTimings {
        let s = &self.scenario;
        let ns = meta_str(pod, "namespace");
        let ns_spec = s.namespaces.get(ns);
        let spec = match owner(pod) {
            Some(("ReplicaSet", rs, _)) => self
                .store
                .get(&replicasets(), ns, rs)
                .and_then(|rs| owner(&rs).map(|(_, d, _)| d.to_string()))
                .and_then(|d| ns_spec?.deployments.get(&d).map(|d| d.kubelet.clone())),
            Some(("StatefulSet", sts, _)) => {
                ns_spec.and_then(|n| n.statefulsets.get(sts).map(|s| s.kubelet.clone()))
            }
            _ => None,
        };
        spec.unwrap_or_default().resolve(&s.kubelet)
    }
}
