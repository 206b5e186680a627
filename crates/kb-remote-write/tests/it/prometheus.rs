//! End to end with a real Prometheus 2.42 (Debian's package, started by
//! `scripts/services/prometheus.sh`): it scrapes the simulator's `/metrics` and remote_writes
//! to the receiver with Basic auth and `Cloud-Account-Id`. If Prometheus cannot be installed or
//! started, the test fails and says why.

use crate::common::*;
use kb_remote_write::{ReceiverConfig, SampleSink};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/prometheus.sh")
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A Prometheus started by the project's script; stopped (and its dir removed) on drop.
pub(crate) struct Prometheus {
    pub(crate) url: String,
    env: Vec<(String, String)>,
}

impl Prometheus {
    pub(crate) fn start(env: &[(&str, String)]) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kb-rw-prom-{}-{port}", std::process::id()));
        let mut all: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        all.push(("PROMETHEUS_PORT".into(), port.to_string()));
        all.push(("PROMETHEUS_DIR".into(), dir.display().to_string()));
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .envs(all.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run scripts/services/prometheus.sh");
        if !out.status.success() {
            panic!(
                "Prometheus 2.42 could not be started by scripts/services/prometheus.sh \
                 (exit {:?}); this test needs the Debian package `prometheus` \
                 (apt-get install prometheus) and free loopback ports.\nstderr:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "script printed {url:?}"
        );
        Prometheus { url, env: all }
    }

    pub(crate) fn version(&self) -> String {
        let out = Command::new("prometheus").arg("--version").output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
    }

    pub(crate) async fn query(&self, q: &str) -> serde_json::Value {
        let b = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        Command::new("bash")
            .arg(script())
            .arg("clean")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_remote_writes_live_costs() {
    // The simulator's clock stays inside one minute so its page (and the truth) is fixed.
    let sim = Sim::start(NOW + 30).await;
    let truth = sim.truth(NOW).await;
    let live = live();
    let cfg = ReceiverConfig {
        sources: sources(),
        ..ReceiverConfig::default()
    };
    let srv = Served::start(cfg, live.clone() as Arc<dyn SampleSink>).await;
    let src = &sources()[0];
    let sim_hostport = sim.base.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&[
        ("PROMETHEUS_SCRAPE_TARGETS", sim_hostport),
        ("PROMETHEUS_SCRAPE_INTERVAL", "1s".into()),
        // Debian's 2.42.0+ds drops `remote_write.headers` (prometheus/prometheus#13030), so
        // the source id also rides in the URL; the header stays configured as the chart does.
        (
            "PROMETHEUS_REMOTE_WRITE_URL",
            format!(
                "{}/storage/api/v2/write?cloud_account_id={}",
                srv.base, src.cloud_account_id
            ),
        ),
        ("PROMETHEUS_REMOTE_WRITE_USERNAME", src.username.clone()),
        (
            "PROMETHEUS_REMOTE_WRITE_PASSWORD",
            src.password.expose().to_string(),
        ),
        (
            "PROMETHEUS_REMOTE_WRITE_HEADERS",
            format!("Cloud-Account-Id: {}", src.cloud_account_id),
        ),
    ]);
    let version = prom.version();
    assert!(
        version.contains("2.42"),
        "expected Prometheus 2.42, got {version:?}"
    );

    // Wait until every namespace matches (first batch comes ~6 s after start).
    let start = Instant::now();
    let deadline = start + Duration::from_secs(90);
    let mut last = (1.0, String::new());
    while Instant::now() < deadline {
        last = compare(&live, "cluster-1", &truth);
        if last.0 < 0.01 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = srv.receiver.as_ref().unwrap().stats();
    assert!(
        last.0 < 0.01,
        "namespace rates did not converge within 1% (accepted {} requests, {} unauthorized, {} rejected):\n{}",
        stats.accepted_requests.load(Ordering::Relaxed),
        stats.unauthorized_requests.load(Ordering::Relaxed),
        stats.rejected_requests.load(Ordering::Relaxed),
        last.1
    );
    assert_eq!(stats.unauthorized_requests.load(Ordering::Relaxed), 0);
    assert_eq!(stats.rejected_requests.load(Ordering::Relaxed), 0);

    // Freshness: a scrape's samples become queryable within 10 s of the scrape.
    let mut worst_lag = 0i64;
    let mut observed = 0;
    let mut prev = live.newest_sample_ms("cluster-1").unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let n = live.newest_sample_ms("cluster-1").unwrap_or(0);
        if n > prev {
            worst_lag = worst_lag.max(now_ms() - n);
            observed += 1;
            prev = n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        observed >= 3,
        "new samples kept arriving ({observed} updates in 8 s)"
    );
    assert!(
        worst_lag < 10_000,
        "sample to queryable took {worst_lag} ms"
    );
    // Prometheus itself reports no failed samples.
    let v = prom
        .query("sum(prometheus_remote_storage_samples_failed_total)")
        .await;
    let failed: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap();
    assert_eq!(failed, 0.0, "{v}");
    println!(
        "prometheus {version}: converged in {:?}, worst scrape-to-queryable lag {worst_lag} ms",
        start.elapsed()
    );
    drop(prom);
    srv.stop().await;
    sim.stop().await;
}
