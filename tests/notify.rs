//! Webhook notifications against a local server: Slack-compatible and generic JSON bodies,
//! and a dead or failing webhook that is logged and otherwise ignored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use firedrill::report::record::Outcome;
use firedrill::schedule::notify::{Event, Format, Notifier, Webhook};
use firedrill::schedule::promotion::RunSummary;

type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

async fn hook(
    State(seen): State<Seen>,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    seen.lock().unwrap().push((name.clone(), body));
    if name == "broken" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Every log line of this test binary, for the tests that check what a failure logs. One
/// global subscriber, installed before any test logs: a thread-local one races the callsite
/// cache of a test that logs on another thread (its lines were lost).
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || LogSink(sink.clone()))
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
    .clone()
}

#[tokio::test]
async fn webhooks_get_start_finish_and_missed_objective() {
    log();
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/{name}", axum::routing::post(hook))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A port nobody listens on: bound, then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = |p: &str| format!("http://{addr}/{p}");
    let notifier = Notifier::new(vec![
        Webhook {
            url: format!("http://{dead}/gone"),
            format: Format::Json,
        },
        Webhook {
            url: url("broken"),
            format: Format::Json,
        },
        Webhook {
            url: url("slack"),
            format: Format::Slack,
        },
        Webhook {
            url: url("json"),
            format: Format::Json,
        },
    ]);
    notifier
        .send(&Event::Started {
            experiment: "checkout-pod-kill".into(),
            environment: "staging".into(),
        })
        .await;
    let run = RunSummary {
        experiment: "checkout-pod-kill".into(),
        environment: "staging".into(),
        content_hash: "h".into(),
        outcome: Outcome::Failed,
        finished_at: chrono::Utc::now(),
        ttr: Some(Duration::from_millis(42_500)),
        ttd: None,
        faults_left: vec![],
    };
    for e in Event::for_finished(&run) {
        notifier.send(&e).await;
    }
    let seen = seen.lock().unwrap().clone();
    let slack: Vec<&str> = seen
        .iter()
        .filter(|(n, _)| n == "slack")
        .filter_map(|(_, b)| b["text"].as_str())
        .collect();
    assert_eq!(
        slack,
        [
            "firedrill: drill `checkout-pod-kill` started in staging",
            "firedrill: drill `checkout-pod-kill` in staging failed (TTR 42.5s)",
            "firedrill: drill `checkout-pod-kill` in staging missed its recovery objective (TTR 42.5s)",
        ]
    );
    let json: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|(n, _)| n == "json")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(json.len(), 3);
    assert_eq!(json[0]["event"], "started");
    assert_eq!(json[1]["event"], "finished");
    assert_eq!(json[1]["outcome"], "failed");
    assert_eq!(json[1]["ttr_seconds"], 42.5);
    assert_eq!(json[2]["event"], "objective-missed");
    assert_eq!(json[2]["environment"], "staging");
    // The failing webhook got its posts too; its 500s changed nothing for the others.
    assert_eq!(seen.iter().filter(|(n, _)| n == "broken").count(), 3);
}

/// A webhook's URL is a bearer secret: it comes from the environment or a file (never a
/// process argument), and a failing notification's log line names only scheme and host.
#[test]
fn webhook_urls_come_from_the_environment_or_a_file_and_never_reach_a_log() {
    log();
    use clap::Parser;
    use firedrill::schedule::daemon::{webhooks, ScheduleArgs};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ScheduleArgs,
    }
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let token = "T000/B000/webhook-canary-7f3a9c";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hook-url");
    std::fs::write(&file, format!("http://{dead}/json/{token}\n")).unwrap();
    std::env::set_var(
        "FIREDRILL_TEST_SLACK_HOOK",
        format!("http://{dead}/slack/{token}"),
    );
    let cli = Cli::parse_from([
        "schedule",
        "--slack-webhook-env",
        "FIREDRILL_TEST_SLACK_HOOK",
        "--webhook-file",
        file.to_str().unwrap(),
    ]);
    let hooks = webhooks(&cli.args.webhooks).unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].url, format!("http://{dead}/slack/{token}"));
    assert_eq!(
        hooks[1].url,
        format!("http://{dead}/json/{token}"),
        "trimmed"
    );
    assert_eq!(hooks[0].shown(), format!("http://{dead}/***"));

    let unset = Cli::parse_from([
        "schedule",
        "--webhook-env",
        "FIREDRILL_TEST_SURELY_UNSET_HOOK",
    ]);
    let err = webhooks(&unset.args.webhooks).unwrap_err().to_string();
    assert!(err.contains("FIREDRILL_TEST_SURELY_UNSET_HOOK"), "{err}");

    // The log of a notification that cannot be delivered.
    let logged = log();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(Notifier::new(hooks).send(&Event::Started {
        experiment: "x".into(),
        environment: "staging".into(),
    }));
    let log = String::from_utf8_lossy(&logged.lock().unwrap()).into_owned();
    assert!(
        log.contains("cannot notify webhook") && log.contains(&format!("http://{dead}/***")),
        "{log}"
    );
    assert!(
        !log.contains("webhook-canary"),
        "the webhook's secret path was logged: {log}"
    );
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `run` notifies as the daemon does (a CronJob's drill is a `run`): started, then finished
/// with its outcome, to the URL in the environment variable `--webhook-env` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sends_started_and_finished_to_its_webhooks() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/{name}", axum::routing::post(hook))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("drill.yaml");
    std::fs::write(
        &file,
        "name: notified\nprobes:\n  ok:\n    command: { run: [\"true\"] }\n    every: 50ms\nfaults:\n  - command: { run: [\"true\"] }\nrecovery: { objective: 5s, stable-for: 100ms, timeout: 5s }\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let reports = dir.path().join("reports");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
            .env("FIREDRILL_STATE_DIR", state)
            .env("FIREDRILL_TEST_RUN_HOOK", format!("http://{addr}/run"))
            .args([
                "run",
                "--webhook-env",
                "FIREDRILL_TEST_RUN_HOOK",
                "--report-dir",
            ])
            .arg(reports)
            .arg(file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _)| name == "run")
        .map(|(_, body)| body.clone())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["started", "finished"], "{events:?}");
    assert_eq!(events[1]["experiment"], "notified");
    assert_eq!(events[1]["environment"], "local");
    assert_eq!(events[1]["outcome"], "passed");
    server.abort();
}
