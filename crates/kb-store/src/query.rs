//! The cost query behind [`kb_pipeline::ports::CostReader::costs`].
//!
//! One SQL statement: an inner aggregate groups the fact rows by time bucket and dimension ids
//! (cheap integer grouping), the outer select joins the names and orders the result by bucket,
//! cluster, namespace, controller (name, then kind) and pod.
//!
//! Invariants:
//! - Every fact row matching the filters lands in exactly one output row, so the totals of a
//!   query are the same at every grouping level and granularity.
//! - Buckets are UTC: hour and day by integer flooring of `window_start`, month by SQLite's
//!   `start of month`. A daily row falls in the hour bucket of its start (rows are not split).
//! - Cost columns follow the [`CostRow`] docs: each resource cost includes its adjustment;
//!   `idle_cost` is the total of idle rows; `efficiency_score` is `efficiency_score`
//!   (`totalEfficiency`) weighted by CPU + RAM cost (with adjustments, clamped at 0) over the
//!   non-idle rows, 0 when that weight is 0.
//! - Pods are grouped by controller and pod name (not by pod id, which also keys the node), so a
//!   pod that moved nodes is one row.

use kb_pipeline::ports::{CostQuery, CostRow, Granularity, GroupBy};
use rusqlite::{Connection, ToSql};

use crate::error::{StoreError, db_err};

/// Runs a cost query on a connection.
pub(crate) fn costs(conn: &Connection, q: &CostQuery) -> Result<Vec<CostRow>, StoreError> {
    let bucket = match q.granularity {
        None => "?1".to_string(),
        Some(Granularity::Hour) => "(a.window_start / 3600) * 3600".to_string(),
        Some(Granularity::Day) => "(a.window_start / 86400) * 86400".to_string(),
        Some(Granularity::Month) => {
            "CAST(strftime('%s', a.window_start, 'unixepoch', 'start of month') AS INTEGER)"
                .to_string()
        }
    };
    let (ns, ctrl, pod) = match q.group_by {
        GroupBy::Cluster => (false, false, false),
        GroupBy::Namespace => (true, false, false),
        GroupBy::Controller => (true, true, false),
        GroupBy::Pod => (true, true, true),
    };
    let mut params: Vec<Box<dyn ToSql>> = vec![Box::new(q.range.start), Box::new(q.range.end)];
    let mut filters = vec![
        "a.window_start >= ?1".to_string(),
        "a.window_start < ?2".to_string(),
    ];
    match &q.cluster {
        Some(name) => {
            params.push(Box::new(name.clone()));
            filters.push(format!(
                "a.cluster_id = (SELECT id FROM clusters WHERE name = ?{})",
                params.len()
            ));
        }
        // Lets SQLite use the (cluster_id, window_start) index for every cluster.
        None => filters.push("a.cluster_id IN (SELECT id FROM clusters)".to_string()),
    }
    if let Some(name) = &q.namespace {
        params.push(Box::new(name.clone()));
        filters.push(format!(
            "a.namespace_id IN (SELECT id FROM namespaces WHERE name = ?{})",
            params.len()
        ));
    }
    if !q.include_idle {
        filters.push("a.is_idle = 0".to_string());
    }
    let weight =
        "max(a.cpu_cost + a.cpu_cost_adjustment + a.memory_cost + a.ram_cost_adjustment, 0.0)";
    let sql = format!(
        "WITH g AS (
            SELECT {bucket} AS bucket, a.cluster_id AS cid, {nid} AS nid, {kid} AS kid,
                   {pname} AS pod,
                   sum(a.cpu_cost + a.cpu_cost_adjustment) AS cpu,
                   sum(a.memory_cost + a.ram_cost_adjustment) AS mem,
                   sum(a.gpu_cost + a.gpu_cost_adjustment) AS gpu,
                   sum(a.storage_cost + a.pv_cost_adjustment) AS storage,
                   sum(a.network_cost + a.network_cost_adjustment) AS net,
                   sum(a.load_balancer_cost + a.load_balancer_cost_adjustment) AS lb,
                   sum(a.shared_cost) AS shared,
                   sum(a.external_cost) AS ext,
                   sum(CASE WHEN a.is_idle <> 0 THEN a.total_cost ELSE 0.0 END) AS idle,
                   sum(a.total_cost) AS total,
                   sum(CASE WHEN a.is_idle = 0 THEN a.efficiency_score * {weight} ELSE 0.0 END) AS eff_num,
                   sum(CASE WHEN a.is_idle = 0 THEN {weight} ELSE 0.0 END) AS eff_den,
                   count(*) AS n
            FROM allocations a {pod_join}
            WHERE {filters}
            GROUP BY 1, 2, 3, 4, 5
        )
        SELECT g.bucket, c.name, COALESCE(n.name, ''), COALESCE(k.kind, ''), COALESCE(k.name, ''),
               g.pod, g.cpu, g.mem, g.gpu, g.storage, g.net, g.lb, g.shared, g.ext, g.idle,
               g.total, g.eff_num, g.eff_den, g.n
        FROM g JOIN clusters c ON c.id = g.cid
        LEFT JOIN namespaces n ON n.id = g.nid
        LEFT JOIN controllers k ON k.id = g.kid
        ORDER BY g.bucket, c.name, COALESCE(n.name, ''), COALESCE(k.name, ''),
                 COALESCE(k.kind, ''), g.pod",
        nid = if ns { "a.namespace_id" } else { "NULL" },
        kid = if ctrl { "a.controller_id" } else { "NULL" },
        pname = if pod { "p.name" } else { "''" },
        pod_join = if pod { "JOIN pods p ON p.id = a.pod_id" } else { "" },
        filters = filters.join(" AND "),
    );
    let op = "query costs";
    let mut st = conn.prepare_cached(&sql).map_err(db_err(op))?;
    let refs: Vec<&dyn ToSql> = params.iter().map(|p| p.as_ref()).collect();
    let rows = st
        .query_map(refs.as_slice(), |r| {
            let eff_num: f64 = r.get(16)?;
            let eff_den: f64 = r.get(17)?;
            Ok(CostRow {
                bucket_start: r.get(0)?,
                cluster: r.get(1)?,
                namespace: r.get(2)?,
                controller_kind: r.get(3)?,
                controller: r.get(4)?,
                pod: r.get(5)?,
                cpu_cost: r.get(6)?,
                memory_cost: r.get(7)?,
                gpu_cost: r.get(8)?,
                storage_cost: r.get(9)?,
                network_cost: r.get(10)?,
                load_balancer_cost: r.get(11)?,
                shared_cost: r.get(12)?,
                external_cost: r.get(13)?,
                idle_cost: r.get(14)?,
                total_cost: r.get(15)?,
                efficiency_score: if eff_den > 0.0 {
                    eff_num / eff_den
                } else {
                    0.0
                },
                rows: u64::try_from(r.get::<_, i64>(18)?).unwrap_or(0),
            })
        })
        .map_err(db_err(op))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
}
