//! Reading stored allocation rows back as [`kb_core::Allocation`]s, for the aggregator.

use std::collections::BTreeMap;

use kb_core::{Allocation, Asset, AssetType, Window};
use kb_pipeline::ports::PodLabels;
use rusqlite::{OpenFlags, params};

use crate::error::{StoreError, db_err};
use crate::schema::ALLOCATION_F64;
use crate::sqlite::SqliteStore;

/// The field of an allocation a stored `f64` column holds (the inverse of
/// [`ALLOCATION_F64`]'s getters).
fn f64_field<'a>(a: &'a mut Allocation, column: &str) -> Option<&'a mut f64> {
    Some(match column {
        "minutes" => &mut a.minutes,
        "cpu_cores" => &mut a.cpu_cores,
        "cpu_core_request_average" => &mut a.cpu_core_request_average,
        "cpu_core_usage_average" => &mut a.cpu_core_usage_average,
        "cpu_core_hours" => &mut a.cpu_core_hours,
        "cpu_cost" => &mut a.cpu_cost,
        "cpu_cost_adjustment" => &mut a.cpu_cost_adjustment,
        "cpu_cost_idle" => &mut a.cpu_cost_idle,
        "cpu_efficiency" => &mut a.cpu_efficiency,
        "gpu_count" => &mut a.gpu_count,
        "gpu_hours" => &mut a.gpu_hours,
        "gpu_cost" => &mut a.gpu_cost,
        "gpu_cost_adjustment" => &mut a.gpu_cost_adjustment,
        "gpu_cost_idle" => &mut a.gpu_cost_idle,
        "gpu_efficiency" => &mut a.gpu_efficiency,
        "ram_bytes" => &mut a.ram_bytes,
        "ram_byte_request_average" => &mut a.ram_byte_request_average,
        "ram_byte_usage_average" => &mut a.ram_byte_usage_average,
        "ram_byte_hours" => &mut a.ram_byte_hours,
        "memory_cost" => &mut a.ram_cost,
        "ram_cost_adjustment" => &mut a.ram_cost_adjustment,
        "ram_cost_idle" => &mut a.ram_cost_idle,
        "ram_efficiency" => &mut a.ram_efficiency,
        "pv_bytes" => &mut a.pv_bytes,
        "pv_byte_hours" => &mut a.pv_byte_hours,
        "storage_cost" => &mut a.pv_cost,
        "pv_cost_adjustment" => &mut a.pv_cost_adjustment,
        "network_transfer_bytes" => &mut a.network_transfer_bytes,
        "network_receive_bytes" => &mut a.network_receive_bytes,
        "network_cost" => &mut a.network_cost,
        "network_cross_zone_cost" => &mut a.network_cross_zone_cost,
        "network_cross_region_cost" => &mut a.network_cross_region_cost,
        "network_internet_cost" => &mut a.network_internet_cost,
        "network_cost_adjustment" => &mut a.network_cost_adjustment,
        "load_balancer_cost" => &mut a.load_balancer_cost,
        "load_balancer_cost_adjustment" => &mut a.load_balancer_cost_adjustment,
        "shared_cost" => &mut a.shared_cost,
        "external_cost" => &mut a.external_cost,
        "total_cost" => &mut a.total_cost,
        "efficiency_score" => &mut a.total_efficiency,
        _ => return None,
    })
}

fn labels(json: &str) -> Vec<(String, String)> {
    serde_json::from_str::<BTreeMap<String, String>>(json)
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

impl SqliteStore {
    /// Streams the allocation rows stored for `cluster` whose window lies inside `range`, in
    /// window order, to `visit`; returns how many were read. Reads on a connection of its own
    /// (WAL: a consistent snapshot), so the API and the writers are not held up.
    pub fn allocations(
        &self,
        cluster: &str,
        range: Window,
        visit: &mut dyn FnMut(Allocation) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let op = "read allocation rows";
        let conn = rusqlite::Connection::open_with_flags(
            self.path(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err(op))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err(op))?;
        let f64_cols: Vec<String> = ALLOCATION_F64
            .iter()
            .map(|c| format!("a.{}", c.0))
            .collect();
        let sql = format!(
            "SELECT a.name, a.source_cluster, nd.name, nd.provider_id, ns.name, ct.kind, ct.name, \
             p.name, a.container, l.json, an.json, nl.json, sv.json, a.window_start, a.window_end, \
             a.run_start, a.run_end, a.null_fields, {} \
             FROM allocations a JOIN clusters c ON c.id = a.cluster_id \
             JOIN namespaces ns ON ns.id = a.namespace_id \
             JOIN controllers ct ON ct.id = a.controller_id \
             JOIN pods p ON p.id = a.pod_id JOIN nodes nd ON nd.id = a.node_id \
             JOIN label_sets l ON l.id = a.labels_id JOIN label_sets an ON an.id = a.annotations_id \
             JOIN label_sets nl ON nl.id = a.namespace_labels_id \
             JOIN label_sets sv ON sv.id = a.services_id \
             WHERE c.name = ?1 AND a.window_start >= ?2 AND a.window_end <= ?3 \
             ORDER BY a.window_start, a.id",
            f64_cols.join(", ")
        );
        let mut st = conn.prepare(&sql).map_err(db_err(op))?;
        let mut rows = st
            .query(params![cluster, range.start, range.end])
            .map_err(db_err(op))?;
        let mut n = 0u64;
        while let Some(r) = rows.next().map_err(db_err(op))? {
            let mut a = Allocation {
                name: r.get(0).map_err(db_err(op))?,
                cluster: cluster.to_string(),
                node: r.get(2).map_err(db_err(op))?,
                provider_id: r.get(3).map_err(db_err(op))?,
                namespace: r.get(4).map_err(db_err(op))?,
                controller_kind: r.get(5).map_err(db_err(op))?,
                controller: r.get(6).map_err(db_err(op))?,
                pod: r.get(7).map_err(db_err(op))?,
                container: r.get(8).map_err(db_err(op))?,
                labels: labels(&r.get::<_, String>(9).map_err(db_err(op))?),
                annotations: labels(&r.get::<_, String>(10).map_err(db_err(op))?),
                namespace_labels: labels(&r.get::<_, String>(11).map_err(db_err(op))?),
                services: serde_json::from_str(&r.get::<_, String>(12).map_err(db_err(op))?)
                    .unwrap_or_default(),
                window: Window {
                    start: r.get(13).map_err(db_err(op))?,
                    end: r.get(14).map_err(db_err(op))?,
                },
                start: r.get(15).map_err(db_err(op))?,
                end: r.get(16).map_err(db_err(op))?,
                null_fields: u32::try_from(r.get::<_, i64>(17).map_err(db_err(op))?).unwrap_or(0),
                ..Allocation::default()
            };
            for (i, (column, _)) in ALLOCATION_F64.iter().enumerate() {
                let v: Option<f64> = r.get(18 + i).map_err(db_err(op))?;
                if let Some(slot) = f64_field(&mut a, column) {
                    *slot = v.unwrap_or(0.0);
                }
            }
            visit(a)?;
            n += 1;
        }
        Ok(n)
    }

    /// [`CostReader::pod_labels`](kb_pipeline::ports::CostReader::pod_labels): one indexed scan
    /// of the range, grouped by pod id, keeping the label set ids of each pod's newest window.
    pub(crate) fn read_pod_labels(
        conn: &rusqlite::Connection,
        cluster: &str,
        namespace: Option<&str>,
        range: Window,
    ) -> Result<Vec<PodLabels>, StoreError> {
        let op = "read pod labels";
        // SQLite takes the bare columns of a `max()` aggregate from the row holding the max.
        let sql = format!(
            "WITH g AS (SELECT a.pod_id AS pid, a.namespace_id AS nid, a.controller_id AS kid, \
             a.labels_id AS lid, a.annotations_id AS aid, a.namespace_labels_id AS nlid, \
             max(a.window_start) AS newest FROM allocations a \
             WHERE a.cluster_id = (SELECT id FROM clusters WHERE name = ?1) \
             AND a.window_start >= ?2 AND a.window_start < ?3 AND a.is_idle = 0{} \
             GROUP BY a.pod_id) \
             SELECT ns.name, ct.kind, ct.name, p.name, COALESCE(l.json, '{{}}'), \
             COALESCE(an.json, '{{}}'), COALESCE(nl.json, '{{}}'), g.newest \
             FROM g JOIN namespaces ns ON ns.id = g.nid JOIN controllers ct ON ct.id = g.kid \
             JOIN pods p ON p.id = g.pid LEFT JOIN label_sets l ON l.id = g.lid \
             LEFT JOIN label_sets an ON an.id = g.aid LEFT JOIN label_sets nl ON nl.id = g.nlid \
             ORDER BY ns.name, ct.name, ct.kind, p.name",
            if namespace.is_some() {
                " AND a.namespace_id IN (SELECT id FROM namespaces WHERE name = ?4)"
            } else {
                ""
            }
        );
        let mut st = conn.prepare_cached(&sql).map_err(db_err(op))?;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(PodLabels, i64)> {
            let p = PodLabels {
                namespace: r.get(0)?,
                controller_kind: r.get(1)?,
                controller: r.get(2)?,
                pod: r.get(3)?,
                labels: labels(&r.get::<_, String>(4)?),
                annotations: labels(&r.get::<_, String>(5)?),
                namespace_labels: labels(&r.get::<_, String>(6)?),
            };
            Ok((p, r.get(7)?))
        };
        let rows = match namespace {
            Some(ns) => st.query_map(params![cluster, range.start, range.end, ns], map),
            None => st.query_map(params![cluster, range.start, range.end], map),
        }
        .map_err(db_err(op))?;
        // A pod id is per node: the same pod on two nodes is one pod here, with the labels of
        // its newest window (rows of one pod name are adjacent in this order).
        let mut out: Vec<(PodLabels, i64)> = Vec::new();
        for row in rows {
            let (p, newest) = row.map_err(db_err(op))?;
            match out.last_mut() {
                Some(last)
                    if last.0.namespace == p.namespace
                        && last.0.controller_kind == p.controller_kind
                        && last.0.controller == p.controller
                        && last.0.pod == p.pod =>
                {
                    if newest > last.1 {
                        *last = (p, newest);
                    }
                }
                _ => out.push((p, newest)),
            }
        }
        Ok(out.into_iter().map(|(p, _)| p).collect())
    }
}

impl SqliteStore {
    /// The node assets stored for `cluster` whose window lies inside `range`, oldest window
    /// first, with the bridge's cluster name and the fields node-pool sizing reads (name,
    /// instance type, zone, labels, capacity, hours, preemptible, cost).
    pub fn node_assets(&self, cluster: &str, range: Window) -> Result<Vec<Asset>, StoreError> {
        self.with_conn(|c| {
            let op = "read node assets";
            let mut st = c
                .prepare_cached(
                    "SELECT a.asset_key, a.name, a.provider_id, a.node_type, a.zone, l.json, \
                     a.window_start, a.window_end, a.run_start, a.run_end, a.minutes, a.cpu_cores, \
                     a.ram_bytes, a.cpu_core_hours, a.ram_byte_hours, a.gpu_count, a.gpu_hours, \
                     a.preemptible, a.discount, a.cpu_cost, a.ram_cost, a.gpu_cost, a.adjustment, \
                     a.total_cost \
                     FROM assets a JOIN clusters c ON c.id = a.cluster_id \
                     JOIN label_sets l ON l.id = a.labels_id \
                     WHERE c.name = ?1 AND a.asset_type = 'Node' \
                     AND a.window_start >= ?2 AND a.window_end <= ?3 \
                     ORDER BY a.window_start, a.id",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster, range.start, range.end], |r| {
                    Ok(Asset {
                        key: r.get(0)?,
                        asset_type: AssetType::Node,
                        cluster: cluster.to_string(),
                        name: r.get(1)?,
                        provider_id: r.get(2)?,
                        node_type: r.get(3)?,
                        zone: r.get(4)?,
                        labels: labels(&r.get::<_, String>(5)?),
                        window: Window {
                            start: r.get(6)?,
                            end: r.get(7)?,
                        },
                        start: r.get(8)?,
                        end: r.get(9)?,
                        minutes: r.get(10)?,
                        cpu_cores: r.get(11)?,
                        ram_bytes: r.get(12)?,
                        cpu_core_hours: r.get(13)?,
                        ram_byte_hours: r.get(14)?,
                        gpu_count: r.get(15)?,
                        gpu_hours: r.get(16)?,
                        preemptible: r.get(17)?,
                        discount: r.get(18)?,
                        cpu_cost: r.get(19)?,
                        ram_cost: r.get(20)?,
                        gpu_cost: r.get(21)?,
                        adjustment: r.get(22)?,
                        total_cost: r.get(23)?,
                        ..Asset::default()
                    })
                })
                .map_err(db_err(op))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_f64_column_maps_back_to_its_field() {
        let mut a = Allocation::default();
        for (i, (column, get)) in ALLOCATION_F64.iter().enumerate() {
            let slot = f64_field(&mut a, column);
            assert!(slot.is_some(), "column {column} has no field");
            if let Some(slot) = slot {
                *slot = i as f64 + 0.5;
            }
            assert_eq!(get(&a), i as f64 + 0.5, "column {column}");
        }
    }
}
