//! The numbers: time to detect, time to recover with its uncertainty, downtime, availability,
//! and statistics over trials. Every number a report shows is computed here; the views
//! (`report::{markdown, html, terminal, ci, history}`) only format it.
//!
//! Where each number lives:
//! - this module: per probe and per trial — TTD, TTR (bracket), downtime, availability
//!   ([`probe_verdict`], [`is_recovered`], [`trial_verdict`]);
//! - [`summary`]: over trials and runs — which trials count, MTTR/TTD with n, per-run median,
//!   MTTR over runs, overdue;
//! - [`stats`]: mean/median/p90 with n ([`Stats`]), percentiles, check-latency percentiles,
//!   failure rate;
//! - [`trend`]: Theil–Sen slope and Mann–Kendall test of TTR over runs;
//! - [`regression`]: the CI gate's comparison with a baseline (Mann–Whitney);
//! - [`operators`]: operators' time to detect and to mitigate, from their marks;
//! - [`phases`]: a killed pod's recovery steps; [`rpo`]: lost writes and write-path recovery.
//!
//! Pure functions over finished (or in-progress) traces: no I/O, no clocks. The executor calls
//! the same [`probe_verdict`] live to decide when a trial has recovered, so the decision it acts
//! on and the number the report prints cannot disagree.
//!
//! Semantics (DESIGN.md, "Measurement semantics"). The fault's instant is itself an interval:
//! it took effect after its request was *sent* and no later than the target *accepted* it
//! (`t_inject`). A consequence observed inside that interval (a watch event that arrives before
//! the delete call returns) belongs to the fault, and the interval's width is part of every
//! bound counted from the injection:
//! - TTD: end of the first failing check that ended after the request was sent: the moment the
//!   probe *knew*, counted from the fault's instant, so it lies in
//!   `[end - accepted, end - sent]` (clamped at 0); TTD is that bracket's midpoint. No failing
//!   check: no visible impact.
//! - TTR: the state change from the last failing check to the first passing one after it. It
//!   happened after the failing check started and before the passing check ended, so the truth
//!   lies in the bracket `(last_fail.start, first_pass.end]`; TTR is the bracket's midpoint and
//!   its uncertainty is half the bracket's width (about half the sampling interval plus the
//!   check latency). The probe must then stay passing for `stable-for`, proven by a sample
//!   that ended at least `stable-for` after the first passing one started.
//!   TTR is counted from the [`Origin`]'s `recovery` instant: `t_inject` for a fault that acts
//!   once (a kill, a failover), the removal for a lasting fault held for a `duration`
//!   (latency, down) — the hold is the drill's own choice, not the system's recovery. A change
//!   before the removal counts as 0: the time to recover after a fault ended cannot be
//!   negative, and the bracket's bounds are clamped the same way, so the truth stays inside.
//! - Downtime: the summed length of failing stretches. Each edge lies between the checks
//!   around it (the first failure's start, with no check before it in the window, between the
//!   request being sent and the failing check's end), so downtime has a bracket too, and its
//!   estimate is the bracket's midpoint (each edge at its midpoint).
//! - Availability: passing samples / all samples in the observed window.

pub mod operators;
pub mod phases;
pub mod regression;
pub mod restore;
pub mod rpo;
pub mod stats;
pub mod summary;
pub mod trend;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timeline::{secs, Stretch, Trace};

pub use stats::Stats;

/// A measured time with the interval the truth is known to lie in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bracket {
    #[serde(rename = "estimate_s", with = "secs")]
    pub estimate: Duration,
    #[serde(rename = "lower_s", with = "secs")]
    pub lower: Duration,
    #[serde(rename = "upper_s", with = "secs")]
    pub upper: Duration,
}

impl Bracket {
    pub fn new(lower: Duration, upper: Duration) -> Self {
        let upper = upper.max(lower);
        Bracket {
            estimate: lower + (upper - lower) / 2,
            lower,
            upper,
        }
    }

    /// Half the bracket's width: the `±` printed beside the estimate.
    pub fn uncertainty(&self) -> Duration {
        (self.upper - self.lower) / 2
    }

    /// The larger of two brackets, bound by bound: the overall TTR of a trial is the latest
    /// recovery of its probes.
    pub fn max(self, other: Bracket) -> Bracket {
        Bracket::new(self.lower.max(other.lower), self.upper.max(other.upper))
    }

    /// The smaller of two brackets, bound by bound: a trial's TTD is the earliest detection
    /// of its probes.
    pub fn min(self, other: Bracket) -> Bracket {
        Bracket::new(self.lower.min(other.lower), self.upper.min(other.upper))
    }
}

/// What one probe saw after the fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeVerdict {
    /// Time to detect (the estimate of `ttd_bracket`); `None` when no check failed (no
    /// visible impact).
    #[serde(rename = "ttd_s", with = "secs::opt")]
    pub ttd: Option<Duration>,
    /// Where the time to detect lies: the fault's own instant is known to the interval between
    /// its request and its acceptance.
    #[serde(rename = "ttd", default, skip_serializing_if = "Option::is_none")]
    pub ttd_bracket: Option<Bracket>,
    /// Time to recover; `None` when there was no impact or no recovery.
    pub ttr: Option<Bracket>,
    /// Passing (again) and stable for `stable-for`.
    pub recovered: bool,
    /// The estimate of `downtime_bracket`.
    #[serde(rename = "downtime_s", with = "secs")]
    pub downtime: Duration,
    /// Where the downtime lies (every edge of every failing stretch between its checks).
    /// `None` only in records written before it existed.
    #[serde(rename = "downtime", default, skip_serializing_if = "Option::is_none")]
    pub downtime_bracket: Option<Bracket>,
    /// Passing samples / all samples, 0..=1; 1 when there were no samples.
    pub availability: f64,
    pub samples: u64,
    pub failed: u64,
    /// The first failure's reason, for people.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_failure: Option<String>,
}

impl ProbeVerdict {
    pub fn impact(&self) -> bool {
        self.failed > 0
    }
}

/// The instants a trial's numbers are counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The fault's request was sent: it cannot have acted before, so a check that ended after
    /// this instant belongs to the observed window.
    pub sent: Duration,
    /// The fault was accepted: it acted no later than this. TTD and downtime count from the
    /// fault's instant, somewhere in `[sent, inject]`; the observed window and the recovery
    /// `timeout` start here.
    pub inject: Duration,
    /// TTR starts here: the injection, or the removal of a lasting fault.
    pub recovery: Duration,
    /// The earliest the recovery origin can be: the request of a fault that acts once (it
    /// acted in `[recovery_sent, recovery]`); the removal itself for a lasting fault.
    pub recovery_sent: Duration,
}

/// When one fault of a trial was requested and accepted, and, for a fault held for a
/// duration, removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInstants {
    pub sent: Duration,
    pub accepted: Duration,
    /// Held for a duration (its time to recover counts from its removal).
    pub held: bool,
    pub removed: Option<Duration>,
}

impl Origin {
    /// A fault that acts once (a kill, a failover), requested at `sent` and accepted at
    /// `inject`: everything from the injection.
    pub fn at(sent: Duration, inject: Duration) -> Self {
        let sent = sent.min(inject);
        Origin {
            sent,
            inject,
            recovery: inject,
            recovery_sent: sent,
        }
    }

    /// A lasting fault, held from `inject` until it was removed at `removed` (if it was).
    pub fn held(sent: Duration, inject: Duration, removed: Option<Duration>) -> Self {
        let at = Origin::at(sent, inject);
        match removed {
            Some(r) => Origin {
                recovery: r.max(inject),
                recovery_sent: r.max(inject),
                ..at
            },
            None => at,
        }
    }

    /// The instants a probe's numbers count from when it watches `faults` (those injected):
    /// detection from the earliest injection, recovery from the fault whose effect ends last
    /// (the removal of a held fault, else the injection of one that acts once). So with a kill
    /// and a held latency in one trial, a probe of the killed workload counts its recovery
    /// from the kill, not from the latency's removal. `None` when none was injected.
    pub fn watching(faults: &[FaultInstants]) -> Option<Self> {
        let first = faults.iter().min_by_key(|f| f.accepted)?;
        let sent = faults.iter().map(|f| f.sent).min().unwrap_or(first.sent);
        let last = faults
            .iter()
            .map(|f| match (f.held, f.removed) {
                (true, Some(r)) => Origin::held(f.sent, f.accepted, Some(r)),
                _ => Origin::at(f.sent, f.accepted),
            })
            .max_by_key(|o| o.recovery)?;
        Some(Origin {
            sent: sent.min(first.accepted),
            inject: first.accepted,
            recovery: last.recovery,
            recovery_sent: last.recovery_sent,
        })
    }
}

/// Judge one probe's trace from the injection on.
///
/// `trace` holds the samples of the observed window (those that ended at or after `t_inject`).
pub fn probe_verdict(trace: &Trace, origin: Origin, stable_for: Duration) -> ProbeVerdict {
    let t_inject = origin.inject;
    let st = &trace.stretches;
    let samples = trace.samples();
    let failed = trace.failed_samples();
    let availability = if samples == 0 {
        1.0
    } else {
        (samples - failed) as f64 / samples as f64
    };
    let first_fail = st.iter().position(|s| !s.ok);
    let last_fail = st.iter().rposition(|s| !s.ok);
    // From the fault's instant, somewhere in [sent, inject]: the latest instant gives the
    // lower bound, the earliest the upper.
    let from_fault =
        |d: Duration| Bracket::new(d.saturating_sub(t_inject), d.saturating_sub(origin.sent));
    let ttd_bracket = first_fail.map(|i| from_fault(st[i].first.end));

    let recovered = is_recovered(trace, origin, stable_for);
    let ttr = match last_fail {
        // Counted from the recovery origin, itself known to [recovery_sent, recovery].
        Some(i) if recovered => st.get(i + 1).map(|pass| {
            Bracket::new(
                st[i].last.start.saturating_sub(origin.recovery),
                pass.first.end.saturating_sub(origin.recovery_sent),
            )
        }),
        _ => None,
    };
    let down = downtime(st, origin);

    ProbeVerdict {
        ttd: ttd_bracket.map(|b| b.estimate),
        ttd_bracket,
        ttr,
        recovered,
        downtime: down.estimate,
        downtime_bracket: Some(down),
        availability,
        samples,
        failed,
        first_failure: first_fail.and_then(|i| st[i].reason.clone()),
    }
}

/// Whether the probe has recovered (or never showed impact) and been proven stable: its last
/// stretch passes and spans `stable-for` — from its first check when there was a failure,
/// from the injection when there was none, and never from before its recovery origin (a probe
/// that watches a later step, or a held fault, must be seen stable after that step's injection
/// or that fault's removal). Constant time, so the executor can ask after every sample however
/// long the trace.
pub fn is_recovered(trace: &Trace, origin: Origin, stable_for: Duration) -> bool {
    let st = &trace.stretches;
    match st.last() {
        Some(last) if last.ok => {
            let from = if st.len() == 1 {
                origin.inject
            } else {
                last.first.start
            };
            last.last.end.saturating_sub(from.max(origin.recovery)) >= stable_for
        }
        _ => false,
    }
}

/// Summed length of the failing stretches. An edge lies between the checks around it: a
/// failure's start after the last passing check started and before the first failing one
/// ended (never before the fault's request was sent), its end after the last failing check
/// started and before the next passing one ended; a stretch still failing at the end counts
/// up to its last check. The bracket adds up the shortest and the longest stretches.
fn downtime(st: &[Stretch], origin: Origin) -> Bracket {
    let (mut lower, mut upper) = (Duration::ZERO, Duration::ZERO);
    for (i, s) in st.iter().enumerate().filter(|(_, s)| !s.ok) {
        let begin_earliest = match i.checked_sub(1).map(|p| &st[p]) {
            Some(prev) => prev.last.start.max(origin.sent),
            None => origin.sent,
        };
        let begin_latest = s.first.end.max(begin_earliest);
        let (end_earliest, end_latest) = match st.get(i + 1) {
            Some(next) => (s.last.start, next.first.end),
            None => (s.last.end, s.last.end),
        };
        lower += end_earliest.saturating_sub(begin_latest);
        upper += end_latest.saturating_sub(begin_earliest);
    }
    Bracket::new(lower, upper)
}

/// A trial as a whole: the latest recovery among its recovery probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialVerdict {
    /// The earliest detection among the recovery probes (the estimate of `ttd_bracket`).
    #[serde(rename = "ttd_s", with = "secs::opt")]
    pub ttd: Option<Duration>,
    #[serde(rename = "ttd", default, skip_serializing_if = "Option::is_none")]
    pub ttd_bracket: Option<Bracket>,
    pub ttr: Option<Bracket>,
    /// Every recovery probe recovered (or showed no impact) and stayed stable.
    pub recovered: bool,
    /// Some recovery probe saw impact.
    pub impact: bool,
    /// Recovered, and the TTR estimate is within the objective.
    pub objective_met: bool,
}

/// Combine the recovery probes' verdicts; `probes` are the verdicts of the recovery probes only.
pub fn trial_verdict<'a>(
    probes: impl IntoIterator<Item = &'a ProbeVerdict>,
    objective: Duration,
) -> TrialVerdict {
    let mut ttd: Option<Bracket> = None;
    let mut ttr: Option<Bracket> = None;
    let mut recovered = true;
    let mut impact = false;
    for p in probes {
        recovered &= p.recovered;
        impact |= p.impact();
        // Records older than the TTD bracket carry only the point.
        if let Some(d) = p.ttd_bracket.or(p.ttd.map(|d| Bracket::new(d, d))) {
            ttd = Some(ttd.map_or(d, |t| t.min(d)));
        }
        if let Some(b) = p.ttr {
            ttr = Some(ttr.map_or(b, |t| t.max(b)));
        }
    }
    let objective_met = recovered && ttr.is_none_or(|b| b.estimate <= objective);
    TrialVerdict {
        ttd: ttd.map(|b| b.estimate),
        ttd_bracket: ttd,
        ttr,
        recovered,
        impact,
        objective_met,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Sample;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A trace from `(start_ms, ok)` pairs, each check taking 1ms.
    fn trace(samples: &[(u64, bool)]) -> Trace {
        let mut t = Trace::default();
        for &(at, ok) in samples {
            t.push(&Sample {
                scheduled: ms(at),
                start: ms(at),
                end: ms(at + 1),
                ok,
                reason: (!ok).then(|| "status 503".to_string()),
            });
        }
        t
    }

    /// Samples every `every` ms over `[from, to)`, failing inside any of `outages`.
    fn periodic(from: u64, to: u64, every: u64, outages: &[(u64, u64)]) -> Trace {
        let s: Vec<_> = (from..to)
            .step_by(every as usize)
            .map(|t| (t, !outages.iter().any(|&(a, b)| t >= a && t < b)))
            .collect();
        trace(&s)
    }

    #[test]
    fn clean_outage_is_bracketed_by_the_checks_around_it() {
        // inject at 1000; down 1000..1530; probe every 10ms.
        let t = periodic(1000, 5000, 10, &[(1000, 1530)]);
        let v = probe_verdict(&t, Origin::at(ms(1000), ms(1000)), ms(3000));
        assert!(v.recovered);
        assert_eq!(v.ttd, Some(ms(1)));
        let b = v.ttr.unwrap();
        // last failing check started at 1520, first passing ended at 1531.
        assert_eq!(b.lower, ms(520));
        assert_eq!(b.upper, ms(531));
        assert!(b.lower < ms(530) && ms(530) <= b.upper, "truth inside");
        assert_eq!(b.estimate, Duration::from_micros(525_500));
        assert_eq!(b.uncertainty(), Duration::from_micros(5_500));
        assert_eq!(v.failed, 53);
        assert!((v.availability - (347.0 / 400.0)).abs() < 1e-9);
        // downtime: the first check failed, so the outage began between the fault's request
        // (1000) and that check's end (1001); it ended in [1520, 1531].
        let d = v.downtime_bracket.unwrap();
        assert_eq!((d.lower, d.upper), (ms(519), ms(531)));
        assert!(d.lower <= ms(530) && ms(530) <= d.upper, "truth inside");
        assert_eq!(v.downtime, ms(525));
    }

    #[test]
    fn a_lasting_fault_counts_recovery_from_its_removal() {
        // A fault held from 1000 to 3000; the probe checks every 10ms.
        let held = Origin::held(ms(1000), ms(1000), Some(ms(3000)));
        // Healthy again at the removal: the last slow check started at 2990, the first fast
        // one ended at 3001. After the removal that is [0, 1ms]: the bound before it is 0.
        let v = probe_verdict(&periodic(1000, 7000, 10, &[(1000, 3000)]), held, ms(1000));
        assert_eq!(
            v.ttd,
            Some(ms(1)),
            "detection still counts from the injection"
        );
        let b = v.ttr.unwrap();
        assert_eq!((b.lower, b.upper), (ms(0), ms(1)));
        // The system lagged 400ms behind the removal (a drained queue, a refilled pool).
        let v = probe_verdict(&periodic(1000, 7000, 10, &[(1000, 3400)]), held, ms(1000));
        let b = v.ttr.unwrap();
        assert_eq!((b.lower, b.upper), (ms(390), ms(401)));
        assert!(!trial_verdict([&v], ms(300)).objective_met);
        assert!(trial_verdict([&v], ms(500)).objective_met);
        // Healed while the fault was still in place (a fallback took over): 0 after the removal.
        let v = probe_verdict(&periodic(1000, 7000, 10, &[(1000, 1500)]), held, ms(1000));
        assert_eq!(v.ttr.unwrap().upper, ms(0));
        assert!(v.recovered);
        // Not removed (the trial ended during the hold): counted from the injection.
        let v = probe_verdict(
            &periodic(1000, 7000, 10, &[(1000, 1500)]),
            Origin::held(ms(1000), ms(1000), None),
            ms(1000),
        );
        assert_eq!(v.ttr.unwrap().upper, ms(501));
    }

    #[test]
    fn a_consequence_seen_before_the_fault_was_accepted_belongs_to_the_fault() {
        // The delete was sent at 1000 and answered at 1010; the watch reported the deletion
        // at 1004, and re-confirmed it every 20ms; the workload was whole again at 2000.
        let mut t = Trace::default();
        let sample = |at: u64, ok: bool| Sample {
            scheduled: ms(at),
            start: ms(at),
            end: ms(at),
            ok,
            reason: None,
        };
        t.push(&Sample {
            start: ms(500),
            ..sample(1004, true)
        });
        t.push(&sample(1004, false));
        for at in (1024..2000).step_by(20) {
            t.push(&sample(at as u64, false));
        }
        for at in (2001..3500).step_by(20) {
            t.push(&sample(at as u64, true));
        }
        let v = probe_verdict(&t, Origin::at(ms(1000), ms(1010)), ms(1000));
        // Detected at 1004: between 0 (the fault acted at 1004 or later) and 4ms (at 1000).
        let d = v.ttd_bracket.unwrap();
        assert_eq!((d.lower, d.upper), (ms(0), ms(4)));
        assert_eq!(v.ttd, Some(ms(2)));
        // The outage began in [1000, 1004] and ended in [1984, 2001].
        let down = v.downtime_bracket.unwrap();
        assert_eq!((down.lower, down.upper), (ms(980), ms(1001)));
        // Recovered in (1984, 2001], counted from a fault instant in [1000, 1010].
        let r = v.ttr.unwrap();
        assert_eq!((r.lower, r.upper), (ms(974), ms(1001)));
        let trial = trial_verdict([&v], ms(5000));
        assert_eq!(trial.ttd_bracket, Some(d));
    }

    #[test]
    fn each_probe_counts_recovery_from_the_faults_it_watches() {
        // A kill at 1000 and a latency held from 1005 until its removal at 3000.
        let kill = FaultInstants {
            sent: ms(999),
            accepted: ms(1000),
            held: false,
            removed: None,
        };
        let latency = FaultInstants {
            sent: ms(1004),
            accepted: ms(1005),
            held: true,
            removed: Some(ms(3000)),
        };
        let o = Origin::watching(&[kill]).unwrap();
        assert_eq!((o.recovery_sent, o.recovery), (ms(999), ms(1000)));
        let o = Origin::watching(&[latency]).unwrap();
        assert_eq!((o.inject, o.recovery), (ms(1005), ms(3000)));
        // Watching both: detected from the kill, recovered from the latency's removal.
        let o = Origin::watching(&[kill, latency]).unwrap();
        assert_eq!(
            (o.sent, o.inject, o.recovery),
            (ms(999), ms(1000), ms(3000))
        );
        assert!(Origin::watching(&[]).is_none());
        // The kill's workload was whole again at 2050: 1.05s after the kill, not 0 after the
        // latency's removal.
        let t = periodic(1000, 6000, 10, &[(1000, 2050)]);
        let v = probe_verdict(&t, Origin::watching(&[kill]).unwrap(), ms(1000));
        let b = v.ttr.unwrap();
        assert!(b.lower <= ms(1050) && ms(1050) <= b.upper, "{b:?}");
        let v = probe_verdict(&t, Origin::watching(&[kill, latency]).unwrap(), ms(1000));
        assert_eq!(v.ttr.unwrap().upper, ms(0));
    }

    #[test]
    fn flapping_counts_recovery_from_the_last_failure() {
        // down 1000..1200, up, down again 1500..1700, then up for good.
        let t = periodic(1000, 6000, 10, &[(1000, 1200), (1500, 1700)]);
        let v = probe_verdict(&t, Origin::at(ms(1000), ms(1000)), ms(3000));
        assert!(v.recovered);
        let b = v.ttr.unwrap();
        assert_eq!((b.lower, b.upper), (ms(690), ms(701)));
        assert_eq!(v.ttd, Some(ms(1)));
        // two outages of ~200ms each
        let dt = v.downtime.as_secs_f64();
        assert!((dt - 0.4).abs() < 0.011, "{dt}");
    }

    #[test]
    fn recovery_needs_stable_for_of_evidence() {
        // passing again from 1500, but only observed until 2000: 500ms < stable-for 1s.
        let t = periodic(1000, 2000, 10, &[(1000, 1500)]);
        let v = probe_verdict(&t, Origin::at(ms(1000), ms(1000)), ms(1000));
        assert!(!v.recovered);
        assert_eq!(v.ttr, None);
        // with more evidence it recovers, and the TTR does not depend on when we looked.
        let t = periodic(1000, 2600, 10, &[(1000, 1500)]);
        let v = probe_verdict(&t, Origin::at(ms(1000), ms(1000)), ms(1000));
        assert!(v.recovered);
        assert_eq!(v.ttr.unwrap().upper, ms(501));
    }

    #[test]
    fn never_recovered_has_no_ttr() {
        let t = periodic(1000, 9000, 100, &[(1000, 99_999)]);
        let v = probe_verdict(&t, Origin::at(ms(1000), ms(1000)), ms(3000));
        assert!(!v.recovered);
        assert_eq!(v.ttr, None);
        assert_eq!(v.availability, 0.0);
        assert_eq!(v.first_failure.as_deref(), Some("status 503"));
        let d = v.downtime_bracket.unwrap();
        assert_eq!((d.lower, d.upper), (ms(7900), ms(7901)));
    }

    #[test]
    fn no_visible_impact_recovers_after_stable_for_without_ttr() {
        let t = periodic(1000, 4100, 100, &[]);
        let v = probe_verdict(&t, Origin::at(ms(1000), ms(1000)), ms(3000));
        assert!(v.recovered);
        assert_eq!(v.ttd, None);
        assert_eq!(v.ttr, None);
        assert!(!v.impact());
        let early = periodic(1000, 2000, 100, &[]);
        assert!(!probe_verdict(&early, Origin::at(ms(1000), ms(1000)), ms(3000)).recovered);
    }

    #[test]
    fn an_empty_trace_is_not_a_recovery() {
        let v = probe_verdict(&Trace::default(), Origin::at(ms(1000), ms(1000)), ms(0));
        assert!(!v.recovered);
    }

    #[test]
    fn trial_takes_the_latest_recovery_and_the_earliest_detection() {
        let a = probe_verdict(
            &periodic(1000, 6000, 10, &[(1050, 1300)]),
            Origin::at(ms(1000), ms(1000)),
            ms(1000),
        );
        let b = probe_verdict(
            &periodic(1000, 6000, 10, &[(1020, 2100)]),
            Origin::at(ms(1000), ms(1000)),
            ms(1000),
        );
        let v = trial_verdict([&a, &b], ms(1000));
        assert!(v.recovered && v.impact);
        assert_eq!(v.ttd, b.ttd);
        assert_eq!(v.ttr.unwrap().upper, ms(1101));
        assert!(!v.objective_met, "1.1s misses a 1s objective");
        assert!(trial_verdict([&a, &b], ms(2000)).objective_met);
    }

    #[test]
    fn a_trial_with_an_unrecovered_probe_misses_its_objective() {
        let a = probe_verdict(
            &periodic(1000, 6000, 10, &[(1050, 1300)]),
            Origin::at(ms(1000), ms(1000)),
            ms(1000),
        );
        let b = probe_verdict(
            &periodic(1000, 6000, 10, &[(1020, 9999)]),
            Origin::at(ms(1000), ms(1000)),
            ms(1000),
        );
        let v = trial_verdict([&a, &b], ms(60_000));
        assert!(!v.recovered && !v.objective_met);
    }

    #[test]
    fn the_trace_caps_its_memory_when_flapping() {
        let mut t = Trace::default();
        for i in 0..(Trace::MAX_STRETCHES as u64 + 50) {
            t.push(&Sample {
                scheduled: ms(i),
                start: ms(i),
                end: ms(i),
                ok: i % 2 == 0,
                reason: None,
            });
        }
        assert_eq!(t.stretches.len(), Trace::MAX_STRETCHES);
        assert!(t.truncated);
        assert_eq!(t.samples(), Trace::MAX_STRETCHES as u64 + 50);
    }
}
