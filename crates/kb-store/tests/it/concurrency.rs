//! WAL: a reader keeps seeing the last committed data while a window writer is open, and a
//! second writer waits for the first.

use std::sync::Arc;

use kb_core::Resolution;
use kb_pipeline::ports::{CostQuery, CostReader, CostStore, GroupBy};

use crate::common::*;

#[test]
fn a_reader_sees_the_old_data_until_the_commit() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let old = window_rows(hour(0), 1.0);
    let before = put_window(&store, hour(0), Resolution::Hour, &old);
    let q = CostQuery {
        cluster: None,
        namespace: None,
        range: hour(0),
        granularity: None,
        group_by: GroupBy::Cluster,
        include_idle: true,
    };
    let new = window_rows(hour(0), 3.0);
    let mut w = store
        .begin_allocations(CLUSTER, hour(0), Resolution::Hour)
        .unwrap();
    w.write(&new).unwrap();
    // From another thread, on the store's shared connection.
    let reader = Arc::clone(&store);
    let seen = std::thread::spawn(move || {
        let rows = reader.costs(&q).unwrap();
        (
            rows[0].total_cost,
            reader.window_total(CLUSTER, hour(0)).unwrap(),
        )
    })
    .join()
    .unwrap();
    assert!(close(seen.0, sum_total(&old)));
    assert_eq!(seen.1, before);
    w.commit(&checkpoint(hour(0), Resolution::Hour, &new))
        .unwrap();
    assert!(close(
        store.window_total(CLUSTER, hour(0)).unwrap().total_cost,
        sum_total(&new)
    ));
}

#[test]
fn a_second_writer_waits_for_the_first() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let mut first = store
        .begin_allocations(CLUSTER, hour(0), Resolution::Hour)
        .unwrap();
    first.write(&window_rows(hour(0), 1.0)).unwrap();
    let other = Arc::clone(&store);
    let second = std::thread::spawn(move || {
        // Blocks on the write lock (busy timeout) until the first commits.
        let rows = window_rows(hour(1), 2.0);
        put_window(&other, hour(1), Resolution::Hour, &rows)
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    first
        .commit(&checkpoint(
            hour(0),
            Resolution::Hour,
            &window_rows(hour(0), 1.0),
        ))
        .unwrap();
    let stats = second.join().unwrap();
    assert_eq!(stats.rows, 9);
    assert_eq!(store.window_total(CLUSTER, hour(0)).unwrap().rows, 9);
}
