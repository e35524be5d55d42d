//! Restore drills against a real PostgreSQL + pgBackRest repository on 127.0.0.1, started by
//! the tests (tests/common/pgbackrest.rs): the rows a restore holds are exactly the rows the
//! writer committed up to the recovery point (counted from the writer's own log), the data age
//! is the truth's, and every broken backup — a truncated file in the repository, a missing WAL
//! segment, a wrong stanza, a check that fails — fails the drill with its reason while the
//! scratch instance is gone afterwards; an unreachable repository is inconclusive; a runner
//! killed mid-restore leaves nothing once `recover` ran.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::pgbackrest::{target_time, BackedUp};
use common::restore::{assert_scratch_gone, check, is_root, phases, restore, run, time, Drill};
use common::{secs, text};

/// A drill file restoring the fixture's stanza with `point` (YAML), checks in `validate`.
fn drill(db: &BackedUp, stanza: &str, point: &str, validate: &str, config: &Path) -> String {
    let run_as = if is_root() { "run-as: postgres" } else { "" };
    format!(
        r#"name: restore-test
faults:
  - restore:
      provider: {{ pgbackrest: {{ stanza: {stanza}, config: "{config}" }} }}
      recovery-point: {point}
      scratch: "{scratch}"
      {run_as}
      freshness-query: "select max(at) from drill_rows"
      validate:
{validate}
      timeout: 2m
recovery: {{ objective: 10m, timeout: 20m }}
"#,
        config = config.display(),
        scratch = db.scratch_root().display(),
    )
}

async fn written(db: &BackedUp, seconds: u64) -> Vec<(i64, DateTime<Utc>)> {
    let w = db.start_writer(20.0);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let rows = w.stop().await;
    db.switch_wal_and_wait_archived().await;
    assert!(
        rows.len() >= 10,
        "the writer committed only {} rows",
        rows.len()
    );
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_restores_every_committed_row_and_reports_its_phases_and_data_age() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    // A full backup taken while the writer inserts: the newest backup, whose end and every
    // row after it come from the archived WAL.
    let w = db.start_writer(20.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.backup("full").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = w.stop().await;
    db.switch_wal_and_wait_archived().await;
    assert!(
        rows.len() >= 20,
        "the writer committed only {} rows",
        rows.len()
    );
    let (last_id, last_at) = *rows.last().unwrap();
    let total: i64 = db
        .client()
        .await
        .query_one("select count(*) from drill_rows", &[])
        .await
        .unwrap()
        .get(0);
    let validate = format!(
        "        - {{ name: rows, query: \"select count(*) from drill_rows\", expect: {{ equals: \"{total}\" }} }}\n        - {{ name: newest-id, query: \"select max(id) from drill_rows\", expect: {{ equals: \"{last_id}\" }} }}"
    );
    let d = Drill::new(&drill(&db, db.stanza(), "latest", &validate, db.config()));
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // The terminal view, for whoever reads the test's output.
    eprintln!("{stdout}");
    assert_eq!(report["outcome"], "passed");
    let r = restore(&report);
    assert_eq!(r["provider"], "pgbackrest");
    assert!(r.get("failure").is_none(), "{r}");
    assert_eq!(check(r, "rows")["value"], total.to_string());
    assert_eq!(check(r, "newest-id")["value"], last_id.to_string());
    // Every phase, in order, each instant inside its bracket.
    let p = phases(r);
    let names: Vec<&str> = p.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        names,
        ["files-restored", "consistent", "accepting", "validated"]
    );
    for w in p.windows(2) {
        assert!(w[0].1 <= w[1].2, "phases out of order: {p:?}");
    }
    for (name, lo, hi) in &p {
        assert!(lo <= hi, "{name}: {lo:?} > {hi:?}");
    }
    // The restore RTO is the trial's time to recover, and the record's MTTR.
    let rto = secs(&r["numbers"]["rto"]["estimate_s"]);
    assert_eq!(rto, p[3].2);
    assert_eq!(
        secs(&report["trials"][0]["verdict"]["ttr"]["estimate_s"]),
        rto
    );
    // Data age: the newest row in the restore is the writer's last, and the age counts from
    // the restore's start to it (microseconds in the record).
    assert_eq!(time(&r["newest_commit"]), last_at);
    let started = time(&r["started_at"]);
    let truth = (started - last_at).to_std().unwrap();
    let age = secs(&r["numbers"]["data_age_s"]);
    let diff = age.abs_diff(truth);
    assert!(
        diff <= Duration::from_millis(1),
        "data age {age:?}, truth {truth:?}"
    );
    // The cross-check: the last replayed commit is the last row's commit, just after its `at`.
    let replay = time(&r["replay_timestamp"]);
    assert!(
        replay >= last_at && (replay - last_at).num_milliseconds() < 1_000,
        "{replay} vs {last_at}"
    );
    assert!(r["bytes_restored"].as_u64().unwrap() > 1_000_000);
    assert!(stdout.contains("restore RTO"), "{stdout}");
    // The newest backup was the one taken during the writes, and rows committed after its
    // end are in the restore (replayed from the archive).
    let info = db.info().await;
    let newest = info[0]["backup"].as_array().unwrap().last().unwrap()["label"].clone();
    assert_eq!(r["backup"]["label"], newest);
    let backup_end = time(&r["backup"]["stopped_at"]);
    assert!(
        rows.iter().any(|(_, at)| *at > backup_end),
        "no row after the backup's end {backup_end}"
    );
    assert_scratch_gone(&db.scratch_root());
    // History reads the restore RTO as the drill's time to recover.
    let history = tokio::task::block_in_place(|| {
        d.cmd()
            .args(["report", "--format", "json"])
            .arg(d.dir.path().join("reports"))
            .output()
            .unwrap()
    });
    assert!(history.status.success(), "{}", text(&history).1);
    let h: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let text_h = h.to_string();
    assert!(text_h.contains("restore-test"), "{text_h}");
    assert!(
        text_h.contains(&format!("{}", rto.as_secs_f64())),
        "the restore RTO {rto:?} is not the history's TTR: {text_h}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_in_time_restores_exactly_the_rows_committed_up_to_it() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    let rows = written(&db, 4).await;
    let commits = db.commit_times().await;
    // A target strictly between one row's commit and the next row's start.
    let k = rows.len() / 2;
    let (_, commit_k) = commits
        .iter()
        .find(|(id, _)| *id == rows[k].0)
        .copied()
        .unwrap();
    let next_at = rows[k + 1].1;
    assert!(commit_k < next_at);
    let target = commit_k + (next_at - commit_k) / 2;
    // The truth, from the writer's own log: every row whose insert began by the target.
    let expected: Vec<i64> = rows
        .iter()
        .filter(|(_, at)| *at <= target)
        .map(|r| r.0)
        .collect();
    assert_eq!(expected.len(), k + 1);
    let validate = format!(
        "        - {{ name: rows, query: \"select count(*) from drill_rows\", expect: {{ equals: \"{}\" }} }}\n        - {{ name: ids, query: \"select string_agg(id::text, ',' order by id) from drill_rows\" }}",
        expected.len()
    );
    let point = format!("{{ time: \"{}\" }}", target.to_rfc3339());
    let d = Drill::new(&drill(&db, db.stanza(), &point, &validate, db.config()));
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{stderr}\ntarget {}",
        target_time(target)
    );
    let r = restore(&report);
    let ids: Vec<i64> = check(r, "ids")["value"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    // Rows written before the fixture's backup come first; the writer's rows follow.
    let restored_writer_rows: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| rows.iter().any(|r| r.0 == *id))
        .collect();
    assert_eq!(restored_writer_rows, expected);
    assert_eq!(time(&r["target"]), target);
    // Data age against the truth: the newest row present is row k.
    let started = time(&r["started_at"]);
    let truth = (started - rows[k].1).to_std().unwrap();
    let age = secs(&r["numbers"]["data_age_s"]);
    let diff = age.abs_diff(truth);
    assert!(
        diff <= Duration::from_millis(1),
        "data age {age:?}, truth {truth:?}"
    );
    assert_scratch_gone(&db.scratch_root());
}

/// Runs a drill expected to fail because of the backup: exit 1, `failed`, the reason in the
/// record and on the terminal, nothing left.
async fn fails_with(db: &BackedUp, yaml: &str, reason: &[&str]) -> serde_json::Value {
    let d = Drill::new(yaml);
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(report["outcome"], "failed", "{report}");
    let failure = restore(&report)["failure"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for r in reason {
        assert!(
            failure.contains(r) && report["reason"].as_str().unwrap().contains(r),
            "expected `{r}` in the failure: {failure}\n{}",
            report["reason"]
        );
    }
    assert!(stdout.contains("RESTORE FAILED"), "{stdout}");
    assert_scratch_gone(&db.scratch_root());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_in_the_repository_fails_the_drill() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    written(&db, 1).await;
    let files = db.backup_files();
    let biggest = files.first().expect("the backup has files");
    let len = std::fs::metadata(biggest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(biggest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let validate = "        - { name: rows, query: \"select count(*) from drill_rows\" }";
    fails_with(
        &db,
        &drill(&db, db.stanza(), "latest", validate, db.config()),
        &["pgbackrest restore failed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wal_segment_before_the_target_fails_the_drill() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    // Several segments after the backup, then a target after all of them.
    for _ in 0..3 {
        written(&db, 1).await;
    }
    let target = Utc::now();
    written(&db, 1).await;
    let segments = db.archived_segments();
    assert!(segments.len() >= 4, "{segments:?}");
    // A segment after the backup's own: the replay must stop there, short of the target.
    let hole = &segments[segments.len() - 3];
    std::fs::remove_file(hole).unwrap();
    let validate = "        - { name: rows, query: \"select count(*) from drill_rows\" }";
    let point = format!("{{ time: \"{}\" }}", target.to_rfc3339());
    fails_with(
        &db,
        &drill(&db, db.stanza(), &point, validate, db.config()),
        &["recovery"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_stanza_and_a_failed_check_fail_the_drill() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    written(&db, 1).await;
    let validate = "        - { name: rows, query: \"select count(*) from drill_rows\" }";
    fails_with(
        &db,
        &drill(&db, "nope", "latest", validate, db.config()),
        &["stanza `nope`", "missing stanza path"],
    )
    .await;
    let impossible =
        "        - { name: rows, query: \"select count(*) from drill_rows\", expect: { at-least: 1000000 } }";
    let report = fails_with(
        &db,
        &drill(&db, db.stanza(), "latest", impossible, db.config()),
        &["validation `rows`", "is less than 1000000"],
    )
    .await;
    // The phases up to the check are still measured.
    let p = phases(restore(&report));
    assert_eq!(p.len(), 3, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_repository_is_inconclusive_and_touches_nothing() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    // An S3 repository whose endpoint refuses connections (a closed loopback port).
    let closed = common::pgbackrest::free_port();
    let conf = db.scratch_root().join("unreachable.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-type=s3\nrepo1-s3-bucket=drills\nrepo1-s3-endpoint=127.0.0.1\nrepo1-storage-port={closed}\nrepo1-s3-region=us-east-1\nrepo1-s3-key=k\nrepo1-s3-key-secret=s\nrepo1-storage-verify-tls=n\nrepo1-path=/repo\nio-timeout=2\ndb-timeout=2\nprotocol-timeout=3\nlog-path={}\nlock-path={}\n",
            db.scratch_root().display(),
            db.scratch_root().display()
        ),
    )
    .unwrap();
    let _ = std::process::Command::new("chmod")
        .arg("644")
        .arg(&conf)
        .status();
    let validate = "        - { name: rows, query: \"select count(*) from drill_rows\" }";
    let d = Drill::new(&drill(&db, db.stanza(), "latest", validate, &conf));
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(report["outcome"], "inconclusive");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("cannot read the pgBackRest repository"),
        "{}",
        report["reason"]
    );
    std::fs::remove_file(&conf).unwrap();
    assert_scratch_gone(&db.scratch_root());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_restore_then_recover_leaves_nothing() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    written(&db, 2).await;
    let validate = "        - { name: rows, query: \"select count(*) from drill_rows\" }";
    let d = Drill::new(&drill(&db, db.stanza(), "latest", validate, db.config()));
    let root = db.scratch_root();
    let state = d.dir.path().join("state");
    let mut child = d
        .cmd()
        .arg("run")
        .arg("--report-dir")
        .arg(d.dir.path().join("reports"))
        .arg(d.dir.path().join("drill.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the scratch instance's files are being written.
    let scratch_data = |root: &Path| {
        std::fs::read_dir(root).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("firedrill-restore-"))
            })
        })
    };
    tokio::task::block_in_place(|| {
        common::wait_for("the scratch directory", Duration::from_secs(60), || {
            scratch_data(&root).is_some_and(|d| {
                d.join("data")
                    .read_dir()
                    .is_ok_and(|mut r| r.next().is_some())
            })
        })
    });
    // The watchdog would tear it down first: this is a test of `recover`.
    common::kill_watchdogs(&state);
    child.kill().unwrap();
    child.wait().unwrap();
    common::kill_watchdogs(&state);
    let out = tokio::task::block_in_place(|| d.cmd().args(["recover", "--all"]).output().unwrap());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_scratch_gone(&root);
    let again =
        tokio::task::block_in_place(|| d.cmd().args(["recover", "--all"]).output().unwrap());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to recover"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}
