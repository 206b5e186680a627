//! Time windows: `[start, end)` in unix seconds (UTC), Kubecost's `window=` syntax, and the
//! extraction planner.
//!
//! Kubecost's parser (OpenCost `core/pkg/opencost/window.go`) accepts keywords (`today`,
//! `yesterday`, `week`, `lastweek`, `month`, `lastmonth`), durations (`24h`, `7d`, `2w`, `30m`),
//! durations with an offset (`7d offset 7d`), unix pairs (`1586822400,1586908800`) and RFC3339
//! pairs with a `Z` suffix. [`parse_kubecost_window`] accepts the same, always in UTC, with the
//! current time passed in; [`Window::to_kubecost_param`] writes the RFC3339 pair that every
//! Kubecost and OpenCost version accepts.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// Seconds in an hour.
pub const HOUR: i64 = 3_600;
/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// A half-open time interval `[start, end)` in unix seconds, UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// The grain of an extracted window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Hour,
    Day,
}

impl Resolution {
    /// Returns the resolution's length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Hour => HOUR,
            Resolution::Day => DAY,
        }
    }

    /// Returns the name stored for this resolution (`1h` or `1d`, as Kubecost writes steps).
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
        }
    }

    /// Parses `1h` or `1d`.
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "1h" => Some(Resolution::Hour),
            "1d" => Some(Resolution::Day),
            _ => None,
        }
    }
}

/// Why a window string or range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("illegal window: {0}")]
    Illegal(String),
    #[error("window end {end} is not after its start {start}")]
    Empty { start: i64, end: i64 },
    #[error("timestamp out of range: {0}")]
    OutOfRange(i64),
}

impl Window {
    /// Makes a window, refusing an empty or inverted one.
    pub fn new(start: i64, end: i64) -> Result<Window, WindowError> {
        if end <= start {
            return Err(WindowError::Empty { start, end });
        }
        Ok(Window { start, end })
    }

    /// Returns the window's length in seconds.
    pub fn seconds(&self) -> i64 {
        self.end - self.start
    }

    /// Returns the window's length in hours.
    pub fn hours(&self) -> f64 {
        self.seconds() as f64 / HOUR as f64
    }

    /// Returns true when `other` lies entirely inside this window.
    pub fn contains(&self, other: &Window) -> bool {
        other.start >= self.start && other.end <= self.end
    }

    /// Returns true when `t` (unix seconds) lies in `[start, end)`.
    pub fn contains_instant(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }

    /// Returns true when the two windows share any instant.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Splits the window into consecutive pieces of `step` seconds (the last may be shorter).
    pub fn split(&self, step: i64) -> Vec<Window> {
        let step = step.max(1);
        let mut out = Vec::new();
        let mut s = self.start;
        while s < self.end {
            let e = (s + step).min(self.end);
            out.push(Window { start: s, end: e });
            s = e;
        }
        out
    }

    /// Writes the window as Kubecost's RFC3339 pair `YYYY-MM-DDTHH:MM:SSZ,YYYY-MM-DDTHH:MM:SSZ`
    /// (no fractional seconds, `Z` only: the only form every version's regex accepts).
    pub fn to_kubecost_param(&self) -> String {
        format!(
            "{},{}",
            format_rfc3339(self.start),
            format_rfc3339(self.end)
        )
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}..{}",
            format_rfc3339(self.start),
            format_rfc3339(self.end)
        )
    }
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(ts: i64) -> String {
    match Utc.timestamp_opt(ts, 0).single() {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => format!("@{ts}"),
    }
}

/// Parses an RFC3339 timestamp (any offset, optional fraction) into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp())
}

/// Parses a timestamp given on a command line or in config: RFC3339, a date `YYYY-MM-DD`
/// (midnight UTC), or unix seconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    None
}

/// Floors unix seconds to a multiple of `step` seconds.
pub fn floor_to(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}

/// Parses a duration such as `30m`, `1h`, `7d`, `2w` into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = num.parse().ok()?;
    if n < 0 {
        return None;
    }
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => HOUR,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn midnight(ts: i64) -> i64 {
    floor_to(ts, DAY)
}

fn month_start(ts: i64) -> Result<i64, WindowError> {
    let t = Utc
        .timestamp_opt(ts, 0)
        .single()
        .ok_or(WindowError::OutOfRange(ts))?;
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .map(|t| t.timestamp())
        .ok_or(WindowError::OutOfRange(ts))
}

/// Parses Kubecost's `window` parameter, with `now` as the current unix time (UTC).
///
/// Semantics follow OpenCost's `parseWindow`: a bare duration `Nu` ends at `now` rounded *up*
/// to the unit (so `1d` is all of today), `Nu offset Mu` ends at `now - offset`, keywords are
/// calendar periods, and pairs are taken as given. Pairs accept RFC3339 with any offset and
/// fractions too, which Kubecost itself refuses; the bridge never sends those.
pub fn parse_kubecost_window(s: &str, now: i64) -> Result<Window, WindowError> {
    let raw = s.trim();
    let illegal = || WindowError::Illegal(s.to_string());
    let w = match raw {
        "today" => Window {
            start: midnight(now),
            end: midnight(now) + DAY,
        },
        "yesterday" => Window {
            start: midnight(now) - DAY,
            end: midnight(now),
        },
        "week" => {
            let t = Utc
                .timestamp_opt(now, 0)
                .single()
                .ok_or(WindowError::OutOfRange(now))?;
            let dow = i64::from(t.weekday().num_days_from_sunday());
            Window {
                start: midnight(now) - dow * DAY,
                end: now,
            }
        }
        "lastweek" => {
            let t = Utc
                .timestamp_opt(now, 0)
                .single()
                .ok_or(WindowError::OutOfRange(now))?;
            let dow = i64::from(t.weekday().num_days_from_sunday());
            let this_week = midnight(now) - dow * DAY;
            Window {
                start: this_week - 7 * DAY,
                end: this_week,
            }
        }
        "month" => Window {
            start: month_start(now)?,
            end: now,
        },
        "lastmonth" => {
            let this = month_start(now)?;
            Window {
                start: month_start(this - 1)?,
                end: this,
            }
        }
        _ => {
            if let Some((dur, off)) = raw.split_once(" offset ") {
                let d = parse_duration(dur).ok_or_else(illegal)?;
                let o = parse_duration(off).ok_or_else(illegal)?;
                let end = now - o;
                Window {
                    start: end - d,
                    end,
                }
            } else if let Some(d) = parse_duration(raw) {
                let unit = match raw.as_bytes().last() {
                    Some(b'm') => 60,
                    Some(b'h') => HOUR,
                    _ => DAY,
                };
                let end = floor_to(now, unit) + unit;
                Window {
                    start: end - d,
                    end,
                }
            } else if let Some((a, b)) = split_pair(raw) {
                let start = parse_instant(a).ok_or_else(illegal)?;
                let end = parse_instant(b).ok_or_else(illegal)?;
                Window { start, end }
            } else {
                return Err(illegal());
            }
        }
    };
    Window::new(w.start, w.end)
}

/// Splits `a,b` (or Kubecost's unix `a-b` / `a|b` forms) into two parts.
fn split_pair(s: &str) -> Option<(&str, &str)> {
    if let Some(p) = s.split_once(',') {
        return Some(p);
    }
    if let Some(p) = s.split_once('|') {
        return Some(p);
    }
    // `a-b` only for unix pairs: RFC3339 contains dashes.
    let (a, b) = s.split_once('-')?;
    (a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()))
        .then_some((a, b))
}

/// What the extraction planner needs to know about the store.
pub trait SyncedWindows {
    /// Returns true when `window` (at `resolution`) has been stored and checkpointed.
    fn is_synced(&self, window: &Window, resolution: Resolution) -> bool;
}

/// Parameters of [`plan_windows`].
#[derive(Debug, Clone, Copy)]
pub struct PlanParams {
    /// The current unix time: windows must have closed by `now - settle`, and the hourly
    /// retention is counted back from it.
    pub now: i64,
    /// Start of the range to plan (unix seconds; hourly windows start at or after it).
    pub from: i64,
    /// End of the range to plan (unix seconds; `now` for a regular run).
    pub until: i64,
    /// Kubecost's hourly retention in seconds (49 h by default): older windows are taken daily.
    pub hourly_retention: i64,
    /// Hourly windows close this many seconds after their end (Kubecost's ETL builds the hour
    /// a little after it ends).
    pub settle: i64,
}

/// Returns every closed window in the lookback that is not yet synced, oldest first.
///
/// Days that are closed and start before the hourly-retention cutoff are planned as one daily
/// window (whole, even where the lookback starts inside the day), unless all 24 of their hours
/// are already synced; other days are planned hour by hour.
/// A day counts as synced when its daily window is, or when all of its hours are; so a daily
/// extraction never overlaps hours that are already complete.
pub fn plan_windows(p: PlanParams, synced: &dyn SyncedWindows) -> Vec<(Window, Resolution)> {
    let mut out = Vec::new();
    let closed_until = floor_to((p.now - p.settle).min(p.until), HOUR);
    let from = floor_to(p.from, HOUR);
    let cutoff = p.now - p.hourly_retention;
    let mut day = midnight(from);
    while day < closed_until {
        let d = Window {
            start: day,
            end: day + DAY,
        };
        let hours: Vec<Window> = d
            .split(HOUR)
            .into_iter()
            .filter(|h| h.start >= from && h.end <= closed_until)
            .collect();
        let all_hours_synced =
            hours.len() == 24 && hours.iter().all(|h| synced.is_synced(h, Resolution::Hour));
        if d.end <= closed_until && d.start < cutoff {
            if !synced.is_synced(&d, Resolution::Day) && !all_hours_synced {
                out.push((d, Resolution::Day));
            }
        } else if !synced.is_synced(&d, Resolution::Day) {
            for h in hours {
                if !synced.is_synced(&h, Resolution::Hour) {
                    out.push((h, Resolution::Hour));
                }
            }
        }
        day += DAY;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn kubecost_window_forms() {
        let w = parse_kubecost_window("2023-11-01T00:00:00Z,2023-11-02T00:00:00Z", NOW).unwrap();
        assert_eq!(
            w.to_kubecost_param(),
            "2023-11-01T00:00:00Z,2023-11-02T00:00:00Z"
        );
        assert_eq!(
            parse_kubecost_window("1586822400,1586908800", NOW)
                .unwrap()
                .hours(),
            24.0
        );
        assert_eq!(
            parse_kubecost_window("1586822400-1586908800", NOW)
                .unwrap()
                .hours(),
            24.0
        );
        let today = parse_kubecost_window("today", NOW).unwrap();
        assert_eq!(format_rfc3339(today.start), "2023-11-14T00:00:00Z");
        assert_eq!(today.hours(), 24.0);
        let d7 = parse_kubecost_window("7d", NOW).unwrap();
        assert_eq!(format_rfc3339(d7.start), "2023-11-08T00:00:00Z");
        assert_eq!(format_rfc3339(d7.end), "2023-11-15T00:00:00Z");
        let h3 = parse_kubecost_window("3h", NOW).unwrap();
        assert_eq!(format_rfc3339(h3.start), "2023-11-14T20:00:00Z");
        let off = parse_kubecost_window("1d offset 1d", NOW).unwrap();
        assert_eq!(
            off,
            Window {
                start: NOW - 2 * DAY,
                end: NOW - DAY
            }
        );
        let lm = parse_kubecost_window("lastmonth", NOW).unwrap();
        assert_eq!(format_rfc3339(lm.start), "2023-10-01T00:00:00Z");
        assert_eq!(format_rfc3339(lm.end), "2023-11-01T00:00:00Z");
        let lw = parse_kubecost_window("lastweek", NOW).unwrap();
        assert_eq!(format_rfc3339(lw.start), "2023-11-05T00:00:00Z"); // a Sunday
        assert!(parse_kubecost_window("fortnight", NOW).is_err());
        assert!(parse_kubecost_window("2023-11-02T00:00:00Z,2023-11-01T00:00:00Z", NOW).is_err());
    }

    struct Set(HashSet<(Window, Resolution)>);
    impl SyncedWindows for Set {
        fn is_synced(&self, w: &Window, r: Resolution) -> bool {
            self.0.contains(&(*w, r))
        }
    }

    fn params(now: i64) -> PlanParams {
        PlanParams {
            now,
            from: now - 4 * DAY,
            until: now,
            hourly_retention: 49 * HOUR,
            settle: 0,
        }
    }

    #[test]
    fn plan_stops_at_until_and_at_settled_hours() {
        let p = PlanParams {
            now: NOW,
            from: NOW - 5 * HOUR,
            until: NOW - 2 * HOUR,
            hourly_retention: 49 * HOUR,
            settle: 0,
        };
        let plan = plan_windows(p, &Set(HashSet::new()));
        assert_eq!(plan.len(), 3, "{plan:?}");
        let p = PlanParams {
            until: NOW,
            settle: 2 * HOUR,
            ..p
        };
        assert_eq!(plan_windows(p, &Set(HashSet::new())).len(), 3);
    }

    #[test]
    fn plan_uses_hours_within_retention_and_days_before() {
        let p = params(NOW);
        let plan = plan_windows(p, &Set(HashSet::new()));
        let days: Vec<_> = plan.iter().filter(|(_, r)| *r == Resolution::Day).collect();
        let hours: Vec<_> = plan
            .iter()
            .filter(|(_, r)| *r == Resolution::Hour)
            .collect();
        // Lookback starts 2023-11-10T22:00; cutoff is 2023-11-12T21:13. Days 10, 11 and 12 are
        // closed and start before the cutoff, so each is one daily window (day 10 whole, though
        // the lookback covers only its last two hours); 13 and 14 are within retention.
        assert_eq!(days.len(), 3, "{plan:?}");
        assert_eq!(hours.len(), 24 + 22);
        assert!(
            plan.windows(2).all(|w| w[0].0.start < w[1].0.start),
            "oldest first"
        );
        // Nothing planned overlaps anything else.
        for (i, a) in plan.iter().enumerate() {
            for b in &plan[i + 1..] {
                assert!(!a.0.overlaps(&b.0));
            }
        }
    }

    #[test]
    fn plan_skips_synced_and_days_with_all_hours() {
        let p = params(NOW);
        let first = plan_windows(p, &Set(HashSet::new()));
        let done: HashSet<_> = first.iter().copied().collect();
        assert!(plan_windows(p, &Set(done.clone())).is_empty());
        // Two days later, days 11..13 were synced (daily, or all 24 hours) and are not planned
        // again; day 14 had only 22 of its hours and has aged out of retention, so it is planned
        // as one daily window, which replaces those hours when it lands.
        let later = params(NOW + 2 * DAY);
        let plan = plan_windows(later, &Set(done.clone()));
        let day14 = parse_kubecost_window("2023-11-14T00:00:00Z,2023-11-15T00:00:00Z", 0).unwrap();
        assert_eq!(plan.first(), Some(&(day14, Resolution::Day)), "{plan:?}");
        assert!(
            plan[1..]
                .iter()
                .all(|(w, r)| *r == Resolution::Hour && w.start >= day14.end)
        );
    }
}
