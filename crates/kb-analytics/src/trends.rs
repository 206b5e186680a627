//! Trends: period-over-period change, moving averages, month to date and the projected
//! month-end spend.

use kb_core::window::{HOUR, Window};

use crate::calendar::{month_start, next_month_start};
use crate::series::Series;

/// Change of a period against the one before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodChange {
    pub current: Window,
    pub current_cost: f64,
    pub previous_cost: f64,
    pub change: f64,
    /// `change / previous_cost`; `None` when the previous cost is not positive.
    pub relative_change: Option<f64>,
}

/// Returns the relative change from `previous` to `current`, `None` when `previous` is not
/// positive or either is not finite.
pub fn relative_change(previous: f64, current: f64) -> Option<f64> {
    (previous > 0.0 && previous.is_finite() && current.is_finite())
        .then(|| (current - previous) / previous)
}

/// Compares the cost of `[end − period, end)` with `[end − 2 × period, end − period)`.
pub fn period_over_period(series: &Series, end: i64, period: i64) -> PeriodChange {
    let current = Window {
        start: end - period,
        end,
    };
    let previous = Window {
        start: end - 2 * period,
        end: end - period,
    };
    let c = series.sum_in(current);
    let p = series.sum_in(previous);
    PeriodChange {
        current,
        current_cost: c,
        previous_cost: p,
        change: c - p,
        relative_change: relative_change(p, c),
    }
}

/// Trailing moving average over `n` points (missing values skipped; NaN where the trailing
/// `n` points have no value). `n = 0` is treated as 1.
pub fn moving_average(series: &Series, n: usize) -> Series {
    let n = n.max(1);
    let mut out = Vec::with_capacity(series.values.len());
    let (mut sum, mut cnt) = (0.0, 0usize);
    for (i, v) in series.values.iter().enumerate() {
        if v.is_finite() {
            sum += v;
            cnt += 1;
        }
        if i >= n {
            if let Some(old) = series.values.get(i - n).filter(|o| o.is_finite()) {
                sum -= old;
                cnt -= 1;
            }
        }
        out.push(if cnt > 0 { sum / cnt as f64 } else { f64::NAN });
    }
    Series {
        start: series.start,
        step: series.step,
        values: out,
    }
}

/// Month-to-date spend and the projected month-end spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonthToDate {
    /// The UTC calendar month containing `now`.
    pub month: Window,
    /// Spend from the month's start to `now`.
    pub spend: f64,
    pub elapsed_hours: f64,
    pub remaining_hours: f64,
    /// Cost per hour over the trailing run-rate window (or the month so far if shorter).
    pub run_rate_per_hour: f64,
    /// `spend + run_rate_per_hour × remaining_hours`.
    pub projected_month_end: f64,
}

/// Computes month to date at `now` from a cost series, projecting the rest of the month at the
/// average hourly cost of the last `run_rate_hours` before `now` (a week smooths the weekly
/// cycle). Slots starting at or after `now` are ignored.
pub fn month_to_date(series: &Series, now: i64, run_rate_hours: i64) -> MonthToDate {
    let ms = month_start(now);
    let me = next_month_start(now);
    let spend = series.sum_in(Window {
        start: ms,
        end: now,
    });
    let rr_start = (now - run_rate_hours.max(1) * HOUR).max(series.start);
    let rr_hours = (now - rr_start).max(0) as f64 / HOUR as f64;
    let rr = if rr_hours > 0.0 {
        series.sum_in(Window {
            start: rr_start,
            end: now,
        }) / rr_hours
    } else {
        0.0
    };
    let remaining = (me - now).max(0) as f64 / HOUR as f64;
    MonthToDate {
        month: Window { start: ms, end: me },
        spend,
        elapsed_hours: (now - ms).max(0) as f64 / HOUR as f64,
        remaining_hours: remaining,
        run_rate_per_hour: rr,
        projected_month_end: spend + rr * remaining,
    }
}
