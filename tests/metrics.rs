//! `--metrics`: the exposition a Prometheus server would scrape, read back with a
//! Prometheus text parser.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill::report::record::Outcome;
use firedrill::schedule::metrics::{serve, Metrics};
use firedrill::schedule::promotion::RunSummary;
use prometheus_parse::{Scrape, Value};
use tokio_util::sync::CancellationToken;

fn run(env: &str, outcome: Outcome, ttr_ms: u64, at: i64) -> RunSummary {
    RunSummary {
        experiment: "checkout-pod-kill".into(),
        environment: env.into(),
        content_hash: "h".into(),
        outcome,
        finished_at: DateTime::from_timestamp(at, 0).unwrap(),
        ttr: Some(Duration::from_millis(ttr_ms)),
        ttd: Some(Duration::from_millis(200)),
        faults_left: vec![],
    }
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| s.value.clone())
}

#[tokio::test]
async fn scraped_metrics_parse_and_add_up() {
    let metrics = Arc::new(Metrics::new());
    metrics.record(&run("staging", Outcome::Passed, 1_500, 1_800_000_000));
    metrics.record(&run("staging", Outcome::Passed, 3_000, 1_800_000_600));
    metrics.record(&run("staging", Outcome::Failed, 45_000, 1_800_001_200));
    metrics.set_next_run(
        "checkout-pod-kill",
        "staging",
        Some(DateTime::<Utc>::from_timestamp(1_800_003_600, 0).unwrap()),
    );
    let stop = CancellationToken::new();
    let addr = serve(metrics, "127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop.cancel();
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let drill = [
        ("experiment", "checkout-pod-kill"),
        ("environment", "staging"),
    ];
    let count = |outcome| {
        let labels = [drill[0], drill[1], ("outcome", outcome)];
        match value(&scrape, "firedrill_drills_total", &labels) {
            Some(Value::Counter(v) | Value::Untyped(v)) => v,
            other => panic!("drills_total{{outcome={outcome}}}: {other:?}\n{body}"),
        }
    };
    assert_eq!(count("passed"), 2.0);
    assert_eq!(count("failed"), 1.0);
    match value(&scrape, "firedrill_time_to_recover_seconds", &drill) {
        Some(Value::Histogram(buckets)) => {
            let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
            assert_eq!(at(2.5), Some(1.0), "{body}");
            assert_eq!(at(5.0), Some(2.0));
            assert_eq!(at(60.0), Some(3.0));
        }
        other => panic!("ttr histogram: {other:?}\n{body}"),
    }
    assert!(
        matches!(
            value(&scrape, "firedrill_time_to_detect_seconds", &drill),
            Some(Value::Histogram(_))
        ),
        "{body}"
    );
    let gauge = |name| match value(&scrape, name, &drill) {
        Some(Value::Gauge(v) | Value::Untyped(v)) => v,
        other => panic!("{name}: {other:?}\n{body}"),
    };
    assert_eq!(
        gauge("firedrill_last_success_timestamp_seconds"),
        1_800_000_600.0
    );
    assert_eq!(
        gauge("firedrill_next_run_timestamp_seconds"),
        1_800_003_600.0
    );
}

#[tokio::test]
async fn pushgateway_gets_the_run_in_text_format() {
    use axum::extract::{Path, State};
    type Seen = Arc<std::sync::Mutex<Vec<(String, String)>>>;
    async fn put(State(seen): State<Seen>, Path(rest): Path<String>, body: String) -> &'static str {
        seen.lock().unwrap().push((rest, body));
        ""
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/metrics/{*rest}", axum::routing::put(put))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    firedrill::schedule::metrics::push(
        &format!("http://{addr}/"),
        &run("production", Outcome::Passed, 2_000, 1_800_000_000),
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].0,
        "job/firedrill/experiment/checkout-pod-kill/environment/production"
    );
    let scrape = Scrape::parse(seen[0].1.lines().map(|l| Ok(l.to_string()))).unwrap();
    let drill = [
        ("experiment", "checkout-pod-kill"),
        ("environment", "production"),
    ];
    assert!(matches!(
        value(&scrape, "firedrill_time_to_recover_seconds", &drill),
        Some(Value::Histogram(_))
    ));
    assert!(!seen[0].1.contains("# EOF"));
}
