//! The schedule daemon over a compressed clock: which drills start, which ticks are skipped
//! and why, and the promotion gate between staging and production.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill::report::record::Outcome;
use firedrill::schedule::daemon::{ChildSettings, Clock, Daemon, Decision, Job, Runner, What};
use firedrill::schedule::promotion::RunSummary;
use tokio_util::sync::CancellationToken;

const ENVIRONMENTS: &str = "\
environments:
  staging:
    time-zone: Europe/Berlin
    windows: [\"Mon-Fri 10:30-23:00\"]
  production:
    promote-from: staging
    within: 7d
";

fn drill(name: &str, schedule: &str, environments: &str) -> String {
    format!(
        "name: {name}
environments: {environments}
schedule: \"{schedule}\"
simulation: {{ scenario: sim/shop.yaml }}
targets:
  checkout-pods:
    kubernetes: {{ namespace: shop, selector: app=checkout, workload: deployment/checkout, count: 1 }}
probes:
  checkout-http:
    http: {{ url: \"${{sim.shop.checkout}}/\", expect-status: 200, timeout: 500ms }}
    every: 100ms
    every-during: 10ms
  checkout-ready:
    kubernetes: {{ deployment: shop/checkout, ready: all }}
    every: 500ms
steady-state: [checkout-http, checkout-ready]
faults:
  - pod-kill: {{ target: checkout-pods, grace-period: 0s }}
recovery: {{ objective: 5s, stable-for: 1s, timeout: 1m }}
"
    )
}

fn folder(drills: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("sim")).unwrap();
    std::fs::copy(
        root.join("experiments/sim/shop.yaml"),
        dir.path().join("sim/shop.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("firedrill.yaml"), ENVIRONMENTS).unwrap();
    for (name, schedule, envs) in drills {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            drill(name, schedule, envs),
        )
        .unwrap();
    }
    dir
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A runner that takes a set (virtual) time per environment and fails production the first
/// time it runs there.
/// A daemon over `dir` whose runs are scripted (see [`scripted`]), polling every minute.
fn scripted_daemon(dir: &Path, reports: &Path, clock: Clock, ran: &Arc<Mutex<Vec<Job>>>) -> Daemon {
    Daemon {
        dir: dir.to_path_buf(),
        report_dir: reports.to_path_buf(),
        clock,
        runner: scripted(ran.clone(), clock),
        seed: 1,
        poll: Duration::from_secs(60),
        metrics: None,
        notifier: None,
        store: None,
    }
}

fn scripted(ran: Arc<Mutex<Vec<Job>>>, clock: Clock) -> Runner {
    let prod_runs = Arc::new(AtomicU32::new(0));
    Arc::new(move |job: Job, cancel: CancellationToken| {
        ran.lock().unwrap().push(job.clone());
        let prod_runs = prod_runs.clone();
        Box::pin(async move {
            let (took, outcome) = match (job.experiment.as_str(), job.environment.as_str()) {
                ("every-ten", _) => (Duration::from_secs(15 * 60), Outcome::Passed),
                (_, "production") if prod_runs.fetch_add(1, Ordering::SeqCst) == 0 => {
                    (Duration::from_secs(120), Outcome::Failed)
                }
                (_, "production") => (Duration::from_secs(120), Outcome::Passed),
                _ => (Duration::from_secs(60), Outcome::Passed),
            };
            let outcome = tokio::select! {
                _ = tokio::time::sleep(took) => outcome,
                _ = cancel.cancelled() => Outcome::Aborted,
            };
            Some(RunSummary {
                experiment: job.experiment.clone(),
                environment: job.environment.clone(),
                content_hash: job.content_hash.clone(),
                outcome,
                finished_at: clock.now(),
                ttr: None,
                ttd: None,
                faults_left: vec![],
            })
        }) as futures::future::BoxFuture<'static, Option<RunSummary>>
    })
}

fn summary(log: &[Decision]) -> Vec<String> {
    log.iter()
        .map(|d| match &d.what {
            What::Started { tick } => format!("{} start {}", d.scope, tick.format("%H:%M")),
            What::Finished { outcome } => {
                format!("{} {outcome} {}", d.scope, d.at.format("%H:%M"))
            }
            What::Skipped { tick, reason } => {
                format!("{} skip {} ({reason})", d.scope, tick.format("%H:%M"))
            }
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn three_drills_over_a_compressed_clock() {
    let dir = folder(&[
        // Every 10 minutes but takes 15: every other tick is skipped (concurrency: forbid).
        ("every-ten", "*/10 * * * *", "[local]"),
        // Staging only, Berlin time, inside the Mon-Fri 10:30-23:00 window.
        ("hourly", "0 * * * *", "[staging]"),
        // Staging then production; production waits for a staging pass of the same file.
        ("promoted", "5 * * * *", "[staging, production]"),
    ]);
    let reports = tempfile::tempdir().unwrap();
    let ran = Arc::new(Mutex::new(Vec::new()));
    // Monday 2026-11-23, 09:55 UTC = 10:55 in Berlin.
    let clock = Clock::starting_at(utc("2026-11-23T09:55:00Z"));
    let daemon = scripted_daemon(dir.path(), reports.path(), clock, &ran);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        // Until 13:29:30 UTC.
        tokio::time::sleep(Duration::from_secs(3 * 3600 + 34 * 60 + 30)).await;
        stop.cancel();
    });
    let log = summary(&daemon.run(shutdown).await);
    let only = |scope: &str| -> Vec<String> {
        log.iter()
            .filter(|l| l.starts_with(&format!("{scope} ")))
            .cloned()
            .collect()
    };
    let mut every_ten = vec![];
    for h in 10..=13 {
        for m in [0, 20, 40] {
            every_ten.push(format!("every-ten/local start {h}:{m:02}"));
            if h == 13 && m == 20 {
                // Cancelled by the shutdown at 13:29:30; it reverts and counts as aborted.
                every_ten.push("every-ten/local aborted 13:29".into());
                break;
            }
            every_ten.push(format!(
                "every-ten/local skip {h}:{:02} (still running (concurrency: forbid))",
                m + 10
            ));
            let (fh, fm) = if m + 15 >= 60 {
                (h + 1, m - 45)
            } else {
                (h, m + 15)
            };
            every_ten.push(format!("every-ten/local passed {fh}:{fm:02}"));
        }
    }
    assert_eq!(only("every-ten/local"), every_ten, "{log:#?}");

    // 10:00 UTC is 11:00 in Berlin: inside the window. So are 11, 12 and 13 UTC.
    assert_eq!(
        only("hourly/staging"),
        [
            "hourly/staging start 10:00",
            "hourly/staging passed 10:01",
            "hourly/staging start 11:00",
            "hourly/staging passed 11:01",
            "hourly/staging start 12:00",
            "hourly/staging passed 12:01",
            "hourly/staging start 13:00",
            "hourly/staging passed 13:01",
        ]
    );
    assert_eq!(
        only("promoted/staging").len(),
        8,
        "staging runs every hour: {log:#?}"
    );
    let prod = only("promoted/production");
    assert_eq!(
        prod,
        [
            // No staging pass yet (it runs at the same tick).
            "promoted/production skip 10:05 (held: needs 1 passing run(s) of this version in staging within 7days, has 0)",
            "promoted/production start 11:05",
            "promoted/production failed 11:07",
            // The 11:05 staging pass (11:06) came before the failure: demoted.
            "promoted/production skip 12:05 (held: demoted: failed here at 2026-11-23 11:07 UTC; needs a new pass in staging)",
            "promoted/production start 13:05",
            "promoted/production passed 13:07",
        ],
        "{log:#?}"
    );
    assert!(ran
        .lock()
        .unwrap()
        .iter()
        .all(|j| j.file.starts_with(dir.path())));
}

#[tokio::test(start_paused = true)]
async fn windows_and_reload_without_restart() {
    // Friday 2026-11-27 21:20 UTC = 22:20 in Berlin; the window closes at 23:00 there.
    let dir = folder(&[("hourly", "*/30 * * * *", "[staging]")]);
    let reports = tempfile::tempdir().unwrap();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let clock = Clock::starting_at(utc("2026-11-27T21:20:00Z"));
    let daemon = scripted_daemon(dir.path(), reports.path(), clock, &ran);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let path = dir.path().join("hourly.yaml");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(45 * 60)).await;
        // 22:05 UTC: the drill moves to local, which has no window.
        std::fs::write(&path, drill("hourly", "*/30 * * * *", "[local]")).unwrap();
        tokio::time::sleep(Duration::from_secs(60 * 60)).await;
        stop.cancel();
    });
    let log = summary(&daemon.run(shutdown).await);
    assert_eq!(
        log,
        [
            "hourly/staging start 21:30",
            "hourly/staging passed 21:31",
            "hourly/staging skip 22:00 (outside every window)",
            "hourly/local start 22:30",
            "hourly/local passed 22:31",
            "hourly/local start 23:00",
            "hourly/local passed 23:01",
        ]
    );
}

/// The real runner against the simulated cluster: the daemon starts the drill at its tick,
/// the drill kills a pod, measures recovery and writes its report; the promotion gate then
/// reads that report back from the folder. The drill keeps its journal in the daemon's state
/// directory, where `halt` and `recover` pointed at the daemon find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_drill_on_the_simulated_cluster() {
    let dir = folder(&[("quick", "* * * * *", "[local]")]);
    let reports = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon {
        dir: dir.path().to_path_buf(),
        report_dir: reports.path().to_path_buf(),
        // Two seconds before a minute's tick.
        clock: Clock::starting_at(utc("2026-11-23T09:59:58Z")),
        runner: firedrill::schedule::daemon::drill_runner(ChildSettings {
            binary: env!("CARGO_BIN_EXE_firedrill").into(),
            report_dir: reports.path().to_path_buf(),
            state_dir: state.path().to_path_buf(),
            steady_state_timeout: Duration::from_secs(20),
        }),
        seed: 3,
        poll: Duration::from_secs(1),
        metrics: None,
        notifier: None,
        store: None,
    };
    let shutdown = CancellationToken::new();
    common::stop_when_a_report_appears(
        reports.path().join("quick/local"),
        Duration::from_secs(50),
        shutdown.clone(),
    );
    let log = summary(&daemon.run(shutdown).await);
    assert_eq!(
        log.first().map(String::as_str),
        Some("quick/local start 10:00")
    );
    assert!(
        log.iter().any(|l| l.starts_with("quick/local passed")),
        "{log:#?}"
    );
    let history = firedrill::schedule::promotion::history(reports.path());
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome, Outcome::Passed);
    assert!(history[0].ttr.is_some(), "a pod kill has a time to recover");
    let record = common::only_report(reports.path());
    let journal = firedrill::safety::journal::journal_dir(state.path())
        .join(format!("{}.jsonl", record["run_id"].as_str().unwrap()));
    assert!(
        journal.is_file(),
        "the scheduled drill's journal is not in the daemon's state directory: {}",
        journal.display()
    );
}

/// `firedrill status`: production is held until its staging twin passes, judged from the
/// reports a real run wrote.
#[test]
fn status_shows_last_run_next_run_and_why_held() {
    let dir = folder(&[("gate", "0 12 * * MON-FRI", "[staging, production]")]);
    let reports = tempfile::tempdir().unwrap();
    let firedrill = || std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"));
    let status = || {
        let out = firedrill()
            .arg("status")
            .arg(dir.path())
            .arg("--report-dir")
            .arg(reports.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let row = |text: &str, env: &str| -> String {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(env))
            .unwrap_or_default()
            .to_string()
    };
    let before = status();
    assert!(
        row(&before, "production")
            .contains("needs 1 passing run(s) of this version in staging within"),
        "{before}"
    );
    assert!(
        row(&before, "staging").contains(" UTC"),
        "a next run: {before}"
    );

    let run = firedrill()
        .arg("run")
        .arg(dir.path().join("gate.yaml"))
        .args(["--env", "staging", "--seed", "5", "--report-dir"])
        .arg(reports.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let after = status();
    let staging = row(&after, "staging");
    assert!(staging.contains("passed"), "{after}");
    assert!(staging.contains('s'), "a TTR: {after}");
    let production = row(&after, "production");
    assert!(!production.contains("needs"), "promoted: {after}");
    assert!(
        production.trim_end().ends_with('-'),
        "nothing holds it: {after}"
    );
}
