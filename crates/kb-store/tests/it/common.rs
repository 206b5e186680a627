//! Shared fixtures: a store in a temp dir and synthetic allocations.

use kb_core::{Allocation, Resolution, Window};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint, WindowStats};
use kb_store::SqliteStore;

pub(crate) const CLUSTER: &str = "c1";
/// 2023-11-14T00:00:00Z.
pub(crate) const DAY0: i64 = 1_699_920_000;
pub(crate) const HOUR: i64 = 3_600;

pub(crate) fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("kb.db")).unwrap();
    (dir, store)
}

pub(crate) fn hour(h: i64) -> Window {
    Window::new(DAY0 + h * HOUR, DAY0 + (h + 1) * HOUR).unwrap()
}

pub(crate) fn day(d: i64) -> Window {
    Window::new(DAY0 + d * 86_400, DAY0 + (d + 1) * 86_400).unwrap()
}

/// A workload row with every cost field set to a distinct, seed-dependent value.
pub(crate) fn alloc(window: Window, ns: &str, ctrl: &str, pod: &str, seed: f64) -> Allocation {
    let mut a = Allocation {
        name: format!("{CLUSTER}/{ns}/{pod}/app"),
        cluster: CLUSTER.into(),
        node: "node-1".into(),
        namespace: ns.into(),
        controller_kind: "deployment".into(),
        controller: ctrl.into(),
        pod: pod.into(),
        container: "app".into(),
        provider_id: "aws:///i-1".into(),
        labels: vec![("app".into(), ctrl.into())],
        annotations: vec![("note".into(), "x\u{1f}y".into())],
        namespace_labels: vec![("team".into(), ns.into())],
        services: vec![format!("{ctrl}-svc")],
        window,
        start: window.start,
        end: window.end,
        minutes: 60.0,
        ..Allocation::default()
    };
    a.cpu_cores = 1.0;
    a.cpu_core_request_average = 1.0;
    a.cpu_core_usage_average = 0.25;
    a.cpu_core_hours = 1.0;
    a.cpu_cost = 0.031 * seed;
    a.cpu_cost_adjustment = 0.001 * seed;
    a.cpu_cost_idle = 0.0005;
    a.cpu_efficiency = 0.25;
    a.gpu_cost = 0.002 * seed;
    a.gpu_cost_adjustment = 0.0001;
    a.ram_bytes = 2.0e9;
    a.ram_byte_hours = 2.0e9;
    a.ram_cost = 0.017 * seed;
    a.ram_cost_adjustment = -0.0002;
    a.ram_efficiency = 0.5;
    a.pv_bytes = 1.0e10;
    a.pv_cost = 0.003 * seed;
    a.pv_cost_adjustment = 0.0003;
    a.network_cost = 0.0007 * seed;
    a.network_cost_adjustment = 0.00001;
    a.network_cross_zone_cost = 0.0003;
    a.load_balancer_cost = 0.0011;
    a.load_balancer_cost_adjustment = 0.00002;
    a.shared_cost = 0.0013;
    a.external_cost = 0.0017;
    a.total_cost = kb_core::cost::allocation_total(&a);
    a.total_efficiency = kb_core::cost::efficiency(&a).total;
    a.null_fields = 2;
    a
}

/// Kubecost's cluster idle row.
pub(crate) fn idle(window: Window, cost: f64) -> Allocation {
    let mut a = Allocation {
        name: kb_core::IDLE.into(),
        cluster: CLUSTER.into(),
        window,
        start: window.start,
        end: window.end,
        minutes: 60.0,
        ..Allocation::default()
    };
    a.cpu_cost = cost * 0.6;
    a.ram_cost = cost * 0.4;
    a.total_cost = cost;
    a
}

/// A window of rows: 2 namespaces × 2 controllers × 2 pods, plus an idle row.
pub(crate) fn window_rows(window: Window, scale: f64) -> Vec<Allocation> {
    let mut rows = Vec::new();
    let mut seed = 1.0;
    for ns in ["alpha", "beta"] {
        for ctrl in ["api", "worker"] {
            for p in 0..2 {
                rows.push(alloc(
                    window,
                    ns,
                    ctrl,
                    &format!("{ctrl}-{p}"),
                    seed * scale,
                ));
                seed += 1.0;
            }
        }
    }
    rows.push(idle(window, 0.5 * scale));
    rows
}

pub(crate) fn sum_total(rows: &[Allocation]) -> f64 {
    rows.iter().map(|a| a.total_cost).sum()
}

pub(crate) fn checkpoint(
    window: Window,
    resolution: Resolution,
    rows: &[Allocation],
) -> Checkpoint {
    Checkpoint {
        cluster: CLUSTER.into(),
        endpoint: Endpoint::Allocation,
        window,
        resolution,
        synced_at: window.end + 60,
        rows: rows.len() as u64,
        response_total_cost: sum_total(rows),
        null_fields: rows.iter().map(|a| u64::from(a.null_fields)).sum(),
    }
}

/// Writes a window in two chunks and commits it.
pub(crate) fn put_window(
    store: &SqliteStore,
    window: Window,
    resolution: Resolution,
    rows: &[Allocation],
) -> WindowStats {
    let mut w = store
        .begin_allocations(CLUSTER, window, resolution)
        .unwrap();
    let (a, b) = rows.split_at(rows.len() / 2);
    w.write(a).unwrap();
    w.write(b).unwrap();
    w.commit(&checkpoint(window, resolution, rows)).unwrap()
}

pub(crate) fn close(a: f64, b: f64) -> bool {
    let scale = a.abs().max(b.abs());
    scale == 0.0 || (a - b).abs() / scale <= 1e-9
}
