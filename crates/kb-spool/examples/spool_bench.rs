//! Append + ack throughput of the spool: 64 KiB records, with `FsyncPolicy::Always` and
//! `Never`, in a temporary folder (set `TMPDIR` to measure another disk).
//!
//! ```text
//! cargo run --release -p kb-spool --example spool_bench [records]
//! ```
//!
//! Three phases per policy: append N records (the spool filling while a backend is down),
//! then peek + ack them all (the replay), then N rounds of append-peek-ack (steady state
//! through the spool).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kb_spool::{FsyncPolicy, OnCorruption, Spool, SpoolConfig};

const RECORD: usize = 64 << 10;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("records: a number"))
        .unwrap_or(2000);
    let payload: Vec<u8> = (0..RECORD).map(|i| (i * 7) as u8).collect();
    println!("{n} records of {} KiB each", RECORD >> 10);
    println!(
        "{:<8} {:<22} {:>12} {:>10}",
        "fsync", "phase", "records/s", "MB/s"
    );
    for fsync in [FsyncPolicy::Never, FsyncPolicy::Always] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let cfg = SpoolConfig {
            max_bytes: 4 << 30,
            segment_bytes: 64 << 20,
            fsync,
            on_corruption: OnCorruption::Fail,
            dead_keep: 10,
        };
        let spool = Spool::open(tmp.path(), cfg).unwrap();
        let name = format!("{fsync:?}");

        let t = Instant::now();
        for _ in 0..n {
            spool.append(1, &payload).unwrap();
        }
        report(&name, "append", n, t.elapsed().as_secs_f64());

        let t = Instant::now();
        while let Some(r) = spool.peek().unwrap() {
            spool.ack(r.seq).unwrap();
        }
        report(&name, "peek+ack (replay)", n, t.elapsed().as_secs_f64());

        let t = Instant::now();
        for _ in 0..n {
            let seq = spool.append(1, &payload).unwrap();
            let r = spool.peek().unwrap().unwrap();
            assert_eq!(r.seq, seq);
            spool.ack(seq).unwrap();
        }
        report(&name, "append+peek+ack", n, t.elapsed().as_secs_f64());
    }
}

fn report(fsync: &str, phase: &str, n: u64, secs: f64) {
    let rps = n as f64 / secs;
    let mbps = rps * RECORD as f64 / 1e6;
    println!("{fsync:<8} {phase:<22} {rps:>12.0} {mbps:>10.1}");
}
