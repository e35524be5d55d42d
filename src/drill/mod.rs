//! The executor: it owns time and cancellation.
//!
//! For each trial: preflight steady state → inject → observe until recovered (or the timeout,
//! an abort condition, a signal) → revert → final steady state → cooldown. Probes run as tasks
//! for the whole run and send samples here; this loop is their only reader, so recording,
//! judging and aborting happen in one place, in sample order.
//!
//! Guarantees: nothing is injected unless the steady state held; whatever was injected is
//! reverted, whatever ended the trial (cancellation only stops waiting — reverts run to
//! completion, each bounded by its own timeout and retried within `fault::REVERT_RETRY`); a
//! revert that still fails stops the run after its trial, which ends `failed` with "fault
//! left in place: …" and the record's `faults_left`; the recovery decision is the analysis
//! module's own function, so the executor and the report cannot disagree.

pub mod plan;
mod recorder;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::analysis::rpo;
use crate::experiment::model::postgres::PostgresMode;
use crate::experiment::model::step::StepWait;
use crate::experiment::ProbeKind;
use crate::fault::{self, Injection};
use crate::probe::postgres::{PostgresWriter, WriteHistory};
use crate::probe::{self, Checker, Observation, Pace, SourceContext};
use crate::report::record::{
    DataLoss, ExperimentInfo, FaultLeft, FaultRecord, Outcome, ProbeInfo, RecoveryInfo, RunRecord,
    TrialOutcome, SCHEMA,
};
use crate::timeline::{human, Clock, EventKind, OperatorMark, Phase};

pub use plan::Plan;
use recorder::Recorder;

/// How a run is driven from outside.
pub struct Options {
    /// Cancelling stops the drill early: what was injected is reverted, the outcome is `aborted`.
    pub cancel: CancellationToken,
    /// How long to wait for the steady state before an injection and after a revert.
    pub steady_state_timeout: Duration,
    /// Sees every event as it happens (progress lines, the live view).
    pub observer: Option<Observer>,
    /// Extra sample sources (watch-driven probes); they send on the sender they are given.
    pub sources: Vec<SampleSource>,
    /// Operators' marks from a game day: recorded on the timeline as
    /// `EventKind::Mark` when they arrive (while waiting on probes, which is most of a drill).
    pub marks: Option<mpsc::UnboundedReceiver<OperatorMark>>,
    /// The write-ahead journal: every mutating call is recorded in it before it is made.
    pub journal: Option<Arc<crate::safety::journal::Journal>>,
}

/// Sees every event as it happens.
pub type Observer = Box<dyn Fn(&Clock, &crate::timeline::Event) + Send + Sync>;

/// Starts a watch-driven source (a kubernetes probe, a pod-phase watcher): it spawns what it
/// needs with the context it is given and returns at once.
pub type SampleSource = Box<dyn FnOnce(SourceContext) + Send>;

impl Options {
    pub fn new(cancel: CancellationToken) -> Self {
        Options {
            cancel,
            steady_state_timeout: Duration::from_secs(30),
            observer: None,
            sources: Vec::new(),
            marks: None,
            journal: None,
        }
    }
}

/// Why waiting ended.
enum Wait {
    Met,
    Deadline,
    Cancelled,
    Aborted(String),
}

/// Run the drill. Never panics on platform errors: they end the run `inconclusive`.
pub async fn execute(plan: &Plan, mut opts: Options) -> RunRecord {
    let clock = Clock::start();
    let exp = &plan.experiment;
    let probes_stop = CancellationToken::new();
    let (tx, rx) = mpsc::channel::<Observation>(1 << 16);
    let (pace_tx, pace_rx) = watch::channel(Pace::Steady);

    let mut rec = Recorder::new(plan, clock, opts.observer.take());
    let mut start_error = None;
    for (i, spec) in exp.probes.iter().enumerate() {
        match Checker::build(spec) {
            Ok(Some(checker)) => {
                tokio::spawn(probe::run(
                    i,
                    checker,
                    spec.every,
                    spec.every_during,
                    clock,
                    pace_rx.clone(),
                    tx.clone(),
                    probes_stop.clone(),
                ));
            }
            Ok(None) => {}
            Err(e) => start_error = Some(e.render()),
        }
    }
    // Database writers: each keeps a history of its writes for the lost-write check.
    let mut writers = Vec::new();
    for (i, spec) in exp.probes.iter().enumerate() {
        let ProbeKind::Postgres(p) = &spec.kind else {
            continue;
        };
        if !matches!(p.mode, PostgresMode::Write { .. }) {
            continue;
        }
        let started = async {
            let mut w = PostgresWriter::new(p, &plan.run_id, clock)?;
            w.prepare().await?;
            Ok::<_, crate::probe::postgres::PgError>(w)
        };
        match started.await {
            Ok(w) => {
                let target = w.target().clone();
                let ctx = SourceContext {
                    clock,
                    tx: tx.clone(),
                    cancel: probes_stop.clone(),
                    pace: pace_rx.clone(),
                };
                writers.push((spec.name.clone(), target, tokio::spawn(w.run(i, ctx))));
            }
            Err(e) => start_error = Some(format!("probe `{}`: {e}", spec.name)),
        }
    }
    for source in opts.sources.drain(..) {
        source(SourceContext {
            clock,
            tx: tx.clone(),
            cancel: probes_stop.clone(),
            pace: pace_rx.clone(),
        });
    }
    drop(tx);

    let marks = opts.marks.take();
    let mut ex = Executor {
        plan,
        marks,
        opts: &opts,
        rec: &mut rec,
        rx,
        pace: pace_tx,
        clock,
        left: Vec::new(),
    };
    let (outcome, reason) = match start_error {
        Some(e) => (Outcome::Inconclusive, e),
        None => ex.trials().await,
    };
    let faults_left = std::mem::take(&mut ex.left);
    probes_stop.cancel();
    let data_loss = check_writers(writers, &rec).await;
    rec.event(None, EventKind::Phase { phase: Phase::Done });
    let mut record = rec.finish(plan, outcome, reason);
    record.data_loss = data_loss;
    record.faults_left = faults_left;
    record
}

/// After the drill: read back what each writer wrote and judge lost writes (RPO) and the
/// write-path recovery of every trial.
async fn check_writers(
    writers: Vec<(
        String,
        crate::probe::postgres::Target,
        tokio::task::JoinHandle<WriteHistory>,
    )>,
    rec: &Recorder,
) -> Vec<DataLoss> {
    let mut out = Vec::new();
    for (probe, target, handle) in writers {
        let history = match handle.await {
            Ok(h) => h,
            Err(e) => {
                out.push(DataLoss {
                    probe,
                    rpo: None,
                    error: Some(format!("the writer stopped unexpectedly: {e}")),
                    write_path: vec![],
                    writes: 0,
                });
                continue;
            }
        };
        let write_path = rec
            .injections()
            .into_iter()
            .map(|t| t.and_then(|at| rpo::write_path_recovery(&history.attempts, at)))
            .collect();
        // The cluster may still be settling: read back for up to 30s.
        let read = crate::probe::postgres::read_back(
            &target,
            &history.table,
            &history.run_id,
            Duration::from_secs(30),
        )
        .await;
        let (rpo, error) = match read {
            Ok(seqs) => (Some(rpo::check_writes(&history.attempts, &seqs)), None),
            Err(e) => (None, Some(format!("cannot read the writes back: {e}"))),
        };
        out.push(DataLoss {
            probe,
            rpo,
            error,
            write_path,
            writes: history.attempts.len() as u64,
        });
    }
    out
}

struct Executor<'a> {
    plan: &'a Plan,
    marks: Option<mpsc::UnboundedReceiver<OperatorMark>>,
    opts: &'a Options,
    rec: &'a mut Recorder,
    rx: mpsc::Receiver<Observation>,
    pace: watch::Sender<Pace>,
    clock: Clock,
    /// Reverts that still failed after their retries: the run stops after this trial.
    left: Vec<FaultLeft>,
}

impl Executor<'_> {
    async fn trials(&mut self) -> (Outcome, String) {
        let exp = &self.plan.experiment;
        let mut failed: Option<String> = None;
        for index in 1..=exp.repeat {
            let (trial_outcome, why) = self.trial(index).await;
            if !self.left.is_empty() {
                // Another injection would land on a system firedrill already failed to
                // restore, and whatever else the trial found matters less than this.
                let left: Vec<String> = self.left.iter().map(FaultLeft::describe).collect();
                return (
                    Outcome::Failed,
                    format!(
                        "fault left in place: {}; no further trials were run; restore it by hand or retry with `firedrill recover --run {}`",
                        left.join("; "),
                        self.plan.run_id
                    ),
                );
            }
            match trial_outcome {
                TrialOutcome::Recovered => {}
                TrialOutcome::Inconclusive => return (Outcome::Inconclusive, why),
                TrialOutcome::Aborted => return (Outcome::Aborted, why),
                TrialOutcome::NotRecovered | TrialOutcome::NotSteadyAfter => {
                    // The system did not heal: another injection would hit a broken system.
                    return (Outcome::Failed, why);
                }
                TrialOutcome::MissedObjective => {
                    failed.get_or_insert(why);
                }
            }
            if index < exp.repeat && !exp.cooldown.is_zero() {
                self.rec.phase(Some(index), Phase::Cooldown);
                let until = Instant::now() + exp.cooldown;
                if let Wait::Cancelled = self.wait(until, false, |_| false).await {
                    return (Outcome::Aborted, "stopped during cooldown".into());
                }
            }
        }
        match failed {
            Some(why) => (Outcome::Failed, why),
            None => (Outcome::Passed, self.rec.passed_reason(self.plan)),
        }
    }

    async fn trial(&mut self, index: u32) -> (TrialOutcome, String) {
        self.rec.begin_trial(index);

        // Preflight: nothing is injected unless every steady-state probe passes.
        self.rec.phase(Some(index), Phase::Preflight);
        let since = self.clock.now();
        let deadline = Instant::now() + self.opts.steady_state_timeout;
        let plan = self.plan;
        match self.wait(deadline, false, |r| r.steady(plan, since)).await {
            Wait::Met => {}
            Wait::Cancelled => {
                return self.rec.end_trial(
                    TrialOutcome::Aborted,
                    "stopped before injecting; nothing was injected".into(),
                )
            }
            _ => {
                let why = format!(
                    "steady state did not hold before injecting ({}); nothing was injected",
                    self.rec.steady_failures(plan, since)
                );
                return self.rec.end_trial(TrialOutcome::Inconclusive, why);
            }
        }

        // Inject, fast-sampling from just before the first fault.
        self.pace.send_replace(Pace::Fast);
        self.rec.phase(Some(index), Phase::Inject);
        let mut applied: Vec<Applied> = Vec::new();
        // Calls that failed or timed out: they may have been applied, so they are reverted too.
        let mut maybe: Vec<(String, crate::fault::RevertPlan, Option<u64>)> = Vec::new();
        let mut inject_error = None;
        // A stop (signal, halt, abort) during a call: the trial ends aborted, and the call's
        // effect counts as maybe applied.
        let mut stopped_injecting = None;
        // A step that did not start (its bound passed, a stop, an abort condition).
        let mut step_stop = None;
        // A backup that did not restore: the drill's finding, the trial fails.
        let mut restore_failed: Option<String> = None;
        for (fi, f) in self.plan.faults.iter().enumerate() {
            if restore_failed.is_some() {
                break;
            }
            if self.opts.cancel.is_cancelled() {
                break;
            }
            let label = self.plan.fault_label(fi);
            if let Some(step) = self
                .plan
                .experiment
                .fault_waits
                .get(fi)
                .and_then(Option::as_ref)
            {
                let waiting = phase_span(index, Phase::Step, &label);
                if let Err(stop) = self
                    .step(index, fi, step, &mut applied)
                    .instrument(waiting)
                    .await
                {
                    step_stop = Some(stop);
                    break;
                }
            }
            let span = phase_span(index, Phase::Inject, &label);
            let prepared = match f.prepare().instrument(span.clone()).await {
                Ok(Some(chosen)) => {
                    self.rec.event(
                        Some(index),
                        EventKind::FaultTargets {
                            fault: label.clone(),
                            chosen: chosen.clone(),
                        },
                    );
                    Ok(chosen)
                }
                Ok(None) => Ok(String::new()),
                Err(e) => Err(e),
            };
            // Write ahead: the intent and its undo are durable before the call is made. The
            // plan is taken once: after a failed call it still names what the call may have
            // created (an injection names the next one differently).
            let plan = f.planned_revert();
            let seq = match (&prepared, &self.opts.journal) {
                (Ok(chosen), Some(j)) => match j.intent(&label, &f.describe(), chosen, &plan) {
                    Ok(seq) => Some(seq),
                    Err(e) => {
                        inject_error = Some(format!(
                            "cannot write the journal, so {} was not injected: {e}",
                            label
                        ));
                        break;
                    }
                },
                _ => None,
            };
            // A stop does not wait for a slow call (a pod's grace period may be shorter):
            // the call is abandoned (a command's process is killed), and what it may already
            // have done is reverted like any unknown outcome.
            let injected_now = match prepared {
                Ok(_) => {
                    let journal = self.opts.journal.as_deref();
                    let spawned = move |child| {
                        if let (Some(seq), Some(j)) = (seq, journal) {
                            if let Err(e) = j.child(seq, child) {
                                tracing::error!(error = %e, "cannot record the injector's process in the journal");
                            }
                        }
                    };
                    let cancel = &self.opts.cancel;
                    let stopped = &mut stopped_injecting;
                    async {
                        tokio::select! {
                            r = f.inject_tracked(label.clone(), &spawned) => r,
                            _ = cancel.cancelled() => {
                                *stopped = Some(format!(
                                    "stopped while injecting {label}; it may have been applied, and was reverted"
                                ));
                                Err(fault::FaultError::inject("stopped while the call was in flight"))
                            }
                        }
                    }
                    .instrument(span)
                    .await
                }
                Err(e) => Err(e),
            };
            if let (Some(seq), Some(j)) = (seq, &self.opts.journal) {
                let written = match &injected_now {
                    Ok(inj) => j.applied(seq, &inj.revert),
                    Err(e) => j.maybe_applied(seq, &e.render()),
                };
                if let Err(e) = written {
                    tracing::error!(error = %e, "cannot record the injection's outcome in the journal");
                }
            }
            match injected_now {
                Ok(mut inj) => {
                    self.rec.set_injected(
                        fi,
                        self.clock.offset(inj.sent_at),
                        self.clock.offset(inj.accepted_at),
                    );
                    if let Some(run) = inj.restore.take() {
                        if let Some(why) = &run.failure {
                            restore_failed.get_or_insert(format!("{label}: {why}"));
                        }
                        self.rec.set_restore(label.clone(), *run);
                    }
                    self.rec.event(
                        Some(index),
                        EventKind::FaultInjected {
                            fault: inj.fault.clone(),
                            detail: inj.detail.clone(),
                        },
                    );
                    applied.push(Applied {
                        fault: fi,
                        accepted: self.clock.offset(inj.accepted_at),
                        inj,
                        seq,
                        record: None,
                    });
                }
                Err(e) => {
                    if seq.is_some() || stopped_injecting.is_some() {
                        maybe.push((label.clone(), plan, seq));
                    }
                    self.rec.event(
                        Some(index),
                        EventKind::FaultFailed {
                            fault: label.clone(),
                            error: e.render(),
                        },
                    );
                    if stopped_injecting.is_none() {
                        inject_error = Some(format!("could not inject {label}: {}", e.render()));
                    }
                    break;
                }
            }
        }

        let (outcome, why) = if let Some(why) = stopped_injecting {
            (TrialOutcome::Aborted, why)
        } else if let Some(e) = inject_error {
            (TrialOutcome::Inconclusive, e)
        } else if let Some(stop) = step_stop {
            stop
        } else if let Some(why) = restore_failed {
            (
                TrialOutcome::NotRecovered,
                format!("trial {index}: the backup did not restore ({why})"),
            )
        } else if applied.is_empty() && maybe.is_empty() {
            (
                TrialOutcome::Aborted,
                "stopped before injecting; nothing was injected".into(),
            )
        } else {
            let held = phase_span(index, Phase::Hold, &labels(&applied));
            match self.hold(index, &mut applied).instrument(held).await {
                Some(stopped) => stopped,
                None if !self.left.is_empty() => (
                    TrialOutcome::Inconclusive,
                    "a lasting fault could not be removed, so recovery was not observed".into(),
                ),
                None => {
                    let watched = phase_span(index, Phase::Observe, &labels(&applied));
                    self.observe(index).instrument(watched).await
                }
            }
        };
        self.rec.set_judged(self.clock.now());

        // Revert: always, whatever ended the trial, and never cut short by cancellation.
        self.rec.phase(Some(index), Phase::Revert);
        for (label, plan, seq) in maybe.iter().rev() {
            let result = fault::revert(plan, &self.plan.revert_ctx)
                .instrument(phase_span(index, Phase::Revert, label))
                .await;
            self.journal_revert(*seq, &result);
            let kind = match result {
                Ok(detail) => EventKind::FaultReverted {
                    fault: label.clone(),
                    detail: format!("{detail} (its injection may have been applied)"),
                },
                Err(e) => {
                    self.left.push(FaultLeft {
                        trial: index,
                        fault: label.clone(),
                        revert: plan.describe(),
                        error: e.render(),
                    });
                    EventKind::RevertFailed {
                        fault: label.clone(),
                        error: e.render(),
                    }
                }
            };
            self.rec.event(Some(index), kind);
        }
        // Newest first: a later step may depend on what an earlier one did.
        for a in applied.iter_mut().rev() {
            if a.record.is_none() {
                a.record = Some(self.revert_one(index, a).await);
            }
        }
        let records = applied.into_iter().filter_map(|a| a.record).collect();
        self.rec.set_faults(records);
        self.pace.send_replace(Pace::Steady);
        if !self.left.is_empty() {
            // The steady state cannot be expected back with a fault still in place.
            return self.rec.end_trial(outcome, why);
        }
        self.final_steady_state(index, outcome, why).await
    }

    /// Faults that last (latency) stay for their duration while the probes are watched; each
    /// is removed when its own duration is up, and recovery is judged after the last. `Some`
    /// when the drill stopped meanwhile.
    async fn hold(
        &mut self,
        index: u32,
        applied: &mut [Applied],
    ) -> Option<(TrialOutcome, String)> {
        next_removal(applied)?;
        self.rec.phase(Some(index), Phase::Hold);
        loop {
            self.remove_due(index, applied).await;
            let next = next_removal(applied)?;
            match self.wait(self.clock.instant(next), true, |_| false).await {
                Wait::Met | Wait::Deadline => {}
                Wait::Cancelled => {
                    return Some((
                        TrialOutcome::Aborted,
                        "stopped by a signal or an operator; faults were reverted".into(),
                    ))
                }
                Wait::Aborted(why) => return Some(self.aborted(index, why)),
            }
        }
    }

    /// An abort condition fired: on the timeline, and the trial's outcome.
    fn aborted(&mut self, index: u32, why: String) -> (TrialOutcome, String) {
        self.rec.event(
            Some(index),
            EventKind::Aborted {
                reason: why.clone(),
            },
        );
        (
            TrialOutcome::Aborted,
            format!("{why}; faults were reverted"),
        )
    }

    /// Removes the lasting faults whose duration is up, newest first. The removal is stamped
    /// when it is asked for: a check may see the fault gone before the revert call returns.
    async fn remove_due(&mut self, index: u32, applied: &mut [Applied]) {
        let now = self.clock.now();
        for a in applied.iter_mut().rev() {
            if a.record.is_some() || a.ends().is_none_or(|end| end > now) {
                continue;
            }
            self.rec.set_fault_removed(a.fault, self.clock.now());
            a.record = Some(self.revert_one(index, a).await);
        }
    }

    /// Waits until fault `fi`'s step may start: `delay` after the injection (or removal) of
    /// the fault it counts from, once its probe condition holds. Lasting faults whose time is
    /// up are removed meanwhile. `Err` ends the trial: the step's bound passed, a lasting
    /// fault could not be removed, an abort condition fired or the drill was stopped.
    async fn step(
        &mut self,
        index: u32,
        fi: usize,
        step: &StepWait,
        applied: &mut [Applied],
    ) -> Result<(), (TrialOutcome, String)> {
        let label = self.plan.fault_label(fi);
        let from = self.plan.fault_label(step.from);
        let waits = step.describe(&from);
        self.rec.phase(Some(index), Phase::Step);
        loop {
            self.remove_due(index, applied).await;
            if !self.left.is_empty() {
                return Err((
                    TrialOutcome::Inconclusive,
                    format!("a lasting fault could not be removed, so {label} was not injected"),
                ));
            }
            let origin = if step.from_removal {
                self.rec.removed(step.from)
            } else {
                self.rec.accepted(step.from)
            };
            let now = self.clock.now();
            let wake = match origin {
                Some(o) => {
                    let ready_at = o + step.delay;
                    let holds = |r: &Recorder| {
                        step.until
                            .as_ref()
                            .is_none_or(|c| r.probe_is(&c.probe, c.passing, o))
                    };
                    if now >= ready_at && holds(self.rec) {
                        self.rec.event(
                            Some(index),
                            EventKind::StepStarted {
                                fault: label.clone(),
                                after: format!("{waits}; waited {}", human(now.saturating_sub(o))),
                            },
                        );
                        return Ok(());
                    }
                    let deadline = o + step.within;
                    if now >= deadline {
                        return Err((
                            TrialOutcome::Inconclusive,
                            format!(
                                "{label} was not injected: its step waits {waits}, and that did not happen; what was injected was reverted"
                            ),
                        ));
                    }
                    if now < ready_at {
                        ready_at
                    } else {
                        deadline
                    }
                }
                // Counted from a removal still to come.
                None => match next_removal(applied) {
                    Some(r) => r,
                    None => {
                        return Err((
                            TrialOutcome::Inconclusive,
                            format!(
                                "{label} was not injected: {from} was never applied or removed"
                            ),
                        ))
                    }
                },
            };
            let wake = next_removal(applied).map_or(wake, |r| r.min(wake));
            let ready = origin.is_some_and(|o| now >= o + step.delay);
            let until = self.clock.instant(wake);
            let waited = self
                .wait(until, true, |r| {
                    ready
                        && origin.is_some_and(|o| {
                            step.until
                                .as_ref()
                                .is_none_or(|c| r.probe_is(&c.probe, c.passing, o))
                        })
                })
                .await;
            match waited {
                Wait::Met | Wait::Deadline => {}
                Wait::Cancelled => {
                    return Err((
                        TrialOutcome::Aborted,
                        format!("stopped by a signal or an operator while {label} waited; faults were reverted"),
                    ))
                }
                Wait::Aborted(why) => return Err(self.aborted(index, why)),
            }
        }
    }

    async fn revert_one(&mut self, index: u32, a: &Applied) -> FaultRecord {
        let inj = &a.inj;
        let result = fault::revert(&inj.revert, &self.plan.revert_ctx)
            .instrument(phase_span(index, Phase::Revert, &inj.fault))
            .await;
        self.journal_revert(a.seq, &result);
        let (reverted, revert_error) = match result {
            Ok(detail) => {
                self.rec.event(
                    Some(index),
                    EventKind::FaultReverted {
                        fault: inj.fault.clone(),
                        detail: detail.clone(),
                    },
                );
                (Some(detail), None)
            }
            Err(e) => {
                self.rec.event(
                    Some(index),
                    EventKind::RevertFailed {
                        fault: inj.fault.clone(),
                        error: e.render(),
                    },
                );
                self.left.push(FaultLeft {
                    trial: index,
                    fault: inj.fault.clone(),
                    revert: inj.revert.describe(),
                    error: e.render(),
                });
                (None, Some(e.render()))
            }
        };
        FaultRecord {
            fault: inj.fault.clone(),
            detail: inj.detail.clone(),
            step: self
                .plan
                .experiment
                .fault_waits
                .get(a.fault)
                .and_then(Option::as_ref)
                .map(|w| w.describe(&self.plan.fault_label(w.from))),
            affected: inj.affected.clone(),
            deleted_pods: inj.deleted_pods.clone(),
            sent: self.clock.offset(inj.sent_at),
            accepted: self.clock.offset(inj.accepted_at),
            revert: inj.revert.clone(),
            removed: self.rec.removed(a.fault),
            reverted,
            revert_error,
        }
    }

    async fn final_steady_state(
        &mut self,
        index: u32,
        mut outcome: TrialOutcome,
        mut why: String,
    ) -> (TrialOutcome, String) {
        let plan = self.plan;
        // Final steady state, unless the drill was stopped (then we only revert and leave).
        if matches!(
            outcome,
            TrialOutcome::Recovered | TrialOutcome::MissedObjective
        ) {
            self.rec.phase(Some(index), Phase::FinalSteadyState);
            let since = self.clock.now();
            let deadline = Instant::now() + self.opts.steady_state_timeout;
            match self.wait(deadline, false, |r| r.steady(plan, since)).await {
                Wait::Met => {}
                Wait::Cancelled => {
                    outcome = TrialOutcome::Aborted;
                    why = "stopped after reverting, before the final steady-state check".into();
                }
                _ => {
                    outcome = TrialOutcome::NotSteadyAfter;
                    why = format!(
                        "recovered, but the steady state did not hold after reverting ({})",
                        self.rec.steady_failures(plan, since)
                    );
                }
            }
        }
        self.rec.end_trial(outcome, why)
    }

    fn journal_revert(&self, seq: Option<u64>, result: &Result<String, fault::FaultError>) {
        let (Some(seq), Some(j)) = (seq, &self.opts.journal) else {
            return;
        };
        let written = match result {
            Ok(detail) => j.reverted(seq, detail),
            Err(e) => j.revert_failed(seq, &e.render()),
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot record a revert in the journal");
        }
    }

    /// Watch the system heal: until every recovery probe is stable, the timeout passes, an
    /// abort condition fires, or the drill is cancelled.
    async fn observe(&mut self, index: u32) -> (TrialOutcome, String) {
        let exp = &self.plan.experiment;
        self.rec.phase(Some(index), Phase::Observe);
        // From the last injection: a later step restarts the clock.
        let t_inject = self.rec.last_accepted().unwrap_or_default();
        let deadline = self.clock.instant(t_inject) + exp.recovery.timeout;
        let plan = self.plan;
        match self.wait(deadline, true, |r| r.recovered(plan)).await {
            Wait::Met => {
                self.rec.event(Some(index), EventKind::Recovered);
                let v = self.rec.trial_verdict(plan);
                match v.ttr {
                    Some(b) if !v.objective_met => (
                        TrialOutcome::MissedObjective,
                        format!(
                            "trial {index} recovered in {} ± {}, missing the {} objective",
                            human(b.estimate),
                            human(b.uncertainty()),
                            human(exp.recovery.objective)
                        ),
                    ),
                    _ => (TrialOutcome::Recovered, String::new()),
                }
            }
            Wait::Deadline => (
                TrialOutcome::NotRecovered,
                format!(
                    "trial {index} did not recover within the {} timeout ({})",
                    human(exp.recovery.timeout),
                    self.rec.unrecovered(plan)
                ),
            ),
            Wait::Cancelled => (
                TrialOutcome::Aborted,
                "stopped by a signal or an operator; faults were reverted".into(),
            ),
            Wait::Aborted(why) => self.aborted(index, why),
        }
    }

    /// Record samples until `cond` holds, the deadline passes, an abort condition fires (when
    /// `abortable`) or the run is cancelled.
    ///
    /// `cond` is judged only on everything that has arrived: what queued up meanwhile (while
    /// a long injection ran, a node's NotReady among it) is recorded first, so a verdict is
    /// never drawn from samples older than ones already waiting in the channel.
    async fn wait(
        &mut self,
        deadline: Instant,
        abortable: bool,
        mut cond: impl FnMut(&Recorder) -> bool,
    ) -> Wait {
        if let Some(stop) = self.drain_queued(abortable) {
            return stop;
        }
        if cond(self.rec) {
            return Wait::Met;
        }
        loop {
            tokio::select! {
                biased;
                _ = self.opts.cancel.cancelled() => return Wait::Cancelled,
                m = next_mark(&mut self.marks) => match m {
                    Some(mark) => {
                        let trial = self.rec.trial_index();
                        self.rec.event(trial, EventKind::from(mark));
                    }
                    None => self.marks = None,
                },
                s = self.rx.recv() => match s {
                    Some(obs) => {
                        let sample = matches!(obs, Observation::Sample(_));
                        if let Some(stop) = self.absorb(obs, abortable) {
                            return stop;
                        }
                        if let Some(stop) = self.drain_queued(abortable) {
                            return stop;
                        }
                        if sample && cond(self.rec) {
                            return Wait::Met;
                        }
                    }
                    // Every probe stopped: nothing more will change; wait out the deadline.
                    None => {
                        tokio::select! {
                            _ = self.opts.cancel.cancelled() => return Wait::Cancelled,
                            _ = sleep_until(deadline) => return Wait::Deadline,
                        }
                    }
                },
                _ = sleep_until(deadline) => return Wait::Deadline,
            }
        }
    }

    /// Records every observation already waiting in the channel; `Some` when an abort
    /// condition fired on one of them.
    fn drain_queued(&mut self, abortable: bool) -> Option<Wait> {
        while let Ok(obs) = self.rx.try_recv() {
            if let Some(stop) = self.absorb(obs, abortable) {
                return Some(stop);
            }
        }
        None
    }

    /// Puts one observation on the timeline; `Some` when it fired an abort condition.
    fn absorb(&mut self, obs: Observation, abortable: bool) -> Option<Wait> {
        match obs {
            Observation::Platform {
                at,
                object,
                step,
                detail,
            } => {
                let trial = self.rec.trial_index();
                self.rec.event_at(
                    at,
                    trial,
                    EventKind::Recovery {
                        object,
                        step,
                        detail,
                    },
                );
                None
            }
            Observation::Sample(s) => {
                self.rec.record(s);
                if abortable {
                    if let Some(why) = self.rec.abort_reason(&self.plan.experiment) {
                        return Some(Wait::Aborted(why));
                    }
                }
                None
            }
        }
    }
}

/// The span of one phase of a trial, so that retries, client logs and child processes can be
/// tied to it: `phase` (inject, hold, observe, revert), `trial` and `fault` (the fault's
/// label; the trial's faults, comma-separated, while holding and observing).
fn phase_span(trial: u32, phase: Phase, fault: &str) -> tracing::Span {
    tracing::info_span!("phase", phase = %phase, trial, fault)
}

/// The labels of the injected faults, for a span.
fn labels(applied: &[Applied]) -> String {
    let names: Vec<&str> = applied.iter().map(|a| a.inj.fault.as_str()).collect();
    names.join(",")
}

/// A fault of the trial that was applied, and, once reverted (or removed), its record.
struct Applied {
    /// Its index in the plan.
    fault: usize,
    /// When it was accepted, on the run's axis.
    accepted: std::time::Duration,
    inj: Injection,
    /// Its journal entry.
    seq: Option<u64>,
    record: Option<FaultRecord>,
}

impl Applied {
    /// When a lasting fault's duration is up, on the run's axis.
    fn ends(&self) -> Option<std::time::Duration> {
        let d = self.inj.duration?;
        Some(self.accepted + d)
    }
}

/// The next removal of a lasting fault still in place.
fn next_removal(applied: &[Applied]) -> Option<std::time::Duration> {
    applied
        .iter()
        .filter(|a| a.record.is_none())
        .filter_map(Applied::ends)
        .min()
}

/// The next operator mark; never resolves when there is no (longer a) sender.
async fn next_mark(
    marks: &mut Option<mpsc::UnboundedReceiver<OperatorMark>>,
) -> Option<OperatorMark> {
    match marks {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub(crate) fn run_header(plan: &Plan) -> (ExperimentInfo, RecoveryInfo, Vec<ProbeInfo>) {
    let exp = &plan.experiment;
    let info = ExperimentInfo {
        name: exp.name.clone(),
        description: exp.description.clone(),
        path: exp.source.path.display().to_string(),
        content_hash: exp.source.content_hash.clone(),
    };
    let recovery = RecoveryInfo {
        objective: exp.recovery.objective,
        stable_for: exp.recovery.stable_for,
        timeout: exp.recovery.timeout,
        probes: plan.recovery.iter().cloned().collect(),
    };
    let probes = exp
        .probes
        .iter()
        .map(|p| {
            let (kind, checks) = plan::probe_checks(p);
            ProbeInfo {
                name: p.name.clone(),
                kind,
                checks,
                every: p.every,
                every_during: p.every_during,
                steady_state: plan.steady_state.contains(&p.name),
                recovery: plan.recovery.contains(&p.name),
            }
        })
        .collect();
    (info, recovery, probes)
}

pub(crate) fn new_record(plan: &Plan, clock: &Clock) -> RunRecord {
    let (experiment, recovery, probes) = run_header(plan);
    RunRecord {
        schema: SCHEMA.into(),
        run_id: plan.run_id.clone(),
        experiment,
        environment: plan.environment.name.clone(),
        seed: plan.seed,
        started_at: clock.started_at(),
        finished_at: clock.wall(clock.now()),
        outcome: Outcome::Inconclusive,
        reason: String::new(),
        recovery,
        summary: crate::analysis::summary::summarize(0, []),
        probes,
        trials: vec![],
        data_loss: vec![],
        events: vec![],
        events_dropped: 0,
        faults_left: vec![],
        firedrill_version: env!("CARGO_PKG_VERSION").into(),
    }
}
