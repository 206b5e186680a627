//! Simulator -> extractor -> SQLite over real HTTP, idempotence, and kill -9 safety.

use std::time::{Duration, Instant};

use kb_core::window::DAY;
use kb_pipeline::ports::Endpoint;

use crate::{FAST, Sim, assert_exact, bin, past_range, rfc, run_ok, sim_config, write_config};

#[test]
fn two_clusters_48_hours_stored_exactly_and_extracting_again_changes_nothing() {
    let sim = Sim::start(sim_config(2, 40));
    let dir = tempfile::tempdir().unwrap();
    let clusters = ["cluster-1", "cluster-2"];
    let cfg = write_config(dir.path(), &sim, &clusters, FAST);
    let range = past_range(48);
    let db = dir.path().join("bridge.db");

    run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    let rows = assert_exact(&db, &sim, &clusters, range);
    assert!(rows > 2 * 48 * 40, "every pod of every hour, got {rows}");

    // Reconciliation recorded per window, and exact.
    let store = kb_store::SqliteStore::open(&db).unwrap();
    use kb_pipeline::ports::CostReader;
    let recs = store.reconciliations("cluster-1", range).unwrap();
    assert_eq!(recs.len(), 48);
    assert!(recs.iter().all(|r| r.relative_error <= 1e-9), "{recs:?}");

    // Assets: both days synced, and allocations plus idle equal assets (conservation).
    for day in range.split(DAY) {
        for c in clusters {
            let assets = store.asset_total(c, day).unwrap();
            let want = sim.fleet.asset_total(c, day);
            assert!(
                kb_core::cost::relative_error(want, assets) <= 1e-9,
                "{c} {day}: {assets} vs {want}"
            );
            let alloc = store.window_total(c, day).unwrap().total_cost;
            assert!(
                kb_core::cost::relative_error(assets, alloc) <= 1e-9,
                "{c} {day}: conservation {alloc} vs {assets}"
            );
        }
    }
    drop(store);

    // Extracting the same range again, forced, changes nothing.
    run_ok(bin().args(["extract", "--config"]).arg(&cfg).args([
        "--window",
        &format!("{},{}", rfc(range.start), rfc(range.end)),
    ]));
    assert_eq!(assert_exact(&db, &sim, &clusters, range), rows);
    // And a plain backfill finds nothing left to do.
    let out = run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("synced 0 allocation window(s)"));
    assert_eq!(assert_exact(&db, &sim, &clusters, range), rows);
}

#[test]
fn kill_9_mid_run_then_restart_loses_and_duplicates_nothing() {
    let mut cfg = sim_config(2, 30);
    cfg.faults.latency_ms = 120;
    let sim = Sim::start(cfg);
    let dir = tempfile::tempdir().unwrap();
    let clusters = ["cluster-1", "cluster-2"];
    let cfg = write_config(dir.path(), &sim, &clusters, FAST);
    let range = past_range(72);
    let db = dir.path().join("bridge.db");
    let args = [
        "--from".to_string(),
        rfc(range.start),
        "--to".to_string(),
        rfc(range.end),
    ];

    // Watch the log, not the database: opening the store while the extractor holds its write
    // lock would wait on the busy timeout and let the run finish before the kill.
    let mut child = bin()
        .args(["backfill", "--config"])
        .arg(&cfg)
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if line.contains("allocation window synced") {
                let _ = tx.send(());
            }
        }
    });
    // Wait until a few windows are committed, then kill -9 in the middle of the run.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut synced = 0;
    while synced < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left)
            .expect("no progress, or backfill ended before it could be killed");
        synced += 1;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let partial = kb_store::SqliteStore::open(&db)
        .unwrap()
        .checkpoints("cluster-1", Endpoint::Allocation)
        .unwrap()
        .len();
    assert!(
        partial < 72,
        "the kill happened mid-run ({partial} windows done)"
    );

    run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args(&args));
    assert_exact(&db, &sim, &clusters, range);
}
