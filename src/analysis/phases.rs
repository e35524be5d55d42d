//! Recovery phases of killed pods, derived from the platform steps on the timeline: for each
//! killed pod, when it was deleted, which pod replaced it, and when the replacement was created,
//! scheduled, running and ready; and when the workload was whole again.
//!
//! A replacement is the first pod created after the kill that is not itself a killed pod and
//! not already claimed — for a stateful set, the pod recreated under the same name.

use std::collections::BTreeSet;
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
}

/// Phases per killed pod, plus the first "all replicas ready" of a workload after the kill.
/// Times are offsets from `t_inject`; steps are considered from `from` (when the kill was sent,
/// since a watch can report a deletion before the delete call returns), and a step before
/// `t_inject` counts as zero.
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
            EventKind::Recovery { object, step } => Some((e.at, object.as_str(), step.as_str())),
            _ => None,
        })
        .collect();
    let step_of = |pod: &str, step: &str, from: Duration| {
        steps
            .iter()
            .find(|(at, o, s)| *at >= from && o.strip_prefix("pod/") == Some(pod) && *s == step)
            .map(|(at, _, _)| *at)
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
    // First a pod recreated under its own name (a stateful set), then, in order, the first new
    // pod nobody claimed yet (a replica set's replacement has a new name).
    let mut replacement: Vec<Option<(Duration, &str)>> = killed
        .iter()
        .zip(&deleted)
        .map(|(pod, del)| {
            let from = del.unwrap_or(t_from);
            created
                .iter()
                .copied()
                .find(|(at, p)| *p == pod.as_str() && *at >= from)
        })
        .collect();
    let mut claimed: BTreeSet<&str> = replacement.iter().flatten().map(|(_, p)| *p).collect();
    for r in replacement.iter_mut().filter(|r| r.is_none()) {
        *r = created
            .iter()
            .copied()
            .find(|(_, p)| !killed_set.contains(p) && !claimed.contains(p));
        if let Some((_, p)) = r {
            claimed.insert(p);
        }
    }
    let mut out = Vec::new();
    for ((pod, del), rep) in killed.iter().zip(&deleted).zip(&replacement) {
        let later = |step: &str| {
            let (_, p) = (*rep)?;
            step_of(p, step, rep.map(|(at, _)| at)?).map(after)
        };
        out.push(PodRecovery {
            pod: pod.clone(),
            deleted: del.map(after),
            replacement: rep.map(|(_, p)| p.to_string()),
            created: rep.map(|(at, _)| after(at)),
            scheduled: later("scheduled"),
            running: later("running"),
            ready: later("ready"),
        });
    }
    let whole = steps
        .iter()
        .find(|(_, o, s)| !o.starts_with("pod/") && *s == "all replicas ready")
        .map(|(at, _, _)| after(*at));
    (out, whole)
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
            },
        }
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
