//! Query parameters: parsing and validation with one clear 400 per problem.
//!
//! Every endpoint lists the parameters it knows; an unknown or repeated parameter is a 400, so
//! a typo never silently widens a query. The accepted values are exactly what the OpenAPI
//! document declares (patterns, enums, ranges).
//!
//! Time range (`[start, end)`, unix seconds internally):
//! - `window`: `Nh`, `Nd` (1–999), `Nw` (1–99), `today`, `yesterday`, `week`, `lastweek`,
//!   `month`, `lastmonth`, with Kubecost's semantics (`7d` ends at the end of today, UTC);
//! - or `start` and/or `end`: RFC3339 (any offset) or a date `YYYY-MM-DD` (midnight UTC);
//!   `start` alone ends now, `end` alone starts 30 days before it;
//! - neither: the last 30 days (`30d`).
//!
//! The range is widened to whole hours (start floored, end rounded up): hours are the finest
//! grain the store holds. Answers report the range they cover.

use kb_core::Window;
use kb_core::window::{HOUR, floor_to, parse_kubecost_window, parse_rfc3339};
use kb_pipeline::ports::Granularity;

use crate::error::ApiError;

/// The `window` pattern published in the OpenAPI document (kept in step with
/// [`valid_window`]).
pub const WINDOW_PATTERN: &str =
    "^(today|yesterday|week|lastweek|month|lastmonth|[1-9][0-9]{0,2}[hd]|[1-9][0-9]?w)$";

/// Parsed query parameters of one request.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Whether `s` matches [`WINDOW_PATTERN`].
pub fn valid_window(s: &str) -> bool {
    if matches!(
        s,
        "today" | "yesterday" | "week" | "lastweek" | "month" | "lastmonth"
    ) {
        return true;
    }
    let b = s.as_bytes();
    let Some((&unit, digits)) = b.split_last() else {
        return false;
    };
    let max_digits = match unit {
        b'h' | b'd' => 3,
        b'w' => 2,
        _ => return false,
    };
    !digits.is_empty()
        && digits.len() <= max_digits
        && digits.iter().all(u8::is_ascii_digit)
        && digits.first() != Some(&b'0')
}

fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    kb_core::window::parse_instant(s)
}

/// Parses `start`/`end` values: RFC3339 or `YYYY-MM-DD`.
pub fn parse_time(s: &str) -> Option<i64> {
    if s.len() > 64 || s.trim() != s {
        return None;
    }
    parse_date(s).or_else(|| {
        // RFC3339 needs the `T` separator here (JSON Schema's `date-time`).
        let b = s.as_bytes();
        (b.get(10).is_some_and(|c| *c == b'T' || *c == b't'))
            .then(|| parse_rfc3339(s))
            .flatten()
    })
}

fn ceil_hour(ts: i64) -> i64 {
    let f = floor_to(ts, HOUR);
    if f == ts { ts } else { f + HOUR }
}

/// Output format of a table endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Query {
    /// Parses a raw query string, refusing parameters not in `allowed` and repeated ones.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                let shown: String = k.chars().take(40).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {shown:?}; this endpoint takes: {}",
                    allowed.join(", ")
                )));
            }
            if pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(ApiError::bad_request(format!("parameter {k} given twice")));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Query { pairs })
    }

    /// The parameters as given (for the audit log).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of a parameter.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    }

    /// The time range (see the module docs), whole hours.
    pub fn range(&self, now: i64) -> Result<Window, ApiError> {
        let window = self.get("window");
        let start = self.get("start");
        let end = self.get("end");
        let w = match (window, start, end) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(ApiError::bad_request(
                    "give either window or start/end, not both",
                ));
            }
            (Some(w), None, None) => {
                if !valid_window(w) {
                    return Err(ApiError::bad_request(
                        "window: expected Nh or Nd (N from 1 to 999), Nw (1 to 99), today, yesterday, week, lastweek, month or lastmonth",
                    ));
                }
                parse_kubecost_window(w, now)
                    .map_err(|e| ApiError::bad_request(format!("window: {e}")))?
            }
            (None, None, None) => parse_kubecost_window("30d", now)
                .map_err(|e| ApiError::bad_request(format!("window: {e}")))?,
            (None, s, e) => {
                let parse = |name: &str, v: &str| {
                    parse_time(v).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{name}: expected RFC3339 (2024-06-01T00:00:00Z) or a date (2024-06-01)"
                        ))
                    })
                };
                let end = match e {
                    Some(v) => parse("end", v)?,
                    None => now,
                };
                let start = match s {
                    Some(v) => parse("start", v)?,
                    None => end.saturating_sub(30 * kb_core::window::DAY),
                };
                Window { start, end }
            }
        };
        let w = Window {
            start: floor_to(w.start, HOUR),
            end: ceil_hour(w.end),
        };
        if w.start >= w.end {
            return Err(ApiError::bad_request(
                "the range is empty: start must be before end",
            ));
        }
        Ok(w)
    }

    /// `granularity`: `hour`, `day` or `month`; `None` when not given.
    pub fn granularity(&self) -> Result<Option<Granularity>, ApiError> {
        match self.get("granularity") {
            None => Ok(None),
            Some("hour") => Ok(Some(Granularity::Hour)),
            Some("day") => Ok(Some(Granularity::Day)),
            Some("month") => Ok(Some(Granularity::Month)),
            Some(_) => Err(ApiError::bad_request(
                "granularity: expected hour, day or month",
            )),
        }
    }

    /// A boolean parameter (`true` or `false`).
    pub fn flag(&self, k: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(k) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(ApiError::bad_request(format!(
                "{k}: expected true or false"
            ))),
        }
    }

    /// An integer parameter in `[min, max]`.
    pub fn int(&self, k: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        let Some(v) = self.get(k) else {
            return Ok(default);
        };
        let ok = !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
        match v.parse::<u64>() {
            Ok(n) if ok && (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "{k}: expected an integer from {min} to {max}"
            ))),
        }
    }

    /// One of a set of words.
    pub fn choice<'a>(
        &self,
        k: &str,
        allowed: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, ApiError> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => allowed.iter().find(|a| **a == v).copied().ok_or_else(|| {
                ApiError::bad_request(format!("{k}: expected one of {}", allowed.join(", ")))
            }),
        }
    }

    /// A free-text filter (1 to 253 characters, no control characters).
    pub fn text(&self, k: &str) -> Result<Option<&str>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) if !v.is_empty() && v.len() <= 253 && !v.chars().any(char::is_control) => {
                Ok(Some(v))
            }
            Some(_) => Err(ApiError::bad_request(format!(
                "{k}: expected 1 to 253 characters without control characters"
            ))),
        }
    }

    /// `format`: `json` (default) or `csv`.
    pub fn format(&self) -> Result<Format, ApiError> {
        match self.choice("format", &["json", "csv"], "json")? {
            "csv" => Ok(Format::Csv),
            _ => Ok(Format::Json),
        }
    }

    /// A canonical form for cache keys (parameters sorted).
    pub fn canonical(&self) -> String {
        let mut p: Vec<String> = self.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        p.sort();
        p.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_717_421_400; // 2024-06-03T13:30:00Z

    fn q(s: &str) -> Result<Query, ApiError> {
        Query::parse(
            Some(s),
            &["window", "start", "end", "limit", "granularity", "idle"],
        )
    }

    #[test]
    fn windows() {
        assert!(valid_window("7d") && valid_window("24h") && valid_window("999d"));
        assert!(valid_window("2w") && valid_window("lastmonth"));
        for bad in [
            "",
            "0d",
            "07d",
            "1000d",
            "100w",
            "d",
            "7",
            "7x",
            "7d offset 1d",
            "30m",
        ] {
            assert!(!valid_window(bad), "{bad}");
        }
        let w = q("window=24h").unwrap().range(NOW).unwrap();
        assert_eq!(w.end - w.start, 24 * HOUR);
        assert_eq!(w.end, NOW - NOW % HOUR + HOUR);
        let w = q("").unwrap().range(NOW).unwrap();
        assert_eq!(w.end - w.start, 30 * 86_400);
        let w = q("start=2024-06-01&end=2024-06-02T00:30:00%2B00:00")
            .unwrap()
            .range(NOW)
            .unwrap();
        assert_eq!((w.start, w.end), (1_717_200_000, 1_717_200_000 + 25 * HOUR));
        assert!(
            q("start=2024-06-02&end=2024-06-01")
                .unwrap()
                .range(NOW)
                .is_err()
        );
        assert!(q("start=1717200000").unwrap().range(NOW).is_err());
        assert!(q("start=2024-6-1").unwrap().range(NOW).is_err());
        assert!(q("window=7d&start=2024-06-01").unwrap().range(NOW).is_err());
        let e = q("window=7x").unwrap().range(NOW).unwrap_err();
        assert_eq!(e.code, "bad_request");
        assert!(e.message.starts_with("window:"));
    }

    #[test]
    fn params() {
        assert!(q("nope=1").is_err());
        assert!(q("limit=1&limit=2").is_err());
        let p = q("limit=10&idle=false&granularity=day").unwrap();
        assert_eq!(p.int("limit", 5, 1, 100).unwrap(), 10);
        assert!(!p.flag("idle", true).unwrap());
        assert_eq!(p.granularity().unwrap(), Some(Granularity::Day));
        for bad in [
            "limit=-1",
            "limit=0",
            "limit=101",
            "limit=1.5",
            "limit=+3",
            "limit=",
        ] {
            assert!(q(bad).unwrap().int("limit", 5, 1, 100).is_err(), "{bad}");
        }
        assert!(q("idle=yes").unwrap().flag("idle", true).is_err());
        assert!(q("granularity=1h").unwrap().granularity().is_err());
    }
}
