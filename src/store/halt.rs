//! The halt lever in the store: one row. `firedrill halt` sets it beside the state
//! directory's file; every runner that uses the store refuses to start while it is there and
//! polls it while running (the drill stops and reverts within a second of it appearing).

use super::{Store, StoreError};
use crate::safety::halt::Halt;

impl Store {
    /// The halt in force, if any.
    pub async fn halt(&self) -> Result<Option<Halt>, StoreError> {
        let row = self
            .bounded(
                "reading the halt",
                self.client().query_opt(
                    "SELECT reason, since, by_whom FROM firedrill_halt WHERE one",
                    &[],
                ),
            )
            .await?;
        Ok(row.map(|r| {
            let since: chrono::DateTime<chrono::Utc> = r.get(1);
            Halt {
                reason: r.get(0),
                since: since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                by: format!("{} (store)", r.get::<_, String>(2)),
            }
        }))
    }

    /// Pull the lever for every runner of the store (replacing an earlier reason).
    pub async fn set_halt(&self, halt: &Halt) -> Result<(), StoreError> {
        let since = chrono::DateTime::parse_from_rfc3339(&halt.since)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        let by = format!("{} on {}", halt.by, super::host());
        self.bounded(
            "setting the halt",
            self.client().execute(
                "INSERT INTO firedrill_halt (one, reason, since, by_whom) VALUES (true, $1, $2, $3)
                 ON CONFLICT (one) DO UPDATE SET reason = $1, since = $2, by_whom = $3",
                &[&halt.reason, &since, &by],
            ),
        )
        .await?;
        Ok(())
    }

    /// Lift the lever; `false` when there was none.
    pub async fn release_halt(&self) -> Result<bool, StoreError> {
        let n = self
            .bounded(
                "releasing the halt",
                self.client().execute("DELETE FROM firedrill_halt", &[]),
            )
            .await?;
        Ok(n > 0)
    }
}
