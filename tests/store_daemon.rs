//! The schedule daemon with the shared store: its promotion gate is judged from the store's
//! history, and the drills it starts write there. (Its own test binary: the daemon's drills
//! inherit `FIREDRILL_STORE` from this process's environment, which must not leak into
//! other tests.)

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::pgstore::PgStore;
use firedrill::schedule::daemon::{ChildSettings, Clock, Daemon, What};
use tokio_util::sync::CancellationToken;

fn two_seconds_before_a_minute() -> DateTime<Utc> {
    use chrono::{DurationRound, TimeDelta};
    let now = Utc::now();
    now.duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::minutes(1)
        - TimeDelta::seconds(2)
}

fn write_folder(dir: &Path) -> std::path::PathBuf {
    std::fs::write(
        dir.join("firedrill.yaml"),
        "environments:\n  staging: {}\n  production:\n    promote-from: staging\n    within: 7d\n",
    )
    .unwrap();
    let file = dir.join("gated.yaml");
    std::fs::write(
        &file,
        "name: gated
environments: [staging, production]
schedule: \"* * * * *\"
probes:
  always:
    command: { run: [\"true\"] }
    every: 100ms
faults:
  - command: { run: [\"true\"], revert: [\"true\"] }
recovery: { objective: 5s, stable-for: 200ms, timeout: 10s }
",
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_promotes_from_the_stores_history_not_its_reports_folder() {
    let Some(store) = PgStore::start() else {
        return;
    };
    // This process (and so the daemon's drills) uses the store; nothing else runs here.
    std::env::set_var("FIREDRILL_STORE", store.dsn());
    let dir = tempfile::tempdir().unwrap();
    let file = write_folder(dir.path());

    // Staging passed on another machine: its report is in that machine's folder and the store.
    let other = tempfile::tempdir().unwrap();
    let out = common::firedrill()
        .env("FIREDRILL_STATE_DIR", other.path().join("state"))
        .env("FIREDRILL_HOST", "ci-runner")
        .arg("run")
        .arg(&file)
        .args(["--no-live", "--env", "staging", "--report-dir"])
        .arg(other.path().join("reports"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The daemon's reports folder is empty: only the store knows staging passed.
    let reports = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon {
        dir: dir.path().to_path_buf(),
        report_dir: reports.path().to_path_buf(),
        // Two seconds before the next minute's tick, today: the staging pass above is recent.
        clock: Clock::starting_at(two_seconds_before_a_minute()),
        runner: firedrill::schedule::daemon::drill_runner(ChildSettings {
            binary: env!("CARGO_BIN_EXE_firedrill").into(),
            report_dir: reports.path().to_path_buf(),
            state_dir: state.path().to_path_buf(),
            steady_state_timeout: Duration::from_secs(20),
        }),
        seed: 5,
        poll: Duration::from_secs(1),
        metrics: None,
        notifier: None,
        store: firedrill::store::Spec::resolve(None).unwrap(),
    };
    let shutdown = CancellationToken::new();
    common::stop_when_a_report_appears(
        reports.path().join("gated/production"),
        Duration::from_secs(60),
        shutdown.clone(),
    );
    let log = daemon.run(shutdown).await;
    let production: Vec<&What> = log
        .iter()
        .filter(|d| d.scope == "gated/production")
        .map(|d| &d.what)
        .collect();
    assert!(
        matches!(production.first(), Some(What::Started { .. })),
        "production was not started from the store's staging pass: {log:#?}"
    );
    assert!(
        production
            .iter()
            .any(|w| matches!(w, What::Finished { outcome } if outcome.to_string() == "passed")),
        "{log:#?}"
    );
    // Its record is in the store beside the staging run of the other machine.
    let rows = store.query("SELECT environment FROM firedrill_runs ORDER BY environment");
    assert!(
        rows.contains(&"production".to_string()) && rows.contains(&"staging".to_string()),
        "{rows:?}"
    );
}
