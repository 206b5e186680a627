//! `kubernetes:` metadata enrichment end to end: an API server on loopback (the namespace list
//! in the Kubernetes API's shape, behind a service-account token read from a file) gives
//! `kube-system` a label Kubecost does not report; a mapping rule on that label then puts all
//! of kube-system's cost, and nothing else, in its team.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kb_analytics::{Dimension, Granularity};
use kb_pipeline::insights::{InsightReader, SummaryQuery};

use crate::{FAST, Sim, bin, past_range, rfc, run_ok, sim_config, write_config};

const NAMESPACES: &str = r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"901"},
"items":[{"metadata":{"name":"kube-system","uid":"0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f","resourceVersion":"17",
"labels":{"kubernetes.io/metadata.name":"kube-system","k8s-team":"platform"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}]}"#;
const EMPTY_PODS: &str =
    r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"902"},"items":[]}"#;
const EMPTY_NODES: &str =
    r#"{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"903"},"items":[]}"#;

/// A Kubernetes API on a free port that answers only the bearer token `token`.
fn api_server(token: &'static str, hits: Arc<AtomicUsize>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let answer = move |body: &'static str| {
                let hits = hits.clone();
                move |h: HeaderMap| {
                    let hits = hits.clone();
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let ok = h
                            .get("authorization")
                            .is_some_and(|v| v.as_bytes() == format!("Bearer {token}").as_bytes());
                        if ok {
                            body.into_response()
                        } else {
                            (StatusCode::UNAUTHORIZED, "{}").into_response()
                        }
                    }
                }
            };
            let app = axum::Router::new()
                .route("/api/v1/namespaces", axum::routing::get(answer(NAMESPACES)))
                .route("/api/v1/pods", axum::routing::get(answer(EMPTY_PODS)))
                .route("/api/v1/nodes", axum::routing::get(answer(EMPTY_NODES)));
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

#[test]
fn namespace_labels_from_the_kubernetes_api_reach_the_team_summaries() {
    let hits = Arc::new(AtomicUsize::new(0));
    let api = api_server("sa-token-1", hits.clone());
    let sim = Sim::start(sim_config(1, 20));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "sa-token-1\n").unwrap();
    let extra = format!(
        "{FAST}kubernetes:\n  enabled: true\n  clusters:\n    - cluster: cluster-1\n      api_server: \"{api}\"\n      token_file: \"{}\"\naggregation:\n  rules:\n    mappings: [{{ target: team, from: \"namespace_label:k8s-team\" }}]\n",
        dir.path().join("token").display()
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let range = past_range(24);
    run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    assert!(hits.load(Ordering::SeqCst) >= 3, "the API was never read");

    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let read = |dimension, name: &str| -> f64 {
        store
            .summaries(&SummaryQuery {
                cluster: Some("cluster-1".into()),
                dimension,
                granularity: Granularity::Day,
                range,
                namespace: None,
                name: Some(name.to_string()),
            })
            .unwrap()
            .iter()
            .map(|s| s.summary.totals.total_cost)
            .sum()
    };
    let kube_system = read(Dimension::Namespace, "kube-system");
    let platform = read(Dimension::Team, "platform");
    assert!(kube_system > 0.0);
    assert!(
        kb_core::cost::relative_error(platform, kube_system) <= 1e-9,
        "team platform {platform} != kube-system {kube_system}"
    );
    // Everything else stays unallocated (the sim's own namespace labels lack the key), but
    // idle, which Kubecost's __idle__ row keeps apart.
    let all: f64 = store
        .summaries(&SummaryQuery {
            cluster: Some("cluster-1".into()),
            dimension: Dimension::Team,
            granularity: Granularity::Day,
            range,
            namespace: None,
            name: None,
        })
        .unwrap()
        .iter()
        .map(|s| s.summary.totals.total_cost)
        .sum();
    let unallocated = read(Dimension::Team, "unallocated");
    let idle = read(Dimension::Team, "__idle__");
    assert!(
        kb_core::cost::relative_error(platform + unallocated + idle, all) <= 1e-9,
        "{platform} + {unallocated} + {idle} != {all}"
    );
}

#[test]
fn a_wrong_token_keeps_aggregating_without_metadata() {
    let api = api_server("the-right-token", Arc::new(AtomicUsize::new(0)));
    let sim = Sim::start(sim_config(1, 10));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "a-wrong-token").unwrap();
    let extra = format!(
        "{FAST}kubernetes:\n  enabled: true\n  clusters:\n    - cluster: cluster-1\n      api_server: \"{api}\"\n      token_file: \"{}\"\naggregation:\n  rules:\n    mappings: [{{ target: team, from: \"namespace_label:k8s-team\" }}]\n",
        dir.path().join("token").display()
    );
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let range = past_range(6);
    let out = run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kubernetes metadata not refreshed"),
        "{stderr}"
    );
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("a-wrong-token"));
    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let teams = store
        .summaries(&SummaryQuery {
            cluster: Some("cluster-1".into()),
            dimension: Dimension::Team,
            granularity: Granularity::Day,
            range,
            namespace: None,
            name: None,
        })
        .unwrap();
    assert!(!teams.is_empty());
    assert!(
        teams
            .iter()
            .all(|s| s.summary.name == "unallocated" || s.summary.name == "__idle__"),
        "{:?}",
        teams.iter().map(|s| &s.summary.name).collect::<Vec<_>>()
    );
}
