//! The endpoints: parameter checks, cluster access, cache, and the blocking reads.

use std::collections::{BTreeMap, HashSet};

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kb_analytics::Rules;
use kb_analytics::anomaly::Severity;
use kb_analytics::rules::{Target, attribute, sanitize_key};
use kb_analytics::summary::{Dimension, Granularity as AGran};
use kb_core::model::IDLE;
use kb_core::window::format_rfc3339;
use kb_core::{Allocation, Window};
use kb_pipeline::insights::names;
use kb_pipeline::ports::{CostQuery, CostRow, Granularity as PGran, GroupBy, PodLabels};
use serde::Serialize;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, KnownFormat, Ref, RefOr, Response as OaResponse, ResponseBuilder,
};
use utoipa::{IntoParams, IntoResponses, PartialSchema, ToSchema};

use crate::ApiState;
use crate::AuditInfo;
use crate::auth::{Principal, Scope};
use crate::cache::Rendered;
use crate::csv;
use crate::data::{self, Acc};
use crate::error::{ApiError, ErrorBody};
use crate::model::*;
use crate::params::{Format, Query};

// ---------------------------------------------------------------------------------------------
// Parameter documentation (the parsing lives in `params`; these only feed the OpenAPI document).

fn date_or_datetime() -> RefOr<Schema> {
    let s = |f| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(f)))
    };
    RefOr::T(Schema::AnyOf(
        AnyOfBuilder::new()
            .item(s(KnownFormat::DateTime))
            .item(s(KnownFormat::Date))
            .build(),
    ))
}

/// The time range: `window`, or `start`/`end`; the last 30 days when neither is given.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RangeParams {
    /// Kubecost-style window: `Nh`, `Nd` (N 1–999), `Nw` (1–99), `today`, `yesterday`,
    /// `week`, `lastweek`, `month`, `lastmonth`. `7d` is the 7 days ending at the end of today
    /// (UTC). Not with `start`/`end`.
    #[param(
        pattern = "^(today|yesterday|week|lastweek|month|lastmonth|[1-9][0-9]{0,2}[hd]|[1-9][0-9]?w)$",
        example = "30d"
    )]
    window: Option<String>,
    /// Range start (inclusive): RFC3339 or `YYYY-MM-DD` (midnight UTC); floored to the hour.
    /// Must be before `end`.
    #[param(schema_with = date_or_datetime)]
    start: Option<String>,
    /// Range end (exclusive): RFC3339 or `YYYY-MM-DD`; rounded up to the hour. Default now.
    #[param(schema_with = date_or_datetime)]
    end: Option<String>,
}

/// Whether idle cost is included.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct IdleParam {
    /// `true` (default): `total_cost` includes idle cost (and the `__idle__` row is listed);
    /// `false` leaves idle out.
    idle: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum FormatValue {
    Json,
    Csv,
}

/// Output format.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct FormatParam {
    /// `json` (default) or `csv` (the main table, RFC 4180).
    #[param(inline)]
    format: Option<FormatValue>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum GranularityValue {
    Hour,
    Day,
    Month,
}

/// Time series bucket.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct GranularityParam {
    /// `hour`, `day` or `month`. Default: hour up to 2 days, day up to 92 days, month beyond.
    #[param(inline)]
    granularity: Option<GranularityValue>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum SortValue {
    TotalCost,
    CpuCost,
    MemoryCost,
    GpuCost,
    NetworkCost,
    StorageCost,
    SharedCost,
    IdleCost,
    EfficiencyScore,
    Name,
}

const SORTS: &[&str] = &[
    "total_cost",
    "cpu_cost",
    "memory_cost",
    "gpu_cost",
    "network_cost",
    "storage_cost",
    "shared_cost",
    "idle_cost",
    "efficiency_score",
    "name",
];

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum OrderValue {
    Desc,
    Asc,
}

/// Sorting and paging.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    /// Sort key (default `total_cost`).
    #[param(inline)]
    sort: Option<SortValue>,
    /// `desc` (default) or `asc`.
    #[param(inline)]
    order: Option<OrderValue>,
    /// Rows to return (default 1000).
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<u32>,
    /// Rows to skip (default 0).
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u32>,
}

/// Workload filters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct WorkloadParams {
    /// Only this namespace.
    #[param(
        min_length = 1,
        max_length = 253,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    namespace: Option<String>,
    /// Include the pods beneath each workload (default `true`).
    pods: Option<bool>,
    /// Only pods attributed to this team by the aggregator's label-to-team mapping rules
    /// (`aggregation.rules.mappings`; `unallocated` for pods no rule matches), from each pod's
    /// newest labels in the range. Idle rows are left out.
    #[param(
        min_length = 1,
        max_length = 253,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    team: Option<String>,
    /// Only pods with this label, `key:value` (the key as written or Prometheus-sanitised, as
    /// Kubecost reports it), from each pod's newest labels in the range. Idle rows are left out.
    #[param(
        min_length = 3,
        max_length = 253,
        pattern = "^[^:\\u0000-\\u001f\\u007f-\\u009f]+:[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    label: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum DimensionValue {
    Cluster,
    Namespace,
    Controller,
    Team,
    Owner,
    Product,
    CostCenter,
}

const DIMENSIONS: &[&str] = &[
    "cluster",
    "namespace",
    "controller",
    "team",
    "owner",
    "product",
    "cost_center",
];

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum SeverityValue {
    Info,
    Warning,
    Critical,
}

/// Anomaly filters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AnomalyParams {
    /// Minimum severity (default `info`: all).
    #[param(inline)]
    severity: Option<SeverityValue>,
    /// Only anomalies of this dimension.
    #[param(inline)]
    dimension: Option<DimensionValue>,
}

/// Forecast filter.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ForecastParams {
    /// Only forecasts of this dimension.
    #[param(inline)]
    dimension: Option<DimensionValue>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum KindValue {
    RequestSizing,
    ClusterSizing,
    AbandonedWorkload,
    NodePoolSizing,
    SpotCandidate,
}

const KINDS: &[&str] = &[
    "request_sizing",
    "cluster_sizing",
    "abandoned_workload",
    "node_pool_sizing",
    "spot_candidate",
];

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum SourceValue {
    Bridge,
    Kubecost,
}

/// Optimisation filters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct OptimizationParams {
    /// Only recommendations of this kind.
    #[param(inline)]
    kind: Option<KindValue>,
    /// Only recommendations of this source (default: both).
    #[param(inline)]
    source: Option<SourceValue>,
}

/// Export scope.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ExportParams {
    /// Only this cluster (default: every cluster the key may see).
    #[param(
        min_length = 1,
        max_length = 253,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    cluster: Option<String>,
    /// Charge period length: `hour`, `day` (default) or `month`.
    #[param(inline)]
    granularity: Option<GranularityValue>,
    /// `true` (default) exports the idle rows too (as `ResourceType` `Idle`).
    idle: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Shared plumbing.

/// The `{cluster}` path segment as axum extracts it.
type ClusterPath = Result<Path<String>, PathRejection>;

/// What an endpoint answers before [`respond`] turns it into a response: the body and
/// whether it came from the cache.
type Reply = Result<(Rendered, bool), ApiError>;

/// Declares the axum handler of a `GET` endpoint below `/costs/kubernetes/{cluster}` that
/// takes the query parameters `allowed`: after [`cluster_query`] it answers with
/// `inner(&state, cluster, query, extra..)`. Its OpenAPI operation has the given path, tag,
/// parameters and 200 response (`ok`), the [`ClusterErrors`] and bearer security.
macro_rules! cluster_endpoint {
    (
        $(#[$attr:meta])*
        $name:ident($allowed:expr) => $inner:ident($($extra:expr),*);
        path = $path:tt, tag = $tag:tt,
        params($($params:tt)*),
        ok($($ok:tt)*)
    ) => {
        $(#[$attr])*
        #[utoipa::path(
            get,
            path = $path,
            tag = $tag,
            params($($params)*),
            responses(($($ok)*), ClusterErrors),
            security(("bearer" = []))
        )]
        pub(crate) async fn $name(
            State(st): State<ApiState>,
            Extension(p): Extension<Principal>,
            path: ClusterPath,
            RawQuery(raw): RawQuery,
        ) -> Response {
            let r = match cluster_query(&p, path, raw.as_deref(), $allowed) {
                Ok((cluster, q)) => $inner(&st, cluster, q $(, $extra)*).await,
                Err(e) => Err(e),
            };
            respond(r)
        }
    };
}

fn rendered_json<T: Serialize>(v: &T, rows: usize) -> Result<Rendered, ApiError> {
    let body = serde_json::to_vec(v).map_err(|_| ApiError::internal("could not encode json"))?;
    Ok(Rendered {
        body: Bytes::from(body),
        content_type: "application/json",
        rows: rows as u64,
        gzip: None,
    })
}

fn rendered_csv(s: String, rows: usize) -> Rendered {
    Rendered {
        body: Bytes::from(s),
        content_type: "text/csv",
        rows: rows as u64,
        gzip: None,
    }
}

fn respond(r: Reply) -> Response {
    match r {
        Ok((r, cached)) => {
            let mut resp = (StatusCode::OK, r.body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(r.content_type),
            );
            resp.extensions_mut().insert(AuditInfo {
                rows: r.rows,
                cached,
            });
            if let Some(gz) = r.gzip {
                resp.extensions_mut().insert(crate::GzipBody(gz));
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// Runs `f` on the blocking pool through the response cache.
async fn cached<F>(st: &ApiState, key: String, f: F) -> Reply
where
    F: FnOnce(ApiState) -> Result<Rendered, ApiError> + Send + 'static,
{
    let st2 = st.clone();
    st.cache
        .get_or_compute(&key, move || async move {
            tokio::task::spawn_blocking(move || f(st2).map(Rendered::with_gzip))
                .await
                .map_err(|_| ApiError::internal("a read task failed"))?
        })
        .await
}

fn path_cluster(p: ClusterPath) -> Result<String, ApiError> {
    p.map(|Path(c)| c)
        .map_err(|_| ApiError::bad_request("cluster: not a valid path segment"))
}

/// The cluster of the path (400 if malformed, 404 unless the key may see it) and the query
/// with only `allowed` parameters.
fn cluster_query(
    p: &Principal,
    path: ClusterPath,
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<(String, Query), ApiError> {
    let cluster = path_cluster(path)?;
    visible(p, &cluster)?;
    let q = Query::parse(raw, allowed)?;
    Ok((cluster, q))
}

/// [`cached`], with a 404 inside the read unless the store knows `cluster`; `f` gets the state
/// and the cluster.
async fn cached_known<F>(st: &ApiState, key: String, cluster: String, f: F) -> Reply
where
    F: FnOnce(ApiState, String) -> Result<Rendered, ApiError> + Send + 'static,
{
    cached(st, key, move |st| {
        known(&st, &cluster)?;
        f(st, cluster)
    })
    .await
}

/// The cache key part naming the clusters the key may see.
fn scope_key(p: &Principal) -> String {
    match &p.clusters {
        None => "*".to_string(),
        Some(cs) => cs.join(","),
    }
}

/// The optional `dimension` filter.
fn dimension_filter(q: &Query) -> Result<Option<Dimension>, ApiError> {
    Ok(q.get("dimension")
        .map(|_| q.choice("dimension", DIMENSIONS, ""))
        .transpose()?
        .and_then(names::parse_dimension))
}

/// 404 unless the key may see the cluster (checked before the cache).
fn visible(p: &Principal, cluster: &str) -> Result<(), ApiError> {
    if p.may_see(cluster) {
        Ok(())
    } else {
        Err(ApiError::cluster_not_found(cluster))
    }
}

/// 404 unless the store knows the cluster; returns its last synced time.
fn known(st: &ApiState, cluster: &str) -> Result<i64, ApiError> {
    st.directory()?
        .iter()
        .find(|(c, _)| c == cluster)
        .map(|(_, t)| *t)
        .ok_or_else(|| ApiError::cluster_not_found(cluster))
}

fn range_out(w: Window) -> Range {
    Range {
        start: format_rfc3339(w.start),
        end: format_rfc3339(w.end),
    }
}

fn key(route: &str, cluster: &str, q: &Query, w: Option<Window>) -> String {
    match w {
        Some(w) => format!("{route}|{cluster}|{}|{}|{}", w.start, w.end, q.canonical()),
        None => format!("{route}|{cluster}||{}", q.canonical()),
    }
}

fn sort_value(c: &Costs, name: &str, by: &str) -> (f64, String) {
    let v = match by {
        "cpu_cost" => c.cpu_cost,
        "memory_cost" => c.memory_cost,
        "gpu_cost" => c.gpu_cost,
        "network_cost" => c.network_cost,
        "storage_cost" => c.storage_cost,
        "shared_cost" => c.shared_cost,
        "idle_cost" => c.idle_cost,
        "efficiency_score" => c.efficiency_score,
        "name" => 0.0,
        _ => c.total_cost,
    };
    (v, name.to_string())
}

/// Sorts `(name, costs)` rows by the request's `sort`/`order` and returns the page.
fn sort_page<T>(
    mut rows: Vec<T>,
    q: &Query,
    get: impl Fn(&T) -> (&Costs, &str),
) -> Result<(Vec<T>, usize), ApiError> {
    let by = q.choice("sort", SORTS, "total_cost")?;
    let desc = q.choice("order", &["desc", "asc"], "desc")? == "desc";
    let limit = q.int("limit", 1000, 1, 100_000)? as usize;
    let offset = q.int("offset", 0, 0, 1_000_000_000)? as usize;
    rows.sort_by(|a, b| {
        let (ca, na) = get(a);
        let (cb, nb) = get(b);
        let ka = sort_value(ca, na, by);
        let kb = sort_value(cb, nb, by);
        let o = ka.0.total_cmp(&kb.0).then_with(|| ka.1.cmp(&kb.1));
        if desc { o.reverse() } else { o }
    });
    let count = rows.len();
    let page = rows.into_iter().skip(offset).take(limit).collect();
    Ok((page, count))
}

const COST_HEADER: &[&str] = &[
    "total_cost",
    "cpu_cost",
    "memory_cost",
    "gpu_cost",
    "network_cost",
    "storage_cost",
    "load_balancer_cost",
    "shared_cost",
    "external_cost",
    "idle_cost",
    "efficiency_score",
];

fn cost_fields(c: &Costs) -> Vec<String> {
    [
        c.total_cost,
        c.cpu_cost,
        c.memory_cost,
        c.gpu_cost,
        c.network_cost,
        c.storage_cost,
        c.load_balancer_cost,
        c.shared_cost,
        c.external_cost,
        c.idle_cost,
        c.efficiency_score,
    ]
    .iter()
    .map(|x| csv::num(*x))
    .collect()
}

/// `first`, the cost fields of `c`, then `last`: one CSV record.
fn cost_row(
    mut first: Vec<String>,
    c: &Costs,
    last: impl IntoIterator<Item = String>,
) -> Vec<String> {
    first.extend(cost_fields(c));
    first.extend(last);
    first
}

/// A CSV body: the header record, then the records; its row count is the records'.
fn csv_table<H: AsRef<str>>(
    header: &[H],
    records: impl IntoIterator<Item = Vec<String>>,
) -> Rendered {
    let mut s = String::new();
    csv::record(&mut s, header);
    let mut n = 0;
    for r in records {
        csv::record(&mut s, &r);
        n += 1;
    }
    rendered_csv(s, n)
}

fn header_with(first: &[&str], last: &[&str]) -> Vec<String> {
    first
        .iter()
        .chain(COST_HEADER)
        .chain(last)
        .map(|s| s.to_string())
        .collect()
}

fn share(part: f64, total: f64) -> f64 {
    if total != 0.0 && total.is_finite() {
        fin(part / total)
    } else {
        0.0
    }
}

fn anomaly_out(a: &kb_analytics::anomaly::Anomaly) -> AnomalyOut {
    AnomalyOut {
        dimension: names::dimension(a.key.dimension).to_string(),
        namespace: a.key.namespace.clone(),
        name: a.key.name.clone(),
        detector: names::detector(a.detector).to_string(),
        expected: fin(a.expected),
        actual: fin(a.actual),
        score: fin(a.score),
        severity: names::severity(a.severity).to_string(),
        start: format_rfc3339(a.start),
        end: format_rfc3339(a.end),
    }
}

// ---------------------------------------------------------------------------------------------
// Documented error responses (every error body is an `ErrorBody`).

/// A header an error response documents.
#[derive(Clone, Copy)]
enum ErrorHeader {
    None,
    /// `WWW-Authenticate: Bearer ...`.
    Challenge,
    /// `Retry-After: <seconds>`.
    RetryAfter,
}

/// The documented error responses by status: description and header.
const ERROR_DOCS: &[(u16, &str, ErrorHeader)] = &[
    (400, "bad parameter", ErrorHeader::None),
    (401, "no or unknown api key", ErrorHeader::Challenge),
    (
        404,
        "no such cluster (or not visible to this key)",
        ErrorHeader::None,
    ),
    (429, "rate limited", ErrorHeader::RetryAfter),
    (500, "store error", ErrorHeader::None),
    (
        503,
        "store busy or request timeout",
        ErrorHeader::RetryAfter,
    ),
];

/// The OpenAPI responses of `statuses` (each one listed in [`ERROR_DOCS`]).
fn error_docs(statuses: &[u16]) -> BTreeMap<String, RefOr<OaResponse>> {
    ERROR_DOCS
        .iter()
        .filter(|(status, _, _)| statuses.contains(status))
        .map(|&(status, description, h)| {
            let mut b = ResponseBuilder::new().description(description);
            let header = |schema, description| {
                HeaderBuilder::new()
                    .schema(schema)
                    .description(Some(description))
                    .build()
            };
            match h {
                ErrorHeader::None => {}
                ErrorHeader::Challenge => {
                    b = b.header(
                        "WWW-Authenticate",
                        header(String::schema(), "Bearer challenge"),
                    );
                }
                ErrorHeader::RetryAfter => {
                    b = b.header("Retry-After", header(u64::schema(), "seconds to wait"));
                }
            }
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build();
            (
                status.to_string(),
                RefOr::T(b.content("application/json", body).build()),
            )
        })
        .collect()
}

/// Declares a set of documented error responses for `responses(...)` of `utoipa::path`.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident = [$($status:literal),*]) => {
        $(#[$doc])*
        struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<OaResponse>> {
                error_docs(&[$($status),*])
            }
        }
    };
}

error_set!(
    /// The errors of an endpoint below `/costs/kubernetes/{cluster}`.
    ClusterErrors = [400, 401, 404, 429, 500, 503]
);
error_set!(
    /// The errors of the cluster list.
    ListErrors = [400, 401, 429, 500, 503]
);
error_set!(
    /// The errors of the export besides its own 400.
    ExportErrors = [401, 404, 429, 500, 503]
);
error_set!(
    /// The errors of the admin endpoints besides 403.
    AdminErrors = [400, 401, 429]
);

// ---------------------------------------------------------------------------------------------
// GET /api/v1/costs/kubernetes

/// The clusters with their totals over the range and the freshness of their data.
#[utoipa::path(
    get,
    path = "/api/v1/costs/kubernetes",
    tag = "costs",
    params(RangeParams, IdleParam, FormatParam),
    responses(
        (status = 200, description = "clusters the key may see", content(
            (ClustersResponse = "application/json"),
            (String = "text/csv")
        )),
        ListErrors,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn clusters(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    respond(clusters_inner(&st, p, raw.as_deref()).await)
}

async fn clusters_inner(st: &ApiState, p: Principal, raw: Option<&str>) -> Reply {
    let q = Query::parse(raw, &["window", "start", "end", "idle", "format"])?;
    let now = (st.clock)();
    let w = q.range(now)?;
    let idle = q.flag("idle", true)?;
    let fmt = q.format()?;
    let scope = scope_key(&p);
    cached(st, key("clusters", &scope, &q, Some(w)), move |st| {
        let mut out = Vec::new();
        for (c, synced) in st.directory()?.iter() {
            if !p.may_see(c) {
                continue;
            }
            let (acc, used) = data::cluster_total(&st, c, w)?;
            out.push(ClusterItem {
                cluster: c.clone(),
                last_synced: (*synced > 0).then(|| format_rfc3339(*synced)),
                freshness_seconds: (*synced > 0).then(|| (now - synced).max(0)),
                costs: acc.costs(idle),
                source: used.as_str().to_string(),
            });
        }
        let n = out.len();
        match fmt {
            Format::Json => rendered_json(
                &ClustersResponse {
                    window: range_out(w),
                    clusters: out,
                },
                n,
            ),
            Format::Csv => {
                let records = out.iter().map(|c| {
                    cost_row(
                        vec![c.cluster.clone(), c.last_synced.clone().unwrap_or_default()],
                        &c.costs,
                        [c.source.clone()],
                    )
                });
                Ok(csv_table(
                    &header_with(&["cluster", "last_synced"], &["source"]),
                    records,
                ))
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/costs/kubernetes/{cluster}

cluster_endpoint! {
    /// Totals, breakdown by resource, time series, trend against the previous period and the
    /// anomalies of one cluster over the range. `format=csv` returns the series.
    cluster(&["window", "start", "end", "granularity", "idle", "format"]) => cluster_inner();
    path = "/api/v1/costs/kubernetes/{cluster}", tag = "costs",
    params(
        ("cluster" = String, Path, description = "cluster name as configured in the bridge"),
        RangeParams, GranularityParam, IdleParam, FormatParam
    ),
    ok(status = 200, description = "the cluster's costs", content(
        (ClusterResponse = "application/json"),
        (String = "text/csv")
    ))
}

fn default_granularity(w: Window) -> AGran {
    let secs = w.end - w.start;
    if secs <= 2 * 86_400 {
        AGran::Hour
    } else if secs <= 92 * 86_400 {
        AGran::Day
    } else {
        AGran::Month
    }
}

fn gran_name(g: AGran) -> &'static str {
    match g {
        AGran::Hour => "hour",
        AGran::Day => "day",
        AGran::Month => "month",
    }
}

fn breakdown(c: &Costs) -> Vec<ResourceShare> {
    [
        ("cpu", c.cpu_cost),
        ("memory", c.memory_cost),
        ("gpu", c.gpu_cost),
        ("network", c.network_cost),
        ("storage", c.storage_cost),
        ("load_balancer", c.load_balancer_cost),
        ("shared", c.shared_cost),
        ("external", c.external_cost),
        ("idle", c.idle_cost),
    ]
    .iter()
    .map(|(r, v)| ResourceShare {
        resource: r.to_string(),
        cost: *v,
        share: share(*v, c.total_cost),
    })
    .collect()
}

async fn cluster_inner(st: &ApiState, cluster: String, q: Query) -> Reply {
    let w = q.range((st.clock)())?;
    let idle = q.flag("idle", true)?;
    let fmt = q.format()?;
    let g = match q.granularity()? {
        Some(PGran::Hour) => AGran::Hour,
        Some(PGran::Day) => AGran::Day,
        Some(PGran::Month) => AGran::Month,
        None => default_granularity(w),
    };
    if data::bucket_count(g, w) > 10_000 {
        return Err(ApiError::bad_request(
            "granularity: more than 10000 buckets in the range; choose a coarser granularity or a shorter range",
        ));
    }
    let cache_key = key("cluster", &cluster, &q, Some(w));
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let (points, used) = data::series(&st, &cluster, g, w)?;
        let mut total = Acc::default();
        for (_, a) in &points {
            total.add(a);
        }
        let len = w.end - w.start;
        let prev = Window {
            start: w.start - len,
            end: w.start,
        };
        let (prev_total, _) = data::cluster_total(&st, &cluster, prev)?;
        let totals = total.costs(idle);
        let pt = prev_total.costs(idle).total_cost;
        let anomalies: Vec<AnomalyOut> = st
            .insights
            .anomalies(Some(&cluster), w)?
            .iter()
            .map(anomaly_out)
            .collect();
        let series: Vec<SeriesPoint> = points
            .iter()
            .map(|(b, a)| SeriesPoint {
                start: format_rfc3339(b.start),
                end: format_rfc3339(b.end),
                costs: a.costs(idle),
            })
            .collect();
        let n = series.len();
        match fmt {
            Format::Csv => {
                let records = series
                    .iter()
                    .map(|pt| cost_row(vec![pt.start.clone(), pt.end.clone()], &pt.costs, []));
                Ok(csv_table(&header_with(&["start", "end"], &[]), records))
            }
            Format::Json => rendered_json(
                &ClusterResponse {
                    cluster: cluster.clone(),
                    window: range_out(w),
                    idle_included: idle,
                    source: used.as_str().to_string(),
                    breakdown: breakdown(&totals),
                    totals,
                    granularity: gran_name(g).to_string(),
                    series,
                    trend: Trend {
                        previous: range_out(prev),
                        previous_total_cost: pt,
                        current_total_cost: totals.total_cost,
                        change: fin(totals.total_cost - pt),
                        relative_change: kb_analytics::trends::relative_change(
                            pt,
                            totals.total_cost,
                        )
                        .map(fin),
                    },
                    anomalies,
                },
                n,
            ),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/costs/kubernetes/{cluster}/namespaces and /teams

cluster_endpoint! {
    /// Per-namespace costs over the range, with efficiency and share of the cluster total.
    namespaces(GROUPED_PARAMS) => grouped_inner(Dimension::Namespace);
    path = "/api/v1/costs/kubernetes/{cluster}/namespaces", tag = "costs",
    params(
        ("cluster" = String, Path, description = "cluster name"),
        RangeParams, IdleParam, PageParams, FormatParam
    ),
    ok(status = 200, description = "namespaces", content(
        (NamespacesResponse = "application/json"),
        (String = "text/csv")
    ))
}

cluster_endpoint! {
    /// Per-team costs over the range (team attribution from the aggregator's rules).
    teams(GROUPED_PARAMS) => grouped_inner(Dimension::Team);
    path = "/api/v1/costs/kubernetes/{cluster}/teams", tag = "costs",
    params(
        ("cluster" = String, Path, description = "cluster name"),
        RangeParams, IdleParam, PageParams, FormatParam
    ),
    ok(status = 200, description = "teams", content(
        (TeamsResponse = "application/json"),
        (String = "text/csv")
    ))
}

/// The parameters of the namespaces and teams endpoints.
const GROUPED_PARAMS: &[&str] = &[
    "window", "start", "end", "idle", "sort", "order", "limit", "offset", "format",
];

async fn grouped_inner(st: &ApiState, cluster: String, q: Query, d: Dimension) -> Reply {
    let w = q.range((st.clock)())?;
    let idle = q.flag("idle", true)?;
    let fmt = q.format()?;
    // Validate paging before the cache so a bad value is a 400 even on a hit.
    sort_page(Vec::<(Costs, String)>::new(), &q, |r| (&r.0, r.1.as_str()))?;
    let route = names::dimension(d);
    let cache_key = key(route, &cluster, &q, Some(w));
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let (groups, used) = data::grouped(&st, &cluster, d, w, None)?;
        let rows: Vec<(Costs, String)> = groups
            .into_iter()
            .filter(|((_, name), _)| idle || name != IDLE)
            .map(|((_, name), a)| (a.costs(idle), name))
            .collect();
        let total: f64 = rows.iter().map(|r| r.0.total_cost).sum();
        let (page, count) = sort_page(rows, &q, |r| (&r.0, r.1.as_str()))?;
        let n = page.len();
        let source = used.as_str().to_string();
        match fmt {
            Format::Csv => {
                let first = if d == Dimension::Team {
                    "team"
                } else {
                    "namespace"
                };
                let records = page.iter().map(|(c, name)| {
                    cost_row(
                        vec![name.clone()],
                        c,
                        [csv::num(share(c.total_cost, total))],
                    )
                });
                Ok(csv_table(&header_with(&[first], &["share"]), records))
            }
            Format::Json if d == Dimension::Team => rendered_json(
                &TeamsResponse {
                    cluster: cluster.clone(),
                    window: range_out(w),
                    idle_included: idle,
                    source,
                    total_cost: fin(total),
                    count: count as u64,
                    teams: page
                        .into_iter()
                        .map(|(c, team)| TeamRow {
                            team,
                            share: share(c.total_cost, total),
                            costs: c,
                        })
                        .collect(),
                },
                n,
            ),
            Format::Json => rendered_json(
                &NamespacesResponse {
                    cluster: cluster.clone(),
                    window: range_out(w),
                    idle_included: idle,
                    source,
                    total_cost: fin(total),
                    count: count as u64,
                    namespaces: page
                        .into_iter()
                        .map(|(c, namespace)| NamespaceRow {
                            namespace,
                            share: share(c.total_cost, total),
                            costs: c,
                        })
                        .collect(),
                },
                n,
            ),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/costs/kubernetes/{cluster}/workloads

cluster_endpoint! {
    /// Per-controller costs over the range with the pods beneath, from the stored allocations.
    workloads(&[
        "window",
        "start",
        "end",
        "idle",
        "namespace",
        "pods",
        "team",
        "label",
        "sort",
        "order",
        "limit",
        "offset",
        "format",
    ]) => workloads_inner();
    path = "/api/v1/costs/kubernetes/{cluster}/workloads", tag = "costs",
    params(
        ("cluster" = String, Path, description = "cluster name"),
        RangeParams, IdleParam, WorkloadParams, PageParams, FormatParam
    ),
    ok(status = 200, description = "workloads (CSV: one row per pod, or per workload with pods=false)", content(
        (WorkloadsResponse = "application/json"),
        (String = "text/csv")
    ))
}

/// A pod: namespace, controller kind, controller, name.
type PodKey = (String, String, String, String);

/// The `/workloads` filters on pod attributes: a team (through the mapping rules) and a label.
#[derive(Debug, Clone)]
struct PodFilter {
    team: Option<String>,
    label: Option<(String, String)>,
}

impl PodFilter {
    fn parse(q: &Query) -> Result<Option<PodFilter>, ApiError> {
        let team = q.text("team")?.map(str::to_string);
        let label = match q.text("label")? {
            None => None,
            Some(v) => match v.split_once(':') {
                Some((k, val)) if !k.is_empty() && !val.is_empty() => {
                    Some((k.to_string(), val.to_string()))
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "label: expected key:value, for example label=app:checkout",
                    ));
                }
            },
        };
        Ok((team.is_some() || label.is_some()).then_some(PodFilter { team, label }))
    }

    fn matches(&self, p: &PodLabels, cluster: &str, rules: &Rules) -> bool {
        if let Some((k, v)) = &self.label {
            let sk = sanitize_key(k);
            let found = p
                .labels
                .iter()
                .any(|(lk, lv)| lv == v && (lk == k || sanitize_key(lk) == sk));
            if !found {
                return false;
            }
        }
        if let Some(team) = &self.team {
            let a = Allocation {
                cluster: cluster.to_string(),
                namespace: p.namespace.clone(),
                controller_kind: p.controller_kind.clone(),
                controller: p.controller.clone(),
                pod: p.pod.clone(),
                labels: p.labels.clone(),
                annotations: p.annotations.clone(),
                namespace_labels: p.namespace_labels.clone(),
                ..Allocation::default()
            };
            if attribute(&a, Target::Team, rules) != *team {
                return false;
            }
        }
        true
    }

    /// The (namespace, controller kind, controller, pod) keys of the pods that pass.
    fn matching_pods(
        &self,
        st: &ApiState,
        cluster: &str,
        namespace: Option<&str>,
        w: Window,
    ) -> Result<HashSet<PodKey>, ApiError> {
        let pods = st.costs.pod_labels(cluster, namespace, w)?;
        Ok(pods
            .into_iter()
            .filter(|p| self.matches(p, cluster, &st.rules))
            .map(|p| (p.namespace, p.controller_kind, p.controller, p.pod))
            .collect())
    }
}

fn idle_name(r: &CostRow) -> String {
    if r.namespace.is_empty() && data::idle_only(r) {
        IDLE.to_string()
    } else {
        r.namespace.clone()
    }
}

async fn workloads_inner(st: &ApiState, cluster: String, q: Query) -> Reply {
    let w = q.range((st.clock)())?;
    let idle = q.flag("idle", true)?;
    let fmt = q.format()?;
    let with_pods = q.flag("pods", true)?;
    let namespace = q.text("namespace")?.map(str::to_string);
    let filter = PodFilter::parse(&q)?;
    sort_page(Vec::<(Costs, String)>::new(), &q, |r| (&r.0, r.1.as_str()))?;
    let cache_key = key("workloads", &cluster, &q, Some(w));
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let mut rows = st.costs.costs(&CostQuery {
            cluster: Some(cluster.clone()),
            namespace: namespace.clone(),
            range: w,
            granularity: None,
            group_by: GroupBy::Pod,
            include_idle: idle,
        })?;
        if let Some(f) = &filter {
            let keep = f.matching_pods(&st, &cluster, namespace.as_deref(), w)?;
            rows.retain(|r| {
                keep.contains(&(
                    r.namespace.clone(),
                    r.controller_kind.clone(),
                    r.controller.clone(),
                    r.pod.clone(),
                ))
            });
        }
        type Key = (String, String, String);
        let mut groups: BTreeMap<Key, (Acc, Vec<PodRow>)> = BTreeMap::new();
        for r in &rows {
            let a = Acc::from_row(r);
            let g = groups
                .entry((
                    idle_name(r),
                    r.controller_kind.clone(),
                    r.controller.clone(),
                ))
                .or_default();
            g.0.add(&a);
            if with_pods {
                g.1.push(PodRow {
                    pod: r.pod.clone(),
                    costs: a.costs(idle),
                });
            }
        }
        let list: Vec<WorkloadRow> = groups
            .into_iter()
            .map(
                |((namespace, controller_kind, controller), (a, mut pods))| {
                    pods.sort_by(|x, y| {
                        y.costs
                            .total_cost
                            .total_cmp(&x.costs.total_cost)
                            .then_with(|| x.pod.cmp(&y.pod))
                    });
                    WorkloadRow {
                        namespace,
                        controller_kind,
                        controller,
                        costs: a.costs(idle),
                        pods,
                    }
                },
            )
            .collect();
        let total: f64 = list.iter().map(|r| r.costs.total_cost).sum();
        let (page, count) = sort_page(list, &q, |r| (&r.costs, r.controller.as_str()))?;
        let n = page.len();
        match fmt {
            Format::Csv => {
                let mut records = Vec::new();
                for wl in &page {
                    let base = [
                        wl.namespace.clone(),
                        wl.controller_kind.clone(),
                        wl.controller.clone(),
                    ];
                    if with_pods {
                        for pod in &wl.pods {
                            let mut first = base.to_vec();
                            first.push(pod.pod.clone());
                            records.push(cost_row(first, &pod.costs, []));
                        }
                    } else {
                        let mut first = base.to_vec();
                        first.push(String::new());
                        records.push(cost_row(first, &wl.costs, []));
                    }
                }
                Ok(csv_table(
                    &header_with(&["namespace", "controller_kind", "controller", "pod"], &[]),
                    records,
                ))
            }
            Format::Json => rendered_json(
                &WorkloadsResponse {
                    cluster: cluster.clone(),
                    window: range_out(w),
                    idle_included: idle,
                    source: "allocations".to_string(),
                    total_cost: fin(total),
                    count: count as u64,
                    workloads: page,
                },
                n,
            ),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Insight endpoints.

cluster_endpoint! {
    /// Recommendations with their estimated monthly savings: the bridge's own advice (request
    /// sizing, abandoned workloads, node-pool sizing, spot candidates, from the aggregator)
    /// and Kubecost's savings, each with its source; totals per source and as a share of the
    /// cluster's monthly cost.
    optimization(&["kind", "source", "format"]) => optimization_inner();
    path = "/api/v1/costs/kubernetes/{cluster}/optimization", tag = "insights",
    params(
        ("cluster" = String, Path, description = "cluster name"),
        OptimizationParams, FormatParam
    ),
    ok(status = 200, description = "recommendations", content(
        (OptimizationResponse = "application/json"),
        (String = "text/csv")
    ))
}

async fn optimization_inner(st: &ApiState, cluster: String, q: Query) -> Reply {
    let fmt = q.format()?;
    let kind = q
        .get("kind")
        .map(|_| q.choice("kind", KINDS, ""))
        .transpose()?;
    let source = q
        .get("source")
        .map(|_| q.choice("source", &["bridge", "kubecost"], ""))
        .transpose()?;
    let cache_key = key("optimization", &cluster, &q, None);
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let wanted =
            |src: &str, k: &str| source.is_none_or(|s| s == src) && kind.is_none_or(|w| w == k);
        let bridge = st.insights.recommendations(&cluster)?;
        let mut recs: Vec<Recommendation> = Vec::new();
        if let Some(set) = &bridge {
            recs.extend(
                set.items
                    .iter()
                    .filter(|r| wanted("bridge", r.kind.as_str()))
                    .map(|r| Recommendation {
                        source: "bridge".to_string(),
                        kind: r.kind.as_str().to_string(),
                        namespace: r.namespace.clone(),
                        controller_kind: r.controller_kind.clone(),
                        controller: r.controller.clone(),
                        target: r.target.clone(),
                        description: r.description.clone(),
                        current_monthly_cost: Some(fin(r.current_monthly_cost)),
                        estimated_monthly_savings: fin(r.monthly_savings),
                    }),
            );
        }
        recs.extend(
            st.insights
                .savings(&cluster)?
                .into_iter()
                .filter(|r| wanted("kubecost", r.kind.as_str()))
                .map(|r| Recommendation {
                    source: "kubecost".to_string(),
                    kind: r.kind.as_str().to_string(),
                    namespace: r.namespace,
                    controller_kind: r.controller_kind,
                    controller: r.controller,
                    target: r.target,
                    description: r.detail,
                    current_monthly_cost: None,
                    estimated_monthly_savings: fin(r.monthly_savings),
                }),
        );
        recs.sort_by(|a, b| {
            b.estimated_monthly_savings
                .total_cmp(&a.estimated_monthly_savings)
        });
        let monthly_cost = bridge
            .as_ref()
            .map(|b| fin(b.monthly_cost))
            .filter(|c| *c > 0.0);
        let share = |saving: f64| monthly_cost.map(|c| fin(saving / c));
        let sources = ["bridge", "kubecost"]
            .into_iter()
            .filter(|s| source.is_none_or(|w| w == *s))
            .map(|s| {
                let mine = recs.iter().filter(|r| r.source == s);
                let total: f64 = mine.clone().map(|r| r.estimated_monthly_savings).sum();
                SourceSavings {
                    source: s.to_string(),
                    count: mine.count() as u64,
                    estimated_monthly_savings: fin(total),
                    savings_share: share(total),
                }
            })
            .collect();
        let total: f64 = recs.iter().map(|r| r.estimated_monthly_savings).sum();
        let n = recs.len();
        match fmt {
            Format::Csv => {
                let records = recs.iter().map(|r| {
                    vec![
                        r.source.clone(),
                        r.kind.clone(),
                        r.namespace.clone(),
                        r.controller_kind.clone(),
                        r.controller.clone(),
                        r.target.clone(),
                        r.current_monthly_cost.map(csv::num).unwrap_or_default(),
                        csv::num(r.estimated_monthly_savings),
                        r.description.clone(),
                    ]
                });
                Ok(csv_table(
                    &[
                        "source",
                        "kind",
                        "namespace",
                        "controller_kind",
                        "controller",
                        "target",
                        "current_monthly_cost",
                        "estimated_monthly_savings",
                        "description",
                    ],
                    records,
                ))
            }
            Format::Json => rendered_json(
                &OptimizationResponse {
                    cluster: cluster.clone(),
                    monthly_cost,
                    made_at: bridge.as_ref().map(|b| format_rfc3339(b.made_at)),
                    observed: bridge.as_ref().map(|b| range_out(b.observed)),
                    total_estimated_monthly_savings: fin(total),
                    savings_share: share(total),
                    sources,
                    recommendations: recs,
                },
                n,
            ),
        }
    })
    .await
}

cluster_endpoint! {
    /// The cluster's budgets: Kubecost's and the bridge's own (config `budgets:`), each with
    /// its source, utilisation and the overrun projected at the run rate to the period's end.
    budgets(&[]) => budgets_inner();
    path = "/api/v1/costs/kubernetes/{cluster}/budgets", tag = "insights",
    params(("cluster" = String, Path, description = "cluster name")),
    ok(status = 200, description = "budgets", body = BudgetsResponse)
}

async fn budgets_inner(st: &ApiState, cluster: String, q: Query) -> Reply {
    let cache_key = key("budgets", &cluster, &q, None);
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let now = (st.clock)();
        let ins = st.insights.as_ref();
        let mut budgets: Vec<BudgetOut> = Vec::new();
        for b in st.budgets.iter().filter(|b| b.cluster == cluster) {
            budgets.push(crate::insight::config_budget(ins, b, now)?);
        }
        // Kubecost's budgets are fleet-wide: one scoped to other clusters is not this one's.
        for b in st
            .insights
            .budgets(&cluster)?
            .into_iter()
            .filter(|b| crate::insight::kubecost_budget_applies(b, &cluster))
        {
            budgets.push(crate::insight::kubecost_budget(
                ins,
                b,
                &cluster,
                &st.currency,
                now,
            )?);
        }
        let n = budgets.len();
        rendered_json(
            &BudgetsResponse {
                cluster: cluster.clone(),
                budgets,
            },
            n,
        )
    })
    .await
}

cluster_endpoint! {
    /// Cost anomalies of the cluster overlapping the range, newest first.
    anomalies(&["window", "start", "end", "severity", "dimension", "format"]) => anomalies_inner();
    path = "/api/v1/costs/kubernetes/{cluster}/anomalies", tag = "insights",
    params(
        ("cluster" = String, Path, description = "cluster name"),
        RangeParams, AnomalyParams, FormatParam
    ),
    ok(status = 200, description = "anomalies", content(
        (AnomaliesResponse = "application/json"),
        (String = "text/csv")
    ))
}

async fn anomalies_inner(st: &ApiState, cluster: String, q: Query) -> Reply {
    let w = q.range((st.clock)())?;
    let fmt = q.format()?;
    let min = match q.choice("severity", &["info", "warning", "critical"], "info")? {
        "critical" => Severity::Critical,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    };
    let dim = dimension_filter(&q)?;
    let cache_key = key("anomalies", &cluster, &q, Some(w));
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let list: Vec<AnomalyOut> = st
            .insights
            .anomalies(Some(&cluster), w)?
            .iter()
            .filter(|a| a.severity >= min && dim.is_none_or(|d| a.key.dimension == d))
            .map(anomaly_out)
            .collect();
        let n = list.len();
        match fmt {
            Format::Csv => {
                let records = list.iter().map(|a| {
                    vec![
                        a.dimension.clone(),
                        a.namespace.clone(),
                        a.name.clone(),
                        a.detector.clone(),
                        csv::num(a.expected),
                        csv::num(a.actual),
                        csv::num(a.score),
                        a.severity.clone(),
                        a.start.clone(),
                        a.end.clone(),
                    ]
                });
                Ok(csv_table(
                    &[
                        "dimension",
                        "namespace",
                        "name",
                        "detector",
                        "expected",
                        "actual",
                        "score",
                        "severity",
                        "start",
                        "end",
                    ],
                    records,
                ))
            }
            Format::Json => rendered_json(
                &AnomaliesResponse {
                    cluster: cluster.clone(),
                    window: range_out(w),
                    anomalies: list,
                },
                n,
            ),
        }
    })
    .await
}

cluster_endpoint! {
    /// The newest cost forecasts of the cluster and its namespaces (7 and 30 days), each
    /// with Kubecost's spec-cost prediction for the workloads in its scope where the extractor
    /// stored one (`kubecost_prediction`).
    forecast(&["dimension"]) => forecast_inner();
    path = "/api/v1/costs/kubernetes/{cluster}/forecast", tag = "insights",
    params(
        ("cluster" = String, Path, description = "cluster name"),
        ForecastParams
    ),
    ok(status = 200, description = "forecasts", body = ForecastResponse)
}

async fn forecast_inner(st: &ApiState, cluster: String, q: Query) -> Reply {
    let dim = dimension_filter(&q)?;
    let cache_key = key("forecast", &cluster, &q, None);
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let preds = st.insights.predictions(&cluster)?;
        let list: Vec<ForecastOut> = st
            .insights
            .forecasts(&cluster)?
            .into_iter()
            .filter(|f| dim.is_none_or(|d| f.dimension == d))
            .map(|f| ForecastOut {
                kubecost_prediction: match f.dimension {
                    Dimension::Cluster => {
                        crate::insight::prediction_for(&preds, None, f.horizon_days)
                    }
                    Dimension::Namespace => crate::insight::prediction_for(
                        &preds,
                        Some(if f.namespace.is_empty() {
                            &f.name
                        } else {
                            &f.namespace
                        }),
                        f.horizon_days,
                    ),
                    _ => None,
                },
                dimension: names::dimension(f.dimension).to_string(),
                namespace: f.namespace,
                name: f.name,
                made_at: format_rfc3339(f.made_at),
                horizon_days: f.horizon_days,
                total: fin(f.total),
                lower: fin(f.lower),
                upper: fin(f.upper),
            })
            .collect();
        let n = list.len();
        rendered_json(
            &ForecastResponse {
                cluster: cluster.clone(),
                forecasts: list,
            },
            n,
        )
    })
    .await
}

cluster_endpoint! {
    /// The alerts of the bridge's own rules for the cluster (and the global ones), firing first.
    alerts(&[]) => alerts_inner();
    path = "/api/v1/costs/kubernetes/{cluster}/alerts", tag = "insights",
    params(("cluster" = String, Path, description = "cluster name")),
    ok(status = 200, description = "alerts", body = AlertsResponse)
}

async fn alerts_inner(st: &ApiState, cluster: String, q: Query) -> Reply {
    let cache_key = key("alerts", &cluster, &q, None);
    cached_known(st, cache_key, cluster, move |st, cluster| {
        let list = st.alerts.alerts(&cluster)?;
        let n = list.len();
        rendered_json(
            &AlertsResponse {
                cluster: cluster.clone(),
                alerts: list,
            },
            n,
        )
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/export/focus

/// The FOCUS 1.x columns written, in order.
pub(crate) const FOCUS_COLUMNS: &[&str] = &[
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ProviderName",
    "PublisherName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_Cluster",
    "x_Namespace",
    "x_ControllerKind",
    "x_Controller",
    "x_Pod",
    "x_CpuCost",
    "x_MemoryCost",
    "x_GpuCost",
    "x_StorageCost",
    "x_NetworkCost",
    "x_LoadBalancerCost",
    "x_SharedCost",
    "x_ExternalCost",
    "x_IdleCost",
    "x_EfficiencyScore",
];

/// Costs as FinOps FOCUS 1.x rows (CSV): one row per pod (and idle) per charge period, from
/// the stored allocations. Kubernetes costs are amortised list costs, so BilledCost,
/// EffectiveCost, ListCost and ContractedCost are equal; Kubernetes details are in `x_`
/// columns and in `Tags`.
#[utoipa::path(
    get,
    path = "/api/v1/export/focus",
    tag = "export",
    params(RangeParams, ExportParams),
    responses(
        (status = 200, description = "FOCUS CSV (RFC 4180, header row first)", body = String, content_type = "text/csv"),
        (status = 400, description = "bad parameter, or too many rows for one export", body = ErrorBody),
        ExportErrors,
    ),
    security(("bearer" = []))
)]
pub(crate) async fn focus(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    respond(focus_inner(&st, &p, raw.as_deref()).await)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn focus_row(out: &mut String, r: &CostRow, g: PGran, currency: &str, idle: bool) {
    let a = Acc::from_row(r);
    let c = a.costs(idle);
    let (ps, pe) = {
        let b = match g {
            PGran::Hour => AGran::Hour.bucket(r.bucket_start),
            PGran::Day => AGran::Day.bucket(r.bucket_start),
            PGran::Month => AGran::Month.bucket(r.bucket_start),
        };
        (b.start, b.end)
    };
    let month = AGran::Month.bucket(r.bucket_start);
    let is_idle = r.controller.is_empty() && data::idle_only(r);
    let namespace = if is_idle && r.namespace.is_empty() {
        IDLE.to_string()
    } else {
        r.namespace.clone()
    };
    let resource_name = if is_idle {
        IDLE.to_string()
    } else {
        r.pod.clone()
    };
    let resource_id = format!("{}/{}/{}", r.cluster, namespace, resource_name);
    let tags = format!(
        "{{\"k8s_cluster\":{},\"k8s_namespace\":{},\"k8s_controller_kind\":{},\"k8s_controller\":{}}}",
        json_str(&r.cluster),
        json_str(&namespace),
        json_str(&r.controller_kind),
        json_str(&r.controller)
    );
    let total = csv::num(c.total_cost);
    let fields: Vec<String> = vec![
        total.clone(),
        r.cluster.clone(),
        r.cluster.clone(),
        currency.to_string(),
        format_rfc3339(month.end),
        format_rfc3339(month.start),
        "Usage".to_string(),
        String::new(),
        if is_idle {
            "Kubernetes idle capacity".to_string()
        } else {
            "Kubernetes pod".to_string()
        },
        "Usage-Based".to_string(),
        format_rfc3339(pe),
        format_rfc3339(ps),
        total.clone(),
        total.clone(),
        "Kubecost".to_string(),
        total,
        "Kubernetes".to_string(),
        "Kubecost".to_string(),
        resource_id,
        resource_name,
        if is_idle { "Idle" } else { "Pod" }.to_string(),
        "Compute".to_string(),
        "Kubernetes".to_string(),
        r.cluster.clone(),
        r.cluster.clone(),
        tags,
        r.cluster.clone(),
        namespace,
        r.controller_kind.clone(),
        r.controller.clone(),
        r.pod.clone(),
        csv::num(c.cpu_cost),
        csv::num(c.memory_cost),
        csv::num(c.gpu_cost),
        csv::num(c.storage_cost),
        csv::num(c.network_cost),
        csv::num(c.load_balancer_cost),
        csv::num(c.shared_cost),
        csv::num(c.external_cost),
        csv::num(c.idle_cost),
        csv::num(c.efficiency_score),
    ];
    csv::record(out, &fields);
}

async fn focus_inner(st: &ApiState, p: &Principal, raw: Option<&str>) -> Reply {
    let q = Query::parse(
        raw,
        &["window", "start", "end", "cluster", "granularity", "idle"],
    )?;
    let w = q.range((st.clock)())?;
    let idle = q.flag("idle", true)?;
    let g = q.granularity()?.unwrap_or(PGran::Day);
    let only = q.text("cluster")?.map(str::to_string);
    if let Some(c) = &only {
        visible(p, c)?;
    }
    let scope = scope_key(p);
    let p = p.clone();
    cached(st, key("focus", &scope, &q, Some(w)), move |st| {
        let dir = st.directory()?;
        let clusters: Vec<String> = match &only {
            Some(c) => {
                known(&st, c)?;
                vec![c.clone()]
            }
            None => dir
                .iter()
                .filter(|(c, _)| p.may_see(c))
                .map(|(c, _)| c.clone())
                .collect(),
        };
        let mut out = String::new();
        csv::record(&mut out, FOCUS_COLUMNS);
        let mut n = 0usize;
        for c in &clusters {
            let rows = st.costs.costs(&CostQuery {
                cluster: Some(c.clone()),
                namespace: None,
                range: w,
                granularity: Some(g),
                group_by: GroupBy::Pod,
                include_idle: idle,
            })?;
            n += rows.len();
            if n > st.limits.max_export_rows {
                return Err(ApiError::bad_request(format!(
                    "the export would have more than {} rows; narrow the range, pick a cluster or a coarser granularity",
                    st.limits.max_export_rows
                )));
            }
            for r in &rows {
                focus_row(&mut out, r, g, &st.currency, idle);
            }
        }
        Ok(rendered_csv(out, n))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Admin and the document.

/// The configured API keys (ids, names, scopes, clusters, limits; never secrets). Needs the
/// admin scope.
#[utoipa::path(
    get,
    path = "/api/v1/admin/keys",
    tag = "admin",
    responses(
        (status = 200, description = "keys", body = KeysResponse),
        AdminErrors,
        (status = 403, description = "the key lacks the admin scope", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn admin_keys(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let r = (|| {
        p.require(Scope::Admin)?;
        Query::parse(raw.as_deref(), &[])?;
        let keys: Vec<KeyInfo> = st
            .keys
            .principals()
            .into_iter()
            .map(|k| KeyInfo {
                id: k.key_id,
                name: k.key_name,
                scopes: k.scopes.iter().map(|s| s.as_str().to_string()).collect(),
                clusters: k.clusters,
                rate_limit_per_second: k.rate_limit.map(|l| fin(l.per_second)),
                rate_limit_burst: k.rate_limit.map(|l| l.burst),
            })
            .collect();
        let n = keys.len();
        rendered_json(
            &KeysResponse {
                keys,
                audit_dropped: st.audit.dropped(),
            },
            n,
        )
        .map(|r| (r, false))
    })();
    respond(r)
}

/// `GET /api/v1/openapi.json` (no key needed: it holds no cost data).
pub(crate) async fn openapi_json() -> Response {
    let mut resp = (StatusCode::OK, crate::openapi::document_json()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
