//! The dashboard over the real API router and a real `SqliteStore`: sign-in and cookies, pages
//! without a session, escaping, the numbers the pages show against the API's JSON, sorting,
//! filtering and drill-down. Requests go to the merged router in process (the same router the
//! binary serves); the browser test against a running demo is in the binary's tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use kb_api::{ApiState, AuditSink, AuthConfig, Secret};
use kb_core::model::{SavingsKind, SavingsRecommendation};
use kb_core::window::HOUR;
use kb_core::{Allocation, Resolution, Window};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint};
use kb_store::SqliteStore;
use tower::ServiceExt;

/// 2024-06-03T13:30:00Z, the API's "now".
const NOW: i64 = 1_717_421_400;
const TOKEN: &str = "dashboard-test-token-0123456789";

/// Namespaces with (controller, pods, cost per pod-hour).
const NAMESPACES: &[(&str, &str, usize, f64)] = &[
    ("web", "frontend", 3, 0.50),
    ("kube-system", "coredns", 2, 0.10),
    ("<script>alert(1)</script>", "evil", 1, 0.20),
    ("batch", "etl", 4, 0.25),
];

struct Fixture {
    app: Router,
    _dir: tempfile::TempDir,
}

fn alloc(ns: &str, controller: &str, pod: usize, w: Window, cost: f64) -> Allocation {
    let pod = format!("{controller}-{pod}");
    Allocation {
        name: format!("c1/{ns}/{pod}"),
        cluster: "c1".into(),
        node: "node-1".into(),
        namespace: ns.into(),
        controller_kind: "deployment".into(),
        controller: controller.into(),
        pod,
        window: w,
        start: w.start,
        end: w.end,
        minutes: 60.0,
        cpu_cost: cost * 0.6,
        ram_cost: cost * 0.3,
        pv_cost: cost * 0.1,
        total_cost: cost,
        total_efficiency: 0.5,
        ..Allocation::default()
    }
}

/// 48 hours of pod rows for cluster `c1` (so the previous 24 h have data too), plus one
/// savings recommendation for `web`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("d.db")).unwrap());
    let end = NOW - NOW % HOUR;
    let mut h = end - 48 * HOUR;
    while h < end {
        let w = Window {
            start: h,
            end: h + HOUR,
        };
        let mut rows = Vec::new();
        for (ns, ctl, pods, cost) in NAMESPACES {
            for p in 0..*pods {
                rows.push(alloc(ns, ctl, p, w, *cost));
            }
        }
        let mut wr = store.begin_allocations("c1", w, Resolution::Hour).unwrap();
        wr.write(&rows).unwrap();
        wr.commit(&Checkpoint {
            cluster: "c1".into(),
            endpoint: Endpoint::Allocation,
            window: w,
            resolution: Resolution::Hour,
            synced_at: NOW,
            rows: rows.len() as u64,
            response_total_cost: rows.iter().map(|a| a.total_cost).sum(),
            null_fields: 0,
        })
        .unwrap();
        h += HOUR;
    }
    store
        .put_savings(
            "c1",
            &[SavingsRecommendation {
                kind: SavingsKind::RequestSizing,
                cluster: "c1".into(),
                namespace: "web".into(),
                controller_kind: "deployment".into(),
                controller: "frontend".into(),
                target: "app".into(),
                monthly_savings: 42.5,
                detail: "cpu 2 -> 500m".into(),
            }],
            NOW,
        )
        .unwrap();
    let auth = AuthConfig {
        bootstrap_admin: Some(Secret::new(TOKEN)),
        ..AuthConfig::default()
    };
    let state = ApiState::new(
        store.clone(),
        store,
        &auth,
        AuditSink::disabled(),
        Arc::new(|| NOW),
    )
    .unwrap();
    let app = kb_api::router(state.clone()).merge(kb_dashboard::router(
        state,
        kb_dashboard::Options::default(),
    ));
    Fixture { app, _dir: dir }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

async fn read(r: Response<Body>) -> Answer {
    let status = r.status();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn cookie() -> String {
    format!("kb_session={TOKEN}")
}

async fn get(app: &Router, uri: &str, cookie: Option<&str>, extra: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    read(
        app.clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await
}

async fn api_json(app: &Router, uri: &str) -> serde_json::Value {
    let a = get(
        app,
        uri,
        None,
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(a.status, 200, "{uri}: {}", a.body);
    serde_json::from_str(&a.body).unwrap()
}

/// The number in `data-value="..."` right after `marker` in `body`.
fn value_after(body: &str, marker: &str) -> f64 {
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in page"));
    let rest = &body[at..];
    let v = rest.split("data-value=\"").nth(1).unwrap();
    v[..v.find('"').unwrap()].parse().unwrap()
}

#[test]
fn a_token_link_sets_an_http_only_strict_cookie_and_redirects_to_a_clean_url() {
    let f = fixture();
    rt().block_on(async {
        let a = get(&f.app, &format!("/?token={TOKEN}&window=24h"), None, &[]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(a.header(header::LOCATION), "/?window=24h");
        let c = a.header(header::SET_COOKIE);
        assert!(
            c.starts_with(&format!("kb_session={}", TOKEN.replace('-', "%2D"))),
            "{c}"
        );
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
            assert!(c.split("; ").any(|p| p == attr), "{attr} missing: {c}");
        }
        assert!(!c.contains("Secure"), "plain http gets no Secure: {c}");
        assert!(!a.body.contains(TOKEN));

        // Behind a TLS proxy the cookie is Secure.
        let a = get(
            &f.app,
            &format!("/?token={TOKEN}"),
            None,
            &[("x-forwarded-proto", "https")],
        )
        .await;
        assert_eq!(a.header(header::LOCATION), "/");
        assert!(a.header(header::SET_COOKIE).ends_with("; Secure"));
    });
}

#[test]
fn a_bad_token_shows_the_sign_in_form_with_an_error_and_sets_no_cookie() {
    let f = fixture();
    rt().block_on(async {
        let bad = "not-a-valid-key-4242";
        let a = get(&f.app, &format!("/?token={bad}"), None, &[]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.header(header::SET_COOKIE).is_empty());
        assert!(a.body.contains("was not accepted"));
        assert!(a.body.contains(r#"<form method="post" action="/login">"#));
        assert!(!a.body.contains(bad), "the key is never echoed");
    });
}

#[test]
fn pages_without_a_session_redirect_to_sign_in_and_a_revoked_key_is_dropped() {
    let f = fixture();
    rt().block_on(async {
        let a = get(&f.app, "/clusters/c1?window=30d", None, &[]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(
            a.header(header::LOCATION),
            "/login?next=%2Fclusters%2Fc1%3Fwindow%3D30d"
        );
        assert!(a.header(header::SET_COOKIE).is_empty());
        let a = get(&f.app, "/", None, &[]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);

        let a = get(&f.app, "/", Some("kb_session=revoked-key"), &[]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(a.header(header::LOCATION), "/login?next=%2F&error=expired");
        assert!(a.header(header::SET_COOKIE).contains("Max-Age=0"));

        let a = get(
            &f.app,
            "/login?next=%2Fclusters%2Fc1&error=expired",
            None,
            &[],
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(a.body.contains(r#"name="next" value="/clusters/c1""#));
        assert!(a.body.contains("Sign in again"));
        assert_eq!(
            a.header(header::CONTENT_SECURITY_POLICY).split(';').next(),
            Some("default-src 'self'")
        );
    });
}

#[test]
fn the_sign_in_form_sets_the_cookie_and_refuses_other_sites() {
    let f = fixture();
    rt().block_on(async {
        let post = |body: String, origin: &'static str| {
            let app = f.app.clone();
            async move {
                let req = Request::post("/login")
                    .header(header::HOST, "127.0.0.1:8080")
                    .header(header::ORIGIN, origin)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(body))
                    .unwrap();
                read(app.oneshot(req).await.unwrap()).await
            }
        };
        let ok = post(
            format!("token={TOKEN}&next=%2Fclusters%2Fc1"),
            "http://127.0.0.1:8080",
        )
        .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        assert_eq!(ok.header(header::LOCATION), "/clusters/c1");
        assert!(ok.header(header::SET_COOKIE).contains("HttpOnly"));

        let open_redirect = post(
            format!("token={TOKEN}&next=%2F%2Fevil.example"),
            "http://127.0.0.1:8080",
        )
        .await;
        assert_eq!(open_redirect.header(header::LOCATION), "/");

        let bad = post("token=nope".into(), "http://127.0.0.1:8080").await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        assert!(bad.header(header::SET_COOKIE).is_empty());

        let foreign = post(format!("token={TOKEN}"), "http://evil.example").await;
        assert_eq!(foreign.status, StatusCode::FORBIDDEN);
        assert!(foreign.header(header::SET_COOKIE).is_empty());

        let req = Request::post("/logout")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, cookie())
            .body(Body::empty())
            .unwrap();
        let out = read(f.app.clone().oneshot(req).await.unwrap()).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert_eq!(out.header(header::LOCATION), "/login");
        assert!(out.header(header::SET_COOKIE).starts_with("kb_session=; "));
        assert!(out.header(header::SET_COOKIE).contains("Max-Age=0"));
    });
}

#[test]
fn the_overview_shows_the_api_totals_with_no_store_and_a_strict_policy() {
    let f = fixture();
    rt().block_on(async {
        let json = api_json(&f.app, "/api/v1/costs/kubernetes?window=24h").await;
        let api_total = json["clusters"][0]["total_cost"].as_f64().unwrap();
        // 10 pods: 3 x 0.5 + 2 x 0.1 + 1 x 0.2 + 4 x 0.25 = 2.9 per hour; `24h` ends at the
        // end of the current hour (14:00), whose data is not stored yet: 23 hours.
        assert!((api_total - 2.9 * 23.0).abs() < 1e-6, "{api_total}");
        let a = get(&f.app, "/?window=24h", Some(&cookie()), &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
        assert!(
            a.header(header::CONTENT_SECURITY_POLICY)
                .contains("script-src 'self'")
        );
        assert_eq!(a.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        let shown = value_after(&a.body, r#"<tr data-cluster="c1">"#);
        assert!((shown - api_total).abs() < 1e-9, "{shown} vs {api_total}");
        assert!(a.body.contains("$66.70"));
        // The previous 24 h hold 24 stored hours, this range 23: down by one hour's cost.
        assert!(
            a.body.contains("down 4.2% (-$2.90)") && a.body.contains(r#"class="trend down""#),
            "{}",
            a.body
        );
        assert!(a.body.contains(r#"href="/clusters/c1?window=24h""#));
        assert!(
            a.body
                .contains(r#"<a href="/?window=24h" aria-current="page">24 h</a>"#)
        );
    });
}

#[test]
fn names_are_escaped_everywhere() {
    let f = fixture();
    rt().block_on(async {
        let a = get(&f.app, "/clusters/c1?window=24h", Some(&cookie()), &[]).await;
        assert_eq!(a.status, 200);
        assert!(!a.body.contains("<script>"), "raw markup in the page");
        assert!(a.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(a.body.contains(
            "/clusters/c1/namespaces/%3Cscript%3Ealert%281%29%3C%2Fscript%3E?window=24h"
        ));
        let a = get(
            &f.app,
            "/clusters/c1/namespaces/%3Cscript%3Ealert%281%29%3C%2Fscript%3E?window=24h",
            Some(&cookie()),
            &[],
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(!a.body.contains("<script>"));
        assert!(a.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // A filter value is escaped in the form and the links.
        let a = get(
            &f.app,
            "/clusters/c1?q=%22%3E%3Cimg+src%3Dx%3E",
            Some(&cookie()),
            &[],
        )
        .await;
        assert!(!a.body.contains("<img"));
        assert!(a.body.contains("&quot;&gt;&lt;img src=x&gt;"));
    });
}

#[test]
fn the_cluster_page_sorts_filters_and_totals_like_the_api() {
    let f = fixture();
    rt().block_on(async {
        let json =
            api_json(&f.app, "/api/v1/costs/kubernetes/c1/namespaces?window=24h").await;
        let a = get(&f.app, "/clusters/c1?window=24h", Some(&cookie()), &[]).await;
        assert_eq!(a.status, 200);
        let total = value_after(&a.body, r#"id="cluster-total""#);
        assert!((total - json["total_cost"].as_f64().unwrap()).abs() < 1e-9);
        for row in json["namespaces"].as_array().unwrap() {
            let ns = row["namespace"].as_str().unwrap();
            let marker = format!(
                r#"<tr data-namespace="{}">"#,
                ns.replace('<', "&lt;").replace('>', "&gt;")
            );
            let v = value_after(&a.body, &marker);
            assert!((v - row["total_cost"].as_f64().unwrap()).abs() < 1e-9, "{ns}");
        }
        // Default order: largest first (web 1.5/h, batch 1.0/h, ...).
        let web = a.body.find(r#"data-namespace="web""#).unwrap();
        let batch = a.body.find(r#"data-namespace="batch""#).unwrap();
        assert!(web < batch);
        assert!(a.body.contains(r#"aria-sort="descending""#));
        // Savings with their total.
        assert!(a.body.contains(r#"<strong id="savings-total">$42.50</strong>"#));

        let a = get(
            &f.app,
            "/clusters/c1?window=24h&sort=name&order=asc",
            Some(&cookie()),
            &[],
        )
        .await;
        let batch = a.body.find(r#"data-namespace="batch""#).unwrap();
        let web = a.body.find(r#"data-namespace="web""#).unwrap();
        assert!(batch < web);
        assert!(a.body.contains(r#"aria-sort="ascending""#));

        let a = get(&f.app, "/clusters/c1?window=24h&q=KUBE", Some(&cookie()), &[]).await;
        assert!(a.body.contains(r#"data-namespace="kube-system""#));
        assert!(!a.body.contains(r#"data-namespace="web""#));
        assert!(a.body.contains("1–1 of 1 namespaces"));

        // Stacked by namespace: the legend names the namespaces and "other".
        let a = get(
            &f.app,
            "/clusters/c1?window=24h&by=namespace",
            Some(&cookie()),
            &[],
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(a.body.contains("stacked by namespace"));
        assert!(a.body.contains("<li><svg width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" height=\"12\" fill=\"#4e79a7\"/></svg>web</li>"));
        // Each hour of the namespace chart's data table sums to the cluster's hourly cost.
        assert_eq!(
            a.body.matches("<td class=\"num\">$2.90</td></tr>").count(),
            23,
            "{}",
            a.body
        );
    });
}

#[test]
fn a_namespace_shows_its_workloads_and_pods() {
    let f = fixture();
    rt().block_on(async {
        let a = get(
            &f.app,
            "/clusters/c1/namespaces/web?window=24h",
            Some(&cookie()),
            &[],
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains(r#"<tr data-workload="frontend">"#));
        assert!(a.body.contains("<summary>3 pods</summary>"));
        for p in 0..3 {
            assert!(
                a.body
                    .contains(&format!(r#"<span class="pod">frontend-{p}</span>"#))
            );
        }
        let total = value_after(&a.body, r#"id="namespace-total""#);
        assert!((total - 1.5 * 23.0).abs() < 1e-9, "{total}");
        assert!(
            !a.body.contains("coredns"),
            "other namespaces are not listed"
        );
        assert!(a.body.contains("cpu 2 -&gt; 500m"));
    });
}

#[test]
fn an_unknown_cluster_is_a_404_page() {
    let f = fixture();
    rt().block_on(async {
        let a = get(&f.app, "/clusters/nope", Some(&cookie()), &[]).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.body.contains("not found"));
        assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    });
}
