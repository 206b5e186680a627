//! `api.query_store: clickhouse`: the mirror copies the aggregator's results (the bridge's
//! recommendations included) and Kubecost's lists to ClickHouse, and `run` serves the API
//! (namespace totals, `/optimization`) from ClickHouse with the same answers as from SQLite. `check-config` refuses the choice when no ClickHouse is configured.

use std::time::{Duration, Instant};

use kb_analytics::{Dimension, Granularity};
use kb_core::Window;
use kb_pipeline::insights::{InsightReader, SummaryQuery};

use crate::mirror::Server;
use crate::{
    FAST, Reaped, Sim, bin, free_port, http_get, past_range, rfc, run_ok, sim_config, write_config,
};

const TOKEN: &str = "query-store-admin-token";

/// Starts `run` with `query_store` and returns it with the namespaces URL for `range`.
fn start_run(cfg: &std::path::Path, query_store: &str, range: Window) -> (Reaped, String) {
    let port = free_port();
    let yaml = std::fs::read_to_string(cfg).unwrap();
    // No catch-up aggregation: both runs serve what the backfill aggregated (and mirrored),
    // not a newer run of the advice made at their own start.
    let yaml = yaml
        .replace("__PORT__", &port.to_string())
        .replace("__QUERY_STORE__", query_store)
        .replace("__AGGREGATION__", "false");
    let path = cfg.with_file_name(format!("config-{query_store}-{port}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let child = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&path)
            .env("KUBECOST_BRIDGE_ADMIN_TOKEN", TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/costs/kubernetes/cluster-1/namespaces?start={}&end={}&limit=1000",
        rfc(range.start),
        rfc(range.end)
    );
    (child, url)
}

/// Waits until `url` answers 200 and returns the JSON body.
fn wait_ok(child: &mut Reaped, url: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((200, body)) = http_get(url, Some(TOKEN)) {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(child.0.try_wait().unwrap().is_none(), "run exited early");
        assert!(Instant::now() < deadline, "run never served {url}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `run` with `query_store`, waits until it serves, and returns the namespaces answer
/// for `range` and the `/optimization` answer (the JSON bodies).
fn serve_namespaces(
    cfg: &std::path::Path,
    query_store: &str,
    range: Window,
) -> (serde_json::Value, serde_json::Value) {
    let (mut child, url) = start_run(cfg, query_store, range);
    let namespaces = wait_ok(&mut child, &url);
    let base = url.split("/namespaces?").next().unwrap();
    let optimization = wait_ok(&mut child, &format!("{base}/optimization"));
    (namespaces, optimization)
}

/// The bridge's part of an `/optimization` answer: its run (when, window, monthly cost) and
/// its recommendations, Kubecost's left out.
fn bridge_advice(v: &serde_json::Value) -> serde_json::Value {
    let recs: Vec<serde_json::Value> = v["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "bridge")
        .cloned()
        .collect();
    serde_json::json!({
        "monthly_cost": v["monthly_cost"],
        "made_at": v["made_at"],
        "observed": v["observed"],
        "recommendations": recs,
    })
}

fn namespace_totals(v: &serde_json::Value) -> Vec<(String, f64)> {
    v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["namespace"].as_str().unwrap().to_string(),
                n["total_cost"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn run_serves_the_same_namespace_totals_from_clickhouse_as_from_sqlite() {
    let server = Server::clickhouse();
    let sim = Sim::start(sim_config(1, 20));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{FAST}clickhouse:\n  database: bridge_query_store\n  mirror_interval: 1s\n\
         api:\n  listen: \"127.0.0.1:__PORT__\"\n  query_store: __QUERY_STORE__\n  cache_ttl: 1s\n\
         aggregation:\n  enabled: __AGGREGATION__\n  optimization:\n    observe: 12d\n"
    );
    let cfg_path = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let yaml = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "cloudtuner:\n  storage:\n",
        &format!(
            "cloudtuner:\n  storage:\n    clickhouse: \"{}\"\n",
            server.url
        ),
    );
    // `run`'s own catch-up extracts only the last hours, outside the range compared.
    let yaml = yaml.replace("extract:\n", "extract:\n  lookback: 2h\n");
    std::fs::write(&cfg_path, &yaml).unwrap();

    // Backfill: SQLite gets the windows and the aggregator's results, and the mirror copies
    // both to ClickHouse. The backfilled days are 10 days ago: the advice observes 12 days.
    let range = past_range(30);
    let backfill_cfg = cfg_path.with_file_name("config-backfill.yaml");
    std::fs::write(
        &backfill_cfg,
        yaml.replace("__PORT__", "0")
            .replace("__QUERY_STORE__", "sqlite")
            .replace("__AGGREGATION__", "true"),
    )
    .unwrap();
    run_ok(
        bin()
            .args(["backfill", "--config"])
            .arg(&backfill_cfg)
            .args(["--from", &rfc(range.start), "--to", &rfc(range.end)]),
    );

    // The mirror's copies read back the same through the insight port.
    let sqlite = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let mut ch_cfg = kb_clickhouse::ClickHouseConfig::new(server.url.clone());
    ch_cfg.database = "bridge_query_store".into();
    let ch = kb_clickhouse::ClickHouseStore::open(&ch_cfg).unwrap();
    let wide = Window::new(range.start - 40 * 86_400, range.end + 40 * 86_400).unwrap();
    let mut summaries = 0;
    for g in Granularity::ALL {
        for dimension in Dimension::ALL {
            let q = SummaryQuery {
                cluster: Some("cluster-1".into()),
                dimension,
                granularity: g,
                range: wide,
                namespace: None,
                name: None,
            };
            let want = sqlite.summaries(&q).unwrap();
            summaries += want.len();
            kb_conformance::insights::compare_summaries(
                &format!("{q:?}"),
                &ch.summaries(&q).unwrap(),
                &want,
            )
            .unwrap();
        }
    }
    assert!(summaries > 0, "the backfill aggregated");
    assert_eq!(
        ch.anomalies(Some("cluster-1"), wide).unwrap(),
        sqlite.anomalies(Some("cluster-1"), wide).unwrap()
    );
    assert_eq!(
        ch.forecasts("cluster-1").unwrap(),
        sqlite.forecasts("cluster-1").unwrap()
    );
    assert_eq!(
        InsightReader::budgets(&ch, "cluster-1").unwrap(),
        sqlite.budgets("cluster-1").unwrap()
    );
    assert_eq!(
        InsightReader::savings(&ch, "cluster-1").unwrap(),
        sqlite.savings("cluster-1").unwrap()
    );
    let advice = sqlite.recommendations("cluster-1").unwrap();
    assert!(
        advice.as_ref().is_some_and(|a| !a.items.is_empty()),
        "the backfill made the bridge's recommendations: {advice:?}"
    );
    assert_eq!(ch.recommendations("cluster-1").unwrap(), advice);
    drop((sqlite, ch));

    let (from_sqlite, opt_sqlite) = serve_namespaces(&cfg_path, "sqlite", range);
    let (from_clickhouse, opt_clickhouse) = serve_namespaces(&cfg_path, "clickhouse", range);
    // `/optimization`: the same bridge advice from either store.
    let advice = advice.unwrap();
    let (ba, bb) = (bridge_advice(&opt_sqlite), bridge_advice(&opt_clickhouse));
    assert_eq!(ba, bb, "sqlite {opt_sqlite}\nclickhouse {opt_clickhouse}");
    assert_eq!(
        ba["recommendations"].as_array().unwrap().len(),
        advice.items.len(),
        "{opt_sqlite}"
    );
    assert!(ba["made_at"].is_string(), "{opt_sqlite}");
    let (a, b) = (
        namespace_totals(&from_sqlite),
        namespace_totals(&from_clickhouse),
    );
    assert!(a.len() > 1, "{from_sqlite}");
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((ns, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            kb_core::cost::relative_error(*x, *y) <= 1e-9,
            "{ns}: sqlite {x} clickhouse {y}"
        );
    }
    assert_eq!(from_sqlite["source"], from_clickhouse["source"]);
    let (ta, tb) = (
        from_sqlite["total_cost"].as_f64().unwrap(),
        from_clickhouse["total_cost"].as_f64().unwrap(),
    );
    assert!(
        ta > 0.0 && kb_core::cost::relative_error(ta, tb) <= 1e-9,
        "{ta} vs {tb}"
    );

    // ClickHouse down when `run` starts: it starts all the same (SQLite takes the writes),
    // the API answers with an error, and serves again once ClickHouse is back.
    server.run("stop");
    let (mut child, url) = start_run(&cfg_path, "clickhouse", range);
    let base = url.split("/api/").next().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&format!("{base}/readyz"), Some(TOKEN)).map(|r| r.0) != Some(200) {
        assert!(child.0.try_wait().unwrap().is_none(), "run exited early");
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = http_get(&url, Some(TOKEN)).unwrap();
    assert!(status >= 500, "{status} {body}");
    server.run("start");
    let back = wait_ok(&mut child, &url);
    assert_eq!(namespace_totals(&back).len(), a.len());
    assert_eq!(back["total_cost"], from_clickhouse["total_cost"]);
}

#[test]
fn check_config_refuses_clickhouse_queries_without_clickhouse() {
    let sim = Sim::start(sim_config(1, 2));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim,
        &["cluster-1"],
        "api:\n  query_store: clickhouse\n",
    );
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api.query_store") && err.contains("no ClickHouse is configured"),
        "{err}"
    );
    let cfg = write_config(
        dir.path(),
        &sim,
        &["cluster-1"],
        "api:\n  query_store: mongo\n",
    );
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not sqlite or clickhouse"));
}
