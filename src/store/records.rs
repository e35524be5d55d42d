//! Run records in the store: one row per run id, written once in one statement (a second
//! write of the same run changes nothing), and read back as [`StoredRun`]s by the same
//! parser as the reports folder, from the lean text kept beside the whole record.

use std::path::PathBuf;
use std::time::Duration;

use super::{Store, StoreError, StoredRun};
use crate::report::store as folder;

/// What `store gc` removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub runs: u64,
    pub journals: u64,
}

impl Store {
    /// Store a record from its JSON (a masked record as `report::json` writes it, a spooled
    /// or a folder's record); `false` when the store already had it.
    pub async fn put_json(&self, json: &[u8]) -> Result<bool, StoreError> {
        // One full parse (the lean projection); the columns come from the lean text.
        let lean = folder::lean(json);
        let run = folder::parse_lean(lean.as_bytes()).map_err(|e| StoreError::Query {
            dsn: self.shown().to_string(),
            what: "reading a record to store".into(),
            cause: crate::platform::render(&e),
        })?;
        let record = String::from_utf8_lossy(json);
        let n = self.bounded(&format!("writing run {}", run.run_id), self.client().execute(
                "INSERT INTO firedrill_runs
                   (run_id, experiment, environment, started_at, finished_at, outcome, lean, record, written_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (run_id) DO NOTHING",
                &[
                    &run.run_id,
                    &run.experiment,
                    &run.environment,
                    &run.started_at,
                    &run.finished_at,
                    &run.outcome.to_string(),
                    &lean,
                    &record.as_ref(),
                    &super::host(),
                ],
            ))
            .await?;
        Ok(n == 1)
    }

    /// Every stored run, as the reports folder's reader gives them; rows that do not parse
    /// are returned beside them, named `store:<run id>`.
    pub async fn runs(&self) -> Result<(Vec<StoredRun>, Vec<(PathBuf, String)>), StoreError> {
        // A whole history is big: bounded by a minute, not by one statement's 5 s.
        let rows = self
            .bounded_for(
                "reading the run records",
                std::time::Duration::from_secs(60),
                self.client()
                    .query("SELECT run_id, lean FROM firedrill_runs", &[]),
            )
            .await?;
        // Parsed where they lie (no copy of every row), on every core.
        Ok(folder::parse_parallel(&rows, |row| {
            let lean: &str = row.get(1);
            folder::parse_lean(lean.as_bytes()).map_err(|e| {
                (
                    PathBuf::from(format!("store:{}", row.get::<_, &str>(0))),
                    crate::platform::render(&e),
                )
            })
        }))
    }

    /// One run's whole record (JSON), if the store has it.
    pub async fn record(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .bounded(
                &format!("reading run {run_id}"),
                self.client().query_opt(
                    "SELECT record FROM firedrill_runs WHERE run_id = $1",
                    &[&run_id],
                ),
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// How many runs the store holds.
    pub async fn count(&self) -> Result<i64, StoreError> {
        let row = self
            .bounded(
                "counting runs",
                self.client()
                    .query_one("SELECT count(*) FROM firedrill_runs", &[]),
            )
            .await?;
        Ok(row.get(0))
    }

    /// Retention. With `older_than`, runs that finished before now − `older_than` go; with
    /// `keep_last`, only each drill's (experiment × environment) newest `keep_last` runs stay.
    /// With both, a run goes when it is older and not among its drill's newest `keep_last`
    /// (a drill run rarely keeps its history). Closed journals older than `older_than` go too.
    pub async fn gc(
        &self,
        older_than: Option<Duration>,
        keep_last: Option<u32>,
    ) -> Result<Collected, StoreError> {
        let cutoff = older_than.map(|d| {
            chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
        });
        let keep = keep_last.map(i64::from);
        let runs = self.bounded("deleting old runs", self.client().execute(
                "DELETE FROM firedrill_runs r USING (
                     SELECT run_id, row_number() OVER (
                         PARTITION BY experiment, environment ORDER BY finished_at DESC, run_id DESC) AS rank
                     FROM firedrill_runs) ranked
                 WHERE r.run_id = ranked.run_id
                   AND ($1::timestamptz IS NULL OR r.finished_at < $1)
                   AND ($2::bigint IS NULL OR ranked.rank > $2)",
                &[&cutoff, &keep],
            ))
            .await?;
        let journals = match cutoff {
            Some(c) => {
                self.bounded(
                    "deleting old journals",
                    self.client().execute(
                        "DELETE FROM firedrill_journals WHERE closed AND heartbeat_at < $1",
                        &[&c],
                    ),
                )
                .await?
            }
            None => 0,
        };
        Ok(Collected { runs, journals })
    }
}
