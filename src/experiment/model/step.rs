//! Steps: a fault that waits before it is injected. Without `wait:` a trial's faults are
//! injected back to back; with it, a fault is a step of a scenario that starts once an earlier
//! fault was injected (or, for a fault held for a duration, removed), after a delay, when a
//! probe is failing or passing, or all of these.

use std::time::Duration;

use serde::Serialize;

/// When a fault's step starts. Counted from `from`, the injection of an earlier fault (or its
/// removal); the step starts `delay` later, once `until` holds, and gives up `within` after
/// `from`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepWait {
    /// The earlier fault (an index into `faults`) this step counts from.
    pub from: usize,
    /// Count from that fault's removal (a fault held for a duration) instead of its injection.
    pub from_removal: bool,
    /// How long after `from` at the earliest.
    pub delay: Duration,
    /// A probe that must be failing (its latest check, started after `from`) or passing (as
    /// a recovered probe: for the recovery's `stable-for`, counted from no earlier than `from`).
    pub until: Option<ProbeCondition>,
    /// The step's bound, from `from`: not ready by then, the trial ends inconclusive and what
    /// was injected is reverted.
    pub within: Duration,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeCondition {
    pub probe: String,
    /// `true`: the probe passes; `false`: it fails.
    pub passing: bool,
}

impl ProbeCondition {
    /// `checkout-ready is failing`.
    pub fn describe(&self) -> String {
        let is = if self.passing { "passing" } else { "failing" };
        format!("`{}` is {is}", self.probe)
    }
}

impl StepWait {
    /// For people: `2s after the removal of `slow-db`, once `orders-write` is passing (within
    /// 1m)`; `from` is the earlier fault's label.
    pub fn describe(&self, from: &str) -> String {
        let origin = if self.from_removal {
            format!("the removal of {from}")
        } else {
            from.to_string()
        };
        let mut text = if self.delay.is_zero() {
            format!("after {origin}")
        } else {
            format!("{} after {origin}", humantime::format_duration(self.delay))
        };
        if let Some(c) = &self.until {
            text.push_str(&format!(", once {}", c.describe()));
        }
        if self.until.is_some() || self.from_removal {
            text.push_str(&format!(
                " (within {})",
                humantime::format_duration(self.within)
            ));
        }
        text
    }
}
