//! What `/budgets` and `/forecast` compute at read time: a scope's spend and run rate from the
//! summaries, budgets (Kubecost's and the config's) with utilisation and projection, and
//! Kubecost's spec-cost predictions summed per forecast scope.

use kb_analytics::Dimension;
use kb_analytics::budget::{BudgetPeriod, BudgetSpec, BudgetStatus, budget_status};
use kb_analytics::summary::Granularity;
use kb_core::window::{DAY, HOUR, Window, floor_to, format_rfc3339};
use kb_core::{Budget, SpecCostPrediction};
use kb_pipeline::insights::{InsightReader, SummaryQuery};
use kb_pipeline::ports::StoreError;

use crate::model::{BudgetOut, BudgetScope, KubecostPredictionOut, Range, fin};

/// Hours of summaries the run rate averages (a week smooths the weekly cycle).
pub(crate) const RUN_RATE_HOURS: i64 = 7 * 24;

/// What a figure covers inside a cluster: the whole cluster, or the summaries of one
/// dimension whose value is one of `names`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scope {
    pub dimension: Dimension,
    /// Empty for the whole cluster.
    pub names: Vec<String>,
}

impl Scope {
    fn cluster() -> Scope {
        Scope {
            dimension: Dimension::Cluster,
            names: Vec::new(),
        }
    }
}

/// `(cost, start of the first bucket, end of the last bucket)` of the scope's summaries at
/// `granularity` whose bucket starts in `range`.
fn summed(
    ins: &dyn InsightReader,
    cluster: &str,
    scope: &Scope,
    granularity: Granularity,
    range: Window,
) -> Result<(f64, Option<(i64, i64)>), StoreError> {
    if range.end <= range.start {
        return Ok((0.0, None));
    }
    let names: Vec<Option<String>> = if scope.names.is_empty() {
        vec![None]
    } else {
        scope.names.iter().cloned().map(Some).collect()
    };
    let mut cost = 0.0;
    let mut span: Option<(i64, i64)> = None;
    for name in names {
        let rows = ins.summaries(&SummaryQuery {
            cluster: Some(cluster.to_string()),
            dimension: scope.dimension,
            granularity,
            range,
            namespace: None,
            name,
        })?;
        for r in rows {
            let t = r.summary.totals.total_cost;
            if t.is_finite() {
                cost += t;
            }
            let b = r.summary.bucket;
            span = Some(span.map_or((b.start, b.end), |(s, e)| (s.min(b.start), e.max(b.end))));
        }
    }
    Ok((cost, span))
}

/// The scope's cost in `range`: whole UTC days from daily summaries, the hours around them
/// from hourly ones.
pub(crate) fn spend(
    ins: &dyn InsightReader,
    cluster: &str,
    scope: &Scope,
    range: Window,
) -> Result<f64, StoreError> {
    let first_day = floor_to(range.start + DAY - 1, DAY);
    let last_day = floor_to(range.end, DAY);
    if first_day >= last_day {
        return Ok(summed(ins, cluster, scope, Granularity::Hour, range)?.0);
    }
    let hours = |start, end| {
        summed(
            ins,
            cluster,
            scope,
            Granularity::Hour,
            Window { start, end },
        )
    };
    Ok(hours(range.start, first_day)?.0
        + summed(
            ins,
            cluster,
            scope,
            Granularity::Day,
            Window {
                start: first_day,
                end: last_day,
            },
        )?
        .0
        + hours(last_day, range.end)?.0)
}

/// The scope's run rate: its hourly summaries of the last [`RUN_RATE_HOURS`] before `now`,
/// per hour between the first and the last bucket; `(rate, end of the newest bucket)`, or
/// `None` without summaries.
pub(crate) fn run_rate(
    ins: &dyn InsightReader,
    cluster: &str,
    scope: &Scope,
    now: i64,
) -> Result<Option<(f64, i64)>, StoreError> {
    let end = floor_to(now, HOUR) + HOUR;
    let (cost, span) = summed(
        ins,
        cluster,
        scope,
        Granularity::Hour,
        Window {
            start: end - RUN_RATE_HOURS * HOUR,
            end,
        },
    )?;
    Ok(span.and_then(|(s, e)| {
        let hours = (e.min(now) - s) as f64 / HOUR as f64;
        (hours > 0.0).then(|| (cost / hours, e.min(now)))
    }))
}

fn status_fields(out: &mut BudgetOut, st: Option<BudgetStatus>) {
    if let Some(st) = st {
        out.projected_spend = Some(fin(st.projected_spend));
        out.projected_utilization = Some(fin(st.projected_utilisation));
        out.projected_overrun = Some(fin(st.projected_overrun));
        out.exceeds_at = st.exceeds_at.map(format_rfc3339);
    }
}

fn range_of(w: Window) -> Range {
    Range {
        start: format_rfc3339(w.start),
        end: format_rfc3339(w.end),
    }
}

/// A budget from config, evaluated at `now`: spend to date from the summaries up to the
/// newest one (`as_of`), projected at the scope's run rate.
pub(crate) fn config_budget(
    ins: &dyn InsightReader,
    b: &BudgetSpec,
    now: i64,
) -> Result<BudgetOut, StoreError> {
    let scope = match &b.filter {
        None => Scope::cluster(),
        Some((d, v)) => Scope {
            dimension: *d,
            names: vec![v.clone()],
        },
    };
    let rate = run_rate(ins, &b.cluster, &scope, now)?;
    let as_of = rate.map_or(now, |(_, t)| t);
    let period = b.period.window(as_of);
    let spent = spend(
        ins,
        &b.cluster,
        &scope,
        Window {
            start: period.start,
            end: as_of.max(period.start),
        },
    )?;
    let (interval, interval_day) = match b.period {
        BudgetPeriod::Monthly { start_day } => ("monthly", start_day),
        BudgetPeriod::Weekly { start_weekday } => ("weekly", start_weekday),
    };
    let mut scope_out = vec![BudgetScope {
        category: "cluster".into(),
        values: vec![b.cluster.clone()],
    }];
    if let Some((d, v)) = &b.filter {
        scope_out.push(BudgetScope {
            category: kb_pipeline::insights::names::dimension(*d).to_string(),
            values: vec![v.clone()],
        });
    }
    let mut out = BudgetOut {
        source: "bridge".into(),
        id: format!("bridge:{}", b.name),
        name: b.name.clone(),
        budget_type: "allocations".into(),
        interval: interval.into(),
        interval_day,
        spend_limit: fin(b.amount),
        current_spend: fin(spent),
        utilization: (b.amount > 0.0).then(|| fin(spent / b.amount)),
        window: range_of(period),
        scope: scope_out,
        currency: b.currency.clone(),
        run_rate_per_hour: rate.map(|(r, _)| fin(r)),
        projected_spend: None,
        projected_utilization: None,
        projected_overrun: None,
        exceeds_at: None,
        as_of: format_rfc3339(as_of),
    };
    if let Some((r, _)) = rate {
        status_fields(
            &mut out,
            budget_status(b.amount, spent, r, period, as_of).ok(),
        );
    }
    Ok(out)
}

/// Whether a Kubecost budget concerns `cluster`: it has no `cluster` scope, or its `cluster`
/// scope names it (case-insensitively, as Kubecost matches filter values).
pub(crate) fn kubecost_budget_applies(b: &Budget, cluster: &str) -> bool {
    b.values
        .iter()
        .filter(|(category, _)| category.eq_ignore_ascii_case("cluster"))
        .all(|(_, values)| {
            values.is_empty() || values.iter().any(|v| v.eq_ignore_ascii_case(cluster))
        })
}

/// The part of `cluster` a Kubecost budget covers, when the summaries know it: the cluster
/// itself or a list of its namespaces. Label and other scopes give `None`.
fn kubecost_scope(b: &Budget, cluster: &str) -> Option<Scope> {
    let mut scope = Scope::cluster();
    for (category, values) in &b.values {
        match category.to_ascii_lowercase().as_str() {
            "cluster" if values.is_empty() || values.iter().any(|v| v == cluster) => {}
            "namespace" if scope.names.is_empty() && !values.is_empty() => {
                scope = Scope {
                    dimension: Dimension::Namespace,
                    names: values.clone(),
                };
            }
            _ => return None,
        }
    }
    Some(scope)
}

/// A Kubecost budget of `cluster` with Kubecost's spend to date, projected at the run rate of
/// its scope where the summaries know the scope.
pub(crate) fn kubecost_budget(
    ins: &dyn InsightReader,
    b: Budget,
    cluster: &str,
    currency: &str,
    now: i64,
) -> Result<BudgetOut, StoreError> {
    let rate = match kubecost_scope(&b, cluster) {
        Some(scope) => run_rate(ins, cluster, &scope, now)?,
        None => None,
    };
    let as_of = rate.map_or(now, |(_, t)| t);
    let period = if b.window.end > b.window.start {
        b.window
    } else {
        BudgetPeriod::of_kubecost(&b).map_or(b.window, |p| p.window(as_of))
    };
    let mut out = BudgetOut {
        source: "kubecost".into(),
        utilization: (b.spend_limit > 0.0).then(|| fin(b.current_spend / b.spend_limit)),
        id: b.id.clone(),
        name: b.name.clone(),
        budget_type: b.budget_type.clone(),
        interval: b.interval.clone(),
        interval_day: b.interval_day,
        spend_limit: fin(b.spend_limit),
        current_spend: fin(b.current_spend),
        window: range_of(period),
        scope: b
            .values
            .iter()
            .map(|(category, values)| BudgetScope {
                category: category.clone(),
                values: values.clone(),
            })
            .collect(),
        currency: currency.to_string(),
        run_rate_per_hour: rate.map(|(r, _)| fin(r)),
        projected_spend: None,
        projected_utilization: None,
        projected_overrun: None,
        exceeds_at: None,
        as_of: format_rfc3339(as_of),
    };
    if let Some((r, _)) = rate {
        status_fields(
            &mut out,
            budget_status(b.spend_limit, b.current_spend, r, period, as_of).ok(),
        );
    }
    Ok(out)
}

/// Kubecost's predictions for the workloads of a forecast's scope (`namespace` empty: the
/// whole cluster), summed; `None` when there are none.
pub(crate) fn prediction_for(
    preds: &[SpecCostPrediction],
    namespace: Option<&str>,
    horizon_days: u32,
) -> Option<KubecostPredictionOut> {
    let mine: Vec<&SpecCostPrediction> = preds
        .iter()
        .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
        .collect();
    if mine.is_empty() {
        return None;
    }
    let before: f64 = mine
        .iter()
        .map(|p| fin(p.cost_before.total_monthly_rate))
        .sum();
    let after: f64 = mine
        .iter()
        .map(|p| fin(p.cost_after.total_monthly_rate))
        .sum();
    let change = after - before;
    Some(KubecostPredictionOut {
        workloads: mine
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    p.namespace, p.controller_kind, p.controller_name
                )
            })
            .collect(),
        monthly_cost_before: before,
        monthly_cost: after,
        monthly_change: change,
        horizon_change: change * f64::from(horizon_days) * 24.0 / 730.0,
    })
}

#[cfg(test)]
mod applies_tests {
    use super::*;

    fn budget(values: &[(&str, &[&str])]) -> Budget {
        Budget {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            ..Budget::default()
        }
    }

    #[test]
    fn a_kubecost_budget_scoped_to_other_clusters_is_not_this_ones() {
        assert!(kubecost_budget_applies(&budget(&[]), "a"));
        assert!(kubecost_budget_applies(
            &budget(&[("namespace", &["x"])]),
            "a"
        ));
        assert!(kubecost_budget_applies(
            &budget(&[("cluster", &["b", "A"])]),
            "a"
        ));
        assert!(!kubecost_budget_applies(
            &budget(&[("cluster", &["b"])]),
            "a"
        ));
        assert!(!kubecost_budget_applies(
            &budget(&[("Cluster", &["b"]), ("namespace", &["x"])]),
            "a"
        ));
    }
}
