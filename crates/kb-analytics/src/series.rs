//! Regular time series of cost: the input of trends, anomaly detection and forecasts.

use std::collections::BTreeMap;

use kb_core::window::Window;

use crate::summary::{CostSummary, Dimension, Granularity};

/// A regular series: `values[i]` is the cost of `[start + i × step, start + (i + 1) × step)`.
/// A non-finite value means "missing" and is skipped by every function.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub start: i64,
    /// Seconds per value (3600 for hourly, 86400 for daily).
    pub step: i64,
    pub values: Vec<f64>,
}

/// Why a series could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    #[error("series step must be positive, got {0}")]
    Step(i64),
    #[error("series would have {0} points, more than the limit")]
    TooLong(i64),
}

/// Most points a series built from scattered points may have (10 years hourly).
pub const MAX_POINTS: i64 = 24 * 366 * 10;

impl Series {
    /// An empty series.
    pub fn new(start: i64, step: i64) -> Series {
        Series {
            start,
            step,
            values: Vec::new(),
        }
    }

    /// Builds a dense series from `(timestamp, value)` points: timestamps are floored to `step`,
    /// values of the same slot are added, slots without a point are `missing` (0 for costs
    /// where "no row" means "no cost", NaN for "unknown").
    pub fn from_points(
        points: &[(i64, f64)],
        step: i64,
        missing: f64,
    ) -> Result<Series, SeriesError> {
        if step <= 0 {
            return Err(SeriesError::Step(step));
        }
        let slots = || points.iter().map(|(t, _)| t.div_euclid(step));
        let (Some(lo), Some(hi)) = (slots().min(), slots().max()) else {
            return Ok(Series::new(0, step));
        };
        let n = hi - lo + 1;
        if n > MAX_POINTS {
            return Err(SeriesError::TooLong(n));
        }
        let mut values = vec![missing; n as usize];
        let mut seen = vec![false; n as usize];
        for (t, v) in points {
            let i = (t.div_euclid(step) - lo) as usize;
            if let (Some(x), Some(s)) = (values.get_mut(i), seen.get_mut(i)) {
                *x = if *s { *x + v } else { *v };
                *s = true;
            }
        }
        Ok(Series {
            start: lo * step,
            step,
            values,
        })
    }

    /// Timestamp of the start of point `i`.
    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// End of the series (start of the slot after the last value).
    pub fn end(&self) -> i64 {
        self.ts(self.values.len())
    }

    /// Index of the slot containing `ts`, if inside the series.
    pub fn index_of(&self, ts: i64) -> Option<usize> {
        if ts < self.start || self.step <= 0 {
            return None;
        }
        let i = ((ts - self.start) / self.step) as usize;
        (i < self.values.len()).then_some(i)
    }

    /// Sum of the finite values whose slot starts inside `w`.
    pub fn sum_in(&self, w: Window) -> f64 {
        self.values
            .iter()
            .enumerate()
            .filter(|(i, v)| v.is_finite() && (w.start..w.end).contains(&self.ts(*i)))
            .map(|(_, v)| v)
            .sum()
    }

    /// The part of the series before `ts` and the part from `ts` on.
    pub fn split_at(&self, ts: i64) -> (Series, Series) {
        let k = if ts <= self.start {
            0
        } else {
            (((ts - self.start) + self.step - 1) / self.step.max(1)) as usize
        }
        .min(self.values.len());
        let (a, b) = self.values.split_at(k);
        (
            Series {
                start: self.start,
                step: self.step,
                values: a.to_vec(),
            },
            Series {
                start: self.ts(k),
                step: self.step,
                values: b.to_vec(),
            },
        )
    }
}

/// Identity of a series: a dimension value within a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub dimension: Dimension,
    pub cluster: String,
    pub namespace: String,
    pub name: String,
}

/// Builds one `total_cost` series per `(dimension, cluster, namespace, name)` from summaries
/// of one granularity (hour or day; monthly buckets are not regular and give no series).
/// Every series spans the same range (first to last bucket of the input). A bucket with no
/// summary for a key is 0 (no rows, no cost) once the key has appeared, and missing (NaN)
/// before, so a new workload has no history rather than a history of zeros.
pub fn series_from_summaries(
    summaries: &[CostSummary],
    granularity: Granularity,
    dimension: Dimension,
) -> BTreeMap<SeriesKey, Series> {
    let step = match granularity {
        Granularity::Hour => kb_core::window::HOUR,
        Granularity::Day => kb_core::window::DAY,
        Granularity::Month => return BTreeMap::new(),
    };
    let rel = || {
        summaries
            .iter()
            .filter(move |s| s.granularity == granularity && s.dimension == dimension)
    };
    let (Some(lo), Some(hi)) = (
        rel().map(|s| s.bucket.start).min(),
        rel().map(|s| s.bucket.start).max(),
    ) else {
        return BTreeMap::new();
    };
    let n = ((hi - lo) / step + 1).clamp(0, MAX_POINTS) as usize;
    let mut out: BTreeMap<SeriesKey, Series> = BTreeMap::new();
    for s in rel() {
        let key = SeriesKey {
            dimension,
            cluster: s.cluster.clone(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
        };
        let series = out.entry(key).or_insert_with(|| Series {
            start: lo,
            step,
            values: vec![f64::NAN; n],
        });
        if let Some(v) = series
            .values
            .get_mut(((s.bucket.start - lo) / step) as usize)
        {
            *v = if v.is_nan() {
                s.totals.total_cost
            } else {
                *v + s.totals.total_cost
            };
        }
    }
    for series in out.values_mut() {
        let mut seen = false;
        for v in &mut series.values {
            if v.is_finite() {
                seen = true;
            } else if seen {
                *v = 0.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_points_adds_and_fills() {
        let s = Series::from_points(&[(7200, 1.0), (0, 2.0), (7300, 0.5)], 3600, f64::NAN)
            .unwrap_or_else(|_| Series::new(0, 1));
        assert_eq!(s.start, 0);
        assert_eq!(s.values.len(), 3);
        assert_eq!(s.values[0], 2.0);
        assert!(s.values[1].is_nan());
        assert_eq!(s.values[2], 1.5);
        assert_eq!(s.index_of(7199), Some(1));
        assert_eq!(s.index_of(10_800), None);
        let (a, b) = s.split_at(3600);
        assert_eq!((a.values.len(), b.start), (1, 3600));
        assert!(Series::from_points(&[], 0, 0.0).is_err());
    }
}
