//! [`CostReader`] over InfluxQL, so the API can serve cost queries from InfluxDB and the store
//! runs the conformance suite's query checks.
//!
//! One `SELECT sum(..) ... GROUP BY [time(1h|1d),] <group tags>, resource_type fill(none)` per
//! query; months are folded from days in Rust (InfluxQL has no calendar buckets), and so are
//! the idle rows (`resource_type = 'idle'`) into `idle_cost`. The cost-weighted efficiency is
//! `sum(weighted_efficiency) / sum(efficiency_weight)`, the fields written for that purpose.

use std::collections::BTreeMap;

use kb_core::Window;
use kb_pipeline::ports::{
    CostQuery, CostReader, CostRow, Endpoint, Granularity, GroupBy, Reconciliation, StoreError,
};

use crate::error::Error;
use crate::line::{ALLOCATIONS, SYNC, ql_ident, ql_str, ql_time};
use crate::store::InfluxStore;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// The summed fields, in query order.
const SUMS: [&str; 11] = [
    "cpu_cost",
    "memory_cost",
    "gpu_cost",
    "storage_cost",
    "network_cost",
    "load_balancer_cost",
    "shared_cost",
    "external_cost",
    "total_cost",
    "weighted_efficiency",
    "efficiency_weight",
];

/// The first second of the UTC month holding `ts`.
fn month_start(ts: i64) -> i64 {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm), then back.
    let days = ts.div_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5; // day of month, 0-based
    (days - d) * DAY
}

type Key = (i64, String, String, String, String, String);

impl InfluxStore {
    fn costs_inner(&self, q: &CostQuery) -> Result<Vec<CostRow>, Error> {
        let mut select = String::from("SELECT ");
        for f in SUMS {
            select.push_str(&format!("sum({f}) AS {f}, "));
        }
        select.push_str("count(total_cost) AS n");
        let mut stmt = format!(
            "{select} FROM {} WHERE {}",
            ql_ident(ALLOCATIONS),
            ql_time(q.range)
        );
        if let Some(c) = &q.cluster {
            stmt.push_str(&format!(" AND cluster = {}", ql_str(c)));
        }
        if let Some(ns) = &q.namespace {
            stmt.push_str(&format!(" AND namespace = {}", ql_str(ns)));
        }
        if !q.include_idle {
            stmt.push_str(" AND resource_type != 'idle'");
        }
        let mut group = Vec::new();
        match q.granularity {
            None => {}
            Some(Granularity::Hour) => group.push("time(1h)"),
            Some(Granularity::Day | Granularity::Month) => group.push("time(1d)"),
        }
        group.push("cluster");
        let (ns, ctrl, pod) = match q.group_by {
            GroupBy::Cluster => (false, false, false),
            GroupBy::Namespace => (true, false, false),
            GroupBy::Controller => (true, true, false),
            GroupBy::Pod => (true, true, true),
        };
        if ns {
            group.push("namespace");
        }
        if ctrl {
            group.extend(["controller", "controller_kind"]);
        }
        if pod {
            group.push("pod");
        }
        group.push("resource_type");
        stmt.push_str(&format!(" GROUP BY {} fill(none)", group.join(", ")));

        let series = self.client().query_inner("read costs", &stmt, true)?;
        let mut groups: BTreeMap<Key, (CostRow, f64, f64)> = BTreeMap::new();
        for s in &series {
            let tag = |k: &str| s.tags.get(k).cloned().unwrap_or_default();
            let idle = tag("resource_type") == "idle";
            let cols: Vec<Option<usize>> = SUMS.iter().map(|f| s.column(f)).collect();
            let (Some(time_col), Some(n_col)) = (s.column("time"), s.column("n")) else {
                return Err(Error::Decode {
                    op: "read costs".into(),
                    message: format!("unexpected columns {:?}", s.columns),
                });
            };
            for row in &s.values {
                let num = |i: Option<usize>| {
                    i.and_then(|i| row.get(i))
                        .and_then(serde_json::Value::as_f64)
                        .unwrap_or(0.0)
                };
                let t = row
                    .get(time_col)
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(q.range.start);
                let bucket = match q.granularity {
                    None => q.range.start,
                    Some(Granularity::Hour) => t.div_euclid(HOUR) * HOUR,
                    Some(Granularity::Day) => t.div_euclid(DAY) * DAY,
                    Some(Granularity::Month) => month_start(t),
                };
                let pick = |on: bool, k: &str| if on { tag(k) } else { String::new() };
                let key = (
                    bucket,
                    tag("cluster"),
                    pick(ns, "namespace"),
                    pick(ctrl, "controller"),
                    pick(ctrl, "controller_kind"),
                    pick(pod, "pod"),
                );
                let entry = groups.entry(key.clone()).or_insert_with(|| {
                    (
                        CostRow {
                            bucket_start: key.0,
                            cluster: key.1.clone(),
                            namespace: key.2.clone(),
                            controller: key.3.clone(),
                            controller_kind: key.4.clone(),
                            pod: key.5.clone(),
                            ..CostRow::default()
                        },
                        0.0,
                        0.0,
                    )
                });
                let r = &mut entry.0;
                let v: Vec<f64> = cols.iter().map(|c| num(*c)).collect();
                r.cpu_cost += v[0];
                r.memory_cost += v[1];
                r.gpu_cost += v[2];
                r.storage_cost += v[3];
                r.network_cost += v[4];
                r.load_balancer_cost += v[5];
                r.shared_cost += v[6];
                r.external_cost += v[7];
                r.total_cost += v[8];
                if idle {
                    r.idle_cost += v[8];
                } else {
                    entry.1 += v[9];
                    entry.2 += v[10];
                }
                r.rows += num(Some(n_col)) as u64;
            }
        }
        Ok(groups
            .into_values()
            .map(|(mut r, num, den)| {
                r.efficiency_score = if den > 0.0 { num / den } else { 0.0 };
                r
            })
            .collect())
    }

    fn clusters_inner(&self) -> Result<Vec<(String, i64)>, Error> {
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        let q = format!(
            "SHOW TAG VALUES FROM {} WITH KEY = \"cluster\"",
            ql_ident(ALLOCATIONS)
        );
        for s in self.client().query_inner("read clusters", &q, true)? {
            if let Some(i) = s.column("value") {
                for row in &s.values {
                    if let Some(c) = row.get(i).and_then(|v| v.as_str()) {
                        out.entry(c.to_string()).or_insert(0);
                    }
                }
            }
        }
        let q = format!(
            "SELECT max(window_end) AS e FROM {} WHERE endpoint = {} GROUP BY cluster",
            ql_ident(SYNC),
            ql_str(Endpoint::Allocation.as_str())
        );
        for s in self.client().query_inner("read clusters", &q, true)? {
            let Some(c) = s.tags.get("cluster") else {
                continue;
            };
            let e = s
                .column("e")
                .and_then(|i| s.values.first().and_then(|r| r.get(i)))
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            out.insert(c.clone(), e);
        }
        Ok(out.into_iter().collect())
    }
}

impl CostReader for InfluxStore {
    fn costs(&self, q: &CostQuery) -> Result<Vec<CostRow>, StoreError> {
        Ok(self.costs_inner(q)?)
    }

    fn clusters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self.clusters_inner()?)
    }

    fn reconciliations(
        &self,
        cluster: &str,
        range: Window,
    ) -> Result<Vec<Reconciliation>, StoreError> {
        InfluxStore::reconciliations(self, cluster, range)
    }

    /// The seed's `cost_allocations` measurement keeps no pod labels (only the `team` and
    /// `owner` tags), so label and team filters cannot be answered from InfluxDB.
    fn pod_labels(
        &self,
        _cluster: &str,
        _namespace: Option<&str>,
        _range: Window,
    ) -> Result<Vec<kb_pipeline::ports::PodLabels>, StoreError> {
        Err(StoreError::permanent(
            "InfluxDB keeps no pod labels: serve label and team filters from SQLite or ClickHouse",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_on_the_first() {
        assert_eq!(month_start(0), 0);
        // 2023-12-01T00:00:00Z and a moment later that month.
        assert_eq!(month_start(1_701_388_800), 1_701_388_800);
        assert_eq!(month_start(1_701_388_800 + 20 * DAY + 7), 1_701_388_800);
        // 2024-02-29 (leap day) belongs to 2024-02-01.
        assert_eq!(month_start(1_709_164_800), 1_706_745_600);
        // 2023-11-30T23:59:59Z belongs to 2023-11-01.
        assert_eq!(month_start(1_701_388_799), 1_698_796_800);
    }
}
