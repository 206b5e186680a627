//! `run` serves on `api.listen`: health, remote_write with per-source Basic auth, scrapes of the
//! simulator's `/metrics` turned into stored real-time estimates, and a clean SIGTERM.

use std::time::{Duration, Instant};

use kb_analytics::{Dimension, Granularity};
use kb_core::Window;
use kb_pipeline::insights::{InsightReader, Source, SummaryQuery};

use crate::{Reaped, Sim, bin, free_port, http_get, sim_config, write_config};

fn post(url: &str, user: &str, password: &str, account: &str, body: Vec<u8>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(url)
            .basic_auth(user, Some(password))
            .header("Cloud-Account-Id", account)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn run_serves_health_remote_write_and_real_time_estimates_then_stops_on_sigterm() {
    let sim = Sim::start(sim_config(1, 20));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rw-password"), "s3cret\n").unwrap();
    let port = free_port();
    let extra = format!(
        "extract:\n  lookback: 2h\n  settle: 0s\napi:\n  listen: \"127.0.0.1:{port}\"\n  audit_log: \"{}\"\nremote_write:\n  sources:\n    - cloud_account_id: ds-1\n      cluster: cluster-1\n      username: prom\n      password_file: \"{}\"\nrealtime:\n  scrape: [cluster-1]\n  scrape_interval: 1s\n  persist_interval: 1s\n",
        dir.path().join("audit.log").display(),
        dir.path().join("rw-password").display()
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let mut child = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .env("KUBECOST_BRIDGE_ADMIN_TOKEN", "admin-token-for-tests")
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = http_get(&format!("{base}/readyz"), None) {
            assert_eq!(body.trim(), "ready");
            break;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "run exited early");
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_get(&format!("{base}/healthz"), None).unwrap().0, 200);

    // remote_write: wrong credentials, a foreign source and garbage are refused.
    let url = format!("{base}/api/v1/write");
    assert_eq!(post(&url, "prom", "wrong", "ds-1", vec![0; 8]), 401);
    assert_eq!(post(&url, "prom", "s3cret", "ds-2", vec![0; 8]), 401);
    assert_eq!(
        post(&url, "prom", "s3cret", "ds-1", b"not snappy".to_vec()),
        400
    );

    // Scrapes of the simulator's /metrics become stored real-time estimates of the open hour.
    let db = dir.path().join("bridge.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let now = chrono::Utc::now().timestamp();
        let store = kb_store::SqliteStore::open(&db).unwrap();
        let rows = store
            .summaries(&SummaryQuery {
                cluster: Some("cluster-1".into()),
                dimension: Dimension::Namespace,
                granularity: Granularity::Hour,
                range: Window::new(now - 7200, now + 3600).unwrap(),
                namespace: None,
                name: None,
            })
            .unwrap();
        let realtime: Vec<_> = rows
            .into_iter()
            .filter(|r| r.source == Source::Realtime)
            .collect();
        if !realtime.is_empty() {
            break realtime;
        }
        assert!(Instant::now() < deadline, "no real-time summaries");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(rows.iter().any(|r| r.summary.name == "kube-system"));
    assert!(rows.iter().all(|r| r.summary.totals.total_cost.is_finite()));
    assert!(
        rows.iter()
            .map(|r| r.summary.totals.total_cost)
            .sum::<f64>()
            > 0.0
    );
    assert!(
        dir.path().join("realtime-spool").is_dir(),
        "accepted samples are spooled"
    );

    // The REST API: keys required, the bootstrap admin token from the environment works.
    let clusters = format!("{base}/api/v1/costs/kubernetes");
    assert_eq!(http_get(&clusters, None).unwrap().0, 401);
    assert_eq!(http_get(&clusters, Some("not-the-token")).unwrap().0, 401);
    let (status, body) = http_get(&clusters, Some("admin-token-for-tests")).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cluster-1"), "{body}");
    assert!(!body.contains("admin-token-for-tests"));
    let (status, body) = http_get(&format!("{base}/api/v1/openapi.json"), Some("")).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("/api/v1/costs/kubernetes/{cluster}/namespaces"));

    // The live view: current cost rate per namespace, behind the same keys.
    let live = format!("{base}/api/v1/costs/kubernetes/cluster-1/realtime");
    assert_eq!(http_get(&live, None).unwrap().0, 401);
    let (status, body) = http_get(&live, Some("admin-token-for-tests")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["cost_per_hour"].as_f64().unwrap() > 0.0, "{body}");
    assert!(v["newest_sample"].as_str().unwrap().ends_with('Z'));
    let ns = v["namespaces"].as_array().unwrap();
    assert!(ns.iter().any(|n| n["namespace"] == "kube-system"), "{body}");
    let sum: f64 = ns
        .iter()
        .map(|n| n["cost_per_hour"].as_f64().unwrap())
        .sum();
    assert!(
        sum > 0.0 && sum <= v["cost_per_hour"].as_f64().unwrap() * (1.0 + 1e-9),
        "{body}"
    );
    let other = format!("{base}/api/v1/costs/kubernetes/nope/realtime");
    assert_eq!(
        http_get(&other, Some("admin-token-for-tests")).unwrap().0,
        404
    );

    // Self-monitoring: the catch-up's windows are counted, every failure series exists at 0,
    // freshness is tracked, and the API's own requests are timed by route template.
    let (status, text) = http_get(&format!("{base}/metrics"), None).unwrap();
    assert_eq!(status, 200);
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        value(
            "kubecost_bridge_extraction_runs_total{cluster=\"cluster-1\",endpoint=\"allocation\",outcome=\"success\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(
            "kubecost_bridge_extraction_runs_total{cluster=\"cluster-1\",endpoint=\"allocation\",outcome=\"failure\"}"
        ),
        0.0
    );
    assert!(
        value(
            "kubecost_bridge_data_freshness_seconds{cluster=\"cluster-1\",source=\"allocation\"}"
        ) < 3600.0
    );
    assert!(text.contains("kubecost_bridge_build_info"));
    assert!(
        text.contains("route=\"/api/v1/costs/kubernetes\""),
        "{text}"
    );

    // SIGTERM: a clean exit.
    let pid = child.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    // One audit line per API request, never with the token.
    let out = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let audit: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("/api/v1/costs/kubernetes"))
        .collect();
    assert!(
        audit.len() >= 3,
        "audit log: {out:?}; config: {}",
        std::fs::read_to_string(&cfg).unwrap()
    );
    assert!(!out.contains("admin-token-for-tests"));
}
