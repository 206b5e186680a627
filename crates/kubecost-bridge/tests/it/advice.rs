//! The bridge's own advice end to end: `backfill` extracts allocations and node assets and
//! aggregates, which stores the cluster's recommendations; aggregating again stores the same
//! list once; `run` serves them on `/optimization` beside Kubecost's savings, and the
//! budgets from config on `/budgets` beside Kubecost's.

use std::time::{Duration, Instant};

use kb_analytics::recommend::RecommendationKind;
use kb_pipeline::insights::InsightReader;

use crate::{
    FAST, Reaped, Sim, bin, free_port, http_get, past_range, rfc, run_ok, sim_config, write_config,
};

#[test]
fn aggregate_stores_recommendations_and_optimization_serves_both_sources() {
    let sim = Sim::start(sim_config(1, 30));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The backfilled days are 10 days ago: observe 12 days so the advice sees them.
    let extra = format!(
        "{FAST}aggregation:\n  optimization:\n    observe: 12d\n    spot_discount: 0.65\napi:\n  listen: \"127.0.0.1:{port}\"\nbudgets:\n  - {{ name: monthly, cluster: cluster-1, amount: 500 }}\n  - {{ name: kube-system, cluster: cluster-1, namespace: kube-system, amount: 20, period: week }}\n"
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let range = past_range(48);
    let args = [
        "--from".to_string(),
        rfc(range.start),
        "--to".to_string(),
        rfc(range.end),
    ];
    run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args(&args));
    let db = dir.path().join("bridge.db");
    let first = {
        let store = kb_store::SqliteStore::open(&db).unwrap();
        store.recommendations("cluster-1").unwrap().unwrap()
    };
    assert!(first.monthly_cost > 0.0);
    assert!(first.observed.end > range.end);
    let kinds = |k: RecommendationKind| first.items.iter().filter(|r| r.kind == k).count();
    assert!(kinds(RecommendationKind::RequestSizing) > 0, "{first:#?}");
    assert!(kinds(RecommendationKind::SpotCandidate) > 0, "{first:#?}");
    assert!(
        first
            .items
            .iter()
            .filter(|r| r.kind == RecommendationKind::SpotCandidate)
            .all(|r| r.description.contains("65% cheaper")),
        "the configured discount is used"
    );

    // Aggregating again stores the same list, once.
    let out = run_ok(bin().args(["aggregate", "--config"]).arg(&cfg).args(&args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} recommendations", first.items.len())),
        "{stdout}"
    );
    let store = kb_store::SqliteStore::open(&db).unwrap();
    let again = store.recommendations("cluster-1").unwrap().unwrap();
    assert_eq!(again.items, first.items);
    assert_eq!(
        store.stats().unwrap().rows("recommendations"),
        first.items.len() as u64
    );
    let kubecost = store.savings("cluster-1").unwrap();
    drop(store);

    // `run` serves them: no catch-up beyond the last hour, so the stored lists stay.
    let run_cfg = dir.path().join("run.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("extract:\n", "extract:\n  lookback: 1h\n");
    std::fs::write(&run_cfg, text).unwrap();
    let mut child = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&run_cfg)
            .env("KUBECOST_BRIDGE_ADMIN_TOKEN", "admin-token-for-tests")
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}/api/v1/costs/kubernetes/cluster-1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some((200, body)) = http_get(
            &format!("{base}/optimization"),
            Some("admin-token-for-tests"),
        ) {
            break body;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "run exited early");
        assert!(Instant::now() < deadline, "never served");
        std::thread::sleep(Duration::from_millis(200));
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let recs = v["recommendations"].as_array().unwrap();
    let from = |s: &str| recs.iter().filter(|r| r["source"] == s).count();
    assert!(from("bridge") > 0, "{body}");
    assert_eq!(from("kubecost"), kubecost.len(), "{body}");
    assert!(
        !kubecost.is_empty(),
        "the extractor stored Kubecost's savings"
    );
    assert!(recs.iter().any(|r| r["kind"] == "spot_candidate"));
    let sum: f64 = recs
        .iter()
        .map(|r| r["estimated_monthly_savings"].as_f64().unwrap())
        .sum();
    let total = v["total_estimated_monthly_savings"].as_f64().unwrap();
    assert!((sum - total).abs() <= 1e-6 * total.abs().max(1.0));
    assert!(v["savings_share"].as_f64().unwrap() > 0.0);

    let (status, body) =
        http_get(&format!("{base}/budgets"), Some("admin-token-for-tests")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let budgets = v["budgets"].as_array().unwrap();
    let ids: Vec<&str> = budgets.iter().filter_map(|b| b["id"].as_str()).collect();
    assert!(
        ids.contains(&"bridge:monthly") && ids.contains(&"bridge:kube-system"),
        "{body}"
    );
    assert!(budgets.iter().any(|b| b["source"] == "kubecost"), "{body}");
    let ks = budgets
        .iter()
        .find(|b| b["id"] == "bridge:kube-system")
        .unwrap();
    assert_eq!(ks["interval"], "weekly");
    assert_eq!(ks["spend_limit"].as_f64(), Some(20.0));
}
