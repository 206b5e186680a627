//! Helpers: serve a receiver or a simulator on 127.0.0.1, build requests, ground truth.

use kb_pipeline::shutdown::Shutdown;
use kb_remote_write::proto::{Label, ProtoSample, TimeSeries, WriteRequest, encode_write_request};
use kb_remote_write::{
    LiveCosts, Receiver, ReceiverConfig, SampleSink, Secret, Source, auth::basic_auth_header,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// 2024-06-03T13:30:00Z, a minute boundary on a Monday afternoon.
pub(crate) const NOW: i64 = 1_717_421_400;

pub(crate) fn sources() -> Vec<Source> {
    vec![
        Source {
            cloud_account_id: "ds-1".into(),
            cluster: "cluster-1".into(),
            username: "collector".into(),
            password: Secret::new("s3cret-1"),
        },
        Source {
            cloud_account_id: "ds-2".into(),
            cluster: "cluster-2".into(),
            username: "collector".into(),
            password: Secret::new("s3cret-2"),
        },
    ]
}

pub(crate) fn auth(i: usize) -> String {
    let s = &sources()[i];
    basic_auth_header(&s.username, &s.password)
}

/// A receiver served over loopback HTTP.
pub(crate) struct Served {
    pub(crate) base: String,
    pub(crate) shutdown: Shutdown,
    pub(crate) receiver: Option<Receiver>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    pub(crate) async fn start(cfg: ReceiverConfig, sink: Arc<dyn SampleSink>) -> Served {
        let shutdown = Shutdown::new();
        let receiver = Receiver::start(cfg, sink, shutdown.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = receiver.router();
        let s2 = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s2.wait().await })
                .await
                .unwrap();
        });
        Served {
            base,
            shutdown,
            receiver: Some(receiver),
            task: Some(task),
        }
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        if let Some(r) = self.receiver.take() {
            r.join().await;
        }
    }
}

pub(crate) fn live() -> Arc<LiveCosts> {
    Arc::new(LiveCosts::default())
}

pub(crate) fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| ProtoSample { value, timestamp })
            .collect(),
    }
}

pub(crate) fn body(ts: Vec<TimeSeries>) -> Vec<u8> {
    encode_write_request(&WriteRequest { timeseries: ts })
}

/// A small valid request: one node price and one container allocation.
pub(crate) fn valid_body(t_ms: i64) -> Vec<u8> {
    body(vec![
        series(
            &[("__name__", "node_cpu_hourly_cost"), ("node", "n1")],
            &[(t_ms, 0.04)],
        ),
        series(
            &[
                ("__name__", "container_cpu_allocation"),
                ("cluster_id", "cluster-1"),
                ("container", "app"),
                ("namespace", "payments"),
                ("node", "n1"),
                ("pod", "p-1"),
            ],
            &[(t_ms, 2.0)],
        ),
    ])
}

pub(crate) async fn post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut r = client
        .post(format!("{base}{path}"))
        .timeout(std::time::Duration::from_secs(30));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(body).send().await.unwrap()
}

/// Standard remote_write headers for source `i`.
pub(crate) fn rw_headers(i: usize) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Encoding", "snappy".to_string()),
        ("Content-Type", "application/x-protobuf".to_string()),
        ("X-Prometheus-Remote-Write-Version", "0.1.0".to_string()),
        ("Cloud-Account-Id", sources()[i].cloud_account_id.clone()),
        ("Authorization", auth(i)),
    ]
}

pub(crate) fn as_refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A simulator with a settable clock.
pub(crate) struct Sim {
    pub(crate) base: String,
    pub(crate) clock: Arc<AtomicI64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub(crate) fn sim_cfg() -> kb_sim::SimConfig {
    kb_sim::SimConfig {
        clusters: 1,
        pods: 80,
        seed: 11,
        ..kb_sim::SimConfig::default()
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Sim {
    pub(crate) async fn start(t: i64) -> Sim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = Arc::new(AtomicI64::new(t));
        let c = clock.clone();
        let f: kb_sim::Clock = Arc::new(move || c.load(Ordering::SeqCst));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kb_sim::serve_with_clock(
            listener,
            sim_cfg(),
            f,
            async move {
                rx.await.ok();
            },
        ));
        Sim {
            base,
            clock,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) fn set(&self, t: i64) {
        self.clock.store(t, Ordering::SeqCst);
    }

    /// Ground truth: per-namespace cost rate ($/h) over `[minute, minute + 60)` from the
    /// simulator's allocation API (cpu + ram + gpu + pv + load balancer; network and shared
    /// tenancy costs are not in the metrics). Moves the clock past the window.
    pub(crate) async fn truth(&self, minute: i64) -> HashMap<String, f64> {
        let saved = self.clock.load(Ordering::SeqCst);
        self.set(minute + 7_200);
        let url = format!(
            "{}/model/allocation?window={},{}&aggregate=namespace&accumulate=true&idle=false",
            self.base,
            minute,
            minute + 60
        );
        let v: serde_json::Value =
            serde_json::from_slice(&reqwest::get(&url).await.unwrap().bytes().await.unwrap())
                .unwrap();
        self.set(saved);
        let set = v["data"][0].as_object().unwrap();
        let mut out = HashMap::new();
        for (k, a) in set {
            if k.starts_with("__") {
                continue;
            }
            let f = |n: &str| a[n].as_f64().unwrap_or(0.0);
            let cost =
                f("cpuCost") + f("ramCost") + f("gpuCost") + f("pvCost") + f("loadBalancerCost");
            out.insert(k.clone(), cost * 60.0);
        }
        out
    }

    /// Σ cpuCoreUsageAverage over containers in `[minute, minute + 60)`.
    pub(crate) async fn cpu_usage_truth(&self, minute: i64) -> f64 {
        let saved = self.clock.load(Ordering::SeqCst);
        self.set(minute + 7_200);
        let url = format!(
            "{}/model/allocation?window={},{}&accumulate=true&idle=false",
            self.base,
            minute,
            minute + 60
        );
        let v: serde_json::Value =
            serde_json::from_slice(&reqwest::get(&url).await.unwrap().bytes().await.unwrap())
                .unwrap();
        self.set(saved);
        v["data"][0]
            .as_object()
            .unwrap()
            .values()
            .map(|a| a["cpuCoreUsageAverage"].as_f64().unwrap_or(0.0))
            .sum()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

pub(crate) fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    (a - b).abs() / a.abs().max(b.abs())
}

/// Compares live namespace rates with the truth; returns the worst relative error and a report.
pub(crate) fn compare(
    live: &LiveCosts,
    cluster: &str,
    truth: &HashMap<String, f64>,
) -> (f64, String) {
    let got: HashMap<String, f64> = live
        .namespace_rates(cluster)
        .into_iter()
        .map(|n| (n.namespace, n.rates.rate.total()))
        .collect();
    let mut worst = 0.0f64;
    let mut report = String::new();
    for (ns, want) in truth {
        let have = got.get(ns).copied().unwrap_or(0.0);
        let e = rel(have, *want);
        worst = worst.max(e);
        report.push_str(&format!(
            "{ns}: live {have:.6} truth {want:.6} err {e:.2e}\n"
        ));
    }
    for ns in got.keys().filter(|n| !truth.contains_key(*n)) {
        if got[ns] > 0.0 {
            worst = worst.max(1.0);
            report.push_str(&format!("{ns}: live {} but absent from truth\n", got[ns]));
        }
    }
    (worst, report)
}
