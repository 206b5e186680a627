//! The dashboard's reads: requests to the kb-api router in process, with the session's key as
//! `Authorization: Bearer`, so keys, scopes, per-cluster access, rate limits, the response
//! cache and the audit log are the API's own. The JSON answers are read into the structs
//! below (only the fields the pages show; the API's field names).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// Largest API answer the dashboard reads (a year of namespaces is well below).
const MAX_BODY: usize = 64 << 20;

/// What went wrong with an API read.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: StatusCode,
    /// The API's message (never contains a secret).
    pub message: String,
    /// `Retry-After` of a 429 or 503.
    pub retry_after: Option<String>,
}

impl Failure {
    fn internal(message: &str) -> Failure {
        Failure {
            status: StatusCode::BAD_GATEWAY,
            message: message.to_string(),
            retry_after: None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// The kb-api router, called in process.
#[derive(Clone)]
pub struct Api {
    router: Router,
    timeout: Duration,
}

impl Api {
    /// Wraps the API's router; `timeout` bounds each call (the API has its own too).
    pub fn new(router: Router, timeout: Duration) -> Api {
        Api { router, timeout }
    }

    /// `GET path?params` as `key` (no `Authorization` header without a key), read as `T`.
    /// The request is built before the future is returned, so the future borrows nothing.
    pub fn get<T: DeserializeOwned>(
        &self,
        key: Option<&str>,
        path: &str,
        params: &[(&str, &str)],
    ) -> impl Future<Output = Result<T, Failure>> + Send + 'static {
        let req = build(key, path, params);
        let router = self.router.clone();
        let timeout = self.timeout;
        let path = path.to_string();
        async move {
            let req = req?;
            let resp = match tokio::time::timeout(timeout, router.oneshot(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    return Err(Failure {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        message: "the api took too long to answer".to_string(),
                        retry_after: Some("1".to_string()),
                    });
                }
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = axum::body::to_bytes(resp.into_body(), MAX_BODY)
                .await
                .map_err(|_| Failure::internal("the api answer could not be read"))?;
            if !status.is_success() {
                let message = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|e| e.error.message)
                    .unwrap_or_else(|_| status.to_string());
                return Err(Failure {
                    status,
                    message,
                    retry_after,
                });
            }
            serde_json::from_slice(&body).map_err(|e| {
                tracing::warn!(path, error = %e, "dashboard: unexpected api answer");
                Failure::internal("the api answered in an unexpected shape")
            })
        }
    }
}

fn build(key: Option<&str>, path: &str, params: &[(&str, &str)]) -> Result<Request<Body>, Failure> {
    let uri = format!("{path}{}", crate::html::qs(params));
    let mut req = Request::get(uri);
    if let Some(k) = key {
        // A key that is not a valid header value cannot match any key: a 401.
        let Ok(v) = HeaderValue::from_str(&format!("Bearer {k}")) else {
            return Err(Failure {
                status: StatusCode::UNAUTHORIZED,
                message: "a valid api key is required".to_string(),
                retry_after: None,
            });
        };
        req = req.header(header::AUTHORIZATION, v);
    }
    req.body(Body::empty())
        .map_err(|_| Failure::internal("could not build the api request"))
}

/// `[start, end)`, RFC3339.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Range {
    pub start: String,
    pub end: String,
}

/// The seed's cost fields.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct Costs {
    pub total_cost: f64,
    pub cpu_cost: f64,
    pub memory_cost: f64,
    pub gpu_cost: f64,
    pub network_cost: f64,
    pub storage_cost: f64,
    pub load_balancer_cost: f64,
    pub shared_cost: f64,
    pub external_cost: f64,
    pub idle_cost: f64,
    pub efficiency_score: f64,
}

impl Costs {
    /// The resources of a stacked chart, bottom to top, with their API names.
    pub const RESOURCES: [&'static str; 9] = [
        "cpu",
        "memory",
        "gpu",
        "storage",
        "network",
        "load_balancer",
        "shared",
        "external",
        "idle",
    ];

    /// The costs in [`Costs::RESOURCES`] order.
    pub fn by_resource(&self) -> [f64; 9] {
        [
            self.cpu_cost,
            self.memory_cost,
            self.gpu_cost,
            self.storage_cost,
            self.network_cost,
            self.load_balancer_cost,
            self.shared_cost,
            self.external_cost,
            self.idle_cost,
        ]
    }
}

/// `GET /api/v1/costs/kubernetes`.
#[derive(Debug, Clone, Deserialize)]
pub struct Clusters {
    pub window: Range,
    pub clusters: Vec<ClusterItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterItem {
    pub cluster: String,
    pub last_synced: Option<String>,
    pub freshness_seconds: Option<i64>,
    #[serde(flatten)]
    pub costs: Costs,
}

/// `GET /api/v1/costs/kubernetes/{cluster}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Cluster {
    pub window: Range,
    pub totals: Costs,
    pub granularity: String,
    pub series: Vec<SeriesPoint>,
    pub trend: Trend,
    #[serde(default)]
    pub anomalies: Vec<Anomaly>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeriesPoint {
    pub start: String,
    pub end: String,
    #[serde(flatten)]
    pub costs: Costs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Trend {
    pub previous_total_cost: f64,
    pub change: f64,
    pub relative_change: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Anomaly {
    pub dimension: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
    pub detector: String,
    pub expected: f64,
    pub actual: f64,
    pub severity: String,
    pub start: String,
    pub end: String,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/namespaces` (fields listed, not flattened: this
/// answer can hold thousands of rows).
#[derive(Debug, Clone, Deserialize)]
pub struct Namespaces {
    pub total_cost: f64,
    pub count: u64,
    pub namespaces: Vec<NamespaceRow>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamespaceRow {
    pub namespace: String,
    pub total_cost: f64,
    pub cpu_cost: f64,
    pub gpu_cost: f64,
    pub memory_cost: f64,
    pub storage_cost: f64,
    pub network_cost: f64,
    pub idle_cost: f64,
    pub efficiency_score: f64,
    pub share: f64,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/workloads`.
#[derive(Debug, Clone, Deserialize)]
pub struct Workloads {
    pub total_cost: f64,
    pub count: u64,
    pub workloads: Vec<Workload>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Workload {
    pub controller_kind: String,
    pub controller: String,
    #[serde(flatten)]
    pub costs: Costs,
    pub pods: Vec<Pod>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pod {
    pub pod: String,
    #[serde(flatten)]
    pub costs: Costs,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/optimization`.
#[derive(Debug, Clone, Deserialize)]
pub struct Optimization {
    pub total_estimated_monthly_savings: f64,
    pub recommendations: Vec<Recommendation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Recommendation {
    /// `bridge` or `kubecost`.
    pub source: String,
    pub kind: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    pub target: String,
    pub estimated_monthly_savings: f64,
    pub description: String,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/budgets`.
#[derive(Debug, Clone, Deserialize)]
pub struct Budgets {
    pub budgets: Vec<Budget>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Budget {
    /// `kubecost` or `bridge` (from config).
    pub source: String,
    pub name: String,
    pub interval: String,
    pub spend_limit: f64,
    pub current_spend: f64,
    pub utilization: Option<f64>,
    pub scope: Vec<BudgetScope>,
    pub projected_overrun: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BudgetScope {
    pub category: String,
    pub values: Vec<String>,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/forecast`.
#[derive(Debug, Clone, Deserialize)]
pub struct Forecasts {
    pub forecasts: Vec<Forecast>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Forecast {
    /// `cluster` or `namespace`.
    pub dimension: String,
    pub made_at: String,
    pub horizon_days: u32,
    pub total: f64,
    pub lower: f64,
    pub upper: f64,
    pub kubecost_prediction: Option<KubecostPrediction>,
}

/// Kubecost's spec-cost prediction for the workloads of a forecast's scope.
#[derive(Debug, Clone, Deserialize)]
pub struct KubecostPrediction {
    /// Monthly cost with the predicted spec.
    pub monthly_cost: f64,
    pub monthly_change: f64,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/alerts`.
#[derive(Debug, Clone, Deserialize)]
pub struct Alerts {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    pub state: String,
}

impl Alerts {
    /// Alerts still firing.
    pub fn open(&self) -> usize {
        self.alerts.iter().filter(|a| a.state == "firing").count()
    }
}
