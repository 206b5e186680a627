//! The JSON shapes of the API (with the seed's field names), and their OpenAPI schemas.

use serde::Serialize;
use utoipa::ToSchema;

/// Replaces NaN and infinities (never valid JSON numbers) with 0.
pub(crate) fn fin(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// The seed's cost fields, in the currency Kubecost reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Costs {
    /// Sum of the resource costs, shared and (unless `idle=false`) idle cost.
    pub total_cost: f64,
    pub cpu_cost: f64,
    pub memory_cost: f64,
    pub gpu_cost: f64,
    pub network_cost: f64,
    /// Persistent volume cost.
    pub storage_cost: f64,
    pub load_balancer_cost: f64,
    pub shared_cost: f64,
    pub external_cost: f64,
    /// Idle cost included in `total_cost` (0 with `idle=false`).
    pub idle_cost: f64,
    /// Kubecost's totalEfficiency: CPU and RAM usage cost over request cost (0 to 1 or more;
    /// 0 when nothing is requested).
    pub efficiency_score: f64,
}

/// A `[start, end)` range, RFC3339 UTC.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Range {
    #[schema(format = DateTime, example = "2024-06-01T00:00:00Z")]
    pub start: String,
    #[schema(format = DateTime, example = "2024-07-01T00:00:00Z")]
    pub end: String,
}

/// One cluster with its totals over the range and how fresh its data is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterItem {
    pub cluster: String,
    /// End of the newest synced allocation window (RFC3339), null when none is synced.
    #[schema(format = DateTime)]
    pub last_synced: Option<String>,
    /// Seconds from `last_synced` to now, null when none is synced.
    pub freshness_seconds: Option<i64>,
    #[serde(flatten)]
    pub costs: Costs,
    /// `summaries`, `allocations`, `mixed` or `none` (see the API docs).
    pub source: String,
}

/// `GET /api/v1/costs/kubernetes`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClustersResponse {
    pub window: Range,
    pub clusters: Vec<ClusterItem>,
}

/// One resource's share of the total.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceShare {
    /// `cpu`, `memory`, `gpu`, `network`, `storage`, `load_balancer`, `shared`, `external`
    /// or `idle`.
    pub resource: String,
    pub cost: f64,
    /// `cost / total_cost` (0 when the total is 0).
    pub share: f64,
}

/// One point of a cost time series: a bucket clipped to the range.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SeriesPoint {
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
    #[serde(flatten)]
    pub costs: Costs,
}

/// The range against the same length just before it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Trend {
    pub previous: Range,
    pub previous_total_cost: f64,
    pub current_total_cost: f64,
    /// `current - previous`.
    pub change: f64,
    /// `change / previous`, null when the previous total is not positive.
    pub relative_change: Option<f64>,
}

/// A detected cost anomaly.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnomalyOut {
    /// `cluster`, `namespace`, `controller`, `team`, `owner`, `product` or `cost_center`.
    pub dimension: String,
    /// Namespace of namespace and controller series, empty otherwise.
    pub namespace: String,
    pub name: String,
    /// `increase` (the seed's >50% in 24 h rule) or `seasonal`.
    pub detector: String,
    /// Expected cost over `[start, end)`.
    pub expected: f64,
    /// Actual cost over `[start, end)`.
    pub actual: f64,
    pub score: f64,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
}

/// `GET /api/v1/costs/kubernetes/{cluster}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterResponse {
    pub cluster: String,
    pub window: Range,
    /// Whether `total_cost` includes idle cost (`idle` parameter).
    pub idle_included: bool,
    pub source: String,
    pub totals: Costs,
    pub breakdown: Vec<ResourceShare>,
    /// `hour`, `day` or `month`.
    pub granularity: String,
    pub series: Vec<SeriesPoint>,
    pub trend: Trend,
    pub anomalies: Vec<AnomalyOut>,
}

/// One namespace over the range.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamespaceRow {
    /// The namespace, or `__idle__`, `__unmounted__`, `__shared__`, `__unallocated__`.
    pub namespace: String,
    #[serde(flatten)]
    pub costs: Costs,
    /// `total_cost` over the sum of every namespace's `total_cost` (before paging).
    pub share: f64,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/namespaces`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamespacesResponse {
    pub cluster: String,
    pub window: Range,
    pub idle_included: bool,
    pub source: String,
    /// Sum over every namespace (before paging).
    pub total_cost: f64,
    /// Namespaces before paging.
    pub count: u64,
    pub namespaces: Vec<NamespaceRow>,
}

/// One pod of a workload over the range.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PodRow {
    pub pod: String,
    #[serde(flatten)]
    pub costs: Costs,
}

/// One controller (workload) over the range, with its pods.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkloadRow {
    pub namespace: String,
    /// `deployment`, `statefulset`, `daemonset`, `job`, ... (empty for bare pods and idle).
    pub controller_kind: String,
    pub controller: String,
    #[serde(flatten)]
    pub costs: Costs,
    /// Pods beneath (empty with `pods=false`).
    pub pods: Vec<PodRow>,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/workloads`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkloadsResponse {
    pub cluster: String,
    pub window: Range,
    pub idle_included: bool,
    /// Always `allocations` (stored pod rows).
    pub source: String,
    pub total_cost: f64,
    /// Workloads before paging.
    pub count: u64,
    pub workloads: Vec<WorkloadRow>,
}

/// One recommendation: Kubecost's savings or the bridge's own advice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recommendation {
    /// `bridge` (the aggregator's advice) or `kubecost` (Kubecost's savings APIs).
    pub source: String,
    /// Kubecost: `request_sizing`, `cluster_sizing`, `abandoned_workload`. Bridge:
    /// `request_sizing`, `abandoned_workload`, `node_pool_sizing`, `spot_candidate`.
    pub kind: String,
    /// Empty for node pools and cluster sizing.
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    /// Container (request sizing), pod (Kubecost's abandoned workloads) or node pool
    /// (node-pool sizing); empty otherwise.
    pub target: String,
    /// What to change, with the figures behind it.
    pub description: String,
    /// What the target costs per month now; null where the source does not say (Kubecost).
    pub current_monthly_cost: Option<f64>,
    /// Negative: the advice costs more (a request below usage).
    pub estimated_monthly_savings: f64,
}

/// The recommendations of one source.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceSavings {
    /// `bridge` or `kubecost`.
    pub source: String,
    /// Recommendations listed (after the `kind` filter).
    pub count: u64,
    pub estimated_monthly_savings: f64,
    /// `estimated_monthly_savings / monthly_cost`, null without a monthly cost.
    pub savings_share: Option<f64>,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/optimization`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OptimizationResponse {
    pub cluster: String,
    /// What the cluster costs per 730-hour month (idle included), over the period the bridge's
    /// advice observed; null before the aggregator made any.
    pub monthly_cost: Option<f64>,
    /// When the bridge's advice was made, null before the aggregator made any.
    #[schema(format = DateTime)]
    pub made_at: Option<String>,
    /// The allocation rows the bridge's advice was computed from.
    pub observed: Option<Range>,
    /// Sum of the listed recommendations' estimated monthly savings. Kubecost's and the
    /// bridge's request sizing can advise on the same container: with both sources listed,
    /// that saving counts in each (see `sources` for each source's own total).
    pub total_estimated_monthly_savings: f64,
    /// `total_estimated_monthly_savings / monthly_cost`, null without a monthly cost.
    pub savings_share: Option<f64>,
    /// Totals per source (`bridge`, `kubecost`).
    pub sources: Vec<SourceSavings>,
    /// Largest saving first.
    pub recommendations: Vec<Recommendation>,
}

/// What a budget covers: a category and its values.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetScope {
    /// `namespace`, `cluster`, `label:team`, ...
    pub category: String,
    pub values: Vec<String>,
}

/// A budget (Kubecost's or one from the bridge's config) with its utilisation and projection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetOut {
    /// `kubecost` (Kubecost's budgets API) or `bridge` (the `budgets:` config).
    pub source: String,
    /// Kubecost's id; `bridge:NAME` for a budget from config.
    pub id: String,
    pub name: String,
    pub budget_type: String,
    /// `weekly` or `monthly`.
    pub interval: String,
    pub interval_day: u32,
    pub spend_limit: f64,
    pub current_spend: f64,
    /// `current_spend / spend_limit`, null without a positive limit.
    pub utilization: Option<f64>,
    /// The current period.
    pub window: Range,
    pub scope: Vec<BudgetScope>,
    pub currency: String,
    /// Spend per hour over the last 7 days of summaries in the budget's scope; null when the
    /// scope is not one the summaries know (a Kubecost label or a cluster other than this).
    pub run_rate_per_hour: Option<f64>,
    /// Spend to date plus the run rate to the end of the period.
    pub projected_spend: Option<f64>,
    pub projected_utilization: Option<f64>,
    /// `max(0, projected_spend - spend_limit)`.
    pub projected_overrun: Option<f64>,
    /// When spend reaches the limit at the run rate, null if not within the period.
    #[schema(format = DateTime)]
    pub exceeds_at: Option<String>,
    /// The end of the data the bridge's figures cover (spend to date for config budgets, the
    /// start of the projection for both).
    #[schema(format = DateTime)]
    pub as_of: String,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/budgets`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetsResponse {
    pub cluster: String,
    pub budgets: Vec<BudgetOut>,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/anomalies`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnomaliesResponse {
    pub cluster: String,
    pub window: Range,
    /// Newest first.
    pub anomalies: Vec<AnomalyOut>,
}

/// A forecast total over a horizon.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForecastOut {
    pub dimension: String,
    pub namespace: String,
    pub name: String,
    /// When the forecast was made (the end of the history it used).
    #[schema(format = DateTime)]
    pub made_at: String,
    pub horizon_days: u32,
    /// Predicted cost over `[made_at, made_at + horizon_days)`.
    pub total: f64,
    pub lower: f64,
    pub upper: f64,
    /// Kubecost's spec-cost predictions for workloads in this forecast's scope (the cluster,
    /// or the namespace), null where Kubecost made none.
    pub kubecost_prediction: Option<KubecostPredictionOut>,
}

/// Kubecost's spec-cost prediction (`/model/prediction/speccost`) summed over the workloads of
/// a forecast's scope: what their specs cost per month before and after the change Kubecost
/// was asked about.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KubecostPredictionOut {
    /// `namespace/kind/name` of each workload predicted.
    pub workloads: Vec<String>,
    /// Monthly cost of the workloads as they run (Kubecost's `costBefore.totalMonthlyRate`).
    pub monthly_cost_before: f64,
    /// Monthly cost with the predicted spec (`costAfter.totalMonthlyRate`).
    pub monthly_cost: f64,
    /// `monthly_cost - monthly_cost_before`.
    pub monthly_change: f64,
    /// The change over the forecast's horizon (`monthly_change × horizon hours / 730`), to
    /// add to `total` for a forecast that includes the predicted change.
    pub horizon_change: f64,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/forecast`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForecastResponse {
    pub cluster: String,
    pub forecasts: Vec<ForecastOut>,
}

/// An alert of the bridge's own rules (kb-ops): firing or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Alert {
    pub id: String,
    /// The rule that fired (`budget`, `anomaly`, `stale_data`, ...).
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub message: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/alerts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertsResponse {
    pub cluster: String,
    pub alerts: Vec<Alert>,
}

/// One team over the range (the aggregator's attribution rules decide the team).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TeamRow {
    pub team: String,
    #[serde(flatten)]
    pub costs: Costs,
    pub share: f64,
}

/// `GET /api/v1/costs/kubernetes/{cluster}/teams`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TeamsResponse {
    pub cluster: String,
    pub window: Range,
    pub idle_included: bool,
    /// `summaries`, or `none` when the aggregator has not run for the range (team
    /// attribution exists only in its summaries).
    pub source: String,
    pub total_cost: f64,
    pub count: u64,
    pub teams: Vec<TeamRow>,
}

/// An API key as the admin listing shows it (never the secret or its digest).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Clusters the key may see; null = every cluster.
    pub clusters: Option<Vec<String>>,
    /// Requests per second refilled, null = unlimited.
    pub rate_limit_per_second: Option<f64>,
    pub rate_limit_burst: Option<u32>,
}

/// `GET /api/v1/admin/keys`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeysResponse {
    pub keys: Vec<KeyInfo>,
    /// Audit lines dropped because the audit writer fell behind.
    pub audit_dropped: u64,
}
