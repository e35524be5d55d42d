//! Recovery phases of killed pods, derived from the platform steps on the timeline: for each
//! killed pod, when it was deleted, which pod replaced it, and when the replacement was created,
//! scheduled, running and ready; and when the workloads were whole again.
//!
//! A replacement is, for a stateful set, the pod recreated under the same name; otherwise a pod
//! created after the kill by the same owner, which is told by the generated name's prefix (a
//! replica set names its pods `<replica set>-<suffix>`). Within one owner, killed pods claim the
//! new pods in the order they were deleted. Pairing only by creation order would hand one
//! deployment's new pod to another deployment's killed pod as soon as a kill spans workloads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timeline::{secs, Event, EventKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecovery {
    pub pod: String,
    /// Offsets from the injection.
    #[serde(rename = "deleted_s", with = "secs::opt", default)]
    pub deleted: Option<Duration>,
    pub replacement: Option<String>,
    #[serde(rename = "created_s", with = "secs::opt", default)]
    pub created: Option<Duration>,
    #[serde(rename = "scheduled_s", with = "secs::opt", default)]
    pub scheduled: Option<Duration>,
    #[serde(rename = "running_s", with = "secs::opt", default)]
    pub running: Option<Duration>,
    #[serde(rename = "ready_s", with = "secs::opt", default)]
    pub ready: Option<Duration>,
    /// When the pod was marked for deletion (an eviction's or a taint's grace, a node that
    /// went down), if that came before it was gone.
    #[serde(
        rename = "terminating_s",
        with = "secs::opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub terminating: Option<Duration>,
    /// Where the replacement was scheduled: the node, and its zone when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why the pod has no ready replacement at the end of the trial, when the platform said
    /// so: a replacement Pending with the scheduler's reason, or the pod held Terminating on
    /// its node (a StatefulSet's pod is not replaced while the old one exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<String>,
}

/// The owner part of a generated pod name (`web-7d9f-x2k4p` → `web-7d9f`), if it has one.
fn generated_prefix(pod: &str) -> Option<&str> {
    pod.rsplit_once('-').map(|(prefix, _)| prefix)
}

/// Phases per killed pod, plus when every workload that reported a step after the kill was
/// "all replicas ready" again (None while any of them is not). Times are offsets from
/// `t_inject`; steps are considered from `from` (when the kill was sent, since a watch can
/// report a deletion before the delete call returns), and a step before `t_inject` counts as
/// zero.
pub fn pod_recovery(
    events: &[Event],
    t_inject: Duration,
    from: Duration,
    killed: &[String],
) -> (Vec<PodRecovery>, Option<Duration>) {
    let t_from = from.min(t_inject);
    let after = |at: Duration| at.saturating_sub(t_inject);
    let steps: Vec<(Duration, &str, &str)> = events
        .iter()
        .filter(|e| e.at >= t_from)
        .filter_map(|e| match &e.kind {
            EventKind::Recovery { object, step, .. } => {
                Some((e.at, object.as_str(), step.as_str()))
            }
            _ => None,
        })
        .collect();
    // (pod, step) → the detail of its latest such step: the node of `scheduled` and
    // `terminating`, the scheduler's reason of `unschedulable`.
    let mut details: HashMap<(&str, &str), &str> = HashMap::new();
    for e in events.iter().filter(|e| e.at >= t_from) {
        if let EventKind::Recovery {
            object,
            step,
            detail: Some(d),
        } = &e.kind
        {
            if let Some(pod) = object.strip_prefix("pod/") {
                details.insert((pod, step.as_str()), d.as_str());
            }
        }
    }
    // (pod, step) → instants in timeline order: a kill of 1,000 pods looks up thousands of
    // steps among tens of thousands, which a scan per lookup makes quadratic.
    let mut index: HashMap<(&str, &str), Vec<Duration>> = HashMap::new();
    for (at, object, step) in &steps {
        if let Some(pod) = object.strip_prefix("pod/") {
            index.entry((pod, step)).or_default().push(*at);
        }
    }
    let step_of = |pod: &str, step: &str, from: Duration| {
        index
            .get(&(pod, step))
            .and_then(|ats| ats.iter().copied().find(|at| *at >= from))
    };
    let killed_set: BTreeSet<&str> = killed.iter().map(String::as_str).collect();
    let created: Vec<(Duration, &str)> = steps
        .iter()
        .filter(|(_, _, s)| *s == "created")
        .filter_map(|(at, o, _)| o.strip_prefix("pod/").map(|p| (*at, p)))
        .collect();
    let deleted: Vec<Option<Duration>> = killed
        .iter()
        .map(|pod| step_of(pod, "deleted", t_from))
        .collect();
    // First a pod recreated under its own name (a stateful set).
    let mut replacement: Vec<Option<(Duration, &str)>> = killed
        .iter()
        .zip(&deleted)
        .map(|(pod, del)| {
            step_of(pod, "created", del.unwrap_or(t_from)).map(|at| (at, pod.as_str()))
        })
        .collect();
    let mut claimed: BTreeSet<&str> = replacement.iter().flatten().map(|(_, p)| *p).collect();
    // Then, per owner, new pods in creation order go to killed pods in deletion order. A name
    // without a generated prefix may take any new pod (what else could replace it is unknown).
    let mut waiting: Vec<usize> = (0..killed.len())
        .filter(|&i| replacement[i].is_none())
        .collect();
    waiting.sort_by_key(|&i| (deleted[i].unwrap_or(t_from), i));
    // A killed pod may itself be a replacement: in a scenario, a later step can kill the pod
    // that replaced an earlier step's kill. Only a pod's own name is never its replacement.
    let mut fresh: BTreeMap<Option<&str>, Vec<(Duration, &str)>> = BTreeMap::new();
    for (at, p) in &created {
        if !claimed.contains(p) {
            fresh
                .entry(generated_prefix(p))
                .or_default()
                .push((*at, *p));
        }
    }
    let mut next: HashMap<Option<&str>, usize> = HashMap::new();
    for i in waiting {
        let me = killed[i].as_str();
        let found = match generated_prefix(me) {
            Some(prefix) => {
                let group = fresh.get(&Some(prefix)).map(Vec::as_slice).unwrap_or(&[]);
                let n = next.entry(Some(prefix)).or_insert(0);
                while group
                    .get(*n)
                    .is_some_and(|(_, p)| claimed.contains(p) || *p == me)
                {
                    *n += 1;
                }
                group.get(*n).copied()
            }
            None => created
                .iter()
                .copied()
                .find(|(_, p)| !claimed.contains(p) && *p != me && !killed_set.contains(p)),
        };
        if let Some((_, p)) = found {
            claimed.insert(p);
        }
        replacement[i] = found;
    }
    let mut out = Vec::new();
    for ((pod, del), rep) in killed.iter().zip(&deleted).zip(&replacement) {
        let later = |step: &str| {
            let (at, p) = (*rep)?;
            step_of(p, step, at).map(after)
        };
        let ready = later("ready");
        let terminating = step_of(pod, "terminating", t_from)
            .filter(|t| del.is_none_or(|d| *t <= d))
            .map(after);
        let node = rep.and_then(|(_, p)| details.get(&(p, "scheduled")).map(|d| d.to_string()));
        let stuck = match (ready, *rep) {
            (Some(_), _) => None,
            (None, Some((_, p))) if later("scheduled").is_none() => details
                .get(&(p, "unschedulable"))
                .map(|why| format!("replacement {p} Pending: {why}")),
            (None, Some(_)) => None,
            (None, None) if terminating.is_some() && del.is_none() => Some(format!(
                "held Terminating on {}, not replaced: its controller waits for the old pod to be gone (a StatefulSet's pod is, once its node is back or deleted)",
                details
                    .get(&(pod.as_str(), "terminating"))
                    .copied()
                    .unwrap_or("its node")
            )),
            (None, None) => None,
        };
        out.push(PodRecovery {
            pod: pod.clone(),
            deleted: del.map(after),
            replacement: rep.map(|(_, p)| p.to_string()),
            created: rep.map(|(at, _)| after(at)),
            scheduled: later("scheduled"),
            running: later("running"),
            ready,
            terminating,
            node,
            stuck,
        });
    }
    // Whole again: every workload that reported after the kill reached "all replicas ready",
    // and stayed so (a scenario's later kill degrades it again: whole counts from the last).
    let mut workloads: BTreeMap<&str, Option<Duration>> = BTreeMap::new();
    for (at, object, step) in &steps {
        if object.starts_with("pod/") {
            continue;
        }
        let ready = workloads.entry(object).or_default();
        if *step != "all replicas ready" {
            *ready = None;
        } else if ready.is_none() {
            *ready = Some(*at);
        }
    }
    let whole = workloads
        .values()
        .copied()
        .try_fold(None, |max: Option<Duration>, at| Some(max.max(Some(at?))))
        .flatten()
        .map(after);
    (out, whole)
}

/// One line on the pods left without a ready replacement: the replacements Pending, grouped
/// by the scheduler's reason, and the pods held Terminating on their node. `None` when the
/// platform named nothing in the way.
pub fn stuck_summary(pods: &[PodRecovery]) -> Option<String> {
    let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
    let mut held: Vec<&str> = Vec::new();
    for p in pods {
        let Some(s) = p.stuck.as_deref() else {
            continue;
        };
        match s.split_once(" Pending: ") {
            Some((_, why)) => *pending.entry(why).or_default() += 1,
            None => held.push(p.pod.as_str()),
        }
    }
    let mut parts: Vec<String> = pending
        .into_iter()
        .map(|(why, n)| format!("{n} replacement(s) Pending ({why})"))
        .collect();
    if !held.is_empty() {
        parts.push(format!(
            "{} held Terminating on a node that is down, not replaced until it is back or deleted",
            held.join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(ms: u64, object: &str, step: &str) -> Event {
        Event {
            at: Duration::from_millis(ms),
            trial: Some(1),
            kind: EventKind::Recovery {
                object: object.into(),
                step: step.into(),
                detail: None,
            },
        }
    }

    /// A scenario's second step kills the pod that replaced the first step's kill: each
    /// killed pod gets its own replacement, in the order of the kills.
    #[test]
    fn a_replacement_killed_by_a_later_step_is_replaced_in_turn() {
        let events = vec![
            step(1001, "pod/web-7d-a", "deleted"),
            step(1002, "pod/web-7d-b", "created"),
            step(2002, "pod/web-7d-b", "ready"),
            step(3001, "pod/web-7d-b", "deleted"),
            step(3002, "pod/web-7d-c", "created"),
            step(4002, "pod/web-7d-c", "ready"),
            step(1001, "deployment/web-7d", "2/3 replicas ready"),
            step(2003, "deployment/web-7d", "all replicas ready"),
            step(3001, "deployment/web-7d", "2/3 replicas ready"),
            step(4003, "deployment/web-7d", "all replicas ready"),
        ];
        let (pods, whole) = pod_recovery(
            &events,
            Duration::from_millis(1000),
            Duration::from_millis(1000),
            &["web-7d-a".into(), "web-7d-b".into()],
        );
        let pairs: Vec<(&str, Option<&str>, Option<Duration>)> = pods
            .iter()
            .map(|p| (p.pod.as_str(), p.replacement.as_deref(), p.ready))
            .collect();
        assert_eq!(
            pairs,
            [
                (
                    "web-7d-a",
                    Some("web-7d-b"),
                    Some(Duration::from_millis(1002))
                ),
                (
                    "web-7d-b",
                    Some("web-7d-c"),
                    Some(Duration::from_millis(3002))
                ),
            ]
        );
        assert_eq!(
            whole,
            Some(Duration::from_millis(3003)),
            "whole after the last kill"
        );
    }

    #[test]
    fn a_deployment_pod_is_replaced_by_a_new_name() {
        let events = vec![
            step(500, "pod/old-ready", "ready"), // before the kill: ignored
            step(1001, "pod/a", "deleted"),
            step(1002, "pod/b", "created"),
            step(1052, "pod/b", "scheduled"),
            step(1452, "pod/b", "running"),
            step(2052, "pod/b", "ready"),
            step(2053, "deployment/web", "all replicas ready"),
        ];
        let (pods, whole) = pod_recovery(
            &events,
            Duration::from_millis(1000),
            Duration::from_millis(1000),
            &["a".into()],
        );
        let p = &pods[0];
        assert_eq!(p.replacement.as_deref(), Some("b"));
        assert_eq!(p.deleted, Some(Duration::from_millis(1)));
        assert_eq!(p.created, Some(Duration::from_millis(2)));
        assert_eq!(p.scheduled, Some(Duration::from_millis(52)));
        assert_eq!(p.running, Some(Duration::from_millis(452)));
        assert_eq!(p.ready, Some(Duration::from_millis(1052)));
        assert_eq!(whole, Some(Duration::from_millis(1053)));
    }

    #[test]
    fn a_stateful_pod_comes_back_under_its_name_and_two_kills_claim_two_pods() {
        let events = vec![
            step(1010, "pod/db-0", "deleted"),
            step(1011, "pod/web-x", "deleted"),
            step(1020, "pod/web-y", "created"),
            step(1030, "pod/db-0", "created"),
            step(1500, "pod/db-0", "ready"),
            step(1600, "pod/web-y", "ready"),
        ];
        let t = Duration::from_millis(1000);
        let (pods, whole) = pod_recovery(&events, t, t, &["db-0".into(), "web-x".into()]);
        assert_eq!(pods[0].replacement.as_deref(), Some("db-0"));
        assert_eq!(pods[0].ready, Some(Duration::from_millis(500)));
        assert_eq!(pods[1].replacement.as_deref(), Some("web-y"));
        assert_eq!(pods[1].ready, Some(Duration::from_millis(600)));
        assert_eq!(whole, None);
    }

    #[test]
    fn a_kill_across_workloads_pairs_each_pod_with_its_own_owners_replacement() {
        // Deployment b's new pod is created first; a's killed pod was deleted first.
        let events = vec![
            step(1001, "pod/a-1111-xxxxx", "deleted"),
            step(1002, "pod/a-1111-yyyyy", "deleted"),
            step(1003, "pod/b-2222-zzzzz", "deleted"),
            step(1010, "pod/b-2222-new01", "created"),
            step(1020, "pod/a-1111-new02", "created"),
            step(1030, "pod/a-1111-new03", "created"),
            step(1100, "deployment/a", "1/3 replicas ready"),
            step(1110, "deployment/b", "2/3 replicas ready"),
            step(1400, "pod/a-1111-new03", "ready"),
            step(1500, "pod/b-2222-new01", "ready"),
            step(1600, "pod/a-1111-new02", "ready"),
            step(1601, "deployment/a", "all replicas ready"),
        ];
        let t = Duration::from_millis(1000);
        let killed = ["a-1111-yyyyy", "a-1111-xxxxx", "b-2222-zzzzz"].map(String::from);
        let (pods, whole) = pod_recovery(&events, t, t, &killed);
        let rep = |i: usize| pods[i].replacement.as_deref();
        // Within a's replica set, the pod deleted first gets the first new pod.
        assert_eq!(rep(1), Some("a-1111-new02"));
        assert_eq!(rep(0), Some("a-1111-new03"));
        assert_eq!(rep(2), Some("b-2222-new01"));
        assert_eq!(pods[2].ready, Some(Duration::from_millis(500)));
        // b reported a degradation and no recovery yet: not whole.
        assert_eq!(whole, None);

        let mut events = events;
        events.push(step(1700, "deployment/b", "all replicas ready"));
        let (_, whole) = pod_recovery(&events, t, t, &killed);
        assert_eq!(
            whole,
            Some(Duration::from_millis(700)),
            "the last workload back"
        );
    }

    #[test]
    fn no_replacement_yet() {
        let events = vec![step(1001, "pod/a", "deleted")];
        let (pods, _) = pod_recovery(
            &events,
            Duration::from_millis(1000),
            Duration::from_millis(1000),
            &["a".into()],
        );
        assert_eq!(pods[0].replacement, None);
        assert_eq!(pods[0].ready, None);
    }
}
