//! The seed's alerts end to end, through `run` and a local webhook receiver:
//!
//! - a Kubecost answering every request with a 500 (the simulator's `fail_rate`) fires the
//!   extraction failure-rate alert and the stale-data alert; once Kubecost recovers (a healthy
//!   simulator on the same port), the failure-rate alert resolves, the resolved notification
//!   reaches the receiver and the state kept in the store is `resolved`;
//! - a cost spike injected in the simulator (`--spike NS:FACTOR:START`) fires the spike alert
//!   from the anomaly detector's 24 h increase.

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kb_core::window::{HOUR, floor_to};

use crate::Reaped;
use crate::{Sim, bin, sim_config, write_config, write_config_for};

/// A webhook receiver on a free loopback port that keeps every body it gets.
pub(crate) fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |body: String| {
                    let keep = keep.clone();
                    async move {
                        keep.lock().unwrap().push(body);
                        "ok"
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}/hook"), bodies)
}

/// The generic notifications received so far.
fn notes(bodies: &Mutex<Vec<String>>) -> Vec<serde_json::Value> {
    bodies
        .lock()
        .unwrap()
        .iter()
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect()
}

fn has(notes: &[serde_json::Value], alert: &str, status: &str) -> bool {
    notes
        .iter()
        .any(|n| n["alert"] == alert && n["status"] == status)
}

/// Polls `done` every 200 ms until it holds; kills the bridge and fails with `what` after
/// `secs` or if the bridge exits.
fn wait_for(
    child: &mut Child,
    secs: u64,
    bodies: &Mutex<Vec<String>>,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = notes(bodies);
        if done(&got) {
            return;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("{what}; webhook got: {got:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A simulator served on a fixed loopback port, stoppable so another can take the port.
struct PortSim {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: std::sync::mpsc::Receiver<()>,
}

impl PortSim {
    fn start(port: u16, cfg: kb_sim::SimConfig) -> PortSim {
        // The port was just released by another server: retry the bind for a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        let std_listener = loop {
            match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot bind 127.0.0.1:{port} again: {e}"),
            }
        };
        std_listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                kb_sim::serve(listener, cfg, async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
            let _ = done_tx.send(());
        });
        PortSim {
            stop: Some(stop_tx),
            stopped: done_rx,
        }
    }

    /// Stops serving and waits (bounded) until the port is released.
    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.stopped
            .recv_timeout(Duration::from_secs(20))
            .expect("the failing simulator did not stop");
    }
}

#[test]
fn a_failing_kubecost_fires_the_failure_rate_and_staleness_alerts_which_resolve_on_recovery() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut failing = sim_config(1, 10);
    failing.faults.fail_rate = 1.0;
    let sim = PortSim::start(port, failing);
    let (hook, bodies) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Allocation syncs every 8 s and the failure rate looks back 4 s, so the first evaluation
    // after a healthy sync sees successes only.
    let extra = format!(
        "extract:\n  lookback: 3h\n  settle: 0s\n  hourly_retention: 100000h\n  request_timeout: 5s\n  retry:\n    max_attempts: 2\n    base_delay: 10ms\n    max_delay: 20ms\nschedule:\n  allocation_sync: \"*/8 * * * * *\"\napi:\n  listen: \"127.0.0.1:{api_port}\"\n  audit_log: \"off\"\nalerts:\n  interval: 1s\n  rules:\n    for: 0s\n    stale_after: 2s\n    extraction_failure_window: 4s\n  webhooks:\n    - url: \"{hook}\"\n      format: generic\n"
    );
    let cfg = write_config_for(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        &["cluster-1"],
        &extra,
    );
    let mut child = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .env("KUBECOST_BRIDGE_ADMIN_TOKEN", "alerts-test-admin-token")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );

    wait_for(
        &mut child,
        90,
        &bodies,
        "failure-rate and staleness alerts not delivered",
        |n| {
            has(n, "KubecostBridgeExtractionFailureRate", "firing")
                && has(n, "KubecostBridgeDataStale", "firing")
        },
    );
    let got = notes(&bodies);
    let failure = got
        .iter()
        .find(|v| v["alert"] == "KubecostBridgeExtractionFailureRate")
        .unwrap();
    assert_eq!(failure["labels"]["cluster"], "cluster-1", "{failure}");
    assert_eq!(failure["labels"]["endpoint"], "allocation", "{failure}");
    assert_eq!(failure["value"], 1.0, "every window failed: {failure}");
    assert!(
        !has(&got, "KubecostBridgeExtractionFailureRate", "resolved"),
        "resolved while Kubecost still fails: {got:#?}"
    );

    // Kubecost recovers: the same port now answers with a healthy simulator.
    sim.stop();
    let healthy = PortSim::start(port, sim_config(1, 10));
    wait_for(
        &mut child,
        90,
        &bodies,
        "the failure-rate alert did not resolve after recovery",
        |n| {
            n.iter().any(|v| {
                v["alert"] == "KubecostBridgeExtractionFailureRate"
                    && v["status"] == "resolved"
                    && v["labels"]["endpoint"] == "allocation"
            })
        },
    );
    // The API's /alerts serves the stored states (saved before notifications are queued).
    let url = format!("http://127.0.0.1:{api_port}/api/v1/costs/kubernetes/cluster-1/alerts");
    let (_, body) = crate::http_get(&url, Some("alerts-test-admin-token")).unwrap();
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let served = api["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "KubecostBridgeExtractionFailureRate")
        .unwrap_or_else(|| panic!("not on /alerts: {api:#}"));
    assert_eq!(served["state"], "resolved", "{served}");
    assert!(served["resolved_at"].is_string(), "{served}");
    let _ = child.kill();
    let _ = child.wait();
    healthy.stop();

    let resolved = notes(&bodies)
        .into_iter()
        .find(|v| {
            v["alert"] == "KubecostBridgeExtractionFailureRate"
                && v["status"] == "resolved"
                && v["labels"]["endpoint"] == "allocation"
        })
        .unwrap();
    assert_eq!(resolved["value"], 0.0, "{resolved}");
    assert!(resolved["endsAt"].is_string(), "{resolved}");
    // The states are saved before notifications are queued: the store says resolved.
    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let states: Vec<serde_json::Value> = store
        .load_alert_states()
        .unwrap()
        .into_iter()
        .map(|(_, json)| serde_json::from_str(&json).unwrap())
        .collect();
    let state = states
        .iter()
        .find(|s| {
            s["name"] == "KubecostBridgeExtractionFailureRate"
                && s["labels"]["endpoint"] == "allocation"
        })
        .unwrap_or_else(|| panic!("no stored state: {states:#?}"));
    assert_eq!(state["status"], "resolved", "{state}");
    assert!(state["fired_at"].is_i64(), "{state}");
    assert!(state["resolved_at"].is_i64(), "{state}");
    // And the recovered windows are stored.
    let cps = store
        .checkpoints("cluster-1", kb_pipeline::ports::Endpoint::Allocation)
        .unwrap();
    assert!(!cps.is_empty(), "nothing synced after recovery");
}

#[test]
fn an_injected_cost_spike_fires_the_spike_alert() {
    let now = chrono::Utc::now().timestamp();
    let spike_at = floor_to(now, HOUR) - 20 * HOUR;
    let mut cfg = sim_config(1, 30);
    cfg.spikes.push(kb_sim::Spike {
        namespace: "monitoring".into(),
        factor: 6.0,
        start: spike_at,
    });
    let sim = Sim::start(cfg);
    let (hook, bodies) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // 50 hours: the last 24 closed hours (20 of them spiked) and the 24 before.
    let extra = format!(
        "extract:\n  lookback: 50h\n  settle: 0s\n  hourly_retention: 100000h\n  request_timeout: 10s\napi:\n  listen: \"127.0.0.1:{api_port}\"\n  audit_log: \"off\"\nalerts:\n  interval: 1s\n  rules:\n    for: 0s\n  webhooks:\n    - url: \"{hook}\"\n      format: generic\n"
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let mut child = Reaped(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let spiked = |v: &serde_json::Value| {
        v["alert"] == "KubecostBridgeCostSpike"
            && v["status"] == "firing"
            && v["labels"]["namespace"] == "monitoring"
    };
    wait_for(
        &mut child,
        180,
        &bodies,
        "the spike alert did not fire",
        |n| n.iter().any(spiked),
    );
    let _ = child.kill();
    let _ = child.wait();
    let got = notes(&bodies);
    let spike = got.iter().find(|v| spiked(v)).unwrap();
    assert_eq!(spike["labels"]["cluster"], "cluster-1", "{spike}");
    let ratio = spike["value"].as_f64().unwrap();
    assert!(ratio > 0.5, "{spike}");
    // Only the spiked namespace (and possibly the cluster's total it lifts) alerts.
    for v in got
        .iter()
        .filter(|v| v["alert"] == "KubecostBridgeCostSpike")
    {
        let ns = &v["labels"]["namespace"];
        assert!(ns.is_null() || ns == "monitoring", "unexpected spike: {v}");
    }
}
