//! Scraping the simulator's `/metrics` gives per-namespace rates within 1% of its ground truth.

use crate::common::*;
use kb_remote_write::{SampleSink, ScrapeTarget, Scraper};
use std::sync::Arc;

#[tokio::test]
async fn scraped_rates_match_the_simulator() {
    let sim = Sim::start(NOW + 10).await;
    let live = live();
    let sink: Arc<dyn SampleSink> = live.clone();
    let mut scraper = Scraper::new(
        ScrapeTarget::new("cluster-1", format!("{}/metrics", sim.base)),
        reqwest::Client::new(),
    );
    let r1 = scraper.scrape_once(&sink, (NOW + 10) * 1000).await.unwrap();
    assert!(r1.series > 100, "{r1:?}");
    sim.set(NOW + 40);
    scraper.scrape_once(&sink, (NOW + 40) * 1000).await.unwrap();

    let truth = sim.truth(NOW).await;
    assert!(truth.len() >= 3, "{truth:?}");
    let (worst, report) = compare(&live, "cluster-1", &truth);
    assert!(worst < 0.01, "namespace rates off by {worst}:\n{report}");

    // Usage: the counter's rate over the two scrapes is the hour's usage.
    let usage = live.cluster_summary("cluster-1").unwrap();
    let want = sim.cpu_usage_truth(NOW).await;
    assert!(
        rel(usage.cpu_usage_cores, want) < 0.01,
        "{} vs {want}",
        usage.cpu_usage_cores
    );
    assert!(usage.memory_usage_bytes > 0.0 && usage.cpu_capacity_cores > 0.0);
    assert!(usage.storage_bytes > 0.0);

    // Accumulated cost over the 30 s between scrapes = rate × 30 s (cpu, ram, gpu, pv, lb).
    for n in live.namespace_rates("cluster-1") {
        let r = n.rates.rate;
        let want = r.total() * 30.0 / 3600.0;
        assert!(
            rel(n.rates.accumulated, want) < 1e-6,
            "{}: {} vs {want}",
            n.namespace,
            n.rates.accumulated
        );
    }
    let cluster = live.cluster_rate("cluster-1").unwrap();
    assert!(cluster.rate.management > 0.0);
    let sum: f64 = truth.values().sum();
    assert!(rel(cluster.rate.total() - cluster.rate.management, sum) < 0.01);
    assert!(!cluster.default_priced);

    // Controllers and pods add up to the namespaces.
    let ctrl: f64 = live
        .controller_rates("cluster-1")
        .iter()
        .map(|c| c.rates.rate.total())
        .sum();
    let pods: f64 = live
        .pod_rates("cluster-1")
        .iter()
        .map(|c| c.rates.rate.total())
        .sum();
    let lb: f64 = live
        .namespace_rates("cluster-1")
        .iter()
        .map(|n| n.rates.rate.load_balancer)
        .sum();
    assert!(rel(pods + lb, sum) < 0.01, "pods {pods} + lb {lb} vs {sum}");
    assert!(rel(ctrl, pods) < 1e-9, "every simulated pod has an owner");
    assert!(
        live.controller_rates("cluster-1")
            .iter()
            .any(|c| c.kind == "deployment")
    );
    let eff = live
        .namespace_rates("cluster-1")
        .iter()
        .filter_map(|n| n.rates.usage.cpu_efficiency())
        .count();
    assert!(eff > 0);

    // Later minutes: job pods start and end; staleness markers keep the rates exact.
    for minute in [NOW + 15 * 60, NOW + 40 * 60, NOW + 3_600 + 5 * 60] {
        sim.set(minute + 20);
        scraper
            .scrape_once(&sink, (minute + 20) * 1000)
            .await
            .unwrap();
        let truth = sim.truth(minute).await;
        let (worst, report) = compare(&live, "cluster-1", &truth);
        assert!(worst < 0.01, "minute {minute}: off by {worst}:\n{report}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_failed_scrape_stores_nothing() {
    let live = live();
    let sink: Arc<dyn SampleSink> = live.clone();
    // Nothing listens on this port (bound then dropped).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let mut t = ScrapeTarget::new("cluster-1", format!("http://{addr}/metrics"));
    t.timeout = std::time::Duration::from_secs(2);
    let mut s = Scraper::new(t, reqwest::Client::new());
    assert!(s.scrape_once(&sink, 0).await.is_err());
    assert!(live.clusters().is_empty());
}

#[tokio::test]
async fn the_scrape_loop_stops_on_shutdown() {
    let sim = Sim::start(NOW + 10).await;
    let live = live();
    let mut t = ScrapeTarget::new("cluster-1", format!("{}/metrics", sim.base));
    t.interval = std::time::Duration::from_millis(100);
    let shutdown = kb_pipeline::shutdown::Shutdown::new();
    let task =
        tokio::spawn(Scraper::new(t, reqwest::Client::new()).run(live.clone(), shutdown.clone()));
    for _ in 0..100 {
        if !live.namespace_rates("cluster-1").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!live.namespace_rates("cluster-1").is_empty());
    shutdown.trigger();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    sim.stop().await;
}
