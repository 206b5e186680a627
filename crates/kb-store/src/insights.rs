//! The aggregator's results in SQLite: [`InsightStore`] and [`InsightReader`] for
//! [`SqliteStore`] over the `cost_summaries`, `anomalies` and `forecasts` tables (migration 3)
//! and the bridge's recommendations (`recommendation_runs`, `recommendations`, migration 5).
//!
//! Every write replaces what it covers in one transaction on the shared connection, so
//! aggregating a range again never counts twice and a reader never sees half a replacement.

use kb_analytics::anomaly::Anomaly;
use kb_analytics::recommend::{Recommendation, RecommendationKind};
use kb_analytics::summary::CostTotals;
use kb_analytics::{CostSummary, Granularity, SeriesKey};
use kb_core::{Budget, SavingsRecommendation, SpecCostPrediction, Window};
use kb_pipeline::insights::{
    ForecastRow, InsightReader, InsightStore, RecommendationSet, Source, StoredSummary,
    SummaryQuery, names,
};
use rusqlite::{Connection, params};

use crate::error::{StoreError, db_err};
use crate::sqlite::{SqliteStore, cluster_id};

/// Returns the id of a cluster, adding it when new.
fn ensure_cluster(conn: &Connection, cluster: &str) -> Result<i64, StoreError> {
    let op = "add cluster";
    conn.prepare_cached("INSERT INTO clusters (name) VALUES (?1) ON CONFLICT DO NOTHING")
        .and_then(|mut s| s.execute(params![cluster]))
        .map_err(db_err(op))?;
    cluster_id(conn, cluster)?.ok_or_else(|| StoreError::permanent("cluster row vanished"))
}

fn bad(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?} in the store").into(),
    )
}

impl InsightStore for SqliteStore {
    fn put_summaries(
        &self,
        cluster: &str,
        granularity: Granularity,
        range: Window,
        source: Source,
        rules_version: u32,
        rows: &[CostSummary],
    ) -> Result<u64, StoreError> {
        for r in rows {
            if r.cluster != cluster
                || r.granularity != granularity
                || !range.contains_instant(r.bucket.start)
            {
                return Err(StoreError::permanent(format!(
                    "summary {} {} at {} does not belong to cluster {cluster}, {} and range {range}",
                    r.cluster,
                    r.granularity.as_str(),
                    r.bucket.start,
                    granularity.as_str()
                )));
            }
        }
        self.with_conn(|c| {
            let op = "replace cost summaries";
            let tx = c.transaction().map_err(db_err(op))?;
            let cid = ensure_cluster(&tx, cluster)?;
            tx.prepare_cached(
                "DELETE FROM cost_summaries WHERE cluster_id = ?1 AND window_duration = ?2 \
                 AND source = ?3 AND timestamp >= ?4 AND timestamp < ?5",
            )
            .and_then(|mut s| {
                s.execute(params![
                    cid,
                    granularity.as_str(),
                    source.as_str(),
                    range.start,
                    range.end
                ])
            })
            .map_err(db_err(op))?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO cost_summaries (cluster_id, window_duration, dimension, \
                         timestamp, bucket_end, namespace, name, source, rules_version, total_cost, \
                         cpu_cost, memory_cost, gpu_cost, network_cost, storage_cost, \
                         load_balancer_cost, external_cost, shared_cost, idle_cost, usage_cost, \
                         request_cost, efficiency_score, rows) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                         ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
                    )
                    .map_err(db_err(op))?;
                for r in rows {
                    let t = &r.totals;
                    let f = |v: f64| if v.is_finite() { v } else { 0.0 };
                    st.execute(params![
                        cid,
                        granularity.as_str(),
                        names::dimension(r.dimension),
                        r.bucket.start,
                        r.bucket.end,
                        r.namespace,
                        r.name,
                        source.as_str(),
                        rules_version,
                        f(t.total_cost),
                        f(t.cpu_cost),
                        f(t.memory_cost),
                        f(t.gpu_cost),
                        f(t.network_cost),
                        f(t.storage_cost),
                        f(t.load_balancer_cost),
                        f(t.external_cost),
                        f(t.shared_cost),
                        f(t.idle_cost),
                        f(t.usage_cost),
                        f(t.request_cost),
                        f(r.efficiency_score),
                        i64::try_from(t.rows).unwrap_or(i64::MAX),
                    ])
                    .map_err(db_err(op))?;
                }
            }
            tx.commit().map_err(db_err(op))?;
            Ok(rows.len() as u64)
        })
    }

    fn put_anomalies(
        &self,
        cluster: &str,
        range: Window,
        rows: &[Anomaly],
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            let op = "replace anomalies";
            let tx = c.transaction().map_err(db_err(op))?;
            let cid = ensure_cluster(&tx, cluster)?;
            tx.prepare_cached(
                "DELETE FROM anomalies WHERE cluster_id = ?1 AND start >= ?2 AND start < ?3",
            )
            .and_then(|mut s| s.execute(params![cid, range.start, range.end]))
            .map_err(db_err(op))?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO anomalies (cluster_id, dimension, namespace, name, detector, \
                         start, end, expected, actual, score, severity) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .map_err(db_err(op))?;
                for a in rows
                    .iter()
                    .filter(|a| a.key.cluster == cluster && range.contains_instant(a.start))
                {
                    st.execute(params![
                        cid,
                        names::dimension(a.key.dimension),
                        a.key.namespace,
                        a.key.name,
                        names::detector(a.detector),
                        a.start,
                        a.end,
                        a.expected,
                        a.actual,
                        a.score,
                        names::severity(a.severity),
                    ])
                    .map_err(db_err(op))?;
                }
            }
            tx.commit().map_err(db_err(op))
        })
    }

    fn put_forecasts(&self, cluster: &str, rows: &[ForecastRow]) -> Result<(), StoreError> {
        self.with_conn(|c| {
            let op = "replace forecasts";
            let tx = c.transaction().map_err(db_err(op))?;
            let cid = ensure_cluster(&tx, cluster)?;
            tx.prepare_cached("DELETE FROM forecasts WHERE cluster_id = ?1")
                .and_then(|mut s| s.execute(params![cid]))
                .map_err(db_err(op))?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO forecasts (cluster_id, dimension, namespace, name, \
                         horizon_days, made_at, total, lower, upper, kubecost) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(db_err(op))?;
                for f in rows.iter().filter(|f| f.cluster == cluster) {
                    st.execute(params![
                        cid,
                        names::dimension(f.dimension),
                        f.namespace,
                        f.name,
                        f.horizon_days,
                        f.made_at,
                        f.total,
                        f.lower,
                        f.upper,
                        f.kubecost,
                    ])
                    .map_err(db_err(op))?;
                }
            }
            tx.commit().map_err(db_err(op))
        })
    }
    fn put_recommendations(&self, set: &RecommendationSet) -> Result<(), StoreError> {
        if let Some(r) = set.items.iter().find(|r| r.cluster != set.cluster) {
            return Err(StoreError::permanent(format!(
                "recommendation for cluster {} in the set of cluster {}",
                r.cluster, set.cluster
            )));
        }
        let f = |v: f64| if v.is_finite() { v } else { 0.0 };
        self.with_conn(|c| {
            let op = "replace recommendations";
            let tx = c.transaction().map_err(db_err(op))?;
            let cid = ensure_cluster(&tx, &set.cluster)?;
            tx.prepare_cached("DELETE FROM recommendations WHERE cluster_id = ?1")
                .and_then(|mut s| s.execute(params![cid]))
                .map_err(db_err(op))?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO recommendation_runs (cluster_id, made_at, window_start, \
                 window_end, monthly_cost) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    cid,
                    set.made_at,
                    set.observed.start,
                    set.observed.end,
                    f(set.monthly_cost)
                ])
            })
            .map_err(db_err(op))?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO recommendations (cluster_id, kind, namespace, controller_kind, \
                         controller, target, description, current_monthly_cost, monthly_savings) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .map_err(db_err(op))?;
                for r in &set.items {
                    st.execute(params![
                        cid,
                        r.kind.as_str(),
                        r.namespace,
                        r.controller_kind,
                        r.controller,
                        r.target,
                        r.description,
                        f(r.current_monthly_cost),
                        f(r.monthly_savings),
                    ])
                    .map_err(db_err(op))?;
                }
            }
            tx.commit().map_err(db_err(op))
        })
    }
}

impl InsightReader for SqliteStore {
    /// The cluster filter is an `IN (SELECT id ...)` on `cluster_id`, so SQLite searches the
    /// primary key (cluster, grain, dimension, timestamp) one cluster at a time instead of
    /// scanning the table (an `OR` on the joined name defeats the index).
    fn summaries(&self, q: &SummaryQuery) -> Result<Vec<StoredSummary>, StoreError> {
        self.with_conn(|c| {
            let op = "read cost summaries";
            let mut st = c
                .prepare_cached(
                    "SELECT cl.name, s.timestamp, s.bucket_end, s.namespace, s.name, s.source, \
                     s.rules_version, s.total_cost, s.cpu_cost, s.memory_cost, s.gpu_cost, \
                     s.network_cost, s.storage_cost, s.load_balancer_cost, s.external_cost, \
                     s.shared_cost, s.idle_cost, s.usage_cost, s.request_cost, \
                     s.efficiency_score, s.rows \
                     FROM cost_summaries s JOIN clusters cl ON cl.id = s.cluster_id \
                     WHERE s.cluster_id IN (SELECT id FROM clusters WHERE ?5 IS NULL OR name = ?5) \
                     AND s.window_duration = ?1 AND s.dimension = ?2 \
                     AND s.timestamp >= ?3 AND s.timestamp < ?4 \
                     AND (?6 IS NULL OR s.namespace = ?6) \
                     AND (?7 IS NULL OR s.name = ?7) \
                     ORDER BY s.timestamp, cl.name, s.namespace, s.name, s.source",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(
                    params![
                        q.granularity.as_str(),
                        names::dimension(q.dimension),
                        q.range.start,
                        q.range.end,
                        q.cluster,
                        q.namespace,
                        q.name
                    ],
                    |r| {
                        let source: String = r.get(5)?;
                        let source =
                            Source::parse(&source).ok_or_else(|| bad("source", &source))?;
                        let totals = CostTotals {
                            total_cost: r.get(7)?,
                            cpu_cost: r.get(8)?,
                            memory_cost: r.get(9)?,
                            gpu_cost: r.get(10)?,
                            network_cost: r.get(11)?,
                            storage_cost: r.get(12)?,
                            load_balancer_cost: r.get(13)?,
                            external_cost: r.get(14)?,
                            shared_cost: r.get(15)?,
                            idle_cost: r.get(16)?,
                            usage_cost: r.get(17)?,
                            request_cost: r.get(18)?,
                            rows: u64::try_from(r.get::<_, i64>(20)?).unwrap_or(0),
                        };
                        Ok(StoredSummary {
                            summary: CostSummary {
                                granularity: q.granularity,
                                bucket: Window {
                                    start: r.get(1)?,
                                    end: r.get(2)?,
                                },
                                dimension: q.dimension,
                                cluster: r.get(0)?,
                                namespace: r.get(3)?,
                                name: r.get(4)?,
                                totals,
                                efficiency_score: r.get(19)?,
                            },
                            source,
                            rules_version: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                        })
                    },
                )
                .map_err(db_err(op))?;
            let all = rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))?;
            // Rows are ordered by key then source (`api` < `realtime`): a realtime row right
            // after an api row of the same key is hidden by it.
            let mut out: Vec<StoredSummary> = Vec::with_capacity(all.len());
            for s in all {
                if let Some(prev) = out.last() {
                    let same = prev.summary.bucket.start == s.summary.bucket.start
                        && prev.summary.cluster == s.summary.cluster
                        && prev.summary.namespace == s.summary.namespace
                        && prev.summary.name == s.summary.name;
                    if same {
                        continue;
                    }
                }
                out.push(s);
            }
            Ok(out)
        })
    }

    fn anomalies(&self, cluster: Option<&str>, range: Window) -> Result<Vec<Anomaly>, StoreError> {
        self.with_conn(|c| {
            let op = "read anomalies";
            let mut st = c
                .prepare_cached(
                    "SELECT cl.name, a.dimension, a.namespace, a.name, a.detector, a.start, a.end, \
                     a.expected, a.actual, a.score, a.severity \
                     FROM anomalies a JOIN clusters cl ON cl.id = a.cluster_id \
                     WHERE a.start < ?2 AND a.end > ?1 AND (?3 IS NULL OR cl.name = ?3) \
                     ORDER BY a.start DESC, cl.name, a.dimension, a.namespace, a.name",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![range.start, range.end, cluster], |r| {
                    let dimension: String = r.get(1)?;
                    let detector: String = r.get(4)?;
                    let severity: String = r.get(10)?;
                    Ok(Anomaly {
                        key: SeriesKey {
                            dimension: names::parse_dimension(&dimension)
                                .ok_or_else(|| bad("dimension", &dimension))?,
                            cluster: r.get(0)?,
                            namespace: r.get(2)?,
                            name: r.get(3)?,
                        },
                        detector: names::parse_detector(&detector)
                            .ok_or_else(|| bad("detector", &detector))?,
                        start: r.get(5)?,
                        end: r.get(6)?,
                        expected: r.get(7)?,
                        actual: r.get(8)?,
                        score: r.get(9)?,
                        severity: names::parse_severity(&severity)
                            .ok_or_else(|| bad("severity", &severity))?,
                    })
                })
                .map_err(db_err(op))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
        })
    }

    fn forecasts(&self, cluster: &str) -> Result<Vec<ForecastRow>, StoreError> {
        self.with_conn(|c| {
            let op = "read forecasts";
            let mut st = c
                .prepare_cached(
                    "SELECT f.dimension, f.namespace, f.name, f.horizon_days, f.made_at, f.total, \
                     f.lower, f.upper, f.kubecost FROM forecasts f \
                     JOIN clusters cl ON cl.id = f.cluster_id WHERE cl.name = ?1 \
                     ORDER BY f.dimension, f.namespace, f.name, f.horizon_days",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster], |r| {
                    let dimension: String = r.get(0)?;
                    Ok(ForecastRow {
                        cluster: cluster.to_string(),
                        dimension: names::parse_dimension(&dimension)
                            .ok_or_else(|| bad("dimension", &dimension))?,
                        namespace: r.get(1)?,
                        name: r.get(2)?,
                        horizon_days: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                        made_at: r.get(4)?,
                        total: r.get(5)?,
                        lower: r.get(6)?,
                        upper: r.get(7)?,
                        kubecost: r.get(8)?,
                    })
                })
                .map_err(db_err(op))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
        })
    }

    fn budgets(&self, cluster: &str) -> Result<Vec<Budget>, StoreError> {
        SqliteStore::budgets(self, cluster)
    }

    fn savings(&self, cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError> {
        SqliteStore::savings(self, cluster)
    }

    fn predictions(&self, cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError> {
        SqliteStore::predictions(self, cluster)
    }

    fn recommendations(&self, cluster: &str) -> Result<Option<RecommendationSet>, StoreError> {
        self.with_conn(|c| {
            let op = "read recommendations";
            let Some(cid) = cluster_id(c, cluster)? else {
                return Ok(None);
            };
            let run = c
                .prepare_cached(
                    "SELECT made_at, window_start, window_end, monthly_cost \
                     FROM recommendation_runs WHERE cluster_id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row(params![cid], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get::<_, f64>(3)?,
                        ))
                    })
                });
            let (made_at, start, end, monthly_cost) = match run {
                Ok(v) => v,
                Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
                Err(e) => return Err(db_err(op)(e)),
            };
            let mut st = c
                .prepare_cached(
                    "SELECT kind, namespace, controller_kind, controller, target, description, \
                     current_monthly_cost, monthly_savings FROM recommendations \
                     WHERE cluster_id = ?1 ORDER BY monthly_savings DESC, id",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cid], |r| {
                    let kind: String = r.get(0)?;
                    Ok(Recommendation {
                        kind: RecommendationKind::parse(&kind)
                            .ok_or_else(|| bad("recommendation kind", &kind))?,
                        cluster: cluster.to_string(),
                        namespace: r.get(1)?,
                        controller_kind: r.get(2)?,
                        controller: r.get(3)?,
                        target: r.get(4)?,
                        description: r.get(5)?,
                        current_monthly_cost: r.get(6)?,
                        monthly_savings: r.get(7)?,
                    })
                })
                .map_err(db_err(op))?;
            let items = rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))?;
            Ok(Some(RecommendationSet {
                cluster: cluster.to_string(),
                made_at,
                observed: Window { start, end },
                monthly_cost,
                items,
            }))
        })
    }
}
