//! Budgets: the current period, utilisation and projected overrun from spend to date and a
//! run rate. Works for Kubecost's budgets ([`kb_core::Budget`]) and budgets from config alike.

use kb_core::model::Budget;
use kb_core::window::{DAY, HOUR, Window};

use crate::calendar::{civil_from_unix, unix_from_civil, weekday};

/// A budget's recurring period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetPeriod {
    /// Starts on `start_day` of every month (1..=28; larger values are read as 28 so every month
    /// has the day).
    Monthly { start_day: u32 },
    /// Starts on `start_weekday` (0 = Sunday ... 6) of every week, midnight UTC.
    Weekly { start_weekday: u32 },
}

impl BudgetPeriod {
    /// Reads Kubecost's `interval` (`weekly`/`monthly`) and `intervalDay`; `None` for another
    /// interval.
    pub fn of_kubecost(b: &Budget) -> Option<BudgetPeriod> {
        match b.interval.to_ascii_lowercase().as_str() {
            "monthly" | "month" => Some(BudgetPeriod::Monthly {
                start_day: b.interval_day,
            }),
            "weekly" | "week" => Some(BudgetPeriod::Weekly {
                start_weekday: b.interval_day,
            }),
            _ => None,
        }
    }

    /// Returns the period `[start, end)` containing `now` (UTC).
    pub fn window(self, now: i64) -> Window {
        match self {
            BudgetPeriod::Monthly { start_day } => {
                let d = start_day.clamp(1, 28);
                let (y, m, day) = civil_from_unix(now);
                let (sy, sm) = if day >= d {
                    (y, m)
                } else if m == 1 {
                    (y - 1, 12)
                } else {
                    (y, m - 1)
                };
                let (ey, em) = if sm == 12 { (sy + 1, 1) } else { (sy, sm + 1) };
                Window {
                    start: unix_from_civil(sy, sm, d),
                    end: unix_from_civil(ey, em, d),
                }
            }
            BudgetPeriod::Weekly { start_weekday } => {
                let wd = i64::from(start_weekday % 7);
                let today = now.div_euclid(DAY) * DAY;
                let back = (i64::from(weekday(now)) - wd).rem_euclid(7);
                let start = today - back * DAY;
                Window {
                    start,
                    end: start + 7 * DAY,
                }
            }
        }
    }
}

/// Where a budget stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetStatus {
    pub period: Window,
    pub amount: f64,
    pub spend_to_date: f64,
    /// `spend_to_date / amount` (∞ for a zero budget with spend, 0 with none).
    pub utilisation: f64,
    /// Spend to date plus the run rate over the rest of the period.
    pub projected_spend: f64,
    pub projected_utilisation: f64,
    /// `max(0, projected_spend − amount)`.
    pub projected_overrun: f64,
    /// When spend reaches the amount at the run rate (`now` or earlier when already over);
    /// `None` when it does not within the period.
    pub exceeds_at: Option<i64>,
}

/// Why a budget could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error("budget {field} must be a finite number >= 0, got {value}")]
    Value { field: &'static str, value: f64 },
}

fn check(field: &'static str, value: f64) -> Result<f64, BudgetError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(BudgetError::Value { field, value })
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// Evaluates a budget of `amount` for `period` at `now`, given the spend so far in the period
/// and the current cost per hour (for example [`crate::trends::MonthToDate::run_rate_per_hour`]).
pub fn budget_status(
    amount: f64,
    spend_to_date: f64,
    run_rate_per_hour: f64,
    period: Window,
    now: i64,
) -> Result<BudgetStatus, BudgetError> {
    let amount = check("amount", amount)?;
    let spend = check("spend to date", spend_to_date)?;
    let rate = check("run rate", run_rate_per_hour)?;
    let now_c = now.clamp(period.start, period.end);
    let remaining_h = (period.end - now_c) as f64 / HOUR as f64;
    let projected = spend + rate * remaining_h;
    let exceeds_at = if spend >= amount && (amount > 0.0 || spend > 0.0) {
        Some(now_c)
    } else if rate > 0.0 {
        let secs = ((amount - spend) / rate * HOUR as f64).ceil();
        let t = now_c as f64 + secs;
        (t < period.end as f64).then_some(t as i64)
    } else {
        None
    };
    Ok(BudgetStatus {
        period,
        amount,
        spend_to_date: spend,
        utilisation: ratio(spend, amount),
        projected_spend: projected,
        projected_utilisation: ratio(projected, amount),
        projected_overrun: (projected - amount).max(0.0),
        exceeds_at,
    })
}

/// A budget the bridge's config defines (Kubecost's own are [`kb_core::Budget`]): an amount
/// per period for a cluster, or for one namespace, team, owner, product or cost centre of it
/// (the last four as the allocation rules attribute them, from labels by default).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpec {
    pub name: String,
    pub cluster: String,
    /// `None`: the whole cluster. Otherwise the summary dimension and its value
    /// (never [`crate::Dimension::Cluster`] or [`crate::Dimension::Controller`]).
    pub filter: Option<(crate::Dimension, String)>,
    /// Spend limit per period, in `currency`.
    pub amount: f64,
    pub period: BudgetPeriod,
    /// The currency of `amount`; the bridge does not convert, so it is the currency Kubecost
    /// reports.
    pub currency: String,
}

impl BudgetPeriod {
    /// `month` or `week`, as config and the API name the period.
    pub fn name(self) -> &'static str {
        match self {
            BudgetPeriod::Monthly { .. } => "month",
            BudgetPeriod::Weekly { .. } => "week",
        }
    }
}
