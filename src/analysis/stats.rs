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

/// Check latency of a probe over a phase (before, during, after the fault), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    #[serde(rename = "p50_ms")]
    pub p50: f64,
    #[serde(rename = "p90_ms")]
    pub p90: f64,
    #[serde(rename = "p99_ms")]
    pub p99: f64,
    #[serde(rename = "max_ms")]
    pub max: f64,
}

impl LatencySummary {
    /// The percentiles of a histogram of check latencies in µs, in milliseconds.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| (us as f64) / 1000.0;
        LatencySummary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// The fraction of failed checks among `oks` (`true`: passed), 0..=1; `None` without checks.
pub fn failure_rate(oks: impl IntoIterator<Item = bool>) -> Option<f64> {
    let (mut n, mut failed) = (0usize, 0usize);
    for ok in oks {
        n += 1;
        failed += usize::from(!ok);
    }
    (n > 0).then(|| failed as f64 / n as f64)
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
    fn failure_rate_of_checks() {
        assert_eq!(failure_rate([true, false, false, true]), Some(0.5));
        assert_eq!(failure_rate([]), None);
    }

    #[test]
    fn latency_percentiles_in_milliseconds() {
        let mut h = hdrhistogram::Histogram::<u64>::new(2).unwrap();
        for us in 1..=100u64 {
            h.record(us * 1000).unwrap();
        }
        let l = LatencySummary::of(&h);
        assert_eq!(l.count, 100);
        assert!(
            (l.p50 - 50.0).abs() < 1.0 && (l.p99 - 99.0).abs() < 1.0,
            "{l:?}"
        );
        assert!((l.max - 100.0).abs() < 1.0, "{l:?}");
        assert_eq!(
            LatencySummary::of(&hdrhistogram::Histogram::<u64>::new(2).unwrap()).count,
            0
        );
    }

    #[test]
    fn no_mean_of_nothing() {
        assert!(Stats::of(&[]).is_none());
    }
}
