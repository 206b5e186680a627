//! The client against an API server on 127.0.0.1 that serves recorded list responses (the
//! project's own fixtures, in the shapes the Kubernetes API returns): paging, the bearer token,
//! a Kubernetes `Status` error, a malformed body and a timeout; then enrichment of an
//! allocation with what was read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kb_core::Allocation;
use kb_kube::{Error, KubeClient, KubeConfig};
use kb_pipeline::secret::Secret;

const TOKEN: &str = "test-service-account-token";

#[derive(Clone, Default)]
struct Api {
    /// What `/api/v1/pods` answers: `ok`, `garbage` or `slow`.
    pods: &'static str,
    requests: Arc<AtomicUsize>,
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn authorised(h: &HeaderMap) -> Result<(), Response> {
    let ok = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if ok {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
        )
            .into_response())
    }
}

async fn namespaces(
    State(api): State<Api>,
    h: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    api.requests.fetch_add(1, Ordering::SeqCst);
    if let Err(r) = authorised(&h) {
        return r;
    }
    assert_eq!(q.get("limit").map(String::as_str), Some("2"));
    match q.get("continue") {
        None => fixture("namespaces-1.json").into_response(),
        Some(c) if c.starts_with("eyJ2") => fixture("namespaces-2.json").into_response(),
        Some(_) => (StatusCode::GONE, "{}").into_response(),
    }
}

async fn pods(State(api): State<Api>, h: HeaderMap) -> Response {
    api.requests.fetch_add(1, Ordering::SeqCst);
    if let Err(r) = authorised(&h) {
        return r;
    }
    match api.pods {
        "garbage" => "{\"kind\":\"PodList\",\"items\":[{\"metadata\":".into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            fixture("pods.json").into_response()
        }
        _ => fixture("pods.json").into_response(),
    }
}

async fn nodes(h: HeaderMap) -> Response {
    if let Err(r) = authorised(&h) {
        return r;
    }
    fixture("nodes.json").into_response()
}

/// Serves the API on a free port; returns its URL. The server lives as long as the runtime.
async fn serve(api: Api) -> url::Url {
    let app = axum::Router::new()
        .route("/api/v1/namespaces", axum::routing::get(namespaces))
        .route("/api/v1/pods", axum::routing::get(pods))
        .route("/api/v1/nodes", axum::routing::get(nodes))
        .with_state(api);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    url::Url::parse(&format!("http://{addr}")).unwrap()
}

fn client(url: url::Url, token: Option<&str>) -> KubeClient {
    let mut c = KubeConfig::new(url);
    c.token = token.map(Secret::new);
    c.page_size = 2;
    c.timeout = Duration::from_secs(1);
    KubeClient::new(c).unwrap()
}

#[tokio::test]
async fn a_snapshot_reads_every_page_and_enriches_allocations() {
    let api = Api {
        pods: "ok",
        ..Api::default()
    };
    let url = serve(api.clone()).await;
    let m = client(url, Some(TOKEN)).snapshot(None).await.unwrap();
    // Two pages of namespaces.
    let mut names: Vec<&String> = m.namespaces.keys().collect();
    names.sort();
    assert_eq!(names, ["checkout", "kube-system", "search"]);
    assert_eq!(api.requests.load(Ordering::SeqCst), 3);
    let checkout = &m.namespaces["checkout"];
    assert!(
        checkout
            .labels
            .contains(&("team".into(), "payments".into()))
    );
    // The large last-applied annotation is dropped; the cost-center one is kept.
    assert_eq!(
        checkout.annotations,
        [("finance/cost-center".to_string(), "cc-1042".to_string())]
    );
    assert_eq!(m.pods.len(), 2);
    let n = m.node("ip-10-0-2-40.eu-west-1.compute.internal").unwrap();
    assert!(n.spot);
    assert_eq!(n.instance_type.as_deref(), Some("m6i.large"));
    let n = m.node("ip-10-0-1-23.eu-west-1.compute.internal").unwrap();
    assert!(!n.spot);
    assert_eq!(n.zone.as_deref(), Some("eu-west-1a"));

    // An OpenCost-style allocation without labels gets the pod's and namespace's.
    let mut a = Allocation {
        namespace: "checkout".into(),
        pod: "cart-7d9f8b6c5d-x2kqp".into(),
        ..Allocation::default()
    };
    assert!(m.enrich(&mut a) > 0);
    assert!(a.labels.contains(&("owner".into(), "ana".into())));
    assert!(
        a.namespace_labels
            .contains(&("team".into(), "payments".into()))
    );
    assert!(
        a.annotations
            .contains(&("finance/cost-center".into(), "cc-1042".into()))
    );
    // The token given to the snapshot replaces the configured one (a rotated token file).
    let api2 = Api {
        pods: "ok",
        ..Api::default()
    };
    let url2 = serve(api2).await;
    let stale = client(url2, Some("stale-token"));
    assert!(stale.snapshot(Some(&Secret::new(TOKEN))).await.is_ok());
}

#[tokio::test]
async fn errors_are_clear_and_carry_no_token() {
    let url = serve(Api {
        pods: "garbage",
        ..Api::default()
    })
    .await;
    // A wrong token: the API's Status message, with the status code.
    let e = client(url.clone(), Some("wrong"))
        .snapshot(None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Status { status: 401, message, .. } if message == "Unauthorized"),
        "{e:?}"
    );
    let e = client(url.clone(), Some(TOKEN))
        .snapshot(None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Decode { path, .. } if path == "/api/v1/pods"),
        "{e:?}"
    );
    assert!(!e.to_string().contains(TOKEN));

    let slow = serve(Api {
        pods: "slow",
        ..Api::default()
    })
    .await;
    let e = client(slow, Some(TOKEN)).snapshot(None).await.unwrap_err();
    assert!(
        matches!(&e, Error::Request { message, .. } if message.contains("timed out")),
        "{e}"
    );

    // Nothing listening.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = url::Url::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap();
    drop(l);
    let e = client(dead, Some(TOKEN)).snapshot(None).await.unwrap_err();
    assert!(matches!(e, Error::Request { .. }), "{e:?}");
}
