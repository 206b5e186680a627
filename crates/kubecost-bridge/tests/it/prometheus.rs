//! Every series of the metrics contract (`deploy/prometheus/README.md`), scraped from a running
//! `run` by a real Prometheus 2.42 (Debian's package, started by
//! `scripts/services/prometheus.sh`) and read back through Prometheus's HTTP API with the
//! expected labels. The same Prometheus remote_writes to the bridge (accepted samples), and the
//! test sends a request with wrong credentials and a malformed one (the rejection outcomes).
//! If Prometheus cannot be installed or started, the test fails and says why.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Reaped, Sim, bin, free_port, sim_config, write_config};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/prometheus.sh")
}

/// A blocking HTTP client for tests: a current-thread runtime around `reqwest`.
pub(crate) struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    pub(crate) fn new() -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Sends `req` (built on [`Http::client`]); `None` when no answer arrived.
    pub(crate) fn send(&self, req: reqwest::RequestBuilder) -> Option<(u16, String)> {
        self.rt.block_on(async {
            let r = req.send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        })
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn get(&self, url: &str) -> Option<(u16, String)> {
        self.send(self.client.get(url))
    }
}

/// A Prometheus started by the project's script; stopped (and its dir removed) on drop.
struct Prometheus {
    url: String,
    env: Vec<(String, String)>,
}

impl Prometheus {
    fn start(env: &[(&str, String)]) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kb-ops-prom-{}-{port}", std::process::id()));
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
                "Prometheus could not be started by scripts/services/prometheus.sh (exit {:?}); \
                 this test needs the Debian package `prometheus` and free loopback ports.\n\
                 stderr:\n{}",
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

    /// The instant vector of `q` as `(labels, value)` pairs.
    fn query(&self, http: &Http, q: &str) -> Vec<(serde_json::Value, f64)> {
        let req = http
            .client()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)]);
        let Some((_, body)) = http.send(req) else {
            return Vec::new();
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
            return Vec::new();
        };
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                (r["metric"].clone(), value)
            })
            .collect()
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

/// One expectation: a series name, the labels it must carry, and a check of its value.
struct Want {
    name: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    /// Other labels the series must have (any value).
    has: Vec<&'static str>,
    value: fn(f64) -> bool,
}

fn want(
    name: &'static str,
    labels: &[(&'static str, &'static str)],
    has: &[&'static str],
    value: fn(f64) -> bool,
) -> Want {
    Want {
        name,
        labels: labels.to_vec(),
        has: has.to_vec(),
        value,
    }
}

fn positive(v: f64) -> bool {
    v > 0.0
}

fn at_least_one(v: f64) -> bool {
    v >= 1.0
}

/// A `job="targets"` selector with the wanted labels.
fn selector(w: &Want) -> String {
    let mut s = format!("{}{{job=\"targets\"", w.name);
    for (k, v) in &w.labels {
        s.push_str(&format!(",{k}=\"{v}\""));
    }
    s.push('}');
    s
}

#[test]
fn every_contract_series_is_scraped_by_a_real_prometheus_with_its_labels() {
    let sim = Sim::start(sim_config(1, 30));
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let password = "rw-test-password";
    // 50 hours: enough closed days for the 24 h cost increase ratio.
    let extra = format!(
        "extract:\n  lookback: 50h\n  settle: 0s\n  hourly_retention: 100000h\n  request_timeout: 10s\napi:\n  listen: \"127.0.0.1:{api_port}\"\n  audit_log: \"off\"\nremote_write:\n  sources:\n    - cloud_account_id: ds-1\n      cluster: cluster-1\n      username: collector\n      password_env: KB_OPS_TEST_RW_PASSWORD\n"
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let mut child = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .env("KB_OPS_TEST_RW_PASSWORD", password)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{api_port}");
    let http = Http::new();
    // Wait for the catch-up and the aggregation that follows it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = http
            .get(&format!("{base}/metrics"))
            .map(|(_, b)| b)
            .unwrap_or_default();
        if page.contains("kubecost_bridge_cost_increase_ratio{") {
            break;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the bridge did not finish its catch-up; /metrics:\n{page}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Rejections, as a misconfigured sender would cause them.
    let write = |user_password: &str| {
        http.client()
            .post(format!("{base}/api/v1/write"))
            .header("Cloud-Account-Id", "ds-1")
            .basic_auth("collector", Some(user_password))
    };
    let bad_auth = http.send(write("wrong").body(vec![0u8; 16])).unwrap();
    assert_eq!(bad_auth.0, 401);
    let malformed = http
        .send(write(password).body(b"not snappy".to_vec()))
        .unwrap();
    assert_eq!(malformed.0, 400, "{malformed:?}");
    // An API request, so the API's latency has a route of its own.
    let health = http.get(&format!("{base}/healthz")).unwrap();
    assert_eq!(health.0, 200);

    let prom = Prometheus::start(&[
        ("PROMETHEUS_SCRAPE_TARGETS", format!("127.0.0.1:{api_port}")),
        ("PROMETHEUS_SCRAPE_INTERVAL", "1s".into()),
        // Debian's 2.42 drops remote_write.headers: the source id rides in the URL.
        (
            "PROMETHEUS_REMOTE_WRITE_URL",
            format!("{base}/api/v1/write?cloud_account_id=ds-1"),
        ),
        ("PROMETHEUS_REMOTE_WRITE_USERNAME", "collector".into()),
        ("PROMETHEUS_REMOTE_WRITE_PASSWORD", password.into()),
    ]);

    let wants = vec![
        want("kubecost_bridge_build_info", &[], &["version"], |v| {
            v == 1.0
        }),
        want(
            "kubecost_bridge_extraction_runs_total",
            &[
                ("cluster", "cluster-1"),
                ("endpoint", "allocation"),
                ("outcome", "success"),
            ],
            &[],
            |v| v >= 49.0,
        ),
        want(
            "kubecost_bridge_extraction_runs_total",
            &[
                ("cluster", "cluster-1"),
                ("endpoint", "allocation"),
                ("outcome", "failure"),
            ],
            &[],
            |v| v == 0.0,
        ),
        want(
            "kubecost_bridge_extraction_runs_total",
            &[
                ("cluster", "cluster-1"),
                ("endpoint", "assets"),
                ("outcome", "success"),
            ],
            &[],
            at_least_one,
        ),
        want(
            "kubecost_bridge_kubecost_request_duration_seconds_bucket",
            &[
                ("cluster", "cluster-1"),
                ("endpoint", "allocation"),
                ("code", "200"),
                ("le", "+Inf"),
            ],
            &[],
            |v| v >= 98.0,
        ),
        want(
            "kubecost_bridge_kubecost_request_duration_seconds_count",
            &[
                ("cluster", "cluster-1"),
                ("endpoint", "assets"),
                ("code", "200"),
            ],
            &[],
            at_least_one,
        ),
        want(
            "kubecost_bridge_kubecost_request_duration_seconds_sum",
            &[
                ("cluster", "cluster-1"),
                ("endpoint", "allocation"),
                ("code", "200"),
            ],
            &[],
            positive,
        ),
        want(
            "kubecost_bridge_data_freshness_seconds",
            &[("cluster", "cluster-1"), ("source", "allocation")],
            &[],
            |v| v >= 0.0,
        ),
        want(
            "kubecost_bridge_data_freshness_seconds",
            &[("cluster", "cluster-1"), ("source", "remote_write")],
            &[],
            |v| v >= 0.0,
        ),
        want(
            "kubecost_bridge_rows_written_total",
            &[("store", "sqlite"), ("table", "allocations")],
            &[],
            positive,
        ),
        want(
            "kubecost_bridge_rows_written_total",
            &[("store", "sqlite"), ("table", "assets")],
            &[],
            positive,
        ),
        want(
            "kubecost_bridge_spool_depth",
            &[("store", "realtime")],
            &[],
            |v| v >= 0.0,
        ),
        want(
            "kubecost_bridge_spool_bytes",
            &[("store", "realtime")],
            &[],
            |v| v >= 0.0,
        ),
        want(
            "kubecost_bridge_remote_write_requests_total",
            &[("source", "cluster-1"), ("outcome", "accepted")],
            &[],
            at_least_one,
        ),
        want(
            "kubecost_bridge_remote_write_samples_total",
            &[("source", "cluster-1"), ("outcome", "accepted")],
            &[],
            positive,
        ),
        want(
            "kubecost_bridge_remote_write_requests_total",
            &[("source", "cluster-1"), ("outcome", "rejected")],
            &[],
            at_least_one,
        ),
        want(
            "kubecost_bridge_remote_write_requests_total",
            &[("source", "unauthenticated"), ("outcome", "unauthorized")],
            &[],
            at_least_one,
        ),
        want(
            "kubecost_bridge_remote_write_requests_total",
            &[("source", "cluster-1"), ("outcome", "too_large")],
            &[],
            |v| v == 0.0,
        ),
        want(
            "kubecost_bridge_reconciliation_relative_error",
            &[("cluster", "cluster-1"), ("endpoint", "allocation")],
            &[],
            |v| (0.0..1e-6).contains(&v),
        ),
        want(
            "kubecost_bridge_storage_used_bytes",
            &[("store", "sqlite"), ("disk", "data")],
            &[],
            positive,
        ),
        want(
            "kubecost_bridge_storage_capacity_bytes",
            &[("store", "sqlite"), ("disk", "data")],
            &[],
            positive,
        ),
        want(
            "kubecost_bridge_storage_used_ratio",
            &[("store", "sqlite"), ("disk", "data")],
            &[],
            |v| v > 0.0 && v <= 1.0,
        ),
        want(
            "kubecost_bridge_cost_increase_ratio",
            &[("cluster", "cluster-1")],
            &["namespace"],
            |v| v.is_finite(),
        ),
        want(
            "kubecost_bridge_http_request_duration_seconds_count",
            &[("route", "/metrics"), ("method", "GET"), ("code", "200")],
            &[],
            at_least_one,
        ),
        want(
            "kubecost_bridge_http_request_duration_seconds_bucket",
            &[
                ("route", "/healthz"),
                ("method", "GET"),
                ("code", "200"),
                ("le", "+Inf"),
            ],
            &[],
            at_least_one,
        ),
        want(
            "kubecost_bridge_http_request_duration_seconds_count",
            &[
                ("route", "/api/v1/write"),
                ("method", "POST"),
                ("code", "204"),
            ],
            &[],
            at_least_one,
        ),
    ];
    let check = |w: &Want| -> Result<(), String> {
        let sel = selector(w);
        let got = prom.query(&http, &sel);
        let hit = got
            .iter()
            .find(|(labels, v)| w.has.iter().all(|k| labels[*k].is_string()) && (w.value)(*v));
        match hit {
            Some(_) => Ok(()),
            None => Err(format!("{sel}: {got:?}")),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let missing = loop {
        let missing: Vec<String> = wants.iter().filter_map(|w| check(w).err()).collect();
        if missing.is_empty() {
            break missing;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let up = prom.query(&http, "up{job=\"targets\"}");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        missing.is_empty(),
        "series missing or wrong in Prometheus:\n{}\nup: {up:?}",
        missing.join("\n")
    );
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].1, 1.0, "the bridge's /metrics was scraped: {up:?}");
    // Every family of the contract was checked above.
    let contract = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/README.md"),
    )
    .unwrap();
    for line in contract.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(name) = cells
            .get(1)
            .filter(|c| c.starts_with("`kubecost_bridge_"))
            .map(|c| c.trim_matches('`'))
        else {
            continue;
        };
        assert!(
            wants.iter().any(|w| w.name.starts_with(name)),
            "the contract's {name} is not checked here"
        );
    }
}
