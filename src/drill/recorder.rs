//! The executor's memory of a run: live probe state for its decisions, per-trial traces and
//! latency histograms for the record, and the event timeline. Bounded: traces are run-length
//! encoded, latencies go to HDR histograms, and the event list has a cap.

use std::collections::VecDeque;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Plan;
use crate::analysis::{self, ProbeVerdict, TrialVerdict};
use crate::experiment::{AbortCondition, Experiment, ProbeKind};
use crate::probe::ProbeSample;
use crate::report::record::{
    FaultRecord, LatencySummary, Outcome, PhaseLatency, ProbeTrial, RestoreRecord, RunRecord,
    StepVerdict, TrialOutcome, TrialRecord,
};
use crate::timeline::{human, Clock, Event, EventKind, Phase, Sample, Trace};

/// Past this many events the timeline stops growing (a probe flapping at 1 kHz for an hour);
/// the record says how many were dropped.
const MAX_EVENTS: usize = 50_000;
/// The platform's steps (pods deleted, created, scheduled, ready; workloads whole) have a
/// budget of their own: the recovery phases are computed from them, and a zone outage of
/// 10,000 pods brings about 70,000 (seven per lost pod), which the general cap cut short
/// (6,138 of 10,000 replacements lost their phases in bench/node_scale.py). At about 200 bytes
/// an event this bounds them to some 80 MiB.
const MAX_PLATFORM_STEPS: usize = 400_000;

use super::Observer;

struct Live {
    name: String,
    /// Watch-driven probes report state changes (and heartbeats), not periodic checks.
    event_driven: bool,
    last: Option<Sample>,
    /// Start of the first check of the current failing run.
    failing_since: Option<Duration>,
    /// Recent (end, ok) pairs, kept only as long as an error-rate condition needs.
    recent: VecDeque<(Duration, bool)>,
    keep_recent: Option<Duration>,
}

struct Trial {
    index: u32,
    /// The first fault's request was sent: samples that ended from here on are the fault's.
    t_sent: Option<Duration>,
    t_inject: Option<Duration>,
    t_judged: Option<Duration>,
    /// When the last lasting fault was removed.
    t_removed: Option<Duration>,
    /// Per fault of the plan, in order: (sent, accepted) once injected.
    injected: Vec<Option<(Duration, Duration)>>,
    /// Per fault of the plan: when a lasting fault was removed (asked to be).
    removed: Vec<Option<Duration>>,
    /// Per probe: samples from the injection until the trial was judged.
    during: Vec<Trace>,
    /// Per probe: the same samples split by the steps it watches.
    segments: Vec<Vec<Segment>>,
    /// Per probe: check latency before, during and after (µs).
    latency: Vec<[Histogram<u64>; 3]>,
    lateness: Vec<Histogram<u64>>,
    faults: Vec<FaultRecord>,
    restore: Option<RestoreRecord>,
}

/// The samples of one probe from one step of a scenario on: the step's faults (a step and the
/// faults injected right after it) and, once the first was sent, what the probe saw.
struct Segment {
    faults: Vec<usize>,
    sent: Duration,
    trace: Trace,
}

pub(super) struct Recorder {
    clock: Clock,
    live: Vec<Live>,
    trial: Option<Trial>,
    done: Vec<TrialRecord>,
    events: Vec<Event>,
    events_dropped: u64,
    /// Events kept so far, by budget.
    platform_steps: usize,
    other_events: usize,
    observer: Option<Observer>,
    stable_for: Duration,
    objective: Duration,
    recovery_names: Vec<String>,
    /// Per fault of the plan: held for a duration; a step (it waits before it is injected);
    /// and its label.
    fault_held: Vec<bool>,
    fault_step: Vec<bool>,
    fault_labels: Vec<String>,
    /// Per probe: the faults whose recovery it measures (`None`: all of them).
    watches: Vec<Option<Vec<usize>>>,
}

fn histogram() -> Histogram<u64> {
    // Two significant figures over an auto-resizing range: ~1% error, a few KiB each.
    Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant figures is valid"))
}

impl Recorder {
    pub fn new(plan: &Plan, clock: Clock, observer: Option<Observer>) -> Self {
        let exp = &plan.experiment;
        let live = exp
            .probes
            .iter()
            .map(|p| Live {
                name: p.name.clone(),
                event_driven: matches!(p.kind, ProbeKind::Kubernetes(_) | ProbeKind::KubeNodes(_)),
                last: None,
                failing_since: None,
                recent: VecDeque::new(),
                keep_recent: exp
                    .abort_when
                    .iter()
                    .filter_map(|c| match c {
                        AbortCondition::ErrorRate { probe, window, .. } if *probe == p.name => {
                            Some(*window)
                        }
                        _ => None,
                    })
                    .max(),
            })
            .collect();
        Recorder {
            clock,
            live,
            trial: None,
            done: Vec::new(),
            events: Vec::new(),
            events_dropped: 0,
            platform_steps: 0,
            other_events: 0,
            observer,
            stable_for: exp.recovery.stable_for,
            objective: exp.recovery.objective,
            recovery_names: plan.recovery.iter().cloned().collect(),
            fault_held: exp.faults.iter().map(|f| f.duration().is_some()).collect(),
            fault_step: exp.fault_waits.iter().map(Option::is_some).collect(),
            fault_labels: (0..exp.faults.len()).map(|i| plan.fault_label(i)).collect(),
            watches: exp.probes.iter().map(|p| p.watches.clone()).collect(),
        }
    }

    pub fn event(&mut self, trial: Option<u32>, kind: EventKind) {
        let event = Event {
            at: self.clock.now(),
            trial,
            kind,
        };
        self.push_event(event);
    }

    pub fn event_at(&mut self, at: Duration, trial: Option<u32>, kind: EventKind) {
        self.push_event(Event { at, trial, kind });
    }

    /// The injection instant of every finished trial, in order.
    pub fn injections(&self) -> Vec<Option<Duration>> {
        self.done.iter().map(|t| t.t_inject).collect()
    }

    pub fn trial_index(&self) -> Option<u32> {
        self.trial.as_ref().map(|t| t.index)
    }

    fn push_event(&mut self, event: Event) {
        if let Some(observer) = &self.observer {
            observer(&self.clock, &event);
        }
        let (count, cap) = match event.kind {
            EventKind::Recovery { .. } => (&mut self.platform_steps, MAX_PLATFORM_STEPS),
            _ => (&mut self.other_events, MAX_EVENTS),
        };
        if *count < cap {
            *count += 1;
            self.events.push(event);
        } else {
            self.events_dropped += 1;
        }
    }

    pub fn phase(&mut self, trial: Option<u32>, phase: Phase) {
        tracing::debug!(trial, %phase, "phase");
        self.event(trial, EventKind::Phase { phase });
    }

    pub fn begin_trial(&mut self, index: u32) {
        let n = self.live.len();
        self.trial = Some(Trial {
            index,
            t_sent: None,
            t_inject: None,
            t_judged: None,
            t_removed: None,
            injected: vec![None; self.fault_held.len()],
            removed: vec![None; self.fault_held.len()],
            during: vec![Trace::default(); n],
            segments: (0..n).map(|_| Vec::new()).collect(),
            latency: (0..n)
                .map(|_| [histogram(), histogram(), histogram()])
                .collect(),
            lateness: (0..n).map(|_| histogram()).collect(),
            faults: Vec::new(),
            restore: None,
        });
    }

    /// Fault `fault` of the plan was requested at `sent` and accepted at `accepted`; the
    /// first one injected starts the trial's observed window.
    pub fn set_injected(&mut self, fault: usize, sent: Duration, accepted: Duration) {
        if let Some(t) = &mut self.trial {
            if t.t_inject.is_none() {
                t.t_sent = Some(sent.min(accepted));
                t.t_inject = Some(accepted);
            }
            if let Some(slot) = t.injected.get_mut(fault) {
                *slot = Some((sent.min(accepted), accepted));
            }
            // A step opens a segment in every probe that watches it; a fault injected right
            // after it belongs to its segment.
            let step = self.fault_step.get(fault).copied().unwrap_or(false);
            for (p, segs) in t.segments.iter_mut().enumerate() {
                let watches = self
                    .watches
                    .get(p)
                    .and_then(Option::as_ref)
                    .is_none_or(|w| w.contains(&fault));
                if !watches {
                    continue;
                }
                match segs.last_mut() {
                    Some(seg) if !step => seg.faults.push(fault),
                    _ => segs.push(Segment {
                        faults: vec![fault],
                        sent: sent.min(accepted),
                        trace: Trace::default(),
                    }),
                }
            }
        }
    }

    pub fn t_inject(&self) -> Option<Duration> {
        self.trial.as_ref().and_then(|t| t.t_inject)
    }

    pub fn set_judged(&mut self, at: Duration) {
        if let Some(t) = &mut self.trial {
            if t.t_inject.is_some() {
                t.t_judged = Some(at);
            }
        }
    }

    /// Lasting fault `fault` of the plan was asked to be removed at `at`: its time to recover
    /// counts from here.
    pub fn set_fault_removed(&mut self, fault: usize, at: Duration) {
        if let Some(t) = &mut self.trial {
            t.t_removed = Some(t.t_removed.map_or(at, |r| r.max(at)));
            if let Some(slot) = t.removed.get_mut(fault) {
                *slot = Some(at);
            }
        }
    }

    /// When fault `fault` of the plan was accepted in this trial, if it was.
    pub fn accepted(&self, fault: usize) -> Option<Duration> {
        let t = self.trial.as_ref()?;
        t.injected.get(fault).copied().flatten().map(|(_, a)| a)
    }

    /// The latest injection of this trial: the recovery timeout counts from it.
    pub fn last_accepted(&self) -> Option<Duration> {
        let t = self.trial.as_ref()?;
        t.injected.iter().flatten().map(|(_, a)| *a).max()
    }

    /// When lasting fault `fault` of the plan was removed in this trial, if it was.
    pub fn removed(&self, fault: usize) -> Option<Duration> {
        let t = self.trial.as_ref()?;
        t.removed.get(fault).copied().flatten()
    }

    /// A step's probe condition, counted from `since` (the step's origin): failing on its
    /// latest check, started at or after `since` (a watch-driven probe's latest state is
    /// current); or passing as a recovered probe does, for `stable-for` and never counted from
    /// before `since` (so a probe that has not yet seen a kill is not taken for recovered).
    pub fn probe_is(&self, probe: &str, passing: bool, since: Duration) -> bool {
        let Some(i) = self.live.iter().position(|l| l.name == probe) else {
            return false;
        };
        let l = &self.live[i];
        let Some(last) = &l.last else {
            return false;
        };
        if !passing {
            return !last.ok && (l.event_driven || last.start >= since);
        }
        let Some(t) = &self.trial else {
            return false;
        };
        last.ok
            && analysis::is_recovered(
                &t.during[i],
                analysis::Origin::at(since, since),
                self.stable_for,
            )
    }

    pub fn set_faults(&mut self, faults: Vec<FaultRecord>) {
        if let Some(t) = &mut self.trial {
            t.faults = faults;
        }
    }

    pub fn record(&mut self, ps: ProbeSample) {
        let Some(live) = self.live.get_mut(ps.probe) else {
            return;
        };
        let s = ps.sample;
        let changed = live.last.as_ref().map(|l| l.ok) != Some(s.ok);
        if s.ok {
            live.failing_since = None;
        } else if changed || live.failing_since.is_none() {
            live.failing_since = Some(s.start);
        }
        if let Some(keep) = live.keep_recent {
            live.recent.push_back((s.end, s.ok));
            while live
                .recent
                .front()
                .is_some_and(|(end, _)| s.end.saturating_sub(*end) > keep)
            {
                live.recent.pop_front();
            }
        }
        let name = live.name.clone();
        live.last = Some(s.clone());

        let trial_index = self.trial.as_ref().map(|t| t.index);
        if let Some(t) = &mut self.trial {
            let us = |d: Duration| d.as_micros().min(u64::MAX as u128) as u64;
            let _ = t.lateness[ps.probe].record(us(s.start.saturating_sub(s.scheduled)));
            // A check that ended after the fault's request was sent may already show it (a
            // watch event can beat the answer to the delete): it is the fault's.
            let window = match (t.t_sent, t.t_judged) {
                (Some(sent), _) if s.end < sent => 0,
                (Some(_), None) => 1,
                (Some(_), Some(judged)) if s.end <= judged => 1,
                (Some(_), Some(_)) => 2,
                (None, _) => 0,
            };
            // Latency phases follow the fault: after a lasting fault is removed, checks count
            // as "after" even while recovery is still being judged.
            let phase = match t.t_removed {
                Some(removed) if window == 1 && s.start >= removed => 2,
                _ => window,
            };
            let _ = t.latency[ps.probe][phase].record(us(s.latency()));
            if window == 1 {
                t.during[ps.probe].push(&s);
                // The latest segment whose step was sent before the check ended.
                if let Some(seg) = t.segments[ps.probe]
                    .iter_mut()
                    .rev()
                    .find(|seg| seg.sent <= s.end)
                {
                    seg.trace.push(&s);
                }
            }
        }
        if changed {
            self.push_event(Event {
                at: s.end,
                trial: trial_index,
                kind: EventKind::ProbeChanged {
                    probe: name,
                    ok: s.ok,
                    reason: s.reason,
                },
            });
        }
    }

    /// Every steady-state probe passes, with evidence taken since `since` (watch-driven
    /// probes report changes, so their latest state is current).
    pub fn steady(&self, plan: &Plan, since: Duration) -> bool {
        self.live
            .iter()
            .filter(|l| plan.steady_state.contains(&l.name))
            .all(|l| {
                l.last
                    .as_ref()
                    .is_some_and(|s| s.ok && (l.event_driven || s.start >= since))
            })
    }

    /// Why the steady state does not hold, for people.
    pub fn steady_failures(&self, plan: &Plan, since: Duration) -> String {
        let bad: Vec<String> = self
            .live
            .iter()
            .filter(|l| plan.steady_state.contains(&l.name))
            .filter_map(|l| match &l.last {
                None => Some(format!("{}: no sample", l.name)),
                Some(s) if !s.ok => Some(format!(
                    "{} failing: {}",
                    l.name,
                    s.reason.as_deref().unwrap_or("failed")
                )),
                Some(s) if !l.event_driven && s.start < since => {
                    Some(format!("{}: no fresh sample", l.name))
                }
                _ => None,
            })
            .collect();
        bad.join("; ")
    }

    /// The instants the numbers of a probe that watches `faults` count from.
    fn origin_of(&self, t: &Trial, faults: &[usize]) -> Option<analysis::Origin> {
        let watched: Vec<analysis::FaultInstants> = faults
            .iter()
            .filter_map(|&i| {
                let (sent, accepted) = t.injected.get(i).copied().flatten()?;
                let held = self.fault_held.get(i).copied().unwrap_or(false);
                Some(analysis::FaultInstants {
                    sent,
                    accepted,
                    held,
                    removed: t.removed.get(i).copied().flatten().filter(|_| held),
                })
            })
            .collect();
        analysis::Origin::watching(&watched)
    }

    /// Per step a probe watches (when it watches more than one): its verdict from the step's
    /// faults on.
    fn step_verdicts(&self, t: &Trial, probe: usize) -> Vec<StepVerdict> {
        let segs = &t.segments[probe];
        if segs.len() < 2 {
            return Vec::new();
        }
        segs.iter()
            .filter_map(|seg| {
                let origin = self.origin_of(t, &seg.faults)?;
                Some(StepVerdict {
                    faults: seg
                        .faults
                        .iter()
                        .filter_map(|&f| self.fault_labels.get(f).cloned())
                        .collect(),
                    verdict: analysis::probe_verdict(&seg.trace, origin, self.stable_for),
                })
            })
            .collect()
    }

    /// The instants probe `probe`'s numbers count from: those of the faults it watches.
    fn origin(&self, t: &Trial, probe: usize) -> analysis::Origin {
        let inject = t.t_inject.unwrap_or_default();
        let trial = analysis::Origin::held(t.t_sent.unwrap_or(inject), inject, t.t_removed);
        let watched: Vec<usize> = (0..t.injected.len())
            .filter(|i| {
                self.watches
                    .get(probe)
                    .and_then(Option::as_ref)
                    .is_none_or(|w| w.contains(i))
            })
            .collect();
        self.origin_of(t, &watched).unwrap_or(trial)
    }

    fn verdicts(&self) -> Vec<ProbeVerdict> {
        let Some(t) = &self.trial else {
            return vec![];
        };
        t.during
            .iter()
            .enumerate()
            .map(|(i, tr)| analysis::probe_verdict(tr, self.origin(t, i), self.stable_for))
            .collect()
    }

    /// Every recovery probe is stable again (the analysis module decides).
    pub fn recovered(&self, plan: &Plan) -> bool {
        let Some(t) = &self.trial else {
            return false;
        };
        if t.t_inject.is_none() {
            return false;
        }
        self.live
            .iter()
            .zip(&t.during)
            .enumerate()
            .filter(|(_, (l, _))| plan.recovery.contains(&l.name))
            .all(|(i, (_, tr))| analysis::is_recovered(tr, self.origin(t, i), self.stable_for))
    }

    pub fn trial_verdict(&self, plan: &Plan) -> TrialVerdict {
        let v = self.verdicts();
        let probes = analysis::trial_verdict(
            self.live
                .iter()
                .zip(&v)
                .filter(|(l, _)| plan.recovery.contains(&l.name))
                .map(|(_, v)| v),
            self.objective,
        );
        self.with_restore(probes, self.trial.as_ref().and_then(|t| t.restore.as_ref()))
    }

    /// A trial with a restore is judged by it (the analysis module decides).
    fn with_restore(&self, probes: TrialVerdict, restore: Option<&RestoreRecord>) -> TrialVerdict {
        match restore {
            None => probes,
            Some(r) => analysis::restore::trial_verdict(
                probes,
                r.numbers.rto,
                r.run.failure.is_none(),
                self.objective,
            ),
        }
    }

    /// A restore's outcome, from its injection.
    pub fn set_restore(&mut self, fault: String, run: crate::fault::restore::RestoreRun) {
        if let Some(t) = &mut self.trial {
            t.restore = Some(RestoreRecord::new(fault, run));
        }
    }

    pub fn unrecovered(&self, plan: &Plan) -> String {
        let v = self.verdicts();
        let bad: Vec<String> = self
            .live
            .iter()
            .zip(&v)
            .filter(|(l, v)| plan.recovery.contains(&l.name) && !v.recovered)
            .map(|(l, _)| match &l.last {
                Some(s) if !s.ok => format!(
                    "{} still failing: {}",
                    l.name,
                    s.reason.as_deref().unwrap_or("failed")
                ),
                Some(_) => format!("{} passing but not yet stable", l.name),
                None => format!("{}: no sample", l.name),
            })
            .collect();
        bad.join("; ")
    }

    /// The first abort condition that holds, as a sentence. A condition with `after:` counts
    /// only from that fault's injection in this trial (before it, it cannot fire).
    pub fn abort_reason(&self, exp: &Experiment) -> Option<String> {
        let inject = self.t_inject()?;
        let from = |after: &Option<usize>| match after {
            None => Some(Duration::ZERO),
            Some(f) => self.accepted(*f),
        };
        let named = |after: &Option<usize>| {
            after
                .and_then(|f| self.fault_labels.get(f))
                .map(|l| format!(", after {l}"))
                .unwrap_or_default()
        };
        exp.abort_when.iter().find_map(|c| match c {
            AbortCondition::FailingFor {
                probe,
                duration,
                after,
            } => {
                let l = self.live.iter().find(|l| &l.name == probe)?;
                let since = l.failing_since?.max(from(after)?);
                let now = l.last.as_ref()?.end;
                (now.saturating_sub(since) >= *duration).then(|| {
                    format!(
                        "aborted: probe `{probe}` failing for {} (abort-when failing-for {}{})",
                        human(now - since),
                        human(*duration),
                        named(after)
                    )
                })
            }
            AbortCondition::ErrorRate {
                probe,
                above,
                window,
                after,
            } => {
                let l = self.live.iter().find(|l| &l.name == probe)?;
                let now = l.last.as_ref()?.end;
                let start = from(after)?.max(inject);
                if now.saturating_sub(start) < *window {
                    return None;
                }
                let rate = analysis::stats::failure_rate(
                    l.recent
                        .iter()
                        .filter(|(end, _)| *end >= start)
                        .map(|(_, ok)| *ok),
                )?;
                (rate > *above).then(|| {
                    format!(
                        "aborted: probe `{probe}` error rate {:.0}% over {} (abort-when above {:.0}%{})",
                        rate * 100.0,
                        human(*window),
                        above * 100.0,
                        named(after)
                    )
                })
            }
        })
    }

    pub fn end_trial(&mut self, outcome: TrialOutcome, mut why: String) -> (TrialOutcome, String) {
        let verdicts = self.verdicts();
        if let Some(t) = self.trial.take() {
            let verdict = t.t_inject.map(|_| {
                let probes = analysis::trial_verdict(
                    self.live
                        .iter()
                        .zip(&verdicts)
                        .filter(|(l, _)| self.is_recovery_probe(l))
                        .map(|(_, v)| v),
                    self.objective,
                );
                self.with_restore(probes, t.restore.as_ref())
            });
            let probes = self
                .live
                .iter()
                .enumerate()
                .map(|(i, l)| ProbeTrial {
                    name: l.name.clone(),
                    after: self
                        .watches
                        .get(i)
                        .and_then(Option::as_ref)
                        .map(|w| {
                            w.iter()
                                .filter_map(|&f| self.fault_labels.get(f).cloned())
                                .collect()
                        })
                        .unwrap_or_default(),
                    ttr_origin: t.t_inject.map(|_| self.origin(&t, i).recovery),
                    verdict: verdicts[i].clone(),
                    steps: self.step_verdicts(&t, i),
                    latency: PhaseLatency {
                        before: LatencySummary::of(&t.latency[i][0]),
                        during: LatencySummary::of(&t.latency[i][1]),
                        after: LatencySummary::of(&t.latency[i][2]),
                    },
                    lateness: LatencySummary::of(&t.lateness[i]),
                    trace: t.during[i].clone(),
                })
                .collect();
            let killed: Vec<String> = t
                .faults
                .iter()
                .flat_map(|f| f.deleted_pods.iter().cloned())
                .collect();
            // Steps are counted from the first delete *sent*: the watch may report the deletion
            // before the API's answer to the delete arrives.
            let sent = t.faults.iter().map(|f| f.sent).min();
            let (pod_recovery, workload_ready) = match (t.t_inject, sent) {
                (Some(inject), Some(sent)) if !killed.is_empty() => {
                    let mine: Vec<Event> = self
                        .events
                        .iter()
                        .filter(|e| e.trial == Some(t.index))
                        .cloned()
                        .collect();
                    analysis::phases::pod_recovery(&mine, inject, sent.min(inject), &killed)
                }
                _ => (vec![], None),
            };
            // A trial that did not heal says what the platform says is in the way.
            if outcome == TrialOutcome::NotRecovered {
                if let Some(stuck) = analysis::phases::stuck_summary(&pod_recovery) {
                    why.push_str(&format!("; stuck: {stuck}"));
                }
            }
            let faults = t.faults;
            self.done.push(TrialRecord {
                pod_recovery,
                workload_ready,
                index: t.index,
                outcome,
                injected_at: t.t_inject.map(|d| self.clock.wall(d)),
                t_sent: t.t_sent,
                t_inject: t.t_inject,
                t_judged: t.t_judged,
                t_removed: t.t_removed,
                verdict,
                faults,
                probes,
                restore: t.restore,
                note: (!why.is_empty()).then(|| why.clone()),
            });
        }
        (outcome, why)
    }

    fn is_recovery_probe(&self, l: &Live) -> bool {
        self.recovery_names.contains(&l.name)
    }

    /// The summary over the finished trials (the analysis module's one definition).
    fn summary(&self) -> analysis::summary::Summary {
        analysis::summary::summarize(
            self.done.len(),
            self.done.iter().filter_map(|t| t.verdict.as_ref()),
        )
    }

    pub fn passed_reason(&self, plan: &Plan) -> String {
        let s = self.summary();
        let obj = human(plan.experiment.recovery.objective);
        match s.mttr {
            Some(m) => format!(
                "all {} trial(s) recovered within the {obj} objective (MTTR {} over n={})",
                s.trials,
                human(m.mean),
                m.n
            ),
            None => format!(
                "all {} trial(s) passed with no visible impact on the recovery probes",
                s.trials
            ),
        }
    }

    pub fn finish(mut self, plan: &Plan, outcome: Outcome, reason: String) -> RunRecord {
        if self.trial.is_some() {
            self.end_trial(TrialOutcome::Inconclusive, String::new());
        }
        let mut record = super::new_record(plan, &self.clock);
        record.finished_at = self.clock.wall(self.clock.now());
        record.outcome = outcome;
        record.reason = reason;
        record.summary = self.summary();
        record.trials = self.done;
        record.events = self.events;
        record.events_dropped = self.events_dropped;
        record
    }
}
