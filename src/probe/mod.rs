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
    #[error("probe `{probe}` cannot start")]
    Build {
        probe: String,
        #[source]
        source: BuildError,
    },
}

/// Why a probe's checker could not be built, with the error it came from.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid url")]
    Url(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("invalid method `{0}`")]
    Method(String),
    #[error("invalid header name `{0}`")]
    HeaderName(String),
    #[error("invalid value for header `{0}`")]
    HeaderValue(String),
    #[error("cannot read the CA file {}", .0.display())]
    CaFile(std::path::PathBuf, #[source] std::io::Error),
    #[error("bad CA file {}", .0.display())]
    CaPem(std::path::PathBuf, #[source] reqwest::Error),
    #[error("cannot build the http client")]
    Client(#[source] reqwest::Error),
    #[error("a command probe needs a program to run")]
    NoProgram,
    #[error(transparent)]
    Postgres(postgres::PgError),
}

impl ProbeError {
    /// For people: which probe, what failed and, once, why.
    pub fn render(&self) -> String {
        match self {
            ProbeError::Build { probe, source } => {
                format!("probe `{probe}`: {}", crate::platform::render(source))
            }
        }
    }
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
        let err = |source: BuildError| ProbeError::Build {
            probe: spec.name.clone(),
            source,
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
            ProbeKind::Kubernetes(_) | ProbeKind::KubeNodes(_) => return Ok(None),
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
                postgres::PostgresChecker::new(p).map_err(|e| err(BuildError::Postgres(e)))?,
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
        /// The node of a `scheduled` step, the scheduler's reason of an `unschedulable` one.
        detail: Option<String>,
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

    /// A probe that cannot start says which probe, what failed and the error it came from,
    /// once: a CA file that is not there names the file and the operating system's reason.
    #[test]
    fn a_probe_that_cannot_start_names_what_and_why_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let spec = ProbeSpec {
            name: "api".into(),
            kind: ProbeKind::Http(crate::experiment::HttpProbe {
                url: "https://127.0.0.1:1/".into(),
                method: "GET".into(),
                headers: vec![],
                expect_status: vec![],
                body_contains: None,
                timeout: Duration::from_secs(1),
                max_latency: None,
                ca_file: Some(missing.clone()),
            }),
            every: Duration::from_secs(1),
            every_during: Duration::from_millis(100),
            watches: None,
        };
        let Err(e) = Checker::build(&spec) else {
            panic!("a missing CA file must not build");
        };
        assert_eq!(
            e.render(),
            format!(
                "probe `api`: cannot read the CA file {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
    }
}
