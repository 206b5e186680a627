//! The HTTP client against small servers on 127.0.0.1: streaming, status handling, truncation,
//! timeouts, auth, secrets, the concurrency limit and the OpenCost flavor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use kb_core::{Allocation, Window};
use kb_kubecost::{
    AllocationQuery, Auth, Client, ClientConfig, Error, Flavor, Secret, StreamSummary,
};
use kb_pipeline::retry::{RetryHint, Retryable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use url::Url;

const W: Window = Window {
    start: 1_709_510_400,
    end: 1_709_596_800,
};

async fn serve(router: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Url::parse(&format!("http://{addr}")).unwrap()
}

/// A raw TCP server that answers every connection with `response` and then, if `hold` is set,
/// keeps the connection open without writing more.
async fn raw_server(response: &'static [u8], hold: bool) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                // The client may have hung up already; nothing to do then.
                sock.write_all(response).await.ok();
                sock.flush().await.ok();
                if hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    Url::parse(&format!("http://{addr}")).unwrap()
}

fn client(base: Url, flavor: Flavor) -> Client {
    let mut cfg = ClientConfig::new(base, flavor);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.request_timeout = Duration::from_secs(60);
    Client::new(cfg).unwrap()
}

fn query() -> AllocationQuery {
    AllocationQuery {
        window: W,
        aggregate: vec!["cluster".into(), "namespace".into(), "pod".into()],
        step: None,
        include_idle: true,
        share_idle: false,
        filter_cluster: Some("prod-1".into()),
    }
}

/// Runs an allocation query, collecting the batches.
async fn collect(
    c: &Client,
    q: &AllocationQuery,
) -> (Result<StreamSummary, Error>, Vec<Vec<Allocation>>) {
    let (tx, mut rx) = mpsc::channel(4);
    let drain = tokio::spawn(async move {
        let mut batches = Vec::new();
        while let Some(b) = rx.recv().await {
            batches.push(b);
        }
        batches
    });
    let r = c.allocations(q, tx).await;
    (r, drain.await.unwrap())
}

fn row(name: &str, cluster: &str, cpu: f64, ram: f64) -> String {
    format!(
        r#""{name}":{{"name":"{name}","properties":{{"cluster":"{cluster}","namespace":"ns","pod":"{name}","labels":{{"b":"2","a":"1"}}}},"window":{{"start":"2024-03-04T00:00:00Z","end":"2024-03-05T00:00:00Z"}},"start":"2024-03-04T00:00:00Z","end":"2024-03-05T00:00:00Z","minutes":1440,"cpuCores":0.5,"cpuCost":{cpu},"cpuCostAdjustment":0,"cpuEfficiency":null,"ramCost":{ram},"ramCostAdjustment":0,"pvs":null,"lbAllocations":null,"totalCost":{total}}}"#,
        total = cpu + ram
    )
}

#[tokio::test]
async fn a_big_response_streams_complete_in_batches() {
    const N: usize = 50_000;
    let mut body = String::from(r#"{"code":200,"status":"success","data":[{"#);
    let mut expected = 0.0;
    for i in 0..N {
        if i == N / 2 {
            body.push_str("},{"); // a second set
        } else if i > 0 {
            body.push(',');
        }
        let cpu = (i % 97) as f64 * 0.125;
        let ram = (i % 13) as f64 * 0.5;
        expected += cpu + ram;
        body.push_str(&row(&format!("pod-{i}"), "prod-1", cpu, ram));
    }
    body.push_str("}]}");
    let body = Arc::new(body);
    let url = serve(Router::new().route(
        "/model/allocation",
        get(move || {
            let b = body.clone();
            async move { b.as_str().to_owned() }
        }),
    ))
    .await;
    let c = client(url, Flavor::Kubecost);
    let (r, batches) = collect(&c, &query()).await;
    let s = r.unwrap();
    assert_eq!(s.rows as usize, N);
    assert_eq!(s.sets, 2);
    assert_eq!(s.null_fields as usize, N, "one null cpuEfficiency per row");
    assert!(batches.len() > 10, "rows arrive in many batches");
    let rows: usize = batches.iter().map(Vec::len).sum();
    assert_eq!(rows, N);
    let sum: f64 = batches.iter().flatten().map(|a| a.total_cost).sum();
    assert!(
        (sum - expected).abs() < 1e-6 * expected,
        "{sum} vs {expected}"
    );
    assert!((s.total_cost - expected).abs() < 1e-6 * expected);
    let first = &batches[0][0];
    assert_eq!(first.labels[0].0, "a", "labels sorted");
    assert_eq!(
        batches.last().unwrap().last().unwrap().name,
        format!("pod-{}", N - 1)
    );
}

#[tokio::test]
async fn kubecost_query_parameters_are_sent() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let url = serve(Router::new().route(
        "/model/allocation",
        get(move |RawQuery(q): RawQuery| {
            let s = s2.clone();
            async move {
                s.lock().unwrap().push(q.unwrap_or_default());
                format!(
                    r#"{{"code":200,"data":[{{{},{}}}]}}"#,
                    row("prod-1", "prod-1", 1.5, 0.25),
                    row("__idle__", "prod-1", 2.0, 0.0)
                )
            }
        }),
    ))
    .await;
    let c = client(url, Flavor::Kubecost);
    let mut q = query();
    q.step = Some(86_400);
    let (r, _) = collect(&c, &q).await;
    assert_eq!(r.unwrap().rows, 2);
    let total = c.allocation_total(&query()).await.unwrap();
    assert_eq!(total, 3.75);

    let seen = seen.lock().unwrap();
    let params = |i: usize| -> Vec<(String, String)> {
        url::form_urlencoded::parse(seen[i].as_bytes())
            .into_owned()
            .collect()
    };
    let p = params(0);
    let has =
        |p: &[(String, String)], k: &str, v: &str| p.iter().any(|(pk, pv)| pk == k && pv == v);
    assert!(has(&p, "window", &W.to_kubecost_param()), "{p:?}");
    assert!(has(&p, "aggregate", "cluster,namespace,pod"));
    assert!(has(&p, "step", "1d"));
    assert!(!p.iter().any(|(k, _)| k == "accumulate"));
    assert!(has(&p, "idle", "true"));
    assert!(has(&p, "shareIdle", "false"));
    assert!(has(&p, "filter", "cluster:\"prod-1\""));
    assert!(has(&p, "filterClusters", "prod-1"));
    assert!(
        seen[0].contains("filter=cluster%3A%22prod-1%22"),
        "{}",
        seen[0]
    );
    let t = params(1);
    assert!(has(&t, "aggregate", "cluster"));
    assert!(has(&t, "accumulate", "true"));
    assert!(has(&t, "idle", "true"));
}

#[tokio::test]
async fn opencost_uses_its_own_path_and_filters_client_side() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let url = serve(Router::new().route(
        "/allocation",
        get(move |RawQuery(q): RawQuery| {
            let s = s2.clone();
            async move {
                s.lock().unwrap().push(q.unwrap_or_default());
                format!(
                    r#"{{"code":200,"status":"success","data":[{{{},{},{}}}]}}"#,
                    row("a1", "prod-1", 1.0, 0.0),
                    row("b1", "other", 5.0, 0.0),
                    row("a2", "prod-1", 2.0, 0.0)
                )
            }
        }),
    ))
    .await;
    let c = client(url, Flavor::OpenCost);
    let (r, batches) = collect(&c, &query()).await;
    let s = r.unwrap();
    assert_eq!((s.rows, s.filtered), (2, 1));
    assert_eq!(s.total_cost, 3.0);
    let names: Vec<String> = batches.iter().flatten().map(|a| a.name.clone()).collect();
    assert_eq!(names, vec!["a1", "a2"]);
    assert_eq!(c.allocation_total(&query()).await.unwrap(), 3.0);
    let q = seen.lock().unwrap()[0].clone();
    assert!(q.contains("includeIdle=true"), "{q}");
    assert!(q.contains("includeAggregatedMetadata=true"), "{q}");
    assert!(q.contains("accumulate=true"), "{q}");
    assert!(!q.contains("filter"), "{q}");
    assert!(!q.split('&').any(|kv| kv.starts_with("idle=")), "{q}");
    let e = c.budgets().await.unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
}

#[tokio::test]
async fn status_codes_map_to_retry_hints() {
    let url = serve(
        Router::new()
            .route(
                "/model/budgets",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "internal error") }),
            )
            .route(
                "/model/savings/abandonedWorkloads",
                get(|| async {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "7")],
                        "slow down",
                    )
                }),
            )
            .route(
                "/model/allocation",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        "Invalid 'window' parameter: illegal window: x\n",
                    )
                }),
            )
            .route(
                "/model/savings/clusterSizingETL",
                get(|| async {
                    r#"{"code":500,"status":"error","data":null,"message":"Error: etl not ready"}"#
                }),
            ),
    )
    .await;
    let c = client(url, Flavor::Kubecost);

    let e = c.budgets().await.unwrap_err();
    assert!(matches!(e, Error::Http { status: 500, .. }), "{e:?}");
    assert_eq!(e.retry_hint(), RetryHint::Retry { after: None });
    assert!(e.to_string().contains("/model/budgets"), "{e}");

    let e = c.abandoned_workloads(2).await.unwrap_err();
    assert_eq!(
        e.retry_hint(),
        RetryHint::Retry {
            after: Some(Duration::from_secs(7))
        }
    );

    let e = c.request_sizing("7d", None).await.unwrap_err();
    assert!(matches!(e, Error::Http { status: 404, .. }), "{e:?}");
    assert_eq!(e.retry_hint(), RetryHint::Permanent);

    let (r, _) = collect(&c, &query()).await;
    let e = r.unwrap_err();
    assert_eq!(e.retry_hint(), RetryHint::Permanent);
    let text = e.to_string();
    assert!(text.contains("Invalid 'window' parameter"), "{text}");
    assert!(
        text.contains("/model/allocation") && text.contains("2024-03-04T00:00:00Z"),
        "{text}"
    );

    let e = c.cluster_sizing("7d").await.unwrap_err();
    assert!(matches!(e, Error::Api { code: 500, .. }), "{e:?}");
    assert!(e.to_string().contains("etl not ready"));
    assert_eq!(e.retry_hint(), RetryHint::Retry { after: None });
}

#[tokio::test]
async fn a_body_cut_short_is_truncated() {
    // The connection closes before Content-Length bytes arrived.
    let url = raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{\"code\":200,\"data\":[{\"a\":{\"cpuCost\":1",
        false,
    )
    .await;
    let (r, _) = collect(&client(url, Flavor::Kubecost), &query()).await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    assert!(matches!(e.retry_hint(), RetryHint::Retry { .. }));

    // The HTTP body is complete but the JSON document is not closed.
    let url = raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 37\r\nConnection: close\r\n\r\n{\"code\":200,\"data\":[{\"a\":{\"cpuCost\":1",
        false,
    )
    .await;
    let (r, _) = collect(&client(url, Flavor::Kubecost), &query()).await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[tokio::test]
async fn slow_servers_time_out() {
    let mut cfg = ClientConfig::new(raw_server(b"", true).await, Flavor::Kubecost);
    cfg.request_timeout = Duration::from_millis(300);
    let c = Client::new(cfg).unwrap();
    let e = c.budgets().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(matches!(e.retry_hint(), RetryHint::Retry { .. }));

    // Headers arrive, the body stalls.
    let mut cfg = ClientConfig::new(
        raw_server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"code\":200,\"data\":[{",
            true,
        )
        .await,
        Flavor::Kubecost,
    );
    cfg.request_timeout = Duration::from_millis(300);
    let c = Client::new(cfg).unwrap();
    let (r, _) = collect(&c, &query()).await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
}

#[tokio::test]
async fn auth_headers_are_sent_and_secrets_never_printed() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let url = serve(
        Router::new()
            .route(
                "/model/budgets",
                get(move |h: HeaderMap| {
                    let s = s2.clone();
                    async move {
                        let auth = h
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        s.lock().unwrap().push(auth);
                        r#"{"code":200,"data":[]}"#
                    }
                }),
            )
            .route(
                "/model/savings/requestSizingV2",
                get(|h: HeaderMap| async move {
                    // A misbehaving proxy that echoes the credentials back.
                    let auth = h
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    (StatusCode::UNAUTHORIZED, format!("bad credentials: {auth}"))
                }),
            ),
    )
    .await;
    let mut cfg = ClientConfig::new(url.clone(), Flavor::Kubecost);
    cfg.auth = Auth::Bearer(Secret::new("s3cr3t-token"));
    let bearer = Client::new(cfg.clone()).unwrap();
    assert!(bearer.budgets().await.unwrap().is_empty());
    let e = bearer.request_sizing("7d", None).await.unwrap_err();
    for text in [
        format!("{e}"),
        format!("{e:?}"),
        format!("{bearer:?}"),
        format!("{cfg:?}"),
    ] {
        assert!(!text.contains("s3cr3t-token"), "{text}");
    }
    assert_eq!(e.retry_hint(), RetryHint::Permanent);

    let mut cfg = ClientConfig::new(url, Flavor::Kubecost);
    cfg.auth = Auth::Basic {
        username: "user".into(),
        password: Secret::new("pass"),
    };
    let basic = Client::new(cfg.clone()).unwrap();
    basic.budgets().await.unwrap();
    let e = basic.request_sizing("7d", None).await.unwrap_err();
    // "dXNlcjpwYXNz" is base64("user:pass").
    assert!(!format!("{e} {e:?} {cfg:?}").contains("dXNlcjpwYXNz"));
    assert!(!format!("{cfg:?}").contains("pass\""));

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], "Bearer s3cr3t-token");
    assert_eq!(seen[1], "Basic dXNlcjpwYXNz");
}

#[tokio::test]
async fn the_concurrency_limit_is_respected() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let (i2, m2) = (in_flight.clone(), max_seen.clone());
    let url = serve(Router::new().route(
        "/model/budgets",
        get(move || {
            let (i, m) = (i2.clone(), m2.clone());
            async move {
                let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                i.fetch_sub(1, Ordering::SeqCst);
                r#"{"code":200,"data":[]}"#
            }
        }),
    ))
    .await;
    let mut cfg = ClientConfig::new(url, Flavor::Kubecost);
    cfg.max_concurrency = 2;
    let c = Client::new(cfg).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.budgets().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let max = max_seen.load(Ordering::SeqCst);
    assert!(max <= 2, "{max} requests were in flight");
    assert!(max >= 1);
}

#[tokio::test]
async fn small_endpoints_parse_over_http() {
    let url = serve(
        Router::new()
            .route(
                "/model/prediction/speccost",
                axum::routing::post(|RawQuery(q): RawQuery, h: HeaderMap, body: String| async move {
                    assert!(q.unwrap().contains("clusterID=prod-1"));
                    assert_eq!(h.get("content-type").unwrap(), "application/yaml");
                    assert!(body.contains("kind: Deployment"));
                    r#"{"code":200,"data":[{"namespace":"shop","controllerKind":"deployment","controllerName":"web","costBefore":{"totalMonthlyRate":1},"costAfter":{"totalMonthlyRate":3},"costChange":{"totalMonthlyRate":2}}]}"#
                }),
            )
            .route(
                "/model/assets",
                get(|| async {
                    r#"{"code":200,"data":[{"n1":{"type":"Node","properties":{"cluster":"prod-1","name":"n1"},"cpuCost":1,"ramCost":1,"discount":0.5,"adjustment":0,"totalCost":1},"n2":{"type":"Node","properties":{"cluster":"other"},"totalCost":9}}]}"#
                }),
            ),
    )
    .await;
    let c = client(url, Flavor::Kubecost);
    let p = c
        .spec_cost("prod-1", "default", "kind: Deployment\n".into())
        .await
        .unwrap();
    assert_eq!(p[0].cost_change.total_monthly_rate, 2.0);
    let a = c
        .assets(&kb_kubecost::AssetQuery {
            window: W,
            aggregate: vec![],
            accumulate: true,
            filter_cluster: Some("prod-1".into()),
        })
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].name, "n1");
}
