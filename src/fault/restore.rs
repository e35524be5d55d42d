//! `restore` fault: restore a backup into a scratch instance, start it, validate it, measure
//! every phase, and always tear it down (the revert).
//!
//! What the drill finds wrong with the backup is the drill's verdict, not an error: a file
//! that fails its checksum, a hole in the WAL archive, a stanza that is not there, a check
//! that does not hold — each is an injection that "succeeded" with [`RestoreRun::failure`]
//! set, so the phases up to the failure are recorded, the scratch instance is torn down by the
//! ordinary revert, and the trial fails (exit 1). What keeps firedrill from finding out — an
//! unreachable repository, no room on the scratch disk, a scratch directory that holds
//! someone else's data — is a [`FaultError`]: inconclusive, nothing created.
//!
//! Layout of the scratch directory (`<scratch>/firedrill-restore-<run>-<n>`, mode 0700, owned
//! by `run-as`): `firedrill-restore.json` (the marker: only a directory with it is ever
//! removed), `data/` (the restored cluster), `pg_hba.conf` (socket: trust — the directory is
//! the run-as user's alone; TCP on 127.0.0.1: the restored roles' own passwords), the server's
//! socket and `postgres.log`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{FaultError, Injection, RevertPlan};
use crate::experiment::model::restore::{RecoveryPoint, RestoreProvider, RestoreSpec};
use crate::platform::bytes_text;
use crate::platform::child::ChildId;
use crate::probe::command::{failure_reason, run_argv_tracked};

/// The marker file: a scratch directory without it is never removed.
pub const MARKER: &str = "firedrill-restore.json";

/// How often the starting instance is asked whether it accepts connections / has promoted.
const POLL: Duration = Duration::from_millis(20);

/// One phase's end, from the restore's start: when polled, the instant lies in
/// `[lower, upper]`; when observed directly, the two are equal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhaseMark {
    pub phase: RestorePhase,
    #[serde(rename = "lower_s", with = "crate::timeline::secs")]
    pub lower: Duration,
    #[serde(rename = "upper_s", with = "crate::timeline::secs")]
    pub upper: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestorePhase {
    /// The backup's files are in place (the restore command exited).
    FilesRestored,
    /// WAL replayed to a consistent state: read-only connections are accepted.
    Consistent,
    /// Recovery ended and the instance was promoted: it accepts writes.
    Accepting,
    /// Every validation passed.
    Validated,
}

impl RestorePhase {
    pub fn describe(self) -> &'static str {
        match self {
            RestorePhase::FilesRestored => "files restored",
            RestorePhase::Consistent => "WAL replayed to consistency",
            RestorePhase::Accepting => "accepting connections",
            RestorePhase::Validated => "validation passed",
        }
    }
}

/// The backup a restore started from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// pgBackRest's label, or the base backup's directory name.
    pub label: String,
    /// `full`, `diff`, `incr` (pgBackRest) or `base` (pg_basebackup).
    pub kind: String,
    /// When the backup ended: the oldest point it can restore.
    pub stopped_at: DateTime<Utc>,
    /// The database's size in the backup, in bytes.
    pub size: u64,
}

/// One validation's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    /// The first value the query returned (`None`: NULL or no row).
    pub value: Option<String>,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one restore did and measured. Offsets count from the restore's start (the
/// injection's `sent_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRun {
    pub provider: String,
    /// The scratch instance's directory and port (none for the `command` provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// For people: `latest`, the time asked for, or the random point and its seed.
    pub recovery_point: String,
    /// The recovery target, when the point is a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupInfo>,
    /// Wall clock at the restore's start: the instant data age and backup age count to.
    pub started_at: DateTime<Utc>,
    pub phases: Vec<PhaseMark>,
    /// Bytes in the restored data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_restored: Option<u64>,
    /// The newest committed timestamp in the data (the `freshness-query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_commit: Option<DateTime<Utc>>,
    /// `pg_last_xact_replay_timestamp()`: the last transaction WAL replay applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// Why the backup did not restore, in one line; `None`: restored and validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl RestoreRun {
    pub fn phase(&self, p: RestorePhase) -> Option<&PhaseMark> {
        self.phases.iter().find(|m| m.phase == p)
    }
}

/// Who the restore runs as when firedrill is root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// Chosen by `prepare`: what `inject` restores.
#[derive(Debug, Clone)]
struct Chosen {
    run_as: Option<RunAs>,
    bin: PathBuf,
    backup: Option<BackupInfo>,
    /// The base backup's directory (`base-backup` provider).
    base: Option<PathBuf>,
    target: Option<DateTime<Utc>>,
    recovery_point: String,
    seed: Option<u64>,
    /// What the repository says is wrong (a missing stanza, no valid backup): the drill
    /// fails without restoring.
    broken: Option<String>,
}

pub struct RestoreFault {
    spec: RestoreSpec,
    /// The scratch instance's own directory (none for `command`).
    dir: Option<PathBuf>,
    run_id: String,
    seed: u64,
    /// Trials drawn so far: each trial's random point has its own seed (`seed + n`), so a
    /// repeated drill restores different points, each reproducible from its record.
    draws: std::sync::atomic::AtomicU64,
    chosen: Mutex<Option<Chosen>>,
}

impl RestoreFault {
    pub fn new(spec: RestoreSpec, run_id: &str, index: usize, seed: u64) -> Self {
        let dir = spec
            .scratch
            .as_ref()
            .filter(|_| !matches!(spec.provider, RestoreProvider::Command { .. }))
            // `plan` has no run yet: the name says where the run's id goes.
            .map(|s| {
                let run = if run_id.is_empty() { "<run>" } else { run_id };
                s.join(format!("firedrill-restore-{run}-{index}"))
            });
        RestoreFault {
            spec,
            dir,
            run_id: run_id.to_string(),
            seed: seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            draws: std::sync::atomic::AtomicU64::new(0),
            chosen: Mutex::new(None),
        }
    }

    pub fn label(&self) -> String {
        format!("restore {}", self.source_name())
    }

    fn source_name(&self) -> String {
        match &self.spec.provider {
            RestoreProvider::Pgbackrest { stanza, .. } => format!("pgbackrest {stanza}"),
            RestoreProvider::BaseBackup { backups, .. } => {
                format!("base-backup {}", backups.display())
            }
            RestoreProvider::Command { run, .. } => {
                format!("command {}", run.first().map(String::as_str).unwrap_or(""))
            }
        }
    }

    pub fn describe(&self) -> String {
        let into = match &self.dir {
            Some(d) => format!(" into {}", d.display()),
            None => String::new(),
        };
        format!(
            "restore {} ({}){into}, start it on 127.0.0.1, validate it ({} check{}{}), then tear it down",
            self.source_name(),
            point_text(&self.spec.recovery_point),
            self.spec.validate.len(),
            if self.spec.validate.len() == 1 { "" } else { "s" },
            if self.spec.amcheck { " and pg_amcheck" } else { "" },
        )
    }

    /// The teardown, known before anything is created.
    pub fn planned_revert(&self) -> RevertPlan {
        match (&self.spec.provider, &self.dir) {
            (RestoreProvider::Command { teardown, .. }, _) => RevertPlan::Command {
                argv: teardown.clone(),
                timeout: self.spec.timeout,
            },
            (_, Some(dir)) => RevertPlan::RestoreTeardown {
                dir: dir.clone(),
                run_id: self.run_id.clone(),
            },
            (_, None) => RevertPlan::Irreversible {
                why: "no scratch directory was set".into(),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Chosen>> {
        self.chosen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything checked before anything is created: the user, the binaries, the scratch
    /// directory, the repository, the recovery point, the disk space.
    pub async fn prepare(&self) -> Result<String, FaultError> {
        let (run_as, bin) = match &self.spec.provider {
            RestoreProvider::Command { .. } => (None, PathBuf::new()),
            _ => (self.run_as()?, self.postgres_bin()?),
        };
        if let Some(dir) = &self.dir {
            check_scratch(dir)?;
        }
        let mut chosen = Chosen {
            run_as,
            bin,
            backup: None,
            base: None,
            target: None,
            recovery_point: point_text(&self.spec.recovery_point),
            seed: None,
            broken: None,
        };
        let backups = match &self.spec.provider {
            RestoreProvider::Pgbackrest { stanza, config } => {
                match self
                    .pgbackrest_backups(stanza, config.as_deref(), &chosen)
                    .await?
                {
                    Ok(b) => b,
                    Err(broken) => {
                        chosen.broken = Some(broken);
                        vec![]
                    }
                }
            }
            RestoreProvider::BaseBackup { backups, .. } => base_backups(backups)?,
            RestoreProvider::Command { .. } => vec![],
        };
        if chosen.broken.is_none() && !matches!(self.spec.provider, RestoreProvider::Command { .. })
        {
            let draw = self
                .draws
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.choose(&backups, Utc::now(), self.seed.wrapping_add(draw)) {
                Ok((i, target, point, seed)) => {
                    let (info, base) = backups[i].clone();
                    chosen.backup = Some(info);
                    chosen.base = base;
                    chosen.target = target;
                    chosen.recovery_point = point;
                    chosen.seed = seed;
                }
                Err(why) => chosen.broken = Some(why),
            }
        }
        if let (Some(b), Some(dir)) = (&chosen.backup, &self.dir) {
            check_space(dir, b.size)?;
        }
        let text = match (&chosen.broken, &chosen.backup) {
            (Some(why), _) => format!("nothing to restore: {why}"),
            (None, Some(b)) => format!(
                "backup {} ({}, ended {}, {}), recovery point {}",
                b.label,
                b.kind,
                b.stopped_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                bytes_text(b.size),
                chosen.recovery_point
            ),
            (None, None) => format!("recovery point {}", chosen.recovery_point),
        };
        *self.lock() = Some(chosen);
        Ok(text)
    }

    /// The user restores and the instance run as: `run-as` (firedrill must be root to switch,
    /// or be that user), else firedrill's own user, which must not be root.
    fn run_as(&self) -> Result<Option<RunAs>, FaultError> {
        let euid = nix::unistd::geteuid();
        let Some(name) = &self.spec.run_as else {
            if euid.is_root() {
                return Err(FaultError::inject(
                    "PostgreSQL refuses to run as root: set `run-as: postgres` (the user that owns the database's files)",
                ));
            }
            return Ok(None);
        };
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| FaultError::inject_by(format!("cannot look up user `{name}`"), e))?
            .ok_or_else(|| {
                FaultError::inject(format!("`run-as`: there is no user `{name}` on this host"))
            })?;
        if user.uid == euid {
            return Ok(None);
        }
        if !euid.is_root() {
            return Err(FaultError::inject(format!(
                "`run-as: {name}` needs firedrill to run as root or as {name}"
            )));
        }
        if user.uid.is_root() {
            return Err(FaultError::inject(
                "`run-as` may not be root: PostgreSQL refuses to run as root",
            ));
        }
        Ok(Some(RunAs {
            name: name.clone(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }

    fn postgres_bin(&self) -> Result<PathBuf, FaultError> {
        if let Some(b) = &self.spec.postgres_bin {
            if b.join("postgres").is_file() {
                return Ok(b.clone());
            }
            return Err(FaultError::inject(format!(
                "`postgres-bin`: no `postgres` in {}",
                b.display()
            )));
        }
        newest_postgres_bin().ok_or_else(|| {
            FaultError::inject(
                "no PostgreSQL server under /usr/lib/postgresql: install it or set `postgres-bin`",
            )
        })
    }

    /// argv run as the restore's user.
    fn as_user(run_as: &Option<RunAs>, argv: Vec<String>) -> Vec<String> {
        match run_as {
            None => argv,
            Some(u) => {
                let mut v = vec![
                    "setpriv".to_string(),
                    format!("--reuid={}", u.uid),
                    format!("--regid={}", u.gid),
                    "--init-groups".to_string(),
                    "--".to_string(),
                ];
                v.extend(argv);
                v
            }
        }
    }

    fn pgbackrest_base(stanza: &str, config: Option<&Path>) -> Vec<String> {
        let mut v = vec!["pgbackrest".to_string()];
        if let Some(c) = config {
            v.push(format!("--config={}", c.display()));
        }
        v.push(format!("--stanza={stanza}"));
        v
    }

    /// The stanza's backups, oldest first; `Ok(Err(why))` when the repository answers but
    /// holds nothing restorable for the stanza (the drill fails); `Err` when it cannot be
    /// read (inconclusive).
    async fn pgbackrest_backups(
        &self,
        stanza: &str,
        config: Option<&Path>,
        chosen: &Chosen,
    ) -> Result<Result<Vec<(BackupInfo, Option<PathBuf>)>, String>, FaultError> {
        let mut argv = Self::pgbackrest_base(stanza, config);
        argv.extend([
            "--output=json".to_string(),
            "--log-level-console=off".to_string(),
            "--log-level-stderr=error".to_string(),
            "info".to_string(),
        ]);
        let argv = Self::as_user(&chosen.run_as, argv);
        let out = output(&argv, Duration::from_secs(120))
            .await
            .map_err(|e| FaultError::inject(format!("cannot run pgbackrest: {e}")))?;
        if !out.status.success() {
            return Err(FaultError::inject(format!(
                "cannot read the pgBackRest repository: {}",
                failure_reason(&out.status, &String::from_utf8_lossy(&out.stderr))
            )));
        }
        parse_pgbackrest_info(&out.stdout, stanza).map_err(FaultError::inject)
    }

    /// Which backup, and which target: `(index, target, for people, seed)`.
    #[allow(clippy::type_complexity)]
    fn choose(
        &self,
        backups: &[(BackupInfo, Option<PathBuf>)],
        now: DateTime<Utc>,
        seed: u64,
    ) -> Result<(usize, Option<DateTime<Utc>>, String, Option<u64>), String> {
        let (first, last) = match (backups.first(), backups.last()) {
            (Some(f), Some(l)) => (f.0.stopped_at, l.0.stopped_at),
            _ => return Err("the repository holds no backup".into()),
        };
        let newest_ending_by = |t: DateTime<Utc>| backups.iter().rposition(|b| b.0.stopped_at <= t);
        match &self.spec.recovery_point {
            RecoveryPoint::Latest => Ok((backups.len() - 1, None, "latest".into(), None)),
            RecoveryPoint::Time(t) => match newest_ending_by(*t) {
                Some(i) => Ok((i, Some(*t), t.to_rfc3339(), None)),
                None => Err(format!(
                    "no backup ends before the recovery point {}: the oldest ended {}",
                    t.to_rfc3339(),
                    first.to_rfc3339()
                )),
            },
            RecoveryPoint::RandomWithin(window) => {
                let from = (now
                    - chrono::Duration::from_std(*window).unwrap_or(chrono::Duration::MAX))
                .max(first);
                if from > last {
                    return Err(format!(
                        "no backup within the last {}: the newest ended {}",
                        humantime::format_duration(*window),
                        last.to_rfc3339()
                    ));
                }
                let span = (last - from).num_microseconds().unwrap_or(0).max(0) as u64;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let offset = if span == 0 {
                    0
                } else {
                    rng.random_range(0..=span)
                };
                let t = from + chrono::Duration::microseconds(offset as i64);
                let i = newest_ending_by(t).unwrap_or(0);
                Ok((
                    i,
                    Some(t),
                    format!(
                        "{} (random within {}, seed {})",
                        t.to_rfc3339(),
                        humantime::format_duration(*window),
                        seed
                    ),
                    Some(seed),
                ))
            }
        }
    }

    pub async fn inject(
        &self,
        label: String,
        spawned: &(dyn Fn(ChildId) + Send + Sync),
    ) -> Result<Injection, FaultError> {
        let chosen = self
            .lock()
            .clone()
            .ok_or_else(|| FaultError::inject("the restore was not prepared"))?;
        let sent_at = Instant::now();
        let mut run = RestoreRun {
            provider: self.spec.provider.key().to_string(),
            scratch: self.dir.as_ref().map(|d| d.display().to_string()),
            port: None,
            recovery_point: chosen.recovery_point.clone(),
            target: chosen.target,
            seed: chosen.seed,
            backup: chosen.backup.clone(),
            started_at: Utc::now(),
            phases: vec![],
            bytes_restored: None,
            newest_commit: None,
            replay_timestamp: None,
            checks: vec![],
            failure: chosen.broken.clone(),
        };
        let deadline = sent_at + self.spec.timeout;
        let mut server = None;
        if run.failure.is_none() {
            let r = match &self.spec.provider {
                RestoreProvider::Command { run: argv, dsn, .. } => {
                    self.by_command(argv, dsn, sent_at, deadline, &mut run, spawned)
                        .await
                }
                _ => {
                    self.scratch(&chosen, sent_at, deadline, &mut run, &mut server, spawned)
                        .await
                }
            };
            match r {
                Ok(()) => {}
                Err(Step::Found(why)) => run.failure = Some(why),
                Err(Step::Blocked(e)) => {
                    stop_server(&mut server).await;
                    return Err(e);
                }
            }
        }
        // The server stays up until the teardown, which stops it by its pid file; meanwhile
        // a task waits for it, so that it is reaped the moment it exits.
        if let Some(mut s) = server {
            tokio::spawn(async move {
                let _ = s.wait().await;
            });
        }
        let detail = match &run.failure {
            None => format!(
                "restored {} into a scratch instance{}",
                run.backup.as_ref().map_or_else(
                    || "the backup".to_string(),
                    |b| format!("backup {}", b.label)
                ),
                run.port
                    .map_or(String::new(), |p| format!(" on 127.0.0.1:{p}")),
            ),
            Some(why) => format!("the backup did not restore: {why}"),
        };
        // Accepted when the restore ended: probes of the source count from there; the
        // restore's own phases count from `sent_at`.
        Ok(Injection {
            fault: label,
            sent_at,
            accepted_at: Instant::now(),
            detail,
            affected: self
                .dir
                .as_ref()
                .map(|d| vec![d.display().to_string()])
                .unwrap_or_default(),
            deleted_pods: vec![],
            revert: self.planned_revert(),
            duration: None,
            restore: Some(Box::new(run)),
        })
    }

    /// The `command` provider: run, then connect to the DSN until it answers, then validate.
    async fn by_command(
        &self,
        argv: &[String],
        dsn: &str,
        t0: Instant,
        deadline: Instant,
        run: &mut RestoreRun,
        spawned: &(dyn Fn(ChildId) + Send + Sync),
    ) -> Result<(), Step> {
        let left = deadline.saturating_duration_since(Instant::now());
        let (status, stderr) = run_argv_tracked(argv, left, spawned)
            .await
            .map_err(|e| Step::Found(format!("the restore command: {e}")))?;
        if !status.success() {
            return Err(Step::Found(format!(
                "the restore command failed: {}",
                failure_reason(&status, &stderr)
            )));
        }
        run.phases.push(mark_now(RestorePhase::FilesRestored, t0));
        let target = target_for(dsn, Duration::from_secs(2)).map_err(Step::Blocked)?;
        let mut last_try = Instant::now();
        // Accepting writes: connected, and out of recovery (a restore that returns while the
        // database still replays must not be validated half-way).
        let mut last_error;
        loop {
            let tried = Instant::now();
            match target.connect().await {
                Ok(s) => match s.client.query_one("select pg_is_in_recovery()", &[]).await {
                    Ok(row) if !row.get::<_, bool>(0) => break,
                    Ok(_) => last_error = "still in recovery".into(),
                    Err(e) => last_error = crate::probe::postgres::error_text(&e),
                },
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Step::Found(format!(
                    "the restored database did not accept writes within {}: {last_error}",
                    humantime::format_duration(self.spec.timeout)
                )));
            }
            last_try = tried;
            tokio::time::sleep(POLL).await;
        }
        run.phases.push(PhaseMark {
            phase: RestorePhase::Accepting,
            lower: last_try.saturating_duration_since(t0),
            upper: t0.elapsed(),
        });
        self.validate(&target, t0, run).await
    }

    /// pgBackRest and base backups: files into the scratch directory, then the instance.
    async fn scratch(
        &self,
        chosen: &Chosen,
        t0: Instant,
        deadline: Instant,
        run: &mut RestoreRun,
        server: &mut Option<tokio::process::Child>,
        spawned: &(dyn Fn(ChildId) + Send + Sync),
    ) -> Result<(), Step> {
        let dir = self
            .dir
            .clone()
            .ok_or_else(|| Step::Blocked(FaultError::inject("no scratch directory was set")))?;
        let data = dir.join("data");
        make_scratch(&dir, &self.run_id, &chosen.run_as).map_err(Step::Blocked)?;
        // Files.
        let left = || deadline.saturating_duration_since(Instant::now());
        match &self.spec.provider {
            RestoreProvider::Pgbackrest { stanza, config } => {
                let mut argv = Self::pgbackrest_base(stanza, config.as_deref());
                argv.extend([
                    format!("--pg1-path={}", data.display()),
                    format!("--tablespace-map-all={}", dir.join("tablespaces").display()),
                    "--archive-mode=off".to_string(),
                    "--log-level-console=off".to_string(),
                    "--log-level-stderr=error".to_string(),
                ]);
                if let Some(b) = &chosen.backup {
                    argv.push(format!("--set={}", b.label));
                }
                match chosen.target {
                    Some(t) => argv.extend([
                        "--type=time".to_string(),
                        format!("--target={}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
                        "--target-action=promote".to_string(),
                    ]),
                    None => argv.push("--type=default".to_string()),
                }
                argv.push("restore".to_string());
                let argv = Self::as_user(&chosen.run_as, argv);
                run_step(&argv, left(), spawned, "pgbackrest restore", || {
                    "pgbackrest restore failed".to_string()
                })
                .await?;
            }
            RestoreProvider::BaseBackup { .. } => {
                let base = chosen.base.clone().ok_or_else(|| {
                    Step::Blocked(FaultError::inject("no base backup was chosen"))
                })?;
                if base.join("backup_manifest").is_file() {
                    let verify = Self::as_user(
                        &chosen.run_as,
                        vec![
                            chosen.bin.join("pg_verifybackup").display().to_string(),
                            "--no-parse-wal".to_string(),
                            "--quiet".to_string(),
                            base.display().to_string(),
                        ],
                    );
                    run_step(&verify, left(), spawned, "pg_verifybackup", || {
                        format!("the base backup {} does not verify", base.display())
                    })
                    .await?;
                }
                let copy = Self::as_user(
                    &chosen.run_as,
                    vec![
                        "cp".into(),
                        "-a".into(),
                        format!("{}/.", base.display()),
                        data.display().to_string(),
                    ],
                );
                run_step(&copy, left(), spawned, "cp", || {
                    "copying the base backup failed".to_string()
                })
                .await?;
                write_owned(&data.join("recovery.signal"), b"", &chosen.run_as)
                    .map_err(Step::Blocked)?;
            }
            RestoreProvider::Command { .. } => unreachable!("handled by by_command"),
        }
        run.phases.push(mark_now(RestorePhase::FilesRestored, t0));
        run.bytes_restored = Some(dir_size(&data));

        // The instance.
        let port = free_port().map_err(Step::Blocked)?;
        run.port = Some(port);
        if !data.join("postgresql.conf").exists() {
            // Debian keeps the configuration outside the data directory: start from defaults.
            write_owned(&data.join("postgresql.conf"), b"", &chosen.run_as)
                .map_err(Step::Blocked)?;
        }
        write_owned(
            &dir.join("pg_hba.conf"),
            b"# firedrill scratch instance: the socket directory is the run-as user's alone\nlocal all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            &chosen.run_as,
        )
        .map_err(Step::Blocked)?;
        write_owned(&dir.join("pg_ident.conf"), b"", &chosen.run_as).map_err(Step::Blocked)?;
        let mut settings: Vec<(String, String)> = vec![
            ("port".into(), port.to_string()),
            ("listen_addresses".into(), "127.0.0.1".into()),
            ("unix_socket_directories".into(), dir.display().to_string()),
            (
                "hba_file".into(),
                dir.join("pg_hba.conf").display().to_string(),
            ),
            (
                "ident_file".into(),
                dir.join("pg_ident.conf").display().to_string(),
            ),
            ("archive_mode".into(), "off".into()),
            ("hot_standby".into(), "on".into()),
            ("ssl".into(), "off".into()),
            ("logging_collector".into(), "off".into()),
            ("cluster_name".into(), "firedrill-restore".into()),
            ("primary_conninfo".into(), String::new()),
            ("primary_slot_name".into(), String::new()),
            ("synchronous_standby_names".into(), String::new()),
            ("recovery_target_action".into(), "promote".into()),
        ];
        if let RestoreProvider::BaseBackup { wal_archive, .. } = &self.spec.provider {
            settings.extend(base_backup_recovery(wal_archive, chosen.target));
        }
        for (k, v) in &self.spec.settings {
            settings.retain(|(key, _)| key != k);
            settings.push((k.clone(), v.clone()));
        }
        let mut argv = vec![
            chosen.bin.join("postgres").display().to_string(),
            "-D".to_string(),
            data.display().to_string(),
        ];
        for (k, v) in settings {
            argv.push("-c".into());
            argv.push(format!("{k}={v}"));
        }
        let argv = Self::as_user(&chosen.run_as, argv);
        let log_path = dir.join("postgres.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| Step::Blocked(FaultError::inject_by("cannot create the server log", e)))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Step::Blocked(FaultError::inject_by("cannot create the server log", e)))?;
        let mut cmd = crate::platform::child::command(&argv)
            .map_err(|e| Step::Blocked(FaultError::inject(e)))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            Step::Blocked(FaultError::inject_by(
                "cannot start the scratch instance",
                e,
            ))
        })?;
        if let Some(pid) = child.id() {
            spawned(crate::platform::child::identify(pid));
        }
        *server = Some(child);

        // Replay: read-only connections once consistent, writes once promoted.
        let user = self.spec.user.clone().unwrap_or_else(|| "postgres".into());
        let dsn = format!(
            "host={} port={port} user={} dbname=postgres connect_timeout=2 sslmode=disable",
            dsn_quote(&dir.display().to_string()),
            dsn_quote(&user)
        );
        let target = target_for(&dsn, Duration::from_secs(2)).map_err(Step::Blocked)?;
        let mut last_poll = Instant::now();
        let mut consistent = false;
        let mut last_error = String::new();
        loop {
            let polled = Instant::now();
            if let Some(Ok(Some(status))) = server.as_mut().map(|c| c.try_wait()) {
                return Err(Step::Found(format!(
                    "the restored instance stopped during recovery ({status}): {}",
                    log_reason(&log_path)
                )));
            }
            if polled >= deadline {
                return Err(Step::Found(format!(
                    "recovery did not finish within {}: {} (last attempt: {last_error})",
                    humantime::format_duration(self.spec.timeout),
                    log_reason(&log_path)
                )));
            }
            match target.connect().await {
                Err(e) => last_error = e.to_string(),
                Ok(s) => {
                    if !consistent {
                        consistent = true;
                        run.phases.push(PhaseMark {
                            phase: RestorePhase::Consistent,
                            lower: last_poll.saturating_duration_since(t0),
                            upper: t0.elapsed(),
                        });
                    }
                    match s.client.query_one("select pg_is_in_recovery()", &[]).await {
                        Ok(row) if !row.get::<_, bool>(0) => {
                            run.phases.push(PhaseMark {
                                phase: RestorePhase::Accepting,
                                lower: last_poll.saturating_duration_since(t0),
                                upper: t0.elapsed(),
                            });
                            break;
                        }
                        Ok(_) => last_error = "still in recovery".into(),
                        Err(e) => last_error = crate::probe::postgres::error_text(&e),
                    }
                }
            }
            last_poll = polled;
            tokio::time::sleep(POLL).await;
        }
        if let Ok(s) = target.connect().await {
            run.replay_timestamp = epoch_of(
                &s.client,
                "select extract(epoch from pg_last_xact_replay_timestamp())::float8",
            )
            .await
            .ok()
            .flatten();
        }
        if self.spec.amcheck {
            let argv = Self::as_user(
                &chosen.run_as,
                vec![
                    chosen.bin.join("pg_amcheck").display().to_string(),
                    "--all".into(),
                    "--install-missing".into(),
                    "--no-password".into(),
                    "--host".into(),
                    dir.display().to_string(),
                    "--port".into(),
                    port.to_string(),
                    "--username".into(),
                    user.clone(),
                ],
            );
            let (status, stderr) = run_argv_tracked(&argv, left(), &|_| {})
                .await
                .map_err(|e| run_failed("pg_amcheck", e))?;
            let passed = status.success();
            run.checks.push(CheckResult {
                name: "pg_amcheck".into(),
                value: None,
                passed,
                reason: (!passed).then(|| failure_reason(&status, &stderr)),
            });
            if !passed {
                return Err(Step::Found(format!(
                    "pg_amcheck found corruption: {}",
                    failure_reason(&status, &stderr)
                )));
            }
        }
        self.validate(&target, t0, run).await
    }

    /// The freshness query and every validation; the validated phase ends with the last.
    async fn validate(
        &self,
        target: &crate::probe::postgres::Target,
        t0: Instant,
        run: &mut RestoreRun,
    ) -> Result<(), Step> {
        let session = target
            .connect()
            .await
            .map_err(|e| Step::Found(format!("cannot connect to the restored database: {e}")))?;
        if let Some(q) = &self.spec.freshness_query {
            let sql = format!("select extract(epoch from ({q}))::float8");
            match epoch_of(&session.client, &sql).await {
                Ok(Some(t)) => run.newest_commit = Some(t),
                Ok(None) => {
                    return Err(Step::Found(
                        "the freshness query returned NULL: the restored data has no rows to date"
                            .into(),
                    ))
                }
                Err(e) => return Err(Step::Found(format!("the freshness query failed: {e}"))),
            }
        }
        let mut failed = Vec::new();
        for v in &self.spec.validate {
            let other;
            let client = match &v.database {
                Some(db) if db != "postgres" => {
                    other = target_in(target, db)
                        .connect()
                        .await
                        .map_err(|e| Step::Found(format!("validation `{}`: {e}", v.name)))?;
                    &other.client
                }
                _ => &session.client,
            };
            let (value, reason) = match first_value(client, &v.query).await {
                Err(e) => (None, Some(e)),
                Ok(value) => {
                    let reason = v
                        .expect
                        .as_ref()
                        .and_then(|e| e.check(value.as_deref()).err());
                    (value, reason)
                }
            };
            if let Some(r) = &reason {
                failed.push(format!("validation `{}`: {r}", v.name));
            }
            run.checks.push(CheckResult {
                name: v.name.clone(),
                value,
                passed: reason.is_none(),
                reason,
            });
        }
        if !failed.is_empty() {
            return Err(Step::Found(failed.join("; ")));
        }
        run.phases.push(mark_now(RestorePhase::Validated, t0));
        Ok(())
    }
}

/// The recovery settings of a base backup's instance: WAL from `wal_archive`, up to `target`
/// or the archive's end. A base backup carries its cluster's postgresql.auto.conf, and with it
/// whatever recovery target an earlier restore of that cluster wrote there (pgBackRest does,
/// and PostgreSQL keeps them after promoting): every target is cleared on the command line,
/// which outranks the files, so only this restore's counts. The clearing comes first: setting
/// a target to '' unsets whichever was set before it.
fn base_backup_recovery(
    wal_archive: &Path,
    target: Option<DateTime<Utc>>,
) -> Vec<(String, String)> {
    let mut v = vec![(
        "restore_command".to_string(),
        format!("cp {}/%f %p", restore_command_path(wal_archive)),
    )];
    for k in [
        "recovery_target",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_xid",
        "recovery_target_time",
    ] {
        v.push((k.to_string(), String::new()));
    }
    if let Some(t) = target {
        v.push((
            "recovery_target_time".into(),
            t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        ));
    }
    v
}

/// A value of a `key=value` connection string: quoted, `\` and `'` escaped.
fn dsn_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A path in `restore_command`, which PostgreSQL runs through the shell after replacing `%f`
/// and `%p`: single-quoted for the shell, `%` doubled for PostgreSQL.
fn restore_command_path(p: &Path) -> String {
    let shell = format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    shell.replace('%', "%%")
}

/// How a restore step ended short of validated.
enum Step {
    /// The backup is to blame: the drill fails.
    Found(String),
    /// firedrill could not find out: inconclusive.
    Blocked(FaultError),
}

/// Runs one step's program within what is left of the restore's time. A program that exits
/// non-zero is the backup's finding (`failed`, then its reason); one that cannot run or runs
/// out of time is [`run_failed`]'s.
async fn run_step(
    argv: &[String],
    left: Duration,
    spawned: &(dyn Fn(ChildId) + Send + Sync),
    what: &str,
    failed: impl FnOnce() -> String,
) -> Result<(), Step> {
    let (status, stderr) = run_argv_tracked(argv, left, spawned)
        .await
        .map_err(|e| run_failed(what, e))?;
    if status.success() {
        return Ok(());
    }
    Err(Step::Found(format!(
        "{}: {}",
        failed(),
        failure_reason(&status, &stderr)
    )))
}

/// A step's program that could not be run (inconclusive) or ran out of the restore's time
/// (the restore did not happen within its bound: the drill fails).
fn run_failed(what: &str, e: String) -> Step {
    if e.contains("timed out after") {
        Step::Found(format!(
            "{what} did not finish within the restore's timeout: {e}"
        ))
    } else {
        Step::Blocked(FaultError::inject(format!("{what}: {e}")))
    }
}

fn mark_now(phase: RestorePhase, t0: Instant) -> PhaseMark {
    let at = t0.elapsed();
    PhaseMark {
        phase,
        lower: at,
        upper: at,
    }
}

fn point_text(p: &RecoveryPoint) -> String {
    match p {
        RecoveryPoint::Latest => "latest".into(),
        RecoveryPoint::Time(t) => t.to_rfc3339(),
        RecoveryPoint::RandomWithin(w) => {
            format!("a random point within {}", humantime::format_duration(*w))
        }
    }
}

fn target_for(dsn: &str, timeout: Duration) -> Result<crate::probe::postgres::Target, FaultError> {
    let spec = crate::experiment::model::postgres::PostgresProbeSpec {
        dsn: dsn.to_string(),
        password_env: None,
        password_file: None,
        mode: crate::experiment::model::postgres::PostgresMode::Read {
            query: "select 1".into(),
        },
        timeout,
    };
    crate::probe::postgres::Target::new(&spec)
        .map_err(|e| FaultError::inject(format!("the restored database's address: {e}")))
}

fn target_in(t: &crate::probe::postgres::Target, db: &str) -> crate::probe::postgres::Target {
    t.with_database(db)
}

async fn first_value(client: &tokio_postgres::Client, sql: &str) -> Result<Option<String>, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| crate::safety::redact::text(&crate::probe::postgres::error_text(&e)))?;
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).map(str::to_string));
        }
    }
    Ok(None)
}

async fn epoch_of(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Option<DateTime<Utc>>, String> {
    let row = client
        .query_one(sql, &[])
        .await
        .map_err(|e| crate::safety::redact::text(&crate::probe::postgres::error_text(&e)))?;
    let v: Option<f64> = row.try_get(0).map_err(|e| e.to_string())?;
    Ok(v.and_then(|s| {
        let micros = (s * 1e6).round() as i64;
        Utc.timestamp_micros(micros).single()
    }))
}

/// The server log's last FATAL/PANIC line (why recovery stopped), else its last line.
fn log_reason(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let fatal = lines
        .iter()
        .rev()
        .find(|l| l.contains("FATAL:") || l.contains("PANIC:"));
    // The line before a FATAL often names the missing WAL file.
    let detail = lines.iter().rev().find(|l| {
        l.contains("could not")
            || l.contains("cannot")
            || l.contains("invalid")
            || l.contains("missing")
    });
    match (fatal, detail) {
        (Some(f), Some(d)) if d != f => format!("{}; {}", trim_log(f), trim_log(d)),
        (Some(f), _) => trim_log(f),
        (None, _) => lines
            .last()
            .map(|l| trim_log(l))
            .unwrap_or_else(|| "the server wrote nothing".into()),
    }
}

fn trim_log(line: &str) -> String {
    // Drop the timestamp/pid prefix up to the severity.
    for key in ["FATAL:", "PANIC:", "LOG:", "ERROR:", "WARNING:"] {
        if let Some(i) = line.find(key) {
            return line[i..].trim().to_string();
        }
    }
    line.trim().to_string()
}

/// The newest `/usr/lib/postgresql/<major>/bin` with a server in it.
fn newest_postgres_bin() -> Option<PathBuf> {
    let mut majors: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    majors.sort_unstable();
    majors
        .into_iter()
        .rev()
        .map(|m| PathBuf::from(format!("/usr/lib/postgresql/{m}/bin")))
        .find(|d| d.join("postgres").is_file())
}

fn free_port() -> Result<u16, FaultError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| FaultError::inject_by("cannot find a free port on 127.0.0.1", e))
}

/// The scratch directory must be new: a directory there that firedrill did not create (no
/// marker) or that a running server uses is refused.
fn check_scratch(dir: &Path) -> Result<(), FaultError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(FaultError::inject(format!(
            "the scratch directory {} does not exist: create it (on a disk with room for the database)",
            parent.display()
        )));
    }
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    if !dir.join(MARKER).is_file() {
        return Err(FaultError::inject(format!(
            "{} exists and firedrill did not create it: refusing to restore over data it does not own",
            dir.display()
        )));
    }
    if let Some(pid) = postmaster_pid(&dir.join("data")) {
        if crate::platform::process::running(pid) {
            return Err(FaultError::inject(format!(
                "{} holds a running PostgreSQL (pid {pid}): refusing to restore over it",
                dir.display()
            )));
        }
    }
    Err(FaultError::inject(format!(
        "{} is left from an earlier restore of this run: remove it with `firedrill recover`",
        dir.display()
    )))
}

/// Refuses a restore that cannot fit: the database's size plus a tenth and 64 MiB for WAL.
fn check_space(dir: &Path, size: u64) -> Result<(), FaultError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let st = nix::sys::statvfs::statvfs(parent).map_err(|e| {
        FaultError::inject_by(
            format!("cannot read the free space of {}", parent.display()),
            e,
        )
    })?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    let need = size + size / 10 + 64 * 1024 * 1024;
    if free < need {
        return Err(FaultError::inject(format!(
            "not enough room to restore: the backup holds {} and needs about {}, {} has {} free",
            bytes_text(size),
            bytes_text(need),
            parent.display(),
            bytes_text(free)
        )));
    }
    Ok(())
}

fn make_scratch(dir: &Path, run_id: &str, run_as: &Option<RunAs>) -> Result<(), FaultError> {
    use std::os::unix::fs::DirBuilderExt;
    let fail = |what: &str, e: std::io::Error| {
        FaultError::inject_by(format!("cannot create {what} {}", dir.display()), e)
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail("the scratch directory", e))?;
    let marker = serde_json::json!({
        "run_id": run_id,
        "created_at": Utc::now().to_rfc3339(),
        "what": "a scratch PostgreSQL restored by firedrill; `firedrill recover` removes it",
    });
    std::fs::write(dir.join(MARKER), marker.to_string()).map_err(|e| fail("the marker in", e))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir.join("data"))
        .map_err(|e| fail("the data directory in", e))?;
    if let Some(u) = run_as {
        for p in [dir.to_path_buf(), dir.join(MARKER), dir.join("data")] {
            chown(&p, u)?;
        }
    }
    Ok(())
}

fn chown(p: &Path, u: &RunAs) -> Result<(), FaultError> {
    nix::unistd::chown(
        p,
        Some(nix::unistd::Uid::from_raw(u.uid)),
        Some(nix::unistd::Gid::from_raw(u.gid)),
    )
    .map_err(|e| FaultError::inject_by(format!("cannot give {} to {}", p.display(), u.name), e))
}

fn write_owned(p: &Path, bytes: &[u8], run_as: &Option<RunAs>) -> Result<(), FaultError> {
    std::fs::write(p, bytes)
        .map_err(|e| FaultError::inject_by(format!("cannot write {}", p.display()), e))?;
    match run_as {
        Some(u) => chown(p, u),
        None => Ok(()),
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if md.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        md.len()
    }
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

async fn output(argv: &[String], timeout: Duration) -> Result<std::process::Output, String> {
    let mut cmd = crate::platform::child::command(argv)?;
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => Err(format!("`{}` timed out after {timeout:?}", argv.join(" "))),
        Ok(Err(e)) => Err(format!("cannot run `{}`: {e}", argv[0])),
        Ok(Ok(o)) => Ok(o),
    }
}

async fn stop_server(server: &mut Option<tokio::process::Child>) {
    if let Some(mut c) = server.take() {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
}

/// `pgbackrest info --output=json` for one stanza: its backups oldest first, or why the
/// stanza holds nothing restorable.
#[allow(clippy::type_complexity)]
fn parse_pgbackrest_info(
    json: &[u8],
    stanza: &str,
) -> Result<Result<Vec<(BackupInfo, Option<PathBuf>)>, String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("unreadable output: {e}"))?;
    let st = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == stanza))
        .ok_or_else(|| format!("no stanza `{stanza}` in the output"))?;
    let code = st["status"]["code"].as_i64().unwrap_or(99);
    if code == 99 {
        // "other": the repository itself could not be read (a refused connection, a
        // permission): firedrill cannot tell whether the backup is there.
        let why: Vec<&str> = st["repo"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["status"]["message"].as_str())
            .collect();
        return Err(format!(
            "cannot read the pgBackRest repository: {}",
            if why.is_empty() {
                st["status"]["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string()
            } else {
                why.join("; ")
            }
        ));
    }
    if code != 0 {
        let msg = st["status"]["message"].as_str().unwrap_or("unknown status");
        return Ok(Err(format!(
            "stanza `{stanza}`: {msg} (pgBackRest status {code})"
        )));
    }
    let mut out = Vec::new();
    for b in st["backup"].as_array().into_iter().flatten() {
        // A backup pgBackRest found checksum errors in is not a restore point.
        if b["error"].as_bool() == Some(true) {
            continue;
        }
        let Some(stop) = b["timestamp"]["stop"].as_i64() else {
            continue;
        };
        let Some(stopped_at) = Utc.timestamp_opt(stop, 0).single() else {
            continue;
        };
        out.push((
            BackupInfo {
                label: b["label"].as_str().unwrap_or("").to_string(),
                kind: b["type"].as_str().unwrap_or("").to_string(),
                stopped_at,
                size: b["info"]["size"].as_u64().unwrap_or(0),
            },
            None,
        ));
    }
    out.sort_by_key(|b| b.0.stopped_at);
    if out.is_empty() {
        return Ok(Err(format!("stanza `{stanza}` has no valid backup")));
    }
    Ok(Ok(out))
}

/// The plain-format base backups under `dir` (each subdirectory with a `backup_label`),
/// oldest first; their end is the label's START TIME plus nothing better known, so it is
/// read from `backup_manifest`'s modification time when there is one.
fn base_backups(dir: &Path) -> Result<Vec<(BackupInfo, Option<PathBuf>)>, FaultError> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        FaultError::inject_by(
            format!("cannot read the base backups in {}", dir.display()),
            e,
        )
    })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        let Ok(label) = std::fs::read_to_string(p.join("backup_label")) else {
            continue;
        };
        let start = label
            .lines()
            .find_map(|l| l.strip_prefix("START TIME: "))
            .and_then(|t| {
                DateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S %Z")
                    .ok()
                    .or_else(|| {
                        chrono::NaiveDateTime::parse_from_str(
                            t.trim().trim_end_matches(" UTC"),
                            "%Y-%m-%d %H:%M:%S",
                        )
                        .ok()
                        .map(|n| n.and_utc().fixed_offset())
                    })
            })
            .map(|d| d.with_timezone(&Utc));
        let ended = std::fs::metadata(p.join("backup_manifest"))
            .and_then(|m| m.modified())
            .ok()
            .map(DateTime::<Utc>::from);
        let Some(stopped_at) = ended.or(start) else {
            continue;
        };
        out.push((
            BackupInfo {
                label: e.file_name().to_string_lossy().into_owned(),
                kind: "base".into(),
                stopped_at,
                size: dir_size(&p),
            },
            Some(p),
        ));
    }
    out.sort_by_key(|b| b.0.stopped_at);
    Ok(out)
}

/// The teardown: stop the scratch instance (by its pid file, only while that pid is a
/// postgres of this directory), then remove the directory — only one with firedrill's
/// marker of this run. Idempotent: a directory already gone is reverted.
pub async fn teardown(dir: &Path, run_id: &str) -> Result<String, FaultError> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(format!("{} is already gone", dir.display()));
    }
    let marker = std::fs::read_to_string(dir.join(MARKER)).map_err(|e| {
        FaultError::revert_by(
            format!(
                "{} has no firedrill marker: not removing what firedrill may not have created",
                dir.display()
            ),
            e,
        )
    })?;
    let owner: serde_json::Value = serde_json::from_str(&marker).unwrap_or_default();
    if owner["run_id"] != run_id {
        return Err(FaultError::revert(format!(
            "{} belongs to run {}, not {run_id}: not removing it",
            dir.display(),
            owner["run_id"]
        )));
    }
    let data = dir.join("data");
    let mut stopped = String::new();
    if let Some(pid) = postmaster_pid(&data).filter(|&p| is_postgres_of(p, &data)) {
        use nix::sys::signal::{kill, Signal};
        let p = nix::unistd::Pid::from_raw(pid as i32);
        // Immediate shutdown: the scratch instance's data is thrown away anyway.
        let _ = kill(p, Signal::SIGQUIT);
        let running = || crate::platform::process::running(pid);
        if !until_false(running, Duration::from_secs(10)).await {
            let _ = kill(p, Signal::SIGKILL);
            if !until_false(running, Duration::from_secs(5)).await {
                return Err(FaultError::revert(format!(
                    "the scratch instance (pid {pid}) does not stop"
                )));
            }
        }
        stopped = format!("stopped the scratch instance (pid {pid}), ");
    }
    // Its backends leave with the postmaster; wait for the last of them (they hold files).
    until_false(|| !processes_in(&data).is_empty(), Duration::from_secs(10)).await;
    let left = processes_in(&data);
    if !left.is_empty() {
        return Err(FaultError::revert(format!(
            "processes still use {}: pid {:?}",
            data.display(),
            left
        )));
    }
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d))
        .await
        .map_err(|e| FaultError::revert(format!("removing {}: {e}", dir.display())))?
        .map_err(|e| FaultError::revert_by(format!("cannot remove {}", dir.display()), e))?;
    Ok(format!("{stopped}removed {}", dir.display()))
}

/// Polls `cond` every 20ms until it is false or `within` passes; whether it became false.
async fn until_false(cond: impl Fn() -> bool, within: Duration) -> bool {
    let until = Instant::now() + within;
    while cond() {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Whether `pid` is a postgres whose working directory is `data` (postgres chdirs there).
fn is_postgres_of(pid: u32, data: &Path) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let canon = std::fs::canonicalize(data).ok();
    cwd.is_some() && cwd == canon
}

/// Live processes whose working directory is `data`.
fn processes_in(data: &Path) -> Vec<u32> {
    let Ok(canon) = std::fs::canonicalize(data) else {
        return vec![];
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()
                .as_deref()
                == Some(canon.as_path())
                && crate::platform::process::running(*pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(stops: &[i64]) -> Vec<(BackupInfo, Option<PathBuf>)> {
        stops
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    BackupInfo {
                        label: format!("b{i}"),
                        kind: "full".into(),
                        stopped_at: Utc.timestamp_opt(*s, 0).unwrap(),
                        size: 1,
                    },
                    None,
                )
            })
            .collect()
    }

    fn fault(point: RecoveryPoint) -> RestoreFault {
        let spec = RestoreSpec {
            provider: RestoreProvider::Pgbackrest {
                stanza: "main".into(),
                config: None,
            },
            recovery_point: point,
            scratch: Some("/tmp".into()),
            run_as: None,
            postgres_bin: None,
            user: None,
            settings: Default::default(),
            validate: vec![],
            freshness_query: None,
            amcheck: false,
            timeout: Duration::from_secs(60),
        };
        RestoreFault::new(spec, "r1", 0, 42)
    }

    #[test]
    fn a_time_picks_the_newest_backup_that_ended_before_it_and_none_is_a_finding() {
        let b = info(&[1_000, 2_000, 3_000]);
        let t = Utc.timestamp_opt(2_500, 0).unwrap();
        let (i, target, _, seed) = fault(RecoveryPoint::Time(t)).choose(&b, t, 42).unwrap();
        assert_eq!((i, target, seed), (1, Some(t), None));
        let early = Utc.timestamp_opt(500, 0).unwrap();
        let e = fault(RecoveryPoint::Time(early))
            .choose(&b, t, 42)
            .unwrap_err();
        assert!(
            e.starts_with("no backup ends before the recovery point"),
            "{e}"
        );
    }

    #[test]
    fn a_random_point_is_seeded_and_lies_between_the_window_and_the_newest_backup() {
        let b = info(&[1_000, 2_000, 3_000]);
        let now = Utc.timestamp_opt(4_000, 0).unwrap();
        let f = fault(RecoveryPoint::RandomWithin(Duration::from_secs(2_500)));
        let (i, t, text, seed) = f.choose(&b, now, 42).unwrap();
        let t = t.unwrap();
        assert!(
            t >= Utc.timestamp_opt(1_500, 0).unwrap() && t <= Utc.timestamp_opt(3_000, 0).unwrap()
        );
        assert_eq!(
            b[i].0.stopped_at,
            b.iter()
                .map(|x| x.0.stopped_at)
                .filter(|s| *s <= t)
                .max()
                .unwrap()
        );
        assert!(text.contains(&format!("seed {}", seed.unwrap())), "{text}");
        // The same seed, the same point.
        assert_eq!(f.choose(&b, now, 42).unwrap().1, Some(t));
        // Nothing within the window: the drill's finding.
        let late = Utc.timestamp_opt(10_000, 0).unwrap();
        let e = f.choose(&b, late, 42).unwrap_err();
        assert!(e.starts_with("no backup within the last"), "{e}");
    }

    #[test]
    fn pgbackrest_info_statuses_are_findings_and_backups_come_oldest_first() {
        let missing =
            br#"[{"name":"nope","status":{"code":1,"message":"missing stanza path"},"backup":[]}]"#;
        assert_eq!(
            parse_pgbackrest_info(missing, "nope").unwrap().unwrap_err(),
            "stanza `nope`: missing stanza path (pgBackRest status 1)"
        );
        let ok = br#"[{"name":"main","status":{"code":0,"message":"ok"},"backup":[
            {"label":"B2","type":"incr","timestamp":{"start":190,"stop":200},"info":{"size":10}},
            {"label":"B1","type":"full","timestamp":{"start":90,"stop":100},"info":{"size":10}},
            {"label":"B3","type":"incr","error":true,"timestamp":{"start":290,"stop":300},"info":{"size":10}}]}]"#;
        let b = parse_pgbackrest_info(ok, "main").unwrap().unwrap();
        let unreadable = br#"[{"name":"main","status":{"code":99,"message":"other"},"repo":[{"key":1,"status":{"code":99,"message":"[HostConnectError] unable to connect to '127.0.0.1:9': [111] Connection refused"}}]}]"#;
        let e = parse_pgbackrest_info(unreadable, "main").unwrap_err();
        assert!(
            e.starts_with("cannot read the pgBackRest repository: [HostConnectError]"),
            "{e}"
        );
        let labels: Vec<&str> = b.iter().map(|x| x.0.label.as_str()).collect();
        assert_eq!(labels, ["B1", "B2"]);
    }

    #[test]
    fn a_base_backup_restore_clears_recovery_targets_its_configuration_carries() {
        let targets = |v: &[(String, String)]| -> Vec<(String, String)> {
            v.iter()
                .filter(|(k, _)| k.starts_with("recovery_target"))
                .cloned()
                .collect()
        };
        let cleared: Vec<(String, String)> = [
            "recovery_target",
            "recovery_target_lsn",
            "recovery_target_name",
            "recovery_target_xid",
            "recovery_target_time",
        ]
        .iter()
        .map(|k| (k.to_string(), String::new()))
        .collect();
        let latest = base_backup_recovery(Path::new("/wal"), None);
        assert_eq!(
            latest[0],
            ("restore_command".to_string(), "cp '/wal'/%f %p".to_string())
        );
        assert_eq!(targets(&latest), cleared);
        // A time: set after the clearing (PostgreSQL applies them in order, and '' unsets).
        let t = Utc.timestamp_micros(1_800_000_000_123_456).unwrap();
        let mut at = cleared.clone();
        at.push((
            "recovery_target_time".into(),
            "2027-01-15 08:00:00.123456+00".into(),
        ));
        assert_eq!(
            targets(&base_backup_recovery(Path::new("/wal"), Some(t))),
            at
        );
    }

    #[test]
    fn paths_with_spaces_quotes_and_percents_survive_the_dsn_and_restore_command() {
        assert_eq!(dsn_quote("/var/tmp/a b"), "'/var/tmp/a b'");
        assert_eq!(dsn_quote("it's"), "'it\\'s'");
        assert_eq!(
            restore_command_path(Path::new("/wal/it's 100%")),
            "'/wal/it'\\''s 100%%'"
        );
        // The quoted DSN parses back to the path.
        let cfg: tokio_postgres::Config = format!("host={} port=5432", dsn_quote("/tmp/a b"))
            .parse()
            .unwrap();
        assert_eq!(
            cfg.get_hosts(),
            [tokio_postgres::config::Host::Unix("/tmp/a b".into())]
        );
    }

    #[test]
    fn the_server_log_gives_the_fatal_line_and_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(
            &p,
            "2026-12-05 10:00:00 UTC [1] LOG:  starting\n\
             2026-12-05 10:00:01 UTC [1] LOG:  restored log file \"000000010000000000000003\"\n\
             cp: cannot stat '/a/000000010000000000000004': No such file or directory\n\
             2026-12-05 10:00:02 UTC [1] FATAL:  recovery ended before configured recovery target was reached\n",
        )
        .unwrap();
        let r = log_reason(&p);
        assert!(r.starts_with("FATAL:  recovery ended before"), "{r}");
        assert!(r.contains("000000010000000000000004"), "{r}");
    }
}
