//! Scope locks across machines: one session advisory lock per scope (`pg_try_advisory_lock`
//! on the scope's 64-bit hash), taken on the run's own connection, so the database releases
//! them the moment that connection ends — a SIGKILLed runner, a pod evicted, a network gone —
//! with no lease to expire. Beside each lock a row names its holder (run, drill, host, pid,
//! since); it is believed only while the backend that wrote it still holds an advisory lock.
//!
//! Two scopes with the same hash would exclude each other needlessly (never wrongly let two
//! drills in); with 64 bits that is not expected to happen.

use super::{Store, StoreError};
use crate::safety::lock::{Holder, LockError};

/// Why the scopes could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StoreLockError {
    #[error("{0} (store)")]
    Held(LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Take every scope for `holder` on this connection, all or none. The locks last as long
    /// as this connection (drop the [`Store`] or call [`Store::unlock_scopes`]).
    pub async fn lock_scopes(
        &self,
        scopes: &[String],
        holder: &Holder,
    ) -> Result<(), StoreLockError> {
        let mut taken: Vec<&String> = Vec::new();
        for scope in scopes {
            let row = self
                .bounded(
                    &format!("locking scope `{scope}`"),
                    self.client().query_one(
                        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                        &[scope],
                    ),
                )
                .await?;
            if !row.get::<_, bool>(0) {
                let held = self.holder(scope).await.unwrap_or(None);
                let _ = self.unlock(&taken).await;
                return Err(StoreLockError::Held(LockError::Held {
                    scope: scope.clone(),
                    holder: held.map(Box::new),
                }));
            }
            taken.push(scope);
        }
        let since = chrono::DateTime::parse_from_rfc3339(&holder.since)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        let pid = i32::try_from(holder.pid).unwrap_or(i32::MAX);
        for scope in scopes {
            self.bounded(&format!("naming the holder of `{scope}`"), self.client().execute(
                    "INSERT INTO firedrill_scope_holders (scope, run_id, experiment, host, pid, since, backend_pid)
                     VALUES ($1, $2, $3, $4, $5, $6, pg_backend_pid())
                     ON CONFLICT (scope) DO UPDATE SET run_id = $2, experiment = $3, host = $4,
                         pid = $5, since = $6, backend_pid = pg_backend_pid()",
                    &[scope, &holder.run_id, &holder.experiment, &holder.host, &pid, &since],
                ))
            .await?;
        }
        Ok(())
    }

    /// Release the scopes this connection holds (their holder rows go with them).
    pub async fn unlock_scopes(&self, scopes: &[String]) -> Result<(), StoreError> {
        let all: Vec<&String> = scopes.iter().collect();
        self.unlock(&all).await
    }

    async fn unlock(&self, scopes: &[&String]) -> Result<(), StoreError> {
        for scope in scopes {
            self.bounded("releasing a scope", self.client().execute(
                    "DELETE FROM firedrill_scope_holders WHERE scope = $1 AND backend_pid = pg_backend_pid()",
                    &[scope],
                ))
            .await?;
            self.bounded(
                "releasing a scope",
                self.client().query_one(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                    &[scope],
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Every scope held now, with its holder.
    pub async fn holders(&self) -> Result<Vec<(String, Holder)>, StoreError> {
        let rows = self
            .bounded(
                "reading the scope holders",
                self.client().query(
                    "SELECT h.scope FROM firedrill_scope_holders h
                     WHERE EXISTS (SELECT 1 FROM pg_locks l
                         WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid)
                     ORDER BY h.scope",
                    &[],
                ),
            )
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let scope: String = r.get(0);
            if let Some(h) = self.holder(&scope).await? {
                out.push((scope, h));
            }
        }
        Ok(out)
    }

    /// Who holds `scope` now, if anyone the store can name.
    pub async fn holder(&self, scope: &str) -> Result<Option<Holder>, StoreError> {
        let row = self
            .bounded(
                &format!("reading the holder of `{scope}`"),
                self.client().query_opt(
                    "SELECT h.run_id, h.experiment, h.host, h.pid, h.since
                 FROM firedrill_scope_holders h
                 WHERE h.scope = $1 AND EXISTS (
                     SELECT 1 FROM pg_locks l
                     WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid)",
                    &[&scope],
                ),
            )
            .await?;
        Ok(row.map(|r| {
            let since: chrono::DateTime<chrono::Utc> = r.get(4);
            Holder {
                run_id: r.get(0),
                experiment: r.get(1),
                host: r.get(2),
                pid: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
                since: since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }
        }))
    }
}
