//! A real PostgreSQL server backed up by pgBackRest, for restore drills: on 127.0.0.1 only,
//! with a free port chosen at run time, everything (data, repository, logs, locks, sockets)
//! under one temp directory, torn down on drop.
//!
//! - One PostgreSQL server (the newest under /usr/lib/postgresql) archives its WAL with
//!   `pgbackrest archive-push` (synchronous, `archive_timeout` off: tests switch WAL
//!   themselves with [`BackedUp::switch_wal_and_wait_archived`]), into a local repository with
//!   one stanza, `main`, that holds a full backup taken before [`BackedUp::start`] returns.
//! - The table `drill_rows (id bigint primary key, at timestamptz, pad text)` exists before the
//!   backup, so a restore to any time after it has the table; [`Writer`] fills it at a steady
//!   rate and remembers what it committed, which is what a restored instance must hold.
//!   `track_commit_timestamp` is on: a time target is compared with commit times, not with
//!   `at` ([`BackedUp::commit_times`]).
//! - The repository is plain files (no bundling, no block incremental, gzip): a test can
//!   truncate a backup file or delete an archived segment, and pgBackRest finds out only when it
//!   reads them (see [`BackedUp::backup_files`], [`BackedUp::archived_segments`]).
//! - For PostgreSQL's own point-in-time recovery, [`BackedUp::start_with_wal_copy`] also copies
//!   every archived segment into a plain directory ([`BackedUp::wal_archive`]), and
//!   [`BackedUp::base_backup`] takes plain-format `pg_basebackup`s of the same cluster.
//! - initdb without fsync (safe: the drill kills processes, never the machine), trust
//!   authentication on 127.0.0.1 and on the unix socket inside the temp directory.
//! - PostgreSQL refuses to run as root, and a repository written by root would not be readable
//!   by the archiver: as root, every daemon and tool runs as `postgres` via `setpriv` (which
//!   execs in place), and the directory is chowned to it with mode 700.
//!
//! When the binaries are missing, [`BackedUp::start`] returns `None` after printing why; with
//! `CI=true` it panics instead, so CI cannot pass by skipping.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::files_under;

const HOST: &str = "127.0.0.1";
const STANZA: &str = "main";

pub struct BackedUp {
    /// The temp root; `None` only while dropping.
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    config: PathBuf,
    repo: PathBuf,
    data: PathBuf,
    port: u16,
    root: bool,
    bins: Binaries,
    /// Ids of `drill_rows` are handed out here, so several writers never collide.
    next_id: Arc<AtomicI64>,
    /// `<dir>/wal`, where `archive_command` also copies each segment
    /// ([`BackedUp::start_with_wal_copy`]); `None` for [`BackedUp::start`].
    wal: Option<PathBuf>,
    /// How many [`BackedUp::base_backup`]s were taken (each goes to `<dir>/base/<n>`).
    base_backups: AtomicUsize,
}

#[derive(Debug, Clone)]
struct Binaries {
    pgbackrest: PathBuf,
    /// The directory of `postgres`, `initdb`, `pg_ctl`.
    pg_bin: PathBuf,
}

fn find_binaries() -> Result<Binaries, String> {
    let pgbackrest = PathBuf::from("/usr/bin/pgbackrest");
    if !pgbackrest.exists() {
        return Err(format!("{} is missing", pgbackrest.display()));
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL server binaries are missing".to_string())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let pg_bin = versions
        .iter()
        .rev()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
        .find(|d| {
            ["postgres", "initdb", "pg_ctl"]
                .iter()
                .all(|b| d.join(b).exists())
        })
        .ok_or("PostgreSQL server binaries are missing")?;
    Ok(Binaries { pgbackrest, pg_bin })
}

/// A port nobody listens on right now (the listener is dropped before PostgreSQL binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((HOST, 0))
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program`'s output, for a panic message.
fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The last lines of a log file, for a panic message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Connect with `dsn` (NoTls), the connection driven by a task of its own.
pub async fn connect(dsn: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A client error with the server's message when there is one (`Display` says only "db error").
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Microseconds since the epoch, as the SQL of this module returns timestamps: the dependency
/// tree has no chrono support in `tokio_postgres`, and an integer loses nothing.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).expect("a timestamp in chrono's range")
}

/// A time as pgBackRest's `--target` (and PostgreSQL's `recovery_target_time`) reads it.
pub fn target_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

impl BackedUp {
    /// initdb, configure WAL archiving through pgBackRest, start PostgreSQL, create the stanza
    /// and `check` it, create `drill_rows`, and take a full backup. `None` when the binaries are
    /// missing outside CI.
    pub async fn start() -> Option<BackedUp> {
        Self::start_opts(false).await
    }

    /// [`BackedUp::start`], with `archive_command` also copying each segment into
    /// [`BackedUp::wal_archive`] (`<dir>/wal`, plain uncompressed files named as PostgreSQL
    /// names them) once pgBackRest has it: the WAL archive of PostgreSQL's own point-in-time
    /// recovery (`restore_command = 'cp <dir>/wal/%f %p'`), for the base backups of
    /// [`BackedUp::base_backup`]. Both archives hold every segment from initdb on.
    pub async fn start_with_wal_copy() -> Option<BackedUp> {
        Self::start_opts(true).await
    }

    async fn start_opts(wal_copy: bool) -> Option<BackedUp> {
        let bins = match find_binaries() {
            Ok(b) => b,
            Err(why) => {
                let msg = format!(
                    "PostgreSQL/pgBackRest not installed ({why}); run scripts/install-db.sh as root"
                );
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{msg}");
                }
                eprintln!("SKIPPED: {msg}");
                return None;
            }
        };
        let t0 = Instant::now();
        let root = is_root();
        // postgres cannot traverse root's home: keep the directory in a world-traversable place.
        let mut tmp = std::env::temp_dir();
        if root && tmp.starts_with("/root") {
            tmp = PathBuf::from("/tmp");
        }
        let tmp = tempfile::Builder::new()
            .prefix("firedrill-pgbackrest-")
            .tempdir_in(&tmp)
            .expect("create a temp dir");
        let dir = tmp.path().to_path_buf();
        for sub in ["run", "repo", "log", "lock", "spool"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Created before the chown below, so it is postgres's (the archiver writes it).
        let wal = wal_copy.then(|| dir.join("wal"));
        if let Some(w) = &wal {
            std::fs::create_dir_all(w).unwrap();
        }
        let port = free_port();
        let config = dir.join("pgbackrest.conf");
        std::fs::write(&config, pgbackrest_conf(&dir, port)).unwrap();
        if root {
            chown_postgres(&dir);
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // From here on a panic drops `db`, which stops whatever was started.
        let db = BackedUp {
            tmp: Some(tmp),
            dir: dir.clone(),
            config,
            repo: dir.join("repo"),
            data: dir.join("data"),
            port,
            root,
            bins,
            next_id: Arc::new(AtomicI64::new(1)),
            wal,
            base_backups: AtomicUsize::new(0),
        };
        let data = db.data.clone();
        let out = db
            .command(db.bins.pg_bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "{}", describe("initdb", &out));
        {
            use std::io::Write;
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .unwrap();
            conf.write_all(db.postgresql_conf().as_bytes()).unwrap();
        }
        // -w: pg_ctl polls until the server accepts connections, within -t seconds.
        let out = db
            .command(db.bins.pg_bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "{}\n--- postgres.log\n{}",
            describe("pg_ctl start", &out),
            tail(&dir.join("postgres.log"), 30)
        );
        db.wait_connectable(Duration::from_secs(30)).await;

        db.pgbackrest_ok(&["stanza-create"]).await;
        // `check` pushes a WAL switch through archive_command and waits for it in the repo.
        db.pgbackrest_ok(&["check"]).await;
        db.client()
            .await
            .batch_execute(
                "CREATE TABLE drill_rows (\
                   id bigint PRIMARY KEY, \
                   at timestamptz NOT NULL DEFAULT clock_timestamp(), \
                   pad text)",
            )
            .await
            .expect("create drill_rows");
        db.backup("full").await;
        eprintln!(
            "pgbackrest fixture ready in {:.1}s under {} (port {})",
            t0.elapsed().as_secs_f64(),
            dir.display(),
            port
        );
        Some(db)
    }

    /// Poll until a TCP connection succeeds (pg_ctl -w already waited; this checks the path
    /// tests use).
    async fn wait_connectable(&self, within: Duration) {
        let t0 = Instant::now();
        loop {
            match connect(&self.dsn()).await {
                Ok(c) if c.simple_query("SELECT 1").await.is_ok() => return,
                Ok(_) => {}
                Err(e) if t0.elapsed() > within => panic!(
                    "postgres not reachable at {} after {within:?}: {e}\n--- postgres.log\n{}",
                    self.dsn(),
                    tail(&self.dir.join("postgres.log"), 30)
                ),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Settings appended to the initdb'd postgresql.conf.
    fn postgresql_conf(&self) -> String {
        // The copy runs only once pgBackRest took the segment: a failed push is retried by the
        // archiver, and the copy then overwrites its earlier self (same name, same bytes).
        let copy = match &self.wal {
            Some(w) => format!(" && cp %p {}/%f", w.display()),
            None => String::new(),
        };
        format!(
            r#"
# firedrill pgbackrest fixture
listen_addresses = '{HOST}'
port = {port}
unix_socket_directories = '{run}'
wal_level = replica
archive_mode = on
archive_command = '{pgbackrest} --config={config} --stanza={STANZA} archive-push %p{copy}'
archive_timeout = 0
# pg_xact_commit_timestamp(): the time a recovery target is compared with (see commit_times).
track_commit_timestamp = on
max_wal_senders = 3
max_connections = 30
shared_buffers = 32MB
"#,
            port = self.port,
            run = self.dir.join("run").display(),
            pgbackrest = self.bins.pgbackrest.display(),
            config = self.config.display(),
        )
    }

    /// `program` as the `postgres` user when running as root (directly otherwise), with a
    /// clean environment: pgBackRest reads `PGBACKREST_*` variables as options and libpq reads
    /// `PG*`, and neither may leak in from the test's environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = if self.root {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(program.as_ref());
            c
        } else {
            Command::new(program.as_ref())
        };
        cmd.env_clear()
            .env("HOME", &self.dir)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.bins.pg_bin.display()),
            )
            .env("LC_ALL", "C.UTF-8")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// `pgbackrest --config=<conf> --stanza=main <args>` as [`BackedUp::command`] runs it.
    pub fn pgbackrest(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.command(&self.bins.pgbackrest);
        cmd.arg(format!("--config={}", self.config.display()))
            .arg(format!("--stanza={STANZA}"))
            .args(args);
        tokio::process::Command::from(cmd)
    }

    /// Run pgBackRest and panic with its output unless it succeeds.
    async fn pgbackrest_ok(&self, args: &[&str]) -> Output {
        let out = self
            .pgbackrest(args)
            .output()
            .await
            .expect("run pgbackrest");
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("pgbackrest {}", args.join(" ")), &out)
        );
        out
    }

    pub fn stanza(&self) -> &str {
        STANZA
    }

    /// The pgbackrest.conf every command of this fixture uses (readable by `postgres`).
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// `repo1-path`.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// The temp root (owned by `postgres` when root, mode 700).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `pg1-path`: the running server's data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The directory of `postgres`, `initdb` and `pg_ctl`.
    pub fn pg_bin(&self) -> &Path {
        &self.bins.pg_bin
    }

    pub fn pgbackrest_bin(&self) -> &Path {
        &self.bins.pgbackrest
    }

    /// `<dir>/scratch`, created on first use and owned by `postgres` (mode 700): where a
    /// scratch restore goes (`pgbackrest restore --pg1-path=<scratch>/...` creates the data
    /// directory itself).
    pub fn scratch_root(&self) -> PathBuf {
        let scratch = self.dir.join("scratch");
        if !scratch.exists() {
            std::fs::create_dir_all(&scratch).unwrap();
            if self.root {
                chown_postgres(&scratch);
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        scratch
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dsn(&self) -> String {
        format!(
            "host={HOST} port={} user=postgres dbname=postgres",
            self.port
        )
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.dsn())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.dsn()))
    }

    /// `pgbackrest backup --type=<kind>` ("full", "diff" or "incr"); panics with pgBackRest's
    /// output unless it succeeds.
    pub async fn backup(&self, kind: &str) {
        assert!(
            ["full", "diff", "incr"].contains(&kind),
            "backup type {kind:?}: full, diff or incr"
        );
        self.pgbackrest_ok(&["backup", &format!("--type={kind}")])
            .await;
    }

    /// `<dir>/wal`: the plain WAL archive `archive_command` copies each segment to. Panics
    /// unless the fixture was started with [`BackedUp::start_with_wal_copy`].
    pub fn wal_archive(&self) -> PathBuf {
        self.wal
            .clone()
            .expect("no plain WAL archive: start the fixture with BackedUp::start_with_wal_copy")
    }

    /// The segments in [`BackedUp::wal_archive`], sorted by name (so by timeline and
    /// position); backup history (`….backup`) and timeline history files are not segments.
    pub fn copied_segments(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.wal_archive())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .collect();
        out.sort();
        out
    }

    /// `<dir>/base`, created on first use and owned by `postgres` (mode 700): each
    /// subdirectory is one plain-format base backup ([`BackedUp::base_backup`]), which is
    /// what the `base-backup` provider's `backups` names.
    pub fn base_backups_dir(&self) -> PathBuf {
        let base = self.dir.join("base");
        if !base.exists() {
            std::fs::create_dir_all(&base).unwrap();
            if self.root {
                chown_postgres(&base);
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        base
    }

    /// `pg_basebackup -Fp -X none --checkpoint=fast --manifest-checksums=CRC32C` into
    /// `<dir>/base/<n>` (n = 1, 2, …), as `postgres`; returns that directory. Without WAL
    /// (`-X none`): pg_basebackup returns once the segment holding the backup's end is
    /// archived, so [`BackedUp::wal_archive`] (and the pgBackRest repository) can replay it.
    /// `backup_manifest`, written last, lists every file with its CRC-32C (what
    /// `pg_verifybackup` checks). Panics with pg_basebackup's output unless it succeeds.
    pub async fn base_backup(&self) -> PathBuf {
        let root = self.base_backups_dir();
        let n = self.base_backups.fetch_add(1, Ordering::SeqCst) + 1;
        let dest = root.join(n.to_string());
        let mut cmd = self.command(self.bins.pg_bin.join("pg_basebackup"));
        cmd.arg("-D")
            .arg(&dest)
            .arg("-d")
            .arg(format!("{} connect_timeout=10", self.dsn()))
            .args([
                "-Fp",
                "-X",
                "none",
                "--checkpoint=fast",
                "--manifest-checksums=CRC32C",
                // As initdb's --no-sync: the drill kills processes, never the machine.
                "--no-sync",
            ]);
        let out = tokio::process::Command::from(cmd)
            .output()
            .await
            .expect("run pg_basebackup");
        assert!(out.status.success(), "{}", describe("pg_basebackup", &out));
        assert!(
            dest.join("backup_manifest").is_file() && dest.join("backup_label").is_file(),
            "pg_basebackup left no manifest or label in {}",
            dest.display()
        );
        dest
    }

    /// Insert rows one at a time in autocommit at `rate_hz` (each ~200 bytes of `pad`, so WAL
    /// grows) until [`Writer::stop`].
    pub fn start_writer(&self, rate_hz: f64) -> Writer {
        assert!(rate_hz > 0.0, "rate_hz must be positive");
        let dsn = self.dsn();
        let next_id = self.next_id.clone();
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let client = connect(&dsn)
                .await
                .map_err(|e| format!("connect: {}", pg_error(&e)))?;
            let insert = client
                .prepare(
                    // `at` goes back as microseconds since the epoch: exact, and chrono-free.
                    "INSERT INTO drill_rows (id, pad) \
                     VALUES ($1, left(repeat(md5($1::bigint::text), 7), 200)) \
                     RETURNING (extract(epoch FROM at) * 1000000)::bigint",
                )
                .await
                .map_err(|e| format!("prepare: {}", pg_error(&e)))?;
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate_hz));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut rows = Vec::new();
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                // Not raced against the cancellation: a row that committed is always recorded.
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let row = client
                    .query_one(&insert, &[&id])
                    .await
                    .map_err(|e| format!("insert id {id}: {}", pg_error(&e)))?;
                rows.push((id, from_micros(row.get(0))));
            }
            Ok::<_, String>(rows)
        });
        Writer { cancel, task }
    }

    /// Every row of `drill_rows` with its commit time, by id: what `recovery_target_time`
    /// compares with. A row's `at` is taken during its insert, before its commit; for a writer
    /// that commits one row after the other, `at[i] < commit[i] < at[i + 1]`, and a target
    /// strictly between `commit[i]` and `at[i + 1]` keeps exactly the rows with `at <= target`.
    pub async fn commit_times(&self) -> Vec<(i64, DateTime<Utc>)> {
        self.client()
            .await
            .query(
                "SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint \
                 FROM drill_rows ORDER BY id",
                &[],
            )
            .await
            .expect("read commit timestamps")
            .iter()
            .map(|r| (r.get(0), from_micros(r.get(1))))
            .collect()
    }

    /// `SELECT pg_switch_wal()`, then poll `pg_stat_archiver` until the segment it closed is
    /// archived (30 s, then a panic with the archiver's state).
    pub async fn switch_wal_and_wait_archived(&self) {
        let c = self.client().await;
        // The segment holding the switch record: pg_walfile_name maps the returned end-of-segment
        // position to it. With nothing written since the last switch the server does not switch,
        // and the name is that of the segment closed before, already archived.
        let segment: String = c
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await
            .expect("pg_switch_wal")
            .get(0);
        let t0 = Instant::now();
        loop {
            let row = c
                .query_one(
                    "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''), \
                            archived_count, failed_count \
                     FROM pg_stat_archiver",
                    &[],
                )
                .await
                .expect("read pg_stat_archiver");
            let archived: String = row.get(0);
            // Same timeline: names of equal length compare as positions.
            if archived.len() == segment.len() && archived >= segment {
                return;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                panic!(
                    "segment {segment} not archived within 30s: last_archived_wal={archived:?} \
                     last_failed_wal={:?} archived_count={} failed_count={}\n--- postgres.log\n{}",
                    row.get::<_, String>(1),
                    row.get::<_, i64>(2),
                    row.get::<_, i64>(3),
                    tail(&self.dir.join("postgres.log"), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Archived WAL segments in the repository, sorted by path (so by timeline and position):
    /// `repo/archive/main/<pg version>-<id>/<16 hex>/<24 hex>-<sha1>.gz`. Backup history files
    /// (`….backup`) and timeline history files (`….history`) are not segments and not listed.
    pub fn archived_segments(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = files_under(&self.repo().join("archive").join(STANZA))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_segment_name)
            })
            .collect();
        out.sort();
        out
    }

    /// The files of the newest backup's `pg_data` in the repository, largest first (then by
    /// path): `repo/backup/main/<label>/pg_data/...`. Only what that backup itself stored: a
    /// diff or incr backup holds the changed files and refers to its prior backup for the rest.
    pub fn backup_files(&self) -> Vec<PathBuf> {
        let Some(label) = self.newest_backup() else {
            return vec![];
        };
        let pg_data = self
            .repo()
            .join("backup")
            .join(STANZA)
            .join(label)
            .join("pg_data");
        let mut files: Vec<(u64, PathBuf)> = files_under(&pg_data)
            .into_iter()
            .map(|p| (std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0), p))
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// The newest backup's label: where pgBackRest's `latest` link points, or else the label
    /// whose own time (a full's, or the part after `_` of a diff/incr) is the largest.
    fn newest_backup(&self) -> Option<String> {
        let backups = self.repo().join("backup").join(STANZA);
        if let Ok(target) = std::fs::read_link(backups.join("latest")) {
            if let Some(label) = target.file_name().and_then(|n| n.to_str()) {
                return Some(label.to_string());
            }
        }
        std::fs::read_dir(&backups)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(['F', 'D', 'I']) && n.as_bytes()[0].is_ascii_digit())
            .max_by_key(|n| n.rsplit('_').next().unwrap_or(n).to_string())
    }

    /// `pgbackrest info --output=json`, parsed: an array with one object per stanza (this
    /// fixture's: `[0]`), its `status.code` 0 and `backup` the list of backups, oldest first.
    pub async fn info(&self) -> serde_json::Value {
        let out = self.pgbackrest_ok(&["info", "--output=json"]).await;
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pgbackrest info is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// pgbackrest.conf: everything under `dir`, one repository of plain files.
fn pgbackrest_conf(dir: &Path, port: u16) -> String {
    format!(
        r#"[global]
repo1-path={repo}
repo1-retention-full=10
# Plain files, one per database file: a test truncates one (both are off by default in 2.45).
repo1-bundle=n
repo1-block=n
log-path={log}
log-level-file=info
lock-path={lock}
spool-path={spool}
process-max=1
start-fast=y

[{STANZA}]
pg1-path={data}
pg1-port={port}
pg1-socket-path={run}
pg1-user=postgres
"#,
        repo = dir.join("repo").display(),
        log = dir.join("log").display(),
        lock = dir.join("lock").display(),
        spool = dir.join("spool").display(),
        data = dir.join("data").display(),
        run = dir.join("run").display(),
    )
}

fn chown_postgres(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "chown -R postgres {} failed (is there a `postgres` user?)",
        path.display()
    );
}

/// `<24 hex>-<40 hex>` with an optional compression extension: an archived WAL segment.
fn is_segment_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("");
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match stem.split_once('-') {
        Some((seg, sum)) => hex(seg, 24) && hex(sum, 40),
        None => false,
    }
}

/// What a [`Writer`] committed: each row's id and `at`, in commit order.
pub type Rows = Vec<(i64, DateTime<Utc>)>;

/// A running [`BackedUp::start_writer`].
pub struct Writer {
    cancel: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<Rows, String>>,
}

impl Writer {
    /// Stop (the insert in flight finishes) and return every row the writer committed, in
    /// commit order: its id and its `at` as `INSERT … RETURNING` gave it. `at` is taken during
    /// the insert, usually well under a millisecond before the commit record's time, which is
    /// what a time target compares with (see [`BackedUp::commit_times`]). Panics if an insert
    /// failed.
    pub async fn stop(self) -> Vec<(i64, DateTime<Utc>)> {
        self.cancel.cancel();
        match self.task.await.expect("the writer task") {
            Ok(rows) => rows,
            Err(e) => panic!("writer failed: {e}"),
        }
    }
}

impl Drop for BackedUp {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // Immediate shutdown: the postmaster stops its backends and archiver at once.
        let _ = self
            .command(self.bins.pg_bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Anything left that names our directory on its command line: an archive-push in
        // flight, a pgbackrest command, a restored instance a test left running.
        let t0 = Instant::now();
        loop {
            let left = processes_naming(&self.dir);
            if left.is_empty() || t0.elapsed() > Duration::from_secs(5) {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(d) = self.tmp.take() {
            let _ = d.close();
        }
    }
}

fn argv_text(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// Live (not zombie) processes other than this one whose command line names `dir`.
fn processes_naming(dir: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let dir = dir.to_string_lossy();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| *p != me)
                .filter(|p| argv_text(*p).is_some_and(|a| a.contains(dir.as_ref())))
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                        s.rfind(')')
                            .and_then(|i| s[i + 1..].split_whitespace().next())
                            .is_some_and(|state| state != "Z")
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}
