//! The pgBackRest fixture (tests/common/pgbackrest.rs) supports what a restore drill does: a
//! point-in-time restore, by hand, to a moment in the middle of a write run, holds exactly the
//! rows committed before that moment.
//!
//! Needs PostgreSQL and pgBackRest (scripts/install-db.sh); skipped without them outside CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::pgbackrest::{connect, free_port, from_micros, target_time, BackedUp};

/// A PostgreSQL instance restored under the fixture's scratch root: stopped (immediate) and
/// removed on drop, also when the test panics.
struct Scratch<'a> {
    db: &'a BackedUp,
    /// `<scratch root>/pitr`: the restored data directory is `data` in it.
    dir: PathBuf,
    port: u16,
    postmaster: Option<Child>,
}

impl<'a> Scratch<'a> {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// `pgbackrest restore` of the newest backup into a new scratch directory, recovering to
    /// `target` and promoting there, with archiving off (the copy must not push WAL into the
    /// repository of the original).
    async fn restore(db: &'a BackedUp, target: DateTime<Utc>) -> Scratch<'a> {
        let dir = db.scratch_root().join("pitr");
        let scratch = Scratch {
            db,
            dir,
            port: free_port(),
            postmaster: None,
        };
        // The scratch root belongs to postgres; the restore (as postgres) creates these.
        let out = db
            .pgbackrest(&[
                "restore",
                &format!("--pg1-path={}", scratch.data().display()),
                "--type=time",
                &format!("--target={}", target_time(target)),
                "--target-action=promote",
                "--archive-mode=off",
            ])
            .output()
            .await
            .expect("run pgbackrest restore");
        assert!(
            out.status.success(),
            "pgbackrest restore: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        scratch
    }

    /// Start the restored instance on its own port and socket directory, and wait until it has
    /// recovered to the target and promoted (`pg_is_in_recovery()` false).
    async fn start(&mut self, within: Duration) -> tokio_postgres::Client {
        let log = std::fs::File::create(self.log()).unwrap();
        let child = self
            .db
            .command(self.db.pg_bin().join("postgres"))
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the restored postgres");
        self.postmaster = Some(child);
        let dsn = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        );
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.postmaster.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the restored postgres exited ({status}) before promoting:\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            // Hot standby accepts connections before recovery ends: wait for the promotion.
            if let Ok(c) = connect(&dsn).await {
                if let Ok(row) = c.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    if !row.get::<_, bool>(0) {
                        return c;
                    }
                }
            }
            assert!(
                t0.elapsed() < within,
                "the restored postgres did not promote within {within:?}:\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            // setpriv execs in place: the child is the postmaster.
            let _ = self
                .db
                .command(self.db.pg_bin().join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        remove(&self.dir);
    }
}

fn remove(dir: &Path) {
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backed_up_server_restores_to_a_time_in_the_middle_of_a_write_run() {
    let Some(db) = BackedUp::start().await else {
        return;
    };
    assert_eq!(db.stanza(), "main");

    // Two seconds of writes at 20 Hz, all archived.
    let writer = db.start_writer(20.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = writer.stop().await;
    assert!(
        rows.len() >= 20,
        "the writer committed only {} rows in 2 s at 20 Hz",
        rows.len()
    );
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "rows come back in commit order with rising times"
    );
    db.switch_wal_and_wait_archived().await;

    // The committed rows are on the server, `at` as the writer saw it.
    let on_server: Vec<(i64, DateTime<Utc>)> = db
        .client()
        .await
        .query(
            "SELECT id, (extract(epoch FROM at) * 1000000)::bigint FROM drill_rows ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), from_micros(r.get(1))))
        .collect();
    assert_eq!(on_server, rows);

    // One full backup, stanza ok.
    let info = db.info().await;
    let stanza = &info[0];
    assert_eq!(stanza["name"], "main", "{info:#}");
    assert_eq!(stanza["status"]["code"], 0, "{info:#}");
    assert_eq!(stanza["status"]["message"], "ok", "{info:#}");
    let backups = stanza["backup"].as_array().expect("a backup list");
    assert_eq!(backups.len(), 1, "{info:#}");
    assert_eq!(backups[0]["type"], "full", "{info:#}");
    assert_eq!(backups[0]["error"], false, "{info:#}");

    // What a restore fault damages is where the fixture says it is.
    let segments = db.archived_segments();
    assert!(!segments.is_empty());
    assert!(segments
        .iter()
        .all(|p| p.starts_with(db.repo()) && p.extension().is_some_and(|e| e == "gz")));
    let files = db.backup_files();
    assert!(
        files.len() > 100,
        "a full backup has every file: {}",
        files.len()
    );
    let size = |p: &PathBuf| std::fs::metadata(p).unwrap().len();
    assert!(files.windows(2).all(|w| size(&w[0]) >= size(&w[1])));
    assert!(files[0].starts_with(db.repo().join("backup/main")));
    assert!(db.config().is_file());

    // A point in the middle of the run, after one row committed and before the next one began
    // (recovery compares commit times; `at` precedes a row's commit): the restore holds
    // exactly the rows with `at` at or before it.
    let commits = db.commit_times().await;
    assert_eq!(commits.len(), rows.len());
    for (i, (id, commit)) in commits.iter().enumerate() {
        assert_eq!(*id, rows[i].0);
        assert!(rows[i].1 <= *commit, "row {id}: at after its commit");
        if let Some(next) = rows.get(i + 1) {
            assert!(*commit < next.1, "row {id} committed after the next began");
        }
    }
    let mid = rows.len() / 2;
    let (committed, next) = (commits[mid - 1].1, rows[mid].1);
    let target = committed + (next - committed) / 2;
    let expected: Vec<i64> = rows
        .iter()
        .filter(|(_, at)| *at <= target)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(expected.len(), mid);
    eprintln!(
        "{} rows committed, restoring to {} (after {} of them)",
        rows.len(),
        target_time(target),
        mid
    );

    let t0 = Instant::now();
    let mut scratch = Scratch::restore(&db, target).await;
    let restored_in = t0.elapsed();
    let restored = scratch.start(Duration::from_secs(60)).await;
    eprintln!(
        "restored in {:.1}s, recovered and promoted in {:.1}s more",
        restored_in.as_secs_f64(),
        (t0.elapsed() - restored_in).as_secs_f64()
    );
    let got: Vec<(i64, DateTime<Utc>)> = restored
        .query(
            "SELECT id, (extract(epoch FROM at) * 1000000)::bigint FROM drill_rows ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), from_micros(r.get(1))))
        .collect();
    assert_eq!(
        got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        expected,
        "restored to {} ({} of {} rows expected)",
        target_time(target),
        expected.len(),
        rows.len()
    );
    assert_eq!(got[..], rows[..mid], "the restored rows keep their times");
    drop(restored);
    drop(scratch);
    assert!(!db.dir().join("scratch/pitr").exists());
}
