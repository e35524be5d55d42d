//! Probe engine benchmark (`cargo bench --bench probe`): how many HTTP checks one core can run,
//! and how late a 10ms probe starts its checks. The server runs on its own thread and core so
//! the probe's core measures the probe alone.
//!
//! Prints one line per figure; BENCHMARKS.md records them with the machine.

use std::time::{Duration, Instant};

use firedrill::experiment::{HttpProbe, ProbeKind, ProbeSpec};
use firedrill::probe::{self, Checker, Observation, Pace};
use firedrill::timeline::Clock;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn start_server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("server address");
    format!("http://{addr}/healthz")
}

fn spec(url: &str, every: Duration) -> ProbeSpec {
    ProbeSpec {
        name: "bench".into(),
        kind: ProbeKind::Http(HttpProbe {
            url: url.into(),
            method: "GET".into(),
            headers: vec![],
            expect_status: vec![200],
            body_contains: None,
            timeout: Duration::from_secs(1),
            max_latency: None,
            ca_file: None,
        }),
        every,
        every_during: every,
        watches: None,
    }
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let url = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();

    // 1. Checks on one core: one probe back to back (bound by the loopback round trip), then
    //    64 probes at once on the same single-threaded runtime (bound by the CPU per check).
    for concurrency in [1usize, 64] {
        let (n, failed, secs) = local.block_on(&rt, async {
            let mut tasks = Vec::new();
            let start = Instant::now();
            for _ in 0..concurrency {
                let url = url.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    let mut checker = Checker::build(&spec(&url, Duration::from_millis(1)))
                        .expect("checker")
                        .expect("polling probe");
                    let (mut n, mut failed) = (0u64, 0u64);
                    while start.elapsed() < Duration::from_secs(seconds) {
                        if checker.check().await.is_err() {
                            failed += 1;
                        }
                        n += 1;
                    }
                    (n, failed)
                }));
            }
            let (mut n, mut failed) = (0, 0);
            for t in tasks {
                let (a, b) = t.await.expect("task");
                n += a;
                failed += b;
            }
            (n, failed, start.elapsed().as_secs_f64())
        });
        println!(
            "http checks/s on one core, {concurrency} probe(s): {:.0} ({n} checks, {failed} failed)",
            n as f64 / secs
        );
    }

    // 2. Lateness of a 10ms probe through the real scheduling loop.
    rt.block_on(async {
        let s = spec(&url, Duration::from_millis(10));
        let checker = Checker::build(&s).expect("checker").expect("polling probe");
        let (_pace_tx, pace_rx) = watch::channel(Pace::Steady);
        let (tx, mut rx) = mpsc::channel(1 << 16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(probe::run(
            0,
            checker,
            s.every,
            s.every_during,
            Clock::start(),
            pace_rx,
            tx,
            cancel.clone(),
        ));
        let mut lateness = Vec::new();
        let want = (seconds * 100).max(500) as usize;
        while lateness.len() < want {
            if let Some(Observation::Sample(ps)) = rx.recv().await {
                lateness.push(ps.sample.start.saturating_sub(ps.sample.scheduled));
            }
        }
        cancel.cancel();
        let _ = task.await;
        lateness.sort_unstable();
        let q = |p: f64| lateness[((lateness.len() as f64 * p) as usize).min(lateness.len() - 1)];
        println!(
            "10ms probe lateness over {} checks: p50 {:?}, p99 {:?}, max {:?}",
            lateness.len(),
            q(0.50),
            q(0.99),
            lateness[lateness.len() - 1]
        );
    });
}
