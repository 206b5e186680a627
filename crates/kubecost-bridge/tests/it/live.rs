//! The live series to InfluxDB: `run` with scrapes of the simulator's `/metrics` and InfluxDB
//! configured writes `live_costs` points every persist round, with the same rates as the
//! `realtime` summaries it stores in SQLite.

use std::time::{Duration, Instant};

use kb_analytics::{Dimension, Granularity};
use kb_core::Window;
use kb_pipeline::insights::{InsightReader, Source, SummaryQuery};

use crate::mirror::Server;
use crate::{Sim, bin, sim_config, write_config};

/// `namespace -> every total_rate InfluxDB holds` for cluster-1.
fn influx_rates(ic: &kb_influx::InfluxConfig) -> Vec<(String, Vec<f64>)> {
    let Ok(store) = kb_influx::InfluxStore::open(ic) else {
        return Vec::new();
    };
    let Ok(series) = store
        .client()
        .query("SELECT total_rate FROM live_costs WHERE cluster = 'cluster-1' GROUP BY namespace")
    else {
        return Vec::new();
    };
    series
        .into_iter()
        .map(|s| {
            let i = s.column("total_rate").unwrap();
            let ns = s.tags.get("namespace").cloned().unwrap_or_default();
            (ns, s.values.iter().filter_map(|v| v[i].as_f64()).collect())
        })
        .collect()
}

#[test]
fn run_writes_the_live_costs_to_influxdb() {
    let server = Server::influxdb();
    let sim = Sim::start(sim_config(1, 20));
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "extract:\n  lookback: 2h\n  settle: 0s\napi:\n  listen: \"127.0.0.1:{port}\"\n\
         realtime:\n  scrape: [cluster-1]\n  scrape_interval: 1s\n  persist_interval: 1s\n\
         influxdb:\n  database: bridge_live\n"
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let yaml = std::fs::read_to_string(&cfg).unwrap().replace(
        "cloudtuner:\n  storage:\n",
        &format!(
            "cloudtuner:\n  storage:\n    influxdb: \"{}\"\n",
            server.url
        ),
    );
    std::fs::write(&cfg, yaml).unwrap();
    let mut child = bin()
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ic = kb_influx::InfluxConfig::v1(server.url.clone());
    if let kb_influx::InfluxApi::V1 { database, .. } = &mut ic.api {
        *database = "bridge_live".into();
    }
    ic.create_database = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    // Two rounds at least, so the series has history.
    loop {
        let rates = influx_rates(&ic);
        if rates
            .iter()
            .any(|(ns, v)| ns == "kube-system" && v.len() >= 2)
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "run exited early");
        assert!(Instant::now() < deadline, "no live_costs points: {rates:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Each round writes InfluxDB first, then the realtime summaries: the summaries' rates are
    // among the points InfluxDB holds, namespace by namespace.
    let rates = influx_rates(&ic);
    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<_> = store
        .summaries(&SummaryQuery {
            cluster: Some("cluster-1".into()),
            dimension: Dimension::Namespace,
            granularity: Granularity::Hour,
            range: Window::new(now - 7200, now + 3600).unwrap(),
            namespace: None,
            name: None,
        })
        .unwrap()
        .into_iter()
        .filter(|r| r.source == Source::Realtime)
        .collect();
    assert!(!rows.is_empty());
    for r in &rows {
        let want = r.summary.totals.total_cost;
        let points = rates
            .iter()
            .find(|(ns, _)| *ns == r.summary.namespace)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(
            points
                .iter()
                .any(|p| kb_core::cost::relative_error(*p, want) <= 1e-9),
            "{}: {want} not among {points:?}",
            r.summary.namespace
        );
    }
    // The cluster's whole rate has the empty namespace.
    assert!(
        rates
            .iter()
            .any(|(ns, v)| ns.is_empty() && v.iter().all(|x| *x > 0.0)),
        "{rates:?}"
    );
}
