//! Every endpoint against the fixture's store: totals agree with what the store returns for the
//! same range (CostReader and InsightReader), to 1e-9 relative.

use std::collections::BTreeMap;

use kb_analytics::rules::Target;
use kb_analytics::summary::{Dimension, Granularity};
use kb_core::window::{DAY, HOUR};
use kb_core::{Allocation, Window};
use kb_pipeline::insights::{InsightReader, SummaryQuery};
use kb_pipeline::ports::{CostQuery, CostReader, Granularity as PGran, GroupBy};
use serde_json::Value;

use crate::*;

/// The whole stored range: summaries up to SUMMARY_END, allocations after.
const W: &str = "start=2024-05-31&end=2024-06-03T13:00:00Z";

fn all() -> Window {
    Window {
        start: START,
        end: END,
    }
}

fn store_costs(
    range: Window,
    group_by: GroupBy,
    idle: bool,
    g: Option<PGran>,
) -> Vec<kb_pipeline::ports::CostRow> {
    fixture()
        .store
        .costs(&CostQuery {
            cluster: Some("cluster-1".to_string()),
            namespace: None,
            range,
            granularity: g,
            group_by,
            include_idle: idle,
        })
        .unwrap()
}

fn store_total(range: Window, idle: bool) -> f64 {
    store_costs(range, GroupBy::Cluster, idle, None)
        .iter()
        .map(|r| r.total_cost)
        .sum()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn namespaces_agree_with_the_store() {
    let s = Server::start();
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{W}&limit=100000"
    ));
    assert_eq!(v["source"], "mixed");
    assert_eq!(v["window"]["start"], "2024-05-31T00:00:00Z");
    assert_eq!(v["window"]["end"], "2024-06-03T13:00:00Z");
    let rows = v["namespaces"].as_array().unwrap();
    assert_eq!(rows.len() as u64, v["count"].as_u64().unwrap());
    let sum: f64 = rows.iter().map(|r| f(&r["total_cost"])).sum();
    let want = store_total(all(), true);
    assert!(want > 0.0);
    assert!(close(sum, want), "{sum} vs {want}");
    assert!(close(f(&v["total_cost"]), want));
    let shares: f64 = rows.iter().map(|r| f(&r["share"])).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    // Sorted by total cost, largest first.
    let totals: Vec<f64> = rows.iter().map(|r| f(&r["total_cost"])).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]));

    // Per namespace against the raw allocations (idle rows are `__idle__`).
    let raw = store_costs(all(), GroupBy::Namespace, true, None);
    let by_ns: BTreeMap<String, f64> = rows
        .iter()
        .map(|r| {
            (
                r["namespace"].as_str().unwrap().to_string(),
                f(&r["total_cost"]),
            )
        })
        .collect();
    for r in &raw {
        let name = if r.namespace.is_empty() {
            "__idle__".to_string()
        } else {
            r.namespace.clone()
        };
        let got = by_ns.get(&name).copied().unwrap_or(f64::NAN);
        assert!(
            close(got, r.total_cost),
            "{name}: {got} vs {}",
            r.total_cost
        );
    }

    // The closed days come from the summaries alone and agree with them.
    let v = s.json(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?start=2024-05-31&end=2024-06-03&limit=100000",
    );
    assert_eq!(v["source"], "summaries");
    let sums = fixture()
        .store
        .summaries(&SummaryQuery {
            cluster: Some("cluster-1".to_string()),
            dimension: Dimension::Namespace,
            granularity: Granularity::Day,
            range: Window {
                start: START,
                end: SUMMARY_END,
            },
            namespace: None,
            name: None,
        })
        .unwrap();
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for s in &sums {
        *want.entry(s.summary.name.clone()).or_default() += s.summary.totals.total_cost;
    }
    let got: BTreeMap<String, f64> = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["namespace"].as_str().unwrap().to_string(),
                f(&r["total_cost"]),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (k, w) in &want {
        assert!(close(got[k], *w), "{k}");
    }

    // idle=false leaves the idle row and idle cost out.
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{W}&idle=false&limit=100000"
    ));
    assert!(!v["idle_included"].as_bool().unwrap());
    let rows = v["namespaces"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["namespace"] != "__idle__" && f(&r["idle_cost"]) == 0.0)
    );
    let sum: f64 = rows.iter().map(|r| f(&r["total_cost"])).sum();
    let want = store_total(all(), false);
    assert!(close(sum, want), "{sum} vs {want}");

    // Paging and sorting.
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{W}&sort=name&order=asc&limit=2&offset=1"
    ));
    let page = v["namespaces"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0]["namespace"].as_str() < page[1]["namespace"].as_str());
    assert!(v["count"].as_u64().unwrap() > 3);
}

#[test]
fn cluster_totals_series_trend_and_anomalies() {
    let s = Server::start();
    let v = s.json(&format!("/api/v1/costs/kubernetes/cluster-1?{W}"));
    let want = store_total(all(), true);
    let total = f(&v["totals"]["total_cost"]);
    assert!(close(total, want), "{total} vs {want}");
    assert!(f(&v["totals"]["idle_cost"]) > 0.0);
    assert_eq!(v["granularity"], "day");
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 4);
    assert_eq!(series[3]["start"], "2024-06-03T00:00:00Z");
    assert_eq!(series[3]["end"], "2024-06-03T13:00:00Z");
    let ssum: f64 = series.iter().map(|p| f(&p["total_cost"])).sum();
    assert!(close(ssum, total));
    let shares: f64 = v["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| f(&b["share"]))
        .sum();
    assert!((shares - 1.0).abs() < 1e-9, "{shares}");
    assert_eq!(v["trend"]["previous_total_cost"].as_f64(), Some(0.0));
    assert!(v["trend"]["relative_change"].is_null());
    let an = v["anomalies"].as_array().unwrap();
    assert_eq!(an.len(), 1);
    assert_eq!(an[0]["name"], "ns-1");

    // Hourly series: one point per stored hour, equal to the store's hourly totals.
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1?{W}&granularity=hour"
    ));
    let series = v["series"].as_array().unwrap();
    let raw = store_costs(all(), GroupBy::Cluster, true, Some(PGran::Hour));
    assert_eq!(series.len(), raw.len());
    assert_eq!(series.len() as i64, (END - START) / HOUR);
    for (p, r) in series.iter().zip(&raw) {
        assert_eq!(p["start"], kb_core::window::format_rfc3339(r.bucket_start));
        assert!(close(f(&p["total_cost"]), r.total_cost));
    }

    // The trend compares with the previous period of the same length.
    let v = s.json("/api/v1/costs/kubernetes/cluster-1?start=2024-06-02&end=2024-06-03");
    let prev = store_total(
        Window {
            start: SUMMARY_END - 2 * DAY,
            end: SUMMARY_END - DAY,
        },
        true,
    );
    let cur = store_total(
        Window {
            start: SUMMARY_END - DAY,
            end: SUMMARY_END,
        },
        true,
    );
    assert!(close(f(&v["trend"]["previous_total_cost"]), prev));
    assert!(close(f(&v["trend"]["current_total_cost"]), cur));
    assert!(close(
        f(&v["trend"]["relative_change"]),
        (cur - prev) / prev
    ));

    // idle=false.
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1?{W}&idle=false"
    ));
    assert!(close(
        f(&v["totals"]["total_cost"]),
        store_total(all(), false)
    ));
    assert_eq!(v["totals"]["idle_cost"].as_f64(), Some(0.0));

    // CSV: the series.
    let (st, h, body) = s.get(
        Some(ADMIN),
        &format!("/api/v1/costs/kubernetes/cluster-1?{W}&format=csv"),
    );
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "text/csv");
    let rows = parse_csv(&body);
    assert_eq!(rows[0][0], "start");
    assert_eq!(rows.len(), 5);
    let i = rows[0].iter().position(|c| c == "total_cost").unwrap();
    let sum: f64 = rows[1..].iter().map(|r| r[i].parse::<f64>().unwrap()).sum();
    assert!(close(sum, want));
}

#[test]
fn fallback_to_allocations_when_no_summaries() {
    let s = Server::start();
    let q = "start=2024-06-03T00:00:00Z&end=2024-06-03T13:00:00Z";
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{q}"
    ));
    assert_eq!(v["source"], "allocations");
    let w = Window {
        start: SUMMARY_END,
        end: END,
    };
    assert!(close(f(&v["total_cost"]), store_total(w, true)));
    let v = s.json(&format!("/api/v1/costs/kubernetes/cluster-1?{q}"));
    assert_eq!(v["source"], "allocations");
    assert!(close(f(&v["totals"]["total_cost"]), store_total(w, true)));
    // A range with no data at all: zeros, source none.
    let v = s.json("/api/v1/costs/kubernetes/cluster-1/namespaces?start=2023-01-01&end=2023-02-01");
    assert_eq!(v["source"], "none");
    assert_eq!(v["namespaces"].as_array().unwrap().len(), 0);
}

#[test]
fn clusters_list_with_freshness() {
    let s = Server::start();
    let v = s.json(&format!("/api/v1/costs/kubernetes?{W}"));
    let cs = v["clusters"].as_array().unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0]["cluster"], "cluster-1");
    assert_eq!(cs[0]["last_synced"], "2024-06-03T13:00:00Z");
    assert_eq!(cs[0]["freshness_seconds"].as_i64(), Some(NOW - END));
    assert!(close(f(&cs[0]["total_cost"]), store_total(all(), true)));
    assert_eq!(cs[0]["source"], "mixed");
    // A window shorthand resolves against the clock: 24h ends at the end of this hour.
    let v = s.json("/api/v1/costs/kubernetes?window=24h");
    assert_eq!(v["window"]["end"], "2024-06-03T14:00:00Z");
    assert_eq!(v["window"]["start"], "2024-06-02T14:00:00Z");
}

#[test]
fn workloads_with_pods() {
    let s = Server::start();
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/workloads?{W}&limit=100000"
    ));
    assert_eq!(v["source"], "allocations");
    let wl = v["workloads"].as_array().unwrap();
    assert!(wl.len() > 3);
    let sum: f64 = wl.iter().map(|w| f(&w["total_cost"])).sum();
    assert!(close(sum, store_total(all(), true)));
    let pods = store_costs(all(), GroupBy::Pod, true, None);
    let npods: usize = wl.iter().map(|w| w["pods"].as_array().unwrap().len()).sum();
    assert_eq!(npods, pods.len());
    for w in wl {
        let p: f64 = w["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| f(&p["total_cost"]))
            .sum();
        assert!(close(p, f(&w["total_cost"])));
        assert!(w["controller_kind"].is_string() && w["namespace"].is_string());
    }
    // Filter by namespace.
    let ns = wl
        .iter()
        .find(|w| w["namespace"] != "__idle__" && w["namespace"] != "")
        .unwrap()["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/workloads?{W}&namespace={ns}&pods=false"
    ));
    let wl = v["workloads"].as_array().unwrap();
    assert!(!wl.is_empty());
    assert!(wl.iter().all(|w| w["namespace"] == ns.as_str()));
    assert!(wl.iter().all(|w| w["pods"].as_array().unwrap().is_empty()));
    let want: f64 = fixture()
        .store
        .costs(&CostQuery {
            cluster: Some("cluster-1".to_string()),
            namespace: Some(ns.clone()),
            range: all(),
            granularity: None,
            group_by: GroupBy::Namespace,
            include_idle: true,
        })
        .unwrap()
        .iter()
        .map(|r| r.total_cost)
        .sum();
    assert!(close(f(&v["total_cost"]), want));
    // CSV: one row per pod.
    let (st, _, body) = s.get(
        Some(ADMIN),
        &format!("/api/v1/costs/kubernetes/cluster-1/workloads?{W}&limit=100000&format=csv"),
    );
    assert_eq!(st, 200);
    let rows = parse_csv(&body);
    assert_eq!(rows.len() - 1, pods.len());
    assert_eq!(
        &rows[0][..4],
        &["namespace", "controller_kind", "controller", "pod"]
    );
}

#[test]
fn teams_from_summaries() {
    let s = Server::start();
    let v = s.json("/api/v1/costs/kubernetes/cluster-1/teams?start=2024-05-31&end=2024-06-03");
    assert_eq!(v["source"], "summaries");
    let teams = v["teams"].as_array().unwrap();
    assert!(teams.len() > 1);
    let sum: f64 = teams.iter().map(|t| f(&t["total_cost"])).sum();
    let w = Window {
        start: START,
        end: SUMMARY_END,
    };
    assert!(close(sum, store_total(w, true)), "{sum}");
    let (st, _, body) = s.get(
        Some(ADMIN),
        "/api/v1/costs/kubernetes/cluster-1/teams?start=2024-05-31&end=2024-06-03&format=csv",
    );
    assert_eq!(st, 200);
    let rows = parse_csv(&body);
    assert_eq!(rows[0][0], "team");
    assert_eq!(rows.len() - 1, teams.len());
}

#[test]
fn optimization_budgets_anomalies_forecast_alerts() {
    let s = Server::start();
    let st = &fixture().store;
    let v = s.json("/api/v1/costs/kubernetes/cluster-1/optimization?source=kubecost");
    let recs = v["recommendations"].as_array().unwrap();
    let stored = st.savings("cluster-1").unwrap();
    assert_eq!(recs.len(), stored.len());
    assert!(!recs.is_empty());
    let total: f64 = stored.iter().map(|r| r.monthly_savings).sum();
    assert!(close(f(&v["total_estimated_monthly_savings"]), total));
    let sorted: Vec<f64> = recs
        .iter()
        .map(|r| f(&r["estimated_monthly_savings"]))
        .collect();
    assert!(sorted.windows(2).all(|w| w[0] >= w[1]));
    let v = s.json("/api/v1/costs/kubernetes/cluster-1/optimization?kind=abandoned_workload");
    assert!(
        v["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] == "abandoned_workload")
    );

    let v = s.json("/api/v1/costs/kubernetes/cluster-1/budgets");
    let b = v["budgets"].as_array().unwrap();
    // Kubecost's list is fleet-wide: only cluster-1's budgets are listed (no config budgets).
    let stored = st.budgets("cluster-1").unwrap();
    let mine = stored
        .iter()
        .filter(|k| {
            k.values
                .iter()
                .all(|(c, v)| c != "cluster" || v.iter().any(|x| x == "cluster-1"))
        })
        .count();
    assert!(
        mine < stored.len(),
        "the simulator lists every cluster's budgets"
    );
    assert_eq!(b.len(), mine, "no budgets in config");
    assert!(
        b.iter().all(|x| x["scope"][0]["values"][0] == "cluster-1"),
        "{v:#}"
    );
    assert!(!b.is_empty());
    assert!(b[0]["spend_limit"].is_number() && b[0]["scope"].is_array());

    let v = s.json(&format!("/api/v1/costs/kubernetes/cluster-1/anomalies?{W}"));
    let a = &v["anomalies"].as_array().unwrap()[0];
    assert_eq!(a["dimension"], "namespace");
    assert_eq!(a["name"], "ns-1");
    assert_eq!(a["expected"].as_f64(), Some(1.5));
    assert_eq!(a["actual"].as_f64(), Some(4.25));
    assert_eq!(a["severity"], "warning");
    assert_eq!(
        a["start"],
        kb_core::window::format_rfc3339(START + 30 * HOUR)
    );
    assert_eq!(a["end"], kb_core::window::format_rfc3339(START + 32 * HOUR));
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/anomalies?{W}&severity=critical"
    ));
    assert!(v["anomalies"].as_array().unwrap().is_empty());
    let (code, _, body) = s.get(
        Some(ADMIN),
        &format!("/api/v1/costs/kubernetes/cluster-1/anomalies?{W}&format=csv"),
    );
    assert_eq!(code, 200);
    assert_eq!(parse_csv(&body).len(), 2);

    let v = s.json("/api/v1/costs/kubernetes/cluster-1/forecast");
    let fc = &v["forecasts"].as_array().unwrap()[0];
    assert_eq!(fc["horizon_days"].as_u64(), Some(7));
    assert_eq!(fc["total"].as_f64(), Some(700.0));

    let v = s.json("/api/v1/costs/kubernetes/cluster-1/alerts");
    assert_eq!(v["alerts"].as_array().unwrap().len(), 0);
    assert_eq!(v["cluster"], "cluster-1");
}

#[test]
fn focus_export_is_csv_that_adds_up() {
    let s = Server::start();
    let (st, h, body) = s.get(
        Some(ADMIN),
        &format!("/api/v1/export/focus?{W}&cluster=cluster-1"),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(h["content-type"], "text/csv");
    let rows = parse_csv(&body);
    let head = &rows[0];
    for c in [
        "BilledCost",
        "EffectiveCost",
        "ListCost",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "ServiceName",
        "ResourceId",
        "ResourceName",
        "Tags",
        "x_Namespace",
    ] {
        assert!(head.iter().any(|h| h == c), "missing {c}");
    }
    let col = |n: &str| head.iter().position(|h| h == n).unwrap();
    assert!(rows[1..].iter().all(|r| r.len() == head.len()));
    let billed: f64 = rows[1..]
        .iter()
        .map(|r| r[col("BilledCost")].parse::<f64>().unwrap())
        .sum();
    assert!(close(billed, store_total(all(), true)), "{billed}");
    let raw = store_costs(all(), GroupBy::Pod, true, Some(PGran::Day));
    assert_eq!(rows.len() - 1, raw.len());
    // Charge periods are whole days; tags are JSON.
    let r = &rows[1];
    assert_eq!(r[col("ChargePeriodStart")], "2024-05-31T00:00:00Z");
    assert_eq!(r[col("ChargePeriodEnd")], "2024-06-01T00:00:00Z");
    let tags: Value = serde_json::from_str(&r[col("Tags")]).unwrap();
    assert_eq!(tags["k8s_cluster"], "cluster-1");
    // Every cluster by default.
    let (_, _, body) = s.get(
        Some(ADMIN),
        &format!("/api/v1/export/focus?{W}&granularity=month"),
    );
    let rows = parse_csv(&body);
    let i = rows[0].iter().position(|h| h == "x_Cluster").unwrap();
    assert!(rows[1..].iter().any(|r| r[i] == "cluster-2"));
}

#[test]
fn openapi_document_is_served_without_a_key() {
    let s = Server::start();
    let (st, h, body) = s.get(None, "/api/v1/openapi.json");
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    assert!(v["paths"]["/api/v1/export/focus"].is_object());
    // The cache answers a repeated request without changing the answer.
    let a = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{W}"
    ));
    let b = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{W}"
    ));
    assert_eq!(a, b);
    s.state.cache().invalidate();
    let c = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{W}"
    ));
    assert_eq!(a, c);
}

#[test]
fn gzip_when_the_client_accepts_it() {
    use std::io::Read;
    let s = Server::start();
    let url = format!("{}/api/v1/costs/kubernetes/cluster-1/namespaces?{W}", s.url);
    let (enc, vary, body) = rt().block_on(async move {
        let r = reqwest::Client::new()
            .get(url)
            .bearer_auth(ADMIN)
            .header("accept-encoding", "br;q=1, gzip;q=0.5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let enc = r.headers().get("content-encoding").cloned();
        let vary = r.headers().get("vary").cloned();
        (enc, vary, r.bytes().await.unwrap())
    });
    assert_eq!(enc.unwrap(), "gzip");
    assert_eq!(vary.unwrap(), "accept-encoding");
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut plain)
        .unwrap();
    let v: Value = serde_json::from_str(&plain).unwrap();
    let want = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/namespaces?{W}"
    ));
    assert_eq!(v, want);
    // q=0 refuses gzip.
    let url = format!("{}/api/v1/costs/kubernetes/cluster-1/namespaces?{W}", s.url);
    let enc = rt().block_on(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(ADMIN)
            .header("accept-encoding", "gzip;q=0")
            .send()
            .await
            .unwrap()
            .headers()
            .get("content-encoding")
            .cloned()
    });
    assert!(enc.is_none());
}

/// `team` (through the mapping rules) and `label` filters: each team's workloads sum to the cost
/// of the pods whose newest labels the rules map to that team, computed here from the stored
/// allocation rows; the teams together cover every non-idle cost; `label=team:X` selects the
/// same pods as `team=X` under rules that copy the `team` label.
#[test]
fn workloads_filter_by_team_and_label() {
    let s = Server::start();
    let range = all();
    // Newest labels per pod, and each pod's non-idle cost, from the raw rows.
    let mut newest: BTreeMap<(String, String, String, String), (i64, Allocation)> = BTreeMap::new();
    let mut cost: BTreeMap<(String, String, String, String), f64> = BTreeMap::new();
    fixture()
        .store
        .allocations("cluster-1", range, &mut |a| {
            if a.namespace == "__idle__" || a.pod.is_empty() {
                return Ok(());
            }
            let k = (
                a.namespace.clone(),
                a.controller_kind.clone(),
                a.controller.clone(),
                a.pod.clone(),
            );
            *cost.entry(k.clone()).or_default() += a.total_cost;
            let e = newest.entry(k).or_insert((i64::MIN, Allocation::default()));
            if a.window.start > e.0 {
                *e = (a.window.start, a);
            }
            Ok(())
        })
        .unwrap();
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for (k, (_, a)) in &newest {
        let team = kb_analytics::rules::attribute(a, Target::Team, &rules());
        *want.entry(team).or_default() += cost[k];
    }
    assert!(want.len() >= 2, "the fleet has several teams: {want:?}");
    let non_idle = store_total(range, false);
    assert!(close(want.values().sum::<f64>(), non_idle));
    for (team, expected) in &want {
        let v = s.json(&format!(
            "/api/v1/costs/kubernetes/cluster-1/workloads?{W}&team={team}&limit=100000"
        ));
        let got: f64 = v["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| f(&w["total_cost"]))
            .sum();
        assert!(close(got, *expected), "team {team}: {got} != {expected}");
        assert!(close(f(&v["total_cost"]), *expected));
        if team != "unallocated" {
            let by_label = s.json(&format!(
                "/api/v1/costs/kubernetes/cluster-1/workloads?{W}&label=team:{team}&limit=100000"
            ));
            assert_eq!(by_label["workloads"], v["workloads"], "label=team:{team}");
        }
    }
    // Both filters at once narrow to their intersection: here, nothing.
    let teams: Vec<&String> = want.keys().collect();
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/workloads?{W}&team={}&label=team:{}",
        teams[0], teams[1]
    ));
    assert_eq!(v["workloads"].as_array().unwrap().len(), 0);
    assert_eq!(f(&v["total_cost"]), 0.0);
    // A team no pod has, and a malformed label.
    let v = s.json(&format!(
        "/api/v1/costs/kubernetes/cluster-1/workloads?{W}&team=nobody-has-this"
    ));
    assert_eq!(v["workloads"].as_array().unwrap().len(), 0);
    for bad in ["label=team", "label=:x", "label=team:"] {
        let (status, _, body) = s.get(
            Some(ADMIN),
            &format!("/api/v1/costs/kubernetes/cluster-1/workloads?{W}&{bad}"),
        );
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
