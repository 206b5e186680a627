//! Insert benchmark of the ClickHouse store: writes 20k synthetic allocation rows per hourly
//! window for several windows and prints rows/s (`kb_conformance::bench_rows`, the rows of every store's bench).
//!
//! ```sh
//! URL=$(CLICKHOUSE_DIR=$(mktemp -d) scripts/services/clickhouse.sh start)
//! KB_CLICKHOUSE_URL=$URL cargo run --release -p kb-clickhouse --example clickhouse_insert_bench [windows] [rows_per_window] [batch_rows]
//! scripts/services/clickhouse.sh stop
//! ```
//!
//! Each run writes into a new database `kb_bench_<pid>` on that server. A window's time runs
//! from `begin_allocations` to the end of `commit` (the last batch, the summary
//! `INSERT ... SELECT`, the checkpoint and the read-back of the window's totals).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use kb_clickhouse::{ClickHouseConfig, ClickHouseStore};
use kb_core::Window;

fn main() {
    let mut args = std::env::args().skip(1);
    let windows: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(6);
    let per_window: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let batch_rows: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let url =
        std::env::var("KB_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:18123".into());
    let mut cfg = ClickHouseConfig::new(url);
    cfg.database = format!("kb_bench_{}", std::process::id());
    cfg.batch_rows = batch_rows;
    let store = ClickHouseStore::open(&cfg).expect("open the clickhouse store");
    println!(
        "database {}, {per_window} rows per window, batches of {batch_rows}",
        cfg.database
    );
    let base = 1_700_000_000 / 3600 * 3600;
    let mut total_rows = 0usize;
    let mut total_secs = 0.0f64;
    for h in 0..windows {
        let window = Window::new(base + h as i64 * 3600, base + (h as i64 + 1) * 3600).unwrap();
        let batch = kb_conformance::bench_rows(window, per_window);
        let (secs, written, stats) =
            kb_conformance::timed_window_write(&store, window, &batch, 1000).unwrap();
        assert_eq!(stats.rows as usize, per_window);
        total_rows += per_window;
        total_secs += secs;
        println!(
            "window {h}: {per_window} rows in {:.1} ms (writes {:.1} ms, commit {:.1} ms), {:.0} rows/s",
            secs * 1e3,
            written * 1e3,
            (secs - written) * 1e3,
            per_window as f64 / secs,
        );
    }
    // Rewriting a window: a new version plus a background delete of the old one.
    let window = Window::new(base, base + 3600).unwrap();
    let (rewrite, _, stats) = kb_conformance::timed_window_write(
        &store,
        window,
        &kb_conformance::bench_rows(window, per_window),
        1000,
    )
    .unwrap();
    assert_eq!(stats.rows as usize, per_window);
    println!(
        "rewrite of window 0: {per_window} rows in {:.1} ms",
        rewrite * 1e3
    );
    println!(
        "total: {total_rows} rows in {:.1} ms, {:.0} rows/s",
        total_secs * 1e3,
        total_rows as f64 / total_secs
    );
}
