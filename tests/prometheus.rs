//! The `prometheus` probe against a real Prometheus server (Debian's `prometheus`, installed by
//! scripts/install-prometheus.sh) on 127.0.0.1, scraping a shop the test controls.
//!
//! The shop's `shop_checkouts_total` counter grows at a fixed rate as a function of time, except
//! during an outage: the drill's fault touches a file, and the shop takes no payments from that
//! file's modification time for a known length of time — "the service answers 200 but nobody
//! can pay". The true start and end of the outage are therefore known exactly, and the probe's
//! TTD and TTR are checked against them with a tolerance derived from the rate window, the scrape
//! interval and the probe's interval.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use common::{run_drill, secs};

/// Checkouts per second while payments work.
const RATE: f64 = 50.0;
/// The shop's outage once the fault's file appears.
const OUTAGE: Duration = Duration::from_secs(6);
const SCRAPE: Duration = Duration::from_millis(200);
/// The `rate()` window of the probe's query.
const WINDOW: Duration = Duration::from_secs(2);
/// The probe's interval, steady and during the fault (the prometheus probe's minimum).
const EVERY: Duration = Duration::from_secs(1);
/// The threshold as a fraction of the healthy rate.
const FRACTION: f64 = 0.5;
/// Slack for a busy 2-core machine (a load of 20 is common here): late scrapes, late checks,
/// query latency. Seen: up to 1s beyond the lag; a broken probe misses by far more.
const SLACK: Duration = Duration::from_secs(2);
const TOKEN_VAR: &str = "FIREDRILL_TEST_PROMETHEUS_TOKEN";
const TOKEN: &str = "prom-test-token-5f1c2a";

struct ShopState {
    origin: SystemTime,
    pause_file: PathBuf,
    /// The outage's start (the pause file's mtime), once seen; kept after the file is removed.
    outage: Mutex<Option<SystemTime>>,
}

impl ShopState {
    /// Seconds during which payments worked between the origin and `now`.
    fn paying_seconds(&self, now: SystemTime) -> f64 {
        let since = |t: SystemTime| t.duration_since(self.origin).unwrap_or_default();
        let total = since(now);
        let lost = match *self.outage.lock().unwrap() {
            Some(start) => {
                let (a, b) = (since(start), since(start + OUTAGE));
                total.clamp(a, b) - a
            }
            None => Duration::ZERO,
        };
        (total - lost).as_secs_f64()
    }
}

async fn metrics(State(shop): State<Arc<ShopState>>) -> String {
    let now = SystemTime::now();
    {
        let mut outage = shop.outage.lock().unwrap();
        if outage.is_none() {
            *outage = std::fs::metadata(&shop.pause_file)
                .and_then(|m| m.modified())
                .ok();
        }
    }
    let paid = shop.paying_seconds(now) * RATE;
    format!(
        "# HELP shop_checkouts_total Completed checkouts.\n# TYPE shop_checkouts_total counter\nshop_checkouts_total {paid}\n"
    )
}

/// Starts the shop's metrics endpoint on 127.0.0.1; returns its address and state.
async fn start_shop(dir: &Path) -> (std::net::SocketAddr, Arc<ShopState>) {
    let shop = Arc::new(ShopState {
        origin: SystemTime::now(),
        pause_file: dir.join("payments-broken"),
        outage: Mutex::new(None),
    });
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(shop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shop)
}

/// A Prometheus server for one test; killed when dropped, also when the test panics.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `prometheus` on a free loopback port with a temp data dir, scraping `target` every
/// [`SCRAPE`], and waits until it is ready.
async fn start_prometheus(target: std::net::SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let scrape = format!("{}ms", SCRAPE.as_millis());
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {scrape}\n  scrape_timeout: {scrape}\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}); run scripts/install-prometheus.sh")
        });
    let mut prom = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = prom.child.try_wait() {
            let log = std::fs::read_to_string(prom._dir.path().join("prometheus.log"));
            panic!("prometheus exited ({status}): {}", log.unwrap_or_default());
        }
        let ready = client
            .get(format!("{}/-/ready", prom.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return prom;
        }
        assert!(Instant::now() < deadline, "prometheus not ready after 60s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of an instant query, straight from the API (None: no single value yet).
async fn instant(url: &str, query: &str) -> Option<f64> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let result = body["data"]["result"].as_array()?;
    match result.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

fn checkouts_query() -> String {
    format!(
        "sum(rate(shop_checkouts_total[{}s])) * 60",
        WINDOW.as_secs()
    )
}

fn threshold_per_minute() -> f64 {
    RATE * 60.0 * FRACTION
}

fn drill_yaml(prom: &str, pause: &Path) -> String {
    format!(
        r#"name: checkout-payments
description: payments stop while the shop still answers; checkouts per minute must drop and come back
probes:
  checkouts-per-minute:
    prometheus:
      url: "{prom}"
      query: "{query}"
      expect: ">= {threshold}"
      bearer-token: "${{env:{TOKEN_VAR}}}"
    every: {every}s
    every-during: {every}s
steady-state: [checkouts-per-minute]
faults:
  - command: {{ run: [touch, "{pause}"], revert: [rm, -f, "{pause}"] }}
recovery: {{ objective: 20s, stable-for: 2s, timeout: 60s }}
abort-when:
  - {{ probe: checkouts-per-minute, failing-for: 45s }}
"#,
        query = checkouts_query(),
        threshold = threshold_per_minute(),
        every = EVERY.as_secs(),
        pause = pause.display(),
    )
}

/// `firedrill run` on a drill file, off the async runtime; checks the exit code and returns
/// the report, stdout, stderr and the report folder.
async fn run(
    file: PathBuf,
    args: &'static [&'static str],
    code: i32,
) -> (serde_json::Value, String, String, PathBuf) {
    let (out, reports) = tokio::task::spawn_blocking(move || run_drill(&file, args))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stdout}\n{stderr}");
    (common::only_report(&reports), stdout, stderr, reports)
}

fn wall_ns(t: SystemTime) -> i128 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// `b - a` for wall-clock instants in nanoseconds, as a duration (clamped at zero).
fn since_ns(a: i128, b: i128) -> Duration {
    Duration::from_nanos((b - a).max(0) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_catches_a_drop_in_checkouts_and_the_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (shop_addr, shop) = start_shop(dir.path()).await;
    let prom = start_prometheus(shop_addr).await;

    // Wait until Prometheus has scraped enough for the rate window to show healthy checkouts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while instant(&prom.url, &checkouts_query())
        .await
        .is_none_or(|v| v < threshold_per_minute())
    {
        assert!(
            Instant::now() < deadline,
            "prometheus never saw the shop's checkouts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let file = dir.path().join("checkout-payments.yaml");
    std::fs::write(&file, drill_yaml(&prom.url, &shop.pause_file)).unwrap();
    std::env::set_var(TOKEN_VAR, TOKEN);
    let (record, stdout, stderr, reports) = run(file, &["--no-live"], 0).await;
    assert_eq!(record["outcome"], "passed", "{record:#}");

    // The known truth: payments stopped at the file's mtime and resumed OUTAGE later.
    let start = shop.outage.lock().unwrap().expect("the shop saw the fault");
    let trial = &record["trials"][0];
    let injected = chrono::DateTime::parse_from_rfc3339(trial["injected_at"].as_str().unwrap())
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap() as i128;
    let true_ttd = since_ns(injected, wall_ns(start));
    let true_end = since_ns(injected, wall_ns(start + OUTAGE));

    // rate() over WINDOW falls below FRACTION of the healthy rate (1 - FRACTION) * WINDOW after
    // the stop and climbs back above it FRACTION * WINDOW after the restart, give or take a
    // scrape; the probe then sees it at its next check, up to EVERY later.
    let detect_lag = WINDOW.mul_f64(1.0 - FRACTION);
    let recover_lag = WINDOW.mul_f64(FRACTION);
    let tolerance = SCRAPE * 2 + EVERY + SLACK;
    let verdict = &trial["verdict"];
    let ttd = secs(&verdict["ttd_s"]);
    let ttr_first_pass = secs(&verdict["ttr"]["upper_s"]);
    eprintln!(
        "truth: stop +{true_ttd:?}, back +{true_end:?}; measured TTD {ttd:?}, first pass {ttr_first_pass:?}, tolerance {tolerance:?}"
    );
    let expect_ttd = true_ttd + detect_lag;
    assert!(
        ttd + SCRAPE >= expect_ttd && ttd <= expect_ttd + tolerance,
        "TTD {ttd:?}: expected {expect_ttd:?} (+{tolerance:?})"
    );
    let expect_ttr = true_end + recover_lag;
    assert!(
        ttr_first_pass + SCRAPE >= expect_ttr && ttr_first_pass <= expect_ttr + tolerance,
        "first passing sample at {ttr_first_pass:?}: expected {expect_ttr:?} (+{tolerance:?})"
    );

    // The failing samples say what the probe saw.
    let reasons: Vec<&str> = record["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "probe-changed" && e["ok"] == false)
        .filter_map(|e| e["reason"].as_str())
        .collect();
    let want = format!("(want >= {})", threshold_per_minute());
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("value ") && r.ends_with(&want)),
        "{reasons:?}"
    );
    // The bearer token never leaves the process: not in the output, not in any report file.
    let mut outputs = vec![("stdout".to_string(), stdout), ("stderr".into(), stderr)];
    let mut stack = vec![reports.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                outputs.push((p.display().to_string(), text));
            }
        }
    }
    for (what, text) in &outputs {
        assert!(!text.contains(TOKEN), "the token leaked into {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_errors_and_bad_answers_are_failed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (shop_addr, _shop) = start_shop(dir.path()).await;
    let prom = start_prometheus(shop_addr).await;
    let (_closed, closed_addr) = common::net::refusing_addr();
    let nobody = format!("http://{closed_addr}");
    // Accepts connections (the kernel's backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let two_series = r#"label_replace(vector(1), \"copy\", \"a\", \"\", \"\") or label_replace(vector(2), \"copy\", \"b\", \"\", \"\")"#;
    // Each of these fails in its own way; none of them may pass the steady state.
    let failing = [
        (
            "bad-query",
            &prom.url,
            "sum(rate(shop_checkouts_total[2s]) *",
            "",
        ),
        (
            "no-data",
            &prom.url,
            "sum(rate(no_such_metric_total[2s]))",
            "",
        ),
        ("two-series", &prom.url, two_series, ""),
        ("nan", &prom.url, "vector(0) / vector(0)", ""),
        ("unreachable", &nobody, "vector(1)", ""),
        ("silent", &silent_url, "vector(1)", ""),
    ];
    // And these pass: a POST query, and every series of several meeting the threshold.
    let passing = [
        ("posted", &prom.url, "vector(1)", ", method: POST"),
        ("every-series", &prom.url, two_series, ", series: all"),
    ];
    let mut yaml = String::from("name: bad-answers\nprobes:\n");
    for (name, url, query, extra) in failing.iter().chain(&passing) {
        yaml.push_str(&format!(
            "  {name}:\n    prometheus: {{ url: \"{url}\", query: \"{query}\", expect: \"> 0\", timeout: 1s{extra} }}\n    every: 1s\n"
        ));
    }
    yaml.push_str("faults:\n  - command: { run: [\"true\"] }\nrecovery: { objective: 10s }\n");
    let file = dir.path().join("bad-answers.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (record, ..) = run(file, &["--no-live", "--steady-state-timeout", "4s"], 3).await;
    assert_eq!(record["outcome"], "inconclusive");
    // Nothing was injected: the steady state never held.
    assert!(record["trials"][0]["injected_at"].is_null(), "{record:#}");
    let reason = record["reason"].as_str().unwrap();
    for expected in [
        "bad-query failing: query error (bad_data)",
        "no-data failing: no data",
        "two-series failing: 2 series, expected one",
        "nan failing: value NaN",
        "unreachable failing: connect: ",
        "silent failing: timed out after 1.000s",
    ] {
        assert!(reason.contains(expected), "{expected:?} not in {reason:?}");
    }
    for (name, ..) in passing {
        assert!(!reason.contains(name), "{name} should pass: {reason:?}");
    }
    drop(silent);
}
