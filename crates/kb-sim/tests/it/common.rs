//! Test helpers: start a simulator with a fixed clock and fetch JSON.

use kb_sim::{Clock, SimConfig};
use std::sync::Arc;

/// A fixed "now": 2024-06-03T13:30:00Z (a Monday afternoon).
pub(crate) const NOW: i64 = 1_717_421_400;
/// Midnight of NOW's day.
pub(crate) const DAY0: i64 = NOW - NOW % 86_400;

pub(crate) struct Sim {
    pub(crate) base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Sim {
    pub(crate) async fn start(cfg: SimConfig) -> Sim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let clock: Clock = Arc::new(|| NOW);
        let task = tokio::spawn(kb_sim::serve_with_clock(listener, cfg, clock, async move {
            rx.await.ok();
        }));
        Sim {
            base: format!("http://{addr}"),
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{}", self.base, path))
            .await
            .unwrap()
    }

    pub(crate) async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let b = r.bytes().await.unwrap();
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{path}: {e}"))
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

pub(crate) fn cfg(clusters: usize, pods: usize, seed: u64) -> SimConfig {
    SimConfig {
        clusters,
        pods,
        seed,
        ..SimConfig::default()
    }
}

pub(crate) fn pair(start: i64, end: i64) -> String {
    format!("{start},{end}")
}

/// Sum of `totalCost` over every row of every set.
pub(crate) fn total(v: &serde_json::Value) -> f64 {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_object().unwrap().values())
        .map(|a| a["totalCost"].as_f64().unwrap())
        .sum()
}

pub(crate) fn rel(a: f64, b: f64) -> f64 {
    kb_core::cost::relative_error(a, b)
}
