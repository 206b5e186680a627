//! The aggregator's results in ClickHouse: [`InsightStore`] and [`InsightReader`] for
//! [`ClickHouseStore`] (schema versions 2 and 3), so the REST API can be served from ClickHouse.
//!
//! The same versioned scheme as the window store (see the crate docs), because ClickHouse has
//! no transactions and its deletes are asynchronous:
//! - `put_summaries` inserts the rows with a new `version`, then, last, one `insight_commits`
//!   row per bucket the range covers (`kind = 'summaries'`, with the granularity and source),
//!   all in one insert: the commit point. A summary counts only when its version owns its
//!   `(cluster, granularity, source, bucket)` slot, the owner being
//!   `argMax(row_version, commit_version)`. So a range aggregated again replaces the old rows
//!   the instant its commit lands, an empty write hides what the range held, and a crashed
//!   write is never seen.
//! - `put_anomalies` does the same with hour slots of the anomaly's start (`kind = 'anomalies'`).
//! - `put_forecasts` replaces the cluster's list like budgets (rows, then a `snapshots` row).
//! - `put_recommendations` (schema version 3) replaces the cluster's list the same way, in the
//!   `recommendations` table: one run row (`is_run = 1`: made_at, the observed window and the
//!   monthly cost, also on every item row) and one row per item, all of one version, made
//!   current by its `snapshots` row. So a run with no items still reads back, a reader sees
//!   one whole run (one query over one version), and "no run yet" is no `snapshots` row.
//!
//! Superseded rows are deleted in the background by the store's janitor. Readers keep the
//! SQLite store's order, and an `api` summary hides a `realtime` one of the same key.
//!
//! `mirror_marks` holds, per cluster, kind and unit (a day or a month), a fingerprint the
//! bridge's mirror computed from the embedded store's copy of what it last wrote there; the
//! mirror compares it to decide what to copy again.

use kb_analytics::anomaly::Anomaly;
use kb_analytics::recommend::{Recommendation, RecommendationKind};
use kb_analytics::summary::CostTotals;
use kb_analytics::{CostSummary, Granularity, SeriesKey};
use kb_core::{Budget, SavingsRecommendation, SpecCostPrediction, Window};
use kb_pipeline::insights::{
    ForecastRow, InsightReader, InsightStore, RecommendationSet, Source, StoredSummary,
    SummaryQuery, names,
};
use kb_pipeline::ports::StoreError;

use crate::error::Error;
use crate::query::lit;
use crate::rowbinary::{Reader, put_f64, put_i64, put_str, put_u8, put_u32, put_u64};
use crate::rows::{Col, ListCtx, column_list, encode, put_dt, slot_of};
use crate::store::{ClickHouseStore, Inner, decode_err};

/// What every summary row of one write shares.
pub(crate) struct SummaryCtx {
    cluster: String,
    granularity: &'static str,
    source: &'static str,
    version: u64,
    rules_version: u32,
}

/// Non-finite amounts are stored as 0, as the SQLite store does.
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

macro_rules! total_col {
    ($name:literal, $field:ident) => {
        Col::<SummaryCtx, CostSummary> {
            name: $name,
            ty: "Float64",
            put: |_, r, b| put_f64(b, finite(r.totals.$field)),
        }
    };
}

/// Columns of `summaries`: the SQLite store's `cost_summaries` fields plus `version` and
/// `slot` (the bucket start) for the visibility rule, and `timestamp` for month partitions.
pub(crate) fn summary_cols() -> Vec<Col<SummaryCtx, CostSummary>> {
    vec![
        Col {
            name: "cluster",
            ty: "String",
            put: |c, _, b| put_str(b, &c.cluster),
        },
        Col {
            name: "granularity",
            ty: "String",
            put: |c, _, b| put_str(b, c.granularity),
        },
        Col {
            name: "source",
            ty: "String",
            put: |c, _, b| put_str(b, c.source),
        },
        Col {
            name: "version",
            ty: "UInt64",
            put: |c, _, b| put_u64(b, c.version),
        },
        Col {
            name: "slot",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.bucket.start),
        },
        Col {
            name: "timestamp",
            ty: "DateTime('UTC')",
            put: |_, r, b| put_dt(b, r.bucket.start),
        },
        Col {
            name: "bucket_start",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.bucket.start),
        },
        Col {
            name: "bucket_end",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.bucket.end),
        },
        Col {
            name: "dimension",
            ty: "String",
            put: |_, r, b| put_str(b, names::dimension(r.dimension)),
        },
        Col {
            name: "namespace",
            ty: "String",
            put: |_, r, b| put_str(b, &r.namespace),
        },
        Col {
            name: "name",
            ty: "String",
            put: |_, r, b| put_str(b, &r.name),
        },
        Col {
            name: "rules_version",
            ty: "UInt32",
            put: |c, _, b| put_u32(b, c.rules_version),
        },
        total_col!("total_cost", total_cost),
        total_col!("cpu_cost", cpu_cost),
        total_col!("memory_cost", memory_cost),
        total_col!("gpu_cost", gpu_cost),
        total_col!("network_cost", network_cost),
        total_col!("storage_cost", storage_cost),
        total_col!("load_balancer_cost", load_balancer_cost),
        total_col!("external_cost", external_cost),
        total_col!("shared_cost", shared_cost),
        total_col!("idle_cost", idle_cost),
        total_col!("usage_cost", usage_cost),
        total_col!("request_cost", request_cost),
        Col {
            name: "efficiency_score",
            ty: "Float64",
            put: |_, r, b| put_f64(b, finite(r.efficiency_score)),
        },
        Col {
            name: "rows",
            ty: "UInt64",
            put: |_, r, b| put_u64(b, r.totals.rows),
        },
    ]
}

/// What every anomaly row of one write shares.
pub(crate) struct AnomalyCtx {
    cluster: String,
    version: u64,
}

/// Columns of `anomalies`; `slot` is the hour of `start`.
pub(crate) fn anomaly_cols() -> Vec<Col<AnomalyCtx, Anomaly>> {
    vec![
        Col {
            name: "cluster",
            ty: "String",
            put: |c, _, b| put_str(b, &c.cluster),
        },
        Col {
            name: "version",
            ty: "UInt64",
            put: |c, _, b| put_u64(b, c.version),
        },
        Col {
            name: "slot",
            ty: "Int64",
            put: |_, r, b| put_i64(b, slot_of(r.start)),
        },
        Col {
            name: "dimension",
            ty: "String",
            put: |_, r, b| put_str(b, names::dimension(r.key.dimension)),
        },
        Col {
            name: "namespace",
            ty: "String",
            put: |_, r, b| put_str(b, &r.key.namespace),
        },
        Col {
            name: "name",
            ty: "String",
            put: |_, r, b| put_str(b, &r.key.name),
        },
        Col {
            name: "detector",
            ty: "String",
            put: |_, r, b| put_str(b, names::detector(r.detector)),
        },
        Col {
            name: "start",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.start),
        },
        Col {
            name: "end",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.end),
        },
        Col {
            name: "expected",
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.expected),
        },
        Col {
            name: "actual",
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.actual),
        },
        Col {
            name: "score",
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.score),
        },
        Col {
            name: "severity",
            ty: "String",
            put: |_, r, b| put_str(b, names::severity(r.severity)),
        },
    ]
}

/// Columns of `forecasts` (a replaced list, like budgets).
pub(crate) fn forecast_cols() -> Vec<Col<ListCtx, ForecastRow>> {
    let mut cols: Vec<Col<ListCtx, ForecastRow>> = crate::rows::list_head::<ForecastRow>()
        .into_iter()
        .collect();
    cols.extend([
        Col::<ListCtx, ForecastRow> {
            name: "dimension",
            ty: "String",
            put: |_, r, b| put_str(b, names::dimension(r.dimension)),
        },
        Col {
            name: "namespace",
            ty: "String",
            put: |_, r, b| put_str(b, &r.namespace),
        },
        Col {
            name: "name",
            ty: "String",
            put: |_, r, b| put_str(b, &r.name),
        },
        Col {
            name: "made_at",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.made_at),
        },
        Col {
            name: "horizon_days",
            ty: "UInt32",
            put: |_, r, b| put_u32(b, r.horizon_days),
        },
        Col {
            name: "total",
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.total),
        },
        Col {
            name: "lower",
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.lower),
        },
        Col {
            name: "upper",
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.upper),
        },
        Col {
            name: "kubecost",
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.kubecost.unwrap_or(0.0)),
        },
        Col {
            name: "has_kubecost",
            ty: "UInt8",
            put: |_, r, b| put_u8(b, u8::from(r.kubecost.is_some())),
        },
    ]);
    cols
}

/// One row of `recommendations`: the run (`item: None`) or one of its items.
pub(crate) struct RecommendationRow<'a> {
    set: &'a RecommendationSet,
    item: Option<&'a Recommendation>,
}

macro_rules! rec_str_col {
    ($name:literal, $field:ident) => {
        Col::<ListCtx, RecommendationRow<'a>> {
            name: $name,
            ty: "String",
            put: |_, r, b| put_str(b, r.item.map_or("", |i| i.$field.as_str())),
        }
    };
}

/// Columns of `recommendations` (a replaced list, like budgets): the run's fields on every
/// row, `is_run` marking the run row, then the item's fields (empty on the run row).
pub(crate) fn recommendation_cols<'a>() -> Vec<Col<ListCtx, RecommendationRow<'a>>> {
    let mut cols: Vec<Col<ListCtx, RecommendationRow<'a>>> =
        crate::rows::list_head::<RecommendationRow<'a>>()
            .into_iter()
            .collect();
    cols.extend([
        Col::<ListCtx, RecommendationRow<'a>> {
            name: "is_run",
            ty: "UInt8",
            put: |_, r, b| put_u8(b, u8::from(r.item.is_none())),
        },
        Col {
            name: "made_at",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.set.made_at),
        },
        Col {
            name: "window_start",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.set.observed.start),
        },
        Col {
            name: "window_end",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.set.observed.end),
        },
        Col {
            name: "monthly_cost",
            ty: "Float64",
            put: |_, r, b| put_f64(b, finite(r.set.monthly_cost)),
        },
        Col {
            name: "kind",
            ty: "String",
            put: |_, r, b| put_str(b, r.item.map_or("", |i| i.kind.as_str())),
        },
        rec_str_col!("namespace", namespace),
        rec_str_col!("controller_kind", controller_kind),
        rec_str_col!("controller", controller),
        rec_str_col!("target", target),
        rec_str_col!("description", description),
        Col {
            name: "current_monthly_cost",
            ty: "Float64",
            put: |_, r, b| put_f64(b, finite(r.item.map_or(0.0, |i| i.current_monthly_cost))),
        },
        Col {
            name: "monthly_savings",
            ty: "Float64",
            put: |_, r, b| put_f64(b, finite(r.item.map_or(0.0, |i| i.monthly_savings))),
        },
    ]);
    cols
}

/// The bucket starts of granularity `g` inside `range`: the slots a summary write commits.
fn bucket_slots(g: Granularity, range: Window) -> Vec<i64> {
    let mut out = Vec::new();
    let mut b = g.bucket(range.start);
    if b.start < range.start {
        b = g.bucket(b.end);
    }
    while b.start < range.end {
        out.push(b.start);
        let next = g.bucket(b.end);
        if next.start <= b.start {
            break;
        }
        b = next;
    }
    out
}

/// The hour slots of `[range.start, range.end)`: what an anomaly write commits.
fn hour_slots(range: Window) -> Vec<i64> {
    let mut out = Vec::new();
    let mut s = slot_of(range.start);
    while s < range.end {
        out.push(s);
        s += 3600;
    }
    out
}

/// The visibility rule of the insight tables: `(cluster, <key>, slot, version)` owned by its
/// newest commit of `kind`, limited to one cluster and a slot range when given.
fn visible_insight(
    inner: &Inner,
    kind: &str,
    key: &str,
    extra: &str,
    cluster: Option<&str>,
) -> String {
    format!(
        "(cluster, {key}slot, version) {} (SELECT cluster, {key}slot, \
         argMax(row_version, commit_version) FROM {} WHERE kind = {}{}{extra} \
         GROUP BY cluster, {key}slot)",
        inner.layout.in_op(),
        inner.layout.table("insight_commits"),
        lit(kind),
        cluster
            .map(|c| format!(" AND cluster = {}", lit(c)))
            .unwrap_or_default(),
    )
}

impl Inner {
    /// Inserts the commit rows of an insight write (one insert: the commit point) and
    /// returns the row versions that owned those slots before, for the janitor.
    fn commit_insight(
        &self,
        cluster: &str,
        kind: &str,
        granularity: &str,
        source: &str,
        slots: &[i64],
        row_version: u64,
    ) -> Result<Vec<u64>, Error> {
        let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
            return Ok(Vec::new());
        };
        let old = self.read_u64s(
            "read insight owners",
            format!(
                "SELECT DISTINCT toUInt64(v_) FROM (SELECT argMax(row_version, commit_version) \
                 AS v_ FROM {} WHERE cluster = {} AND kind = {} AND granularity = {} \
                 AND source = {} AND slot >= {first} AND slot <= {last} GROUP BY slot) \
                 FORMAT RowBinary",
                self.layout.table("insight_commits"),
                lit(cluster),
                lit(kind),
                lit(granularity),
                lit(source),
            ),
        )?;
        let commit_version = self.next_version();
        let mut data = Vec::new();
        for slot in slots {
            put_str(&mut data, cluster);
            put_str(&mut data, kind);
            put_str(&mut data, granularity);
            put_str(&mut data, source);
            put_i64(&mut data, *slot);
            put_u64(&mut data, row_version);
            put_u64(&mut data, commit_version);
        }
        self.insert(
            &format!("commit {kind}"),
            "insight_commits",
            "cluster, kind, granularity, source, slot, row_version, commit_version",
            data,
        )?;
        Ok(old.into_iter().filter(|v| *v != row_version).collect())
    }

    fn drop_old_insights(&self, table: &'static str, condition: String, old: &[u64]) {
        if old.is_empty() {
            return;
        }
        let versions: Vec<String> = old.iter().map(u64::to_string).collect();
        self.janitor.delete(
            &[table],
            &format!("{condition} AND version IN ({})", versions.join(", ")),
        );
    }

    fn put_summaries(
        &self,
        cluster: &str,
        granularity: Granularity,
        range: Window,
        source: Source,
        rules_version: u32,
        rows: &[CostSummary],
    ) -> Result<u64, Error> {
        for r in rows {
            if r.cluster != cluster
                || r.granularity != granularity
                || !range.contains_instant(r.bucket.start)
            {
                return Err(Error::Invalid(format!(
                    "summary {} {} at {} does not belong to cluster {cluster}, {} and range {range}",
                    r.cluster,
                    r.granularity.as_str(),
                    r.bucket.start,
                    granularity.as_str()
                )));
            }
        }
        let version = self.next_version();
        let ctx = SummaryCtx {
            cluster: cluster.to_string(),
            granularity: granularity.as_str(),
            source: source.as_str(),
            version,
            rules_version,
        };
        let cols = summary_cols();
        let columns = column_list(&cols);
        for chunk in rows.chunks(self.batch_rows.max(1)) {
            let mut data = Vec::new();
            for r in chunk {
                encode(&cols, &ctx, r, &mut data);
            }
            self.insert("insert summaries", "summaries", &columns, data)?;
        }
        let slots = bucket_slots(granularity, range);
        let old = self.commit_insight(
            cluster,
            "summaries",
            granularity.as_str(),
            source.as_str(),
            &slots,
            version,
        )?;
        if let (Some(first), Some(last)) = (slots.first(), slots.last()) {
            self.drop_old_insights(
                "summaries",
                format!(
                    "cluster = {} AND granularity = {} AND source = {} AND slot >= {first} \
                     AND slot <= {last}",
                    lit(cluster),
                    lit(granularity.as_str()),
                    lit(source.as_str())
                ),
                &old,
            );
        }
        Ok(rows.len() as u64)
    }

    fn put_anomalies(&self, cluster: &str, range: Window, rows: &[Anomaly]) -> Result<(), Error> {
        let version = self.next_version();
        let ctx = AnomalyCtx {
            cluster: cluster.to_string(),
            version,
        };
        let cols = anomaly_cols();
        let mut data = Vec::new();
        for a in rows
            .iter()
            .filter(|a| a.key.cluster == cluster && range.contains_instant(a.start))
        {
            encode(&cols, &ctx, a, &mut data);
        }
        if !data.is_empty() {
            self.insert("insert anomalies", "anomalies", &column_list(&cols), data)?;
        }
        let slots = hour_slots(range);
        let old = self.commit_insight(cluster, "anomalies", "", "", &slots, version)?;
        if let (Some(first), Some(last)) = (slots.first(), slots.last()) {
            self.drop_old_insights(
                "anomalies",
                format!(
                    "cluster = {} AND slot >= {first} AND slot <= {last}",
                    lit(cluster)
                ),
                &old,
            );
        }
        Ok(())
    }

    fn summaries(&self, q: &SummaryQuery) -> Result<Vec<StoredSummary>, Error> {
        let op = "read summaries";
        let g = q.granularity.as_str();
        let mut filters = vec![
            format!("granularity = {}", lit(g)),
            format!("dimension = {}", lit(names::dimension(q.dimension))),
            format!("bucket_start >= {}", q.range.start),
            format!("bucket_start < {}", q.range.end),
        ];
        if let Some(c) = &q.cluster {
            filters.push(format!("cluster = {}", lit(c)));
        }
        if let Some(n) = &q.namespace {
            filters.push(format!("namespace = {}", lit(n)));
        }
        if let Some(n) = &q.name {
            filters.push(format!("name = {}", lit(n)));
        }
        filters.push(visible_insight(
            self,
            "summaries",
            "granularity, source, ",
            &format!(
                " AND granularity = {} AND slot >= {} AND slot < {}",
                lit(g),
                q.range.start,
                q.range.end
            ),
            q.cluster.as_deref(),
        ));
        let body = self.query(
            op,
            format!(
                "SELECT cluster, bucket_start, bucket_end, namespace, name, source, rules_version, \
                 total_cost, cpu_cost, memory_cost, gpu_cost, network_cost, storage_cost, \
                 load_balancer_cost, external_cost, shared_cost, idle_cost, usage_cost, \
                 request_cost, efficiency_score, rows FROM {} WHERE {} \
                 ORDER BY bucket_start, cluster, namespace, name, source FORMAT RowBinary",
                self.layout.table("summaries"),
                filters.join(" AND ")
            ),
        )?;
        let d = decode_err(op);
        let mut r = Reader::new(&body);
        let mut out: Vec<StoredSummary> = Vec::new();
        while !r.is_empty() {
            let cluster = r.string().map_err(&d)?;
            let bucket = Window {
                start: r.i64().map_err(&d)?,
                end: r.i64().map_err(&d)?,
            };
            let namespace = r.string().map_err(&d)?;
            let name = r.string().map_err(&d)?;
            let src = r.string().map_err(&d)?;
            let source = Source::parse(&src).ok_or_else(|| Error::Decode {
                op: op.into(),
                message: format!("unknown source {src:?}"),
            })?;
            let rules_version = r.u32().map_err(&d)?;
            let mut f = || r.f64().map_err(&d);
            let totals = CostTotals {
                total_cost: f()?,
                cpu_cost: f()?,
                memory_cost: f()?,
                gpu_cost: f()?,
                network_cost: f()?,
                storage_cost: f()?,
                load_balancer_cost: f()?,
                external_cost: f()?,
                shared_cost: f()?,
                idle_cost: f()?,
                usage_cost: f()?,
                request_cost: f()?,
                rows: 0,
            };
            let efficiency_score = r.f64().map_err(&d)?;
            let rows = r.u64().map_err(&d)?;
            // Ordered by key then source (`api` < `realtime`): a realtime row right after an
            // api row of the same key is hidden by it.
            if let Some(prev) = out.last() {
                let p = &prev.summary;
                if p.bucket.start == bucket.start
                    && p.cluster == cluster
                    && p.namespace == namespace
                    && p.name == name
                {
                    continue;
                }
            }
            out.push(StoredSummary {
                summary: CostSummary {
                    granularity: q.granularity,
                    bucket,
                    dimension: q.dimension,
                    cluster,
                    namespace,
                    name,
                    totals: CostTotals { rows, ..totals },
                    efficiency_score,
                },
                source,
                rules_version,
            });
        }
        Ok(out)
    }

    fn anomalies(&self, cluster: Option<&str>, range: Window) -> Result<Vec<Anomaly>, Error> {
        let op = "read anomalies";
        let mut filters = vec![
            format!("start < {}", range.end),
            format!("end > {}", range.start),
            visible_insight(
                self,
                "anomalies",
                "",
                &format!(" AND slot < {}", range.end),
                cluster,
            ),
        ];
        if let Some(c) = cluster {
            filters.push(format!("cluster = {}", lit(c)));
        }
        let body = self.query(
            op,
            format!(
                "SELECT cluster, dimension, namespace, name, detector, start, end, expected, \
                 actual, score, severity FROM {} WHERE {} \
                 ORDER BY start DESC, cluster, dimension, namespace, name, detector \
                 FORMAT RowBinary",
                self.layout.table("anomalies"),
                filters.join(" AND ")
            ),
        )?;
        let d = decode_err(op);
        let bad = |what: &str, v: &str| Error::Decode {
            op: op.into(),
            message: format!("unknown {what} {v:?}"),
        };
        let mut r = Reader::new(&body);
        let mut out = Vec::new();
        while !r.is_empty() {
            let cluster = r.string().map_err(&d)?;
            let dim = r.string().map_err(&d)?;
            let namespace = r.string().map_err(&d)?;
            let name = r.string().map_err(&d)?;
            let det = r.string().map_err(&d)?;
            let start = r.i64().map_err(&d)?;
            let end = r.i64().map_err(&d)?;
            let expected = r.f64().map_err(&d)?;
            let actual = r.f64().map_err(&d)?;
            let score = r.f64().map_err(&d)?;
            let sev = r.string().map_err(&d)?;
            out.push(Anomaly {
                key: SeriesKey {
                    dimension: names::parse_dimension(&dim)
                        .ok_or_else(|| bad("dimension", &dim))?,
                    cluster,
                    namespace,
                    name,
                },
                detector: names::parse_detector(&det).ok_or_else(|| bad("detector", &det))?,
                start,
                end,
                expected,
                actual,
                score,
                severity: names::parse_severity(&sev).ok_or_else(|| bad("severity", &sev))?,
            });
        }
        Ok(out)
    }

    fn forecasts(&self, cluster: &str) -> Result<Vec<ForecastRow>, Error> {
        let op = "read forecasts";
        let body = self.query(
            op,
            format!(
                "SELECT dimension, namespace, name, horizon_days, made_at, total, lower, upper, \
                 kubecost, has_kubecost FROM {} WHERE {} \
                 ORDER BY dimension, namespace, name, horizon_days FORMAT RowBinary",
                self.layout.table("forecasts"),
                self.current_list("forecasts", cluster)
            ),
        )?;
        let d = decode_err(op);
        let mut r = Reader::new(&body);
        let mut out = Vec::new();
        while !r.is_empty() {
            let dim = r.string().map_err(&d)?;
            let dimension = names::parse_dimension(&dim).ok_or_else(|| Error::Decode {
                op: op.into(),
                message: format!("unknown dimension {dim:?}"),
            })?;
            let namespace = r.string().map_err(&d)?;
            let name = r.string().map_err(&d)?;
            let horizon_days = r.u32().map_err(&d)?;
            let made_at = r.i64().map_err(&d)?;
            let total = r.f64().map_err(&d)?;
            let lower = r.f64().map_err(&d)?;
            let upper = r.f64().map_err(&d)?;
            let kubecost = r.f64().map_err(&d)?;
            let has = r.u8().map_err(&d)? != 0;
            out.push(ForecastRow {
                cluster: cluster.to_string(),
                dimension,
                namespace,
                name,
                made_at,
                horizon_days,
                total,
                lower,
                upper,
                kubecost: has.then_some(kubecost),
            });
        }
        Ok(out)
    }
}

impl Inner {
    fn recommendations(&self, cluster: &str) -> Result<Option<RecommendationSet>, Error> {
        let op = "read recommendations";
        // One query over one version: the run row first, then the items, largest saving first.
        let body = self.query(
            op,
            format!(
                "SELECT is_run, made_at, window_start, window_end, monthly_cost, kind, namespace, \
                 controller_kind, controller, target, description, current_monthly_cost, \
                 monthly_savings FROM {} WHERE {} \
                 ORDER BY is_run DESC, monthly_savings DESC, seq FORMAT RowBinary",
                self.layout.table("recommendations"),
                self.current_list("recommendations", cluster)
            ),
        )?;
        let d = decode_err(op);
        let mut r = Reader::new(&body);
        let mut set: Option<RecommendationSet> = None;
        while !r.is_empty() {
            let is_run = r.u8().map_err(&d)? != 0;
            let made_at = r.i64().map_err(&d)?;
            let observed = Window {
                start: r.i64().map_err(&d)?,
                end: r.i64().map_err(&d)?,
            };
            let monthly_cost = r.f64().map_err(&d)?;
            let kind = r.string().map_err(&d)?;
            let namespace = r.string().map_err(&d)?;
            let controller_kind = r.string().map_err(&d)?;
            let controller = r.string().map_err(&d)?;
            let target = r.string().map_err(&d)?;
            let description = r.string().map_err(&d)?;
            let current_monthly_cost = r.f64().map_err(&d)?;
            let monthly_savings = r.f64().map_err(&d)?;
            let s = set.get_or_insert_with(|| RecommendationSet {
                cluster: cluster.to_string(),
                made_at,
                observed,
                monthly_cost,
                items: Vec::new(),
            });
            if is_run {
                continue;
            }
            s.items.push(Recommendation {
                kind: RecommendationKind::parse(&kind).ok_or_else(|| Error::Decode {
                    op: op.into(),
                    message: format!("unknown recommendation kind {kind:?}"),
                })?,
                cluster: cluster.to_string(),
                namespace,
                controller_kind,
                controller,
                target,
                description,
                current_monthly_cost,
                monthly_savings,
            });
        }
        Ok(set)
    }
}

impl InsightStore for ClickHouseStore {
    fn put_summaries(
        &self,
        cluster: &str,
        granularity: Granularity,
        range: Window,
        source: Source,
        rules_version: u32,
        rows: &[CostSummary],
    ) -> Result<u64, StoreError> {
        Ok(self
            .inner
            .put_summaries(cluster, granularity, range, source, rules_version, rows)?)
    }

    fn put_anomalies(
        &self,
        cluster: &str,
        range: Window,
        rows: &[Anomaly],
    ) -> Result<(), StoreError> {
        Ok(self.inner.put_anomalies(cluster, range, rows)?)
    }

    fn put_forecasts(&self, cluster: &str, rows: &[ForecastRow]) -> Result<(), StoreError> {
        let rows: Vec<&ForecastRow> = rows.iter().filter(|f| f.cluster == cluster).collect();
        let cols = forecast_cols();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(self.inner.put_list(
            "forecasts",
            cluster,
            now,
            rows.len(),
            column_list(&cols),
            |ctx, i, out| {
                if let Some(f) = rows.get(i) {
                    encode(&cols, ctx, *f, out);
                }
            },
        )?)
    }

    fn put_recommendations(&self, set: &RecommendationSet) -> Result<(), StoreError> {
        if let Some(r) = set.items.iter().find(|r| r.cluster != set.cluster) {
            return Err(Error::Invalid(format!(
                "recommendation for cluster {} in the set of cluster {}",
                r.cluster, set.cluster
            ))
            .into());
        }
        let cols = recommendation_cols();
        // Row 0 is the run, rows 1.. its items.
        Ok(self.inner.put_list(
            "recommendations",
            &set.cluster,
            set.made_at,
            set.items.len() + 1,
            column_list(&cols),
            |ctx, i, out| {
                let item = match i.checked_sub(1) {
                    None => None,
                    Some(j) => match set.items.get(j) {
                        Some(item) => Some(item),
                        None => return,
                    },
                };
                encode(&cols, ctx, &RecommendationRow { set, item }, out);
            },
        )?)
    }
}

impl InsightReader for ClickHouseStore {
    fn summaries(&self, q: &SummaryQuery) -> Result<Vec<StoredSummary>, StoreError> {
        Ok(self.inner.summaries(q)?)
    }

    fn anomalies(&self, cluster: Option<&str>, range: Window) -> Result<Vec<Anomaly>, StoreError> {
        Ok(self.inner.anomalies(cluster, range)?)
    }

    fn forecasts(&self, cluster: &str) -> Result<Vec<ForecastRow>, StoreError> {
        Ok(self.inner.forecasts(cluster)?)
    }

    fn budgets(&self, cluster: &str) -> Result<Vec<Budget>, StoreError> {
        ClickHouseStore::budgets(self, cluster)
    }

    fn savings(&self, cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError> {
        ClickHouseStore::savings(self, cluster)
    }

    fn predictions(&self, cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError> {
        ClickHouseStore::predictions(self, cluster)
    }

    fn recommendations(&self, cluster: &str) -> Result<Option<RecommendationSet>, StoreError> {
        Ok(self.inner.recommendations(cluster)?)
    }
}

impl ClickHouseStore {
    /// The mirror's marks of a cluster and kind: `(unit, fingerprint)` pairs, newest per unit.
    pub fn mirror_marks(&self, cluster: &str, kind: &str) -> Result<Vec<(i64, u64)>, StoreError> {
        let op = "read mirror marks";
        let body = self.inner.query(
            op,
            format!(
                "SELECT unit, argMax(fingerprint, version) FROM {} WHERE cluster = {} \
                 AND kind = {} GROUP BY unit ORDER BY unit FORMAT RowBinary",
                self.inner.layout.table("mirror_marks"),
                lit(cluster),
                lit(kind)
            ),
        )?;
        let d = decode_err(op);
        let mut r = Reader::new(&body);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push((r.i64().map_err(&d)?, r.u64().map_err(&d)?));
        }
        Ok(out)
    }

    /// Records the mirror's marks of a cluster and kind (a newer mark of a unit replaces).
    pub fn set_mirror_marks(
        &self,
        cluster: &str,
        kind: &str,
        marks: &[(i64, u64)],
    ) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let version = self.inner.next_version();
        let mut data = Vec::new();
        for (unit, fp) in marks {
            put_str(&mut data, cluster);
            put_str(&mut data, kind);
            put_i64(&mut data, *unit);
            put_u64(&mut data, *fp);
            put_u64(&mut data, version);
        }
        Ok(self.inner.insert(
            "write mirror marks",
            "mirror_marks",
            "cluster, kind, unit, fingerprint, version",
            data,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_commits_the_buckets_that_start_in_its_range() {
        // 2024-03-15T00:00:00Z: not the first of its month.
        let day = 1_710_460_800;
        let r = Window {
            start: day,
            end: day + 86_400,
        };
        let hours = bucket_slots(Granularity::Hour, r);
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[0], day);
        assert_eq!(bucket_slots(Granularity::Day, r), vec![day]);
        // The month bucket started before the range: it is not the range's.
        assert!(bucket_slots(Granularity::Month, r).is_empty());
        let month = Granularity::Month.bucket(day);
        assert_eq!(bucket_slots(Granularity::Month, month), vec![month.start]);
        assert_eq!(
            hour_slots(Window {
                start: 5400,
                end: 9000
            }),
            vec![3600, 7200]
        );
    }

    #[test]
    fn summary_rows_have_every_column() {
        let cols = summary_cols();
        let ctx = SummaryCtx {
            cluster: "c".into(),
            granularity: "1h",
            source: "api",
            version: 7,
            rules_version: 1,
        };
        let s = CostSummary {
            granularity: Granularity::Hour,
            bucket: Window {
                start: 0,
                end: 3600,
            },
            dimension: kb_analytics::Dimension::Namespace,
            cluster: "c".into(),
            namespace: "ns".into(),
            name: "ns".into(),
            totals: CostTotals {
                total_cost: f64::NAN,
                ..CostTotals::default()
            },
            efficiency_score: 0.5,
        };
        let mut out = Vec::new();
        encode(&cols, &ctx, &s, &mut out);
        assert_eq!(cols.iter().filter(|c| c.ty == "Float64").count(), 13);
        // total_cost NaN is stored as 0.
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        assert!(names.contains(&"usage_cost") && names.contains(&"request_cost"));
        assert!(!out.is_empty());
    }
}
