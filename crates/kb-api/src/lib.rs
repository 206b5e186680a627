//! `kb-api`: the REST API of kubecost-bridge (issue 6).
//!
//! [`router`] serves, under `/api/v1`:
//!
//! | endpoint | reads |
//! | --- | --- |
//! | `GET /costs/kubernetes` | [`CostReader::clusters`] (names, freshness); totals from summaries* |
//! | `GET /costs/kubernetes/{cluster}` | summaries* (totals, breakdown, series, trend); [`InsightReader::anomalies`] |
//! | `GET /costs/kubernetes/{cluster}/namespaces` | namespace summaries* |
//! | `GET /costs/kubernetes/{cluster}/workloads` | [`CostReader::costs`] by pod (raw allocations) |
//! | `GET /costs/kubernetes/{cluster}/optimization` | [`InsightReader::savings`] |
//! | `GET /costs/kubernetes/{cluster}/budgets` | [`InsightReader::budgets`] |
//! | `GET /costs/kubernetes/{cluster}/anomalies` | [`InsightReader::anomalies`] |
//! | `GET /costs/kubernetes/{cluster}/forecast` | [`InsightReader::forecasts`] |
//! | `GET /costs/kubernetes/{cluster}/alerts` | [`AlertReader`] (the binary reads the alert states kb-ops keeps in the store) |
//! | `GET /costs/kubernetes/{cluster}/teams` | team summaries (no fallback: teams exist only there) |
//! | `GET /export/focus` | [`CostReader::costs`] by pod (raw allocations), FOCUS 1.x CSV |
//! | `GET /admin/keys` | the key ring (admin scope) |
//! | `GET /openapi.json` | the OpenAPI 3.1 document (no key needed) |
//!
//! \* summaries first, finer summaries then raw allocations for buckets the aggregator has not
//! covered (see [`data`]), so answers are never silently empty.
//!
//! Every other request passes, in order: a request timeout (503), a body limit (413), the API
//! key check (401), the key's rate limit (429 with `Retry-After`), the endpoint's scope (403) and
//! cluster access (404, the same as for a cluster that does not exist), then the response cache
//! and a blocking-pool read of the store. One audit line is written per request.
//!
//! Answers are cached (see [`cache`]) with their gzip form, sent to clients whose
//! `Accept-Encoding` allows gzip (`Vary: accept-encoding`).
//!
//! Time ranges are whole UTC hours (see [`params`]). `/workloads` filters by `team`
//! (the aggregator's label-to-team mapping rules, [`ApiState::rules`]) and `label`, matched
//! against each pod's newest labels in the range ([`CostReader::pod_labels`]). OIDC/JWT
//! bearer tokens are accepted beside the keys when configured (see [`jwt`]). Not
//! implemented: TLS (terminate it in front, or the binary wraps the
//! router), Parquet export.

pub mod audit;
pub mod auth;
pub mod cache;
mod csv;
mod data;
pub mod error;
mod handlers;
mod insight;
pub mod jwt;
pub mod model;
pub mod openapi;
pub mod params;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kb_pipeline::insights::InsightReader;
use kb_pipeline::ports::{CostReader, StoreError};

pub use audit::{AuditRecord, AuditSink};
pub use auth::{
    ApiKeyConfig, AuthConfig, AuthConfigError, KeyRing, KeySecret, RateLimit, Scope, Secret,
};
pub use cache::ResponseCache;
pub use error::ApiError;
pub use jwt::{Jwks, JwtAuth, JwtConfig};
pub use model::Alert;

/// Reads alerts for the `/alerts` endpoint (the binary reads the states kb-ops keeps).
pub trait AlertReader: Send + Sync {
    /// The cluster's alerts, newest first.
    fn alerts(&self, cluster: &str) -> Result<Vec<Alert>, StoreError>;
}

/// The alert reader until alerting exists: always empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAlerts;

impl AlertReader for NoAlerts {
    fn alerts(&self, _cluster: &str) -> Result<Vec<Alert>, StoreError> {
        Ok(Vec::new())
    }
}

/// The current unix time; a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Unix seconds of the wall clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(unix_now)
}

/// Limits of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A request running longer is answered 503 (`timeout`).
    pub request_timeout: Duration,
    /// Larger request bodies are refused with 413 (the API takes no bodies).
    pub max_body_bytes: usize,
    /// How long an answer stays in the response cache (0 disables it).
    pub cache_ttl: Duration,
    pub cache_entries: usize,
    /// Bytes of cached bodies above which the cache starts over.
    pub cache_bytes: usize,
    /// Rows above which the FOCUS export asks for a narrower range (400).
    pub max_export_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024,
            cache_ttl: Duration::from_secs(60),
            cache_entries: 4096,
            cache_bytes: 256 << 20,
            max_export_rows: 2_000_000,
        }
    }
}

/// The cluster list with the time it was read.
type Directory = (Instant, Arc<Vec<(String, i64)>>);

/// Everything the API serves from.
#[derive(Clone)]
pub struct ApiState {
    pub costs: Arc<dyn CostReader>,
    pub insights: Arc<dyn InsightReader>,
    pub alerts: Arc<dyn AlertReader>,
    pub keys: Arc<KeyRing>,
    pub audit: AuditSink,
    pub clock: Clock,
    pub limits: Limits,
    /// ISO 4217 code written as FOCUS `BillingCurrency` (Kubecost reports in one currency).
    pub currency: String,
    /// The allocation rules whose label-to-team mappings the `/workloads` `team` filter
    /// applies (the aggregator's, so both agree); no mappings by default.
    pub rules: Arc<kb_analytics::Rules>,
    /// The bridge's own budgets (config `budgets:`), served by `/budgets` beside Kubecost's.
    pub budgets: Arc<Vec<kb_analytics::budget::BudgetSpec>>,
    cache: Arc<ResponseCache>,
    directory: Arc<Mutex<Option<Directory>>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("keys", &self.keys)
            .field("audit", &self.audit)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Builds the state: hashes the keys (refusing malformed ones), no alerts, default limits,
    /// currency USD.
    pub fn new(
        costs: Arc<dyn CostReader>,
        insights: Arc<dyn InsightReader>,
        auth: &AuthConfig,
        audit: AuditSink,
        clock: Clock,
    ) -> Result<ApiState, AuthConfigError> {
        let limits = Limits::default();
        Ok(ApiState {
            costs,
            insights,
            alerts: Arc::new(NoAlerts),
            keys: Arc::new(KeyRing::new(auth)?),
            audit,
            clock,
            cache: Arc::new(ResponseCache::new(
                limits.cache_ttl,
                limits.cache_entries,
                limits.cache_bytes,
            )),
            limits,
            currency: "USD".to_string(),
            rules: Arc::new(kb_analytics::Rules::new(0)),
            budgets: Arc::new(Vec::new()),
            directory: Arc::new(Mutex::new(None)),
        })
    }

    /// Replaces the limits (and the response cache, for its ttl and size).
    pub fn with_limits(mut self, limits: Limits) -> ApiState {
        self.cache = Arc::new(ResponseCache::new(
            limits.cache_ttl,
            limits.cache_entries,
            limits.cache_bytes,
        ));
        self.limits = limits;
        self
    }

    /// Sets the allocation rules the `team` filter maps labels with.
    pub fn with_rules(mut self, rules: kb_analytics::Rules) -> ApiState {
        self.rules = Arc::new(rules);
        self
    }

    /// Plugs in an alert reader.
    pub fn with_alerts(mut self, alerts: Arc<dyn AlertReader>) -> ApiState {
        self.alerts = alerts;
        self
    }

    /// Sets the bridge's own budgets (from config).
    pub fn with_budgets(mut self, budgets: Vec<kb_analytics::budget::BudgetSpec>) -> ApiState {
        self.budgets = Arc::new(budgets);
        self
    }

    /// The response cache: call [`ResponseCache::invalidate`] after committing new data.
    pub fn cache(&self) -> Arc<ResponseCache> {
        self.cache.clone()
    }

    /// The clusters with their freshness, re-read at most every 2 s.
    pub(crate) fn directory(&self) -> Result<Arc<Vec<(String, i64)>>, ApiError> {
        let now = Instant::now();
        {
            let g = match self.directory.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if let Some((at, list)) = g.as_ref() {
                if now.duration_since(*at) < Duration::from_secs(2) {
                    return Ok(list.clone());
                }
            }
        }
        let list = Arc::new(self.costs.clusters()?);
        let mut g = match self.directory.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Some((now, list.clone()));
        Ok(list)
    }
}

/// What the audit middleware learns from a handler.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AuditInfo {
    pub rows: u64,
    pub cached: bool,
}

/// The gzip form of a response body, swapped in by [`guard`] when the client accepts it.
#[derive(Debug, Clone)]
pub(crate) struct GzipBody(pub bytes::Bytes);

/// Whether `Accept-Encoding` allows gzip (a `gzip` or `x-gzip` coding without `q=0`).
fn accepts_gzip(h: &axum::http::HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|item| {
                let mut parts = item.split(';').map(str::trim);
                let coding = parts.next().unwrap_or("");
                let zero = parts.any(|p| {
                    p.strip_prefix("q=")
                        .is_some_and(|q| q.parse::<f64>().is_ok_and(|q| q <= 0.0))
                });
                (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
                    && !zero
            })
        })
    })
}

/// Query parameter names whose values are written to the audit log.
const AUDITED_PARAMS: &[&str] = &[
    "window",
    "start",
    "end",
    "granularity",
    "idle",
    "sort",
    "order",
    "limit",
    "offset",
    "format",
    "namespace",
    "pods",
    "cluster",
    "severity",
    "dimension",
    "kind",
];

fn audit_params(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .take(32)
        .map(|(k, v)| {
            let known = AUDITED_PARAMS.contains(&k.as_ref());
            let k: String = k.chars().take(64).collect();
            if known {
                (k, v.chars().take(256).collect())
            } else {
                (k, "<redacted>".to_string())
            }
        })
        .collect()
}

fn cluster_of(route: &str, path: &str) -> Option<String> {
    if !route.contains("{cluster}") {
        return None;
    }
    let seg = path.split('/').nth(5)?;
    Some(percent_decode(seg).chars().take(128).collect::<String>())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Authentication, rate limit and the audit line.
async fn guard(
    State(st): State<ApiState>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let t0 = Instant::now();
    // The audit log records wall time, whatever clock the answers use.
    let ts = kb_core::window::format_rfc3339(unix_now());
    let route = matched.map(|m| m.as_str().to_string()).unwrap_or_default();
    let path: String = req.uri().path().chars().take(512).collect();
    let params = audit_params(req.uri().query());
    let method = req.method().to_string();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let gzip_ok = accepts_gzip(req.headers());
    let (who, mut resp) = match st.keys.authenticate(auth.as_deref()) {
        Err(e) => (None, e.into_response()),
        // Every route needs at least `read` (`admin` implies it): a key always has a scope,
        // a JWT may carry none of ours.
        Ok(p) => match st
            .keys
            .admit(&p, Instant::now())
            .and_then(|()| p.require(auth::Scope::Read))
        {
            Err(e) => (Some(p), e.into_response()),
            Ok(()) => {
                req.extensions_mut().insert(p.clone());
                (Some(p), next.run(req).await)
            }
        },
    };
    let info = resp
        .extensions()
        .get::<AuditInfo>()
        .copied()
        .unwrap_or_default();
    if let Some(GzipBody(gz)) = resp.extensions_mut().remove::<GzipBody>() {
        resp.headers_mut().insert(
            header::VARY,
            axum::http::HeaderValue::from_static("accept-encoding"),
        );
        if gzip_ok {
            let (mut parts, _) = resp.into_parts();
            parts.headers.insert(
                header::CONTENT_ENCODING,
                axum::http::HeaderValue::from_static("gzip"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            resp = Response::from_parts(parts, axum::body::Body::from(gz));
        }
    }
    st.audit.record(AuditRecord {
        ts,
        key_id: who
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |p| p.key_id.clone()),
        key_name: who.as_ref().map(|p| p.key_name.clone()).unwrap_or_default(),
        method,
        cluster: cluster_of(&route, &path),
        route,
        path,
        params,
        status: resp.status().as_u16(),
        rows: if resp.status().is_success() {
            info.rows
        } else {
            0
        },
        duration_ms: t0.elapsed().as_secs_f64() * 1e3,
        cached: info.cached,
        dropped_before: 0,
    });
    resp
}

/// Request timeout and body limit.
async fn limits(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > st.limits.max_body_bytes as u64);
    if too_big {
        return ApiError::payload_too_large(st.limits.max_body_bytes).into_response();
    }
    match tokio::time::timeout(st.limits.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::timeout().into_response(),
    }
}

async fn no_route() -> Response {
    ApiError::no_route().into_response()
}

/// The API's routes (mount at `/`; every path starts with `/api/v1`).
pub fn router(state: ApiState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let api = Router::new()
        .route("/api/v1/costs/kubernetes", get(handlers::clusters))
        .route("/api/v1/costs/kubernetes/{cluster}", get(handlers::cluster))
        .route(
            "/api/v1/costs/kubernetes/{cluster}/namespaces",
            get(handlers::namespaces),
        )
        .route(
            "/api/v1/costs/kubernetes/{cluster}/workloads",
            get(handlers::workloads),
        )
        .route(
            "/api/v1/costs/kubernetes/{cluster}/optimization",
            get(handlers::optimization),
        )
        .route(
            "/api/v1/costs/kubernetes/{cluster}/budgets",
            get(handlers::budgets),
        )
        .route(
            "/api/v1/costs/kubernetes/{cluster}/anomalies",
            get(handlers::anomalies),
        )
        .route(
            "/api/v1/costs/kubernetes/{cluster}/forecast",
            get(handlers::forecast),
        )
        .route(
            "/api/v1/costs/kubernetes/{cluster}/alerts",
            get(handlers::alerts),
        )
        .route(
            "/api/v1/costs/kubernetes/{cluster}/teams",
            get(handlers::teams),
        )
        .route("/api/v1/export/focus", get(handlers::focus))
        .route("/api/v1/admin/keys", get(handlers::admin_keys))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .merge(api)
        .route("/api/v1/openapi.json", get(handlers::openapi_json))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), limits))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
