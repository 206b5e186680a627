//! `/metrics` agrees with the allocation API for the same hour.

use crate::common::*;
use std::collections::HashMap;

fn parse(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, val) = l.rsplit_once(' ').unwrap();
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut m = HashMap::new();
        for kv in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once("=\"").unwrap();
            m.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push((name.to_string(), m, val.parse().unwrap()));
    }
    out
}

#[tokio::test]
async fn metrics_agree_with_the_hourly_allocation_set() {
    let sim = Sim::start(cfg(2, 100, 12)).await;
    let h = DAY0 + 10 * 3_600;
    let m = |t: i64| format!("/metrics?time={t}&cluster=cluster-1");
    let text = sim.get(&m(h + 1_800)).await.text().await.unwrap();
    let series = parse(&text);
    let at_start = parse(&sim.get(&m(h)).await.text().await.unwrap());
    let at_end = parse(&sim.get(&m(h + 3_600)).await.text().await.unwrap());
    for fam in [
        "node_cpu_hourly_cost",
        "kube_pod_labels",
        "kube_pod_owner",
        "kube_namespace_labels",
        "kube_node_labels",
        "pv_hourly_cost",
        "kubecost_cluster_info",
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_requests",
        "pod_pvc_allocation",
        "kubecost_network_internet_egress_cost",
    ] {
        assert!(series.iter().any(|(n, _, _)| n == fam), "{fam}");
    }
    let price: HashMap<(String, &str), f64> = series
        .iter()
        .filter(|(n, _, _)| n == "node_cpu_hourly_cost" || n == "node_ram_hourly_cost")
        .map(|(n, l, v)| {
            (
                (
                    l["node"].clone(),
                    if n == "node_cpu_hourly_cost" {
                        "cpu"
                    } else {
                        "ram"
                    },
                ),
                *v,
            )
        })
        .collect();
    let v = sim
        .json(&format!(
            "/model/allocation?window={}&filterClusters=cluster-1&idle=false&step=1h",
            pair(h, h + 3_600)
        ))
        .await;
    let set = v["data"][0].as_object().unwrap();
    let counter = |s: &Vec<(String, HashMap<String, String>, f64)>, pod: &str, c: &str| {
        s.iter()
            .find(|(n, l, _)| {
                n == "container_cpu_usage_seconds_total" && l["pod"] == pod && l["container"] == c
            })
            .map(|x| x.2)
    };
    let mut checked = 0;
    for (n, l, alloc) in &series {
        if n != "container_cpu_allocation" {
            continue;
        }
        let key = format!(
            "cluster-1/{}/{}/{}/{}",
            l["node"], l["namespace"], l["pod"], l["container"]
        );
        let row = &set[&key];
        assert!(row.is_object(), "{key} has a row");
        if row["minutes"].as_f64().unwrap() != 60.0 {
            continue;
        }
        let cost = row["cpuCost"].as_f64().unwrap();
        assert!(
            rel(cost, alloc * price[&(l["node"].clone(), "cpu")]) < 1e-9,
            "{key}"
        );
        let mem = series
            .iter()
            .find(|(n2, l2, _)| {
                n2 == "container_memory_allocation_bytes"
                    && l2["pod"] == l["pod"]
                    && l2["container"] == l["container"]
            })
            .unwrap()
            .2;
        assert!(
            rel(
                row["ramCost"].as_f64().unwrap(),
                mem / 1_073_741_824.0 * price[&(l["node"].clone(), "ram")]
            ) < 1e-9
        );
        if let (Some(a), Some(b)) = (
            counter(&at_start, &l["pod"], &l["container"]),
            counter(&at_end, &l["pod"], &l["container"]),
        ) {
            let avg = row["cpuCoreUsageAverage"].as_f64().unwrap();
            assert!(rel(b - a, avg * 3_600.0) < 1e-9, "usage counter of {key}");
        }
        checked += 1;
    }
    assert!(checked > 50, "{checked}");
    sim.stop().await;
}
