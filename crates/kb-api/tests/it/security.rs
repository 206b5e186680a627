//! Authentication, tenant isolation, scopes, rate limits, bad parameters, limits and the audit
//! log.

use std::sync::Arc;
use std::time::Duration;

use kb_analytics::anomaly::Anomaly;
use kb_core::{Budget, SavingsRecommendation, SpecCostPrediction, Window};
use kb_pipeline::insights::{ForecastRow, InsightReader, StoredSummary, SummaryQuery};
use kb_pipeline::ports::{CostQuery, CostReader, CostRow, PodLabels, Reconciliation, StoreError};
use kb_store::SqliteStore;

use kb_api::{AuthConfig, Limits};
use serde_json::Value;

use crate::*;

fn error_of(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not json: {body}"));
    let e = v["error"].as_object().unwrap();
    assert_eq!(e.len(), 2, "{body}");
    (
        e["code"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn missing_or_wrong_keys_get_401() {
    let s = Server::start();
    let p = "/api/v1/costs/kubernetes/cluster-1/namespaces";
    for token in [None, Some("wrong"), Some("")] {
        let (st, h, body) = s.get(token, p);
        assert_eq!(st, 401, "{token:?}");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(error_of(&body).0, "unauthorized");
    }
    // Basic auth is not a bearer key.
    let url = format!("{}{p}", s.url);
    let st = rt().block_on(async move {
        reqwest::Client::new()
            .get(url)
            .basic_auth("admin", Some(ADMIN))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(st, 401);
    // Both the hashed (sha256 in config) and plain keys work.
    assert_eq!(s.get(Some(READER_ALL), p).0, 200);
    assert_eq!(s.get(Some(READER_ONE), p).0, 200);
}

#[test]
fn a_key_for_one_cluster_gets_404_for_another() {
    let s = Server::start();
    for suffix in [
        "",
        "/namespaces",
        "/workloads",
        "/optimization",
        "/budgets",
        "/anomalies",
        "/forecast",
        "/alerts",
        "/teams",
    ] {
        let (st, _, other) = s.get(
            Some(READER_ONE),
            &format!("/api/v1/costs/kubernetes/cluster-2{suffix}"),
        );
        assert_eq!(st, 404, "{suffix}");
        let (st2, _, missing) = s.get(
            Some(READER_ONE),
            &format!("/api/v1/costs/kubernetes/cluster-9{suffix}"),
        );
        assert_eq!(st2, 404);
        // Indistinguishable from a cluster that does not exist.
        assert_eq!(error_of(&other).0, error_of(&missing).0);
        assert_eq!(
            error_of(&other).1.replace("cluster-2", "X"),
            error_of(&missing).1.replace("cluster-9", "X")
        );
        assert_eq!(
            s.get(
                Some(READER_ALL),
                &format!("/api/v1/costs/kubernetes/cluster-2{suffix}")
            )
            .0,
            200
        );
    }
    // The list shows only the key's clusters; the export too.
    let (_, _, body) = s.get(Some(READER_ONE), "/api/v1/costs/kubernetes");
    let v: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["cluster-1"]);
    let (st, _, body) = s.get(Some(READER_ONE), "/api/v1/export/focus?window=7d");
    assert_eq!(st, 200);
    assert!(!body.contains("cluster-2"));
    assert_eq!(
        s.get(
            Some(READER_ONE),
            "/api/v1/export/focus?window=7d&cluster=cluster-2"
        )
        .0,
        404
    );
}

#[test]
fn admin_endpoints_need_the_admin_scope() {
    let s = Server::start();
    let (st, _, body) = s.get(Some(READER_ALL), "/api/v1/admin/keys");
    assert_eq!(st, 403);
    assert_eq!(error_of(&body).0, "forbidden");
    let (st, _, body) = s.get(Some(ADMIN), "/api/v1/admin/keys");
    assert_eq!(st, 200);
    for secret in [ADMIN, READER_ALL, READER_ONE, LIMITED] {
        assert!(!body.contains(secret));
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 4);
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let s = Server::start();
    let p = "/api/v1/costs/kubernetes/cluster-1/budgets";
    for _ in 0..3 {
        assert_eq!(s.get(Some(LIMITED), p).0, 200);
    }
    let (st, h, body) = s.get(Some(LIMITED), p);
    assert_eq!(st, 429);
    let after: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(after >= 1);
    assert_eq!(error_of(&body).0, "rate_limited");
    // Other keys are not affected; the bootstrap admin has no limit.
    for _ in 0..10 {
        assert_eq!(s.get(Some(ADMIN), p).0, 200);
    }
}

#[test]
fn bad_parameters_get_clear_400s() {
    let s = Server::start();
    let base = "/api/v1/costs/kubernetes/cluster-1";
    for (q, needle) in [
        ("/namespaces?window=7x", "window"),
        ("/namespaces?window=0d", "window"),
        ("/namespaces?window=7d&start=2024-05-01", "either window"),
        (
            "/namespaces?start=2024-06-02&end=2024-06-01",
            "start must be before end",
        ),
        ("/namespaces?start=yesterday", "start"),
        ("/namespaces?start=1717200000", "start"),
        ("/namespaces?limit=0", "limit"),
        ("/namespaces?limit=abc", "limit"),
        ("/namespaces?offset=-1", "offset"),
        ("/namespaces?sort=size", "sort"),
        ("/namespaces?order=up", "order"),
        ("/namespaces?idle=maybe", "idle"),
        ("/namespaces?format=xml", "format"),
        ("/namespaces?bogus=1", "unknown parameter"),
        ("/namespaces?limit=1&limit=2", "twice"),
        ("?granularity=week", "granularity"),
        ("?window=999d&granularity=hour", "buckets"),
        ("/workloads?namespace=", "namespace"),
        ("/anomalies?severity=loud", "severity"),
        ("/forecast?dimension=pods", "dimension"),
        ("/optimization?kind=magic", "kind"),
        ("/budgets?window=7d", "unknown parameter"),
    ] {
        let (st, h, body) = s.get(Some(ADMIN), &format!("{base}{q}"));
        assert_eq!(st, 400, "{q}: {body}");
        assert_eq!(h["content-type"], "application/json");
        let (code, msg) = error_of(&body);
        assert_eq!(code, "bad_request");
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    let (st, _, body) = s.get(Some(ADMIN), "/api/v1/nope");
    assert_eq!(st, 404);
    assert_eq!(error_of(&body).0, "not_found");
}

#[test]
fn one_audit_line_per_request_without_secrets() {
    let s = Server::start();
    let reqs: Vec<(Option<&str>, String, u16)> = vec![
        (
            Some(ADMIN),
            "/api/v1/costs/kubernetes/cluster-1/namespaces?window=7d&limit=3".to_string(),
            200,
        ),
        (
            Some(READER_ONE),
            "/api/v1/costs/kubernetes/cluster-2".to_string(),
            404,
        ),
        (None, "/api/v1/costs/kubernetes".to_string(), 401),
        (
            Some("not-a-key-secret-xyz"),
            "/api/v1/costs/kubernetes".to_string(),
            401,
        ),
        (
            Some(ADMIN),
            "/api/v1/costs/kubernetes/cluster-1/namespaces?window=7x&token=zzz-secret".to_string(),
            400,
        ),
        (Some(READER_ALL), "/api/v1/admin/keys".to_string(), 403),
        (
            Some(ADMIN),
            "/api/v1/costs/kubernetes/cluster-1/namespaces?window=7d&limit=3".to_string(),
            200,
        ),
    ];
    for (t, p, want) in &reqs {
        assert_eq!(s.get(*t, p).0, *want, "{p}");
    }
    let lines = s.audit.lines(reqs.len());
    assert_eq!(lines.len(), reqs.len());
    let text = s.audit.text();
    for secret in [
        ADMIN,
        READER_ALL,
        READER_ONE,
        "not-a-key-secret-xyz",
        "zzz-secret",
    ] {
        assert!(!text.contains(secret), "audit log leaks {secret}");
    }
    let first = &lines[0];
    assert_eq!(first["key_id"], "bootstrap-admin");
    assert_eq!(
        first["route"],
        "/api/v1/costs/kubernetes/{cluster}/namespaces"
    );
    assert_eq!(first["cluster"], "cluster-1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["rows"], 3);
    assert_eq!(first["cached"], false);
    assert!(first["ts"].as_str().unwrap().ends_with('Z'));
    let params = first["params"].as_array().unwrap();
    assert!(params.iter().any(|p| p[0] == "window" && p[1] == "7d"));
    assert_eq!(lines[1]["key_id"], "reader-one");
    assert_eq!(lines[1]["status"], 404);
    assert_eq!(lines[2]["key_id"], "anonymous");
    assert_eq!(lines[3]["status"], 401);
    let p4 = lines[4]["params"].as_array().unwrap();
    assert!(p4.iter().any(|p| p[0] == "token" && p[1] == "<redacted>"));
    assert_eq!(lines[5]["status"], 403);
    assert_eq!(lines[6]["cached"], true);
    assert_eq!(lines[6]["rows"], 3);
}

#[test]
fn timeout_and_body_limit() {
    // The real store behind a reader that takes 300 ms, against a 50 ms timeout.
    let limits = Limits {
        request_timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    let slow = Arc::new(Slow(fixture().store.clone()));
    let s = Server::start_over(slow.clone(), slow, auth(), limits);
    let (st, h, body) = s.get(Some(ADMIN), "/api/v1/costs/kubernetes/cluster-1/namespaces");
    assert_eq!(st, 503, "{body}");
    assert!(h.contains_key("retry-after"));
    assert_eq!(error_of(&body).0, "timeout");

    let s = Server::start();
    let url = format!("{}/api/v1/costs/kubernetes", s.url);
    let st = rt().block_on(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(ADMIN)
            .body(vec![b'x'; 64 * 1024])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(st, 413);
}

#[test]
fn auth_can_be_disabled_for_demos() {
    let s = Server::start_with(
        AuthConfig {
            enabled: false,
            ..AuthConfig::default()
        },
        Limits::default(),
    );
    assert_eq!(s.get(None, "/api/v1/costs/kubernetes").0, 200);
    // Enabled with no keys: nothing gets in.
    let s = Server::start_with(AuthConfig::default(), Limits::default());
    assert_eq!(s.get(Some("anything"), "/api/v1/costs/kubernetes").0, 401);
}

/// The real store, slowed down.
struct Slow(Arc<SqliteStore>);

fn nap() {
    std::thread::sleep(Duration::from_millis(300));
}

impl CostReader for Slow {
    fn costs(&self, q: &CostQuery) -> Result<Vec<CostRow>, StoreError> {
        nap();
        self.0.costs(q)
    }
    fn clusters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        nap();
        self.0.clusters()
    }
    fn reconciliations(&self, c: &str, r: Window) -> Result<Vec<Reconciliation>, StoreError> {
        self.0.reconciliations(c, r)
    }
    fn pod_labels(
        &self,
        c: &str,
        ns: Option<&str>,
        r: Window,
    ) -> Result<Vec<PodLabels>, StoreError> {
        self.0.pod_labels(c, ns, r)
    }
}

impl InsightReader for Slow {
    fn summaries(&self, q: &SummaryQuery) -> Result<Vec<StoredSummary>, StoreError> {
        nap();
        self.0.summaries(q)
    }
    fn anomalies(&self, c: Option<&str>, r: Window) -> Result<Vec<Anomaly>, StoreError> {
        self.0.anomalies(c, r)
    }
    fn forecasts(&self, c: &str) -> Result<Vec<ForecastRow>, StoreError> {
        self.0.forecasts(c)
    }
    fn budgets(&self, c: &str) -> Result<Vec<Budget>, StoreError> {
        self.0.budgets(c)
    }
    fn savings(&self, c: &str) -> Result<Vec<SavingsRecommendation>, StoreError> {
        self.0.savings(c)
    }
    fn predictions(&self, c: &str) -> Result<Vec<SpecCostPrediction>, StoreError> {
        self.0.predictions(c)
    }
    fn recommendations(
        &self,
        c: &str,
    ) -> Result<Option<kb_pipeline::insights::RecommendationSet>, StoreError> {
        self.0.recommendations(c)
    }
}
