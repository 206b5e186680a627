//! Write benchmark of the InfluxDB store: writes 20k synthetic allocation rows per hourly
//! window for several windows and prints rows/s (the same generator as the ClickHouse and
//! SQLite benches).
//!
//! ```sh
//! URL=$(INFLUXDB_DIR=$(mktemp -d) scripts/services/influxdb.sh start)
//! KB_INFLUX_URL=$URL cargo run --release -p kb-influx --example write_bench [windows] [rows_per_window] [batch_lines] [gzip|plain]
//! scripts/services/influxdb.sh stop
//! ```
//!
//! Each run writes into a new database `kb_bench_<pid>` on that server. A window's time runs
//! from `begin_allocations` to the end of `commit`: encoding and compressing the rows
//! (`write`), then the commit (delete of the window's checkpoint and rows, the bodies, the
//! read-back of the window's totals, the checkpoint).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kb_core::Window;
use kb_influx::{InfluxApi, InfluxConfig, InfluxStore};

fn main() {
    let mut args = std::env::args().skip(1);
    let windows: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(6);
    let per_window: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let batch_lines: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let gzip = args.next().is_none_or(|s| s != "plain");
    let url = std::env::var("KB_INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:18086".into());
    let mut cfg = InfluxConfig::v1(url);
    let database = format!("kb_bench_{}", std::process::id());
    cfg.api = InfluxApi::V1 {
        database: database.clone(),
        retention_policy: None,
        username: None,
        password: None,
    };
    cfg.batch_lines = batch_lines;
    cfg.gzip = gzip;
    let store = InfluxStore::open(&cfg).expect("open the influxdb store");
    println!(
        "database {database}, {per_window} rows per window, batches of {batch_lines} lines, {}",
        if gzip { "gzip" } else { "plain bodies" }
    );
    let bytes = kb_influx::encode_allocations(
        "bench",
        &kb_conformance::bench_rows(Window::new(0, 3600).unwrap(), 1000),
    );
    let gz = kb_influx::gzip(&bytes).unwrap();
    println!(
        "line protocol: {} bytes per row, {} gzipped",
        bytes.len() / 1000,
        gz.len() / 1000
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
            "window {h}: {per_window} rows in {:.1} ms (encode {:.1} ms, commit {:.1} ms), {:.0} rows/s",
            secs * 1e3,
            written * 1e3,
            (secs - written) * 1e3,
            per_window as f64 / secs,
        );
    }
    // Rewriting a window: delete of the old points, then the same writes.
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
        "rewrite of window 0: {per_window} rows in {:.1} ms, {:.0} rows/s",
        rewrite * 1e3,
        per_window as f64 / rewrite
    );
    // Where a rewrite's time goes: the same steps as a commit, one by one.
    let client = store.client();
    let batch = kb_conformance::bench_rows(window, per_window);
    let t = Instant::now();
    let bodies: Vec<Vec<u8>> = batch
        .chunks(batch_lines)
        .map(|c| kb_influx::gzip(&kb_influx::encode_allocations("bench", c)).unwrap())
        .collect();
    let encode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    client
        .delete(
            kb_influx::SYNC,
            &[("cluster", "bench"), ("endpoint", "allocation")],
            window,
        )
        .unwrap();
    client
        .delete(kb_influx::ALLOCATIONS, &[("cluster", "bench")], window)
        .unwrap();
    let delete = t.elapsed().as_secs_f64();
    let t = Instant::now();
    client.send_all(bodies, true).unwrap();
    let send = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let stats = store.window_total("bench", window).unwrap();
    let read = t.elapsed().as_secs_f64();
    assert_eq!(stats.rows as usize, per_window);
    println!(
        "rewrite steps: encode+gzip {:.1} ms, 2 deletes {:.1} ms, send {:.1} ms ({:.0} rows/s), read-back {:.1} ms",
        encode * 1e3,
        delete * 1e3,
        send * 1e3,
        per_window as f64 / send,
        read * 1e3
    );
    println!(
        "total: {total_rows} rows in {:.1} ms, {:.0} rows/s",
        total_secs * 1e3,
        total_rows as f64 / total_secs
    );
}
