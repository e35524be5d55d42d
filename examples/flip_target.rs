//! The target of the side-by-side benchmarks in `bench/`: an HTTP server on 127.0.0.1 that
//! fails for exactly known windows and logs the true instants it flipped, so a tool's time to
//! recover can be compared with the truth. It also records when each health check arrived, so
//! check rates and timing jitter are measured the same way for every tool.
//!
//! Run: `cargo run --release --example flip_target` (prints `listening http://127.0.0.1:PORT`).
//!
//! - `GET /healthz`: 200 `ok`, or 503 `down` while a window is open.
//! - `POST /fail?ms=N[&jitter=J]`: open a window now, of N ms plus a uniformly random 0..J ms
//!   (so a window's end does not keep the same phase against a probe's schedule from trial to
//!   trial); the reply comes after the flip.
//! - `GET /flips`: the flip log, one `down <ns>` / `up <ns>` line per flip (wall-clock ns,
//!   stamped right after the state changed).
//! - `GET /arrivals`: wall-clock ns of each `/healthz` request since the last call, then cleared.
//! - `POST /reset`: clear both logs.
//!
//! A window closes on its own thread (a kernel sleep): it may close a little late on a busy
//! machine, but the log says when it really did, and the log is the truth.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

/// At most this many arrivals are kept between two reads (~160 MB), so a forgotten read cannot
/// exhaust memory.
const MAX_ARRIVALS: usize = 20_000_000;

#[derive(Default)]
struct Target {
    down: AtomicBool,
    flips: Mutex<Vec<(&'static str, u128)>>,
    arrivals: Mutex<Vec<u128>>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Target {
    fn flip(&self, down: bool) -> u128 {
        self.down.store(down, Ordering::SeqCst);
        let at = now_ns();
        let mut flips = self.flips.lock().unwrap_or_else(|e| e.into_inner());
        flips.push((if down { "down" } else { "up" }, at));
        at
    }
}

async fn healthz(State(t): State<Arc<Target>>) -> (StatusCode, &'static str) {
    let at = now_ns();
    {
        let mut arrivals = t.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() < MAX_ARRIVALS {
            arrivals.push(at);
        }
    }
    if t.down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn fail(
    State(t): State<Arc<Target>>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    let Some(ms) = q.get("ms").and_then(|v| v.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "want ?ms=N\n".into());
    };
    let jitter = q
        .get("jitter")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let window = Duration::from_millis(ms)
        + Duration::from_secs_f64(jitter.max(0.0) * rand::random::<f64>() / 1e3);
    let at = t.flip(true);
    let t2 = t.clone();
    std::thread::spawn(move || {
        std::thread::sleep(window);
        t2.flip(false);
    });
    (StatusCode::OK, format!("down {at}\n"))
}

async fn flips(State(t): State<Arc<Target>>) -> String {
    let flips = t.flips.lock().unwrap_or_else(|e| e.into_inner());
    flips.iter().fold(String::new(), |mut s, (what, at)| {
        let _ = writeln!(s, "{what} {at}");
        s
    })
}

async fn arrivals(State(t): State<Arc<Target>>) -> String {
    let taken = std::mem::take(&mut *t.arrivals.lock().unwrap_or_else(|e| e.into_inner()));
    taken.iter().fold(String::new(), |mut s, at| {
        let _ = writeln!(s, "{at}");
        s
    })
}

async fn reset(State(t): State<Arc<Target>>) -> &'static str {
    t.flips.lock().unwrap_or_else(|e| e.into_inner()).clear();
    t.arrivals.lock().unwrap_or_else(|e| e.into_inner()).clear();
    "ok\n"
}

fn main() -> anyhow::Result<()> {
    // One thread for the server, so `taskset` can give it one core and the tool under test
    // the other.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/fail", post(fail))
            .route("/flips", get(flips))
            .route("/arrivals", get(arrivals))
            .route("/reset", post(reset))
            .with_state(Arc::new(Target::default()));
        let mut out = std::io::stdout();
        writeln!(out, "listening http://{addr}")?;
        out.flush()?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}
