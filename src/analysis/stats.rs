//! Statistics over trials and runs. Never a mean without its n.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timeline::secs;

/// Summary of a set of durations (TTRs of trials, TTDs, …).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    #[serde(rename = "mean_s", with = "secs")]
    pub mean: Duration,
    #[serde(rename = "median_s", with = "secs")]
    pub median: Duration,
    #[serde(rename = "p90_s", with = "secs")]
    pub p90: Duration,
    #[serde(rename = "min_s", with = "secs")]
    pub min: Duration,
    #[serde(rename = "max_s", with = "secs")]
    pub max: Duration,
}

impl Stats {
    /// `None` for an empty set: there is no mean of nothing.
    pub fn of(values: &[Duration]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_unstable();
        let n = v.len();
        let total: Duration = v.iter().sum();
        Some(Stats {
            n,
            mean: total / n as u32,
            median: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Nearest-rank percentile of sorted values: always one of the observed values, which is what a
/// person expects from "p90 of 5 trials".
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn summary_of_trials() {
        let st = Stats::of(&s(&[500, 100, 300, 200, 400])).unwrap();
        assert_eq!(st.n, 5);
        assert_eq!(st.mean, Duration::from_millis(300));
        assert_eq!(st.median, Duration::from_millis(300));
        assert_eq!(st.p90, Duration::from_millis(500));
        assert_eq!(
            (st.min, st.max),
            (Duration::from_millis(100), Duration::from_millis(500))
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = s(&(1..=10).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(5));
        assert_eq!(percentile(&v, 90.0), Duration::from_millis(9));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(10));
        assert_eq!(percentile(&v, 0.0), Duration::from_millis(1));
    }

    #[test]
    fn no_mean_of_nothing() {
        assert!(Stats::of(&[]).is_none());
    }
}
