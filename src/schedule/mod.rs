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

use std::time::Duration;

use crate::experiment::model::schedule::Rules;
use crate::experiment::model::window;

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

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
