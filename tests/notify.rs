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

#[tokio::test]
async fn webhooks_get_start_finish_and_missed_objective() {
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
