//! The write contract: re-writing a window replaces it, a daily window replaces its hours,
//! nothing changes without a commit (drop, failed write, crash), checkpoints commit with rows.

use kb_core::Resolution;
use kb_pipeline::ports::{CostStore, Endpoint};
use kb_store::SqliteStore;

use crate::common::*;

#[test]
fn writing_the_same_window_twice_keeps_one_copy() {
    let (_dir, store) = store();
    let rows = window_rows(hour(0), 1.0);
    let first = put_window(&store, hour(0), Resolution::Hour, &rows);
    let dims = store.stats().unwrap();
    let second = put_window(&store, hour(0), Resolution::Hour, &rows);
    assert_eq!(first, second);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap(), first);
    let after = store.stats().unwrap();
    assert_eq!(after.rows("allocations"), rows.len() as u64);
    for t in [
        "clusters",
        "namespaces",
        "controllers",
        "pods",
        "nodes",
        "label_sets",
    ] {
        assert_eq!(after.rows(t), dims.rows(t), "{t} grew on a rewrite");
    }
    assert_eq!(
        store
            .checkpoints(CLUSTER, Endpoint::Allocation)
            .unwrap()
            .len(),
        1
    );
    // A rewrite with different rows replaces, not adds.
    let fewer = &rows[..3];
    let stats = put_window(&store, hour(0), Resolution::Hour, fewer);
    assert_eq!(stats.rows, 3);
    assert!(close(stats.total_cost, sum_total(fewer)));
}

#[test]
fn a_daily_window_replaces_the_hours_of_that_day() {
    let (_dir, store) = store();
    for h in 0..4 {
        put_window(
            &store,
            hour(h),
            Resolution::Hour,
            &window_rows(hour(h), 1.0),
        );
    }
    // An hour of the next day must survive.
    let next_day = kb_core::Window::new(day(1).start, day(1).start + HOUR).unwrap();
    let keep = window_rows(next_day, 3.0);
    put_window(&store, next_day, Resolution::Hour, &keep);
    assert_eq!(
        store
            .checkpoints(CLUSTER, Endpoint::Allocation)
            .unwrap()
            .len(),
        5
    );

    let daily = window_rows(day(0), 24.0);
    let stats = put_window(&store, day(0), Resolution::Day, &daily);
    assert_eq!(stats.rows, daily.len() as u64);
    assert!(close(stats.total_cost, sum_total(&daily)));
    assert_eq!(store.window_total(CLUSTER, hour(2)).unwrap().rows, 0);
    let cps = store.checkpoints(CLUSTER, Endpoint::Allocation).unwrap();
    assert_eq!(cps.len(), 2, "{cps:?}");
    assert_eq!(
        (cps[0].window, cps[0].resolution),
        (day(0), Resolution::Day)
    );
    assert_eq!(cps[0].rows, daily.len() as u64);
    assert_eq!(cps[0].null_fields, 16);
    assert_eq!(cps[1].window, next_day);
    assert!(close(
        store.window_total(CLUSTER, next_day).unwrap().total_cost,
        sum_total(&keep)
    ));
    let synced = store
        .synced_windows(CLUSTER, Endpoint::Allocation, 0)
        .unwrap();
    assert_eq!(
        synced,
        vec![(day(0), Resolution::Day), (next_day, Resolution::Hour)]
    );
    let since = store
        .synced_windows(CLUSTER, Endpoint::Allocation, day(0).end)
        .unwrap();
    assert_eq!(since, vec![(next_day, Resolution::Hour)]);
    assert!(
        store
            .synced_windows(CLUSTER, Endpoint::Assets, 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn other_clusters_are_untouched_by_a_rewrite() {
    let (_dir, store) = store();
    put_window(
        &store,
        hour(0),
        Resolution::Hour,
        &window_rows(hour(0), 1.0),
    );
    let mut w = store
        .begin_allocations("c2", hour(0), Resolution::Hour)
        .unwrap();
    w.write(&window_rows(hour(0), 5.0)).unwrap();
    let mut cp = checkpoint(hour(0), Resolution::Hour, &[]);
    cp.cluster = "c2".into();
    w.commit(&cp).unwrap();
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap().rows, 9);
    assert_eq!(store.window_total("c2", hour(0)).unwrap().rows, 9);
    put_window(&store, hour(0), Resolution::Hour, &[]);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap().rows, 0);
    assert_eq!(store.window_total("c2", hour(0)).unwrap().rows, 9);
}

#[test]
fn a_dropped_writer_changes_nothing_and_checkpoints_need_a_commit() {
    let (_dir, store) = store();
    let rows = window_rows(hour(0), 1.0);
    let before = put_window(&store, hour(0), Resolution::Hour, &rows);
    let cps = store.checkpoints(CLUSTER, Endpoint::Allocation).unwrap();

    let mut w = store
        .begin_allocations(CLUSTER, hour(0), Resolution::Hour)
        .unwrap();
    w.write(&window_rows(hour(0), 7.0)).unwrap();
    drop(w);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap(), before);
    assert_eq!(
        store.checkpoints(CLUSTER, Endpoint::Allocation).unwrap(),
        cps
    );

    // A new window: no checkpoint while the writer is open, one after the commit.
    let mut w = store
        .begin_allocations(CLUSTER, hour(1), Resolution::Hour)
        .unwrap();
    let rows1 = window_rows(hour(1), 1.0);
    w.write(&rows1).unwrap();
    assert_eq!(
        store
            .checkpoints(CLUSTER, Endpoint::Allocation)
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .synced_windows(CLUSTER, Endpoint::Allocation, hour(1).start)
            .unwrap()
            .is_empty()
    );
    w.commit(&checkpoint(hour(1), Resolution::Hour, &rows1))
        .unwrap();
    let cps = store.checkpoints(CLUSTER, Endpoint::Allocation).unwrap();
    assert_eq!(cps.len(), 2);
    assert_eq!(cps[1].window, hour(1));
    assert_eq!(cps[1].rows, rows1.len() as u64);
    assert!(close(cps[1].response_total_cost, sum_total(&rows1)));
    assert_eq!(cps[1].synced_at, hour(1).end + 60);
}

#[test]
fn a_failed_write_or_bad_checkpoint_commits_nothing() {
    let (_dir, store) = store();
    let rows = window_rows(hour(0), 1.0);
    let before = put_window(&store, hour(0), Resolution::Hour, &rows);

    let mut w = store
        .begin_allocations(CLUSTER, hour(0), Resolution::Hour)
        .unwrap();
    w.write(&rows[..2]).unwrap();
    let err = w.write(&window_rows(hour(1), 1.0)).unwrap_err();
    assert!(
        err.message.contains("outside the window"),
        "{}",
        err.message
    );
    assert!(!err.retryable);
    let err = w
        .commit(&checkpoint(hour(0), Resolution::Hour, &rows))
        .unwrap_err();
    assert!(err.message.contains("failed earlier"), "{}", err.message);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap(), before);

    let mut w = store
        .begin_allocations(CLUSTER, hour(0), Resolution::Hour)
        .unwrap();
    w.write(&rows[..2]).unwrap();
    let err = w
        .commit(&checkpoint(hour(1), Resolution::Hour, &rows))
        .unwrap_err();
    assert!(err.message.contains("checkpoint window"), "{}", err.message);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap(), before);
    assert_eq!(
        store
            .checkpoints(CLUSTER, Endpoint::Allocation)
            .unwrap()
            .len(),
        1
    );

    // The store is usable afterwards (no lock left behind).
    put_window(&store, hour(0), Resolution::Hour, &rows[..1]);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap().rows, 1);
}

#[test]
fn rows_without_a_window_take_the_writers() {
    let (_dir, store) = store();
    let mut rows = window_rows(hour(0), 1.0);
    for r in &mut rows {
        r.window = kb_core::Window::default();
    }
    let stats = put_window(&store, hour(0), Resolution::Hour, &rows);
    assert_eq!(stats.rows, rows.len() as u64);
}

const CHILD_ENV: &str = "KB_STORE_CRASH_CHILD_DB";

/// Not a test on its own: the body of the child process of
/// [`a_crash_mid_write_leaves_the_previous_data`], which aborts (like `kill -9`: no destructor,
/// no rollback) in the middle of a window write. Without the environment variable it returns.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = SqliteStore::open(std::path::Path::new(&path)).unwrap();
    let mut w = store
        .begin_allocations(CLUSTER, hour(0), Resolution::Hour)
        .unwrap();
    for _ in 0..50 {
        w.write(&window_rows(hour(0), 9.0)).unwrap();
    }
    // Tell the parent the rows were written (uncommitted) before dying.
    std::fs::write(format!("{}.wrote", path.to_string_lossy()), b"").unwrap();
    std::process::abort();
}

#[test]
fn a_crash_mid_write_leaves_the_previous_data() {
    let (dir, store) = store();
    let rows = window_rows(hour(0), 1.0);
    let before = put_window(&store, hour(0), Resolution::Hour, &rows);
    let cps = store.checkpoints(CLUSTER, Endpoint::Allocation).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idempotence::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path().join("kb.db"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have aborted");
    assert!(
        dir.path().join("kb.db.wrote").exists(),
        "the child died after writing, not before"
    );
    drop(store);
    let store = SqliteStore::open(&dir.path().join("kb.db")).unwrap();
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap(), before);
    assert_eq!(
        store.checkpoints(CLUSTER, Endpoint::Allocation).unwrap(),
        cps
    );
    // And the write lock is free again.
    put_window(&store, hour(0), Resolution::Hour, &rows[..1]);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap().rows, 1);
}

/// Stored windows never partly overlap: an hour inside a day stored at daily grain, or a window
/// across a stored one, is refused with an error naming both windows, and the day's rows and
/// checkpoint are untouched; the day itself can still be written again.
#[test]
fn a_window_inside_or_across_a_stored_one_is_refused() {
    let (_dir, store) = store();
    let rows = window_rows(day(0), 2.0);
    let stored = put_window(&store, day(0), Resolution::Day, &rows);
    let inside = store.begin_allocations(CLUSTER, hour(3), Resolution::Hour);
    let msg = inside
        .err()
        .expect("an hour inside a stored day")
        .to_string();
    assert!(
        msg.contains("overlaps the stored window") && msg.contains("T03:00:00Z"),
        "{msg}"
    );
    let across = kb_core::Window::new(day(0).end - 2 * HOUR, day(0).end + 2 * HOUR).unwrap();
    assert!(
        store
            .begin_allocations(CLUSTER, across, Resolution::Hour)
            .is_err()
    );
    assert_eq!(store.window_total(CLUSTER, day(0)).unwrap(), stored);
    // Other clusters, the next day and the same day again are fine.
    assert!(
        store
            .begin_allocations("another", hour(3), Resolution::Hour)
            .is_ok()
    );
    put_window(
        &store,
        hour(24),
        Resolution::Hour,
        &window_rows(hour(24), 1.0),
    );
    assert_eq!(put_window(&store, day(0), Resolution::Day, &rows), stored);
    // A day over its stored hours replaces them (they lie inside it).
    let day1 = put_window(&store, day(1), Resolution::Day, &window_rows(day(1), 3.0));
    assert_eq!(store.window_total(CLUSTER, day(1)).unwrap(), day1);
    assert_eq!(
        store
            .checkpoints(CLUSTER, Endpoint::Allocation)
            .unwrap()
            .len(),
        2
    );
}
