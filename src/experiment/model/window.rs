//! Time windows (`Mon-Fri 10:00-16:00`) and blackouts (`2026-12-24`,
//! `2026-12-20..2027-01-06`) in an environment's local time.
//!
//! A window that ends at or before it starts crosses midnight (`Fri 22:00-02:00`): it belongs
//! to the day it starts on, so that example allows Friday 22:00 to Saturday 02:00. Ends are
//! exclusive. A blackout covers whole local dates, both ends included; it wins over windows.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Weekday};

/// Days of the week a window starts on, as a bit set (bit 0 = Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days(u8);

impl Days {
    pub const ALL: Days = Days(0x7f);

    fn contains(self, d: Weekday) -> bool {
        self.0 & (1 << d.num_days_from_monday()) != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub days: Days,
    pub start: NaiveTime,
    pub end: NaiveTime,
    text: String,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blackout {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl fmt::Display for Blackout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}..{}", self.from, self.to)
        }
    }
}

impl serde::Serialize for Blackout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

const WINDOW_HELP: &str =
    "write optional days and a time range, e.g. `Mon-Fri 10:00-16:00` or `Sat,Sun 22:00-02:00`";
const BLACKOUT_HELP: &str =
    "write a date or an inclusive range, e.g. `2026-12-24` or `2026-12-20..2027-01-06`";

/// A parse failure with a hint, for the loader's diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub help: &'static str,
}

fn weekday(s: &str) -> Option<Weekday> {
    let l = s.to_ascii_lowercase();
    let all = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    all.into_iter().find(|d| {
        let name = d.to_string().to_ascii_lowercase();
        l == name || (l.len() >= 3 && long_name(*d).starts_with(&l))
    })
}

fn long_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

fn days(text: &str) -> Result<Days, String> {
    let mut bits = 0u8;
    for item in text.split(',') {
        let item = item.trim();
        let unknown = |s: &str| format!("unknown day `{s}` (use Mon, Tue, ... Sun)");
        match item.split_once('-') {
            Some((a, b)) => {
                let a = weekday(a).ok_or_else(|| unknown(a))?;
                let b = weekday(b).ok_or_else(|| unknown(b))?;
                // Ranges may wrap the week: `Fri-Mon`.
                let mut d = a;
                loop {
                    bits |= 1 << d.num_days_from_monday();
                    if d == b {
                        break;
                    }
                    d = d.succ();
                }
            }
            None => {
                bits |= 1
                    << weekday(item)
                        .ok_or_else(|| unknown(item))?
                        .num_days_from_monday()
            }
        }
    }
    Ok(Days(bits))
}

fn time(s: &str) -> Result<NaiveTime, String> {
    if s == "24:00" {
        // The end of the day; ends are exclusive, so the last nanosecond stands in for it.
        return NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).ok_or_else(String::new);
    }
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("`{s}` is not a time HH:MM"))
}

impl Window {
    pub fn parse(text: &str) -> Result<Window, ParseError> {
        let err = |message: String| ParseError {
            message: format!("invalid window `{text}`: {message}"),
            help: WINDOW_HELP,
        };
        let mut parts = text.split_whitespace();
        let (d, range) = match (parts.next(), parts.next(), parts.next()) {
            (Some(r), None, None) => (Days::ALL, r),
            (Some(d), Some(r), None) => (days(d).map_err(err)?, r),
            _ => return Err(err("expected `[DAYS] HH:MM-HH:MM`".into())),
        };
        let (a, b) = range
            .split_once('-')
            .ok_or_else(|| err(format!("`{range}` is not a range HH:MM-HH:MM")))?;
        let (start, end) = (time(a).map_err(err)?, time(b).map_err(err)?);
        if start == end {
            return Err(err("the window is empty (start equals end)".into()));
        }
        Ok(Window {
            days: d,
            start,
            end,
            text: text.to_string(),
        })
    }

    /// Whether the local wall-clock time falls in this window.
    pub fn contains_local(&self, at: chrono::NaiveDateTime) -> bool {
        let (day, t) = (at.date().weekday(), at.time());
        if self.start < self.end {
            self.days.contains(day) && t >= self.start && t < self.end
        } else {
            // Crosses midnight: the evening part on a listed day, or the morning part on the
            // day after a listed day.
            (self.days.contains(day) && t >= self.start)
                || (self.days.contains(day.pred()) && t < self.end)
        }
    }
}

impl Blackout {
    pub fn parse(text: &str) -> Result<Blackout, ParseError> {
        let err = |message: String| ParseError {
            message: format!("invalid blackout `{text}`: {message}"),
            help: BLACKOUT_HELP,
        };
        let date = |s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| err(format!("`{}` is not a date YYYY-MM-DD", s.trim())))
        };
        let (from, to) = match text.split_once("..") {
            Some((a, b)) => (date(a)?, date(b)?),
            None => (date(text)?, date(text)?),
        };
        if to < from {
            return Err(err("the range runs backwards".into()));
        }
        Ok(Blackout { from, to })
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.from <= d && d <= self.to
    }
}

/// Why a time is not allowed, for logs and `firedrill status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    Blackout(Blackout),
    OutsideWindows,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Blackout(b) => write!(f, "blackout {b}"),
            Closed::OutsideWindows => f.write_str("outside every window"),
        }
    }
}

/// Whether a drill may start at `at`: not in a blackout, and inside a window when there are
/// any. Pure: the zone comes with `at`.
pub fn open_at<Tz: TimeZone>(
    at: &DateTime<Tz>,
    windows: &[Window],
    blackouts: &[Blackout],
) -> Result<(), Closed> {
    let local = at.naive_local();
    if let Some(b) = blackouts.iter().find(|b| b.contains(local.date())) {
        return Err(Closed::Blackout(b.clone()));
    }
    if windows.is_empty() || windows.iter().any(|w| w.contains_local(local)) {
        Ok(())
    } else {
        Err(Closed::OutsideWindows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn local(s: &str) -> chrono::NaiveDateTime {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap_or_default()
    }

    #[test]
    fn weekday_window() {
        let w = Window::parse("Mon-Fri 10:00-16:00").unwrap();
        // 2026-11-23 is a Monday.
        assert!(w.contains_local(local("2026-11-23 10:00")));
        assert!(w.contains_local(local("2026-11-27 15:59")));
        assert!(
            !w.contains_local(local("2026-11-23 16:00")),
            "end is exclusive"
        );
        assert!(!w.contains_local(local("2026-11-23 09:59")));
        assert!(!w.contains_local(local("2026-11-28 12:00")), "Saturday");
    }

    #[test]
    fn window_crossing_midnight_belongs_to_its_start_day() {
        let w = Window::parse("Fri 22:00-02:00").unwrap();
        assert!(
            w.contains_local(local("2026-11-27 22:00")),
            "Friday evening"
        );
        assert!(
            w.contains_local(local("2026-11-28 01:59")),
            "Saturday small hours"
        );
        assert!(!w.contains_local(local("2026-11-28 02:00")));
        assert!(
            !w.contains_local(local("2026-11-28 23:00")),
            "Saturday evening"
        );
        assert!(
            !w.contains_local(local("2026-11-27 01:00")),
            "Friday small hours"
        );
        let every = Window::parse("23:30-00:30").unwrap();
        assert!(every.contains_local(local("2026-11-23 00:10")));
        assert!(every.contains_local(local("2026-11-23 23:45")));
        assert!(!every.contains_local(local("2026-11-23 12:00")));
    }

    #[test]
    fn week_wrapping_days_and_names() {
        let w = Window::parse("sat-mon 00:00-24:00").unwrap();
        assert!(w.contains_local(local("2026-11-29 12:00")), "Sunday");
        assert!(w.contains_local(local("2026-11-23 12:00")), "Monday");
        assert!(!w.contains_local(local("2026-11-24 12:00")), "Tuesday");
        assert!(Window::parse("Monday,Wednesday 09:00-12:00").is_ok());
    }

    #[test]
    fn bad_windows_and_blackouts() {
        for bad in [
            "Mon-Fry 10:00-16:00",
            "10:00",
            "10-16",
            "Mon 10:00-10:00",
            "a b c",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
        for bad in ["2026-13-01", "2026-12-24..2026-12-20", "tomorrow"] {
            assert!(Blackout::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blackouts_win_over_windows_in_local_time() {
        let tz: Tz = "Australia/Sydney".parse().unwrap();
        let windows = [Window::parse("00:00-24:00").unwrap()];
        let blackouts = [
            Blackout::parse("2026-12-24").unwrap(),
            Blackout::parse("2026-12-30..2027-01-02").unwrap(),
        ];
        // 2026-12-23T14:00Z is already the 24th in Sydney.
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 12, 23, 14, 0, 0)
            .unwrap()
            .with_timezone(&tz);
        assert_eq!(
            open_at(&at, &windows, &blackouts),
            Err(Closed::Blackout(blackouts[0].clone()))
        );
        let at = tz.with_ymd_and_hms(2027, 1, 2, 23, 59, 0).unwrap();
        assert!(
            open_at(&at, &windows, &blackouts).is_err(),
            "last day included"
        );
        let at = tz.with_ymd_and_hms(2027, 1, 3, 0, 0, 0).unwrap();
        assert_eq!(open_at(&at, &windows, &blackouts), Ok(()));
        let at = tz.with_ymd_and_hms(2027, 1, 3, 0, 0, 0).unwrap();
        let office = [Window::parse("Mon-Fri 10:00-16:00").unwrap()];
        assert_eq!(open_at(&at, &office, &[]), Err(Closed::OutsideWindows));
        assert_eq!(open_at(&at, &[], &[]), Ok(()), "no windows: always open");
    }
}
