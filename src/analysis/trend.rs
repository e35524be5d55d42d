//! Whether recovery is getting slower or faster over runs: Theil–Sen slope of the per-run
//! median TTR over days, judged by a Mann–Kendall test (Theil–Sen always finds *some* slope).
//! Pure over (time, value) points; the views explain it in words ([`Trend::explain`] lives in
//! the history view).

use chrono::{DateTime, Utc};

/// Which way recovery is heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Slower,
    Faster,
    Steady,
    /// Fewer than [`MIN_TREND_RUNS`] runs with a recovery time.
    TooFew,
}

/// A trend needs at least this many runs with a TTR.
pub const MIN_TREND_RUNS: usize = 4;
/// The trend looks at this many most recent runs.
pub const TREND_WINDOW: usize = 20;
/// A fitted change smaller than this fraction of the median TTR is "steady".
pub const STEADY_WITHIN: f64 = 0.10;
/// A trend is only called when the Mann–Kendall test rejects "no trend" at this level:
/// Theil–Sen always finds *some* slope, even in pure noise.
pub const TREND_ALPHA: f64 = 0.05;

#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub direction: Direction,
    /// Runs the trend was fitted on.
    pub runs: usize,
    /// Theil–Sen slope, seconds of TTR per day.
    pub slope_per_day: f64,
    /// Fitted TTR at the first and the last run of the window, seconds.
    pub from: f64,
    pub to: f64,
    /// Two-sided Mann–Kendall p-value of a monotonic trend (1 when not computed).
    pub p_value: f64,
}

impl Trend {
    /// The fitted change over the window, in percent of the fitted first value (0 when that
    /// is not positive).
    pub fn change_percent(&self) -> f64 {
        if self.from > 0.0 {
            (self.to - self.from) / self.from * 100.0
        } else {
            0.0
        }
    }

    /// The Theil–Sen slope in seconds of TTR per week.
    pub fn slope_per_week(&self) -> f64 {
        self.slope_per_day * 7.0
    }
}

/// Theil–Sen estimator: the median of all pairwise slopes, and the median intercept. Robust to
/// a few wild runs, unlike least squares. `None` with fewer than two distinct x.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut slopes = Vec::new();
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if (b.0 - a.0).abs() > 1e-12 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    let slope = median(&mut slopes)?;
    let mut intercepts: Vec<f64> = points.iter().map(|(x, y)| y - slope * x).collect();
    Some((slope, median(&mut intercepts)?))
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The trend of a series of (time, seconds) points sorted by time (a drill's per-run median
/// TTR): Theil–Sen over days on the last [`TREND_WINDOW`] points, called only when
/// Mann–Kendall rejects "no trend" and the fitted change is at least [`STEADY_WITHIN`] of the
/// typical value.
pub fn fit(pts: &[(DateTime<Utc>, f64)]) -> Trend {
    let recent = &pts[pts.len().saturating_sub(TREND_WINDOW)..];
    let too_few = Trend {
        direction: Direction::TooFew,
        runs: recent.len(),
        slope_per_day: 0.0,
        from: 0.0,
        to: 0.0,
        p_value: 1.0,
    };
    if recent.len() < MIN_TREND_RUNS {
        return too_few;
    }
    let origin = recent[0].0;
    let xy: Vec<(f64, f64)> = recent
        .iter()
        .map(|(at, y)| ((*at - origin).num_milliseconds() as f64 / 86_400_000.0, *y))
        .collect();
    let Some((slope, icpt)) = theil_sen(&xy) else {
        return too_few;
    };
    let (x0, x1) = (xy[0].0, xy[xy.len() - 1].0);
    let (from, to) = (icpt + slope * x0, icpt + slope * x1);
    let mut ys: Vec<f64> = xy.iter().map(|p| p.1).collect();
    let typical = median(&mut ys).unwrap_or(0.0);
    let change = to - from;
    let ys: Vec<f64> = xy.iter().map(|p| p.1).collect();
    let p_value = mann_kendall(&ys);
    let direction =
        if typical <= 0.0 || change.abs() < STEADY_WITHIN * typical || p_value >= TREND_ALPHA {
            Direction::Steady
        } else if change > 0.0 {
            Direction::Slower
        } else {
            Direction::Faster
        };
    Trend {
        direction,
        runs: recent.len(),
        slope_per_day: slope,
        from,
        to,
        p_value,
    }
}

/// Two-sided Mann–Kendall test of a monotonic trend in a series (normal approximation with
/// continuity correction; ties reduce the variance). Returns the p-value of "no trend".
pub fn mann_kendall(y: &[f64]) -> f64 {
    let n = y.len();
    if n < 3 {
        return 1.0;
    }
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            s += match y[j].total_cmp(&y[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let mut sorted = y.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let t = sorted[i..].iter().take_while(|v| **v == sorted[i]).count();
        let t = t as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i += t as usize;
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if var <= 0.0 || s == 0 {
        return 1.0;
    }
    let z = (s.abs() as f64 - 1.0) / var.sqrt();
    (2.0 * (1.0 - super::regression::std_normal_cdf(z))).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + d * 86_400, 0).unwrap()
    }

    #[test]
    fn theil_sen_ignores_one_wild_point() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64, if i == 5 { 100.0 } else { 2.0 * i as f64 + 1.0 }))
            .collect();
        let (m, b) = theil_sen(&pts).unwrap();
        assert!((m - 2.0).abs() < 1e-9 && (b - 1.0).abs() < 1e-9, "{m} {b}");
    }

    #[test]
    fn mann_kendall_tells_a_rise_from_noise() {
        let rising: Vec<f64> = (0..10).map(|i| i as f64).collect();
        assert!(mann_kendall(&rising) < 0.001);
        assert_eq!(
            mann_kendall(&[1.0, 1.0, 1.0, 1.0]),
            1.0,
            "all ties: no trend"
        );
        assert_eq!(mann_kendall(&[1.0, 2.0]), 1.0, "too short to test");
    }

    #[test]
    fn fit_over_days_with_a_window() {
        // 30 runs, one a day, TTR rising by 0.1s a day: only the last 20 are fitted.
        let pts: Vec<_> = (0..30).map(|d| (day(d), 1.0 + 0.1 * d as f64)).collect();
        let t = fit(&pts);
        assert_eq!(t.direction, Direction::Slower);
        assert_eq!(t.runs, TREND_WINDOW);
        assert!((t.slope_per_day - 0.1).abs() < 1e-9, "{}", t.slope_per_day);
        assert!((t.from - 2.0).abs() < 1e-9 && (t.to - 3.9).abs() < 1e-9);
        assert!((t.change_percent() - 95.0).abs() < 1e-9);
        assert!((t.slope_per_week() - 0.7).abs() < 1e-9);
        assert_eq!(fit(&pts[..3]).direction, Direction::TooFew);
    }
}
