//! Simulated controllers: a new pod's way to its node (the schedule delay, then the scheduler,
//! then that node's [`super::kubelet`]), the deployment, replica set and stateful set
//! controllers (keep the pod count, keep status current) and the endpoints controller
//! (publishes ready pods after the propagation delay).
//!
//! The workload controllers run as one task fed by the store's broadcast: every change marks
//! its owning workload dirty, and a batch of changes is reconciled once, so a 10,000-pod start
//! costs one pass per batch rather than one per pod. A lagging subscription falls back to a
//! full resync, so nothing is missed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::{
    deployments, disruption, endpoints, fnv1a, is_ready, is_terminating, kubelet, lifecycle, owner,
    pods, replicasets, scheduler, set_at, statefulsets, suffix, Endpoint, Sim,
};
use crate::sim::store::{meta_str, Change, Obj, ResId};
use crate::sim::TruthKind;

async fn sleep_or_cancel(sim: &Sim, d: Duration) -> bool {
    tokio::select! {
        _ = sim.cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Drives one pod through Pending → scheduled (by the scheduler, after the schedule-delay) →
/// Running → Ready with the workload's delays, the last two only while its node is on.
///
/// The task keeps what it reads of the pod, not the pod: at 100,000 pods, thousands of
/// kubelets wait at once, and a pod's tree is ~14 KB.
pub fn spawn_kubelet(sim: Arc<Sim>, pod: &Obj) {
    let t = sim.timings_for(pod);
    let (ns, name, uid) = (
        meta_str(pod, "namespace").to_string(),
        meta_str(pod, "name").to_string(),
        meta_str(pod, "uid").to_string(),
    );
    let mut rng = sim.keyed_rng(&format!("{ns}/{name}"), 0);
    let delays = [
        t.schedule_delay.sample(&mut rng),
        t.start_delay.sample(&mut rng),
        t.ready_delay.sample(&mut rng),
    ];
    let preset = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    tokio::spawn(async move {
        if !sleep_or_cancel(&sim, delays[0]).await {
            return;
        }
        let node = match preset {
            // Bound by its creator: the kubelet of that node takes it.
            Some(node) => {
                scheduler::bind_preset(&sim, &ns, &name, &uid, &node);
                node
            }
            None => {
                let (reply, bound) = oneshot::channel();
                let req = scheduler::Request {
                    ns: ns.clone(),
                    name: name.clone(),
                    uid: uid.clone(),
                    reply,
                };
                if sim.sched_tx.send(req).is_err() {
                    return;
                }
                tokio::select! {
                    _ = sim.cancel.cancelled() => return,
                    node = bound => match node { Ok(n) => n, Err(_) => return },
                }
            }
        };
        lifecycle::sweep_pod(&sim, &ns, &name);
        kubelet::run(sim, ns, name, uid, node, delays[1], delays[2]).await;
    });
}

#[derive(Default)]
struct Dirty {
    all: bool,
    deployments: BTreeSet<(String, String)>,
    replicasets: BTreeSet<(String, String)>,
    statefulsets: BTreeSet<(String, String)>,
    /// Namespaces whose disruption budgets may have changed status.
    budgets: BTreeSet<String>,
}

impl Dirty {
    /// Reads only the change's [`Meta`](crate::sim::store::Meta): the change is the store's
    /// text-only copy, shared with the history.
    fn note(&mut self, c: &Change) {
        let meta = c.obj.meta();
        let (ns, name) = (meta.namespace.to_string(), meta.name.to_string());
        if c.res == pods() || c.res == disruption::pdbs() || c.res.group == "apps" {
            self.budgets.insert(ns.clone());
        }
        if c.res == deployments() {
            self.deployments.insert((ns, name));
        } else if c.res == replicasets() {
            if let Some(("Deployment", d, _)) = meta.owner() {
                self.deployments.insert((ns.clone(), d.to_string()));
            }
            self.replicasets.insert((ns, name));
        } else if c.res == statefulsets() {
            self.statefulsets.insert((ns, name));
        } else if c.res == pods() {
            match meta.owner() {
                Some(("ReplicaSet", rs, _)) => {
                    self.replicasets.insert((ns, rs.to_string()));
                }
                Some(("StatefulSet", sts, _)) => {
                    self.statefulsets.insert((ns, sts.to_string()));
                }
                _ => {}
            }
        }
    }
}

/// Per-HTTP-deployment publisher input: (due time, ready endpoints).
type Publish = mpsc::UnboundedSender<(Instant, Vec<Endpoint>)>;

struct Controllers {
    sim: Arc<Sim>,
    /// Whether each workload was last seen with all replicas ready, for WorkloadReady/Degraded.
    ready: HashMap<(&'static str, String, String), bool>,
    publishers: HashMap<(String, String), Publish>,
    last_published: HashMap<(String, String), Vec<Endpoint>>,
    /// Pod names drawn per replica set, so each name comes from (seed, replica set, n).
    name_draws: HashMap<(String, String), u64>,
}

/// Starts the controllers; call before the scenario objects are created so they see them all.
pub fn start(sim: Arc<Sim>) -> tokio::task::JoinHandle<()> {
    let mut publishers = HashMap::new();
    for ((ns, name), route) in &sim.routes {
        let (tx, rx) = mpsc::unbounded_channel();
        publishers.insert((ns.clone(), name.clone()), tx);
        tokio::spawn(publish_endpoints(
            sim.clone(),
            ns.clone(),
            name.clone(),
            route.clone(),
            rx,
        ));
    }
    let rx = sim.store.subscribe();
    let sim_for_tasks = sim.clone();
    let mut c = Controllers {
        sim,
        ready: HashMap::new(),
        publishers,
        last_published: HashMap::new(),
        name_draws: HashMap::new(),
    };
    let controllers = tokio::spawn(async move { c.run(rx).await });
    let mut tasks = vec![controllers];
    if let Some(q) = sim_for_tasks.take_scheduler_queue() {
        tasks.push(scheduler::start(sim_for_tasks.clone(), q));
    }
    if let Some(q) = sim_for_tasks.take_lifecycle_queue() {
        tasks.push(lifecycle::start(sim_for_tasks.clone(), q));
    }
    tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// Applies endpoint snapshots in order, each at its due time, to the Endpoints object and the
/// traffic route, recording which pods entered and left.
async fn publish_endpoints(
    sim: Arc<Sim>,
    ns: String,
    name: String,
    route: Arc<super::Route>,
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<Endpoint>)>,
) {
    loop {
        let (due, eps) = tokio::select! {
            _ = sim.cancel.cancelled() => return,
            next = rx.recv() => match next { Some(n) => n, None => return },
        };
        tokio::select! {
            _ = sim.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let before = {
            let mut current = route.endpoints.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, eps.clone())
        };
        let addresses: Vec<Value> = eps
            .iter()
            .map(|e| {
                json!({"ip": e.ip, "nodeName": e.node,
                "targetRef": {"kind": "Pod", "namespace": ns, "name": e.pod, "uid": e.uid}})
            })
            .collect();
        let subsets = if addresses.is_empty() {
            json!([])
        } else {
            json!([{"addresses": addresses, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}])
        };
        sim.store.mutate(&endpoints(), &ns, &name, |o| {
            o["subsets"] = subsets;
            true
        });
        for e in &before {
            if !eps.contains(e) {
                sim.record_truth(&ns, &e.pod, TruthKind::EndpointRemoved);
            }
        }
        for e in &eps {
            if !before.contains(e) {
                sim.record_truth(&ns, &e.pod, TruthKind::EndpointAdded);
            }
        }
    }
}

fn i64_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Sets `status` fields; returns whether anything changed.
fn set_status(obj: &mut Value, fields: &Value) -> bool {
    let mut changed = false;
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
        changed = true;
    }
    if let Some(f) = fields.as_object() {
        for (k, v) in f {
            if obj["status"].get(k) != Some(v) {
                set_at(obj, &["status", k.as_str()], v.clone());
                changed = true;
            }
        }
    }
    changed
}

/// A short, stable hash of the pod template, as the `pod-template-hash` label.
fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let h = fnv1a(template.to_string().as_bytes());
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn owner_ref(kind: &str, api_version: &str, obj: &Value) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": meta_str(obj, "name"),
            "uid": meta_str(obj, "uid"), "controller": true, "blockOwnerDeletion": true}])
}

fn owned_by(obj: &Value, kind: &str, uid: &str) -> bool {
    matches!(owner(obj), Some((k, _, u)) if k == kind && u == uid)
}

fn match_labels(selector_owner: &Value) -> BTreeMap<String, String> {
    selector_owner
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn labels_match(pod: &Obj, want: &BTreeMap<String, String>) -> bool {
    let labels = pod.meta();
    !want.is_empty()
        && want
            .iter()
            .all(|(k, v)| labels.label(k) == Some(v.as_str()))
}

fn scale_rs(sim: &Sim, ns: &str, rs: &Value, want: i64) {
    if i64_at(rs, "/spec/replicas") != want {
        sim.store
            .mutate(&replicasets(), ns, meta_str(rs, "name"), |o| {
                set_at(o, &["spec", "replicas"], json!(want));
                true
            });
    }
}

/// `maxSurge` / `maxUnavailable` as a count: an integer, or a percentage of `desired` (surge
/// rounds up, unavailability down, as in Kubernetes); both default to 25%.
fn rolling_limits(dep: &Value, desired: i64) -> (i64, i64) {
    let resolve = |field: &str, round_up: bool| {
        let v = dep.pointer(&format!("/spec/strategy/rollingUpdate/{field}"));
        let pct = match v {
            Some(Value::Number(n)) => return n.as_i64().unwrap_or(0).max(0),
            Some(Value::String(s)) => s.trim_end_matches('%').parse::<i64>().unwrap_or(25),
            _ => 25,
        };
        let scaled = desired * pct.max(0);
        if round_up {
            (scaled + 99) / 100
        } else {
            scaled / 100
        }
    };
    let surge = resolve("maxSurge", true);
    let unavailable = resolve("maxUnavailable", false);
    // Both zero would never make progress; Kubernetes rejects it, we allow one unavailable.
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Replica counts for the current replica set and each old one (oldest first): a rolling
/// update bounded by maxSurge and maxUnavailable, or Recreate (old ones to zero first).
fn rollout_targets(
    dep: &Value,
    desired: i64,
    current: Option<&Value>,
    olds: &[&Arc<Obj>],
) -> (i64, Vec<i64>) {
    let spec = |rs: &Value| i64_at(rs, "/spec/replicas").max(0);
    let ready = |rs: &Value| i64_at(rs, "/status/readyReplicas").max(0);
    let new_spec = current.map_or(0, spec);
    let old_spec: i64 = olds.iter().map(|rs| spec(rs)).sum();
    if dep.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
        let old_running: i64 = olds.iter().map(|rs| i64_at(rs, "/status/replicas")).sum();
        let new = if old_spec == 0 && old_running == 0 {
            desired
        } else {
            new_spec.min(desired)
        };
        return (new, vec![0; olds.len()]);
    }
    let (surge, unavailable) = rolling_limits(dep, desired);
    let new = if new_spec >= desired || old_spec == 0 {
        desired
    } else {
        let room = (desired + surge - new_spec - old_spec).max(0);
        (new_spec + room).min(desired)
    };
    // Old replicas go when enough others are ready: unready old ones first, then ready ones
    // while at least desired - maxUnavailable stay ready.
    let all_ready = current.map_or(0, ready) + olds.iter().map(|rs| ready(rs)).sum::<i64>();
    let mut removable = (all_ready - (desired - unavailable)).max(0);
    let olds = olds
        .iter()
        .map(|rs| {
            let (spec, ready) = (spec(rs), ready(rs).min(spec(rs)));
            let from_ready = removable.min(ready);
            removable -= from_ready;
            spec - (spec - ready) - from_ready
        })
        .collect();
    (new, olds)
}

impl Controllers {
    async fn run(&mut self, mut rx: broadcast::Receiver<Arc<Change>>) {
        let mut dirty = Dirty {
            all: true,
            ..Dirty::default()
        };
        loop {
            let began = Instant::now();
            self.reconcile(std::mem::take(&mut dirty));
            // Under a burst, gather for as long as the last pass took (20..100ms), so that the
            // controllers spend at most about half their time reconciling.
            let gather = began
                .elapsed()
                .clamp(Duration::from_millis(20), Duration::from_millis(100));
            let first = tokio::select! {
                _ = self.sim.cancel.cancelled() => return,
                r = rx.recv() => r,
            };
            let mut next = Some(first);
            // Drain what is already queued so that a burst is reconciled once.
            let mut budget = 20_000;
            let mut drained = 0;
            while let Some(r) = next.take() {
                drained += 1;
                if drained == 500 {
                    // A large burst (thousands of pods starting or moving): let it gather a
                    // little longer, so that each workload is reconciled once per batch
                    // rather than once per handful of changes.
                    tokio::select! {
                        _ = self.sim.cancel.cancelled() => return,
                        _ = tokio::time::sleep(gather) => {}
                    }
                }
                match r {
                    Ok(c) => dirty.note(&c),
                    Err(broadcast::error::RecvError::Lagged(_)) => dirty.all = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                budget -= 1;
                if budget > 0 {
                    next = match rx.try_recv() {
                        Ok(c) => Some(Ok(c)),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            Some(Err(broadcast::error::RecvError::Lagged(n)))
                        }
                        Err(_) => None,
                    };
                }
            }
        }
    }

    fn reconcile(&mut self, mut dirty: Dirty) {
        if dirty.all {
            let keys = |res: &ResId| -> Vec<(String, String)> {
                self.sim
                    .store
                    .list(res, None, |_| true)
                    .0
                    .iter()
                    .map(|o| {
                        (
                            meta_str(o, "namespace").to_string(),
                            meta_str(o, "name").to_string(),
                        )
                    })
                    .collect()
            };
            dirty.deployments.extend(keys(&deployments()));
            dirty.replicasets.extend(keys(&replicasets()));
            dirty.statefulsets.extend(keys(&statefulsets()));
            dirty.deployments.extend(self.publishers.keys().cloned());
        }
        for (ns, name) in &dirty.replicasets {
            if let Some(dep) = self.replicaset(ns, name) {
                dirty.deployments.insert((ns.clone(), dep));
            }
        }
        for (ns, name) in &dirty.deployments {
            self.deployment(ns, name);
        }
        for (ns, name) in &dirty.statefulsets {
            self.statefulset(ns, name);
        }
        if dirty.all {
            for b in self.sim.store.list(&disruption::pdbs(), None, |_| true).0 {
                dirty.budgets.insert(meta_str(&b, "namespace").to_string());
            }
        }
        for ns in &dirty.budgets {
            disruption::reconcile_namespace(&self.sim, ns);
        }
    }

    fn new_pod(&self, template: &Value, ns: &str, name: &str, owner_refs: Value) -> Value {
        let mut meta = template
            .get("metadata")
            .filter(|m| m.is_object())
            .cloned()
            .unwrap_or(json!({}));
        meta["name"] = json!(name);
        meta["namespace"] = json!(ns);
        meta["ownerReferences"] = owner_refs;
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
            "status": {"phase": "Pending", "qosClass": "BestEffort"}});
        self.sim.stamp_new(&mut pod);
        pod
    }

    /// Keeps a replica set's pod count and status; returns its owning deployment.
    fn replicaset(&mut self, ns: &str, name: &str) -> Option<String> {
        let sim = self.sim.clone();
        let prefix = format!("{name}-");
        let Some(rs) = sim.store.get(&replicasets(), ns, name) else {
            // Garbage-collect the pods of a deleted replica set.
            for p in sim.store.list_prefix(&pods(), ns, &prefix) {
                if matches!(owner(&p), Some(("ReplicaSet", n, _)) if n == name) {
                    let _ = sim.delete(&pods(), ns, meta_str(&p, "name"), None);
                }
            }
            return None;
        };
        let uid = meta_str(&rs, "uid");
        // Its pods are counted from their Meta alone: a replica set reconciles at every change
        // of any of its pods, and parsing each of them each time was most of a large kill.
        let mut active: Vec<_> = sim
            .store
            .list_prefix(&pods(), ns, &prefix)
            .into_iter()
            .filter(|p| {
                let m = p.meta();
                matches!(m.owner(), Some(("ReplicaSet", _, u)) if u == uid) && !m.terminating
            })
            .collect();
        let desired = i64_at(&rs, "/spec/replicas").max(0) as usize;
        let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let mut created = 0;
        while active.len() + created < desired {
            // Reconciling is synchronous: a shutdown must not wait for a large scale-up.
            if sim.cancel.is_cancelled() {
                break;
            }
            let draw = self
                .name_draws
                .entry((ns.to_string(), name.to_string()))
                .or_insert(0);
            *draw += 1;
            let pod_name = format!(
                "{name}-{}",
                suffix(&mut sim.keyed_rng(&format!("{ns}/{name}"), *draw), 5)
            );
            let pod = self.new_pod(
                &template,
                ns,
                &pod_name,
                owner_ref("ReplicaSet", "apps/v1", &rs),
            );
            // A name collision just retries with a new suffix.
            if sim.create(&pods(), pod).is_ok() {
                created += 1;
            }
        }
        if active.len() > desired {
            // Scale down the least useful pods first: not ready, then the newest.
            active.sort_by(|a, b| {
                let (a, b) = (a.meta(), b.meta());
                (a.ready, &b.created).cmp(&(b.ready, &a.created))
            });
            let extra = active.len() - desired;
            for p in active.drain(..extra) {
                let _ = sim.delete(&pods(), ns, &p.meta().name, None);
            }
        }
        let ready = active.iter().filter(|p| p.meta().ready).count();
        let replicas = active.len() + created;
        let status = json!({"replicas": replicas, "fullyLabeledReplicas": replicas,
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": i64_at(&rs, "/metadata/generation")});
        sim.store
            .mutate(&replicasets(), ns, name, |o| set_status(o, &status));
        match owner(&rs) {
            Some(("Deployment", d, _)) => Some(d.to_string()),
            _ => None,
        }
    }

    fn deployment(&mut self, ns: &str, name: &str) {
        let sim = self.sim.clone();
        let prefix = format!("{name}-");
        let Some(dep) = sim.store.get(&deployments(), ns, name) else {
            for rs in sim.store.list_prefix(&replicasets(), ns, &prefix) {
                if matches!(owner(&rs), Some(("Deployment", n, _)) if n == name) {
                    sim.remove(&replicasets(), ns, meta_str(&rs, "name"), None);
                }
            }
            self.publish(ns, name, None);
            return;
        };
        let uid = meta_str(&dep, "uid");
        let desired = i64_at(&dep, "/spec/replicas").max(0);
        let mut template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        set_at(
            &mut template,
            &["metadata", "labels", "pod-template-hash"],
            json!(hash),
        );
        let rs_name = format!("{name}-{hash}");
        let owned: Vec<_> = sim
            .store
            .list_prefix(&replicasets(), ns, &prefix)
            .into_iter()
            .filter(|rs| owned_by(rs, "Deployment", uid))
            .collect();
        let current = owned.iter().find(|rs| meta_str(rs, "name") == rs_name);
        let mut olds: Vec<_> = owned
            .iter()
            .filter(|rs| meta_str(rs, "name") != rs_name)
            .collect();
        olds.sort_by_key(|rs| meta_str(rs, "creationTimestamp").to_string());
        let (new_targets, old_targets) =
            rollout_targets(&dep, desired, current.map(|rs| rs.value()), &olds);
        match current {
            None => {
                let mut selector = dep.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                set_at(
                    &mut selector,
                    &["matchLabels", "pod-template-hash"],
                    json!(hash),
                );
                let mut labels = template["metadata"]["labels"].clone();
                labels["pod-template-hash"] = json!(hash);
                let mut rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": ns, "labels": labels,
                        "ownerReferences": owner_ref("Deployment", "apps/v1", &dep)},
                    "spec": {"replicas": new_targets, "selector": selector, "template": template},
                    "status": {"replicas": 0}});
                sim.stamp_new(&mut rs);
                let _ = sim.create(&replicasets(), rs);
            }
            Some(rs) => scale_rs(&sim, ns, rs, new_targets),
        }
        for (rs, want) in olds.iter().zip(old_targets) {
            scale_rs(&sim, ns, rs, want);
        }
        let (mut replicas, mut ready, mut updated) = (0, 0, 0);
        for rs in &owned {
            replicas += i64_at(rs, "/status/replicas");
            ready += i64_at(rs, "/status/readyReplicas");
            if meta_str(rs, "name") == rs_name {
                updated = i64_at(rs, "/status/replicas");
            }
        }
        let available = ready >= desired;
        let status = json!({"replicas": replicas, "readyReplicas": ready,
            "availableReplicas": ready, "updatedReplicas": updated,
            "unavailableReplicas": (desired - ready).max(0),
            "observedGeneration": i64_at(&dep, "/metadata/generation"),
            "conditions": [{"type": "Available", "status": if available { "True" } else { "False" },
                "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }}]});
        sim.store
            .mutate(&deployments(), ns, name, |o| set_status(o, &status));
        self.track_ready("Deployment", ns, name, ready == desired);
        self.publish(ns, name, Some(&dep));
    }

    fn statefulset(&mut self, ns: &str, name: &str) {
        let sim = self.sim.clone();
        let prefix = format!("{name}-");
        let ordinal = |p: &Value| -> Option<usize> {
            meta_str(p, "name").strip_prefix(&prefix)?.parse().ok()
        };
        let Some(sts) = sim.store.get(&statefulsets(), ns, name) else {
            for p in sim.store.list_prefix(&pods(), ns, &prefix) {
                if matches!(owner(&p), Some(("StatefulSet", n, _)) if n == name) {
                    let _ = sim.delete(&pods(), ns, meta_str(&p, "name"), None);
                }
            }
            return;
        };
        let uid = meta_str(&sts, "uid");
        let desired = i64_at(&sts, "/spec/replicas").max(0) as usize;
        let existing: BTreeMap<usize, Arc<Obj>> = sim
            .store
            .list_prefix(&pods(), ns, &prefix)
            .into_iter()
            .filter(|p| owned_by(p, "StatefulSet", uid))
            .filter_map(|p| Some((ordinal(&p)?, p)))
            .collect();
        let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let mut ready = 0;
        let mut replicas = 0;
        for i in 0..desired {
            match existing.get(&i) {
                // A terminating pod blocks its name: it is recreated once it is gone.
                Some(p) if is_terminating(p) => {}
                Some(p) => {
                    replicas += 1;
                    if is_ready(p) {
                        ready += 1;
                    }
                }
                None => {
                    let pod_name = format!("{name}-{i}");
                    let mut pod = self.new_pod(
                        &template,
                        ns,
                        &pod_name,
                        owner_ref("StatefulSet", "apps/v1", &sts),
                    );
                    set_at(
                        &mut pod,
                        &["metadata", "labels", "statefulset.kubernetes.io/pod-name"],
                        json!(pod_name),
                    );
                    if sim.create(&pods(), pod).is_ok() {
                        replicas += 1;
                    }
                }
            }
        }
        for (i, p) in existing.range(desired..) {
            if !is_terminating(p) {
                let _ = sim.delete(&pods(), ns, &format!("{name}-{i}"), None);
            }
        }
        let status = json!({"replicas": replicas, "readyReplicas": ready,
            "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": ready,
            "observedGeneration": i64_at(&sts, "/metadata/generation")});
        sim.store
            .mutate(&statefulsets(), ns, name, |o| set_status(o, &status));
        self.track_ready("StatefulSet", ns, name, ready == desired);
    }

    fn track_ready(&mut self, kind: &'static str, ns: &str, name: &str, now_ready: bool) {
        let was = self
            .ready
            .insert((kind, ns.to_string(), name.to_string()), now_ready)
            .unwrap_or(false);
        if now_ready && !was {
            self.sim.record_truth(ns, name, TruthKind::WorkloadReady);
        } else if was && !now_ready {
            self.sim.record_truth(ns, name, TruthKind::WorkloadDegraded);
        }
    }

    /// Queues the deployment's ready pods for publication after the propagation delay.
    fn publish(&mut self, ns: &str, name: &str, dep: Option<&Value>) {
        let key = (ns.to_string(), name.to_string());
        let Some(tx) = self.publishers.get(&key) else {
            return;
        };
        let eps: Vec<Endpoint> = match dep {
            None => Vec::new(),
            Some(dep) => {
                let want = match_labels(dep);
                self.sim
                    .store
                    .list(&pods(), Some(ns), |p| {
                        let m = p.meta();
                        labels_match(p, &want) && m.ready && !m.terminating
                    })
                    .0
                    .iter()
                    .map(|p| Endpoint {
                        pod: meta_str(p, "name").to_string(),
                        uid: meta_str(p, "uid").to_string(),
                        ip: p
                            .pointer("/status/podIP")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        node: p
                            .pointer("/spec/nodeName")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    })
                    .collect()
            }
        };
        if self.last_published.get(&key) == Some(&eps) {
            return;
        }
        let due = Instant::now() + self.sim.scenario.endpoints.propagation_delay;
        let _ = tx.send((due, eps.clone()));
        self.last_published.insert(key, eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(spec: i64, ready: i64) -> Arc<Obj> {
        Arc::new(Obj::new(
            json!({"spec": {"replicas": spec}, "status": {"replicas": spec, "readyReplicas": ready}}),
        ))
    }

    #[test]
    fn rolling_update_steps() {
        let dep = json!({"spec": {"replicas": 4}});
        assert_eq!(rolling_limits(&dep, 4), (1, 1));
        // Start: one surge pod, one old pod may go.
        let old = rs(4, 4);
        assert_eq!(
            rollout_targets(&dep, 4, Some(&rs(0, 0)), &[&old]),
            (1, vec![3])
        );
        // New pods not ready yet: no further old pod goes, no further surge.
        let old = rs(3, 3);
        assert_eq!(
            rollout_targets(&dep, 4, Some(&rs(1, 0)), &[&old]),
            (2, vec![3])
        );
        // Unready old pods go first.
        let old = rs(3, 1);
        assert_eq!(
            rollout_targets(&dep, 4, Some(&rs(2, 2)), &[&old]),
            (2, vec![1])
        );
        // Done.
        let old = rs(0, 0);
        assert_eq!(
            rollout_targets(&dep, 4, Some(&rs(4, 4)), &[&old]),
            (4, vec![0])
        );
        // Recreate: old ones to zero first, new ones once they are gone.
        let dep = json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}});
        let old = rs(2, 2);
        assert_eq!(rollout_targets(&dep, 2, None, &[&old]), (0, vec![0]));
        let old = rs(0, 0);
        assert_eq!(
            rollout_targets(&dep, 2, Some(&rs(0, 0)), &[&old]),
            (2, vec![0])
        );
        // Explicit limits.
        let dep = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}}});
        assert_eq!(rolling_limits(&dep, 4), (0, 2));
        let dep =
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        assert_eq!(rolling_limits(&dep, 4), (0, 1));
    }
}
