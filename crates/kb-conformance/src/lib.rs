//! The store conformance suite: checks that a backend keeps the contract of the pipeline's
//! ports ([`kb_pipeline::ports::CostStore`] and [`kb_pipeline::ports::CostReader`]).
//!
//! Every backend's integration tests call [`run_all`] (or single checks) on a fresh, empty
//! store, together with an [`Inspect`] view for what the ports cannot read back (checkpoints
//! with their counts, budgets, savings, predictions, asset totals). The checks cover:
//!
//! - [`window_roundtrip`]: a window written in chunks and committed reads back with the right
//!   totals per window, cluster, namespace, controller and pod, for every granularity, with and
//!   without idle rows, filtered by cluster and namespace; checkpoints, `synced_windows` and
//!   `clusters` agree.
//! - [`rewrite_replaces`]: writing a window again replaces it (no double count), also with
//!   fewer rows; a daily window replaces the hours of its day and their checkpoints.
//! - [`uncommitted_writes_leave_nothing`]: a writer dropped without commit, a failed write and
//!   a mismatched checkpoint leave the store as it was, without a checkpoint.
//! - [`reconciliations`]: one result per cluster, endpoint and window; a newer one replaces.
//! - [`cleanup_removes_old_rows`]: `cleanup(before)` removes allocation and asset rows whose
//!   window ended by `before`, returns how many, and keeps newer rows and every checkpoint.
//! - [`small_tables`]: assets, budgets, savings and predictions are put and replaced.
//!
//! Each check uses its own cluster name and its own time range, so they can share one store.
//! Checks return `Err` with a message naming what differed. Amounts are compared with a
//! relative tolerance of 1e-9 (backends may sum in a different order).
//!
//! This is test-support code: it unwraps and panics on setup failures on purpose, hence the
//! crate-level `allow` of `clippy::panic`, `clippy::unwrap_used` and `clippy::expect_used`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod insights;
pub mod sim;
pub mod tls;

use std::collections::BTreeMap;

use chrono::{Datelike, TimeZone, Utc};
use kb_core::{
    Allocation, Asset, AssetType, Budget, MonthlyCost, Resolution, SavingsKind,
    SavingsRecommendation, SpecCostPrediction, Window,
};
use kb_pipeline::ports::{
    Checkpoint, CostQuery, CostReader, CostRow, CostStore, Endpoint, Granularity, GroupBy,
    Reconciliation, StoreError, WindowStats,
};

/// What the conformance checks read besides the ports (each backend has these as inherent
/// methods; a test wraps its store to implement this).
pub trait Inspect {
    /// Every checkpoint of a cluster and endpoint, oldest window first.
    fn checkpoints(&self, cluster: &str, endpoint: Endpoint)
    -> Result<Vec<Checkpoint>, StoreError>;
    /// The cluster's budgets, in the order they were put.
    fn budgets(&self, cluster: &str) -> Result<Vec<Budget>, StoreError>;
    /// The cluster's savings recommendations, largest saving first.
    fn savings(&self, cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError>;
    /// The cluster's spec-cost predictions, in the order they were put.
    fn predictions(&self, cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError>;
    /// `sum(total_cost)` of the cluster's assets inside the window.
    fn asset_total(&self, cluster: &str, window: Window) -> Result<f64, StoreError>;
}

/// The outcome of a check.
pub type Check = Result<(), String>;

/// 2023-11-14T00:00:00Z: the first day of the checks' data.
pub const DAY0: i64 = 1_699_920_000;
/// Seconds in an hour.
pub const HOUR: i64 = 3_600;
/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Runs every check on one store and returns every failure (`Err` lists them all).
pub fn run_all<S: CostStore + CostReader, I: Inspect>(store: &S, inspect: &I) -> Check {
    let checks: [(&str, Check); 6] = [
        ("window_roundtrip", window_roundtrip(store, inspect)),
        ("rewrite_replaces", rewrite_replaces(store, inspect)),
        (
            "uncommitted_writes_leave_nothing",
            uncommitted_writes_leave_nothing(store, inspect),
        ),
        ("reconciliations", reconciliations(store)),
        (
            "cleanup_removes_old_rows",
            cleanup_removes_old_rows(store, inspect),
        ),
        ("small_tables", small_tables(store, inspect)),
    ];
    let failures: Vec<String> = checks
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The hour `h` of the check's base day.
pub fn hour_at(base: i64, h: i64) -> Window {
    Window::new(base + h * HOUR, base + (h + 1) * HOUR).unwrap()
}

/// The day `d` after the check's base day.
pub fn day_at(base: i64, d: i64) -> Window {
    Window::new(base + d * DAY, base + (d + 1) * DAY).unwrap()
}

/// A workload row with every cost field set to a distinct, seed-dependent value.
pub fn alloc(
    cluster: &str,
    window: Window,
    ns: &str,
    ctrl: &str,
    pod: &str,
    seed: f64,
) -> Allocation {
    let mut a = Allocation {
        name: format!("{cluster}/{ns}/{pod}/app"),
        cluster: format!("kubecost-{cluster}"),
        node: "node-1".into(),
        namespace: ns.into(),
        controller_kind: "deployment".into(),
        controller: ctrl.into(),
        pod: pod.into(),
        container: "app".into(),
        provider_id: "aws:///i-1".into(),
        labels: vec![
            ("app".into(), ctrl.into()),
            ("quote".into(), "it's \"x\"\\".into()),
        ],
        annotations: vec![("note".into(), "x\u{1f}y\nz".into())],
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
    a.ram_byte_request_average = 2.0e9;
    a.ram_byte_usage_average = 1.0e9 * (1.0 + seed.sin().abs());
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
    a.shared_cost = 0.0013 * seed;
    a.external_cost = 0.0017;
    a.total_cost = kb_core::cost::allocation_total(&a);
    a.total_efficiency = kb_core::cost::efficiency(&a).total;
    a.null_fields = 2;
    a
}

/// Kubecost's cluster idle row.
pub fn idle(cluster: &str, window: Window, cost: f64) -> Allocation {
    let mut a = Allocation {
        name: kb_core::IDLE.into(),
        cluster: format!("kubecost-{cluster}"),
        window,
        start: window.start,
        end: window.end,
        minutes: 60.0,
        ..Allocation::default()
    };
    a.cpu_cost = cost * 0.6;
    a.ram_cost = cost * 0.4;
    a.total_cost = cost;
    a.total_efficiency = 0.0;
    a
}

/// A window of rows: 2 namespaces × 2 controllers × 2 pods, plus an idle row.
pub fn window_rows(cluster: &str, window: Window, scale: f64) -> Vec<Allocation> {
    let mut rows = Vec::new();
    let mut seed = 1.0;
    for ns in ["alpha", "beta"] {
        for ctrl in ["api", "worker"] {
            for p in 0..2 {
                rows.push(alloc(
                    cluster,
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
    rows.push(idle(cluster, window, 0.5 * scale));
    rows
}

/// Sum of `total_cost`.
pub fn sum_total(rows: &[Allocation]) -> f64 {
    rows.iter().map(|a| a.total_cost).sum()
}

/// The checkpoint the extractor would commit with these rows.
pub fn checkpoint(
    cluster: &str,
    window: Window,
    resolution: Resolution,
    rows: &[Allocation],
) -> Checkpoint {
    Checkpoint {
        cluster: cluster.into(),
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
pub fn put_window<S: CostStore>(
    store: &S,
    cluster: &str,
    window: Window,
    resolution: Resolution,
    rows: &[Allocation],
) -> Result<WindowStats, String> {
    let mut w = store
        .begin_allocations(cluster, window, resolution)
        .map_err(|e| format!("begin {window}: {e}"))?;
    let (a, b) = rows.split_at(rows.len() / 2);
    w.write(a).map_err(|e| format!("write {window}: {e}"))?;
    w.write(b).map_err(|e| format!("write {window}: {e}"))?;
    w.commit(&checkpoint(cluster, window, resolution, rows))
        .map_err(|e| format!("commit {window}: {e}"))
}

/// Returns true when `a` and `b` agree to 1e-9 relative (or 1e-12 absolute).
pub fn close(a: f64, b: f64) -> bool {
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= 1e-12 || (a - b).abs() / scale <= 1e-9
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Check {
    if cond { Ok(()) } else { Err(msg()) }
}

fn store_err(what: &str) -> impl Fn(StoreError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

// ---------------------------------------------------------------------------------------------
// Reference implementation of the cost query
// ---------------------------------------------------------------------------------------------

/// Answers a cost query over rows kept in memory, `(bridge cluster, row)`, the way the port's
/// docs define it: the reference every backend's `costs` is compared with.
pub fn expected_costs(rows: &[(String, Allocation)], q: &CostQuery) -> Vec<CostRow> {
    type Key = (i64, String, String, String, String, String);
    let mut groups: BTreeMap<Key, (CostRow, f64, f64)> = BTreeMap::new();
    for (cluster, a) in rows {
        let start = a.window.start;
        if start < q.range.start || start >= q.range.end {
            continue;
        }
        if q.cluster.as_ref().is_some_and(|c| c != cluster) {
            continue;
        }
        if q.namespace.as_ref().is_some_and(|n| *n != a.namespace) {
            continue;
        }
        let idle = a.is_idle();
        if idle && !q.include_idle {
            continue;
        }
        let bucket = match q.granularity {
            None => q.range.start,
            Some(Granularity::Hour) => start.div_euclid(HOUR) * HOUR,
            Some(Granularity::Day) => start.div_euclid(DAY) * DAY,
            Some(Granularity::Month) => {
                let t = Utc.timestamp_opt(start, 0).unwrap();
                Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                    .unwrap()
                    .timestamp()
            }
        };
        let (ns, ctrl, pod) = match q.group_by {
            GroupBy::Cluster => (false, false, false),
            GroupBy::Namespace => (true, false, false),
            GroupBy::Controller => (true, true, false),
            GroupBy::Pod => (true, true, true),
        };
        let pick = |on: bool, v: &str| if on { v.to_string() } else { String::new() };
        // The map's order is the port's order: bucket, cluster, namespace, controller name,
        // controller kind, pod.
        let key = (
            bucket,
            cluster.clone(),
            pick(ns, &a.namespace),
            pick(ctrl, &a.controller),
            pick(ctrl, &a.controller_kind),
            pick(pod, &a.pod),
        );
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            (
                CostRow {
                    bucket_start: bucket,
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
        r.cpu_cost += a.cpu_cost + a.cpu_cost_adjustment;
        r.memory_cost += a.ram_cost + a.ram_cost_adjustment;
        r.gpu_cost += a.gpu_cost + a.gpu_cost_adjustment;
        r.storage_cost += a.pv_cost + a.pv_cost_adjustment;
        r.network_cost += a.network_cost + a.network_cost_adjustment;
        r.load_balancer_cost += a.load_balancer_cost + a.load_balancer_cost_adjustment;
        r.shared_cost += a.shared_cost;
        r.external_cost += a.external_cost;
        if idle {
            r.idle_cost += a.total_cost;
        } else {
            let w =
                (a.cpu_cost + a.cpu_cost_adjustment + a.ram_cost + a.ram_cost_adjustment).max(0.0);
            entry.1 += a.total_efficiency * w;
            entry.2 += w;
        }
        r.total_cost += a.total_cost;
        r.rows += 1;
    }
    groups
        .into_values()
        .map(|(mut r, num, den)| {
            r.efficiency_score = if den > 0.0 { num / den } else { 0.0 };
            r
        })
        .collect()
}

/// Compares cost rows: same groups in the same order, amounts within tolerance.
pub fn compare_costs(what: &str, got: &[CostRow], want: &[CostRow]) -> Check {
    ensure(got.len() == want.len(), || {
        format!(
            "{what}: {} rows, expected {}\n got: {got:#?}\nwant: {want:#?}",
            got.len(),
            want.len()
        )
    })?;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let key = |r: &CostRow| {
            (
                r.bucket_start,
                r.cluster.clone(),
                r.namespace.clone(),
                r.controller_kind.clone(),
                r.controller.clone(),
                r.pod.clone(),
                r.rows,
            )
        };
        ensure(key(g) == key(w), || {
            format!("{what}: row {i} is {:?}, expected {:?}", key(g), key(w))
        })?;
        let amounts = |r: &CostRow| {
            [
                ("cpu_cost", r.cpu_cost),
                ("memory_cost", r.memory_cost),
                ("gpu_cost", r.gpu_cost),
                ("storage_cost", r.storage_cost),
                ("network_cost", r.network_cost),
                ("load_balancer_cost", r.load_balancer_cost),
                ("shared_cost", r.shared_cost),
                ("external_cost", r.external_cost),
                ("idle_cost", r.idle_cost),
                ("total_cost", r.total_cost),
                ("efficiency_score", r.efficiency_score),
            ]
        };
        for ((name, gv), (_, wv)) in amounts(g).into_iter().zip(amounts(w)) {
            ensure(close(gv, wv), || {
                format!("{what}: row {i} {:?} {name} is {gv}, expected {wv}", key(g))
            })?;
        }
    }
    Ok(())
}

fn query(
    cluster: Option<&str>,
    range: Window,
    granularity: Option<Granularity>,
    group_by: GroupBy,
    include_idle: bool,
) -> CostQuery {
    CostQuery {
        cluster: cluster.map(str::to_string),
        namespace: None,
        range,
        granularity,
        group_by,
        include_idle,
    }
}

/// Checks every granularity × grouping × idle combination (and namespace filters) against
/// the reference implementation.
pub fn check_all_queries<R: CostReader>(
    what: &str,
    reader: &R,
    rows: &[(String, Allocation)],
    cluster: Option<&str>,
    range: Window,
) -> Check {
    for granularity in [
        None,
        Some(Granularity::Hour),
        Some(Granularity::Day),
        Some(Granularity::Month),
    ] {
        for group_by in [
            GroupBy::Cluster,
            GroupBy::Namespace,
            GroupBy::Controller,
            GroupBy::Pod,
        ] {
            for include_idle in [true, false] {
                let q = query(cluster, range, granularity, group_by, include_idle);
                let got = reader
                    .costs(&q)
                    .map_err(store_err(&format!("{what}: costs {q:?}")))?;
                compare_costs(
                    &format!("{what}: {granularity:?} {group_by:?} idle={include_idle}"),
                    &got,
                    &expected_costs(rows, &q),
                )?;
            }
        }
    }
    for ns in ["alpha", "beta", "nope"] {
        let mut q = query(cluster, range, Some(Granularity::Hour), GroupBy::Pod, true);
        q.namespace = Some(ns.into());
        let got = reader
            .costs(&q)
            .map_err(store_err(&format!("{what}: costs {q:?}")))?;
        compare_costs(
            &format!("{what}: namespace {ns}"),
            &got,
            &expected_costs(rows, &q),
        )?;
    }
    Ok(())
}

fn tag(cluster: &str, rows: &[Allocation]) -> Vec<(String, Allocation)> {
    rows.iter()
        .map(|a| (cluster.to_string(), a.clone()))
        .collect()
}

fn check_stats(what: &str, got: WindowStats, rows: &[Allocation]) -> Check {
    ensure(
        got.rows == rows.len() as u64 && close(got.total_cost, sum_total(rows)),
        || {
            format!(
                "{what}: commit returned {got:?}, expected {} rows totalling {}",
                rows.len(),
                sum_total(rows)
            )
        },
    )
}

fn total_in<R: CostReader>(reader: &R, cluster: &str, range: Window) -> Result<(u64, f64), String> {
    let rows = reader
        .costs(&query(Some(cluster), range, None, GroupBy::Cluster, true))
        .map_err(store_err("costs"))?;
    Ok((
        rows.iter().map(|r| r.rows).sum(),
        rows.iter().map(|r| r.total_cost).sum(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// Windows written and committed read back with the right totals in every query shape.
pub fn window_roundtrip<S: CostStore + CostReader, I: Inspect>(store: &S, inspect: &I) -> Check {
    let c = "conf-roundtrip";
    let other = "conf-roundtrip-b";
    let base = DAY0;
    // Two hours of one day, and the first hour of the next month (2023-12-01).
    let dec1 = Window::new(1_701_388_800, 1_701_388_800 + HOUR).unwrap();
    let windows = [hour_at(base, 0), hour_at(base, 1), dec1];
    let mut all = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let rows = window_rows(c, *w, 1.0 + i as f64);
        let stats = put_window(store, c, *w, Resolution::Hour, &rows)?;
        check_stats(&format!("window {w}"), stats, &rows)?;
        all.extend(tag(c, &rows));
    }
    // A second cluster in the same hour: grouping and the cluster filter keep them apart.
    let other_rows = window_rows(other, hour_at(base, 1), 7.0);
    put_window(
        store,
        other,
        hour_at(base, 1),
        Resolution::Hour,
        &other_rows,
    )?;
    all.extend(tag(other, &other_rows));

    let range = Window::new(base, dec1.end + DAY).unwrap();
    check_all_queries("all clusters", store, &all, None, range)?;
    check_all_queries("one cluster", store, &all, Some(c), range)?;
    // A range starting inside the data keeps only rows whose window starts inside it.
    let late = Window::new(hour_at(base, 1).start, dec1.start).unwrap();
    check_all_queries("partial range", store, &all, Some(c), late)?;

    let synced = store
        .synced_windows(c, Endpoint::Allocation, 0)
        .map_err(store_err("synced_windows"))?;
    let want: Vec<(Window, Resolution)> = windows.iter().map(|w| (*w, Resolution::Hour)).collect();
    ensure(synced == want, || {
        format!("synced_windows: {synced:?}, expected {want:?}")
    })?;
    let since = store
        .synced_windows(c, Endpoint::Allocation, hour_at(base, 1).end)
        .map_err(store_err("synced_windows since"))?;
    ensure(since == vec![(dec1, Resolution::Hour)], || {
        format!("synced_windows since the second hour's end: {since:?}")
    })?;
    let assets = store
        .synced_windows(c, Endpoint::Assets, 0)
        .map_err(store_err("synced_windows assets"))?;
    ensure(assets.is_empty(), || {
        format!("no asset window was written, got {assets:?}")
    })?;

    let cps = inspect
        .checkpoints(c, Endpoint::Allocation)
        .map_err(store_err("checkpoints"))?;
    ensure(cps.len() == 3, || format!("checkpoints: {cps:?}"))?;
    let rows0 = window_rows(c, windows[0], 1.0);
    let want0 = checkpoint(c, windows[0], Resolution::Hour, &rows0);
    ensure(
        cps[0].window == want0.window
            && cps[0].resolution == want0.resolution
            && cps[0].synced_at == want0.synced_at
            && cps[0].rows == want0.rows
            && cps[0].null_fields == want0.null_fields
            && close(cps[0].response_total_cost, want0.response_total_cost)
            && cps[0].cluster == c
            && cps[0].endpoint == Endpoint::Allocation,
        || format!("checkpoint {:?}, expected {want0:?}", cps[0]),
    )?;

    let clusters = store.clusters().map_err(store_err("clusters"))?;
    ensure(clusters.contains(&(c.to_string(), dec1.end)), || {
        format!("clusters {clusters:?} lacks ({c}, {})", dec1.end)
    })?;
    ensure(
        clusters.contains(&(other.to_string(), hour_at(base, 1).end)),
        || format!("clusters {clusters:?} lacks {other}"),
    )?;
    let mut sorted = clusters.clone();
    sorted.sort();
    ensure(sorted == clusters, || {
        format!("clusters are not sorted by name: {clusters:?}")
    })?;
    Ok(())
}

/// Writing a window again replaces it; a daily window replaces the hours of its day.
pub fn rewrite_replaces<S: CostStore + CostReader, I: Inspect>(store: &S, inspect: &I) -> Check {
    let c = "conf-rewrite";
    let base = DAY0 + 64 * DAY;
    let h0 = hour_at(base, 0);
    let range = Window::new(base, base + 3 * DAY).unwrap();
    let first = window_rows(c, h0, 1.0);
    let s1 = put_window(store, c, h0, Resolution::Hour, &first)?;
    let s2 = put_window(store, c, h0, Resolution::Hour, &first)?;
    ensure(
        s1.rows == s2.rows && close(s1.total_cost, s2.total_cost),
        || format!("same rows twice: {s1:?} then {s2:?}"),
    )?;
    check_all_queries(
        "rewritten with the same rows",
        store,
        &tag(c, &first),
        Some(c),
        range,
    )?;

    // A rewrite with different and fewer rows replaces, not adds.
    let mut fewer: Vec<Allocation> = window_rows(c, h0, 2.0).into_iter().take(3).collect();
    fewer.push(idle(c, h0, 0.25));
    let s3 = put_window(store, c, h0, Resolution::Hour, &fewer)?;
    check_stats("rewrite with fewer rows", s3, &fewer)?;
    check_all_queries(
        "rewritten with fewer rows",
        store,
        &tag(c, &fewer),
        Some(c),
        range,
    )?;
    let cps = inspect
        .checkpoints(c, Endpoint::Allocation)
        .map_err(store_err("checkpoints"))?;
    ensure(cps.len() == 1 && cps[0].rows == fewer.len() as u64, || {
        format!(
            "one checkpoint with {} rows expected, got {cps:?}",
            fewer.len()
        )
    })?;

    // Hours 0..4 of the base day and the first hour of the next day, then the daily window.
    let mut hours = Vec::new();
    for h in 0..4 {
        let rows = window_rows(c, hour_at(base, h), 1.0 + h as f64);
        put_window(store, c, hour_at(base, h), Resolution::Hour, &rows)?;
        hours.extend(tag(c, &rows));
    }
    let next = Window::new(base + DAY, base + DAY + HOUR).unwrap();
    let keep = window_rows(c, next, 3.0);
    put_window(store, c, next, Resolution::Hour, &keep)?;
    let mut before = hours.clone();
    before.extend(tag(c, &keep));
    check_all_queries(
        "four hours and the next day",
        store,
        &before,
        Some(c),
        range,
    )?;

    let day = day_at(base, 0);
    let daily = window_rows(c, day, 24.0);
    let sd = put_window(store, c, day, Resolution::Day, &daily)?;
    check_stats("daily window", sd, &daily)?;
    let mut after = tag(c, &daily);
    after.extend(tag(c, &keep));
    check_all_queries(
        "daily window replaced its hours",
        store,
        &after,
        Some(c),
        range,
    )?;
    let synced = store
        .synced_windows(c, Endpoint::Allocation, 0)
        .map_err(store_err("synced_windows"))?;
    ensure(
        synced == vec![(day, Resolution::Day), (next, Resolution::Hour)],
        || format!("after the daily window, synced_windows is {synced:?}"),
    )?;
    let cps = inspect
        .checkpoints(c, Endpoint::Allocation)
        .map_err(store_err("checkpoints"))?;
    ensure(
        cps.len() == 2 && cps[0].rows == daily.len() as u64 && cps[0].null_fields == 16,
        || format!("checkpoints after the daily window: {cps:?}"),
    )?;

    // The daily window rewritten as hourly rows inside it (pod-hour grain): still one copy.
    let mut hourly_in_day = Vec::new();
    for h in 0..24 {
        hourly_in_day.extend(window_rows(c, hour_at(base, h), 0.5));
    }
    let s = put_window(store, c, day, Resolution::Day, &hourly_in_day)?;
    check_stats("daily window of hourly rows", s, &hourly_in_day)?;
    let mut after = tag(c, &hourly_in_day);
    after.extend(tag(c, &keep));
    check_all_queries("daily window of hourly rows", store, &after, Some(c), range)?;
    Ok(())
}

/// Nothing changes without a commit: a dropped writer, a failed write, a bad checkpoint.
pub fn uncommitted_writes_leave_nothing<S: CostStore + CostReader, I: Inspect>(
    store: &S,
    inspect: &I,
) -> Check {
    let c = "conf-drop";
    let base = DAY0 + 128 * DAY;
    let h0 = hour_at(base, 0);
    let range = day_at(base, 0);

    // A fresh window dropped without commit.
    {
        let mut w = store
            .begin_allocations(c, h0, Resolution::Hour)
            .map_err(store_err("begin"))?;
        w.write(&window_rows(c, h0, 1.0))
            .map_err(store_err("write"))?;
        drop(w);
    }
    ensure(total_in(store, c, range)? == (0, 0.0), || {
        "a dropped writer left rows behind".into()
    })?;
    let synced = store
        .synced_windows(c, Endpoint::Allocation, 0)
        .map_err(store_err("synced_windows"))?;
    ensure(synced.is_empty(), || {
        format!("a dropped writer left a checkpoint: {synced:?}")
    })?;
    let cps = inspect
        .checkpoints(c, Endpoint::Allocation)
        .map_err(store_err("checkpoints"))?;
    ensure(cps.is_empty(), || {
        format!("checkpoints after drop: {cps:?}")
    })?;
    let clusters = store.clusters().map_err(store_err("clusters"))?;
    ensure(
        !clusters.iter().any(|(name, end)| name == c && *end != 0),
        || format!("a dropped writer made a synced cluster: {clusters:?}"),
    )?;

    // A committed window, then a rewrite that is dropped: the first version stays.
    let v1 = window_rows(c, h0, 1.0);
    put_window(store, c, h0, Resolution::Hour, &v1)?;
    {
        let mut w = store
            .begin_allocations(c, h0, Resolution::Hour)
            .map_err(store_err("begin"))?;
        w.write(&window_rows(c, h0, 5.0))
            .map_err(store_err("write"))?;
    }
    check_all_queries(
        "after a dropped rewrite",
        store,
        &tag(c, &v1),
        Some(c),
        range,
    )?;

    // A row outside the window fails the writer, and its commit fails too.
    {
        let mut w = store
            .begin_allocations(c, h0, Resolution::Hour)
            .map_err(store_err("begin"))?;
        w.write(&window_rows(c, h0, 6.0))
            .map_err(store_err("write"))?;
        let outside = window_rows(c, hour_at(base, 5), 6.0);
        ensure(w.write(&outside).is_err(), || {
            "a row outside the window was accepted".into()
        })?;
        let rows = window_rows(c, h0, 6.0);
        ensure(
            w.commit(&checkpoint(c, h0, Resolution::Hour, &rows))
                .is_err(),
            || "a failed writer committed".into(),
        )?;
    }
    check_all_queries("after a failed write", store, &tag(c, &v1), Some(c), range)?;

    // A checkpoint for another window or cluster is refused and changes nothing.
    for bad in [
        checkpoint(c, hour_at(base, 1), Resolution::Hour, &v1),
        checkpoint("someone-else", h0, Resolution::Hour, &v1),
    ] {
        let mut w = store
            .begin_allocations(c, h0, Resolution::Hour)
            .map_err(store_err("begin"))?;
        w.write(&window_rows(c, h0, 7.0))
            .map_err(store_err("write"))?;
        ensure(w.commit(&bad).is_err(), || {
            format!("a mismatched checkpoint was accepted: {bad:?}")
        })?;
    }
    check_all_queries("after bad checkpoints", store, &tag(c, &v1), Some(c), range)?;
    let synced = store
        .synced_windows(c, Endpoint::Allocation, 0)
        .map_err(store_err("synced_windows"))?;
    ensure(synced == vec![(h0, Resolution::Hour)], || {
        format!("synced_windows after refused commits: {synced:?}")
    })?;
    Ok(())
}

/// Reconciliations: one per cluster, endpoint and window, the newer replacing the older.
pub fn reconciliations<S: CostStore + CostReader>(store: &S) -> Check {
    let c = "conf-recon";
    let base = DAY0 + 192 * DAY;
    let rec = |endpoint, window, expected: f64, stored: f64, checked_at| Reconciliation {
        cluster: c.into(),
        endpoint,
        window,
        expected,
        stored,
        relative_error: kb_core::cost::relative_error(expected, stored),
        checked_at,
    };
    let (h0, h1) = (hour_at(base, 0), hour_at(base, 1));
    let writes = [
        rec(Endpoint::Allocation, h0, 10.0, 9.0, h0.end + 10),
        rec(Endpoint::Allocation, h0, 10.0, 10.0, h0.end + 20),
        rec(Endpoint::Allocation, h1, 5.5, 5.25, h1.end + 10),
        rec(Endpoint::Assets, h0, 3.0, 3.0, h0.end + 30),
    ];
    for r in &writes {
        store
            .record_reconciliation(r)
            .map_err(store_err("record_reconciliation"))?;
    }
    // Another cluster's result is not returned.
    let mut foreign = writes[0].clone();
    foreign.cluster = "conf-recon-other".into();
    store
        .record_reconciliation(&foreign)
        .map_err(store_err("record_reconciliation"))?;
    let got = store
        .reconciliations(c, day_at(base, 0))
        .map_err(store_err("reconciliations"))?;
    let want = vec![writes[1].clone(), writes[3].clone(), writes[2].clone()];
    ensure(got == want, || {
        format!("reconciliations {got:#?}\nexpected {want:#?}")
    })?;
    let only_first = store
        .reconciliations(c, Window::new(h0.start, h1.start).unwrap())
        .map_err(store_err("reconciliations"))?;
    ensure(
        only_first == vec![writes[1].clone(), writes[3].clone()],
        || format!("reconciliations of the first hour: {only_first:#?}"),
    )?;
    Ok(())
}

/// An asset of a type, with a cost.
pub fn asset(cluster: &str, window: Window, key: &str, asset_type: AssetType, cost: f64) -> Asset {
    Asset {
        key: key.into(),
        asset_type,
        window,
        start: window.start,
        end: window.end,
        minutes: window.hours() * 60.0,
        cluster: format!("kubecost-{cluster}"),
        name: key.into(),
        provider: "AWS".into(),
        provider_id: format!("i-{key}"),
        labels: vec![("zone".into(), "a".into())],
        node_type: "m5.large".into(),
        zone: "a".into(),
        cpu_cores: 2.0,
        cpu_cost: cost * 0.5,
        ram_cost: cost * 0.5,
        cost,
        total_cost: cost,
        ..Asset::default()
    }
}

fn asset_checkpoint(cluster: &str, window: Window, assets: &[Asset]) -> Checkpoint {
    Checkpoint {
        cluster: cluster.into(),
        endpoint: Endpoint::Assets,
        window,
        resolution: Resolution::Hour,
        synced_at: window.end + 60,
        rows: assets.len() as u64,
        response_total_cost: assets.iter().map(|a| a.total_cost).sum(),
        null_fields: 0,
    }
}

/// `cleanup(before)` removes allocation and asset rows that ended by `before`, and keeps the
/// newer rows and every checkpoint.
pub fn cleanup_removes_old_rows<S: CostStore + CostReader, I: Inspect>(
    store: &S,
    inspect: &I,
) -> Check {
    let c = "conf-cleanup";
    // 2001-06-01: older than every other check's data.
    let base = 991_353_600;
    let (old, new) = (hour_at(base, 0), hour_at(base, 1));
    let old_rows = window_rows(c, old, 1.0);
    let new_rows = window_rows(c, new, 2.0);
    put_window(store, c, old, Resolution::Hour, &old_rows)?;
    put_window(store, c, new, Resolution::Hour, &new_rows)?;
    let old_assets = vec![
        asset(c, old, "n1", AssetType::Node, 1.5),
        asset(c, old, "d1", AssetType::Disk, 0.25),
    ];
    let new_assets = vec![asset(c, new, "n1", AssetType::Node, 1.75)];
    store
        .put_assets(&old_assets, &asset_checkpoint(c, old, &old_assets))
        .map_err(store_err("put_assets"))?;
    store
        .put_assets(&new_assets, &asset_checkpoint(c, new, &new_assets))
        .map_err(store_err("put_assets"))?;

    let removed = store.cleanup(old.end).map_err(store_err("cleanup"))?;
    let want = (old_rows.len() + old_assets.len()) as u64;
    ensure(removed == want, || {
        format!("cleanup removed {removed} rows, expected {want}")
    })?;
    ensure(total_in(store, c, old)? == (0, 0.0), || {
        "old allocation rows survived cleanup".into()
    })?;
    check_all_queries(
        "after cleanup",
        store,
        &tag(c, &new_rows),
        Some(c),
        day_at(base, 0),
    )?;
    let old_assets_total = inspect
        .asset_total(c, old)
        .map_err(store_err("asset_total"))?;
    ensure(old_assets_total == 0.0, || {
        format!("old assets survived cleanup: {old_assets_total}")
    })?;
    let new_assets_total = inspect
        .asset_total(c, new)
        .map_err(store_err("asset_total"))?;
    ensure(close(new_assets_total, 1.75), || {
        format!("newer assets total {new_assets_total}, expected 1.75")
    })?;
    let synced = store
        .synced_windows(c, Endpoint::Allocation, 0)
        .map_err(store_err("synced_windows"))?;
    ensure(
        synced == vec![(old, Resolution::Hour), (new, Resolution::Hour)],
        || format!("cleanup must keep checkpoints, synced_windows is {synced:?}"),
    )?;
    let again = store.cleanup(old.end).map_err(store_err("cleanup"))?;
    ensure(again == 0, || format!("a second cleanup removed {again}"))?;
    Ok(())
}

fn budget(id: &str, limit: f64) -> Budget {
    Budget {
        id: id.into(),
        name: format!("budget {id}"),
        budget_type: "allocations".into(),
        values: vec![
            ("namespace".into(), vec!["alpha".into(), "beta".into()]),
            ("label:team".into(), vec!["x\"y".into()]),
        ],
        interval: "monthly".into(),
        interval_day: 1,
        spend_limit: limit,
        current_spend: limit / 3.0,
        window: Window::new(DAY0, DAY0 + 30 * DAY).unwrap(),
    }
}

fn saving(cluster: &str, kind: SavingsKind, target: &str, monthly: f64) -> SavingsRecommendation {
    SavingsRecommendation {
        kind,
        cluster: cluster.into(),
        namespace: "alpha".into(),
        controller_kind: "deployment".into(),
        controller: "api".into(),
        target: target.into(),
        monthly_savings: monthly,
        detail: format!("cpu 500m -> 120m ({target})"),
    }
}

fn prediction(ns: &str, rate: f64) -> SpecCostPrediction {
    let m = |k: f64| MonthlyCost {
        total_monthly_rate: rate * k,
        cpu_monthly_rate: rate * k * 0.6,
        ram_monthly_rate: rate * k * 0.4,
        gpu_monthly_rate: 0.0,
        monthly_cpu_core_hours: 730.0 * k,
        monthly_ram_byte_hours: 1.5e12 * k,
        monthly_gpu_hours: 0.1,
    };
    SpecCostPrediction {
        namespace: ns.into(),
        controller_kind: "deployment".into(),
        controller_name: "api".into(),
        cost_before: m(1.0),
        cost_after: m(1.5),
        cost_change: m(0.5),
    }
}

/// Assets, budgets, savings and predictions are put and replaced per cluster.
pub fn small_tables<S: CostStore + CostReader, I: Inspect>(store: &S, inspect: &I) -> Check {
    let c = "conf-lists";
    let c2 = "conf-lists-2";
    let base = DAY0 + 256 * DAY;

    // Assets: put, then replace the window with fewer.
    let day = day_at(base, 0);
    let a1 = vec![
        asset(c, day, "n1", AssetType::Node, 24.0),
        asset(c, day, "d1", AssetType::Disk, 1.25),
        asset(c, day, "lb", AssetType::LoadBalancer, 0.5),
    ];
    let s1 = store
        .put_assets(&a1, &asset_checkpoint(c, day, &a1))
        .map_err(store_err("put_assets"))?;
    ensure(s1.rows == 3 && close(s1.total_cost, 25.75), || {
        format!("put_assets returned {s1:?}")
    })?;
    let a2 = vec![asset(c, day, "n1", AssetType::Node, 20.0)];
    let s2 = store
        .put_assets(&a2, &asset_checkpoint(c, day, &a2))
        .map_err(store_err("put_assets"))?;
    ensure(s2.rows == 1 && close(s2.total_cost, 20.0), || {
        format!("replacing assets returned {s2:?}")
    })?;
    let total = inspect
        .asset_total(c, day)
        .map_err(store_err("asset_total"))?;
    ensure(close(total, 20.0), || {
        format!("asset total {total}, expected 20")
    })?;
    let synced = store
        .synced_windows(c, Endpoint::Assets, 0)
        .map_err(store_err("synced_windows"))?;
    ensure(synced == vec![(day, Resolution::Hour)], || {
        format!("asset synced_windows {synced:?}")
    })?;
    ensure(
        inspect
            .checkpoints(c, Endpoint::Assets)
            .map_err(store_err("checkpoints"))?
            .len()
            == 1,
        || "one asset checkpoint expected".into(),
    )?;
    let mut bad = asset_checkpoint(c, day, &a2);
    bad.endpoint = Endpoint::Allocation;
    ensure(store.put_assets(&a2, &bad).is_err(), || {
        "put_assets accepted an allocation checkpoint".into()
    })?;

    // Budgets.
    let b1 = vec![budget("b1", 100.0), budget("b2", 250.5)];
    store
        .put_budgets(c, &b1, base)
        .map_err(store_err("put_budgets"))?;
    store
        .put_budgets(c2, &[budget("other", 1.0)], base)
        .map_err(store_err("put_budgets"))?;
    let got = inspect.budgets(c).map_err(store_err("budgets"))?;
    ensure(got == b1, || format!("budgets {got:#?}\nexpected {b1:#?}"))?;
    let b2 = vec![budget("b3", 7.0)];
    store
        .put_budgets(c, &b2, base + 60)
        .map_err(store_err("put_budgets"))?;
    let got = inspect.budgets(c).map_err(store_err("budgets"))?;
    ensure(got == b2, || format!("replaced budgets {got:#?}"))?;
    store
        .put_budgets(c, &[], base + 120)
        .map_err(store_err("put_budgets"))?;
    let got = inspect.budgets(c).map_err(store_err("budgets"))?;
    ensure(got.is_empty(), || {
        format!("budgets after an empty put: {got:#?}")
    })?;
    let got = inspect.budgets(c2).map_err(store_err("budgets"))?;
    ensure(got == vec![budget("other", 1.0)], || {
        format!("another cluster's budgets changed: {got:#?}")
    })?;

    // Savings: read back largest saving first.
    let s = vec![
        saving(c, SavingsKind::RequestSizing, "app", 3.5),
        saving(c, SavingsKind::ClusterSizing, "", 120.0),
        saving(c, SavingsKind::AbandonedWorkload, "pod-1", 9.25),
    ];
    store
        .put_savings(c, &s, base)
        .map_err(store_err("put_savings"))?;
    let got = inspect.savings(c).map_err(store_err("savings"))?;
    let want = vec![s[1].clone(), s[2].clone(), s[0].clone()];
    ensure(got == want, || {
        format!("savings {got:#?}\nexpected {want:#?}")
    })?;
    let s2 = vec![saving(c, SavingsKind::RequestSizing, "db", 1.0)];
    store
        .put_savings(c, &s2, base + 60)
        .map_err(store_err("put_savings"))?;
    let got = inspect.savings(c).map_err(store_err("savings"))?;
    ensure(got == s2, || format!("replaced savings {got:#?}"))?;

    // Predictions: in the order put.
    let p = vec![prediction("alpha", 10.0), prediction("beta", 2.5)];
    store
        .put_predictions(c, &p, base)
        .map_err(store_err("put_predictions"))?;
    let got = inspect.predictions(c).map_err(store_err("predictions"))?;
    ensure(got == p, || {
        format!("predictions {got:#?}\nexpected {p:#?}")
    })?;
    store
        .put_predictions(c, &[], base + 60)
        .map_err(store_err("put_predictions"))?;
    let got = inspect.predictions(c).map_err(store_err("predictions"))?;
    ensure(got.is_empty(), || {
        format!("predictions after an empty put: {got:#?}")
    })?;

    let clusters = store.clusters().map_err(store_err("clusters"))?;
    ensure(clusters.iter().any(|(n, _)| n == c2), || {
        format!("a cluster with only budgets is not listed: {clusters:?}")
    })?;
    Ok(())
}

/// `n` synthetic allocation rows of cluster `bench` for `window`, the same pods every window
/// (400 per namespace, 20 per controller, 50 nodes): the rows the stores' insert benchmarks
/// write, so their figures compare.
pub fn bench_rows(window: kb_core::Window, n: usize) -> Vec<kb_core::Allocation> {
    (0..n)
        .map(|i| {
            let ns = i / 400;
            let ctrl = i / 20;
            let mut a = kb_core::Allocation {
                name: format!("bench/ns-{ns}/pod-{i}/c"),
                cluster: "bench".into(),
                node: format!("node-{}", i % 50),
                namespace: format!("ns-{ns}"),
                controller_kind: "deployment".into(),
                controller: format!("deploy-{ctrl}"),
                pod: format!("deploy-{ctrl}-{i}"),
                container: "app".into(),
                provider_id: format!("aws:///i-{}", i % 50),
                labels: vec![
                    ("app".into(), format!("deploy-{ctrl}")),
                    ("team".into(), format!("team-{}", ns % 7)),
                ],
                window,
                start: window.start,
                end: window.end,
                minutes: 60.0,
                ..kb_core::Allocation::default()
            };
            let f = (i % 97) as f64 * 0.001;
            a.cpu_cores = 0.5;
            a.cpu_core_request_average = 0.5;
            a.cpu_core_usage_average = 0.2 + f;
            a.cpu_core_hours = 0.5;
            a.cpu_cost = 0.01 + f;
            a.ram_bytes = 1.0e9;
            a.ram_byte_hours = 1.0e9;
            a.ram_cost = 0.005 + f;
            a.pv_cost = 0.001;
            a.network_cost = 0.0001;
            a.total_cost = a.cpu_cost + a.ram_cost + a.pv_cost + a.network_cost;
            a.total_efficiency = 0.4;
            a
        })
        .collect()
}

/// One timed window write of the insert benchmarks: `rows` of cluster `bench` into `window`
/// in writes of `chunk` rows, then the commit. Returns (seconds to the end of the commit,
/// seconds to the end of the last write, the committed window's stats).
pub fn timed_window_write(
    store: &dyn CostStore,
    window: kb_core::Window,
    rows: &[kb_core::Allocation],
    chunk: usize,
) -> Result<(f64, f64, WindowStats), StoreError> {
    let t = std::time::Instant::now();
    let mut w = store.begin_allocations("bench", window, Resolution::Hour)?;
    for part in rows.chunks(chunk.max(1)) {
        w.write(part)?;
    }
    let written = t.elapsed().as_secs_f64();
    let stats = w.commit(&Checkpoint {
        cluster: "bench".into(),
        endpoint: Endpoint::Allocation,
        window,
        resolution: Resolution::Hour,
        synced_at: window.end,
        rows: rows.len() as u64,
        response_total_cost: 0.0,
        null_fields: 0,
    })?;
    Ok((t.elapsed().as_secs_f64(), written, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_groups_and_orders() {
        let c = "c";
        let mut rows = tag(c, &window_rows(c, hour_at(DAY0, 0), 1.0));
        rows.extend(tag(c, &window_rows(c, hour_at(DAY0, 1), 2.0)));
        let q = query(
            None,
            day_at(DAY0, 0),
            Some(Granularity::Hour),
            GroupBy::Namespace,
            true,
        );
        let got = expected_costs(&rows, &q);
        // Per hour: the idle row's empty namespace, alpha, beta.
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].namespace, "");
        assert_eq!(got[1].namespace, "alpha");
        assert_eq!(got[3].bucket_start, DAY0 + HOUR);
        let total: f64 = got.iter().map(|r| r.total_cost).sum();
        assert!(close(total, rows.iter().map(|(_, a)| a.total_cost).sum()));
        let q = query(
            None,
            day_at(DAY0, 0),
            Some(Granularity::Month),
            GroupBy::Cluster,
            false,
        );
        let got = expected_costs(&rows, &q);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bucket_start, 1_698_796_800);
        assert_eq!(got[0].rows, 16);
        assert_eq!(got[0].idle_cost, 0.0);
        assert!(compare_costs("self", &got, &got).is_ok());
    }
}
