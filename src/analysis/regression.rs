//! The recovery regression gate: did recovery get slower than a baseline by more than a margin,
//! with statistical support?
//!
//! The question is one-sided: "is this run's TTR larger than the baseline's TTR × (1 + margin)?".
//! We answer it with a Mann–Whitney U test of this run's trial TTRs against the baseline TTRs
//! scaled by `1 + margin`. The test only assumes the samples are independent; it needs no normal
//! distribution (recovery times are skewed) and is robust to one slow outlier. A run fails the
//! gate only when the test rejects "not slower than the margin allows" at `alpha`; a difference
//! inside the noise passes with a note that says so.
//!
//! p-values are exact (the permutation distribution of the rank sum, with mid-ranks for ties)
//! while the pooled sample is small, and from the normal approximation with tie correction
//! beyond that. Pure functions: no I/O, no clocks.

use std::time::Duration;

use crate::timeline::human;

/// Past this many values in both samples together the exact distribution is replaced by the
/// normal approximation (which is excellent there, and the exact table grows quadratically).
const EXACT_UP_TO: usize = 60;

/// What the gate found.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub current_n: usize,
    pub baseline_n: usize,
    pub current_median: Duration,
    pub baseline_median: Duration,
    /// current median / baseline median.
    pub ratio: f64,
    /// The allowed slowdown, e.g. 0.2 for 20%.
    pub margin: f64,
    /// One-sided p-value of "current is slower than baseline × (1 + margin)".
    pub p_value: f64,
    pub alpha: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Slower than the margin allows, with statistical support: the gate fails.
    Regressed,
    /// Any difference is within the margin or within the noise.
    WithinNoise,
    /// Even the most extreme result could not reach `alpha` with this many values.
    TooFewSamples,
    /// One side has no recovery time at all.
    NoData,
}

impl Comparison {
    pub fn failed(&self) -> bool {
        self.verdict == Verdict::Regressed
    }

    /// The verdict in plain words, with its evidence.
    pub fn explain(&self) -> String {
        let pct = self.margin * 100.0;
        let evidence = format!(
            "median TTR {} over n={} vs baseline {} over n={} ({:+.0}%); Mann–Whitney one-sided p={:.3}",
            human(self.current_median),
            self.current_n,
            human(self.baseline_median),
            self.baseline_n,
            (self.ratio - 1.0) * 100.0,
            self.p_value
        );
        match self.verdict {
            Verdict::Regressed => format!(
                "recovery regressed: slower than the baseline by more than the {pct:.0}% margin ({evidence} < {})",
                self.alpha
            ),
            Verdict::WithinNoise => format!(
                "no regression: the difference is within the {pct:.0}% margin or the noise ({evidence})"
            ),
            Verdict::TooFewSamples => format!(
                "cannot tell: too few recovery times to show a regression at p < {} ({evidence}); run more trials (--repeat) or keep more baseline runs",
                self.alpha
            ),
            Verdict::NoData => format!(
                "cannot compare: {} recovery time(s) in this run, {} in the baseline",
                self.current_n, self.baseline_n
            ),
        }
    }
}

/// Compare this run's TTRs against the baseline's, allowing a slowdown of `margin` (0.2 = 20%).
pub fn compare(current: &[Duration], baseline: &[Duration], margin: f64, alpha: f64) -> Comparison {
    let cur: Vec<f64> = current.iter().map(Duration::as_secs_f64).collect();
    let base: Vec<f64> = baseline.iter().map(Duration::as_secs_f64).collect();
    let med = |v: &[Duration]| {
        let mut s = v.to_vec();
        s.sort_unstable();
        crate::analysis::stats::percentile(&s, 50.0)
    };
    let (cm, bm) = (med(current), med(baseline));
    let ratio = if bm.is_zero() {
        f64::INFINITY
    } else {
        cm.as_secs_f64() / bm.as_secs_f64()
    };
    let mut c = Comparison {
        current_n: cur.len(),
        baseline_n: base.len(),
        current_median: cm,
        baseline_median: bm,
        ratio,
        margin,
        p_value: 1.0,
        alpha,
        verdict: Verdict::NoData,
    };
    if cur.is_empty() || base.is_empty() {
        return c;
    }
    let scaled: Vec<f64> = base.iter().map(|b| b * (1.0 + margin)).collect();
    c.p_value = mann_whitney_greater(&cur, &scaled);
    c.verdict = if c.p_value < alpha {
        Verdict::Regressed
    } else if min_p_value(cur.len(), base.len()) >= alpha {
        Verdict::TooFewSamples
    } else {
        Verdict::WithinNoise
    };
    c
}

/// The smallest one-sided p-value possible with these sample sizes (no ties): 1 / C(n1+n2, n1).
pub fn min_p_value(n1: usize, n2: usize) -> f64 {
    1.0 / binomial(n1 + n2, n1)
}

fn binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// One-sided Mann–Whitney U test: the p-value of "values in `x` tend to be larger than in `y`".
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let ranks = mid_ranks(x, y);
    // Doubled ranks are integers, so the exact distribution can be tabulated.
    let r1: usize = ranks[..n1].iter().sum();
    if n1 + n2 <= EXACT_UP_TO {
        exact_upper_tail(&ranks, n1, r1)
    } else {
        normal_upper_tail(x, y, r1)
    }
}

/// Doubled mid-ranks of the pooled sample, `x` first then `y`.
fn mid_ranks(x: &[f64], y: &[f64]) -> Vec<usize> {
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let mut order: Vec<usize> = (0..pooled.len()).collect();
    order.sort_by(|&a, &b| pooled[a].total_cmp(&pooled[b]));
    let mut ranks = vec![0usize; pooled.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && pooled[order[j + 1]] == pooled[order[i]] {
            j += 1;
        }
        // ranks i+1..=j+1, their mean doubled: (i+1)+(j+1)
        for &k in &order[i..=j] {
            ranks[k] = i + j + 2;
        }
        i = j + 1;
    }
    ranks
}

/// P(rank sum of a random n1-subset ≥ observed), counting subsets by dynamic programming.
fn exact_upper_tail(ranks: &[usize], n1: usize, observed: usize) -> f64 {
    let max_sum: usize = ranks.iter().sum();
    // ways[k][s]: subsets of size k with doubled-rank sum s.
    let mut ways = vec![vec![0f64; max_sum + 1]; n1 + 1];
    ways[0][0] = 1.0;
    for &r in ranks {
        for k in (1..=n1).rev() {
            let (lo, hi) = ways.split_at_mut(k);
            let (prev, cur) = (&lo[k - 1], &mut hi[0]);
            for s in (r..=max_sum).rev() {
                cur[s] += prev[s - r];
            }
        }
    }
    let total: f64 = ways[n1].iter().sum();
    let tail: f64 = ways[n1][observed..].iter().sum();
    (tail / total).clamp(0.0, 1.0)
}

fn normal_upper_tail(x: &[f64], y: &[f64], doubled_r1: usize) -> f64 {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let n = n1 + n2;
    let u = doubled_r1 as f64 / 2.0 - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    // Tie correction: sum of (t³ - t) over groups of equal values.
    let mut pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < pooled.len() {
        let j = pooled[i..].iter().take_while(|v| **v == pooled[i]).count();
        let t = j as f64;
        ties += t * t * t - t;
        i += j;
    }
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    // Continuity correction toward the null.
    let z = (u - mean - 0.5) / var.sqrt();
    1.0 - std_normal_cdf(z)
}

/// Φ(z) from the complementary error function (Numerical Recipes' erfc approximation,
/// relative error below 1.2e-7: ample for a p-value compared with 0.05).
pub fn std_normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Parse a margin: `20%` or `0.2`.
pub fn parse_margin(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| format!("`{s}` is not a margin like 20% or 0.2"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("margin `{s}` must be between 0% and 10000%"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Recovery times around `median_s`, log-normally spread by `spread` (skewed like real TTRs).
    fn draw(rng: &mut ChaCha8Rng, n: usize, median_s: f64, spread: f64) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                // Box–Muller from two uniforms.
                let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                Duration::from_secs_f64(median_s * (spread * z).exp())
            })
            .collect()
    }

    #[test]
    fn a_two_fold_slowdown_fails_the_gate() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut failed = 0;
        for _ in 0..200 {
            let base = draw(&mut rng, 10, 1.0, 0.15);
            let cur = draw(&mut rng, 10, 2.0, 0.15);
            let c = compare(&cur, &base, 0.2, 0.05);
            failed += c.failed() as usize;
        }
        assert!(
            failed >= 190,
            "2x slowdown caught in only {failed}/200 draws"
        );
    }

    #[test]
    fn noise_within_five_percent_passes() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut failed = 0;
        for _ in 0..200 {
            let base = draw(&mut rng, 10, 1.0, 0.05);
            let cur = draw(&mut rng, 10, 1.03, 0.05);
            let c = compare(&cur, &base, 0.2, 0.05);
            failed += c.failed() as usize;
            assert_ne!(c.verdict, Verdict::TooFewSamples);
        }
        assert!(
            failed <= 2,
            "noise flagged as a regression in {failed}/200 draws"
        );
    }

    #[test]
    fn a_slowdown_inside_the_margin_passes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut failed = 0;
        for _ in 0..200 {
            let base = draw(&mut rng, 12, 1.0, 0.1);
            let cur = draw(&mut rng, 12, 1.1, 0.1);
            failed += compare(&cur, &base, 0.2, 0.05).failed() as usize;
        }
        assert!(failed <= 10, "10% slower flagged in {failed}/200 draws");
    }

    #[test]
    fn one_trial_cannot_show_a_regression_and_says_so() {
        let base: Vec<_> = (0..5).map(|i| Duration::from_millis(1000 + i)).collect();
        let c = compare(&[Duration::from_secs(10)], &base, 0.2, 0.05);
        assert_eq!(c.verdict, Verdict::TooFewSamples);
        assert!(c.explain().contains("--repeat"), "{}", c.explain());
        assert!(!c.failed());
    }

    #[test]
    fn exact_p_values_match_the_tables() {
        // x entirely above y, 3 vs 3: 1 / C(6,3) = 0.05.
        let p = mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        assert!((p - 0.05).abs() < 1e-12, "{p}");
        // identical samples: about one half, inclusive of the observed value.
        let p = mann_whitney_greater(&[1.0, 1.0], &[1.0, 1.0]);
        assert!((p - 1.0).abs() < 1e-12, "{p}");
        let p = mann_whitney_greater(&[1.0, 3.0], &[2.0, 4.0]);
        // rank sum of x = 1+3 = 4; subsets of {1,2,3,4} of size 2 with sum ≥ 4: 5 of 6.
        assert!((p - 5.0 / 6.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn the_normal_approximation_agrees_with_the_exact_tail() {
        let x: Vec<f64> = (0..30).map(|i| 1.0 + i as f64 * 0.07).collect();
        let y: Vec<f64> = (0..30).map(|i| 0.9 + i as f64 * 0.05).collect();
        let ranks = mid_ranks(&x, &y);
        let r1: usize = ranks[..30].iter().sum();
        let exact = exact_upper_tail(&ranks, 30, r1);
        let approx = normal_upper_tail(&x, &y, r1);
        assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
    }

    #[test]
    fn margins_parse_as_percent_or_fraction() {
        assert_eq!(parse_margin("20%"), Ok(0.2));
        assert_eq!(parse_margin("0.5"), Ok(0.5));
        assert!(parse_margin("fast").is_err());
    }
}
