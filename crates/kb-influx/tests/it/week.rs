//! A week of simulator data (kb-sim served in-process, parsed by kb-kubecost) written to the
//! InfluxDB store and to the SQLite store reads back with the same totals per window; a
//! second extraction changes nothing; rows that disappear in a rewrite do not linger; a daily
//! window replaces the hours of its day.

use kb_conformance::{checkpoint, close, compare_costs};
use kb_core::{Allocation, Resolution, Window};
use kb_influx::InfluxStore;
use kb_pipeline::ports::{CostQuery, CostReader, CostStore, Endpoint, Granularity, GroupBy};
use kb_sim::{Fleet, SimConfig};
use kb_store::SqliteStore;

/// 2024-05-27T00:00:00Z, a Monday: the week written is the 7 days from here.
const WEEK: i64 = kb_conformance::sim::SIM_WEEK;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn sim_config() -> SimConfig {
    SimConfig {
        clusters: 2,
        pods: 30,
        seed: 11,
        ..SimConfig::default()
    }
}

fn hour_rows(rows: &[Allocation], w: Window) -> Vec<Allocation> {
    rows.iter()
        .filter(|a| w.contains(&a.window))
        .cloned()
        .collect()
}

/// Writes the week: days 0..5 as daily windows of hourly rows, day 6 hour by hour.
fn write_week<S: CostStore>(store: &S, week: &[(String, Window, Vec<Allocation>)]) {
    for (cluster, day, rows) in week {
        if day.start < WEEK + 6 * DAY {
            write_window(store, cluster, *day, Resolution::Day, rows);
        } else {
            for h in 0..24 {
                let w = Window::new(day.start + h * HOUR, day.start + (h + 1) * HOUR).unwrap();
                let hour = hour_rows(rows, w);
                assert!(!hour.is_empty());
                write_window(store, cluster, w, Resolution::Hour, &hour);
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
    assert!(
        close(stats.total_cost, kb_conformance::sum_total(rows)),
        "{cluster} {w}: {stats:?}"
    );
}

/// Compares both stores per hour and per day (`window_total`), in cost queries of several
/// shapes, and each hour's total with the simulator's ground truth.
fn compare(ix: &InfluxStore, sqlite: &SqliteStore, fleet: &Fleet, clusters: &[String]) {
    for cluster in clusters {
        for h in 0..7 * 24 {
            let w = Window::new(WEEK + h * HOUR, WEEK + (h + 1) * HOUR).unwrap();
            let a = ix.window_total(cluster, w).unwrap();
            let b = sqlite.window_total(cluster, w).unwrap();
            assert_eq!(a.rows, b.rows, "{cluster} {w}");
            assert!(
                close(a.total_cost, b.total_cost),
                "{cluster} {w}: {a:?} {b:?}"
            );
            let truth = fleet.allocation_total(cluster, w);
            assert!(
                kb_core::cost::approx_eq(a.total_cost, truth, 1e-9, 1e-9),
                "{cluster} {w}: stored {} but the simulator says {truth}",
                a.total_cost
            );
        }
        for d in 0..7 {
            let day = Window::new(WEEK + d * DAY, WEEK + (d + 1) * DAY).unwrap();
            let a = ix.window_total(cluster, day).unwrap();
            let b = sqlite.window_total(cluster, day).unwrap();
            assert_eq!(a.rows, b.rows, "{cluster} {day}");
            assert!(
                close(a.total_cost, b.total_cost),
                "{cluster} {day}: {a:?} {b:?}"
            );
        }
        for (granularity, group_by) in [
            (Granularity::Hour, GroupBy::Namespace),
            (Granularity::Hour, GroupBy::Cluster),
            (Granularity::Day, GroupBy::Pod),
            (Granularity::Month, GroupBy::Controller),
        ] {
            for include_idle in [true, false] {
                let q = CostQuery {
                    cluster: Some(cluster.clone()),
                    namespace: None,
                    range: Window::new(WEEK, WEEK + 7 * DAY).unwrap(),
                    granularity: Some(granularity),
                    group_by,
                    include_idle,
                };
                let want = sqlite.costs(&q).unwrap();
                let got = ix.costs(&q).unwrap();
                assert!(!want.is_empty());
                if let Err(e) = compare_costs(
                    &format!("{cluster} {granularity:?} {group_by:?} idle={include_idle}"),
                    &got,
                    &want,
                ) {
                    panic!("influxdb and sqlite disagree: {e}");
                }
            }
        }
    }
}

/// Every `cost_allocations` point in the database.
fn count_points(db: &str) -> u64 {
    let v = crate::server::raw_query(db, "SELECT count(total_cost) FROM cost_allocations");
    v["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
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

    let mut cfg = crate::server::config("week");
    cfg.batch_lines = 500;
    let db = cfg.target().to_string();
    let ix = InfluxStore::open(&cfg).unwrap();
    write_week(&ix, &week);
    compare(&ix, &sqlite, &fleet, &clusters);
    assert_eq!(count_points(&db), rows as u64);

    // A second extraction of the whole week: nothing changes.
    write_week(&ix, &week);
    compare(&ix, &sqlite, &fleet, &clusters);
    assert_eq!(count_points(&db), rows as u64);
    let cps = ix.checkpoints(&clusters[0], Endpoint::Allocation).unwrap();
    assert_eq!(cps.len(), 6 + 24);

    // A rewrite of day 2 with a third of its rows gone: the missing rows do not linger.
    let (cluster, day, day_rows) = &week[2];
    let fewer: Vec<Allocation> = day_rows
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, a)| a.clone())
        .collect();
    write_window(&ix, cluster, *day, Resolution::Day, &fewer);
    let t = ix.window_total(cluster, *day).unwrap();
    assert_eq!(t.rows, fewer.len() as u64);
    assert!(close(t.total_cost, kb_conformance::sum_total(&fewer)));
    // The other cluster's same day is untouched.
    let other = &week[9];
    assert_eq!(other.1, *day);
    assert_eq!(
        ix.window_total(&other.0, *day).unwrap().rows,
        other.2.len() as u64
    );
    write_window(&ix, cluster, *day, Resolution::Day, day_rows);
    compare(&ix, &sqlite, &fleet, &clusters);

    // Day 6 was written hour by hour; written again as one daily window, it replaces the
    // hours and their checkpoints.
    let (cluster, day6, rows6) = &week[6];
    write_window(&ix, cluster, *day6, Resolution::Day, rows6);
    let cps = ix.checkpoints(cluster, Endpoint::Allocation).unwrap();
    assert_eq!(cps.len(), 7, "{cps:?}");
    assert_eq!(cps[6].window, *day6);
    assert_eq!(cps[6].resolution, Resolution::Day);
    assert_eq!(cps[6].rows, rows6.len() as u64);
    let synced = ix
        .synced_windows(cluster, Endpoint::Allocation, WEEK + 6 * DAY)
        .unwrap();
    assert_eq!(synced, vec![(*day6, Resolution::Day)]);
    compare(&ix, &sqlite, &fleet, &clusters);
    assert_eq!(count_points(&db), rows as u64);
}
