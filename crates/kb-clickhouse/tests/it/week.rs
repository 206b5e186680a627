//! A week of simulator data (kb-sim served in-process, parsed by kb-kubecost) written to the
//! ClickHouse store and to the SQLite store reads back with the same totals per window; a
//! second extraction changes nothing; superseded and abandoned rows are removed in the
//! background.

use std::time::{Duration, Instant};

use kb_clickhouse::ClickHouseStore;
use kb_conformance::{checkpoint, compare_costs};
use kb_core::{Allocation, Resolution, Window};
use kb_pipeline::ports::{CostQuery, CostReader, CostStore, Granularity, GroupBy, WindowWriter};
use kb_sim::{Fleet, SimConfig};
use kb_store::SqliteStore;

use crate::server;

/// 2024-05-27T00:00:00Z, a Monday: the week written is the 7 days from here.
const WEEK: i64 = kb_conformance::sim::SIM_WEEK;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn sim_config() -> SimConfig {
    SimConfig {
        clusters: 2,
        pods: 30,
        seed: 7,
        ..SimConfig::default()
    }
}

/// Writes the week: days 0..5 as daily windows of hourly rows, day 6 hour by hour.
fn write_week<S: CostStore>(store: &S, week: &[(String, Window, Vec<Allocation>)]) {
    for (cluster, day, rows) in week {
        if day.start < WEEK + 6 * DAY {
            write_window(store, cluster, *day, Resolution::Day, rows);
        } else {
            for h in 0..24 {
                let w = Window::new(day.start + h * HOUR, day.start + (h + 1) * HOUR).unwrap();
                let hour_rows: Vec<Allocation> = rows
                    .iter()
                    .filter(|a| w.contains(&a.window))
                    .cloned()
                    .collect();
                assert!(!hour_rows.is_empty());
                write_window(store, cluster, w, Resolution::Hour, &hour_rows);
            }
        }
    }
}

fn write_window<S: CostStore>(
    store: &S,
    cluster: &str,
    w: Window,
    res: Resolution,
    rows: &[Allocation],
) {
    let mut writer = store.begin_allocations(cluster, w, res).unwrap();
    for chunk in rows.chunks(333) {
        writer.write(chunk).unwrap();
    }
    let stats = writer.commit(&checkpoint(cluster, w, res, rows)).unwrap();
    assert_eq!(stats.rows, rows.len() as u64, "{cluster} {w}");
}

fn query(cluster: &str, granularity: Granularity, group_by: GroupBy) -> CostQuery {
    CostQuery {
        cluster: Some(cluster.to_string()),
        namespace: None,
        range: Window::new(WEEK, WEEK + 7 * DAY).unwrap(),
        granularity: Some(granularity),
        group_by,
        include_idle: true,
    }
}

/// Compares both stores per hour (by namespace), per day (by pod), and each hour's total with
/// the simulator's ground truth.
fn compare(ch: &ClickHouseStore, sqlite: &SqliteStore, fleet: &Fleet, clusters: &[String]) {
    for cluster in clusters {
        for (granularity, group_by) in [
            (Granularity::Hour, GroupBy::Namespace),
            (Granularity::Hour, GroupBy::Cluster),
            (Granularity::Day, GroupBy::Pod),
            (Granularity::Month, GroupBy::Controller),
        ] {
            let q = query(cluster, granularity, group_by);
            let want = sqlite.costs(&q).unwrap();
            let got = ch.costs(&q).unwrap();
            assert!(!want.is_empty());
            if let Err(e) = compare_costs(
                &format!("{cluster} {granularity:?} {group_by:?}"),
                &got,
                &want,
            ) {
                panic!("clickhouse and sqlite disagree: {e}");
            }
        }
        let hourly = ch
            .costs(&query(cluster, Granularity::Hour, GroupBy::Cluster))
            .unwrap();
        assert_eq!(hourly.len(), 7 * 24, "every hour of the week has rows");
        for row in &hourly {
            let w = Window::new(row.bucket_start, row.bucket_start + HOUR).unwrap();
            let truth = fleet.allocation_total(cluster, w);
            assert!(
                kb_core::cost::approx_eq(row.total_cost, truth, 1e-9, 1e-9),
                "{cluster} {w}: stored {} but the simulator says {truth}",
                row.total_cost
            );
        }
        for d in 0..7 {
            let day = Window::new(WEEK + d * DAY, WEEK + (d + 1) * DAY).unwrap();
            let a = ch.window_total(cluster, day).unwrap();
            let b = sqlite.window_total(cluster, day).unwrap();
            assert_eq!(a.rows, b.rows, "{cluster} {day}");
            assert!(
                kb_conformance::close(a.total_cost, b.total_cost),
                "{cluster} {day}: {a:?} {b:?}"
            );
        }
    }
}

fn scalar(sql: &str) -> f64 {
    server::raw(sql)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Waits until the background mutations have removed every row the views do not show.
fn wait_physical_equals_visible(db: &str) {
    let started = Instant::now();
    loop {
        let physical = scalar(&format!("SELECT count() FROM `{db}`.allocations"));
        let visible = scalar(&format!("SELECT count() FROM `{db}`.allocations_current"));
        if physical == visible {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "superseded rows still stored after 120 s: {physical} stored, {visible} visible"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_week_of_simulator_data_matches_the_sqlite_store_and_rewrites_change_nothing() {
    let fleet = Fleet::new(&sim_config());
    let clusters = fleet.cluster_names();
    let week = kb_conformance::sim::sim_week(&sim_config(), &clusters);
    let rows: usize = week.iter().map(|(_, _, r)| r.len()).sum();
    assert!(rows > 5_000, "{rows} rows");

    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("kb.db")).unwrap();
    write_week(&sqlite, &week);

    let mut cfg = server::config("week");
    cfg.batch_rows = 500;
    let db = cfg.database.clone();
    let ch = ClickHouseStore::open(&cfg).unwrap();
    write_week(&ch, &week);
    compare(&ch, &sqlite, &fleet, &clusters);

    // Every view and table agrees with the store's own totals.
    let total: f64 = clusters
        .iter()
        .flat_map(|c| {
            ch.costs(&query(c, Granularity::Day, GroupBy::Cluster))
                .unwrap()
        })
        .map(|r| r.total_cost)
        .sum();
    let check_views = || {
        for view in ["allocations_current", "cost_summaries_current"] {
            let v = scalar(&format!("SELECT sum(total_cost) FROM `{db}`.{view}"));
            assert!(
                kb_conformance::close(v, total),
                "{view} sums to {v}, the store to {total}"
            );
        }
        let n = scalar(&format!(
            "SELECT sum(rows) FROM `{db}`.cost_summaries_current"
        ));
        assert_eq!(n as usize, rows);
    };
    check_views();

    // A second extraction of the whole week: nothing changes, in any query.
    write_week(&ch, &week);
    compare(&ch, &sqlite, &fleet, &clusters);
    check_views();
    let checkpoints = ch
        .checkpoints(&clusters[0], kb_pipeline::ports::Endpoint::Allocation)
        .unwrap();
    assert_eq!(checkpoints.len(), 6 + 24);

    // A writer abandoned after sending a batch: invisible at once, deleted in the background.
    let (cluster, day, day_rows) = &week[0];
    let mut writer = ch
        .begin_allocations(cluster, *day, Resolution::Day)
        .unwrap();
    writer.write(day_rows).unwrap();
    writer.write(day_rows).unwrap();
    drop::<Box<dyn WindowWriter>>(writer);
    compare(&ch, &sqlite, &fleet, &clusters);
    wait_physical_equals_visible(&db);
    check_views();

    // Merging every table's parts changes no answer.
    ch.optimize().unwrap();
    compare(&ch, &sqlite, &fleet, &clusters);
    check_views();
}
