//! Numbers over trials: MTTR and TTD with their n, and which trials count.
//!
//! One definition, used by the executor (a run's `summary`), the CI regression gate (the
//! current run's TTRs and the baseline's), history (per run and over runs) and the promotion
//! gate's run summaries:
//! - a trial counts towards MTTR when it **recovered** and has a TTR (it had impact); its
//!   number is the TTR bracket's estimate ([`counted_ttr`]);
//! - every trial with a TTD counts towards the TTD statistics, recovered or not;
//! - a trial that recovered without impact is "no visible impact".

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{stats::percentile, Bracket, Stats, TrialVerdict};

/// The summary over a run's trials (the record's `summary`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub trials: usize,
    pub recovered: usize,
    pub objective_met: usize,
    /// Trials in which no recovery probe saw any impact.
    pub no_visible_impact: usize,
    /// Mean time to recover over the trials that had impact and recovered (with n).
    pub mttr: Option<Stats>,
    pub ttd: Option<Stats>,
}

/// The TTR a trial contributes to MTTR: its estimate when it recovered, else nothing. Every
/// reader of verdicts (live ones or a record's lean view) decides through this.
pub fn counted_ttr(recovered: bool, ttr: Option<Bracket>) -> Option<Duration> {
    ttr.filter(|_| recovered).map(|b| b.estimate)
}

/// The TTRs of the trials that recovered (the values MTTR is the mean of), in trial order.
pub fn recovered_ttrs<'a>(verdicts: impl IntoIterator<Item = &'a TrialVerdict>) -> Vec<Duration> {
    verdicts
        .into_iter()
        .filter_map(|v| counted_ttr(v.recovered, v.ttr))
        .collect()
}

/// The TTDs of the trials that saw impact, in trial order.
pub fn detected_ttds<'a>(verdicts: impl IntoIterator<Item = &'a TrialVerdict>) -> Vec<Duration> {
    verdicts.into_iter().filter_map(|v| v.ttd).collect()
}

/// The summary of `trials` trials, of which those with a verdict (an injection) are given.
pub fn summarize<'a>(
    trials: usize,
    verdicts: impl IntoIterator<Item = &'a TrialVerdict>,
) -> Summary {
    let verdicts: Vec<&TrialVerdict> = verdicts.into_iter().collect();
    Summary {
        trials,
        recovered: verdicts.iter().filter(|v| v.recovered).count(),
        objective_met: verdicts.iter().filter(|v| v.objective_met).count(),
        no_visible_impact: verdicts.iter().filter(|v| v.recovered && !v.impact).count(),
        mttr: Stats::of(&recovered_ttrs(verdicts.iter().copied())),
        ttd: Stats::of(&detected_ttds(verdicts.iter().copied())),
    }
}

/// The median (nearest rank) of a set of durations: a run's typical TTR in history and its
/// trend. `None` for an empty set.
pub fn median(values: &[Duration]) -> Option<Duration> {
    let mut v = values.to_vec();
    v.sort_unstable();
    (!v.is_empty()).then(|| percentile(&v, 50.0))
}

/// MTTR over runs (history): every counted trial of every run, one value each.
pub fn mttr_over_runs<'a>(runs: impl IntoIterator<Item = &'a [Duration]>) -> Option<Stats> {
    let ttrs: Vec<Duration> = runs.into_iter().flatten().copied().collect();
    Stats::of(&ttrs)
}

/// How long a drill has gone without a run (`since` the last one), when longer than `after`.
pub fn overdue(since: Duration, after: Duration) -> Option<Duration> {
    (since > after).then_some(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn verdict(ttr_ms: Option<u64>, ttd_ms: Option<u64>, recovered: bool) -> TrialVerdict {
        TrialVerdict {
            ttd: ttd_ms.map(ms),
            ttd_bracket: None,
            ttr: ttr_ms.map(|t| Bracket::new(ms(t), ms(t))),
            recovered,
            impact: ttd_ms.is_some(),
            objective_met: recovered && ttr_ms.is_none_or(|t| t <= 1000),
        }
    }

    #[test]
    fn only_recovered_trials_count_towards_mttr() {
        let v = [
            verdict(Some(800), Some(100), true),
            // Still failing when judged: its bracket (if any) is not a time to recover.
            verdict(Some(5000), Some(200), false),
            verdict(Some(1200), Some(300), true),
            // No impact: recovered, but nothing to recover from.
            verdict(None, None, true),
        ];
        assert_eq!(recovered_ttrs(&v), [ms(800), ms(1200)]);
        let s = summarize(5, &v);
        assert_eq!(
            s.trials, 5,
            "trials without a verdict still count as trials"
        );
        assert_eq!(s.recovered, 3);
        assert_eq!(s.objective_met, 2);
        assert_eq!(s.no_visible_impact, 1);
        let mttr = s.mttr.unwrap();
        assert_eq!((mttr.n, mttr.mean), (2, ms(1000)));
        // TTD counts every trial that saw impact, recovered or not.
        let ttd = s.ttd.unwrap();
        assert_eq!((ttd.n, ttd.mean), (3, ms(200)));
    }

    #[test]
    fn no_mttr_without_a_recovery() {
        let s = summarize(0, &[]);
        assert!(s.mttr.is_none() && s.ttd.is_none());
        assert_eq!(counted_ttr(false, Some(Bracket::new(ms(1), ms(3)))), None);
        assert_eq!(
            counted_ttr(true, Some(Bracket::new(ms(1), ms(3)))),
            Some(ms(2))
        );
    }

    #[test]
    fn over_runs_every_counted_trial_is_one_value() {
        let runs = [vec![ms(1000), ms(1200)], vec![], vec![ms(1400)]];
        let m = mttr_over_runs(runs.iter().map(Vec::as_slice)).unwrap();
        assert_eq!((m.n, m.mean, m.max), (3, ms(1200), ms(1400)));
        assert_eq!(overdue(ms(10), ms(10)), None, "on the dot is not overdue");
        assert_eq!(overdue(ms(11), ms(10)), Some(ms(11)));
    }

    #[test]
    fn median_is_an_observed_value() {
        assert_eq!(median(&[ms(300), ms(100), ms(200)]), Some(ms(200)));
        assert_eq!(median(&[ms(100), ms(200)]), Some(ms(100)));
        assert_eq!(median(&[]), None);
    }
}
