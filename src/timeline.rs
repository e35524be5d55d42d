//! Time for one run: a monotonic anchor, and the events that happen on it.
//!
//! Every instant in a run is a [`Duration`] since the run's monotonic anchor, measured with
//! `tokio::time::Instant` (so tests can pause and advance time). The wall clock is read once,
//! at the anchor, and used only to label instants in reports: wall time can jump, monotonic
//! time cannot, and a time to recover must not change because NTP stepped the clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The run's anchor: one monotonic instant paired with the wall-clock time read beside it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    mono: Instant,
    wall: DateTime<Utc>,
}

impl Clock {
    pub fn start() -> Self {
        Clock {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }

    /// Time since the anchor.
    pub fn now(&self) -> Duration {
        self.mono.elapsed()
    }

    /// An instant as an offset from the anchor (instants before the anchor clamp to zero).
    pub fn offset(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.mono)
    }

    /// The monotonic instant of an offset.
    pub fn instant(&self, at: Duration) -> Instant {
        self.mono + at
    }

    /// Wall-clock label of an offset.
    pub fn wall(&self, at: Duration) -> DateTime<Utc> {
        self.wall + chrono::Duration::from_std(at).unwrap_or(chrono::Duration::MAX)
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        self.wall
    }
}

/// Something that happened during a run, in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the run's anchor.
    #[serde(rename = "at_s", with = "secs")]
    pub at: Duration,
    /// The trial this belongs to (1-based), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trial: Option<u32>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// The drill entered a phase.
    Phase { phase: Phase },
    /// A fault's targets were resolved and chosen; nothing was touched yet.
    FaultTargets { fault: String, chosen: String },
    /// A fault was accepted by its target.
    FaultInjected { fault: String, detail: String },
    /// A step's condition held: its fault is injected next. `after` says what it waited for.
    StepStarted { fault: String, after: String },
    /// A fault could not be injected.
    FaultFailed { fault: String, error: String },
    /// A fault was rolled back (or found to need no rollback).
    FaultReverted { fault: String, detail: String },
    /// A rollback failed: the report says so loudly, and `firedrill recover` can retry it.
    RevertFailed { fault: String, error: String },
    /// A probe changed state.
    ProbeChanged {
        probe: String,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
    },
    /// A step of a workload's recovery observed from the platform (e.g. a pod became ready).
    Recovery {
        object: String,
        step: String,
        /// Where it happened or why it is stuck: the node a pod was scheduled on (and its
        /// zone), the scheduler's reason a pod stays Pending.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        detail: Option<String>,
    },
    /// The trial was judged recovered: every recovery probe passed for `stable-for`.
    Recovered,
    /// The drill stopped early.
    Aborted { reason: String },
    /// A human's mark during a game day.
    Mark { mark: Mark, text: String },
}

/// What a game day's operator marked (`"mark"` in the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// An operator noticed the failure: the human time to detect.
    Detected,
    /// An operator mitigated the failure: the human time to mitigate.
    Mitigated,
    /// A note typed during the drill.
    Note,
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mark::Detected => "detected",
            Mark::Mitigated => "mitigated",
            Mark::Note => "note",
        })
    }
}

/// An operator's mark with its text, as the live view hands it to the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMark {
    pub mark: Mark,
    pub text: String,
}

impl OperatorMark {
    pub fn detected() -> Self {
        OperatorMark {
            mark: Mark::Detected,
            text: "an operator noticed the failure".into(),
        }
    }
    pub fn mitigated() -> Self {
        OperatorMark {
            mark: Mark::Mitigated,
            text: "an operator mitigated the failure".into(),
        }
    }
    pub fn note(text: impl Into<String>) -> Self {
        OperatorMark {
            mark: Mark::Note,
            text: text.into(),
        }
    }
}

impl From<OperatorMark> for EventKind {
    fn from(m: OperatorMark) -> EventKind {
        EventKind::Mark {
            mark: m.mark,
            text: m.text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Preflight,
    Inject,
    /// A step waits for its condition before its fault is injected.
    Step,
    /// A lasting fault (latency) is in place for its duration.
    Hold,
    Observe,
    Revert,
    FinalSteadyState,
    Cooldown,
    Done,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Phase::Preflight => "preflight",
            Phase::Inject => "inject",
            Phase::Step => "waiting for a step",
            Phase::Hold => "fault held",
            Phase::Observe => "observe",
            Phase::Revert => "revert",
            Phase::FinalSteadyState => "final steady state",
            Phase::Cooldown => "cooldown",
            Phase::Done => "done",
        };
        f.write_str(s)
    }
}

/// Serde for durations as fractional seconds with microsecond precision: what a person and a
/// spreadsheet read most easily, and exact enough for every number firedrill reports.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(round_us(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }

    pub fn round_us(d: Duration) -> f64 {
        (d.as_micros() as f64) / 1e6
    }

    /// The same for `Option<Duration>` (`null` when absent).
    pub mod opt {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_f64(super::round_us(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<f64>::deserialize(d)?
                .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// A duration for people: `850ms`, `1.234s`, `2m03.5s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{:.0}µs", d.as_secs_f64() * 1e6)
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else if d.as_secs() < 60 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        let m = d.as_secs() / 60;
        let s = d.as_secs_f64() - (m * 60) as f64;
        format!("{m}m{s:04.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_read_naturally() {
        assert_eq!(human(Duration::from_micros(250)), "250µs");
        assert_eq!(human(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(human(Duration::from_millis(1234)), "1.234s");
        assert_eq!(human(Duration::from_millis(123_500)), "2m03.5s");
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = Event {
            at: Duration::from_micros(1_500_123),
            trial: Some(1),
            kind: EventKind::ProbeChanged {
                probe: "http".into(),
                ok: false,
                reason: Some("status 503".into()),
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"at_s\":1.500123"), "{json}");
        assert!(json.contains("\"event\":\"probe-changed\""), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}

/// One check of one probe: when it was due, when it ran, and what it found.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the check was due (fixed-rate schedule); `start - scheduled` is its lateness.
    pub scheduled: Duration,
    pub start: Duration,
    pub end: Duration,
    pub ok: bool,
    /// Why it failed (short, for people).
    pub reason: Option<String>,
}

impl Sample {
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    pub fn stamp(&self) -> Stamp {
        Stamp {
            start: self.start,
            end: self.end,
        }
    }
}

/// When a check started and ended. The state it observed held at some instant between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    #[serde(rename = "start_s", with = "secs")]
    pub start: Duration,
    #[serde(rename = "end_s", with = "secs")]
    pub end: Duration,
}

/// A run of consecutive samples in the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stretch {
    pub ok: bool,
    pub first: Stamp,
    pub last: Stamp,
    pub samples: u64,
    /// The first failure's reason (failing stretches only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// A probe's samples over a window, run-length encoded: memory grows with the number of state
/// changes, not with the number of samples, so a 1 kHz probe can run for hours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub stretches: Vec<Stretch>,
    /// True when the trace hit [`Trace::MAX_STRETCHES`] and later state changes were merged
    /// into the last stretch; numbers derived from a truncated trace say so.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub truncated: bool,
}

impl Trace {
    /// Past this many state changes a probe is flapping so hard that more detail says nothing
    /// new; the cap keeps a pathological drill's memory bounded.
    pub const MAX_STRETCHES: usize = 100_000;

    pub fn push(&mut self, s: &Sample) {
        let full = self.stretches.len() >= Self::MAX_STRETCHES;
        match self.stretches.last_mut() {
            Some(last) if last.ok == s.ok || self.truncated || full => {
                self.truncated |= last.ok != s.ok;
                last.last = s.stamp();
                last.samples += 1;
            }
            _ => self.stretches.push(Stretch {
                ok: s.ok,
                first: s.stamp(),
                last: s.stamp(),
                samples: 1,
                reason: if s.ok { None } else { s.reason.clone() },
            }),
        }
    }

    pub fn samples(&self) -> u64 {
        self.stretches.iter().map(|s| s.samples).sum()
    }

    pub fn failed_samples(&self) -> u64 {
        self.stretches
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.samples)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.stretches.is_empty()
    }

    /// The state of the most recent sample.
    pub fn last_ok(&self) -> Option<bool> {
        self.stretches.last().map(|s| s.ok)
    }
}
