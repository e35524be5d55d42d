//! Operators' times from a game day: time to detect and time to mitigate, from the fault to the
//! first "detected" / "mitigated" mark an operator made in the trial.
//!
//! The marks come in as `(at, mark)` pairs, typed ([`Mark`]): only `detected` and `mitigated`
//! count; notes do not.

use std::time::Duration;

use crate::timeline::{Event, EventKind, Mark};

/// When operators detected and mitigated a fault, counted from its injection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperatorTimes {
    /// Time to detect (operators): the first `detected` mark.
    pub detected: Option<Duration>,
    /// Time to mitigate (operators): the first `mitigated` mark.
    pub mitigated: Option<Duration>,
}

impl OperatorTimes {
    /// No mark at all.
    pub fn is_empty(&self) -> bool {
        self.detected.is_none() && self.mitigated.is_none()
    }
}

/// Operators' times from marks `(at, mark)` in time order, counted from `t_inject`; a mark
/// before the injection counts as 0. Nothing without an injection.
pub fn operator_times(
    marks: impl IntoIterator<Item = (Duration, Mark)>,
    t_inject: Option<Duration>,
) -> OperatorTimes {
    let Some(t0) = t_inject else {
        return OperatorTimes::default();
    };
    let mut out = OperatorTimes::default();
    for (at, mark) in marks {
        let slot = match mark {
            Mark::Detected => &mut out.detected,
            Mark::Mitigated => &mut out.mitigated,
            Mark::Note => continue,
        };
        slot.get_or_insert(at.saturating_sub(t0));
    }
    out
}

/// The marks of one trial on a run's timeline, as `(at, mark)`.
pub fn marks_of_trial(events: &[Event], trial: u32) -> impl Iterator<Item = (Duration, Mark)> + '_ {
    events
        .iter()
        .filter(move |e| e.trial == Some(trial))
        .filter_map(|e| match &e.kind {
            EventKind::Mark { mark, .. } => Some((e.at, *mark)),
            _ => None,
        })
}

/// Operators' times of one trial of a run.
pub fn of_trial(events: &[Event], trial: u32, t_inject: Option<Duration>) -> OperatorTimes {
    operator_times(marks_of_trial(events, trial), t_inject)
}

/// The run's operators' times: the first trial with a `detected` mark gives the time to
/// detect, the first with a `mitigated` mark the time to mitigate.
pub fn first_marked(trials: impl IntoIterator<Item = OperatorTimes>) -> OperatorTimes {
    trials
        .into_iter()
        .fold(OperatorTimes::default(), |acc, t| OperatorTimes {
            detected: acc.detected.or(t.detected),
            mitigated: acc.mitigated.or(t.mitigated),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    fn mark(at: u64, trial: u32, mark: Mark) -> Event {
        Event {
            at: s(at),
            trial: Some(trial),
            kind: EventKind::Mark {
                mark,
                text: String::new(),
            },
        }
    }

    #[test]
    fn first_marks_of_the_trial_from_the_injection() {
        let events = [
            mark(12, 1, Mark::Detected),
            mark(15, 2, Mark::Detected),
            mark(14, 1, Mark::Note),
            mark(20, 1, Mark::Detected),
            mark(30, 1, Mark::Mitigated),
        ];
        let t = of_trial(&events, 1, Some(s(10)));
        assert_eq!(
            t.detected,
            Some(s(2)),
            "the first detected mark, not a later one"
        );
        assert_eq!(t.mitigated, Some(s(20)));
        assert_eq!(of_trial(&events, 2, Some(s(10))).mitigated, None);
        assert!(
            of_trial(&events, 1, None).is_empty(),
            "no injection, no time"
        );
        assert!(of_trial(&events, 3, Some(s(0))).is_empty());
    }

    #[test]
    fn a_mark_before_the_fault_counts_as_zero_and_runs_take_the_first_marked_trial() {
        let t = operator_times([(s(5), Mark::Detected)], Some(s(10)));
        assert_eq!(t.detected, Some(Duration::ZERO));
        let run = first_marked([
            OperatorTimes {
                detected: None,
                mitigated: Some(s(9)),
            },
            OperatorTimes {
                detected: Some(s(3)),
                mitigated: Some(s(7)),
            },
        ]);
        assert_eq!((run.detected, run.mitigated), (Some(s(3)), Some(s(9))));
    }
}
