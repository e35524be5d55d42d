//! The shared store: one PostgreSQL database every runner of a fleet uses (CronJobs, CI jobs,
//! laptops), configured by `--store` or `FIREDRILL_STORE`. Without one, nothing changes: the
//! reports folder and the state directory stay the embedded default.
//!
//! What lives here, each in its own file:
//! - [`records`]: run records, written transactionally and idempotently by run id, read back
//!   as the same [`StoredRun`]s the reports folder gives (so `report`, `status`, the promotion
//!   gate, `--baseline` and the schedule daemon show the same thing from either), retention;
//! - [`spool`]: a record the store could not take (it was down when the run ended) waits in
//!   the state directory and is uploaded by the next run or `store sync`;
//! - [`locks`]: scope locks across machines, as session advisory locks (a dead runner's
//!   connection ends, and its locks with it) with a readable holder row;
//! - [`halt`]: the halt lever as one row every runner polls;
//! - [`journal`]: the write-ahead journal mirrored line by line with a heartbeat, so the next
//!   runner of a scope on another machine recovers what a killed runner left.
//!
//! The DSN is a secret: it is read from the environment or a file (never accepted with a
//! password on the command line, where every local user sees it in `ps`), registered with the
//! redactor, and shown only redacted. TLS follows the DSN (`sslmode=verify-full`,
//! `sslrootcert=`), through the same connector as the postgres probe. The schema is versioned
//! with refinery's migrations, applied by firedrill itself under an advisory lock.

pub mod halt;
pub mod journal;
pub mod locks;
pub mod records;
pub mod spool;

use std::path::PathBuf;
use std::time::Duration;

use crate::experiment::model::postgres::{PostgresMode, PostgresProbeSpec, TlsMode};
use crate::experiment::model::StoreRef;
use crate::probe::postgres::{error_text, Session, Target};

pub use crate::report::store::StoredRun;

mod embedded {
    refinery::embed_migrations!("src/store/migrations");
}

/// The environment variable naming the store (a DSN, `env:NAME` or `file:PATH`).
pub const ENV: &str = "FIREDRILL_STORE";

/// How long connecting to the store may take, and each statement.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock the migrations run under (two runners starting together migrate once).
const MIGRATION_LOCK: i64 = 0x6669_7265_6472_696c;

/// refinery's history table, named for firedrill in a database it may share.
const HISTORY_TABLE: &str = "firedrill_schema_history";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's configuration cannot be used (exit 2: nothing was tried).
    #[error("{0}")]
    Config(String),
    /// The store did not answer: a run does not start (exit 3).
    #[error("cannot reach the store {dsn}: {cause}")]
    Unreachable { dsn: String, cause: String },
    #[error("store {dsn}: {what}: {cause}")]
    Query {
        dsn: String,
        what: String,
        cause: String,
    },
}

/// Where the store is, as configured: the connection its DSN (a secret) resolved to, built
/// once (DSN parsed, TLS connector and its roots loaded), and where it came from.
#[derive(Clone)]
pub struct Spec {
    target: Target,
    /// `--store`, `FIREDRILL_STORE`, `env:NAME`, `file:PATH`: for messages.
    pub from: String,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("dsn", &self.target.shown())
            .field("from", &self.from)
            .finish()
    }
}

impl Spec {
    /// The store named by `--store` (`flag`) or else by `FIREDRILL_STORE`; `None` when neither
    /// is set. A value is a DSN, `env:NAME` (the DSN is in that environment variable) or
    /// `file:PATH` (its first line). A DSN given on the command line must not carry a
    /// password: arguments are visible to every local user.
    pub fn resolve(flag: Option<&str>) -> Result<Option<Spec>, StoreError> {
        match flag {
            Some(v) => Spec::from_value(v, "--store", true).map(Some),
            None => match std::env::var(ENV) {
                Ok(v) if !v.trim().is_empty() => Spec::from_value(&v, ENV, false).map(Some),
                _ => Ok(None),
            },
        }
    }

    /// The store firedrill.yaml names (`store: { dsn-env | dsn-file }`), used when neither
    /// `--store` nor `FIREDRILL_STORE` is set.
    pub fn from_file_ref(r: &StoreRef) -> Result<Spec, StoreError> {
        match r {
            StoreRef::Env(name) => {
                Spec::from_value(&format!("env:{name}"), "firedrill.yaml", false)
            }
            StoreRef::File(path) => {
                Spec::from_value(&format!("file:{}", path.display()), "firedrill.yaml", false)
            }
        }
    }

    fn from_value(value: &str, from: &str, argument: bool) -> Result<Spec, StoreError> {
        let value = value.trim().to_string();
        let indirect = value.starts_with("env:") || value.starts_with("file:");
        let (dsn, from) = if let Some(name) = value.strip_prefix("env:") {
            let dsn = std::env::var(name).map_err(|_| {
                StoreError::Config(format!(
                    "{from} names environment variable `{name}` for the store's DSN, and it is not set"
                ))
            })?;
            (dsn.trim().to_string(), format!("{from} (env:{name})"))
        } else if let Some(path) = value.strip_prefix("file:") {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StoreError::Config(format!(
                    "{from} names {path} for the store's DSN, which cannot be read: {e}"
                ))
            })?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            (first, format!("{from} (file:{path})"))
        } else {
            (value, from.to_string())
        };
        if dsn.is_empty() {
            return Err(StoreError::Config(format!(
                "{from} gives an empty DSN for the store"
            )));
        }
        let target = Target::new(&PostgresProbeSpec {
            dsn,
            password_env: None,
            password_file: None,
            mode: PostgresMode::Read {
                query: "SELECT 1".into(),
            },
            timeout: TIMEOUT,
        })
        .map_err(|e| {
            StoreError::Config(format!(
                "the store's DSN ({from}) cannot be used: {}",
                crate::platform::render(&e)
            ))
        })?;
        // Records name internal hosts and the DSN carries a password: a store elsewhere is
        // reached over TLS with the server's certificate verified, or not at all.
        if !target.local_only() && matches!(target.tls_mode(), TlsMode::Disable | TlsMode::Prefer) {
            return Err(StoreError::Config(format!(
                "the store {} is not on this machine, and its DSN does not require TLS\n  = help: add sslmode=verify-full (and sslrootcert=PATH for a private CA) to the DSN",
                target.shown()
            )));
        }
        if argument && !indirect && target.has_password() {
            return Err(StoreError::Config(format!(
                "--store carries a password, which every local user can read in the process list ({})\n  = help: put the DSN in {ENV}, or pass --store env:NAME or --store file:PATH",
                target.shown()
            )));
        }
        Ok(Spec { target, from })
    }

    /// The DSN as it may be shown (password redacted).
    pub fn shown(&self) -> &str {
        self.target.shown()
    }
}

/// An open connection to the store, its schema migrated.
pub struct Store {
    session: Session,
    target: Target,
}

impl Store {
    /// Connect and apply any pending migration.
    pub async fn open(spec: &Spec) -> Result<Store, StoreError> {
        let mut store = Store::connect_only(spec.target.clone()).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_only(target: Target) -> Result<Store, StoreError> {
        let session = target
            .connect()
            .await
            .map_err(|e| StoreError::Unreachable {
                dsn: target.shown().to_string(),
                cause: crate::platform::render(&e),
            })?;
        Ok(Store { session, target })
    }

    /// A second connection to the same store (already migrated).
    pub async fn another(&self) -> Result<Store, StoreError> {
        Store::connect_only(self.target.clone()).await
    }

    pub fn client(&self) -> &tokio_postgres::Client {
        &self.session.client
    }

    /// The DSN as it may be shown.
    pub fn shown(&self) -> &str {
        self.target.shown()
    }

    /// Whether the connection is gone (the server stopped, the network broke).
    pub fn is_closed(&self) -> bool {
        self.session.client.is_closed()
    }

    /// A statement, bounded by [`TIMEOUT`]: a store that stops answering (a frozen server, a
    /// network that drops packets) is an unreachable store, never a run that waits forever.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        self.bounded_for(what, TIMEOUT, statement).await
    }

    /// [`Store::bounded`] with another limit (reading a whole history).
    pub(crate) async fn bounded_for<T>(
        &self,
        what: &str,
        limit: Duration,
        statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, statement).await {
            Ok(r) => r.map_err(|e| self.query_error(what, &e)),
            Err(_) => Err(StoreError::Unreachable {
                dsn: self.shown().to_string(),
                cause: format!("{what}: no answer within {}s", limit.as_secs()),
            }),
        }
    }

    pub(crate) fn query_error(&self, what: &str, e: &tokio_postgres::Error) -> StoreError {
        if e.is_closed() || e.as_db_error().is_none() && self.is_closed() {
            return StoreError::Unreachable {
                dsn: self.shown().to_string(),
                cause: crate::safety::redact::text(&error_text(e)),
            };
        }
        StoreError::Query {
            dsn: self.shown().to_string(),
            what: what.to_string(),
            cause: crate::safety::redact::text(&error_text(e)),
        }
    }

    /// Apply pending migrations (refinery), one runner at a time. Returns the versions
    /// applied now.
    pub async fn migrate(&mut self) -> Result<Vec<String>, StoreError> {
        let c = &self.session.client;
        tokio::time::timeout(
            TIMEOUT * 6,
            c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]),
        )
        .await
        .map_err(|_| StoreError::Unreachable {
            dsn: self.shown().to_string(),
            cause: "waited 30s for another runner's migration".into(),
        })?
        .map_err(|e| self.query_error("waiting for the migration lock", &e))?;
        let result = embedded::migrations::runner()
            .set_migration_table_name(HISTORY_TABLE)
            .run_async(&mut self.session.client)
            .await;
        let _ = self
            .session
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        let report = result.map_err(|e| StoreError::Query {
            dsn: self.shown().to_string(),
            what: "applying the schema migrations".into(),
            cause: crate::safety::redact::text(&e.to_string()),
        })?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(|m| m.to_string())
            .collect())
    }

    /// Every migration this binary knows, and whether the store has it applied.
    pub async fn migrations(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let rows = self
            .bounded(
                "reading the schema history",
                self.client()
                    .query(&format!("SELECT version FROM {HISTORY_TABLE}"), &[]),
            )
            .await?;
        let applied: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        Ok(embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| (m.to_string(), applied.contains(&m.version())))
            .collect())
    }
}

/// This machine's name as the store shows it: `FIREDRILL_HOST` when set (a pod may prefer its
/// node's name), else the host name.
pub fn host() -> String {
    crate::safety::lock::this_host()
}

/// The state directory's spool of records the store could not take.
pub fn spool_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("spool")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_flag(dsn: &str) -> Result<Option<Spec>, StoreError> {
        Spec::resolve(Some(dsn))
    }

    #[test]
    fn a_remote_store_must_verify_the_servers_certificate() {
        let refused = from_flag("postgres://firedrill@db.example.invalid:5432/drills")
            .expect_err("plaintext to another machine");
        assert!(
            refused.to_string().contains("sslmode=verify-full"),
            "{refused}"
        );
        assert!(
            from_flag("postgres://firedrill@db.example.invalid/drills?sslmode=prefer").is_err()
        );
        assert!(from_flag("host=db.example.invalid user=firedrill sslmode=disable").is_err());
        for ok in [
            "postgres://firedrill@db.example.invalid/drills?sslmode=verify-full",
            "host=db.example.invalid user=firedrill sslmode=verify-ca",
            "host=db.example.invalid user=firedrill sslmode=require",
            "postgres://firedrill@127.0.0.1:5432/drills",
            "host=localhost user=firedrill",
            "host=/run/postgresql user=firedrill",
        ] {
            assert!(from_flag(ok).is_ok_and(|s| s.is_some()), "{ok}");
        }
    }

    #[test]
    fn a_password_on_the_command_line_is_refused_and_never_shown() {
        let e = from_flag("postgres://firedrill:hunter2-store@127.0.0.1/drills")
            .expect_err("a password in an argument");
        let text = e.to_string();
        assert!(text.contains("process list"), "{text}");
        assert!(!text.contains("hunter2-store"), "{text}");
    }
}
