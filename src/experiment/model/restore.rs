//! The `restore` fault as the experiment file gives it: which backup, restored where, checked
//! how. Restoring is the "fault" of a restore drill: it creates a scratch instance, and its
//! revert is the teardown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DurationText;

/// The fault as the experiment file gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestoreSpec {
    /// Where the backup comes from and how it is restored.
    pub provider: RestoreProvider,
    /// Which point to restore to: `latest` (the end of the archive, the default), a point in
    /// time `{ time: 2026-12-05T10:00:00Z }`, or a random point `{ random-within: 7d }`
    /// (seeded by the run, recorded).
    #[serde(default)]
    pub recovery_point: RecoveryPoint,
    /// The directory under which firedrill creates the scratch instance's own directory
    /// (`firedrill-restore-<run>-<n>`); it must exist. Not used by the `command` provider.
    #[serde(default)]
    pub scratch: Option<PathBuf>,
    /// The operating-system user that restores and runs the scratch instance (PostgreSQL
    /// refuses to run as root). Needed when firedrill runs as root; otherwise firedrill's own
    /// user.
    #[serde(default)]
    pub run_as: Option<String>,
    /// PostgreSQL's binaries (`postgres`, `pg_verifybackup`, `pg_amcheck`); default: the
    /// newest under /usr/lib/postgresql.
    #[serde(default)]
    pub postgres_bin: Option<PathBuf>,
    /// The database role validation connects as (default `postgres`).
    #[serde(default)]
    pub user: Option<String>,
    /// Server settings for the scratch instance (`shared_buffers: 128MB`), over the
    /// restored configuration.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Queries with expectations, run against the restored instance once it accepts writes.
    #[serde(default)]
    pub validate: Vec<Validation>,
    /// A query returning the newest committed timestamp in the data (e.g.
    /// `select max(created_at) from orders`): the restore's data age.
    #[serde(default)]
    pub freshness_query: Option<String>,
    /// Run `pg_amcheck --all` on the restored instance (B-tree and heap checks).
    #[serde(default)]
    pub amcheck: bool,
    /// Bound on the whole restore: files, replay, validation (default 1h).
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "DurationText")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum RestoreProvider {
    /// `pgbackrest restore` of a stanza from its repository.
    Pgbackrest {
        stanza: String,
        /// pgBackRest's configuration file (default: pgBackRest's own default).
        #[serde(default)]
        config: Option<PathBuf>,
    },
    /// PostgreSQL's own point-in-time recovery: a plain-format `pg_basebackup` (each
    /// subdirectory of `backups` is one) and the WAL archive `archive_command` copies to.
    BaseBackup {
        backups: PathBuf,
        wal_archive: PathBuf,
    },
    /// Anything else (Velero, a cloud snapshot): `run` restores, `dsn` reaches the restored
    /// database, `teardown` removes it.
    Command {
        run: Vec<String>,
        dsn: String,
        teardown: Vec<String>,
    },
}

impl RestoreProvider {
    pub fn key(&self) -> &'static str {
        match self {
            RestoreProvider::Pgbackrest { .. } => "pgbackrest",
            RestoreProvider::BaseBackup { .. } => "base-backup",
            RestoreProvider::Command { .. } => "command",
        }
    }
}

/// Which point in the past the restore recovers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum RecoveryPoint {
    /// Everything the archive holds.
    #[default]
    Latest,
    /// This instant (RFC 3339).
    Time(#[schemars(with = "String")] DateTime<Utc>),
    /// A random instant no older than this, between the oldest backup and the newest
    /// backup's end (every such point is covered by archived WAL); chosen from the run's seed.
    RandomWithin(
        #[serde(with = "humantime_serde")]
        #[schemars(with = "DurationText")]
        Duration,
    ),
}

/// One check of the restored data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Validation {
    pub name: String,
    /// The database to run it in (default `postgres`).
    #[serde(default)]
    pub database: Option<String>,
    /// A query whose first column of its first row is compared.
    pub query: String,
    /// What that value must be; without it the query must merely succeed.
    #[serde(default)]
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Expect {
    /// A number at least this.
    AtLeast(f64),
    /// A number at most this.
    AtMost(f64),
    /// Exactly this text (numbers and booleans as PostgreSQL prints them: `t`, `42`).
    Equals(String),
}

impl Expect {
    /// Whether `value` (the query's first value as text; `None` for SQL NULL) meets this.
    pub fn check(&self, value: Option<&str>) -> Result<(), String> {
        let Some(v) = value else {
            return Err("the query returned NULL".into());
        };
        let number = || {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("expected a number, the query returned `{v}`"))
        };
        match self {
            Expect::AtLeast(min) if number()? >= *min => Ok(()),
            Expect::AtLeast(min) => Err(format!("{v} is less than {min}")),
            Expect::AtMost(max) if number()? <= *max => Ok(()),
            Expect::AtMost(max) => Err(format!("{v} is more than {max}")),
            Expect::Equals(want) if v == want => Ok(()),
            Expect::Equals(want) => Err(format!("`{v}`, expected `{want}`")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Expect::AtLeast(n) => format!("≥ {n}"),
            Expect::AtMost(n) => format!("≤ {n}"),
            Expect::Equals(s) => format!("= `{s}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_compare_numbers_and_text_and_refuse_null() {
        assert!(Expect::AtLeast(10.0).check(Some("10")).is_ok());
        assert_eq!(
            Expect::AtLeast(10.0).check(Some("9")).unwrap_err(),
            "9 is less than 10"
        );
        assert_eq!(
            Expect::AtMost(1.0).check(Some("abc")).unwrap_err(),
            "expected a number, the query returned `abc`"
        );
        assert!(Expect::Equals("t".into()).check(Some("t")).is_ok());
        assert_eq!(
            Expect::Equals("t".into()).check(None).unwrap_err(),
            "the query returned NULL"
        );
    }
}
