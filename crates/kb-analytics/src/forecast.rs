//! Cost forecasts from a robust seasonal model, with prediction intervals, and the MAPE of a
//! forecast on a holdout.
//!
//! The model (a "Holt-Winters lite" that tolerates spikes):
//!
//! - **Season**: a week when the history holds at least two weeks, else a day when it holds
//!   two days, else none. The seasonal profile `p[j]` is the median, over the last
//!   `max_seasons` seasons, of the value at position `j` of the season (so one past spike does
//!   not repeat in the forecast).
//! - **Level**: the median, over the last season, of `actual / p[j]` (how the recent season
//!   compares with the profile), applied multiplicatively.
//! - **Trend** (optional): the Theil–Sen slope of the seasons' mean values (needs three
//!   seasons), damped by `damping` per season ahead.
//! - **Interval**: in-sample residuals of the last seasons give a robust spread
//!   (1.4826 × MAD, at least the residuals' RMS over the central 90%), widened as
//!   `sqrt(1 + (h − 1) / m)` for `h` slots ahead with season `m`; `± z × spread`, the lower
//!   bound clamped at 0 since cost is not negative.

use crate::anomaly::median;
use crate::series::Series;
use kb_core::window::DAY;

/// Forecast settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastConfig {
    /// Interval half-width in spreads (1.96 ≈ 95% for normal residuals, 1.28 ≈ 80%).
    pub z: f64,
    /// Seasons of history the profile uses.
    pub max_seasons: usize,
    /// Use a damped trend.
    pub trend: bool,
    /// Trend damping per season ahead (0..1).
    pub damping: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            z: 1.96,
            max_seasons: 4,
            trend: true,
            damping: 0.8,
        }
    }
}

/// One forecast slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastPoint {
    pub ts: i64,
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
}

/// A forecast of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub step: i64,
    /// Season length used, in slots (1 = no seasonality).
    pub season: usize,
    pub points: Vec<ForecastPoint>,
    /// Sum of the means over the horizon.
    pub total: f64,
    /// Sums of the per-slot bounds (a conservative interval for the total).
    pub total_lower: f64,
    pub total_upper: f64,
}

/// Why no forecast could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForecastError {
    #[error("a forecast needs at least 2 known values, the series has {0}")]
    TooShort(usize),
    #[error("series step must be positive, got {0}")]
    Step(i64),
}

/// Forecasts `days` days after the series' end (7 and 30 in the API).
pub fn forecast_days(
    s: &Series,
    days: u32,
    cfg: &ForecastConfig,
) -> Result<Forecast, ForecastError> {
    if s.step <= 0 {
        return Err(ForecastError::Step(s.step));
    }
    let slots = (i64::from(days) * DAY / s.step).max(1) as usize;
    forecast(s, slots, cfg)
}

fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}

/// Theil–Sen slope of `y` against its index.
fn theil_sen(y: &[f64]) -> Option<f64> {
    let mut slopes = Vec::new();
    for (i, a) in y.iter().enumerate() {
        for (j, b) in y.iter().enumerate().skip(i + 1) {
            slopes.push((b - a) / (j - i) as f64);
        }
    }
    median(&mut slopes)
}

/// Forecasts `horizon` slots after the series' end (see the module documentation).
pub fn forecast(
    s: &Series,
    horizon: usize,
    cfg: &ForecastConfig,
) -> Result<Forecast, ForecastError> {
    if s.step <= 0 {
        return Err(ForecastError::Step(s.step));
    }
    let known = s.values.iter().filter(|v| v.is_finite()).count();
    if known < 2 {
        return Err(ForecastError::TooShort(known));
    }
    let n = s.values.len();
    let per_day = if DAY % s.step == 0 {
        (DAY / s.step) as usize
    } else {
        1
    };
    let m = if n >= 2 * 7 * per_day {
        7 * per_day
    } else if per_day > 1 && n >= 2 * per_day {
        per_day
    } else {
        1
    };
    // Align seasons to the series' end: season k covers [n - (k+1) m, n - k m).
    let seasons = (n / m).clamp(1, cfg.max_seasons.max(1));
    let base = n - seasons * m;
    // Position of slot `t` (absolute index) in the season.
    let pos = |t: usize| (t + m - base % m) % m;
    let mut profile = vec![0.0; m];
    for (j, p) in profile.iter_mut().enumerate() {
        let mut v: Vec<f64> = (0..seasons)
            .filter_map(|k| s.values.get(base + k * m + j).copied())
            .filter(|x| x.is_finite())
            .collect();
        *p = median(&mut v).unwrap_or(f64::NAN);
    }
    // Fill positions with no history by the overall median.
    let mut all = finite(&s.values);
    let overall = median(&mut all).unwrap_or(0.0);
    for p in &mut profile {
        if !p.is_finite() {
            *p = overall;
        }
    }
    // Level: median ratio over the last season.
    let last = n - m;
    let mut ratios: Vec<f64> = (last..n)
        .filter_map(|t| {
            let x = s.values.get(t).copied().filter(|x| x.is_finite())?;
            let p = profile.get(pos(t)).copied().filter(|p| *p > 0.0)?;
            Some(x / p)
        })
        .collect();
    let level = median(&mut ratios).unwrap_or(1.0);
    // Trend per slot from season means.
    let slope = if cfg.trend && seasons >= 3 {
        let means: Vec<f64> = (0..seasons)
            .map(|k| {
                let v = s
                    .values
                    .get(base + k * m..base + (k + 1) * m)
                    .map(finite)
                    .unwrap_or_default();
                if v.is_empty() {
                    0.0
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            })
            .collect();
        theil_sen(&means).unwrap_or(0.0) / m as f64
    } else {
        0.0
    };
    // Out-of-sample residuals: each season of the history against the profile of the other
    // seasons (in-sample residuals would understate the error); in-sample with one season.
    let mut resid: Vec<f64> = Vec::with_capacity(seasons * m);
    let mut others = Vec::with_capacity(seasons);
    for k in 0..seasons {
        for j in 0..m {
            let Some(x) = s
                .values
                .get(base + k * m + j)
                .copied()
                .filter(|x| x.is_finite())
            else {
                continue;
            };
            others.clear();
            others.extend(
                (0..seasons)
                    .filter(|o| *o != k || seasons == 1)
                    .filter_map(|o| s.values.get(base + o * m + j).copied())
                    .filter(|v| v.is_finite()),
            );
            if let Some(p) = median(&mut others) {
                resid.push(x - level * p);
            }
        }
    }
    let rms = {
        let mut a: Vec<f64> = resid.iter().map(|r| r.abs()).collect();
        a.sort_by(f64::total_cmp);
        let keep = &a[..(a.len() * 9 / 10).max(1).min(a.len())];
        (keep.iter().map(|r| r * r).sum::<f64>() / keep.len().max(1) as f64).sqrt()
    };
    let rmed = median(&mut resid).unwrap_or(0.0);
    let mut dev: Vec<f64> = resid.iter().map(|r| (r - rmed).abs()).collect();
    let spread = (1.4826 * median(&mut dev).unwrap_or(0.0)).max(rms);

    let damp = cfg.damping.clamp(0.0, 1.0).powf(1.0 / m as f64);
    let mut points = Vec::with_capacity(horizon);
    let mut trend_sum = 0.0;
    let mut f = 1.0;
    for h in 1..=horizon {
        let t = n + h - 1;
        f *= damp;
        trend_sum += f;
        let p = profile.get(pos(t)).copied().unwrap_or(overall);
        let mean = (level * p + slope * trend_sum).max(0.0);
        let w = cfg.z * spread * (1.0 + (h - 1) as f64 / m as f64).sqrt();
        points.push(ForecastPoint {
            ts: s.ts(t),
            mean,
            lower: (mean - w).max(0.0),
            upper: mean + w,
        });
    }
    Ok(Forecast {
        step: s.step,
        season: m,
        total: points.iter().map(|p| p.mean).sum(),
        total_lower: points.iter().map(|p| p.lower).sum(),
        total_upper: points.iter().map(|p| p.upper).sum(),
        points,
    })
}

/// Mean absolute percentage error of `predicted` against `actual`, over the pairs whose actual
/// value is positive and both are finite; `None` when there is no such pair.
pub fn mape(actual: &[f64], predicted: &[f64]) -> Option<f64> {
    let (sum, n) = actual
        .iter()
        .zip(predicted)
        .filter(|(a, p)| a.is_finite() && p.is_finite() && **a > 0.0)
        .fold((0.0, 0usize), |(s, n), (a, p)| {
            (s + (a - p).abs() / a, n + 1)
        });
    (n > 0).then(|| sum / n as f64)
}

/// Accuracy of a forecast on a holdout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holdout {
    /// MAPE per slot.
    pub mape: f64,
    /// Relative error of the holdout's total.
    pub total_error: f64,
    /// Share of holdout slots inside the prediction interval.
    pub coverage: f64,
}

/// Fits on the series without its last `holdout` slots and scores the forecast of those slots.
pub fn holdout_mape(s: &Series, holdout: usize, cfg: &ForecastConfig) -> Option<Holdout> {
    let n = s.values.len();
    let cut = n.checked_sub(holdout).filter(|c| *c > 0 && holdout > 0)?;
    let (train, test) = s.split_at(s.ts(cut));
    let f = forecast(&train, holdout, cfg).ok()?;
    let pred: Vec<f64> = f.points.iter().map(|p| p.mean).collect();
    let m = mape(&test.values, &pred)?;
    let actual_total: f64 = test.values.iter().filter(|v| v.is_finite()).sum();
    let total_error = if actual_total > 0.0 {
        (f.total - actual_total).abs() / actual_total
    } else {
        0.0
    };
    let inside = test
        .values
        .iter()
        .zip(&f.points)
        .filter(|(a, p)| a.is_finite() && **a >= p.lower && **a <= p.upper)
        .count();
    let known = test.values.iter().filter(|v| v.is_finite()).count().max(1);
    Some(Holdout {
        mape: m,
        total_error,
        coverage: inside as f64 / known as f64,
    })
}
