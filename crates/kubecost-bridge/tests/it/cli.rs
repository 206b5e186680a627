//! The command line: config checking, exit codes, the demo.

use crate::{bin, run_ok};

const SEED: &str = r#"
kubecost:
  endpoint: "http://kubecost-cost-analyzer.kubecost.svc.cluster.local:9090"
  apis:
    allocation:
      enabled: true
      window: "1h"
      aggregate: ["cluster", "namespace", "pod"]
    assets:
      enabled: true
      window: "1d"
      aggregate: ["cluster"]

cloudtuner:
  storage:
    influxdb: "http://influxdb.default.svc.cluster.local"
    clickhouse: "http://clickhouse.default.svc.cluster.local:8123"

schedule:
  allocation_sync: "0 */1 * * *"  # Every hour
  asset_sync: "0 0 * * *"         # Daily
  cleanup: "0 2 * * *"            # Daily cleanup at 2 AM
"#;

#[test]
fn check_config_accepts_the_seed_and_reports_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("seed.yaml");
    std::fs::write(&good, SEED).unwrap();
    let out = run_ok(bin().args(["check-config", "--config"]).arg(&good));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 cluster(s)"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "kubecost:\n  endpoint: \"http://x:9090\"\n  apis:\n    allocation:\n      window: \"5m\"\nschedule:\n  cleanup: \"at two\"\nextra_key: 1\n",
    )
    .unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "config errors exit 2");
    let err = String::from_utf8_lossy(&out.stderr);
    for path in [
        "kubecost.apis.allocation.window",
        "schedule.cleanup",
        "extra_key",
    ] {
        assert!(err.contains(path), "{path} missing from:\n{err}");
    }
}

#[test]
fn usage_errors_exit_2_and_missing_files_too() {
    let out = bin().args(["extract"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["check-config", "--config", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml"));
}

#[test]
fn demo_extracts_every_cluster_and_says_where_the_data_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = run_ok(
        bin()
            .args([
                "demo",
                "--once",
                "--listen",
                "127.0.0.1:0",
                "--days",
                "2",
                "--clusters",
                "2",
                "--pods",
                "20",
                "--data-dir",
            ])
            .arg(&data)
            .env_remove("KUBECOST_BRIDGE_ADMIN_TOKEN"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cluster-1") && text.contains("cluster-2"),
        "{text}"
    );
    assert!(text.contains("stored"), "{text}");
    // Without KUBECOST_BRIDGE_ADMIN_TOKEN the demo makes a key and prints the dashboard's
    // sign-in link with it, the same key as in the curl lines.
    let link = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("dashboard: http://"))
        .unwrap_or_else(|| panic!("no dashboard link in:\n{text}"));
    let key = link
        .split_once("/?token=")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap())
        .unwrap();
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    assert!(text.contains(&format!("Authorization: Bearer {key}")));
    let store = kb_store::SqliteStore::open(&data.join("kubecost-bridge.db")).unwrap();
    let cps = store
        .checkpoints("cluster-2", kb_pipeline::ports::Endpoint::Allocation)
        .unwrap();
    assert!(
        cps.len() >= 24,
        "at least a day of windows for cluster-2, got {}",
        cps.len()
    );
}
