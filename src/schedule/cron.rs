//! Cron schedules evaluated in an IANA time zone.
//!
//! Guarantees, across daylight-saving transitions: fire times are strictly increasing, no
//! instant fires twice, a fixed-time schedule (`30 2 * * *`) fires exactly once on every
//! matching local date — in a spring-forward gap at the first instant after the gap, in a
//! fall-back overlap only in the first pass — while an interval schedule (`*/15 * * * *`)
//! follows real time. These are croner's documented rules; the tests below hold them.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A parsed 5-field cron expression bound to a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    cron: croner::Cron,
    tz: Tz,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CronError {
    #[error("invalid schedule `{expr}`: {message}")]
    Expr { expr: String, message: String },
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
}

impl CronSchedule {
    pub fn parse(expr: &str, time_zone: &str) -> Result<Self, CronError> {
        let tz = Tz::from_str(time_zone).map_err(|_| CronError::TimeZone(time_zone.into()))?;
        let bad = |message: String| CronError::Expr {
            expr: expr.into(),
            message,
        };
        // The loader's own check gives the friendly messages (and refuses macros, seconds
        // and years); croner parses what passed it.
        crate::experiment::check::cron(expr).map_err(|e| bad(e.message))?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| bad(e.to_string()))?;
        Ok(CronSchedule {
            expr: expr.into(),
            cron,
            tz,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`; `None` when the expression never
    /// matches again (such as `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t > after)
    }

    /// The last fire time at or before `at`.
    pub fn prev_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t <= at)
    }
}

/// What to do about the ticks between the last one considered and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Nothing fired since `since`.
    Nothing,
    /// Run for this tick (the latest one); older missed ticks are dropped, never replayed.
    Run { tick: DateTime<Utc>, dropped: usize },
    /// The latest tick is older than the starting deadline: skip it (and the older ones).
    Missed {
        tick: DateTime<Utc>,
        late_by: std::time::Duration,
    },
}

/// Ticks in `(since, now]`: at most one run, for the latest tick, and only within
/// `starting_deadline` of it. Pure; the daemon calls it after every wake-up.
pub fn due(
    schedule: &CronSchedule,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    starting_deadline: Option<std::time::Duration>,
) -> Due {
    let Some(latest) = schedule.prev_at_or_before(now).filter(|t| *t > since) else {
        return Due::Nothing;
    };
    let late_by = (now - latest).to_std().unwrap_or_default();
    if starting_deadline.is_some_and(|d| late_by > d) {
        return Due::Missed {
            tick: latest,
            late_by,
        };
    }
    let mut dropped = 0;
    let mut t = since;
    while let Some(n) = schedule.next_after(t).filter(|n| *n < latest) {
        dropped += 1;
        t = n;
        if dropped > 10_000 {
            break;
        }
    }
    Due::Run {
        tick: latest,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Duration, NaiveDate, TimeZone, Timelike};
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn fires(s: &CronSchedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        while let Some(n) = s.next_after(t) {
            if n > to {
                break;
            }
            out.push(n);
            t = n;
        }
        out
    }

    #[test]
    fn weekdays_by_name_in_a_zone() {
        let s = CronSchedule::parse("0 10 * * MON-FRI", "Europe/Berlin").unwrap();
        // Saturday 2026-03-07 → Monday 2026-03-09 10:00 CET = 09:00 UTC.
        assert_eq!(
            s.next_after(utc("2026-03-07T12:00:00Z")),
            Some(utc("2026-03-09T09:00:00Z"))
        );
        let n = CronSchedule::parse("0 10 * * 1-5", "Europe/Berlin").unwrap();
        assert_eq!(
            n.next_after(utc("2026-03-07T12:00:00Z")),
            Some(utc("2026-03-09T09:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_gap_runs_once_right_after_it() {
        // Berlin skips 02:00-03:00 on 2026-03-29.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let f = fires(&s, utc("2026-03-27T12:00:00Z"), utc("2026-03-31T12:00:00Z"));
        assert_eq!(f.len(), 4, "{f:?}");
        assert_eq!(
            f[1],
            utc("2026-03-29T01:00:00Z"),
            "03:00 CEST, the gap's end"
        );
    }

    #[test]
    fn fall_back_overlap_runs_once() {
        // New York repeats 01:00-02:00 on 2026-11-01.
        let s = CronSchedule::parse("30 1 * * *", "America/New_York").unwrap();
        let f = fires(&s, utc("2026-10-30T12:00:00Z"), utc("2026-11-03T12:00:00Z"));
        assert_eq!(f.len(), 4, "{f:?}");
        assert_eq!(f[1], utc("2026-11-01T05:30:00Z"), "the first 01:30 (EDT)");
    }

    #[test]
    fn missed_ticks_are_not_replayed() {
        let s = CronSchedule::parse("*/10 * * * *", "UTC").unwrap();
        let since = utc("2026-01-01T00:00:00Z");
        assert_eq!(
            due(&s, since, utc("2026-01-01T00:05:00Z"), None),
            Due::Nothing
        );
        assert_eq!(
            due(&s, since, utc("2026-01-01T00:41:00Z"), None),
            Due::Run {
                tick: utc("2026-01-01T00:40:00Z"),
                dropped: 3
            }
        );
        assert_eq!(
            due(
                &s,
                since,
                utc("2026-01-01T00:45:00Z"),
                Some(std::time::Duration::from_secs(60))
            ),
            Due::Missed {
                tick: utc("2026-01-01T00:40:00Z"),
                late_by: std::time::Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn rejects_what_crontab_would_not_take() {
        for bad in ["0 10 * *", "0 0 10 * * *", "@daily", "61 * * * *"] {
            assert!(CronSchedule::parse(bad, "UTC").is_err(), "{bad}");
        }
        assert!(matches!(
            CronSchedule::parse("0 * * * *", "Mars/Olympus"),
            Err(CronError::TimeZone(_))
        ));
    }

    const ZONES: [&str; 3] = ["Europe/Berlin", "America/New_York", "Australia/Sydney"];

    /// Starts a few days before a DST transition of one of the zones, in 2024-2030.
    fn around_transition() -> impl Strategy<Value = (usize, DateTime<Utc>)> {
        (0..ZONES.len(), 2024i32..2031, 0usize..2, 0i64..96).prop_map(|(z, year, which, h)| {
            // Berlin: last Sunday of March/October; New York: 2nd Sunday of March, 1st of
            // November; Sydney: 1st Sunday of April/October. Starting from the month's first
            // day and covering 5 weeks catches each.
            let month = match (z, which) {
                (0, 0) => 3,
                (0, _) => 10,
                (1, 0) => 3,
                (1, _) => 11,
                (_, 0) => 4,
                _ => 10,
            };
            let start = NaiveDate::from_ymd_opt(year, month, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| Utc.from_utc_datetime(&d))
                .unwrap_or_default();
            (z, start + Duration::hours(h))
        })
    }

    fn expr() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..60, 0u32..24).prop_map(|(m, h)| format!("{m} {h} * * *")),
            (0u32..60, 1u32..4).prop_map(|(m, h)| format!("{m} {h} * * *")),
            (0u32..60, 1u32..4).prop_map(|(m, h)| format!("{m} {h} * * MON-FRI")),
            (1u32..60).prop_map(|m| format!("*/{m} * * * *")),
            (0u32..60).prop_map(|m| format!("{m} * * * *")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn next_fire_is_strictly_increasing_and_matches((z, start) in around_transition(), e in expr()) {
            let s = CronSchedule::parse(&e, ZONES[z]).unwrap();
            let f = fires(&s, start, start + Duration::days(35));
            prop_assert!(!f.is_empty());
            for w in f.windows(2) {
                prop_assert!(w[0] < w[1], "{e} in {}: {:?} then {:?}", ZONES[z], w[0], w[1]);
            }
            // Every fire is after `start`, and `next_after(t - 1s)` finds `t` itself.
            for t in &f {
                prop_assert_eq!(s.next_after(*t - Duration::seconds(1)), Some(*t));
            }
        }

        #[test]
        fn fixed_time_fires_once_per_matching_local_day((z, start) in around_transition(), m in 0u32..60, h in 0u32..24) {
            let tz = Tz::from_str(ZONES[z]).unwrap();
            let s = CronSchedule::parse(&format!("{m} {h} * * *"), ZONES[z]).unwrap();
            let end = start + Duration::days(35);
            let f = fires(&s, start, end);
            let mut days: Vec<NaiveDate> = f.iter().map(|t| t.with_timezone(&tz).date_naive()).collect();
            let n = days.len();
            days.dedup();
            prop_assert_eq!(days.len(), n, "{} {} fired twice on a day: {:?}", m, h, f);
            // Every full local day in between has its run.
            let first = start.with_timezone(&tz).date_naive() + Duration::days(1);
            let last = end.with_timezone(&tz).date_naive() - Duration::days(1);
            let mut d = first;
            while d < last {
                prop_assert!(days.contains(&d), "{} {} skipped {} in {}: {:?}", m, h, d, ZONES[z], f);
                d += Duration::days(1);
            }
            // Where the local time exists, it is the time the run happens.
            for t in &f {
                let l = t.with_timezone(&tz);
                if l.hour() == h {
                    prop_assert_eq!(l.minute(), m);
                }
                let _ = l.weekday();
            }
        }
    }
}
