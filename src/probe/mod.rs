//! Probes: how firedrill tells whether the system is healthy.
//!
//! A probe is a [`Checker`] (one check → ok or a reason) driven by [`run`], which owns the
//! schedule: fixed-rate at `every` in steady state, and at `every-during` while the drill is
//! observing a fault or the probe itself is failing, so the recovery instant is bracketed
//! tightly while the steady-state cost stays low. Each check becomes a [`Sample`] with its
//! scheduled time, actual start and end; lateness (start − scheduled) is kept, never hidden.
//! A check that errors or times out is a failed sample, never a pass.

pub mod command;
pub mod http;
pub mod kube;
pub mod postgres;
pub mod prometheus;
pub mod tcp;

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::timer::precise_sleep_until;

use crate::experiment::{ProbeKind, ProbeSpec};
use crate::timeline::{Clock, Sample};

/// A failed check's reason, short enough for a table cell.
pub type Reason = String;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probe `{probe}`: {message}")]
    Build { probe: String, message: String },
}

/// One probe's checker. A closed set: each built-in probe kind is a variant.
pub enum Checker {
    Http(Box<http::HttpChecker>),
    Tcp(tcp::TcpChecker),
    Command(command::CommandChecker),
    Postgres(Box<postgres::PostgresChecker>),
    Prometheus(Box<prometheus::PrometheusChecker>),
}

impl Checker {
    /// Build the checker for a polling probe; `None` for watch-driven kinds (kubernetes),
    /// which produce samples from events instead.
    pub fn build(spec: &ProbeSpec) -> Result<Option<Checker>, ProbeError> {
        let err = |message: String| ProbeError::Build {
            probe: spec.name.clone(),
            message,
        };
        Ok(Some(match &spec.kind {
            ProbeKind::Http(h) => Checker::Http(Box::new(http::HttpChecker::new(h).map_err(err)?)),
            ProbeKind::Tcp(t) => Checker::Tcp(tcp::TcpChecker::new(t)),
            ProbeKind::Command(c) => {
                Checker::Command(command::CommandChecker::new(c).map_err(err)?)
            }
            ProbeKind::Prometheus(p) => Checker::Prometheus(Box::new(
                prometheus::PrometheusChecker::new(p).map_err(err)?,
            )),
            ProbeKind::Kubernetes(_) => return Ok(None),
            // The writer is a source of its own (it keeps a history for the RPO check).
            ProbeKind::Postgres(p)
                if matches!(
                    p.mode,
                    crate::experiment::model::postgres::PostgresMode::Write { .. }
                ) =>
            {
                return Ok(None)
            }
            ProbeKind::Postgres(p) => Checker::Postgres(Box::new(
                postgres::PostgresChecker::new(p).map_err(|e| err(e.to_string()))?,
            )),
        }))
    }

    pub async fn check(&mut self) -> Result<(), Reason> {
        match self {
            Checker::Http(c) => c.check().await,
            Checker::Tcp(c) => c.check().await,
            Checker::Command(c) => c.check().await,
            Checker::Postgres(c) => c.check().await,
            Checker::Prometheus(c) => c.check().await,
        }
    }
}

/// A sample and the probe (index into the plan's probes) it belongs to.
#[derive(Debug, Clone)]
pub struct ProbeSample {
    pub probe: usize,
    pub sample: Sample,
}

/// What sources send the executor: probe samples, and steps observed on the platform (a pod
/// deleted, a replacement ready) that belong on the timeline.
#[derive(Debug, Clone)]
pub enum Observation {
    Sample(ProbeSample),
    Platform {
        at: Duration,
        object: String,
        step: String,
    },
}

/// Everything a sample source needs to run beside the executor.
#[derive(Clone)]
pub struct SourceContext {
    pub clock: Clock,
    pub tx: mpsc::Sender<Observation>,
    pub cancel: CancellationToken,
    pub pace: watch::Receiver<Pace>,
}

/// How often to sample: the executor switches every probe to `Fast` while it observes a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Steady,
    Fast,
}

/// Drive one checker until `cancel` fires, sending every sample to `tx`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    probe: usize,
    mut checker: Checker,
    every: Duration,
    every_during: Duration,
    clock: Clock,
    mut pace: watch::Receiver<Pace>,
    tx: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    let mut due = Instant::now();
    loop {
        let start = Instant::now();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = checker.check() => r,
        };
        let end = Instant::now();
        let sample = Sample {
            scheduled: clock.offset(due),
            start: clock.offset(start),
            end: clock.offset(end),
            ok: result.is_ok(),
            reason: result.err(),
        };
        let failing = !sample.ok;
        if tx
            .send(Observation::Sample(ProbeSample { probe, sample }))
            .await
            .is_err()
        {
            return;
        }
        // Re-evaluate the interval whenever the pace changes, so an injection switches a probe
        // sleeping through a long steady interval to the fast one at once.
        loop {
            let fast = failing || *pace.borrow_and_update() == Pace::Fast;
            let interval = if fast { every_during } else { every };
            let next = due + interval;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = precise_sleep_until(next) => {
                    // Fixed rate, but never a burst of catch-up checks after a slow one.
                    let now = Instant::now();
                    due = if now.duration_since(next) > interval { now } else { next };
                    break;
                }
                changed = pace.changed() => if changed.is_err() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{ProbeKind, TcpProbe};

    #[tokio::test]
    async fn a_probe_switches_to_the_fast_pace_at_once_and_marks_failures() {
        // A TCP probe against a port nobody listens on: every sample fails with a reason.
        let (_closed, addr) = crate::testing::refusing_addr();
        let spec = ProbeSpec {
            name: "tcp".into(),
            kind: ProbeKind::Tcp(TcpProbe {
                address: addr.to_string(),
                timeout: Duration::from_millis(200),
            }),
            every: Duration::from_secs(3600),
            every_during: Duration::from_millis(5),
            watches: None,
        };
        let checker = Checker::build(&spec).unwrap().unwrap();
        let (pace_tx, pace_rx) = watch::channel(Pace::Steady);
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            0,
            checker,
            spec.every,
            spec.every_during,
            Clock::start(),
            pace_rx,
            tx,
            cancel.clone(),
        ));
        let sample = |o: Option<Observation>| match o {
            Some(Observation::Sample(s)) => s.sample,
            other => panic!("expected a sample, got {other:?}"),
        };
        let first = sample(rx.recv().await);
        assert!(!first.ok);
        assert!(first.reason.clone().unwrap().contains("refused"));
        // Failing keeps it on the fast pace although the steady interval is an hour.
        let second = sample(rx.recv().await);
        assert!(second.start - first.start < Duration::from_secs(60));
        pace_tx.send(Pace::Fast).unwrap();
        cancel.cancel();
        task.await.unwrap();
    }
}
