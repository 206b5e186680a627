//! The aggregator's job: stored allocations -> allocation rules -> summaries, anomalies and
//! forecasts in the store. The logic is `kb-analytics`' pure functions; this module reads,
//! schedules and writes.
//!
//! A run covers whole UTC days of one cluster:
//! 1. For each day, the stored allocation rows are read window by window (one hour or one day
//!    of rows in memory at a time), the rules are applied, and hourly and daily summaries are
//!    built and written; each write replaces the day's summaries (idempotent). Daily rows (older
//!    than Kubecost's hourly retention) feed the daily summaries only.
//! 2. Each month the run touched gets its monthly summaries again, as the sum of its daily
//!    summaries (totals are additive; efficiency is recomputed from usage and request cost).
//! 3. Anomalies: hourly `total_cost` series per cluster, namespace, workload and team over
//!    `aggregation.history`, through the seed's increase rule and the seasonal detector; the
//!    anomalies starting inside the run's days replace the stored ones.
//! 4. Forecasts: daily series per cluster and namespace over the history, 7 and 30 days ahead.
//! 5. Recommendations: the allocation rows and node assets of the last `aggregation.optimization
//!    .observe` (up to the last closed hour) through `kb_analytics::recommend`: right-sizing,
//!    abandoned workloads, node-pool sizing and spot candidates replace the cluster's stored
//!    list. Rows are read without their labels, so memory holds the numbers and names only.
//!
//! Summaries record `source = api`: they come from Kubecost's API data. The real-time
//! estimate of the open hour is written with `source = realtime` by the metrics processor and
//! is hidden by the api summary once the window lands.

use std::collections::BTreeMap;

use anyhow::Context;
use kb_analytics::anomaly::{IncreaseRule, SeasonalConfig, detect_all};
use kb_analytics::forecast::{ForecastConfig, forecast_days};
use kb_analytics::recommend::recommend;
use kb_analytics::series::series_from_summaries;
use kb_analytics::summary::CostTotals;
use kb_analytics::{CostSummary, Dimension, Granularity, SummaryBuilder, apply_rules};
use kb_core::window::{DAY, HOUR, floor_to};
use kb_core::{Allocation, Window};
use kb_pipeline::insights::{
    ForecastRow, InsightReader, InsightStore, RecommendationSet, Source, SummaryQuery,
};
use kb_store::SqliteStore;

use crate::config::AggregationConfig;

/// (namespace, or `None` for the whole cluster; 24 h increase ratio).
pub(crate) type Increases = Vec<(Option<String>, f64)>;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct AggregateReport {
    pub days: u64,
    pub rows: u64,
    pub summaries: u64,
    pub anomalies: u64,
    pub forecasts: u64,
    /// Recommendations stored.
    pub recommendations: u64,
    /// Their estimated monthly saving (every cluster).
    pub monthly_savings: f64,
    /// Per cluster: (namespace or `None` for the cluster, last 24 closed hours over the 24
    /// before, minus 1), for `kubecost_bridge_cost_increase_ratio`.
    pub increases: Vec<(String, Increases)>,
}

impl AggregateReport {
    fn add(&mut self, o: &AggregateReport) {
        self.days += o.days;
        self.rows += o.rows;
        self.summaries += o.summaries;
        self.anomalies += o.anomalies;
        self.forecasts += o.forecasts;
        self.recommendations += o.recommendations;
        self.monthly_savings += o.monthly_savings;
        self.increases.extend(o.increases.iter().cloned());
    }
}

/// Aggregates the whole UTC days that overlap `[from, to)` for every cluster in `clusters`,
/// then refreshes anomalies and forecasts as of `now`.
pub(crate) fn aggregate(
    store: &SqliteStore,
    cfg: &AggregationConfig,
    clusters: &[String],
    from: i64,
    to: i64,
    now: i64,
) -> anyhow::Result<AggregateReport> {
    let mut total = AggregateReport::default();
    for cluster in clusters {
        let r = aggregate_cluster(store, cfg, cluster, from, to, now)
            .with_context(|| format!("aggregate cluster {cluster}"))?;
        tracing::info!(
            cluster,
            days = r.days,
            rows = r.rows,
            summaries = r.summaries,
            anomalies = r.anomalies,
            forecasts = r.forecasts,
            recommendations = r.recommendations,
            monthly_savings = r.monthly_savings,
            "aggregated"
        );
        total.add(&r);
    }
    Ok(total)
}

fn aggregate_cluster(
    store: &SqliteStore,
    cfg: &AggregationConfig,
    cluster: &str,
    from: i64,
    to: i64,
    now: i64,
) -> anyhow::Result<AggregateReport> {
    let mut report = AggregateReport::default();
    let first = floor_to(from, DAY);
    let last = floor_to(to.max(from + 1) - 1, DAY) + DAY;
    let mut months = Vec::new();
    let mut day = first;
    while day < last {
        let w = Window {
            start: day,
            end: day + DAY,
        };
        let (rows, summaries) = aggregate_day(store, cfg, cluster, w)?;
        report.rows += rows;
        report.summaries += summaries;
        report.days += 1;
        let m = Granularity::Month.bucket(day);
        if months.last() != Some(&m) {
            months.push(m);
        }
        day += DAY;
    }
    for m in months {
        report.summaries += rollup_month(store, cfg, cluster, m)?;
    }
    let range = Window {
        start: first,
        end: last,
    };
    let (anomalies, increases) = detect(store, cfg, cluster, range, now)?;
    report.anomalies = anomalies;
    report.increases.push((cluster.to_string(), increases));
    report.forecasts = forecast(store, cfg, cluster, now)?;
    let set = recommendations(store, cfg, cluster, now)?;
    report.recommendations = set.items.len() as u64;
    report.monthly_savings = set.items.iter().map(|r| r.monthly_savings).sum();
    Ok(report)
}

/// Rules and hourly + daily summaries for one UTC day; returns (rows read, summaries written).
fn aggregate_day(
    store: &SqliteStore,
    cfg: &AggregationConfig,
    cluster: &str,
    day: Window,
) -> anyhow::Result<(u64, u64)> {
    let mut builder = SummaryBuilder::new(&Dimension::ALL, &[Granularity::Hour, Granularity::Day]);
    let mut window_rows: Vec<Allocation> = Vec::new();
    let mut current: Option<Window> = None;
    let mut failure: Option<anyhow::Error> = None;
    let n = store.allocations(cluster, day, &mut |a| {
        if current != Some(a.window) {
            if let Err(e) = flush(cfg, cluster, &mut window_rows, &mut builder) {
                failure.get_or_insert(e);
            }
            current = Some(a.window);
        }
        window_rows.push(a);
        Ok(())
    })?;
    flush(cfg, cluster, &mut window_rows, &mut builder)?;
    if let Some(e) = failure {
        return Err(e);
    }
    let (hourly, daily): (Vec<CostSummary>, Vec<CostSummary>) = builder
        .finish()
        .into_iter()
        .partition(|s| s.granularity == Granularity::Hour);
    let version = cfg.rules.version;
    let mut written = store.put_summaries(
        cluster,
        Granularity::Hour,
        day,
        Source::Api,
        version,
        &hourly,
    )?;
    written += store.put_summaries(cluster, Granularity::Day, day, Source::Api, version, &daily)?;
    Ok((n, written))
}

/// Applies the rules to one window's rows and adds them to the summaries.
fn flush(
    cfg: &AggregationConfig,
    cluster: &str,
    rows: &mut Vec<Allocation>,
    builder: &mut SummaryBuilder,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let allocated = apply_rules(rows, &cfg.rules).context("apply allocation rules")?;
    if allocated.skipped_non_finite > 0 {
        tracing::warn!(
            cluster,
            rows = allocated.skipped_non_finite,
            "allocation rows with non-finite numbers skipped"
        );
    }
    builder.add(&allocated.rows);
    rows.clear();
    Ok(())
}

/// Rebuilds a month's summaries from its daily ones; returns the summaries written.
fn rollup_month(
    store: &SqliteStore,
    cfg: &AggregationConfig,
    cluster: &str,
    month: Window,
) -> anyhow::Result<u64> {
    let mut rows = Vec::new();
    for dimension in Dimension::ALL {
        let days = store.summaries(&SummaryQuery {
            cluster: Some(cluster.to_string()),
            dimension,
            granularity: Granularity::Day,
            range: month,
            namespace: None,
            name: None,
        })?;
        let mut sums: BTreeMap<(String, String), CostTotals> = BTreeMap::new();
        for d in days.iter().filter(|d| d.source == Source::Api) {
            let s = &d.summary;
            sums.entry((s.namespace.clone(), s.name.clone()))
                .or_default()
                .merge(&s.totals);
        }
        rows.extend(
            sums.into_iter()
                .map(|((namespace, name), totals)| CostSummary {
                    granularity: Granularity::Month,
                    bucket: month,
                    dimension,
                    cluster: cluster.to_string(),
                    namespace,
                    name,
                    efficiency_score: totals.efficiency_score(),
                    totals,
                }),
        );
    }
    Ok(store.put_summaries(
        cluster,
        Granularity::Month,
        month,
        Source::Api,
        cfg.rules.version,
        &rows,
    )?)
}

fn history(cfg: &AggregationConfig, now: i64) -> Window {
    let end = floor_to(now, DAY) + DAY;
    Window {
        start: end - (cfg.history.as_secs() as i64).max(DAY),
        end,
    }
}

/// Runs both detectors on hourly series and stores the anomalies that start in `range`;
/// returns how many, and the 24 h increase ratio of the cluster and each namespace.
fn detect(
    store: &SqliteStore,
    cfg: &AggregationConfig,
    cluster: &str,
    range: Window,
    now: i64,
) -> anyhow::Result<(u64, Increases)> {
    let last_hour = floor_to(now, kb_core::window::HOUR);
    let mut increases = Vec::new();
    let rule = IncreaseRule {
        threshold: cfg.anomaly_threshold,
        min_previous: cfg.anomaly_min_cost,
        ..IncreaseRule::default()
    };
    let seasonal = SeasonalConfig::default();
    let mut found = Vec::new();
    for dimension in [
        Dimension::Cluster,
        Dimension::Namespace,
        Dimension::Controller,
        Dimension::Team,
    ] {
        let sums: Vec<CostSummary> = store
            .summaries(&SummaryQuery {
                cluster: Some(cluster.to_string()),
                dimension,
                granularity: Granularity::Hour,
                range: history(cfg, now),
                namespace: None,
                name: None,
            })?
            .into_iter()
            .map(|s| s.summary)
            .collect();
        if matches!(dimension, Dimension::Cluster | Dimension::Namespace) {
            let mut by_name: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for s in &sums {
                let t = s.bucket.start;
                let e = by_name.entry(s.name.as_str()).or_default();
                if t >= last_hour - DAY && t < last_hour {
                    e.0 += s.totals.total_cost;
                } else if t >= last_hour - 2 * DAY && t < last_hour - DAY {
                    e.1 += s.totals.total_cost;
                }
            }
            for (name, (last, prev)) in by_name {
                // The noise floor: a day that cost less than 24 hours at the rule's minimum.
                if let Some(r) =
                    kb_ops::metrics::cost_increase_ratio(last, prev, 24.0 * cfg.anomaly_min_cost)
                {
                    let ns = (dimension == Dimension::Namespace).then(|| name.to_string());
                    increases.push((ns, r));
                }
            }
        }
        let series = series_from_summaries(&sums, Granularity::Hour, dimension);
        found.extend(
            detect_all(series.iter(), Some(&rule), Some(&seasonal))
                .into_iter()
                .filter(|a| range.contains_instant(a.start)),
        );
    }
    store.put_anomalies(cluster, range, &found)?;
    Ok((found.len() as u64, increases))
}

/// Forecasts cluster and namespace cost 7 and 30 days ahead from daily series.
fn forecast(
    store: &SqliteStore,
    cfg: &AggregationConfig,
    cluster: &str,
    now: i64,
) -> anyhow::Result<u64> {
    let fc = ForecastConfig::default();
    let mut rows = Vec::new();
    // Only whole days: today's partial bucket would read as a drop.
    let h = history(cfg, now);
    let range = Window {
        start: h.start,
        end: floor_to(now, DAY),
    };
    for dimension in [Dimension::Cluster, Dimension::Namespace] {
        let sums: Vec<CostSummary> = store
            .summaries(&SummaryQuery {
                cluster: Some(cluster.to_string()),
                dimension,
                granularity: Granularity::Day,
                range,
                namespace: None,
                name: None,
            })?
            .into_iter()
            .map(|s| s.summary)
            .collect();
        for (key, s) in series_from_summaries(&sums, Granularity::Day, dimension) {
            for days in [7u32, 30] {
                match forecast_days(&s, days, &fc) {
                    Ok(f) => rows.push(ForecastRow {
                        cluster: cluster.to_string(),
                        dimension,
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        made_at: s.end(),
                        horizon_days: days,
                        total: f.total,
                        lower: f.total_lower,
                        upper: f.total_upper,
                        kubecost: None,
                    }),
                    Err(e) => {
                        tracing::debug!(cluster, name = %key.name, error = %e, "no forecast");
                    }
                }
            }
        }
    }
    store.put_forecasts(cluster, &rows)?;
    Ok(rows.len() as u64)
}

/// Computes the cluster's recommendations from the allocation rows and node assets of the
/// observed period and replaces the stored ones; returns what it stored.
fn recommendations(
    store: &SqliteStore,
    cfg: &AggregationConfig,
    cluster: &str,
    now: i64,
) -> anyhow::Result<RecommendationSet> {
    let end = floor_to(now, HOUR);
    let observed = Window {
        start: end - (cfg.observe.as_secs() as i64).max(HOUR),
        end,
    };
    let mut rows: Vec<Allocation> = Vec::new();
    store.allocations(cluster, observed, &mut |mut a| {
        // The advice reads numbers and names only.
        a.labels = Vec::new();
        a.annotations = Vec::new();
        a.namespace_labels = Vec::new();
        a.services = Vec::new();
        rows.push(a);
        Ok(())
    })?;
    // Assets are daily: every day the observed period touches.
    let days = Window {
        start: floor_to(observed.start, DAY),
        end: floor_to(observed.end + DAY - 1, DAY),
    };
    let nodes = store.node_assets(cluster, days)?;
    let rec = recommend(&rows, &nodes, &cfg.optimization);
    let set = RecommendationSet {
        cluster: cluster.to_string(),
        made_at: now,
        observed,
        monthly_cost: rec.monthly_cost.get(cluster).copied().unwrap_or(0.0),
        items: rec
            .items
            .into_iter()
            .filter(|r| r.cluster == cluster)
            .collect(),
    };
    store.put_recommendations(&set)?;
    Ok(set)
}
