//! Restore drills of the two providers besides pgBackRest, against a real PostgreSQL on
//! 127.0.0.1 (tests/common/pgbackrest.rs, started with a plain WAL archive beside the
//! pgBackRest one):
//!
//! - `base-backup`: PostgreSQL's own point-in-time recovery from a plain `pg_basebackup` and
//!   the directory `archive_command` copies segments to. `latest` holds every row the writer
//!   committed, through the four phases, with the truth's data age; a seeded `random-within`
//!   picks the same point twice and holds exactly the rows committed by it; a recovery target
//!   an earlier restore left in the cluster's postgresql.auto.conf (and so in its base backups)
//!   does not count; a base backup that fails `pg_verifybackup` and a hole in the WAL archive
//!   each fail the drill with the reason.
//! - `command`: a script restores the pgBackRest backup and starts it on a port of its own, the
//!   drill validates through the DSN, and the teardown script leaves nothing.
//!
//! Every test also checks that nothing of the restore is left afterwards.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::pgbackrest::{free_port, target_time, BackedUp, Rows};
use common::restore::{assert_scratch_gone, check, is_root, phases, restore, run, time, Drill};
use common::{secs, text};

/// A drill of one `restore` fault: `provider` and `point` as YAML flow, `scratch` unless the
/// provider is `command`, checks in `validate` (lines of YAML at the list's indentation).
fn drill(provider: &str, point: &str, scratch: Option<&Path>, validate: &str) -> String {
    let scratch = scratch
        .map(|s| format!("scratch: \"{}\"", s.display()))
        .unwrap_or_default();
    let run_as = if is_root() && !scratch.is_empty() {
        "run-as: postgres"
    } else {
        ""
    };
    format!(
        r#"name: restore-providers-test
faults:
  - restore:
      provider: {provider}
      recovery-point: {point}
      {scratch}
      {run_as}
      freshness-query: "select max(at) from drill_rows"
      validate:
{validate}
      timeout: 2m
recovery: {{ objective: 10m, timeout: 20m }}
"#
    )
}

/// The `base-backup` provider over the fixture's base backups and plain WAL archive.
fn base_backup_provider(db: &BackedUp) -> String {
    format!(
        "{{ base-backup: {{ backups: \"{}\", wal-archive: \"{}\" }} }}",
        db.base_backups_dir().display(),
        db.wal_archive().display()
    )
}

/// One validation line; `equals` makes it an expectation.
fn check_line(name: &str, query: &str, equals: Option<String>) -> String {
    let expect = equals
        .map(|e| format!(", expect: {{ equals: \"{e}\" }}"))
        .unwrap_or_default();
    format!("        - {{ name: {name}, query: \"{query}\"{expect} }}")
}

const COUNT: &str = "select count(*) from drill_rows";
const MAX_ID: &str = "select max(id) from drill_rows";
const IDS: &str = "select coalesce(string_agg(id::text, ',' order by id), '') from drill_rows";

fn ids_of(r: &serde_json::Value) -> Vec<i64> {
    check(r, "ids")["value"]
        .as_str()
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The phases' names, after checking each bracket and their order.
fn phase_names(r: &serde_json::Value) -> Vec<String> {
    let p = phases(r);
    for (name, lo, hi) in &p {
        assert!(lo <= hi, "{name}: {lo:?} > {hi:?}");
    }
    for w in p.windows(2) {
        assert!(w[0].1 <= w[1].2, "phases out of order: {p:?}");
    }
    p.into_iter().map(|x| x.0).collect()
}

/// The data age is the truth's: from the restore's start to the newest row restored.
fn assert_data_age(r: &serde_json::Value, newest_at: DateTime<Utc>) {
    assert_eq!(time(&r["newest_commit"]), newest_at, "{r}");
    let truth = (time(&r["started_at"]) - newest_at).to_std().unwrap();
    let age = secs(&r["numbers"]["data_age_s"]);
    assert!(
        age.abs_diff(truth) <= Duration::from_millis(1),
        "data age {age:?}, truth {truth:?}"
    );
}

/// When a base backup ended, as the provider reads it: its manifest's modification time.
fn manifest_time(base: &Path) -> DateTime<Utc> {
    std::fs::metadata(base.join("backup_manifest"))
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap()
}

async fn count(db: &BackedUp) -> i64 {
    db.client()
        .await
        .query_one(COUNT, &[])
        .await
        .unwrap()
        .get(0)
}

/// A writer at 20 rows/s for `seconds`, then its rows archived.
async fn written(db: &BackedUp, seconds: f64) -> Rows {
    let w = db.start_writer(20.0);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let rows = w.stop().await;
    db.switch_wal_and_wait_archived().await;
    assert!(rows.len() >= 5, "the writer committed only {}", rows.len());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backup_latest_restores_every_committed_row_through_four_phases() {
    let Some(db) = BackedUp::start_with_wal_copy().await else {
        return;
    };
    // The base backup is taken while the writer runs: rows committed after it ended reach
    // the restore only through the WAL archive.
    let w = db.start_writer(20.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = db.base_backup().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = w.stop().await;
    db.switch_wal_and_wait_archived().await;
    let ended = manifest_time(&base);
    let after = rows.iter().filter(|r| r.1 > ended).count();
    assert!(
        after >= 10 && rows.iter().any(|r| r.1 < ended),
        "{after} of {} rows after the backup ended at {ended}",
        rows.len()
    );
    let (last_id, last_at) = *rows.last().unwrap();
    assert_eq!(count(&db).await, rows.len() as i64);
    let validate = [
        check_line("rows", COUNT, Some(rows.len().to_string())),
        check_line("newest-id", MAX_ID, Some(last_id.to_string())),
    ]
    .join("\n");
    let d = Drill::new(&drill(
        &base_backup_provider(&db),
        "latest",
        Some(&db.scratch_root()),
        &validate,
    ));
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    assert_eq!(report["outcome"], "passed", "{report}");
    let r = restore(&report);
    assert_eq!(r["provider"], "base-backup");
    assert!(r.get("failure").is_none(), "{r}");
    assert_eq!(r["recovery_point"], "latest");
    assert!(r.get("target").is_none(), "{r}");
    assert_eq!(r["backup"]["label"], "1");
    assert_eq!(r["backup"]["kind"], "base");
    assert_eq!(time(&r["backup"]["stopped_at"]), ended);
    assert_eq!(check(r, "rows")["value"], rows.len().to_string());
    assert_eq!(check(r, "newest-id")["value"], last_id.to_string());
    assert!(check(r, "rows")["passed"].as_bool().unwrap());
    assert_eq!(
        phase_names(r),
        ["files-restored", "consistent", "accepting", "validated"]
    );
    assert_data_age(r, last_at);
    // The last transaction replayed is the last row's commit, just after its `at`.
    let replay = time(&r["replay_timestamp"]);
    assert!(
        replay >= last_at && (replay - last_at).num_milliseconds() < 1_000,
        "{replay} vs {last_at}"
    );
    assert!(r["bytes_restored"].as_u64().unwrap() > 1_000_000, "{r}");
    assert!(stdout.contains("restore RTO"), "{stdout}");
    assert_scratch_gone(&db.scratch_root());
    // The backup itself is untouched (the restore copied it).
    assert!(base.join("backup_label").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backup_random_point_is_seeded_and_holds_exactly_the_rows_committed_by_it() {
    let Some(db) = BackedUp::start_with_wal_copy().await else {
        return;
    };
    // Two base backups with writes between them (and before and after): the random point
    // lies between the first's end and the second's, among the writer's commits.
    let w = db.start_writer(20.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = db.base_backup().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = db.base_backup().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = w.stop().await;
    db.switch_wal_and_wait_archived().await;
    let (from, to) = (manifest_time(&first), manifest_time(&second));
    let commits: HashMap<i64, DateTime<Utc>> = db.commit_times().await.into_iter().collect();
    assert_eq!(commits.len(), rows.len());

    let validate = [
        check_line("rows", COUNT, None),
        check_line("ids", IDS, None),
    ]
    .join("\n");
    let yaml = drill(
        &base_backup_provider(&db),
        "{ random-within: 1h }",
        Some(&db.scratch_root()),
        &validate,
    );
    let mut seen = Vec::new();
    for _ in 0..2 {
        let d = Drill::new(&yaml);
        let (out, report) = run(&d, &["--seed", "4242"]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert_eq!(report["outcome"], "passed", "{report}");
        let r = restore(&report).clone();
        assert_scratch_gone(&db.scratch_root());
        seen.push(r);
    }
    let (a, b) = (&seen[0], &seen[1]);
    // The same seed, the same point: recorded identically in both.
    assert_eq!(a["seed"], 4242, "{a}");
    assert_eq!(a["seed"], b["seed"]);
    assert_eq!(a["target"], b["target"]);
    assert_eq!(a["recovery_point"], b["recovery_point"]);
    assert!(
        a["recovery_point"]
            .as_str()
            .unwrap()
            .contains("random within 1h, seed 4242"),
        "{}",
        a["recovery_point"]
    );
    let target = time(&a["target"]);
    assert!(
        from <= target && target <= to,
        "target {target} outside [{from}, {to}]"
    );
    // The backup restored is the newest that ended by the target.
    let label = if target >= to { "2" } else { "1" };
    assert_eq!(a["backup"]["label"], label, "{a}");
    assert_eq!(b["backup"]["label"], label);

    // The truth from the writer's log: the rows whose insert began by the target. A target
    // between a row's `at` and its commit leaves that row out (recovery compares commit
    // times): then either count is right by the writer's log alone.
    let by_at: Vec<i64> = rows
        .iter()
        .filter(|(_, at)| *at <= target)
        .map(|r| r.0)
        .collect();
    let straddling = rows
        .iter()
        .find(|(id, at)| *at <= target && commits[id] > target)
        .map(|r| r.0);
    // Exactly: the rows whose commit is at or before the target.
    let by_commit: Vec<i64> = rows
        .iter()
        .filter(|(id, _)| commits[id] <= target)
        .map(|r| r.0)
        .collect();
    eprintln!(
        "target {} ({} rows by `at`, {} by commit time, straddling row {straddling:?}); backup {label}",
        target_time(target),
        by_at.len(),
        by_commit.len()
    );
    assert!(!by_at.is_empty() && by_at.len() < rows.len());
    for r in [a, b] {
        let ids = ids_of(r);
        assert_eq!(check(r, "rows")["value"], ids.len().to_string());
        match straddling {
            None => assert_eq!(ids, by_at, "target {}", target_time(target)),
            Some(s) => {
                let without: Vec<i64> = by_at.iter().copied().filter(|id| *id != s).collect();
                assert!(
                    ids == by_at || ids == without,
                    "restored {} rows, expected {} or {}",
                    ids.len(),
                    by_at.len(),
                    without.len()
                );
            }
        }
        assert_eq!(ids, by_commit, "target {}", target_time(target));
        let newest = rows.iter().find(|x| x.0 == *ids.last().unwrap()).unwrap();
        assert_data_age(r, newest.1);
        assert_eq!(
            phase_names(r),
            ["files-restored", "consistent", "accepting", "validated"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_backup_of_a_cluster_restored_before_ignores_the_old_recovery_target() {
    let Some(db) = BackedUp::start_with_wal_copy().await else {
        return;
    };
    // What a restore of this cluster by pgBackRest to a point in time leaves behind: its
    // recovery settings in postgresql.auto.conf, which PostgreSQL keeps after promoting and
    // pg_basebackup copies. On the running primary they do nothing.
    let old = Utc::now() - chrono::Duration::hours(1);
    let c = db.client().await;
    for sql in [
        format!(
            "ALTER SYSTEM SET recovery_target_time = '{}'",
            target_time(old)
        ),
        "ALTER SYSTEM SET recovery_target_action = 'pause'".to_string(),
    ] {
        c.batch_execute(&sql).await.unwrap();
    }
    let w = db.start_writer(20.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = db.base_backup().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = w.stop().await;
    db.switch_wal_and_wait_archived().await;
    let auto = std::fs::read_to_string(base.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("recovery_target_time"), "{auto}");
    let (last_id, last_at) = *rows.last().unwrap();
    let validate = [
        check_line("rows", COUNT, Some(rows.len().to_string())),
        check_line("newest-id", MAX_ID, Some(last_id.to_string())),
        check_line("ids", IDS, None),
    ]
    .join("\n");
    // `latest`: everything, not the old target.
    let d = Drill::new(&drill(
        &base_backup_provider(&db),
        "latest",
        Some(&db.scratch_root()),
        &validate,
    ));
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(report["outcome"], "passed", "{report}");
    assert_data_age(restore(&report), last_at);
    assert_scratch_gone(&db.scratch_root());
    // A time of this drill's own: that one, not the old one.
    let k = rows.len() * 3 / 4;
    let commits: HashMap<i64, DateTime<Utc>> = db.commit_times().await.into_iter().collect();
    let target = commits[&rows[k].0] + (rows[k + 1].1 - commits[&rows[k].0]) / 2;
    assert!(manifest_time(&base) < target);
    let d = Drill::new(&drill(
        &base_backup_provider(&db),
        &format!("{{ time: \"{}\" }}", target.to_rfc3339()),
        Some(&db.scratch_root()),
        &[check_line("ids", IDS, None)].join("\n"),
    ));
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let expected: Vec<i64> = rows[..=k].iter().map(|r| r.0).collect();
    assert_eq!(ids_of(restore(&report)), expected);
    assert_scratch_gone(&db.scratch_root());
}

/// Runs a drill expected to fail because of the backup: exit 1, `failed`, every piece of
/// `reason` in the record's failure, nothing left.
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
    eprintln!("failure: {failure}");
    for r in reason {
        assert!(
            failure.contains(r),
            "expected `{r}` in the failure: {failure}"
        );
    }
    assert!(stdout.contains("RESTORE FAILED"), "{stdout}");
    assert_scratch_gone(&db.scratch_root());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_base_backup_and_a_hole_in_the_wal_archive_fail_the_drill() {
    let Some(db) = BackedUp::start_with_wal_copy().await else {
        return;
    };
    written(&db, 1.0).await;
    let validate = check_line("rows", COUNT, None);

    // (i) A flipped byte in the table's own file in the backup: pg_verifybackup's CRC-32C
    // check finds it before anything is restored.
    let corrupt = db.base_backup().await;
    let rel: String = db
        .client()
        .await
        .query_one("select pg_relation_filepath('drill_rows')", &[])
        .await
        .unwrap()
        .get(0);
    let file = corrupt.join(&rel);
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(
        bytes.len() >= 8192,
        "{} holds {} bytes: the checkpoint of the backup should have written the rows",
        file.display(),
        bytes.len()
    );
    for b in &mut bytes[4000..4016] {
        *b ^= 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();
    let report = fails_with(
        &db,
        &drill(
            &base_backup_provider(&db),
            "latest",
            Some(&db.scratch_root()),
            &validate,
        ),
        &["does not verify", &rel],
    )
    .await;
    // Refused before any file was restored.
    assert_eq!(restore(&report)["phases"], serde_json::json!([]));
    assert_eq!(restore(&report)["backup"]["label"], "1");

    // (ii) A good backup, then a segment missing from the archive between its end and the
    // target: replay stops short of the target.
    let good = db.base_backup().await;
    let before: Vec<PathBuf> = db.copied_segments();
    for _ in 0..3 {
        written(&db, 0.5).await;
    }
    let target = Utc::now();
    written(&db, 0.5).await;
    assert!(manifest_time(&good) < target);
    let after: Vec<PathBuf> = db
        .copied_segments()
        .into_iter()
        .filter(|s| !before.contains(s))
        .collect();
    assert!(after.len() >= 4, "{after:?}");
    // The first segment archived after the backup: it holds the first rows after it.
    let hole = &after[0];
    std::fs::remove_file(hole).unwrap();
    let point = format!("{{ time: \"{}\" }}", target.to_rfc3339());
    let report = fails_with(
        &db,
        &drill(
            &base_backup_provider(&db),
            &point,
            Some(&db.scratch_root()),
            &validate,
        ),
        &["recovery"],
    )
    .await;
    let r = restore(&report);
    assert_eq!(r["backup"]["label"], "2", "{r}");
    assert_eq!(time(&r["target"]), target);
    let names = phase_names(r);
    assert_eq!(names.first().map(String::as_str), Some("files-restored"));
    assert!(
        !names.iter().any(|n| n == "accepting" || n == "validated"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_provider_runs_the_restore_validates_through_the_dsn_and_tears_it_down() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    let rows = written(&db, 2.0).await;
    let (last_id, last_at) = *rows.last().unwrap();
    // The command's own directory, beside firedrill's scratch directories (where postgres may
    // write), and its own port.
    let own = db.scratch_root().join("by-command");
    let port = free_port();
    let d = Drill::new("");
    let as_pg = format!(
        r#"as_pg() {{
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- env -i HOME="$DIR" PATH="$PATH" LC_ALL=C.UTF-8 "$@"
  else
    env -i HOME="$DIR" PATH="$PATH" LC_ALL=C.UTF-8 "$@"
  fi
}}
DIR='{dir}'
PORT={port}
PATH='{bin}:/usr/bin:/bin'
cd /
"#,
        dir = own.display(),
        bin = db.pg_bin().display(),
    );
    let restore_sh = d.path().join("restore.sh");
    std::fs::write(
        &restore_sh,
        format!(
            r#"#!/bin/sh
# Restore the pgBackRest backup into $DIR, start it on $PORT, wait until it is promoted.
set -eu
{as_pg}
as_pg mkdir -m 700 "$DIR"
as_pg '{pgbackrest}' --config='{config}' --stanza={stanza} --pg1-path="$DIR/data" \
  --archive-mode=off --type=default --log-level-console=off --log-level-stderr=error restore
as_pg pg_ctl -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 \
  -o "-c port=$PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR -c archive_mode=off" \
  start >/dev/null
i=0
until [ "$(as_pg psql "host=127.0.0.1 port=$PORT user=postgres dbname=postgres sslmode=disable connect_timeout=2" -XAtc 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  i=$((i + 1))
  if [ $i -gt 600 ]; then echo "not promoted within 60s" >&2; exit 1; fi
  sleep 0.1
done
"#,
            pgbackrest = db.pgbackrest_bin().display(),
            config = db.config().display(),
            stanza = db.stanza(),
        ),
    )
    .unwrap();
    let teardown_sh = d.path().join("teardown.sh");
    std::fs::write(
        &teardown_sh,
        format!(
            r#"#!/bin/sh
# Stop what restore.sh started and remove its directory; nothing there is fine.
set -eu
{as_pg}
if [ -f "$DIR/data/postmaster.pid" ]; then
  as_pg pg_ctl -D "$DIR/data" -m immediate -w -t 30 stop >/dev/null || true
fi
rm -rf "$DIR"
"#
        ),
    )
    .unwrap();
    let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable");
    let provider = format!(
        "{{ command: {{ run: [sh, \"{}\"], dsn: \"{dsn}\", teardown: [sh, \"{}\"] }} }}",
        restore_sh.display(),
        teardown_sh.display()
    );
    let validate = [
        check_line("rows", COUNT, Some(rows.len().to_string())),
        check_line("newest-id", MAX_ID, Some(last_id.to_string())),
    ]
    .join("\n");
    std::fs::write(
        d.path().join("drill.yaml"),
        drill(&provider, "latest", None, &validate),
    )
    .unwrap();
    let (out, report) = run(&d, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    assert_eq!(report["outcome"], "passed", "{report}");
    let r = restore(&report);
    assert_eq!(r["provider"], "command");
    assert!(r.get("failure").is_none(), "{r}");
    // No scratch directory or port of firedrill's own: the command's.
    assert!(r.get("scratch").is_none() && r.get("port").is_none(), "{r}");
    assert_eq!(check(r, "rows")["value"], rows.len().to_string());
    assert_eq!(check(r, "newest-id")["value"], last_id.to_string());
    assert_eq!(phase_names(r), ["files-restored", "accepting", "validated"]);
    assert_data_age(r, last_at);
    // The teardown ran: the directory is gone and nothing listens on the port.
    assert!(!own.exists(), "{} is left", own.display());
    assert!(
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(1)
        )
        .is_err(),
        "something still listens on {port}"
    );
    assert_scratch_gone(&db.scratch_root());
}
