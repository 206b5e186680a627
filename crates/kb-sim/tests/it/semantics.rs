//! Ground truth, aggregation, filters, steps, idle and determinism over HTTP.

use crate::common::*;
use kb_core::Window;
use kb_sim::Fleet;

fn parts(a: &serde_json::Value) -> f64 {
    let f = |k: &str| a[k].as_f64().unwrap();
    f("cpuCost")
        + f("cpuCostAdjustment")
        + f("gpuCost")
        + f("gpuCostAdjustment")
        + f("ramCost")
        + f("ramCostAdjustment")
        + f("pvCost")
        + f("pvCostAdjustment")
        + f("networkCost")
        + f("networkCostAdjustment")
        + f("loadBalancerCost")
        + f("loadBalancerCostAdjustment")
        + f("sharedCost")
        + f("externalCost")
}

#[tokio::test]
async fn api_totals_match_ground_truth_and_conserve() {
    let cfg = cfg(2, 60, 9);
    let fleet = Fleet::new(&cfg);
    let sim = Sim::start(cfg).await;
    // A past day, an hour, and 3 hours with jobs.
    for (s, e) in [
        (DAY0 - 86_400, DAY0),
        (DAY0 + 3_600, DAY0 + 7_200),
        (DAY0 + 36_000, DAY0 + 46_800),
    ] {
        for c in fleet.cluster_names() {
            let v = sim
                .json(&format!(
                    "/model/allocation?window={}&accumulate=true&filterClusters={c}",
                    pair(s, e)
                ))
                .await;
            let w = Window { start: s, end: e };
            let api = total(&v);
            assert!(rel(api, fleet.allocation_total(&c, w)) < 1e-9);
            assert!(
                rel(api, fleet.asset_total(&c, w)) < 1e-9,
                "conservation {c} {w}"
            );
            for a in v["data"][0].as_object().unwrap().values() {
                assert!(rel(a["totalCost"].as_f64().unwrap(), parts(a)) < 1e-9);
                assert_eq!(a["properties"]["cluster"], c.as_str());
            }
            let assets = sim
                .json(&format!(
                    "/model/assets?window={}&accumulate=true&filterClusters={c}",
                    pair(s, e)
                ))
                .await;
            assert!(rel(total(&assets), api) < 1e-9);
        }
    }
    sim.stop().await;
}

#[tokio::test]
async fn aggregation_idle_sharing_steps_and_filters() {
    let sim = Sim::start(cfg(2, 80, 3)).await;
    let w = pair(DAY0 - 86_400, DAY0);
    let base = sim
        .json(&format!("/model/allocation?window={w}&accumulate=true"))
        .await;
    let set = base["data"][0].as_object().unwrap();
    assert!(set.contains_key("__idle__"));
    assert!(
        set.keys()
            .any(|k| k.ends_with("/__unmounted__/__unmounted__/__unmounted__"))
    );
    let all = total(&base);

    let ns = sim
        .json(&format!(
            "/model/allocation?window={w}&accumulate=true&aggregate=namespace"
        ))
        .await;
    assert!(rel(total(&ns), all) < 1e-9);
    let nsset = ns["data"][0].as_object().unwrap();
    assert!(nsset.contains_key("kube-system") && nsset.contains_key("__unmounted__"));
    assert!(nsset["kube-system"]["rawAllocationOnly"].is_null());

    let pods = sim
        .json(&format!(
            "/model/allocation?window={w}&accumulate=true&aggregate=cluster,namespace,pod"
        ))
        .await;
    let (k, row) = pods["data"][0]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("cluster-1/") && !k.contains("__"))
        .unwrap();
    assert_eq!(k.split('/').count(), 3);
    for p in ["node", "controller", "controllerKind", "pod"] {
        assert!(row["properties"][p].is_string(), "{p} kept on pod rows");
    }

    let lab = sim
        .json(&format!(
            "/model/allocation?window={w}&accumulate=true&aggregate=label:app"
        ))
        .await;
    assert!(
        lab["data"][0]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("app="))
    );
    assert!(rel(total(&lab), all) < 1e-9);

    let shared = sim
        .json(&format!(
            "/model/allocation?window={w}&accumulate=true&shareIdle=true"
        ))
        .await;
    assert!(rel(total(&shared), all) < 1e-9, "shareIdle keeps the total");
    if let Some(idle) = shared["data"][0].get("__idle__") {
        assert_eq!(idle["cpuCost"].as_f64().unwrap(), 0.0);
        assert_eq!(idle["ramCost"].as_f64().unwrap(), 0.0);
    }
    assert!(
        shared["data"][0]
            .as_object()
            .unwrap()
            .values()
            .any(|a| a["cpuCostIdle"].as_f64().unwrap() != 0.0)
    );

    let split = sim
        .json(&format!(
            "/model/allocation?window={w}&accumulate=true&splitIdle=true"
        ))
        .await;
    assert!(split["data"][0].get("cluster-1/__idle__").is_some());

    let noidle = sim
        .json(&format!(
            "/model/allocation?window={w}&accumulate=true&idle=false"
        ))
        .await;
    assert!(noidle["data"][0].get("__idle__").is_none());

    let steps = sim
        .json(&format!("/model/allocation?window={w}&step=1h"))
        .await;
    assert_eq!(steps["data"].as_array().unwrap().len(), 24);
    assert!(rel(total(&steps), all) < 1e-9);
    let daily = sim
        .json(&format!(
            "/model/allocation?window={}",
            pair(DAY0 - 3 * 86_400, DAY0)
        ))
        .await;
    assert_eq!(
        daily["data"].as_array().unwrap().len(),
        3,
        "one set per day by default"
    );

    let f = sim
        .json(&format!(
            "/model/allocation?window={w}&accumulate=true&filter=cluster:%22cluster-2%22"
        ))
        .await;
    for a in f["data"][0].as_object().unwrap().values() {
        assert_eq!(a["properties"]["cluster"], "cluster-2");
    }
    let f = sim
        .json(&format!("/model/allocation?window={w}&accumulate=true&idle=false&filter=cluster:%22cluster-1%22%2Bnamespace:%22kube-system%22,%22monitoring%22"))
        .await;
    let set = f["data"][0].as_object().unwrap();
    assert!(!set.is_empty());
    for a in set.values() {
        assert_eq!(a["properties"]["cluster"], "cluster-1");
        let n = a["properties"]["namespace"].as_str().unwrap();
        assert!(n == "kube-system" || n == "monitoring", "{n}");
    }

    let oc = sim
        .json(&format!(
            "/allocation/compute?window={w}&aggregate=namespace"
        ))
        .await;
    assert_eq!(oc["status"], "success");
    assert_eq!(
        oc["data"].as_array().unwrap().len(),
        1,
        "OpenCost: one set per window"
    );
    assert!(
        oc["data"][0].get("__idle__").is_none(),
        "OpenCost: includeIdle defaults to false"
    );

    let bad = sim.get("/model/allocation?window=bogus").await;
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .starts_with("Invalid 'window' parameter")
    );

    // Data ends at now: future sets are absent, the current day is cut at now.
    let fut = sim
        .json(&format!(
            "/model/allocation?window={}",
            pair(DAY0 + 86_400, DAY0 + 2 * 86_400)
        ))
        .await;
    assert_eq!(fut["data"].as_array().unwrap().len(), 0);
    let today = sim
        .json("/model/allocation?window=today&aggregate=cluster")
        .await;
    let c1 = &today["data"][0]["cluster-1"];
    assert_eq!(c1["end"], kb_core::window::format_rfc3339(NOW));
    assert_eq!(
        c1["window"]["end"],
        kb_core::window::format_rfc3339(DAY0 + 86_400)
    );
    sim.stop().await;
}

#[tokio::test]
async fn same_seed_same_bytes_other_seed_other_data() {
    let path = format!(
        "/model/allocation?window={}&step=1h",
        pair(DAY0 - 7_200, DAY0)
    );
    let mut bodies = Vec::new();
    for seed in [5, 5, 6] {
        let sim = Sim::start(cfg(2, 40, seed)).await;
        bodies.push(sim.get(&path).await.bytes().await.unwrap());
        sim.stop().await;
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_ne!(bodies[0], bodies[2]);
}

#[tokio::test]
async fn spike_raises_the_namespace_cost_from_its_start() {
    let mut c = cfg(1, 60, 4);
    let before = Fleet::new(&c);
    c.spikes
        .push(format!("kube-system:5:{}", DAY0 - 43_200).parse().unwrap());
    let after = Fleet::new(&c);
    let early = Window {
        start: DAY0 - 86_400,
        end: DAY0 - 43_200,
    };
    let late = Window {
        start: DAY0 - 43_200,
        end: DAY0,
    };
    assert_eq!(
        before.allocation_total("cluster-1", early),
        after.allocation_total("cluster-1", early)
    );
    let sim_b = Sim::start(cfg(1, 60, 4)).await;
    let sim_a = Sim::start(c).await;
    let q = format!(
        "/model/allocation?window={}&accumulate=true&aggregate=namespace",
        pair(late.start, late.end)
    );
    let (b, a) = (sim_b.json(&q).await, sim_a.json(&q).await);
    let ks = |v: &serde_json::Value| v["data"][0]["kube-system"]["cpuCost"].as_f64().unwrap();
    assert!(ks(&a) > 3.0 * ks(&b));
    assert!(
        rel(
            after.allocation_total("cluster-1", late),
            after.asset_total("cluster-1", late)
        ) < 1e-9
    );
    sim_a.stop().await;
    sim_b.stop().await;
}
