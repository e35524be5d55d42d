//! Scheduled drills: cron in a time zone, windows and blackouts, jitter, the promotion gate
//! (staging passed → production may run), and the `firedrill schedule` daemon.
//!
//! The deciding parts are pure functions over times and report records ([`cron`], [`window`],
//! [`promotion`]); the daemon only wires them to a clock and the drill runner.

pub mod catalog;
pub mod cron;
pub mod daemon;
pub mod deploy;
pub mod metrics;
pub mod notify;
pub mod promotion;
pub mod status;
pub mod window;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// When an environment lets scheduled drills start (`firedrill.yaml`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rules {
    /// Empty: any time.
    pub windows: Vec<window::Window>,
    pub blackouts: Vec<window::Blackout>,
    /// Each run starts a random delay in `[0, jitter]` after its tick (seeded, reproducible).
    pub jitter: Duration,
    /// A tick later than this (daemon down, clock jump) is skipped, never replayed.
    pub starting_deadline: Option<Duration>,
    pub concurrency: Concurrency,
    /// Passing staging runs needed before promotion (`passes`, default 1).
    pub promote_passes: u32,
}

/// What a tick does while the same drill still runs in the same environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// Skip the tick and log it (the only policy: two copies of a drill would measure
    /// each other's faults).
    #[default]
    Forbid,
}

impl Rules {
    pub fn passes(&self) -> u32 {
        self.promote_passes.max(1)
    }
}

/// The first tick after `after` that falls in a window and outside every blackout (looking
/// at most a thousand ticks ahead).
pub fn next_open(
    schedule: &cron::CronSchedule,
    rules: &Rules,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let mut t = after;
    for _ in 0..1000 {
        t = schedule.next_after(t)?;
        let local = t.with_timezone(&schedule.time_zone());
        if window::open_at(&local, &rules.windows, &rules.blackouts).is_ok() {
            return Some(t);
        }
    }
    None
}

/// The jitter delay of one tick: a pure function of the seed, the drill, the environment and
/// the tick, so a restart of the daemon picks the same delay.
pub fn jitter_for(
    seed: u64,
    experiment: &str,
    environment: &str,
    tick: chrono::DateTime<chrono::Utc>,
    bound: Duration,
) -> Duration {
    if bound.is_zero() {
        return Duration::ZERO;
    }
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(experiment.as_bytes());
    h.update([0]);
    h.update(environment.as_bytes());
    h.update(tick.timestamp().to_le_bytes());
    let digest: [u8; 32] = h.finalize().into();
    let mut rng = rand_chacha::ChaCha8Rng::from_seed(digest);
    let ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded_and_reproducible() {
        let tick = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let bound = Duration::from_secs(300);
        let a = jitter_for(7, "kill", "staging", tick, bound);
        assert_eq!(a, jitter_for(7, "kill", "staging", tick, bound));
        assert!(a <= bound);
        let spread: std::collections::BTreeSet<_> = (0..50)
            .map(|s| jitter_for(s, "kill", "staging", tick, bound))
            .collect();
        assert!(spread.len() > 40, "seeds spread the delay");
        assert_eq!(
            jitter_for(7, "kill", "staging", tick, Duration::ZERO),
            Duration::ZERO
        );
    }
}
