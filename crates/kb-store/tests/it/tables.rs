//! Assets, budgets, savings, predictions, reconciliations, cleanup and stats.

use kb_core::{
    Asset, AssetType, Budget, MonthlyCost, Resolution, SavingsKind, SavingsRecommendation,
    SpecCostPrediction,
};
use kb_pipeline::ports::{Checkpoint, CostReader, CostStore, Endpoint, Reconciliation};

use crate::common::*;

fn asset(window: kb_core::Window, key: &str, total: f64) -> Asset {
    Asset {
        key: key.into(),
        asset_type: AssetType::Node,
        window,
        start: window.start,
        end: window.end,
        minutes: 1440.0,
        cluster: CLUSTER.into(),
        name: key.into(),
        provider_id: format!("aws:///{key}"),
        labels: vec![("topology_kubernetes_io_zone".into(), "us-east-1a".into())],
        node_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        cpu_cores: 2.0,
        cpu_cost: total * 0.7,
        ram_cost: total * 0.3,
        discount: 0.1,
        total_cost: total,
        null_fields: 1,
        ..Asset::default()
    }
}

fn asset_checkpoint(window: kb_core::Window, n: u64) -> Checkpoint {
    Checkpoint {
        cluster: CLUSTER.into(),
        endpoint: Endpoint::Assets,
        window,
        resolution: Resolution::Day,
        synced_at: window.end,
        rows: n,
        response_total_cost: 0.0,
        null_fields: 0,
    }
}

#[test]
fn assets_replace_their_window_and_record_a_checkpoint() {
    let (_dir, store) = store();
    let a = [asset(day(0), "node-1", 2.0), asset(day(0), "node-2", 3.0)];
    let stats = store.put_assets(&a, &asset_checkpoint(day(0), 2)).unwrap();
    assert_eq!(stats.rows, 2);
    assert!(close(stats.total_cost, 5.0));
    assert!(close(store.asset_total(CLUSTER, day(0)).unwrap(), 5.0));
    let b = [asset(day(0), "node-1", 4.0)];
    let stats = store.put_assets(&b, &asset_checkpoint(day(0), 1)).unwrap();
    assert_eq!(stats.rows, 1);
    assert!(close(store.asset_total(CLUSTER, day(0)).unwrap(), 4.0));
    store
        .put_assets(
            &[asset(day(1), "node-1", 1.0)],
            &asset_checkpoint(day(1), 1),
        )
        .unwrap();
    assert!(close(store.asset_total(CLUSTER, day(0)).unwrap(), 4.0));
    let synced = store.synced_windows(CLUSTER, Endpoint::Assets, 0).unwrap();
    assert_eq!(
        synced,
        vec![(day(0), Resolution::Day), (day(1), Resolution::Day)]
    );
    // An allocation checkpoint is refused for assets.
    let mut wrong = asset_checkpoint(day(2), 0);
    wrong.endpoint = Endpoint::Allocation;
    assert!(store.put_assets(&[], &wrong).is_err());
}

#[test]
fn cleanup_removes_only_old_rows_and_keeps_checkpoints() {
    let (_dir, store) = store();
    put_window(
        &store,
        hour(0),
        Resolution::Hour,
        &window_rows(hour(0), 1.0),
    );
    put_window(
        &store,
        hour(1),
        Resolution::Hour,
        &window_rows(hour(1), 1.0),
    );
    store
        .put_assets(&[asset(day(0), "n", 1.0)], &asset_checkpoint(day(0), 1))
        .unwrap();
    store
        .put_budgets(
            CLUSTER,
            &[Budget {
                id: "b".into(),
                ..Budget::default()
            }],
            1,
        )
        .unwrap();
    assert_eq!(store.cleanup(hour(0).start).unwrap(), 0);
    assert_eq!(store.cleanup(hour(0).end).unwrap(), 9);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap().rows, 0);
    assert_eq!(store.window_total(CLUSTER, hour(1)).unwrap().rows, 9);
    assert_eq!(store.asset_total(CLUSTER, day(0)).unwrap(), 1.0);
    assert_eq!(store.cleanup(day(0).end).unwrap(), 10);
    assert_eq!(
        store
            .checkpoints(CLUSTER, Endpoint::Allocation)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.checkpoints(CLUSTER, Endpoint::Assets).unwrap().len(),
        1
    );
    assert_eq!(store.budgets(CLUSTER).unwrap().len(), 1);
}

#[test]
fn budgets_savings_and_predictions_replace_the_clusters_rows() {
    let (_dir, store) = store();
    let b1 = Budget {
        id: "b1".into(),
        name: "team a".into(),
        budget_type: "allocations".into(),
        values: vec![("namespace".into(), vec!["alpha".into(), "beta".into()])],
        interval: "monthly".into(),
        interval_day: 1,
        spend_limit: 100.0,
        current_spend: 12.5,
        window: day(0),
    };
    let b2 = Budget {
        id: "b2".into(),
        ..b1.clone()
    };
    store.put_budgets(CLUSTER, &[b1.clone(), b2], 10).unwrap();
    store
        .put_budgets("c2", std::slice::from_ref(&b1), 10)
        .unwrap();
    assert_eq!(store.budgets(CLUSTER).unwrap().len(), 2);
    store
        .put_budgets(CLUSTER, std::slice::from_ref(&b1), 11)
        .unwrap();
    assert_eq!(store.budgets(CLUSTER).unwrap(), vec![b1.clone()]);
    assert_eq!(store.budgets("c2").unwrap(), vec![b1]);

    let rec = |kind, saving| SavingsRecommendation {
        kind,
        cluster: CLUSTER.into(),
        namespace: "alpha".into(),
        controller_kind: "deployment".into(),
        controller: "api".into(),
        target: "app".into(),
        monthly_savings: saving,
        detail: "cpu 500m -> 120m".into(),
    };
    store
        .put_savings(
            CLUSTER,
            &[
                rec(SavingsKind::RequestSizing, 1.0),
                rec(SavingsKind::ClusterSizing, 5.0),
            ],
            1,
        )
        .unwrap();
    assert_eq!(store.savings(CLUSTER).unwrap().len(), 2);
    store
        .put_savings(CLUSTER, &[rec(SavingsKind::AbandonedWorkload, 2.0)], 2)
        .unwrap();
    assert_eq!(
        store.savings(CLUSTER).unwrap(),
        vec![rec(SavingsKind::AbandonedWorkload, 2.0)]
    );

    let m = |x: f64| MonthlyCost {
        total_monthly_rate: x,
        cpu_monthly_rate: x / 2.0,
        ram_monthly_rate: x / 4.0,
        gpu_monthly_rate: 0.0,
        monthly_cpu_core_hours: 730.0,
        monthly_ram_byte_hours: 1.0e12,
        monthly_gpu_hours: 0.0,
    };
    let p = SpecCostPrediction {
        namespace: "alpha".into(),
        controller_kind: "deployment".into(),
        controller_name: "api".into(),
        cost_before: m(10.0),
        cost_after: m(15.0),
        cost_change: m(5.0),
    };
    store
        .put_predictions(CLUSTER, &[p.clone(), p.clone()], 1)
        .unwrap();
    assert_eq!(store.predictions(CLUSTER).unwrap().len(), 2);
    store
        .put_predictions(CLUSTER, std::slice::from_ref(&p), 2)
        .unwrap();
    assert_eq!(store.predictions(CLUSTER).unwrap(), vec![p]);
    store.put_predictions(CLUSTER, &[], 3).unwrap();
    assert!(store.predictions(CLUSTER).unwrap().is_empty());
}

#[test]
fn a_reconciliation_is_upserted_per_window() {
    let (_dir, store) = store();
    let mut r = Reconciliation {
        cluster: CLUSTER.into(),
        endpoint: Endpoint::Allocation,
        window: hour(0),
        expected: 10.0,
        stored: 9.0,
        relative_error: 0.1,
        checked_at: 100,
    };
    store.record_reconciliation(&r).unwrap();
    r.stored = 10.0;
    r.relative_error = 0.0;
    r.checked_at = 200;
    store.record_reconciliation(&r).unwrap();
    let mut other = r.clone();
    other.window = hour(5);
    store.record_reconciliation(&other).unwrap();
    let mut assets = r.clone();
    assets.endpoint = Endpoint::Assets;
    store.record_reconciliation(&assets).unwrap();
    let got = store.reconciliations(CLUSTER, hour(0)).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.contains(&r) && got.contains(&assets));
    let all = store.reconciliations(CLUSTER, day(0)).unwrap();
    assert_eq!(all.len(), 3);
    assert!(store.reconciliations("c2", day(0)).unwrap().is_empty());
}

#[test]
fn stats_count_rows() {
    let (_dir, store) = store();
    put_window(
        &store,
        hour(0),
        Resolution::Hour,
        &window_rows(hour(0), 1.0),
    );
    let s = store.stats().unwrap();
    assert_eq!(s.rows("allocations"), 9);
    assert_eq!(s.rows("sync_state"), 1);
    assert_eq!(s.rows("clusters"), 1);
    assert_eq!(
        s.rows("namespaces"),
        3,
        "alpha, beta and the idle row's empty namespace"
    );
    assert!(s.database_bytes > 0);
    assert_eq!(s.tables.len(), kb_store::schema::TABLES.len());
}

#[test]
fn node_assets_come_back_for_node_pool_sizing_without_other_types() {
    let (_dir, store) = store();
    let mut spot = asset(day(0), "node-2", 3.0);
    spot.preemptible = 1.0;
    spot.cluster = "kubecost's own name".into();
    let mut disk = asset(day(0), "disk-1", 1.0);
    disk.asset_type = AssetType::Disk;
    store
        .put_assets(
            &[asset(day(0), "node-1", 2.0), spot, disk],
            &asset_checkpoint(day(0), 3),
        )
        .unwrap();
    store
        .put_assets(
            &[asset(day(1), "node-1", 2.5)],
            &asset_checkpoint(day(1), 1),
        )
        .unwrap();
    let both = kb_core::Window::new(day(0).start, day(1).end).unwrap();
    let nodes = store.node_assets(CLUSTER, both).unwrap();
    let names: Vec<(&str, i64)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.window.start))
        .collect();
    assert_eq!(
        names,
        [
            ("node-1", day(0).start),
            ("node-2", day(0).start),
            ("node-1", day(1).start)
        ]
    );
    let n2 = &nodes[1];
    assert_eq!(n2.cluster, CLUSTER, "the bridge's cluster name");
    assert_eq!(n2.preemptible, 1.0);
    assert_eq!(n2.node_type, "m5.large");
    assert_eq!(n2.cpu_cores, 2.0);
    assert_eq!(n2.total_cost, 3.0);
    assert_eq!(
        n2.labels,
        vec![(
            "topology_kubernetes_io_zone".to_string(),
            "us-east-1a".to_string()
        )]
    );
    assert_eq!(store.node_assets(CLUSTER, day(1)).unwrap().len(), 1);
    assert!(store.node_assets("other", both).unwrap().is_empty());
}
