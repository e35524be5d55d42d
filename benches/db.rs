//! Database drill benchmark (`bench/db.sh`, or `cargo bench --bench db -- [seconds]`), on a
//! real 3-node Patroni + PostgreSQL cluster on 127.0.0.1 started by the tests' own code:
//!
//! 1. the postgres writer's sustained rate and timing at 10ms and 1ms intervals against the
//!    primary: acknowledged rows per second, how late each write started against its fixed-rate
//!    schedule (p50/p99/max), and the commit round trip (p50/p99);
//! 2. one `kill-primary` and one `switchover` drill end to end through the release binary:
//!    wall time, firedrill's CPU (user + system) and peak RSS (GNU time), and the number of
//!    Patroni REST calls it made, counted by a loopback forwarder in front of each member's API.
//!
//! Prints one line per figure; BENCHMARKS.md records them with the machine and its load.

#[path = "../tests/common/mod.rs"]
mod common;

use common::patroni;

use std::process::Command;

use axum::response::IntoResponse;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use firedrill::experiment::model::postgres::{PostgresMode, PostgresProbeSpec};
use firedrill::probe::postgres::PostgresWriter;
use firedrill::timeline::Clock;

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cluster = patroni::PatroniCluster::start(patroni::Options::default())
            .await
            .expect("Patroni, PostgreSQL and etcd are installed (scripts/install-db.sh)");
        for every_ms in [10.0, 1.0] {
            writer(&cluster, every_ms, seconds).await;
        }
        for provider in [
            "{ kill-primary: {} }",
            "{ patroni: { action: switchover } }",
        ] {
            cluster.wait_healthy(Duration::from_secs(60)).await;
            drill(&cluster, provider).await;
        }
    });
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1000.0)
}

/// Run the writer alone for `seconds` at one write per `every_ms`.
async fn writer(cluster: &patroni::PatroniCluster, every_ms: f64, seconds: u64) {
    let spec = PostgresProbeSpec {
        dsn: cluster.dsn(),
        password_env: None,
        password_file: None,
        mode: PostgresMode::Write {
            rate_hz: 1000.0 / every_ms,
            table: "firedrill_bench".into(),
        },
        timeout: Duration::from_secs(1),
    };
    let clock = Clock::start();
    let mut w = PostgresWriter::new(&spec, &format!("bench-{every_ms}ms"), clock).expect("writer");
    w.prepare().await.expect("the drill table can be created");
    let running = patroni::RunningWriter::start(w, clock);
    let samples = running.samples.clone();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let history = running.stop().await;
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let acked = samples.iter().filter(|s| s.ok).count();
    let span = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => b.end.saturating_sub(a.start),
        _ => Duration::ZERO,
    };
    let mut late: Vec<Duration> = samples
        .iter()
        .map(|s| s.start.saturating_sub(s.scheduled))
        .collect();
    late.sort_unstable();
    let mut rtt: Vec<Duration> = samples.iter().map(|s| s.latency()).collect();
    rtt.sort_unstable();
    println!(
        "writer every {every_ms}ms for {seconds}s: {} writes, {acked} acknowledged, {:.0} rows/s (target {:.0}); lateness p50 {} p99 {} max {}; commit p50 {} p99 {}; {} attempts in history",
        samples.len(),
        acked as f64 / span.as_secs_f64().max(1e-9),
        1000.0 / every_ms,
        ms(pct(&late, 0.5)),
        ms(pct(&late, 0.99)),
        ms(late.last().copied().unwrap_or_default()),
        ms(pct(&rtt, 0.5)),
        ms(pct(&rtt, 0.99)),
        history.attempts.len(),
    );
}

/// A loopback HTTP forwarder in front of one Patroni REST API that counts the calls.
async fn counting_forwarder(upstream: String, calls: Arc<AtomicUsize>) -> String {
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (http, upstream, calls) = (http.clone(), upstream.clone(), calls.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let sent = http
                .request(parts.method, format!("{upstream}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) => (r.status(), r.bytes().await.unwrap_or_default()).into_response(),
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// One drill through the release binary under GNU time.
async fn drill(cluster: &patroni::PatroniCluster, provider: &str) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut apis = Vec::new();
    for url in cluster.api_urls() {
        apis.push(counting_forwarder(url, calls.clone()).await);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("db.yaml"),
        patroni::drill_yaml(cluster, &apis, provider),
    )
    .expect("write the drill");
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/firedrill");
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            Command::new("/usr/bin/time")
                .args(["-f", "TIME %e %U %S %M"])
                .arg(bin)
                .args(["run", "--no-live", "--report-dir"])
                .arg(dir.join("reports"))
                .arg(dir.join("db.yaml"))
                .env("FIREDRILL_STATE_DIR", dir.join("state"))
                .output()
                .expect("GNU time runs the release binary (cargo build --release)")
        }
    })
    .await
    .expect("drill");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let Some(t) = stderr.lines().rev().find_map(|l| l.strip_prefix("TIME ")) else {
        panic!("no timing from GNU time:\n{stderr}");
    };
    let f: Vec<f64> = t
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [wall, user, sys, rss_kib] = f[..] else {
        panic!("unexpected GNU time output `{t}`");
    };
    println!(
        "drill `{provider}`: exit {:?}, wall {wall:.2}s, firedrill CPU {:.2}s (user {user:.2} + sys {sys:.2}), peak RSS {:.1} MiB, Patroni REST calls {}",
        out.status.code(),
        user + sys,
        rss_kib / 1024.0,
        calls.load(Ordering::SeqCst)
    );
    if out.status.code() != Some(0) {
        eprintln!("{stderr}");
    }
}
