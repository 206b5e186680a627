//! Writing windows and reading them back: totals, every grouping level and granularity, idle
//! handling, ordering and the stored columns.

use kb_core::Resolution;
use kb_pipeline::ports::{CostQuery, CostReader, Granularity, GroupBy};

use crate::common::*;

const LEVELS: [GroupBy; 4] = [
    GroupBy::Cluster,
    GroupBy::Namespace,
    GroupBy::Controller,
    GroupBy::Pod,
];
const GRAINS: [Option<Granularity>; 4] = [
    None,
    Some(Granularity::Hour),
    Some(Granularity::Day),
    Some(Granularity::Month),
];

fn query(group_by: GroupBy, granularity: Option<Granularity>, include_idle: bool) -> CostQuery {
    CostQuery {
        cluster: Some(CLUSTER.into()),
        namespace: None,
        range: kb_core::Window::new(DAY0, DAY0 + 40 * 86_400).unwrap(),
        granularity,
        group_by,
        include_idle,
    }
}

#[test]
fn window_totals_round_trip() {
    let (_dir, store) = store();
    let rows = window_rows(hour(0), 1.0);
    let stats = put_window(&store, hour(0), Resolution::Hour, &rows);
    assert_eq!(stats.rows, rows.len() as u64);
    assert!(close(stats.total_cost, sum_total(&rows)));
    let again = store.window_total(CLUSTER, hour(0)).unwrap();
    assert_eq!(again, stats);
    assert_eq!(store.window_total(CLUSTER, hour(1)).unwrap().rows, 0);
    assert_eq!(store.window_total("other", hour(0)).unwrap().rows, 0);
}

#[test]
fn every_level_and_granularity_sums_to_the_same_total() {
    let (_dir, store) = store();
    let mut all = Vec::new();
    // Two hours of day 0, a daily window on day 1, and a day in the next month.
    for (w, r) in [
        (hour(0), Resolution::Hour),
        (hour(1), Resolution::Hour),
        (day(1), Resolution::Day),
        (day(20), Resolution::Day),
    ] {
        let rows = window_rows(w, 1.0 + all.len() as f64 / 10.0);
        put_window(&store, w, r, &rows);
        all.extend(rows);
    }
    let total = sum_total(&all);
    let idle_total: f64 = all
        .iter()
        .filter(|a| a.is_idle())
        .map(|a| a.total_cost)
        .sum();
    for level in LEVELS {
        for grain in GRAINS {
            for include_idle in [true, false] {
                let out = store.costs(&query(level, grain, include_idle)).unwrap();
                let got: f64 = out.iter().map(|r| r.total_cost).sum();
                let want = if include_idle {
                    total
                } else {
                    total - idle_total
                };
                assert!(
                    close(got, want),
                    "{level:?} {grain:?} {include_idle}: {got} vs {want}"
                );
                let rows: u64 = out.iter().map(|r| r.rows).sum();
                let want_rows = all.iter().filter(|a| include_idle || !a.is_idle()).count();
                assert_eq!(rows as usize, want_rows, "{level:?} {grain:?}");
                let idle: f64 = out.iter().map(|r| r.idle_cost).sum();
                assert!(close(idle, if include_idle { idle_total } else { 0.0 }));
                // Ordered by bucket, cluster, namespace, controller, pod.
                let keys: Vec<_> = out
                    .iter()
                    .map(|r| {
                        (
                            r.bucket_start,
                            r.cluster.clone(),
                            r.namespace.clone(),
                            r.controller.clone(),
                            r.controller_kind.clone(),
                            r.pod.clone(),
                        )
                    })
                    .collect();
                let mut sorted = keys.clone();
                sorted.sort();
                assert_eq!(keys, sorted, "{level:?} {grain:?}");
                // Levels below the grouping are empty.
                for r in &out {
                    match level {
                        GroupBy::Cluster => assert!(
                            r.namespace.is_empty() && r.controller.is_empty() && r.pod.is_empty()
                        ),
                        GroupBy::Namespace => assert!(r.controller.is_empty() && r.pod.is_empty()),
                        GroupBy::Controller => assert!(r.pod.is_empty()),
                        GroupBy::Pod => {}
                    }
                }
            }
        }
    }
    // Bucket counts per grain at cluster level.
    let n = |g| {
        store
            .costs(&query(GroupBy::Cluster, g, true))
            .unwrap()
            .len()
    };
    assert_eq!(n(None), 1);
    assert_eq!(n(Some(Granularity::Hour)), 4);
    assert_eq!(n(Some(Granularity::Day)), 3);
    assert_eq!(n(Some(Granularity::Month)), 2);
    let months = store
        .costs(&query(GroupBy::Cluster, Some(Granularity::Month), true))
        .unwrap();
    assert_eq!(months[0].bucket_start, 1_698_796_800); // 2023-11-01
    assert_eq!(months[1].bucket_start, 1_701_388_800); // 2023-12-01
    let none = store.costs(&query(GroupBy::Cluster, None, true)).unwrap();
    assert_eq!(
        none[0].bucket_start, DAY0,
        "no granularity: the range start"
    );
}

#[test]
fn cost_fields_follow_the_cost_row_docs() {
    let (_dir, store) = store();
    let rows = window_rows(hour(0), 1.0);
    put_window(&store, hour(0), Resolution::Hour, &rows);
    let out = store.costs(&query(GroupBy::Namespace, None, true)).unwrap();
    let alpha = out.iter().find(|r| r.namespace == "alpha").unwrap();
    let mine: Vec<_> = rows.iter().filter(|a| a.namespace == "alpha").collect();
    let s = |f: fn(&kb_core::Allocation) -> f64| mine.iter().map(|a| f(a)).sum::<f64>();
    assert!(close(
        alpha.cpu_cost,
        s(|a| a.cpu_cost + a.cpu_cost_adjustment)
    ));
    assert!(close(
        alpha.memory_cost,
        s(|a| a.ram_cost + a.ram_cost_adjustment)
    ));
    assert!(close(
        alpha.gpu_cost,
        s(|a| a.gpu_cost + a.gpu_cost_adjustment)
    ));
    assert!(close(
        alpha.storage_cost,
        s(|a| a.pv_cost + a.pv_cost_adjustment)
    ));
    assert!(close(
        alpha.network_cost,
        s(|a| a.network_cost + a.network_cost_adjustment)
    ));
    assert!(close(
        alpha.load_balancer_cost,
        s(|a| a.load_balancer_cost + a.load_balancer_cost_adjustment)
    ));
    assert!(close(alpha.shared_cost, s(|a| a.shared_cost)));
    assert!(close(alpha.external_cost, s(|a| a.external_cost)));
    assert!(close(alpha.total_cost, s(|a| a.total_cost)));
    assert_eq!(alpha.idle_cost, 0.0);
    assert_eq!(alpha.rows, 4);
    let w = |a: &kb_core::Allocation| {
        a.cpu_cost + a.cpu_cost_adjustment + a.ram_cost + a.ram_cost_adjustment
    };
    let eff = mine.iter().map(|a| a.total_efficiency * w(a)).sum::<f64>()
        / mine.iter().map(|a| w(a)).sum::<f64>();
    assert!(
        close(alpha.efficiency_score, eff),
        "{} vs {eff}",
        alpha.efficiency_score
    );
    // The idle row is its own group (empty namespace) and counts as idle cost, not efficiency.
    let idle_row = out.iter().find(|r| r.namespace.is_empty()).unwrap();
    assert!(close(idle_row.idle_cost, 0.5));
    assert_eq!(idle_row.efficiency_score, 0.0);
    let cluster = store.costs(&query(GroupBy::Cluster, None, true)).unwrap();
    assert!(close(cluster[0].idle_cost, 0.5));
    let all_eff = {
        let work: Vec<_> = rows.iter().filter(|a| !a.is_idle()).collect();
        work.iter().map(|a| a.total_efficiency * w(a)).sum::<f64>()
            / work.iter().map(|a| w(a)).sum::<f64>()
    };
    assert!(
        close(cluster[0].efficiency_score, all_eff),
        "idle rows do not dilute efficiency"
    );
}

#[test]
fn idle_rows_named_by_node_or_cluster_are_excluded() {
    let (_dir, store) = store();
    let mut rows = window_rows(hour(0), 1.0);
    let mut by_node = idle(hour(0), 0.25);
    by_node.name = "aws:///i-1/__idle__".into();
    rows.push(by_node);
    put_window(&store, hour(0), Resolution::Hour, &rows);
    let out = store.costs(&query(GroupBy::Pod, None, false)).unwrap();
    let want: f64 = rows
        .iter()
        .filter(|a| !a.is_idle())
        .map(|a| a.total_cost)
        .sum();
    assert!(close(out.iter().map(|r| r.total_cost).sum(), want));
    assert!(out.iter().all(|r| r.idle_cost == 0.0));
    let with = store.costs(&query(GroupBy::Cluster, None, true)).unwrap();
    assert!(close(with[0].idle_cost, 0.75));
}

#[test]
fn filters_by_namespace_cluster_and_range() {
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
        &window_rows(hour(1), 2.0),
    );
    let mut q = query(GroupBy::Controller, Some(Granularity::Hour), true);
    q.namespace = Some("beta".into());
    let out = store.costs(&q).unwrap();
    assert_eq!(out.len(), 4, "2 hours × 2 controllers");
    assert!(
        out.iter()
            .all(|r| r.namespace == "beta" && r.controller_kind == "deployment")
    );
    q.namespace = None;
    q.range = hour(1);
    let out = store.costs(&q).unwrap();
    assert!(out.iter().all(|r| r.bucket_start == hour(1).start));
    q.cluster = Some("nope".into());
    assert!(store.costs(&q).unwrap().is_empty());
    q.cluster = None;
    assert!(!store.costs(&q).unwrap().is_empty());
    assert_eq!(
        store.clusters().unwrap(),
        vec![(CLUSTER.to_string(), hour(1).end)]
    );
}

#[test]
fn every_field_is_stored_under_its_column() {
    let (dir, store) = store();
    let rows = window_rows(hour(0), 1.0);
    put_window(&store, hour(0), Resolution::Hour, &rows);
    let conn = rusqlite::Connection::open(dir.path().join("kb.db")).unwrap();
    let a = &rows[0];
    let mut st = conn
        .prepare("SELECT * FROM allocations WHERE name = ?1")
        .unwrap();
    let mut q = st.query([&a.name]).unwrap();
    let row = q.next().unwrap().unwrap();
    for (col, get) in kb_store::schema::ALLOCATION_F64 {
        let v: f64 = row.get(*col).unwrap();
        assert_eq!(v, get(a), "{col}");
    }
    assert_eq!(row.get::<_, f64>("memory_cost").unwrap(), a.ram_cost);
    assert_eq!(row.get::<_, f64>("storage_cost").unwrap(), a.pv_cost);
    assert_eq!(
        row.get::<_, f64>("efficiency_score").unwrap(),
        a.total_efficiency
    );
    assert_eq!(row.get::<_, i64>("null_fields").unwrap(), 2);
    assert_eq!(row.get::<_, String>("resolution").unwrap(), "1h");
    assert_eq!(row.get::<_, String>("container").unwrap(), "app");
    drop(q);
    let idle_name: String = conn
        .query_row("SELECT name FROM allocations WHERE is_idle = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(idle_name, "__idle__");
    let labels: String = conn
        .query_row(
            "SELECT l.json FROM allocations a JOIN label_sets l ON l.id = a.annotations_id WHERE a.name = ?1",
            [&a.name],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(labels, r#"{"note":"x\u001fy"}"#);
    let services: String = conn
        .query_row(
            "SELECT l.json FROM allocations a JOIN label_sets l ON l.id = a.services_id WHERE a.name = ?1",
            [&a.name],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(services, r#"["api-svc"]"#);
}

#[test]
fn a_non_finite_number_is_stored_as_zero_not_null() {
    let (dir, store) = store();
    let mut rows = window_rows(hour(0), 1.0);
    rows[0].cpu_efficiency = f64::NAN;
    rows[0].ram_cost_idle = f64::INFINITY;
    put_window(&store, hour(0), Resolution::Hour, &rows);
    let conn = rusqlite::Connection::open(dir.path().join("kb.db")).unwrap();
    let (eff, idle, nulls): (f64, f64, i64) = conn
        .query_row(
            "SELECT cpu_efficiency, ram_cost_idle, \
             (SELECT count(*) FROM allocations WHERE cpu_efficiency IS NULL) \
             FROM allocations WHERE name = ?1",
            [&rows[0].name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((eff, idle, nulls), (0.0, 0.0, 0));
}

#[test]
fn every_row_keeps_its_own_values_when_neighbours_share_some() {
    // The writer skips re-binding values equal to the previous row's and reuses the previous
    // row's dimension ids: alternate equal and different values and check every row.
    let (dir, store) = store();
    let mut rows = window_rows(hour(0), 1.0);
    rows.extend(window_rows(hour(0), 1.0).into_iter().map(|mut a| {
        a.name.push_str("-b");
        a
    }));
    for (i, a) in rows.iter_mut().enumerate() {
        if i % 3 == 0 {
            a.cpu_cost = 0.0;
            a.shared_cost = 0.0;
            a.container = "sidecar".into();
            a.labels.clear();
        }
        if i % 2 == 0 {
            a.null_fields = 0;
            a.services.clear();
        }
    }
    put_window(&store, hour(0), Resolution::Hour, &rows);
    let conn = rusqlite::Connection::open(dir.path().join("kb.db")).unwrap();
    let mut st = conn
        .prepare(
            "SELECT a.*, n.name AS ns, k.name AS ctrl, p.name AS podname, \
             l.json AS labels_json, s.json AS services_json \
             FROM allocations a JOIN namespaces n ON n.id = a.namespace_id \
             JOIN controllers k ON k.id = a.controller_id JOIN pods p ON p.id = a.pod_id \
             JOIN label_sets l ON l.id = a.labels_id JOIN label_sets s ON s.id = a.services_id \
             WHERE a.name = ?1",
        )
        .unwrap();
    for a in &rows {
        let mut q = st.query([&a.name]).unwrap();
        let row = q.next().unwrap().unwrap();
        for (col, get) in kb_store::schema::ALLOCATION_F64 {
            assert_eq!(row.get::<_, f64>(*col).unwrap(), get(a), "{} {col}", a.name);
        }
        assert_eq!(row.get::<_, String>("container").unwrap(), a.container);
        assert_eq!(
            row.get::<_, i64>("null_fields").unwrap(),
            i64::from(a.null_fields)
        );
        assert_eq!(
            row.get::<_, i64>("is_idle").unwrap(),
            i64::from(a.is_idle())
        );
        assert_eq!(row.get::<_, String>("ns").unwrap(), a.namespace);
        assert_eq!(row.get::<_, String>("ctrl").unwrap(), a.controller);
        assert_eq!(row.get::<_, String>("podname").unwrap(), a.pod);
        let labels = row.get::<_, String>("labels_json").unwrap();
        assert_eq!(labels == "{}", a.labels.is_empty(), "{labels}");
        let services = row.get::<_, String>("services_json").unwrap();
        assert_eq!(services == "[]", a.services.is_empty(), "{services}");
        assert!(q.next().unwrap().is_none());
    }
}

/// `pod_labels`: one entry per pod (the same pod on two nodes is one pod), with the labels of
/// its newest window in the range; idle rows are not pods; the namespace filter narrows.
#[test]
fn pod_labels_are_the_newest_per_pod() {
    let (_dir, store) = store();
    let mut early = alloc(hour(0), "ns-a", "web", "web-1", 1.0);
    early.labels = vec![("team".into(), "old".into())];
    let mut other_node = alloc(hour(0), "ns-a", "web", "web-1", 1.0);
    other_node.node = "node-2".into();
    other_node.name = format!("{CLUSTER}/ns-a/web-1/app-2");
    other_node.labels = vec![("team".into(), "old".into())];
    put_window(
        &store,
        hour(0),
        Resolution::Hour,
        &[
            early,
            other_node,
            alloc(hour(0), "ns-b", "db", "db-0", 2.0),
            idle(hour(0), 3.0),
        ],
    );
    let mut late = alloc(hour(1), "ns-a", "web", "web-1", 1.0);
    late.labels = vec![("app".into(), "web".into()), ("team".into(), "new".into())];
    late.annotations = vec![("owner".into(), "ana".into())];
    put_window(&store, hour(1), Resolution::Hour, &[late]);

    let both = kb_core::Window::new(DAY0, DAY0 + 2 * HOUR).unwrap();
    let pods = store.pod_labels(CLUSTER, None, both).unwrap();
    let names: Vec<(&str, &str)> = pods
        .iter()
        .map(|p| (p.namespace.as_str(), p.pod.as_str()))
        .collect();
    assert_eq!(names, [("ns-a", "web-1"), ("ns-b", "db-0")]);
    assert_eq!(
        pods[0].labels,
        [
            ("app".to_string(), "web".to_string()),
            ("team".into(), "new".into())
        ]
    );
    assert_eq!(
        pods[0].annotations,
        [("owner".to_string(), "ana".to_string())]
    );
    assert_eq!(
        pods[0].namespace_labels,
        [("team".to_string(), "ns-a".to_string())]
    );
    assert_eq!(pods[0].controller_kind, "deployment");
    assert_eq!(pods[0].controller, "web");
    // Only the first hour: the older labels.
    let first = store.pod_labels(CLUSTER, None, hour(0)).unwrap();
    assert_eq!(first[0].labels, [("team".to_string(), "old".to_string())]);
    // A namespace, a cluster and a range with nothing.
    let b = store.pod_labels(CLUSTER, Some("ns-b"), both).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].pod, "db-0");
    assert!(store.pod_labels("other", None, both).unwrap().is_empty());
    assert!(store.pod_labels(CLUSTER, None, hour(5)).unwrap().is_empty());
}
