//! `/optimization`, `/budgets` and `/forecast` against the fixture: the bridge's advice beside
//! Kubecost's savings, budgets from config beside Kubecost's with their projection, and
//! Kubecost's spec-cost prediction beside the forecasts.

use kb_analytics::Dimension;
use kb_analytics::budget::{BudgetPeriod, BudgetSpec};
use kb_analytics::recommend::RecommendationKind;
use kb_core::Window;
use kb_core::window::{DAY, format_rfc3339};
use kb_pipeline::insights::InsightReader;
use kb_pipeline::ports::{CostQuery, CostReader, GroupBy};
use serde_json::Value;

use crate::*;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

const OPT: &str = "/api/v1/costs/kubernetes/cluster-1/optimization";

#[test]
fn optimization_serves_the_bridges_advice_beside_kubecosts_savings() {
    let s = Server::start();
    let st = &fixture().store;
    let bridge = st.recommendations("cluster-1").unwrap().unwrap();
    let kubecost = st.savings("cluster-1").unwrap();
    assert!(!bridge.items.is_empty() && !kubecost.is_empty());

    let v = s.json(OPT);
    let recs = v["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), bridge.items.len() + kubecost.len());
    let of = |src: &str| {
        recs.iter()
            .filter(|r| r["source"] == src)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("bridge").len(), bridge.items.len());
    assert_eq!(of("kubecost").len(), kubecost.len());
    assert!(
        of("bridge")
            .iter()
            .all(|r| r["current_monthly_cost"].is_number())
    );
    assert!(
        of("kubecost")
            .iter()
            .all(|r| r["current_monthly_cost"].is_null())
    );
    let saved: Vec<f64> = recs
        .iter()
        .map(|r| f(&r["estimated_monthly_savings"]))
        .collect();
    assert!(
        saved.windows(2).all(|w| w[0] >= w[1]),
        "largest saving first"
    );

    // Totals per source and overall, and their share of the cluster's month.
    let bridge_total: f64 = bridge.items.iter().map(|r| r.monthly_savings).sum();
    let kubecost_total: f64 = kubecost.iter().map(|r| r.monthly_savings).sum();
    let monthly = bridge.monthly_cost;
    assert!(monthly > 0.0);
    assert!(close(f(&v["monthly_cost"]), monthly));
    assert!(close(
        f(&v["total_estimated_monthly_savings"]),
        bridge_total + kubecost_total
    ));
    assert!(close(
        f(&v["savings_share"]),
        (bridge_total + kubecost_total) / monthly
    ));
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources[0]["source"], "bridge");
    assert_eq!(
        sources[0]["count"].as_u64(),
        Some(bridge.items.len() as u64)
    );
    assert!(close(
        f(&sources[0]["estimated_monthly_savings"]),
        bridge_total
    ));
    assert!(close(
        f(&sources[0]["savings_share"]),
        bridge_total / monthly
    ));
    assert_eq!(sources[1]["source"], "kubecost");
    assert!(close(
        f(&sources[1]["estimated_monthly_savings"]),
        kubecost_total
    ));
    assert_eq!(v["made_at"], format_rfc3339(SUMMARY_END));
    assert_eq!(v["observed"]["start"], format_rfc3339(START));
    eprintln!(
        "bridge advice on the simulator (cluster-1, 40 pods, 3 days): {:.2} of {:.2} a month = {:.1}% ({} recommendations: {})",
        bridge_total,
        monthly,
        bridge_total / monthly * 100.0,
        bridge.items.len(),
        RecommendationKind::ALL
            .iter()
            .map(|k| format!(
                "{} {}",
                bridge.items.iter().filter(|r| r.kind == *k).count(),
                k.as_str()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Filters: one source, one kind.
    let v = s.json(&format!("{OPT}?source=bridge"));
    let recs = v["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), bridge.items.len());
    assert!(close(
        f(&v["total_estimated_monthly_savings"]),
        bridge_total
    ));
    assert_eq!(v["sources"].as_array().unwrap().len(), 1);
    for kind in RecommendationKind::ALL {
        let v = s.json(&format!("{OPT}?kind={}", kind.as_str()));
        let recs = v["recommendations"].as_array().unwrap();
        let want = bridge.items.iter().filter(|r| r.kind == kind).count()
            + kubecost
                .iter()
                .filter(|r| r.kind.as_str() == kind.as_str())
                .count();
        assert_eq!(recs.len(), want, "{}", kind.as_str());
        assert!(recs.iter().all(|r| r["kind"] == kind.as_str()));
    }
    let spot = s.json(&format!("{OPT}?kind=spot_candidate"));
    let spot = spot["recommendations"].as_array().unwrap();
    assert!(
        !spot.is_empty(),
        "the simulator has replicated deployments on on-demand nodes"
    );
    assert!(
        spot.iter()
            .all(|r| r["source"] == "bridge" && r["controller_kind"] == "deployment")
    );

    // CSV: one row per recommendation, with the source.
    let (code, _, body) = s.get(Some(ADMIN), &format!("{OPT}?format=csv"));
    assert_eq!(code, 200);
    let rows = parse_csv(&body);
    assert_eq!(rows[0][0], "source");
    assert_eq!(rows.len() - 1, bridge.items.len() + kubecost.len());
    let (code, _, body) = s.get(Some(ADMIN), &format!("{OPT}?source=both"));
    assert_eq!(code, 400, "{body}");
}

/// The cluster's (or a namespace's) stored allocation cost in `[start, end)`.
fn stored_cost(namespace: Option<&str>, start: i64, end: i64) -> f64 {
    fixture()
        .store
        .costs(&CostQuery {
            cluster: Some("cluster-1".to_string()),
            namespace: namespace.map(str::to_string),
            range: Window { start, end },
            granularity: None,
            group_by: GroupBy::Cluster,
            include_idle: namespace.is_none(),
        })
        .unwrap()
        .iter()
        .map(|r| r.total_cost)
        .sum()
}

fn rel_close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-9)
}

#[test]
fn budgets_from_config_are_served_beside_kubecosts_with_utilisation_and_projection() {
    let spec = |name: &str, filter, amount, period| BudgetSpec {
        name: name.to_string(),
        cluster: "cluster-1".to_string(),
        filter,
        amount,
        period,
        currency: "USD".to_string(),
    };
    let s = Server::start_with_budgets(vec![
        spec("all", None, 100.0, BudgetPeriod::Monthly { start_day: 1 }),
        spec(
            "payments",
            Some((Dimension::Namespace, "payments".to_string())),
            40.0,
            BudgetPeriod::Weekly { start_weekday: 1 },
        ),
        BudgetSpec {
            cluster: "cluster-2".to_string(),
            ..spec(
                "elsewhere",
                None,
                1.0,
                BudgetPeriod::Monthly { start_day: 1 },
            )
        },
    ]);
    let v = s.json("/api/v1/costs/kubernetes/cluster-1/budgets");
    let list = v["budgets"].as_array().unwrap();
    // Kubecost's fleet-wide list, less the budgets scoped to other clusters.
    let kubecost: Vec<_> = fixture()
        .store
        .budgets("cluster-1")
        .unwrap()
        .into_iter()
        .filter(|k| {
            k.values
                .iter()
                .all(|(c, v)| c != "cluster" || v.iter().any(|x| x == "cluster-1"))
        })
        .collect();
    assert_eq!(
        list.len(),
        2 + kubecost.len(),
        "cluster-2's budget is not listed"
    );
    let by_id = |id: &str| list.iter().find(|b| b["id"] == id).unwrap();

    // The summaries end at SUMMARY_END (2024-06-03T00:00Z): figures are as of then.
    let as_of = SUMMARY_END;
    let rate = stored_cost(None, START, SUMMARY_END) / 72.0;
    let all = by_id("bridge:all");
    assert_eq!(all["source"], "bridge");
    assert_eq!(all["as_of"], format_rfc3339(as_of));
    assert_eq!(all["window"]["start"], "2024-06-01T00:00:00Z");
    assert_eq!(all["window"]["end"], "2024-07-01T00:00:00Z");
    let spent = stored_cost(None, SUMMARY_END - 2 * DAY, SUMMARY_END);
    assert!(rel_close(f(&all["current_spend"]), spent), "{all}");
    assert!(rel_close(f(&all["utilization"]), spent / 100.0));
    assert!(rel_close(f(&all["run_rate_per_hour"]), rate));
    let projected = spent + rate * 28.0 * 24.0;
    assert!(rel_close(f(&all["projected_spend"]), projected));
    assert!(rel_close(
        f(&all["projected_overrun"]),
        (projected - 100.0).max(0.0)
    ));
    assert_eq!(all["currency"], "USD");
    assert_eq!(all["interval"], "monthly");

    // A namespace budget for the week starting on Monday 2024-06-03: nothing spent by the
    // newest summary, a week at the namespace's run rate projected.
    let ns = by_id("bridge:payments");
    assert_eq!(ns["window"]["start"], format_rfc3339(SUMMARY_END));
    assert_eq!(ns["current_spend"].as_f64(), Some(0.0));
    let ns_rate = stored_cost(Some("payments"), START, SUMMARY_END) / 72.0;
    assert!(ns_rate > 0.0);
    assert!(rel_close(f(&ns["run_rate_per_hour"]), ns_rate));
    assert!(rel_close(f(&ns["projected_spend"]), ns_rate * 168.0));
    assert_eq!(ns["scope"][1]["category"], "namespace");
    assert_eq!(ns["scope"][1]["values"][0], "payments");
    if ns_rate * 168.0 > 40.0 {
        let want = SUMMARY_END as f64 + 40.0 / ns_rate * 3600.0;
        let got = kb_core::window::parse_rfc3339(ns["exceeds_at"].as_str().unwrap()).unwrap();
        assert!((got as f64 - want).abs() <= 2.0, "{got} vs {want}");
        assert!(f(&ns["projected_overrun"]) > 0.0);
    } else {
        assert!(ns["exceeds_at"].is_null());
        assert_eq!(ns["projected_overrun"].as_f64(), Some(0.0));
    }

    // Kubecost's: its spend to date, projected where the summaries know the scope (this
    // cluster or its namespaces), not for another cluster's budget.
    for b in &kubecost {
        let out = by_id(&b.id);
        assert_eq!(out["source"], "kubecost");
        assert!(rel_close(f(&out["current_spend"]), b.current_spend));
        let ours = b
            .values
            .iter()
            .all(|(c, v)| c != "cluster" || v.iter().any(|x| x == "cluster-1"));
        assert_eq!(out["run_rate_per_hour"].is_number(), ours, "{out}");
        assert_eq!(out["projected_overrun"].is_number(), ours, "{out}");
    }
    let weekly = by_id("budget-cluster-1-weekly");
    assert!(rel_close(f(&weekly["run_rate_per_hour"]), rate));
}

#[test]
fn forecasts_carry_kubecosts_spec_cost_prediction_for_their_scope() {
    let s = Server::start();
    let v = s.json("/api/v1/costs/kubernetes/cluster-1/forecast");
    let list = v["forecasts"].as_array().unwrap();
    let row = |dim: &str, name: &str| {
        list.iter()
            .find(|f| f["dimension"] == dim && f["name"] == name)
            .unwrap()
    };
    let cluster = row("cluster", "cluster-1");
    let p = &cluster["kubecost_prediction"];
    assert_eq!(p["workloads"][0], "payments/deployment/api");
    assert_eq!(p["monthly_cost_before"].as_f64(), Some(30.0));
    assert_eq!(p["monthly_cost"].as_f64(), Some(51.9));
    assert!(close(f(&p["monthly_change"]), 21.9));
    assert!(close(f(&p["horizon_change"]), 21.9 * 7.0 * 24.0 / 730.0));
    let payments = row("namespace", "payments");
    assert!(close(
        f(&payments["kubecost_prediction"]["horizon_change"]),
        21.9 * 30.0 * 24.0 / 730.0
    ));
    assert!(row("namespace", "checkout")["kubecost_prediction"].is_null());
}
