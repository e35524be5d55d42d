//! The shared store on a real PostgreSQL (tests/common/pgstore.rs): runners on "different
//! machines" are `firedrill` processes with their own state directory, reports folder and
//! `FIREDRILL_HOST`, sharing only `FIREDRILL_STORE`. Every test also checks that the store's
//! password shows nowhere: not in reports, journals, the spool, stdout/stderr or arguments.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::pgstore::{PgStore, PASSWORD};
use common::{finish, firedrill, wait_for};

/// One machine: its state directory, its reports folder and its name.
struct Machine {
    state: PathBuf,
    reports: PathBuf,
    host: &'static str,
}

impl Machine {
    fn new(root: &Path, host: &'static str) -> Machine {
        let m = Machine {
            state: root.join(format!("{host}-state")),
            reports: root.join(format!("{host}-reports")),
            host,
        };
        std::fs::create_dir_all(&m.state).unwrap();
        m
    }

    fn cmd(&self, store: &PgStore) -> std::process::Command {
        let mut c = firedrill();
        c.env("FIREDRILL_STATE_DIR", &self.state)
            .env("FIREDRILL_HOST", self.host)
            .env("FIREDRILL_STORE", store.dsn());
        c
    }

    fn run(&self, store: &PgStore, file: &Path, args: &[&str]) -> std::process::Command {
        let mut c = self.cmd(store);
        c.arg("run")
            .arg(file)
            .args(["--no-live", "--report-dir"])
            .arg(&self.reports)
            .args(args);
        c
    }

    fn spawn(&self, store: &PgStore, file: &Path, args: &[&str]) -> Child {
        self.run(store, file, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn all_text(out: &Output) -> String {
    let (stdout, stderr) = common::text(out);
    stdout + &stderr
}

/// Every file under `dir`, as one text.
fn files_text(dir: &Path) -> String {
    common::texts_under(dir)
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

fn assert_no_password(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the store's password appears in {what}"
    );
}

/// A drill whose fault writes one line to `log` (who injected) and holds the run for `hold`,
/// with `mark` present until it is reverted. Its probe fails while `mark` exists when
/// `probe_on_mark`, so the drill waits (up to `timeout`) for a revert that only a halt or the
/// end brings.
fn drill(
    dir: &Path,
    name: &str,
    hold: &str,
    probe_on_mark: bool,
    timeout: &str,
) -> (PathBuf, PathBuf, PathBuf) {
    let mark = dir.join(format!("{name}.mark"));
    let log = dir.join(format!("{name}.log"));
    let probe = if probe_on_mark {
        format!("[sh, -c, \"test ! -e '{}'\"]", mark.display())
    } else {
        "[\"true\"]".to_string()
    };
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "name: {name}
environments: [staging, production]
probes:
  healthy:
    command: {{ run: {probe} }}
    every: 100ms
faults:
  - command:
      run: [sh, -c, \"echo injected >> '{log}'; touch '{mark}'; sleep {hold}\"]
      revert: [rm, -f, \"{mark}\"]
recovery: {{ objective: 5s, stable-for: 200ms, timeout: {timeout} }}
",
            log = log.display(),
            mark = mark.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("firedrill.yaml"),
        "environments:\n  staging: {}\n  production:\n    promote-from: staging\n    within: 7d\n",
    )
    .unwrap();
    (file, mark, log)
}

/// What most tests start from: a store, a folder with drill `name` (see [`drill`]) and two
/// machines, `machine-a` and `machine-b`.
struct Scene {
    store: PgStore,
    tmp: tempfile::TempDir,
    file: PathBuf,
    mark: PathBuf,
    log: PathBuf,
    a: Machine,
    b: Machine,
}

fn scene(name: &str, hold: &str, probe_on_mark: bool, timeout: &str) -> Option<Scene> {
    let store = PgStore::start()?;
    let tmp = tempfile::tempdir().unwrap();
    let (file, mark, log) = drill(tmp.path(), name, hold, probe_on_mark, timeout);
    let a = Machine::new(tmp.path(), "machine-a");
    let b = Machine::new(tmp.path(), "machine-b");
    Some(Scene {
        store,
        tmp,
        file,
        mark,
        log,
        a,
        b,
    })
}

/// Machine a runs `file` and dies mid-fault with its watchdog (a pod gone at once): nothing on
/// machine a can revert. Returns when it died.
fn kill_mid_fault(store: &PgStore, a: &Machine, file: &Path, mark: &Path) -> Instant {
    let mut child = a.spawn(store, file, &["--env", "staging"]);
    wait_for("the fault", Duration::from_secs(30), || mark.exists());
    common::kill_watchdogs(&a.state);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(mark.exists(), "nothing on machine a reverted it");
    Instant::now()
}

/// Until a runner that died at `at` has been silent for longer than the store's `STALE`.
fn wait_until_stale(at: Instant) {
    while at.elapsed() < Duration::from_secs(11) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn two_runners_on_two_machines_never_inject_into_one_scope_at_once() {
    let Some(Scene {
        store,
        tmp: _tmp,
        file,
        mark,
        log,
        a,
        b,
    }) = scene("race", "0.8", false, "10s")
    else {
        return;
    };
    let mut won = [0usize; 2];
    for round in 0..50 {
        std::fs::remove_file(&log).ok();
        let ca = a.spawn(&store, &file, &["--env", "staging"]);
        let cb = b.spawn(&store, &file, &["--env", "staging"]);
        let oa = finish(ca, Duration::from_secs(60));
        let ob = finish(cb, Duration::from_secs(60));
        let injected = lines(&log);
        assert_eq!(
            injected.len(),
            1,
            "round {round}: {} runners injected\n--- a\n{}\n--- b\n{}",
            injected.len(),
            all_text(&oa),
            all_text(&ob)
        );
        let (winner, loser, i, host) = if oa.status.code() == Some(0) {
            (&oa, &ob, 0, a.host)
        } else {
            (&ob, &oa, 1, b.host)
        };
        won[i] += 1;
        assert_eq!(
            winner.status.code(),
            Some(0),
            "round {round}: {}\n--- loser\n{}",
            all_text(winner),
            all_text(loser)
        );
        assert_eq!(
            loser.status.code(),
            Some(3),
            "round {round}: {}",
            all_text(loser)
        );
        let said = all_text(loser);
        assert!(
            said.contains("is busy")
                && said.contains("(store)")
                && said.contains(&format!("on {host}")),
            "round {round}: the refusal names the holder and its machine: {said}\n--- winner\n{}",
            all_text(winner)
        );
        assert!(!mark.exists(), "round {round}: the fault was left in place");
        assert_no_password("a runner's output", &said);
    }
    // Each machine won some rounds: the lock is not decided by who is always first.
    eprintln!("machine-a won {}, machine-b won {}", won[0], won[1]);
    assert_eq!(won[0] + won[1], 50);
    assert_eq!(store.query("SELECT count(*) FROM firedrill_runs"), ["50"]);
    // No scope is held once every runner is gone.
    assert_eq!(
        store.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        ["0"]
    );
    assert_no_password("the reports", &files_text(&a.reports));
    assert_no_password("the state directory", &files_text(&a.state));
}

#[test]
fn a_fault_left_by_a_killed_runner_is_recovered_from_the_store_on_another_machine() {
    // The probe fails while the mark is there: machine b's own trial does not recover
    // within 6 s (its fault stays until its end), which says nothing about the store.
    let Some(Scene {
        store,
        tmp: _tmp,
        file,
        mark,
        log: _,
        a,
        b,
    }) = scene("killed", "0", true, "6s")
    else {
        return;
    };
    let killed_at = kill_mid_fault(&store, &a, &file, &mark);
    // The store has the journal: its intent was copied before the fault was injected.
    assert_eq!(
        store.query(
            "SELECT count(*) FROM firedrill_journals WHERE NOT closed AND host = 'machine-a'"
        ),
        ["1"]
    );

    // Right away, machine b cannot tell a dead runner from one that lost the store: it waits.
    let early = b
        .run(&store, &file, &["--env", "staging"])
        .output()
        .unwrap();
    let said = all_text(&early);
    if killed_at.elapsed() < Duration::from_secs(9) {
        assert_eq!(early.status.code(), Some(3), "{said}");
        assert!(
            said.contains("may still be running") && said.contains("machine-a"),
            "{said}"
        );
        assert!(mark.exists(), "a refused run touched the target");
    }

    // After the heartbeat's silence, machine b recovers the fault, then runs its own drill.
    wait_until_stale(killed_at);
    let out = b
        .run(&store, &file, &["--env", "staging"])
        .output()
        .unwrap();
    let said = all_text(&out);
    assert!(
        said.contains("left its journal open in the store") && said.contains("recovering it here"),
        "{said}"
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("reverted command sh"), "{said}");
    assert!(!mark.exists(), "the fault is still in place: {said}");
    assert_eq!(
        store.query("SELECT count(*) FROM firedrill_journals WHERE NOT closed"),
        ["0"],
        "the recovered journal is closed in the store"
    );
    assert_no_password("machine b's output", &said);
    assert_no_password("machine b's state", &files_text(&b.state));
}

#[test]
fn a_store_that_stops_mid_drill_loses_nothing_and_the_next_run_uploads_the_record() {
    let Some(Scene {
        mut store,
        tmp: _tmp,
        file,
        mark,
        log: _,
        a,
        b: _,
    }) = scene("store-down", "3", false, "10s")
    else {
        return;
    };
    let child = a.spawn(&store, &file, &["--env", "staging"]);
    wait_for("the fault", Duration::from_secs(30), || mark.exists());
    store.stop();
    let out = finish(child, Duration::from_secs(60));
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(0), "the drill goes on: {said}");
    assert!(!mark.exists(), "the fault was not reverted: {said}");
    assert!(
        said.contains("waits in"),
        "says where the record waits: {said}"
    );
    let spool = a.state.join("spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 1, "{said}");
    assert_no_password("the spool", &files_text(&spool));
    assert_no_password("the output", &said);

    // While the store is down, a new run does not start, and touches nothing.
    let refused = a
        .run(&store, &file, &["--env", "staging"])
        .output()
        .unwrap();
    let said = all_text(&refused);
    assert_eq!(refused.status.code(), Some(3), "{said}");
    assert!(said.contains("cannot reach the store"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
    assert!(!mark.exists());

    store.restart();
    let out = a
        .run(&store, &file, &["--env", "staging"])
        .output()
        .unwrap();
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("uploaded 1 record(s) spooled"), "{said}");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    assert_eq!(store.query("SELECT count(*) FROM firedrill_runs"), ["2"]);
    // Both runs' journals are closed in the store (the first one's once it was back).
    assert_eq!(
        store.query("SELECT count(*) FROM firedrill_journals WHERE NOT closed"),
        ["0"]
    );
}

#[test]
fn the_stores_halt_stops_a_drill_on_another_machine_and_refuses_new_ones() {
    let Some(Scene {
        store,
        tmp: _tmp,
        file,
        mark,
        log: _,
        a,
        b,
    }) = scene("halted", "0", true, "60s")
    else {
        return;
    };
    let child = a.spawn(&store, &file, &["--env", "staging"]);
    wait_for("the fault", Duration::from_secs(30), || mark.exists());
    // The runner's arguments (what `ps` shows every local user) carry no secret.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("halted.yaml"));
    assert_no_password("the runner's arguments", &String::from_utf8_lossy(&cmdline));
    // Any machine reads who holds what.
    let status = b.cmd(&store).args(["store", "status"]).output().unwrap();
    let said = all_text(&status);
    assert_eq!(status.status.code(), Some(0), "{said}");
    assert!(
        said.contains("held scopes: 1")
            && said.contains("staging/experiment/halted: drill `halted`")
            && said.contains("on machine-a")
            && said.contains("open journals: 1")
            && said.contains("halt: none"),
        "{said}"
    );
    assert_no_password("store status", &said);
    let halted = b
        .cmd(&store)
        .args(["halt", "--reason", "incident 42"])
        .output()
        .unwrap();
    assert_eq!(halted.status.code(), Some(0), "{}", all_text(&halted));
    let at = Instant::now();
    let out = finish(child, Duration::from_secs(30));
    assert!(
        at.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        at.elapsed()
    );
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("incident 42") && said.contains("machine-b"),
        "{said}"
    );
    assert!(!mark.exists(), "the halted drill did not revert");

    let refused = a
        .run(&store, &file, &["--env", "staging"])
        .output()
        .unwrap();
    let said = all_text(&refused);
    assert_eq!(refused.status.code(), Some(3), "{said}");
    assert!(said.contains("incident 42"), "{said}");
    assert!(!mark.exists());

    let status = all_text(&b.cmd(&store).args(["store", "status"]).output().unwrap());
    assert!(
        status.contains("halt: drills are halted")
            && status.contains("held scopes: 0")
            && status.contains("open journals: 0"),
        "{status}"
    );
    let released = b.cmd(&store).args(["halt", "--release"]).output().unwrap();
    assert_eq!(released.status.code(), Some(0));
    assert_eq!(store.query("SELECT count(*) FROM firedrill_halt"), ["0"]);
}

#[test]
fn staging_passes_on_one_machine_and_production_is_promoted_on_another() {
    let Some(store) = PgStore::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (file, mark, _log) = drill(tmp.path(), "promoted", "0", false, "10s");
    let a = Machine::new(tmp.path(), "ci-runner");
    let b = Machine::new(tmp.path(), "prod-cronjob");

    let held = b
        .run(&store, &file, &["--env", "production"])
        .output()
        .unwrap();
    let said = all_text(&held);
    assert_eq!(held.status.code(), Some(3), "{said}");
    assert!(
        said.contains("held in environment `production`") && said.contains("the store"),
        "{said}"
    );
    assert!(!mark.exists());

    let staging = a
        .run(&store, &file, &["--env", "staging"])
        .output()
        .unwrap();
    assert_eq!(staging.status.code(), Some(0), "{}", all_text(&staging));
    // Machine b never saw machine a's reports folder: only the store.
    assert!(!b.reports.exists() || common::reports(&b.reports).is_empty());
    let prod = b
        .run(&store, &file, &["--env", "production"])
        .output()
        .unwrap();
    assert_eq!(prod.status.code(), Some(0), "{}", all_text(&prod));

    // `status` on either machine reads the store: both runs, whatever its reports folder.
    let status = b
        .cmd(&store)
        .args(["status"])
        .arg(tmp.path())
        .arg("--report-dir")
        .arg(tmp.path().join("nowhere"))
        .output()
        .unwrap();
    let said = all_text(&status);
    assert_eq!(status.status.code(), Some(0), "{said}");
    let rows: Vec<&str> = said.lines().filter(|l| l.contains("promoted")).collect();
    assert_eq!(rows.len(), 2, "{said}");
    assert!(rows.iter().all(|r| r.contains("passed")), "{said}");
}

/// 1,000 records with varied drills, environments, dates, outcomes and TTRs, made from one
/// real record. Nine in ten are written as `run` writes them (`report::json`: its key order
/// and layout); every tenth goes through a `serde_json::Value`, whose keys come out in
/// alphabetical order, so the readers' other path (a record they cannot skim) is covered too.
fn thousand_records(seed: &Path, dir: &Path) {
    use firedrill::report::record::{Outcome, RunRecord};
    let seed: RunRecord = serde_json::from_slice(&std::fs::read(seed).unwrap()).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-06-01T08:00:00Z")
        .unwrap()
        .to_utc();
    for i in 0..1000u32 {
        let mut r = seed.clone();
        let exp = format!("drill-{}", i % 7);
        let env = ["staging", "production", "ci"][(i % 3) as usize];
        r.run_id = format!("run-{i:04}");
        r.experiment.name = exp.clone();
        r.environment = env.to_string();
        r.started_at = start + chrono::Duration::minutes(i64::from(i) * 97);
        r.finished_at = r.started_at + chrono::Duration::seconds(40);
        if i % 11 == 0 {
            r.outcome = Outcome::Failed;
        }
        for t in &mut r.trials {
            if let Some(ttr) = t.verdict.as_mut().and_then(|v| v.ttr.as_mut()) {
                let est = 0.5 + f64::from(i % 37) * 0.11;
                ttr.estimate = Duration::from_secs_f64(est);
                ttr.lower = Duration::from_secs_f64(est - 0.05);
                ttr.upper = Duration::from_secs_f64(est + 0.05);
            }
        }
        let mut bytes = firedrill::report::json(&r).unwrap();
        if i % 10 == 0 {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            bytes = serde_json::to_vec_pretty(&v).unwrap();
        }
        let path = dir.join(&exp).join(env).join(format!("run-{i:04}.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn the_same_thousand_records_report_identically_from_files_and_from_the_store() {
    let Some(Scene {
        store,
        tmp,
        file: _,
        mark: _,
        log: _,
        a,
        b: _,
    }) = scene("unused", "0", false, "10s")
    else {
        return;
    };
    // One real record (written by a run without the store) of a trial with impact — its
    // probe fails for 0.4 s, so it has a time to detect and a time to recover — then 1,000
    // made from it.
    let mark = tmp.path().join("seed.mark");
    let file = tmp.path().join("seed.yaml");
    std::fs::write(
        &file,
        format!(
            "name: seed
environments: [staging]
probes:
  healthy:
    command: {{ run: [sh, -c, \"test ! -e '{m}'\"] }}
    every: 50ms
faults:
  - command:
      run: [sh, -c, \"touch '{m}'; sleep 0.4; rm -f '{m}'\"]
      revert: [rm, -f, \"{m}\"]
recovery: {{ objective: 5s, stable-for: 200ms, timeout: 10s }}
",
            m = mark.display()
        ),
    )
    .unwrap();
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", &a.state)
        .arg("run")
        .arg(&file)
        .args(["--no-live", "--env", "staging", "--report-dir"])
        .arg(&a.reports)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let seed = common::only_report(&a.reports);
    assert!(
        seed["trials"][0]["verdict"]["ttr"].is_object(),
        "the seed recovered: {seed}"
    );
    let seed_file = a
        .reports
        .join("seed/staging")
        .join(format!("{}.json", seed["run_id"].as_str().unwrap()));
    let folder = tmp.path().join("thousand");
    thousand_records(&seed_file, &folder);

    let sync = a
        .cmd(&store)
        .args(["store", "sync", "--reports"])
        .arg(&folder)
        .output()
        .unwrap();
    let said = all_text(&sync);
    assert_eq!(sync.status.code(), Some(0), "{said}");
    assert!(said.contains("1000 record(s) uploaded"), "{said}");
    // Idempotent by run id: a second sync stores nothing twice.
    let again = a
        .cmd(&store)
        .args(["store", "sync", "--reports"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(all_text(&again).contains("0 record(s) uploaded, 1000 the store had already"));
    assert_eq!(store.query("SELECT count(*) FROM firedrill_runs"), ["1000"]);
    // What `report` reads is a few hundred bytes a run (under PostgreSQL's 2 kB TOAST
    // threshold: stored inline, never decompressed), whatever the record's layout.
    let longest: usize = store.query("SELECT max(octet_length(lean)) FROM firedrill_runs")[0]
        .parse()
        .unwrap();
    assert!(longest < 2000, "lean text of {longest} bytes");

    for format in ["json", "table", "markdown", "html", "yaml"] {
        let files = firedrill()
            .args([
                "report",
                "--as-of",
                "2026-09-01T00:00:00Z",
                "--format",
                format,
            ])
            .arg(&folder)
            .output()
            .unwrap();
        let stored = a
            .cmd(&store)
            .args([
                "report",
                "--as-of",
                "2026-09-01T00:00:00Z",
                "--format",
                format,
            ])
            .arg(tmp.path().join("no-such-folder"))
            .output()
            .unwrap();
        assert_eq!(files.status.code(), Some(0), "{}", all_text(&files));
        assert_eq!(stored.status.code(), Some(0), "{}", all_text(&stored));
        assert!(files.stdout.len() > 1000, "{format}: {}", all_text(&files));
        if format == "json" {
            // The records carry times to recover: every drill has a fitted trend.
            let drills: serde_json::Value = serde_json::from_slice(&files.stdout).unwrap();
            let drills = drills.as_array().unwrap();
            assert_eq!(drills.len(), 21);
            assert!(
                drills
                    .iter()
                    .all(|d| d["trend"]["runs"].as_u64() >= Some(20)
                        && d["mttr"]["mean_s"].as_f64() > Some(0.5)),
                "{drills:#?}"
            );
        }
        assert_eq!(
            String::from_utf8_lossy(&files.stdout),
            String::from_utf8_lossy(&stored.stdout),
            "{format}: the store's report differs from the folder's"
        );
    }

    // A stored run renders as its record and its views.
    let shown = a
        .cmd(&store)
        .args(["store", "show", "run-0042"])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(record["run_id"], "run-0042");
    let md = a
        .cmd(&store)
        .args(["store", "show", "run-0042", "--format", "markdown"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&md.stdout).contains("drill-0"),
        "{}",
        all_text(&md)
    );

    // Retention: each of the 21 drills keeps its newest 5.
    let gc = a
        .cmd(&store)
        .args(["store", "gc", "--keep-last", "5"])
        .output()
        .unwrap();
    let said = all_text(&gc);
    assert_eq!(gc.status.code(), Some(0), "{said}");
    assert!(said.contains("deleted 895 run(s)"), "{said}");
    assert_eq!(store.query("SELECT count(*) FROM firedrill_runs"), ["105"]);
}

#[test]
fn a_store_that_does_not_answer_refuses_the_run_and_a_password_on_the_command_line_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, mark, _log) = drill(tmp.path(), "unreachable", "0", false, "10s");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = firedrill()
        .env(
            "FIREDRILL_STORE",
            format!("postgres://firedrill:{PASSWORD}@127.0.0.1:{port}/postgres"),
        )
        .arg("run")
        .arg(&file)
        .args(["--no-live", "--env", "staging", "--report-dir"])
        .arg(tmp.path().join("reports"))
        .output()
        .unwrap();
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("cannot reach the store") && said.contains("nothing")
            || said.contains("cannot reach the store"),
        "{said}"
    );
    assert_no_password("the refusal", &said);
    assert!(!mark.exists(), "a refused run touched the target");
    assert!(
        !tmp.path().join("reports").exists()
            || common::reports(&tmp.path().join("reports")).is_empty()
    );

    let out = firedrill()
        .arg("--store")
        .arg(format!(
            "postgres://firedrill:{PASSWORD}@127.0.0.1:{port}/postgres"
        ))
        .arg("report")
        .output()
        .unwrap();
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("process list"), "{said}");
    assert_no_password("the refusal", &said);
}

#[test]
fn firedrill_yaml_names_the_store_by_a_variable_and_a_bad_store_section_is_a_positioned_error() {
    let Some(store) = PgStore::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (file, _mark, _log) = drill(tmp.path(), "configured", "0", false, "10s");
    let envs = tmp.path().join("firedrill.yaml");
    let text = std::fs::read_to_string(&envs).unwrap();
    std::fs::write(
        &envs,
        format!("store: {{ dsn-env: DRILL_STORE_DSN }}\n{text}"),
    )
    .unwrap();
    let a = Machine::new(tmp.path(), "machine-a");
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", &a.state)
        .env_remove("FIREDRILL_STORE")
        .env("DRILL_STORE_DSN", store.dsn())
        .arg("run")
        .arg(&file)
        .args(["--no-live", "--env", "staging", "--report-dir"])
        .arg(&a.reports)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    assert_eq!(
        store.query("SELECT experiment FROM firedrill_runs"),
        ["configured"]
    );

    // A DSN written into the file is not accepted: the file is committed, the DSN has a password.
    std::fs::write(
        &envs,
        format!("store: {{ dsn: \"{}\" }}\n{text}", store.dsn()),
    )
    .unwrap();
    let out = firedrill()
        .args(["validate", "--env", "staging"])
        .arg(&file)
        .output()
        .unwrap();
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("firedrill.yaml:1:") && said.contains("dsn"),
        "{said}"
    );
    assert_no_password("the diagnostic", &said);
}

#[test]
fn a_store_that_hangs_mid_drill_never_holds_the_drill_or_its_revert() {
    let Some(Scene {
        store,
        tmp: _tmp,
        file,
        mark,
        log: _,
        a,
        b: _,
    }) = scene("frozen", "2", false, "10s")
    else {
        return;
    };
    let child = a.spawn(&store, &file, &["--env", "staging"]);
    wait_for("the fault", Duration::from_secs(30), || mark.exists());
    store.freeze();
    let frozen_at = Instant::now();
    let out = finish(child, Duration::from_secs(90));
    let took = frozen_at.elapsed();
    store.thaw();
    let said = all_text(&out);
    eprintln!("the drill ended {took:?} after the store froze");
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!mark.exists(), "the fault was not reverted: {said}");
    assert!(said.contains("waits in"), "the record is spooled: {said}");
    // Every statement is bounded (5 s): the 2 s hold, the journal's last copy, the record's
    // two attempts; never an unbounded wait.
    assert!(took < Duration::from_secs(30), "took {took:?}: {said}");
    assert_no_password("the output", &said);
}

#[test]
fn the_regression_gate_takes_its_baseline_from_the_store() {
    let Some(Scene {
        store,
        tmp: _tmp,
        file,
        mark: _,
        log: _,
        a,
        b,
    }) = scene("baseline", "0", false, "10s")
    else {
        return;
    };
    // Two runs on one machine, the gated run on another that has no reports of its own.
    for _ in 0..2 {
        let out = a
            .run(&store, &file, &["--env", "staging"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    }
    let out = b
        .run(&store, &file, &["--env", "staging", "--baseline", "store"])
        .output()
        .unwrap();
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("regression gate (2 baseline run(s))"),
        "{said}"
    );

    // Without a store, `--baseline store` is an input error, and nothing runs.
    let out = firedrill()
        .env_remove("FIREDRILL_STORE")
        .arg("run")
        .arg(&file)
        .args(["--no-live", "--env", "staging", "--baseline", "store"])
        .output()
        .unwrap();
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("reads the shared store"), "{said}");
}

#[test]
fn recover_on_another_machine_reverts_what_a_killed_runner_left_in_the_store() {
    let Some(Scene {
        store,
        tmp: _tmp,
        file,
        mark,
        log: _,
        a,
        b,
    }) = scene("recovered", "0", true, "60s")
    else {
        return;
    };
    let killed_at = kill_mid_fault(&store, &a, &file, &mark);

    // While the runner could still be alive (its heartbeat is fresh), recover leaves it.
    let early = b.cmd(&store).args(["recover", "--all"]).output().unwrap();
    let said = all_text(&early);
    if killed_at.elapsed() < Duration::from_secs(9) {
        assert!(said.contains("may still be running; skipped"), "{said}");
        assert!(mark.exists());
    }
    wait_until_stale(killed_at);
    let out = b.cmd(&store).args(["recover", "--all"]).output().unwrap();
    let said = all_text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("its journal is open in the store; recovering it here")
            && said.contains("reverted command sh"),
        "{said}"
    );
    assert!(!mark.exists(), "the fault is still in place: {said}");
    assert_eq!(
        store.query("SELECT count(*) FROM firedrill_journals WHERE NOT closed"),
        ["0"]
    );
    // Idempotent: nothing is left to do.
    let again = all_text(&b.cmd(&store).args(["recover", "--all"]).output().unwrap());
    assert!(again.contains("nothing to recover"), "{again}");
}
