//! The store's contract on a real server: dropped and failed writers leave nothing, bad
//! checkpoints are refused, assets, reconciliations, cleanup, live costs, tag escaping and
//! float forms read back as written, and both gzip and plain bodies are accepted.

use kb_conformance::{
    DAY, DAY0, HOUR, asset, checkpoint, close, day_at, hour_at, sum_total, window_rows,
};
use kb_core::{AssetType, Resolution, Window};
use kb_influx::{InfluxStore, LineBatch, LiveCostRates, encode_allocations};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint, Reconciliation};

use crate::server;

fn put(store: &InfluxStore, c: &str, w: Window, res: Resolution, scale: f64) -> f64 {
    let rows = window_rows(c, w, scale);
    let mut writer = store.begin_allocations(c, w, res).unwrap();
    writer.write(&rows).unwrap();
    let stats = writer.commit(&checkpoint(c, w, res, &rows)).unwrap();
    assert_eq!(stats.rows, rows.len() as u64);
    assert!(close(stats.total_cost, sum_total(&rows)));
    sum_total(&rows)
}

#[test]
fn uncommitted_failed_and_mismatched_writes_leave_the_store_as_it_was() {
    let store = server::store("drop");
    let c = "drop";
    let h0 = hour_at(DAY0, 0);

    // A dropped writer sends nothing.
    let mut w = store.begin_allocations(c, h0, Resolution::Hour).unwrap();
    w.write(&window_rows(c, h0, 1.0)).unwrap();
    drop(w);
    assert_eq!(store.window_total(c, h0).unwrap().rows, 0);
    assert!(
        store
            .synced_windows(c, Endpoint::Allocation, 0)
            .unwrap()
            .is_empty()
    );

    let v1 = put(&store, c, h0, Resolution::Hour, 1.0);

    // A dropped rewrite leaves the first version.
    let mut w = store.begin_allocations(c, h0, Resolution::Hour).unwrap();
    w.write(&window_rows(c, h0, 5.0)).unwrap();
    drop(w);
    assert!(close(store.window_total(c, h0).unwrap().total_cost, v1));

    // A row outside the window fails the writer and its commit.
    let mut w = store.begin_allocations(c, h0, Resolution::Hour).unwrap();
    let e = w.write(&window_rows(c, hour_at(DAY0, 5), 6.0)).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("outside the window"), "{e}");
    assert!(w.write(&window_rows(c, h0, 6.0)).is_err());
    let rows = window_rows(c, h0, 6.0);
    assert!(
        w.commit(&checkpoint(c, h0, Resolution::Hour, &rows))
            .is_err()
    );
    assert!(close(store.window_total(c, h0).unwrap().total_cost, v1));

    // A checkpoint for another window, cluster or endpoint is refused.
    let mut bad_endpoint = checkpoint(c, h0, Resolution::Hour, &rows);
    bad_endpoint.endpoint = Endpoint::Assets;
    for bad in [
        checkpoint(c, hour_at(DAY0, 1), Resolution::Hour, &rows),
        checkpoint("someone-else", h0, Resolution::Hour, &rows),
        bad_endpoint,
    ] {
        let mut w = store.begin_allocations(c, h0, Resolution::Hour).unwrap();
        w.write(&rows).unwrap();
        let e = w.commit(&bad).unwrap_err();
        assert!(e.message.contains("does not match"), "{e}");
    }
    assert!(close(store.window_total(c, h0).unwrap().total_cost, v1));
    assert_eq!(
        store.synced_windows(c, Endpoint::Allocation, 0).unwrap(),
        vec![(h0, Resolution::Hour)]
    );
    let cps = store.checkpoints(c, Endpoint::Allocation).unwrap();
    assert_eq!(
        cps,
        vec![Checkpoint {
            synced_at: h0.end + 60,
            ..checkpoint(c, h0, Resolution::Hour, &window_rows(c, h0, 1.0))
        }]
    );
}

#[test]
fn assets_reconciliations_and_cleanup() {
    let store = server::store("misc");
    let c = "misc";
    let d0 = day_at(DAY0, 0);
    let d1 = day_at(DAY0, 1);

    // Assets replace the cluster's assets in the window.
    let assets = vec![
        asset(c, d0, "node-a", AssetType::Node, 10.0),
        asset(c, d0, "disk-a", AssetType::Disk, 2.5),
        asset(c, d0, "lb-a", AssetType::LoadBalancer, 1.25),
    ];
    let mut cp = checkpoint(c, d0, Resolution::Day, &[]);
    cp.endpoint = Endpoint::Assets;
    cp.rows = 3;
    let stats = store.put_assets(&assets, &cp).unwrap();
    assert_eq!(stats.rows, 3);
    assert!(close(stats.total_cost, 13.75));
    let stats = store.put_assets(&assets[..1], &cp).unwrap();
    assert_eq!(stats.rows, 1);
    assert!(close(store.asset_total(c, d0).unwrap(), 10.0));
    assert_eq!(
        store.synced_windows(c, Endpoint::Assets, 0).unwrap(),
        vec![(d0, Resolution::Day)]
    );
    let outside = vec![asset(c, d1, "node-b", AssetType::Node, 1.0)];
    assert!(store.put_assets(&outside, &cp).is_err());
    store
        .put_assets(&[asset(c, d1, "node-a", AssetType::Node, 11.0)], &{
            let mut cp = checkpoint(c, d1, Resolution::Day, &[]);
            cp.endpoint = Endpoint::Assets;
            cp
        })
        .unwrap();

    // Reconciliations: one per window, the newer replaces the older.
    let rec = |w: Window, expected: f64, at: i64| Reconciliation {
        cluster: c.into(),
        endpoint: Endpoint::Allocation,
        window: w,
        expected,
        stored: 1.0,
        relative_error: (1.0 - expected).abs(),
        checked_at: at,
    };
    store.record_reconciliation(&rec(d0, 2.0, 100)).unwrap();
    store.record_reconciliation(&rec(d0, 1.0, 200)).unwrap();
    store.record_reconciliation(&rec(d1, 1.5, 300)).unwrap();
    let got = store
        .reconciliations(c, Window::new(DAY0, DAY0 + 2 * DAY).unwrap())
        .unwrap();
    assert_eq!(got, vec![rec(d0, 1.0, 200), rec(d1, 1.5, 300)]);

    // Cleanup removes rows whose window ended by the cutoff, and keeps checkpoints.
    let h = |i| hour_at(DAY0, i);
    let t0 = put(&store, c, h(0), Resolution::Hour, 1.0);
    let t1 = put(&store, c, h(1), Resolution::Hour, 2.0);
    let per_window = window_rows(c, h(0), 1.0).len() as u64;
    assert!(t0 > 0.0 && t1 > 0.0);
    // Cutoff at the end of hour 0: hour 0's rows go, hour 1's stay, and no asset (daily)
    // ended yet.
    assert_eq!(store.cleanup(h(0).end).unwrap(), per_window);
    assert_eq!(store.window_total(c, h(0)).unwrap().rows, 0);
    assert!(close(store.window_total(c, h(1)).unwrap().total_cost, t1));
    assert!(close(store.asset_total(c, d0).unwrap(), 10.0));
    // At the end of day 0 the day-0 asset and hour 1 go.
    assert_eq!(store.cleanup(d0.end).unwrap(), per_window + 1);
    assert_eq!(store.asset_total(c, d0).unwrap(), 0.0);
    assert!(close(store.asset_total(c, d1).unwrap(), 11.0));
    assert_eq!(store.cleanup(d0.end).unwrap(), 0);
    assert_eq!(store.checkpoints(c, Endpoint::Allocation).unwrap().len(), 2);
    assert_eq!(store.checkpoints(c, Endpoint::Assets).unwrap().len(), 2);

    // Budgets, savings and predictions are accepted and ignored.
    store.put_budgets(c, &[], 0).unwrap();
    store.put_savings(c, &[], 0).unwrap();
    store.put_predictions(c, &[], 0).unwrap();
}

#[test]
fn tags_and_floats_read_back_as_written_with_and_without_gzip() {
    for gzip in [true, false] {
        let mut cfg = server::config("escape");
        cfg.gzip = gzip;
        let db = cfg.target().to_string();
        let store = InfluxStore::open(&cfg).unwrap();
        let w = hour_at(DAY0, 3);
        let mut a = window_rows("x", w, 1.0).remove(0);
        a.namespace = "we ird,ns=1 \"q\"".into();
        a.pod = "pod\nwith newline\\slash".into();
        a.cpu_cost = 1e-7;
        a.cpu_cost_adjustment = 0.0;
        a.total_cost = 1.5e300;
        let mut b = window_rows("x", w, 1.0).remove(1);
        b.total_cost = 1.0; // a whole number: still a float field
        store
            .client()
            .send(&encode_allocations("clu ster,=x", &[a.clone(), b]))
            .unwrap();
        let v = server::raw_query(
            &db,
            "SELECT cpu_cost, total_cost, namespace, pod FROM cost_allocations \
             WHERE cluster = 'clu ster,=x' ORDER BY time",
        );
        let values = v["results"][0]["series"][0]["values"].as_array().unwrap();
        assert_eq!(values.len(), 2, "{v}");
        let row = values
            .iter()
            .find(|r| r[4] == "pod with newline/slash")
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(row[1].as_f64().unwrap(), 1e-7);
        assert_eq!(row[2].as_f64().unwrap(), 1.5e300);
        assert_eq!(row[3], "we ird,ns=1 \"q\"");
        assert_eq!(row[4], "pod with newline/slash");
        let types = server::raw_query(&db, "SHOW FIELD KEYS FROM cost_allocations");
        let fields = types["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap();
        assert!(fields.len() > 10);
        for f in fields {
            assert_eq!(f[1], "float", "{f}");
        }
        // The window total, through the store's own query, matches.
        let stats = store.window_total("clu ster,=x", w).unwrap();
        assert_eq!(stats.rows, 2);
        assert_eq!(stats.total_cost, 1.5e300 + 1.0);
    }
}

#[test]
fn live_costs_overwrite_per_cluster_namespace_and_instant() {
    let cfg = server::config("live");
    let db = cfg.target().to_string();
    let store = InfluxStore::open(&cfg).unwrap();
    let mut b = LineBatch::new();
    let rates = |total| LiveCostRates {
        cpu: total * 0.5,
        memory: total * 0.5,
        total,
        ..LiveCostRates::default()
    };
    for ts in [DAY0, DAY0 + 60] {
        b.push_live_cost("c", "shop", ts, &rates(1.0));
        b.push_live_cost("c", "", ts, &rates(3.0));
    }
    store.client().send(b.as_bytes()).unwrap();
    // Sending the same instant again with a new rate replaces it.
    b.clear();
    b.push_live_cost("c", "shop", DAY0 + 60, &rates(2.0));
    store.client().send(b.as_bytes()).unwrap();
    store.client().send(b.as_bytes()).unwrap();
    let v = server::raw_query(
        &db,
        &format!(
            "SELECT sum(total_rate), count(total_rate) FROM live_costs WHERE namespace = 'shop' \
             AND time >= {DAY0}s AND time < {}s",
            DAY0 + HOUR
        ),
    );
    let row = &v["results"][0]["series"][0]["values"][0];
    assert_eq!(row[1].as_f64().unwrap(), 3.0, "{v}");
    assert_eq!(row[2].as_f64().unwrap(), 2.0, "{v}");
}

#[test]
fn a_crashed_commit_leaves_no_checkpoint_and_the_next_write_replaces_its_rows() {
    let store = server::store("crash");
    let c = "crash";
    let w = hour_at(DAY0, 7);
    // What a commit that died after sending its rows leaves: the pending marker and rows.
    let stale = window_rows(c, w, 9.0);
    let marker = format!(
        "kubecost_bridge_sync,cluster={c},endpoint=allocation window_end={}i,resolution=\"1h\",\
         state=\"pending\" {}\n",
        w.end, w.start
    );
    store.client().send(marker.as_bytes()).unwrap();
    store.client().send(&encode_allocations(c, &stale)).unwrap();
    assert!(
        store
            .synced_windows(c, Endpoint::Allocation, 0)
            .unwrap()
            .is_empty(),
        "a pending marker is not a checkpoint"
    );
    assert!(
        store
            .checkpoints(c, Endpoint::Allocation)
            .unwrap()
            .is_empty()
    );

    // The next extraction has fewer rows: the crashed attempt's extra rows must go.
    let fresh: Vec<_> = window_rows(c, w, 1.0).into_iter().take(3).collect();
    let mut writer = store.begin_allocations(c, w, Resolution::Hour).unwrap();
    writer.write(&fresh).unwrap();
    writer
        .commit(&checkpoint(c, w, Resolution::Hour, &fresh))
        .unwrap();
    let t = store.window_total(c, w).unwrap();
    assert_eq!(t.rows, 3);
    assert!(close(t.total_cost, sum_total(&fresh)));
    assert_eq!(
        store.synced_windows(c, Endpoint::Allocation, 0).unwrap(),
        vec![(w, Resolution::Hour)]
    );

    // An hour rewritten inside a committed day also replaces that hour's rows.
    let d = day_at(DAY0, 3);
    put(&store, c, d, Resolution::Day, 1.0);
    let h = hour_at(d.start, 0);
    assert_eq!(h.start, d.start);
    let t = put(&store, c, h, Resolution::Hour, 2.0);
    assert!(close(store.window_total(c, h).unwrap().total_cost, t));
}

#[test]
fn rows_that_influxdb_would_store_as_one_point_are_refused() {
    let store = server::store("dup");
    let c = "dup";
    let w = hour_at(DAY0, 0);
    let rows = window_rows(c, w, 1.0);
    let mut writer = store.begin_allocations(c, w, Resolution::Hour).unwrap();
    writer.write(&rows).unwrap();
    let e = writer.write(&rows[..1]).unwrap_err();
    assert!(e.message.contains("written twice"), "{e}");
    assert!(
        writer
            .commit(&checkpoint(c, w, Resolution::Hour, &rows))
            .is_err()
    );
    assert_eq!(store.window_total(c, w).unwrap().rows, 0);
    // The same name in another hour of a daily window is another point.
    let d = day_at(DAY0, 0);
    let mut both = window_rows(c, hour_at(DAY0, 0), 1.0);
    both.extend(window_rows(c, hour_at(DAY0, 1), 1.0));
    let mut writer = store.begin_allocations(c, d, Resolution::Day).unwrap();
    writer.write(&both).unwrap();
    let stats = writer
        .commit(&checkpoint(c, d, Resolution::Day, &both))
        .unwrap();
    assert_eq!(stats.rows, both.len() as u64);
    assert_eq!(store.window_total(c, d).unwrap().rows, both.len() as u64);
}
