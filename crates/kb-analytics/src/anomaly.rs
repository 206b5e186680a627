//! Cost anomalies: the seed's rule (an increase of more than 50% in 24 h) and a statistical
//! detector robust to daily and weekly seasonality.
//!
//! Both take one [`Series`] per [`SeriesKey`] (cluster, namespace, workload or team; see
//! [`crate::series::series_from_summaries`]) and return [`Anomaly`]s in which consecutive
//! anomalous slots of the same direction are merged into one, from the first slot's start to
//! the last slot's end.
//!
//! **Seasonal detector** ([`detect_seasonal`]): for each slot, the history is the values at the
//! same hour of the week in the previous weeks (at most `max_weeks`); with fewer than
//! `min_weeks` of them it falls back to the same hour of the day on previous days of the same
//! kind (weekday or weekend, UTC; at most `max_days`, at least `min_days`); with less history
//! the slot gets no verdict. The expected value is the history's median and the spread its
//! median absolute deviation (scaled by 1.4826 to read as a standard deviation, floored at
//! `min_spread` × the median so a perfectly flat history does not make every cent an anomaly).
//! The score is `(actual − expected) / spread`; a slot is anomalous when `|score| ≥ z_info` and
//! the change is at least `min_relative_change` of the expected value. Median and MAD ignore a
//! minority of past anomalies, so one spike does not hide the next week's.
//!
//! Severity comes from the peak `|score|` of the anomaly: `z_info` info, `z_warning` warning,
//! `z_critical` critical. For the seed rule it comes from the increase over the threshold:
//! under 2× the threshold info, under 4× warning, else critical.

use crate::calendar::weekday;
use crate::series::{Series, SeriesKey};
use kb_core::window::DAY;

/// How serious an anomaly is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// Returns `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Which detector found an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectorKind {
    /// The seed's threshold rule.
    IncreaseRule,
    /// Median/MAD over the same hour of the week (or day).
    Seasonal,
}

impl DetectorKind {
    /// Returns `increase_rule` or `seasonal`.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::IncreaseRule => "increase_rule",
            DetectorKind::Seasonal => "seasonal",
        }
    }
}

/// One anomaly: a run of consecutive anomalous slots of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub key: SeriesKey,
    pub detector: DetectorKind,
    /// Start of the first anomalous slot.
    pub start: i64,
    /// End of the last anomalous slot.
    pub end: i64,
    /// Expected cost over `[start, end)` (sum of the per-slot expectations).
    pub expected: f64,
    /// Actual cost over `[start, end)`.
    pub actual: f64,
    /// Peak score (signed: negative for a drop). Seasonal: z-like score; rule: relative
    /// increase.
    pub score: f64,
    pub severity: Severity,
}

/// The seed's rule: flag a slot when the cost of the trailing `smoothing` slots is more than
/// `threshold` above the cost of the same slots `lookback` seconds earlier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncreaseRule {
    /// 0.5 = more than 50% increase.
    pub threshold: f64,
    /// Seconds between the compared periods (24 h).
    pub lookback: i64,
    /// Slots summed on each side (1 compares single hours, 24 compares trailing days).
    pub smoothing: usize,
    /// Earlier cost below this is not compared (avoids "+500%" on cents).
    pub min_previous: f64,
}

impl Default for IncreaseRule {
    fn default() -> Self {
        IncreaseRule {
            threshold: 0.5,
            lookback: DAY,
            smoothing: 1,
            min_previous: 0.0,
        }
    }
}

/// Configuration of the seasonal detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalConfig {
    pub z_info: f64,
    pub z_warning: f64,
    pub z_critical: f64,
    /// Same-hour-of-week values needed to use the weekly history.
    pub min_weeks: usize,
    pub max_weeks: usize,
    /// Same-hour-of-day values (same day kind) needed by the fallback.
    pub min_days: usize,
    pub max_days: usize,
    /// Smallest change, relative to the expected value, that can be an anomaly.
    pub min_relative_change: f64,
    /// Floor of the spread, relative to the expected value.
    pub min_spread: f64,
    /// Also report drops (cost well below expected).
    pub drops: bool,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        SeasonalConfig {
            z_info: 5.0,
            z_warning: 8.0,
            z_critical: 15.0,
            min_weeks: 3,
            max_weeks: 8,
            min_days: 5,
            max_days: 21,
            min_relative_change: 0.2,
            min_spread: 0.02,
            drops: true,
        }
    }
}

/// Per-slot verdict before merging.
#[derive(Debug, Clone, Copy)]
struct Hit {
    expected: f64,
    actual: f64,
    score: f64,
    severity: Severity,
}

fn merge_hits(
    key: &SeriesKey,
    s: &Series,
    detector: DetectorKind,
    hits: &[Option<Hit>],
) -> Vec<Anomaly> {
    let mut out: Vec<Anomaly> = Vec::new();
    let mut prev_dir: Option<bool> = None;
    for (i, h) in hits.iter().enumerate() {
        let Some(h) = h else {
            prev_dir = None;
            continue;
        };
        let up = h.score >= 0.0;
        let extend = prev_dir == Some(up);
        match out.last_mut() {
            Some(a) if extend => {
                a.end = s.ts(i + 1);
                a.expected += h.expected;
                a.actual += h.actual;
                if h.score.abs() > a.score.abs() {
                    a.score = h.score;
                }
                a.severity = a.severity.max(h.severity);
            }
            _ => out.push(Anomaly {
                key: key.clone(),
                detector,
                start: s.ts(i),
                end: s.ts(i + 1),
                expected: h.expected,
                actual: h.actual,
                score: h.score,
                severity: h.severity,
            }),
        }
        prev_dir = Some(up);
    }
    out
}

/// Applies the seed's increase rule to one series.
pub fn detect_increase(key: &SeriesKey, s: &Series, rule: &IncreaseRule) -> Vec<Anomaly> {
    let lag = if s.step > 0 {
        (rule.lookback / s.step).max(1) as usize
    } else {
        1
    };
    let k = rule.smoothing.max(1);
    let sum = |end: usize| -> Option<f64> {
        // Sum of slots (end - k, end], all finite.
        let lo = end.checked_sub(k - 1)?;
        let vals = s.values.get(lo..=end)?;
        vals.iter()
            .all(|v| v.is_finite())
            .then(|| vals.iter().sum())
    };
    let hits: Vec<Option<Hit>> = (0..s.values.len())
        .map(|i| {
            let prev_end = i.checked_sub(lag)?;
            let cur = sum(i)?;
            let prev = sum(prev_end)?;
            if prev.is_nan() || prev <= rule.min_previous.max(0.0) {
                return None;
            }
            let inc = (cur - prev) / prev;
            if inc.is_nan() || inc <= rule.threshold {
                return None;
            }
            let ratio = if rule.threshold > 0.0 {
                inc / rule.threshold
            } else {
                f64::INFINITY
            };
            let severity = if ratio < 2.0 {
                Severity::Info
            } else if ratio < 4.0 {
                Severity::Warning
            } else {
                Severity::Critical
            };
            let actual = s.values.get(i).copied()?;
            let expected = s.values.get(prev_end).copied()?;
            Some(Hit {
                expected,
                actual,
                score: inc,
                severity,
            })
        })
        .collect();
    merge_hits(key, s, DetectorKind::IncreaseRule, &hits)
}

/// Returns the median of `v` (sorted in place), `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let hi = v.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        Some((v.get(n / 2 - 1).copied()? + hi) / 2.0)
    }
}

fn is_weekend(ts: i64) -> bool {
    matches!(weekday(ts), 0 | 6)
}

/// The history of slot `i`: same hour of the week, else same hour of the day on days of the
/// same kind; `None` when too short.
fn history(s: &Series, i: usize, cfg: &SeasonalConfig, buf: &mut Vec<f64>) -> bool {
    buf.clear();
    if s.step <= 0 || DAY % s.step != 0 {
        return false;
    }
    let per_day = (DAY / s.step) as usize;
    let per_week = per_day * 7;
    for k in 1..=cfg.max_weeks {
        let Some(j) = i.checked_sub(k * per_week) else {
            break;
        };
        if let Some(v) = s.values.get(j).filter(|v| v.is_finite()) {
            buf.push(*v);
        }
    }
    if buf.len() >= cfg.min_weeks.max(1) {
        return true;
    }
    buf.clear();
    let weekend = is_weekend(s.ts(i));
    let mut days = 0;
    for k in 1.. {
        let Some(j) = i.checked_sub(k * per_day) else {
            break;
        };
        if days >= cfg.max_days {
            break;
        }
        if is_weekend(s.ts(j)) != weekend {
            continue;
        }
        days += 1;
        if let Some(v) = s.values.get(j).filter(|v| v.is_finite()) {
            buf.push(*v);
        }
    }
    buf.len() >= cfg.min_days.max(1)
}

/// Expected value and spread of slot `i` from its seasonal history, if it has enough.
pub fn seasonal_baseline(s: &Series, i: usize, cfg: &SeasonalConfig) -> Option<(f64, f64)> {
    let mut buf = Vec::new();
    if !history(s, i, cfg, &mut buf) {
        return None;
    }
    let med = median(&mut buf)?;
    let mut dev: Vec<f64> = buf.iter().map(|v| (v - med).abs()).collect();
    let mad = median(&mut dev)?;
    let spread = (1.4826 * mad).max(cfg.min_spread * med.abs()).max(1e-9);
    Some((med, spread))
}

/// Runs the seasonal detector on one series.
pub fn detect_seasonal(key: &SeriesKey, s: &Series, cfg: &SeasonalConfig) -> Vec<Anomaly> {
    let mut buf = Vec::new();
    let hits: Vec<Option<Hit>> = (0..s.values.len())
        .map(|i| {
            let x = s.values.get(i).copied().filter(|v| v.is_finite())?;
            if !history(s, i, cfg, &mut buf) {
                return None;
            }
            let med = median(&mut buf)?;
            let mut dev: Vec<f64> = buf.iter().map(|v| (v - med).abs()).collect();
            let mad = median(&mut dev)?;
            let spread = (1.4826 * mad).max(cfg.min_spread * med.abs()).max(1e-9);
            let z = (x - med) / spread;
            if z.abs() < cfg.z_info || (x - med).abs() < cfg.min_relative_change * med.abs() {
                return None;
            }
            if z < 0.0 && !cfg.drops {
                return None;
            }
            let severity = if z.abs() >= cfg.z_critical {
                Severity::Critical
            } else if z.abs() >= cfg.z_warning {
                Severity::Warning
            } else {
                Severity::Info
            };
            Some(Hit {
                expected: med,
                actual: x,
                score: z,
                severity,
            })
        })
        .collect();
    merge_hits(key, s, DetectorKind::Seasonal, &hits)
}

/// Runs both detectors over many series, in key order.
pub fn detect_all<'a>(
    series: impl IntoIterator<Item = (&'a SeriesKey, &'a Series)>,
    rule: Option<&IncreaseRule>,
    seasonal: Option<&SeasonalConfig>,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (k, s) in series {
        if let Some(r) = rule {
            out.extend(detect_increase(k, s, r));
        }
        if let Some(c) = seasonal {
            out.extend(detect_seasonal(k, s, c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn new_series_without_history_has_no_verdict() {
        let key = SeriesKey {
            dimension: crate::summary::Dimension::Namespace,
            cluster: "c".into(),
            namespace: "n".into(),
            name: "n".into(),
        };
        let mut values = vec![f64::NAN; 24 * 30];
        for v in values.iter_mut().skip(24 * 29) {
            *v = 5.0;
        }
        let s = Series {
            start: 0,
            step: 3600,
            values,
        };
        assert!(detect_seasonal(&key, &s, &SeasonalConfig::default()).is_empty());
    }
}
