//! PodDisruptionBudgets: the status controller's arithmetic and the Eviction API's decision,
//! as Kubernetes does them.
//!
//! Status: expectedPods (the matching pods for an integer minAvailable, else the scale of
//! their controllers), currentHealthy (ready, not terminating, not just disrupted),
//! desiredHealthy (minAvailable, or expected − maxUnavailable; percentages round up),
//! disruptionsAllowed = max(0, healthy − desired). An eviction granted under a budget
//! decrements disruptionsAllowed and records the pod in disruptedPods in the same atomic write,
//! so two evictions cannot both spend one allowed disruption.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{is_ready, is_terminating, now_rfc3339, owner, pods, set_at, Sim};
use crate::sim::store::{meta_str, Obj, ResId};
use crate::sim::TruthKind;

pub fn pdbs() -> ResId {
    ResId::new("policy", "poddisruptionbudgets")
}

/// A policy/v1 label selector against a pod's labels: matchLabels and matchExpressions; an
/// empty selector selects every pod of the namespace, a missing one none.
pub fn selects(pdb: &Value, pod: &Obj) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector").filter(|s| s.is_object()) else {
        return false;
    };
    let labels = pod.meta();
    let label = |k: &str| labels.label(k);
    let exact = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|es| {
            es.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => label(key).is_some_and(|v| values.contains(&v)),
                    "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                    "Exists" => label(key).is_some(),
                    "DoesNotExist" => label(key).is_none(),
                    _ => false,
                }
            })
        });
    exact && exprs
}

/// An int-or-percent field scaled to `total`, rounded up; None when absent or unreadable.
fn scaled(v: Option<&Value>, total: i64) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => p.parse::<i64>().ok().map(|p| (p * total + 99) / 100),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

fn is_percent(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| s.ends_with('%'))
}

/// The scale of the controllers of `matching`: a Deployment's replicas for its replica sets'
/// pods, a StatefulSet's or bare ReplicaSet's own; a pod without a controller counts once.
fn controller_scale(sim: &Sim, ns: &str, matching: &[&Arc<Obj>]) -> i64 {
    let mut scales: HashMap<String, i64> = HashMap::new();
    let mut bare = 0;
    for p in matching {
        let replicas = |res: ResId, name: &str| {
            sim.store.get(&res, ns, name).map(|o| {
                (
                    meta_str(&o, "uid").to_string(),
                    o.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1),
                    o,
                )
            })
        };
        match owner(p) {
            Some(("ReplicaSet", rs, _)) => {
                let Some((uid, n, rs)) = replicas(super::replicasets(), rs) else {
                    continue;
                };
                match owner(&rs) {
                    Some(("Deployment", d, _)) => {
                        if let Some((duid, dn, _)) = replicas(super::deployments(), d) {
                            scales.insert(duid, dn);
                        }
                    }
                    _ => {
                        scales.insert(uid, n);
                    }
                }
            }
            Some(("StatefulSet", sts, _)) => {
                if let Some((uid, n, _)) = replicas(super::statefulsets(), sts) {
                    scales.insert(uid, n);
                }
            }
            _ => bare += 1,
        }
    }
    scales.values().sum::<i64>() + bare
}

/// The budget's status from the pods of its namespace and the disruptions it already granted.
pub fn status(sim: &Sim, pdb: &Value, ns_pods: &[Arc<Obj>]) -> Value {
    let ns = meta_str(pdb, "namespace");
    let matching: Vec<&Arc<Obj>> = ns_pods.iter().filter(|p| selects(pdb, p)).collect();
    let min = pdb.pointer("/spec/minAvailable");
    let max = pdb.pointer("/spec/maxUnavailable");
    let expected = if min.is_some() && !is_percent(min) {
        matching.len() as i64
    } else {
        controller_scale(sim, ns, &matching)
    };
    let desired = if min.is_some() {
        scaled(min, expected).unwrap_or(0)
    } else if max.is_some() {
        expected - scaled(max, expected).unwrap_or(0)
    } else {
        // Neither set: Kubernetes defaults minAvailable to 1.
        1
    }
    .max(0);
    // Granted evictions whose pods have not started terminating yet stay "disrupted".
    let mut disrupted = serde_json::Map::new();
    if let Some(d) = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
    {
        for (name, at) in d {
            let live = matching
                .iter()
                .any(|p| meta_str(p, "name") == name && !is_terminating(p));
            if live {
                disrupted.insert(name.clone(), at.clone());
            }
        }
    }
    let healthy = matching
        .iter()
        .filter(|p| {
            is_ready(p) && !is_terminating(p) && !disrupted.contains_key(meta_str(p, "name"))
        })
        .count() as i64;
    let allowed = if expected > 0 {
        (healthy - desired).max(0)
    } else {
        0
    };
    let (cstatus, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    // Keep the transition time of an unchanged condition, so a recomputation writes nothing.
    let old = pdb
        .pointer("/status/conditions/0")
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(cstatus));
    let since = old
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now_rfc3339()));
    json!({"observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "expectedPods": expected, "currentHealthy": healthy, "desiredHealthy": desired,
        "disruptionsAllowed": allowed, "disruptedPods": disrupted,
        "conditions": [{"type": "DisruptionAllowed", "status": cstatus, "reason": reason,
            "message": "", "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "lastTransitionTime": since}]})
}

/// Recomputes the status of every budget of `ns`.
pub fn reconcile_namespace(sim: &Sim, ns: &str) {
    let (budgets, _) = sim.store.list(&pdbs(), Some(ns), |_| true);
    if budgets.is_empty() {
        return;
    }
    let (ns_pods, _) = sim.store.list(&pods(), Some(ns), |_| true);
    for b in budgets {
        sim.store.mutate(&pdbs(), ns, meta_str(&b, "name"), |o| {
            // Computed from the budget as stored now: an eviction granted meanwhile is kept.
            let status = status(sim, o, &ns_pods);
            if o.get("status") == Some(&status) {
                return false;
            }
            o["status"] = status;
            true
        });
    }
}

/// Why an eviction was not carried out.
#[derive(Debug)]
pub enum EvictError {
    NotFound,
    /// 429: the budget (name) needs `desired` healthy pods and has `healthy`.
    Budget {
        pdb: String,
        desired: i64,
        healthy: i64,
    },
    /// 429: the budget's status is older than its spec.
    Processing {
        pdb: String,
    },
    /// 500: several budgets select the pod.
    SeveralBudgets,
}

/// The Eviction API: deletes the pod (with `grace`, if given) when no budget selects it, when
/// it need not count (pending, finished, terminating, or unready while the budget is met), or
/// when its budget allows one more disruption, which it spends.
pub fn evict(sim: &Arc<Sim>, ns: &str, name: &str, grace: Option<i64>) -> Result<(), EvictError> {
    let pod = sim
        .store
        .get(&pods(), ns, name)
        .ok_or(EvictError::NotFound)?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let node = (!node.is_empty()).then_some(node.as_str());
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    let delete = |pdb: Option<&str>| {
        sim.delete(&pods(), ns, name, grace)
            .map_err(|_| EvictError::NotFound)?;
        sim.record_truth_with(ns, name, TruthKind::PodEvicted, node, pdb);
        Ok(())
    };
    if is_terminating(&pod) || matches!(phase, "Pending" | "Succeeded" | "Failed") {
        return delete(None);
    }
    let (budgets, _) = sim.store.list(&pdbs(), Some(ns), |b| selects(b, &pod));
    let budget = match budgets.as_slice() {
        [] => return delete(None),
        [one] => one.clone(),
        _ => return Err(EvictError::SeveralBudgets),
    };
    let pdb_name = meta_str(&budget, "name").to_string();
    let st = |b: &Value, f: &str| {
        b.pointer(&format!("/status/{f}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    if !is_ready(&pod)
        && st(&budget, "currentHealthy") >= st(&budget, "desiredHealthy")
        && st(&budget, "desiredHealthy") > 0
    {
        return delete(Some(&pdb_name));
    }
    let mut verdict = Err(EvictError::NotFound);
    sim.store.mutate(&pdbs(), ns, &pdb_name, |b| {
        let generation = b
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if st(b, "observedGeneration") < generation {
            verdict = Err(EvictError::Processing {
                pdb: pdb_name.clone(),
            });
            return false;
        }
        let allowed = st(b, "disruptionsAllowed");
        if allowed < 1 {
            verdict = Err(EvictError::Budget {
                pdb: pdb_name.clone(),
                desired: st(b, "desiredHealthy"),
                healthy: st(b, "currentHealthy"),
            });
            return false;
        }
        set_at(b, &["status", "disruptionsAllowed"], json!(allowed - 1));
        set_at(b, &["status", "disruptedPods", name], json!(now_rfc3339()));
        verdict = Ok(());
        true
    });
    match verdict {
        Ok(()) => delete(Some(&pdb_name)),
        Err(e) => {
            if let EvictError::Budget { pdb, .. } | EvictError::Processing { pdb } = &e {
                sim.record_truth_with(ns, name, TruthKind::EvictionRefused, node, Some(pdb));
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool) -> Arc<Obj> {
        Arc::new(Obj::new(
            json!({"metadata": {"namespace": "a", "name": name,
            "labels": {"app": "x"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
        ))
    }

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"namespace": "a", "name": "b", "generation": 1},
            "spec": spec})
    }

    #[test]
    fn budget_arithmetic_rounds_as_kubernetes() {
        let sim = Sim::new(Default::default(), 1, Default::default());
        let pods = [pod("p1", true), pod("p2", true), pod("p3", false)];
        let sel = json!({"matchLabels": {"app": "x"}});
        let s = status(
            &sim,
            &pdb(json!({"selector": sel, "minAvailable": 1})),
            &pods,
        );
        assert_eq!(
            (
                s["expectedPods"].clone(),
                s["currentHealthy"].clone(),
                s["desiredHealthy"].clone(),
                s["disruptionsAllowed"].clone()
            ),
            (json!(3), json!(2), json!(1), json!(1))
        );
        // 50% of 3 bare pods rounds up to 2 → no disruption allowed.
        let s = status(
            &sim,
            &pdb(json!({"selector": sel, "minAvailable": "50%"})),
            &pods,
        );
        assert_eq!(
            (s["desiredHealthy"].clone(), s["disruptionsAllowed"].clone()),
            (json!(2), json!(0))
        );
        // maxUnavailable 34% of 3 rounds up to 2 unavailable → 1 desired.
        let s = status(
            &sim,
            &pdb(json!({"selector": sel, "maxUnavailable": "34%"})),
            &pods,
        );
        assert_eq!(s["desiredHealthy"], json!(1));
        // A pod already granted a disruption does not count as healthy.
        let mut b = pdb(json!({"selector": sel, "minAvailable": 1}));
        b["status"] = json!({"disruptedPods": {"p1": "2026-01-01T00:00:00Z"}});
        let s = status(&sim, &b, &pods);
        assert_eq!(s["currentHealthy"], json!(1));
        assert_eq!(s["disruptionsAllowed"], json!(0));
        assert!(
            !selects(&json!({"spec": {}}), &pods[0]),
            "no selector, no pods"
        );
        sim.cancel.cancel();
    }
}
