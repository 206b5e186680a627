//! The seed's alerts end to end: a Kubecost that answers every request with a 500 makes the
//! extraction failure-rate alert fire in `run` and reach a local webhook receiver as generic
//! JSON; the stale-data alert fires too, since nothing ever syncs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Sim, bin, sim_config, write_config};

/// A webhook receiver on a free loopback port that keeps every body it gets.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
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

#[test]
fn a_failing_kubecost_fires_the_failure_rate_and_staleness_alerts_to_a_webhook() {
    let mut sim = sim_config(1, 10);
    sim.faults.fail_rate = 1.0;
    let sim = Sim::start(sim);
    let (hook, bodies) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "extract:\n  lookback: 2h\n  settle: 0s\n  retry:\n    max_attempts: 2\n    base_delay: 10ms\n    max_delay: 20ms\napi:\n  listen: \"127.0.0.1:{port}\"\n  audit_log: \"off\"\nalerts:\n  interval: 1s\n  rules:\n    for: 0s\n    stale_after: 1s\n  webhooks:\n    - url: \"{hook}\"\n      format: generic\n"
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let mut child = bin().args(["run", "--config"]).arg(&cfg).spawn().unwrap();

    let deadline = Instant::now() + Duration::from_secs(90);
    let seen = loop {
        let got: Vec<serde_json::Value> = bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect();
        let names: Vec<String> = got
            .iter()
            .filter(|v| v.to_string().contains("firing"))
            .map(|v| v.to_string())
            .collect();
        let fired = |name: &str| names.iter().any(|n| n.contains(name));
        if fired("KubecostBridgeExtractionFailureRate") && fired("KubecostBridgeDataStale") {
            break got;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("alerts not delivered; webhook got: {got:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let failure = seen
        .iter()
        .find(|v| {
            v.to_string()
                .contains("KubecostBridgeExtractionFailureRate")
        })
        .unwrap()
        .to_string();
    assert!(failure.contains("cluster-1"), "{failure}");
    assert!(failure.contains("allocation"), "{failure}");
}
