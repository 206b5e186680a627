//! Reliability: with errors, timeouts, truncated bodies, NaNs and empty answers injected, every
//! window still ends up correct; malformed data gives a clear error and no checkpoint.

use kb_pipeline::ports::Endpoint;

use crate::{Sim, assert_exact, bin, past_range, rfc, sim_config, write_config};

#[test]
fn every_window_ends_up_correct_despite_injected_faults() {
    let mut cfg = sim_config(2, 25);
    cfg.faults.fail_rate = 0.3;
    cfg.faults.timeout_rate = 0.05;
    cfg.faults.truncate_rate = 0.15;
    cfg.faults.nan_rate = 0.2;
    cfg.faults.null_data_rate = 0.05;
    let sim = Sim::start(cfg);
    let dir = tempfile::tempdir().unwrap();
    let clusters = ["cluster-1", "cluster-2"];
    let extra = "extract:\n  hourly_retention: 100000h\n  settle: 0s\n  request_timeout: 1s\n  retry:\n    max_attempts: 12\n    base_delay: 5ms\n    max_delay: 50ms\n";
    let cfg = write_config(dir.path(), &sim, &clusters, extra);
    let range = past_range(12);
    let db = dir.path().join("bridge.db");
    // A run may leave a window for the next run when its retries run out; runs are cheap and
    // idempotent, so run until nothing is left, as the schedule would.
    let mut runs = 0;
    loop {
        runs += 1;
        let out = bin()
            .args(["backfill", "--config"])
            .arg(&cfg)
            .args(["--from", &rfc(range.start), "--to", &rfc(range.end)])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            runs < 5,
            "still failing after {runs} runs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_exact(&db, &sim, &clusters, range);
}

#[test]
fn malformed_data_names_cluster_endpoint_and_window_and_does_not_checkpoint() {
    let mut cfg = sim_config(1, 10);
    cfg.faults.malformed_rate = 1.0;
    let sim = Sim::start(cfg);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], crate::FAST);
    let range = past_range(2);
    let out = bin()
        .args(["backfill", "--config"])
        .arg(&cfg)
        .args(["--from", &rfc(range.start), "--to", &rfc(range.end)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster cluster-1"), "{err}");
    assert!(err.contains("allocation window"), "{err}");
    assert!(err.contains(&rfc(range.start)), "{err}");
    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    assert!(
        store
            .checkpoints("cluster-1", Endpoint::Allocation)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.window_total("cluster-1", range).unwrap().rows, 0);
}
