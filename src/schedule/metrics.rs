//! Prometheus metrics of scheduled drills (`firedrill schedule --metrics 127.0.0.1:PORT`):
//! drills run by outcome, faults left in place, time to recover and to detect as histograms, the last success and
//! the next scheduled run, each labelled by experiment and environment.
//!
//! A histogram observes each run's mean TTR (and TTD) over its trials: one drill run, one
//! observation.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::promotion::RunSummary;
use crate::report::record::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Drill {
    experiment: String,
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrillOutcome {
    experiment: String,
    environment: String,
    outcome: String,
}

type SecondsHistogram = Family<Drill, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 100ms to about 27 minutes.
    Histogram::new([
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ])
}

pub struct Metrics {
    registry: Mutex<Registry>,
    runs: Family<DrillOutcome, Counter>,
    faults_left: Family<Drill, Counter>,
    ttr: SecondsHistogram,
    ttd: SecondsHistogram,
    last_success: Family<Drill, Gauge<f64, AtomicU64>>,
    next_run: Family<Drill, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("firedrill");
        let runs = Family::<DrillOutcome, Counter>::default();
        let faults_left = Family::<Drill, Counter>::default();
        let ttr: SecondsHistogram = Family::new_with_constructor(seconds_histogram);
        let ttd: SecondsHistogram = Family::new_with_constructor(seconds_histogram);
        let last_success = Family::<Drill, Gauge<f64, AtomicU64>>::default();
        let next_run = Family::<Drill, Gauge<f64, AtomicU64>>::default();
        registry.register("drills", "Drills run, by outcome", runs.clone());
        registry.register(
            "faults_left_in_place",
            "Faults a drill could not revert (after its retries): someone must restore them",
            faults_left.clone(),
        );
        registry.register(
            "time_to_recover_seconds",
            "Time to recover of each drill run (mean over its trials)",
            ttr.clone(),
        );
        registry.register(
            "time_to_detect_seconds",
            "Time to detect of each drill run (mean over its trials)",
            ttd.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the drill last passed (Unix time)",
            last_success.clone(),
        );
        registry.register(
            "next_run_timestamp_seconds",
            "When the drill is next scheduled (Unix time)",
            next_run.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            runs,
            faults_left,
            ttr,
            ttd,
            last_success,
            next_run,
        }
    }

    pub fn record(&self, run: &RunSummary) {
        let drill = Drill {
            experiment: run.experiment.clone(),
            environment: run.environment.clone(),
        };
        self.runs
            .get_or_create(&DrillOutcome {
                experiment: run.experiment.clone(),
                environment: run.environment.clone(),
                outcome: run.outcome.to_string(),
            })
            .inc();
        if !run.faults_left.is_empty() {
            self.faults_left
                .get_or_create(&drill)
                .inc_by(run.faults_left.len() as u64);
        }
        if let Some(t) = run.ttr {
            self.ttr.get_or_create(&drill).observe(t.as_secs_f64());
        }
        if let Some(t) = run.ttd {
            self.ttd.get_or_create(&drill).observe(t.as_secs_f64());
        }
        if run.outcome == Outcome::Passed {
            self.last_success
                .get_or_create(&drill)
                .set(run.finished_at.timestamp() as f64);
        }
    }

    pub fn set_next_run(&self, experiment: &str, environment: &str, at: Option<DateTime<Utc>>) {
        let drill = Drill {
            experiment: experiment.into(),
            environment: environment.into(),
        };
        match at {
            Some(at) => {
                self.next_run
                    .get_or_create(&drill)
                    .set(at.timestamp() as f64);
            }
            None => {
                self.next_run.remove(&drill);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = match self.registry.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown`; returns the bound address.
/// What `schedule --metrics` prints before binding a non-loopback address: the metrics name
/// every drill and environment, and anyone who can reach the port can read them.
pub fn exposure_warning(addr: &SocketAddr) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "WARNING: --metrics {addr} is not a loopback address: every machine that can reach it can read which drills run where and how they fare (no authentication). Use 127.0.0.1:PORT and let the scraper reach it through a tunnel or a sidecar, or firewall the port."
    ))
}

pub async fn serve(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

/// `firedrill run --pushgateway URL`: a one-shot run's metrics, pushed (PUT) to a Prometheus
/// Pushgateway under `job="firedrill"` and the drill's labels. A failure is logged, never
/// returned: the drill's outcome does not depend on it.
pub async fn push(gateway: &str, run: &RunSummary) {
    let metrics = Metrics::new();
    metrics.record(run);
    // The Pushgateway takes the classic text format; drop the OpenMetrics end marker.
    let body: String = metrics
        .encode()
        .lines()
        .filter(|l| *l != "# EOF")
        .map(|l| format!("{l}\n"))
        .collect();
    let url = format!(
        "{}/metrics/job/firedrill/experiment/{}/environment/{}",
        gateway.trim_end_matches('/'),
        run.experiment,
        run.environment
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    match client
        .put(&url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => tracing::info!(url, "metrics pushed"),
        Ok(r) => tracing::warn!(url, status = %r.status(), "pushgateway refused the metrics"),
        Err(e) => tracing::warn!(url, error = %e, "cannot push metrics"),
    }
}
