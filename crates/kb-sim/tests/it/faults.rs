//! Fault flags produce the documented failures.

use crate::common::*;
use kb_sim::Faults;

fn with(f: Faults) -> kb_sim::SimConfig {
    let mut c = cfg(1, 200, 8);
    c.faults = f;
    c
}

fn q() -> String {
    format!(
        "/model/allocation?window={}&step=1h",
        pair(DAY0 - 86_400, DAY0)
    )
}

#[tokio::test]
async fn fail_rate_gives_500_envelope_but_not_on_metrics() {
    let sim = Sim::start(with(Faults {
        fail_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let r = sim.get(&q()).await;
    assert_eq!(r.status(), 500);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["code"], 500);
    assert!(v["data"].is_null());
    assert!(v["message"].as_str().unwrap().starts_with("Error: "));
    assert_eq!(
        sim.get("/model/assets?window=yesterday").await.status(),
        500
    );
    assert_eq!(sim.get("/metrics").await.status(), 200);
    sim.stop().await;
}

#[tokio::test]
async fn null_data_rate_answers_data_null() {
    let sim = Sim::start(with(Faults {
        null_data_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let v = sim.json(&q()).await;
    assert_eq!(v, serde_json::json!({"code": 200, "data": [null]}));
    sim.stop().await;
}

#[tokio::test]
async fn truncate_rate_cuts_the_body() {
    let sim = Sim::start(with(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let r = sim.get(&q()).await;
    assert_eq!(r.status(), 200);
    match r.bytes().await {
        Err(_) => {}
        Ok(b) => assert!(
            serde_json::from_slice::<serde_json::Value>(&b).is_err(),
            "body must be cut"
        ),
    }
    sim.stop().await;
}

#[tokio::test]
async fn malformed_rate_corrupts_a_complete_body() {
    let sim = Sim::start(with(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let b = sim.get(&q()).await.bytes().await.unwrap();
    assert!(b.ends_with(b"]}"), "response completes");
    assert!(b.windows(6).any(|w| w == b"{{oops"));
    assert!(serde_json::from_slice::<serde_json::Value>(&b).is_err());
    sim.stop().await;
}

#[tokio::test]
async fn nan_rate_nulls_efficiencies_never_costs() {
    let sim = Sim::start(with(Faults {
        nan_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let v = sim.json(&q()).await;
    let set = v["data"][0].as_object().unwrap();
    for a in set.values() {
        assert!(
            a["cpuEfficiency"].is_null()
                && a["totalEfficiency"].is_null()
                && a["rawAllocationOnly"].is_null()
        );
        assert!(a["cpuCost"].is_number() && a["totalCost"].is_number());
    }
    sim.stop().await;
}

#[tokio::test]
async fn timeout_rate_hangs_until_the_client_gives_up_and_shutdown_ends_it() {
    let sim = Sim::start(with(Faults {
        timeout_rate: 1.0,
        latency_ms: 10,
        ..Faults::default()
    }))
    .await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let e = client
        .get(format!("{}{}", sim.base, q()))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_timeout());
    // A hung request still in flight must not block shutdown.
    let pending = tokio::spawn(reqwest::get(format!("{}{}", sim.base, q())));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    sim.stop().await;
    pending.await.ok();
}
