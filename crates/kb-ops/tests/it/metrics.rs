//! The `/metrics` page: every series of the contract with its type and labels, parseable by a
//! Prometheus text parser; zero-initialised extraction series; scrape-time freshness and
//! storage; the HTTP middleware's route templates; the 1 h failure-rate window.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use kb_ops::metrics::{ENDPOINTS, metrics_router, track_http};
use kb_ops::{ExtractionOutcome, Metrics, RemoteWriteOutcome};
use kb_remote_write::DecodeLimits;
use kb_remote_write::exposition::parse_exposition;

use crate::common::*;

fn repo_file(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `(name, type, labels)` of every row of the contract's series table.
fn contract() -> Vec<(String, String, BTreeSet<String>)> {
    let text = repo_file("deploy/prometheus/README.md");
    let mut out = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with("`kubecost_bridge_") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let kind = cells[2].to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        out.push((name, kind, labels));
    }
    assert_eq!(out.len(), 15, "the contract's table changed: {out:?}");
    out
}

/// A registry with a sample in every family.
fn full(clock: &ManualClock, dir: &std::path::Path) -> Metrics {
    let m = Metrics::with_clock("1.2.3", clock.clock());
    m.register_targets(&["c1", "c2"], ENDPOINTS);
    m.register_freshness("c1", "remote_write");
    m.record_extraction("c1", "allocation", ExtractionOutcome::Success);
    m.observe_kubecost_request("c1", "allocation", Some(200), Duration::from_millis(300));
    m.observe_kubecost_request("c1", "allocation", None, Duration::from_secs(31));
    m.set_last_success("c1", "allocation", clock.get() - 100.0);
    m.add_rows_written("sqlite", "allocations", 42);
    m.set_spool("clickhouse", 3, 4096);
    m.register_spool_probe("influxdb", Arc::new(|| (1, 10)));
    m.record_remote_write("prom", RemoteWriteOutcome::Accepted, 500);
    m.record_remote_write("prom", RemoteWriteOutcome::Rejected, 7);
    m.set_reconciliation_error("c1", "allocation", 0.001);
    m.register_disk("sqlite", "data", dir);
    m.set_storage("clickhouse", "default", 30, 100);
    m.set_cost_increases("c1", &[(None, 0.2), (Some("ns\"quoted"), 0.7)]);
    m.observe_http(
        "/api/v1/costs/{cluster}",
        &axum::http::Method::GET,
        200,
        Duration::from_millis(3),
    );
    m
}

#[test]
fn render_has_every_contract_series_with_its_type_and_labels() {
    let clock = ManualClock::new(T0);
    let dir = tempfile::tempdir().unwrap();
    let m = full(&clock, dir.path());
    let page = m.render();
    let batch = parse_exposition(&page, 0, &DecodeLimits::default()).expect(&page);
    // name -> label sets seen (without `le`), by the family name.
    let mut seen: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
    for s in batch.series() {
        let name = s.name();
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| page.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        let labels = s
            .labels()
            .map(|(k, _)| k.to_string())
            .filter(|k| k != "__name__" && k != "le")
            .collect();
        assert_eq!(s.samples().len(), 1);
        seen.entry(family.to_string()).or_default().push(labels);
    }
    for (name, kind, labels) in contract() {
        assert!(
            page.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} is not typed {kind}"
        );
        let sets = seen
            .get(&name)
            .unwrap_or_else(|| panic!("{name} has no sample"));
        assert!(
            sets.iter().all(|s| s.is_subset(&labels)),
            "{name}: labels {sets:?} not within {labels:?}"
        );
        assert!(
            sets.contains(&labels),
            "{name}: no sample with all of {labels:?}"
        );
    }
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        contract().into_iter().map(|c| c.0).collect(),
        "no series outside the contract"
    );
    // Every metric the PrometheusRule and the dashboard read is exported.
    for file in [
        "deploy/prometheus/kubecost-bridge-rules.yaml",
        "deploy/grafana/kubecost-bridge.json",
    ] {
        let text = repo_file(file);
        for (i, _) in text.match_indices("kubecost_bridge_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                seen.contains_key(&name) || seen.contains_key(base),
                "{file} reads {name}, which the page lacks"
            );
        }
    }
    // Spot values.
    assert!(page.contains("kubecost_bridge_build_info{version=\"1.2.3\"} 1\n"));
    assert!(page.contains(
        "kubecost_bridge_kubecost_request_duration_seconds_bucket{cluster=\"c1\",endpoint=\"allocation\",code=\"error\",le=\"60\"} 1\n"
    ));
    assert!(page.contains(
        "kubecost_bridge_kubecost_request_duration_seconds_count{cluster=\"c1\",endpoint=\"allocation\",code=\"200\"} 1\n"
    ));
    assert!(page.contains("kubecost_bridge_cost_increase_ratio{cluster=\"c1\"} 0.2\n"));
    assert!(page.contains(
        "kubecost_bridge_cost_increase_ratio{cluster=\"c1\",namespace=\"ns\\\"quoted\"} 0.7\n"
    ));
    assert!(page.contains("kubecost_bridge_spool_depth{store=\"influxdb\"} 1\n"));
    assert!(page.contains("kubecost_bridge_spool_bytes{store=\"clickhouse\"} 4096\n"));
    assert!(page.contains(
        "kubecost_bridge_storage_used_ratio{store=\"clickhouse\",disk=\"default\"} 0.3\n"
    ));
    assert!(page.contains(
        "kubecost_bridge_remote_write_samples_total{source=\"prom\",outcome=\"rejected\"} 7\n"
    ));
    assert!(page.contains(
        "kubecost_bridge_rows_written_total{store=\"sqlite\",table=\"allocations\"} 42\n"
    ));
    // A cluster's namespaces not listed again vanish.
    m.set_cost_increases("c1", &[(None, 0.1)]);
    assert!(!m.render().contains("namespace="));
}

#[test]
fn extraction_series_start_at_zero_for_every_target() {
    let m = Metrics::new("dev");
    m.register_targets(&["a", "b"], ENDPOINTS);
    m.register_targets(&["a"], &["allocation"]);
    let page = m.render();
    let lines: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("kubecost_bridge_extraction_runs_total{"))
        .collect();
    assert_eq!(lines.len(), 2 * ENDPOINTS.len() * 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.ends_with(" 0")));
    for c in ["a", "b"] {
        for e in ENDPOINTS {
            for o in ["success", "failure"] {
                let want = format!(
                    "kubecost_bridge_extraction_runs_total{{cluster=\"{c}\",endpoint=\"{e}\",outcome=\"{o}\"}} 0"
                );
                assert!(lines.contains(&want.as_str()), "{want}");
            }
        }
    }
    // A failure of an unregistered pair creates both of its series.
    m.record_extraction("z", "assets", ExtractionOutcome::Failure);
    let page = m.render();
    assert!(page.contains(
        "kubecost_bridge_extraction_runs_total{cluster=\"z\",endpoint=\"assets\",outcome=\"failure\"} 1\n"
    ));
    assert!(page.contains(
        "kubecost_bridge_extraction_runs_total{cluster=\"z\",endpoint=\"assets\",outcome=\"success\"} 0\n"
    ));
}

fn freshness(m: &Metrics, cluster: &str, source: &str) -> f64 {
    let prefix = format!(
        "kubecost_bridge_data_freshness_seconds{{cluster=\"{cluster}\",source=\"{source}\"}} "
    );
    m.render()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(|v| v.parse().unwrap()))
        .unwrap_or_else(|| panic!("no {prefix}"))
}

#[test]
fn freshness_is_computed_at_scrape_time() {
    let clock = ManualClock::new(T0);
    let m = Metrics::with_clock("dev", clock.clock());
    m.register_targets(&["c1"], &["allocation"]);
    // Before the first sync: seconds since the start.
    assert_eq!(freshness(&m, "c1", "allocation"), 0.0);
    clock.advance(90.0);
    assert_eq!(freshness(&m, "c1", "allocation"), 90.0);
    // A checkpoint from before the restart counts from its time.
    m.set_last_success("c1", "allocation", T0 - 7200.0);
    assert_eq!(freshness(&m, "c1", "allocation"), 7290.0);
    clock.advance(10.0);
    assert_eq!(freshness(&m, "c1", "allocation"), 7300.0);
    // A newer success resets it; an older one is ignored.
    m.set_last_success("c1", "allocation", clock.get() - 5.0);
    m.set_last_success("c1", "allocation", T0 - 9999.0);
    assert_eq!(freshness(&m, "c1", "allocation"), 5.0);
    clock.advance(3600.0);
    assert_eq!(freshness(&m, "c1", "allocation"), 3605.0);
    let snap = m.snapshot();
    assert_eq!(snap.freshness.len(), 1);
    assert_eq!(snap.freshness[0].age_secs, 3605.0);
}

#[test]
fn storage_of_a_real_directory_is_a_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let m = Metrics::new("dev");
    m.register_disk("sqlite", "data", dir.path());
    let snap = m.snapshot();
    assert_eq!(snap.storage.len(), 1);
    let r = snap.storage[0].used_ratio;
    assert!(r > 0.0 && r <= 1.0, "{r}");
    let page = m.render();
    let cap: f64 = page
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "kubecost_bridge_storage_capacity_bytes{store=\"sqlite\",disk=\"data\"} ",
            )
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(cap > 0.0);
    // An unreadable path exports nothing rather than a wrong number.
    m.register_disk("sqlite", "data", &dir.path().join("missing/nowhere"));
    assert!(!m.render().contains("storage_used_ratio{"));
}

#[test]
fn failure_rate_counts_the_last_hour() {
    let clock = ManualClock::new(T0);
    let m = Metrics::with_clock("dev", clock.clock());
    m.register_targets(&["c1"], &["allocation", "assets"]);
    let counts = |m: &Metrics| {
        m.snapshot()
            .extraction
            .into_iter()
            .map(|e| ((e.cluster, e.endpoint), (e.failures, e.total)))
            .collect::<BTreeMap<_, _>>()
    };
    let key = ("c1".to_string(), "allocation".to_string());
    assert_eq!(counts(&m)[&key], (0, 0));
    m.record_extraction("c1", "allocation", ExtractionOutcome::Failure);
    for _ in 0..19 {
        m.record_extraction("c1", "allocation", ExtractionOutcome::Success);
    }
    assert_eq!(counts(&m)[&key], (1, 20));
    clock.advance(30.0 * 60.0);
    m.record_extraction("c1", "allocation", ExtractionOutcome::Failure);
    assert_eq!(counts(&m)[&key], (2, 21));
    clock.advance(30.0 * 60.0);
    assert_eq!(
        counts(&m)[&key],
        (1, 1),
        "the first 20 runs left the window"
    );
    clock.advance(30.0 * 60.0);
    assert_eq!(counts(&m)[&key], (0, 0));
    assert_eq!(
        counts(&m)[&("c1".to_string(), "assets".to_string())],
        (0, 0)
    );
    // The counters themselves never decrease.
    assert!(m.render().contains(
        "kubecost_bridge_extraction_runs_total{cluster=\"c1\",endpoint=\"allocation\",outcome=\"failure\"} 2\n"
    ));
}

#[test]
fn a_configured_failure_window_forgets_outcomes_older_than_it() {
    let clock = ManualClock::new(T0);
    let m = Metrics::with_clock("dev", clock.clock());
    m.register_targets(&["c1"], &["allocation"]);
    m.set_failure_window(Duration::from_secs(60));
    let key = |m: &Metrics| {
        let e = &m.snapshot().extraction[0];
        (e.failures, e.total)
    };
    m.record_extraction("c1", "allocation", ExtractionOutcome::Failure);
    m.record_extraction("c1", "allocation", ExtractionOutcome::Failure);
    assert_eq!(key(&m), (2, 2));
    clock.advance(30.0);
    m.record_extraction("c1", "allocation", ExtractionOutcome::Success);
    assert_eq!(key(&m), (2, 3));
    clock.advance(31.0);
    assert_eq!(key(&m), (0, 1), "the failures left the 60 s window");
    clock.advance(30.0);
    assert_eq!(key(&m), (0, 0));
    // The counters are not windowed.
    assert!(m.render().contains(
        "kubecost_bridge_extraction_runs_total{cluster=\"c1\",endpoint=\"allocation\",outcome=\"failure\"} 2\n"
    ));
}

#[tokio::test]
async fn http_middleware_records_route_templates_and_metrics_is_served() {
    let m = Metrics::new("dev");
    let api = Router::new()
        .route("/api/v1/costs/kubernetes/{cluster}", get(|| async { "ok" }))
        .route(
            "/fail",
            get(|| async { axum::http::StatusCode::BAD_GATEWAY }),
        );
    let app = track_http(api, &m).merge(metrics_router(m.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/costs/kubernetes/prod-eu-1",
        "/api/v1/costs/kubernetes/secret-pod-xyz",
        "/fail",
    ] {
        client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
    }
    let resp = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let page = resp.text().await.unwrap();
    assert!(page.contains(
        "kubecost_bridge_http_request_duration_seconds_count{route=\"/api/v1/costs/kubernetes/{cluster}\",method=\"GET\",code=\"200\"} 2\n"
    ), "{page}");
    assert!(page.contains(
        "kubecost_bridge_http_request_duration_seconds_count{route=\"/fail\",method=\"GET\",code=\"502\"} 1\n"
    ));
    assert!(!page.contains("prod-eu-1") && !page.contains("secret-pod-xyz"));
    parse_exposition(&page, 0, &DecodeLimits::default()).unwrap();
}
