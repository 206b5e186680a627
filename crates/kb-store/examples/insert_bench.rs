//! Insert benchmark of the SQLite store: writes 20k synthetic allocation rows per hourly window
//! for several windows (the same pods every hour, as in a real cluster) and prints rows/s.
//!
//! `cargo run --release -p kb-store --example insert_bench [windows] [rows_per_window]`
//!
//! The first window pays for creating the dimension rows (namespaces, controllers, pods, label
//! sets); the later ones find every id in the store's cache, which is the steady state of an
//! hourly extraction.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kb_core::{Resolution, Window};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint};
use kb_store::SqliteStore;

fn main() {
    let mut args = std::env::args().skip(1);
    let windows: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(6);
    let per_window: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.db")).expect("open store");
    let base = 1_700_000_000 / 3600 * 3600;
    let mut total_rows = 0usize;
    let mut total_secs = 0.0f64;
    let mut steady = Vec::new();
    for h in 0..windows {
        let window = Window::new(base + h as i64 * 3600, base + (h as i64 + 1) * 3600).unwrap();
        let batch = kb_conformance::bench_rows(window, per_window);
        let t = Instant::now();
        let mut w = store
            .begin_allocations("bench", window, Resolution::Hour)
            .unwrap();
        for chunk in batch.chunks(1000) {
            w.write(chunk).unwrap();
        }
        let written = t.elapsed().as_secs_f64();
        let stats = w
            .commit(&Checkpoint {
                cluster: "bench".into(),
                endpoint: Endpoint::Allocation,
                window,
                resolution: Resolution::Hour,
                synced_at: window.end,
                rows: per_window as u64,
                response_total_cost: 0.0,
                null_fields: 0,
            })
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(stats.rows as usize, per_window);
        total_rows += per_window;
        total_secs += secs;
        if h > 0 {
            steady.push(secs);
        }
        println!(
            "window {h}: {per_window} rows in {:.1} ms (writes {:.1} ms, commit {:.1} ms), {:.0} rows/s{}",
            secs * 1e3,
            written * 1e3,
            (secs - written) * 1e3,
            per_window as f64 / secs,
            if h == 0 {
                " (cold: creates dimension rows)"
            } else {
                ""
            }
        );
    }
    // Rewriting a window replaces it: the same cost as a fresh one plus the delete.
    let window = Window::new(base, base + 3600).unwrap();
    let batch = kb_conformance::bench_rows(window, per_window);
    let t = Instant::now();
    let mut w = store
        .begin_allocations("bench", window, Resolution::Hour)
        .unwrap();
    w.write(&batch).unwrap();
    w.commit(&Checkpoint {
        cluster: "bench".into(),
        endpoint: Endpoint::Allocation,
        window,
        resolution: Resolution::Hour,
        synced_at: window.end,
        rows: per_window as u64,
        response_total_cost: 0.0,
        null_fields: 0,
    })
    .unwrap();
    let rewrite = t.elapsed().as_secs_f64();
    println!(
        "rewrite of window 0: {per_window} rows in {:.1} ms",
        rewrite * 1e3
    );
    println!(
        "total: {total_rows} rows in {:.1} ms, {:.0} rows/s",
        total_secs * 1e3,
        total_rows as f64 / total_secs
    );
    if !steady.is_empty() {
        let avg = steady.iter().sum::<f64>() / steady.len() as f64;
        println!(
            "steady state (warm id cache): {:.1} ms per {per_window}-row window, {:.0} rows/s",
            avg * 1e3,
            per_window as f64 / avg
        );
    }
    let stats = store.stats().unwrap();
    println!(
        "database: {} allocation rows, {} pods, {:.1} MiB (+ {:.1} MiB wal)",
        stats.rows("allocations"),
        stats.rows("pods"),
        stats.database_bytes as f64 / 1048576.0,
        stats.wal_bytes as f64 / 1048576.0
    );
}
