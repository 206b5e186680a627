//! Configuration: the YAML file, environment overrides, and validation into [`Config`].
//!
//! The seed's configuration (section 6 of the design) loads as it is:
//!
//! ```yaml
//! kubecost:
//!   endpoint: "http://kubecost-cost-analyzer.kubecost.svc.cluster.local:9090"
//!   apis:
//!     allocation: { enabled: true, window: "1h", aggregate: ["cluster", "namespace", "pod"] }
//!     assets: { enabled: true, window: "1d", aggregate: ["cluster"] }
//! cloudtuner:
//!   storage: { influxdb: "http://...", clickhouse: "http://...:8123" }
//! schedule: { allocation_sync: "0 */1 * * *", asset_sync: "0 0 * * *", cleanup: "0 2 * * *" }
//! ```
//!
//! Additions, all optional: `clusters:` (one entry per Kubecost instance or per cluster of a
//! federated Kubecost, each with its own endpoint, credentials and TLS), `cloudtuner.storage.sqlite`
//! (the embedded store's file, the default store), `extract:` (lookback, retention, timeouts,
//! retries, concurrency), `retention:`, `api.listen`, `aggregation:` (rules, anomaly thresholds),
//! `schedule.aggregation`, `remote_write:` (data sources of the receiver), `realtime:` (scrapes),
//! `clickhouse:` (the mirror's database and credentials), `alerts:` (thresholds, webhooks) and
//! `budgets:` (the bridge's own budgets, beside Kubecost's).
//! `config/example.yaml` documents every key.
//!
//! Layers: built-in defaults, then the file, then environment variables
//! `KUBECOST_BRIDGE__<SECTION>__<KEY>` (double underscore between path segments, case-insensitive,
//! values parsed as YAML scalars), e.g. `KUBECOST_BRIDGE__API__LISTEN=0.0.0.0:8080`. The
//! environment wins because on Kubernetes the file ships in a shared ConfigMap while the
//! environment is the per-deployment override.
//!
//! Loading is pure ([`Config::from_yaml`] takes the environment as a map) and reports every
//! unknown key and every invalid value with its path, not just the first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kb_pipeline::retry::RetryPolicy;
use kb_pipeline::schedule::Schedule;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// The environment prefix of configuration overrides.
pub(crate) const ENV_PREFIX: &str = "KUBECOST_BRIDGE__";

/// One problem in a configuration, with the path of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigProblem {
    /// Dotted path of the key, e.g. `kubecost.apis.allocation.window`.
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigErrors(pub Vec<ConfigProblem>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration ({} problem(s))", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ----- raw, serde-facing ---------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    kubecost: RawKubecost,
    #[serde(default)]
    clusters: Vec<RawCluster>,
    #[serde(default)]
    cloudtuner: RawCloudtuner,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    extract: RawExtract,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    aggregation: RawAggregation,
    #[serde(default)]
    remote_write: RawRemoteWrite,
    #[serde(default)]
    realtime: RawRealtime,
    #[serde(default)]
    clickhouse: RawClickhouse,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    influxdb: RawInfluxdb,
    #[serde(default)]
    budgets: Vec<RawBudget>,
    #[serde(default)]
    shutdown: RawShutdown,
    #[serde(default)]
    kubernetes: RawKubernetes,
}

#[derive(Debug, Default, Deserialize)]
struct RawInfluxdb {
    database: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    org: Option<String>,
    bucket: Option<String>,
    token_file: Option<String>,
    token_env: Option<String>,
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAlerts {
    interval: Option<String>,
    #[serde(default)]
    rules: RawAlertRules,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    external_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAlertRules {
    /// How long a condition must hold before its alert fires (every rule; default per rule).
    #[serde(rename = "for")]
    for_: Option<String>,
    extraction_failure_rate: Option<f64>,
    stale_after: Option<String>,
    cost_spike_ratio: Option<f64>,
    storage_used_ratio: Option<f64>,
    /// The window of the failure rate (default 1h).
    extraction_failure_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawWebhook {
    url: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawClickhouse {
    database: Option<String>,
    user: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    cluster: Option<String>,
    mirror_interval: Option<String>,
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRemoteWrite {
    max_body_bytes: Option<usize>,
    overload_status: Option<u16>,
    spool_dir: Option<String>,
    spool_max_bytes: Option<u64>,
    #[serde(default)]
    sources: Vec<RawRwSource>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRwSource {
    cloud_account_id: Option<String>,
    cluster: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRealtime {
    /// Clusters whose Kubecost `/metrics` the bridge scrapes (`{endpoint}/metrics`).
    #[serde(default)]
    scrape: Vec<String>,
    scrape_interval: Option<String>,
    persist_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAggregation {
    enabled: Option<bool>,
    lookback: Option<String>,
    history: Option<String>,
    anomaly_threshold: Option<f64>,
    anomaly_min_cost: Option<f64>,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    optimization: RawOptimization,
}

/// `aggregation.optimization`: the bridge's own recommendations.
#[derive(Debug, Default, Deserialize)]
struct RawOptimization {
    observe: Option<String>,
    quantile: Option<f64>,
    headroom: Option<f64>,
    node_target_utilization: Option<f64>,
    spot_discount: Option<f64>,
    spot_min_replicas: Option<u32>,
}

/// One entry of `budgets:`.
#[derive(Debug, Default, Deserialize)]
struct RawBudget {
    name: Option<String>,
    cluster: Option<String>,
    namespace: Option<String>,
    team: Option<String>,
    owner: Option<String>,
    product: Option<String>,
    cost_center: Option<String>,
    amount: Option<f64>,
    period: Option<String>,
    start_day: Option<u32>,
    currency: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRules {
    version: Option<u32>,
    idle: Option<String>,
    idle_scope: Option<String>,
    #[serde(default)]
    shared_namespaces: Vec<String>,
    /// `key=value` label selectors of shared workloads.
    #[serde(default)]
    shared_labels: Vec<String>,
    shared_split: Option<String>,
    #[serde(default)]
    overheads: Vec<RawOverhead>,
    mappings: Option<Vec<RawMapping>>,
    default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawOverhead {
    name: Option<String>,
    monthly_cost: Option<f64>,
    #[serde(default)]
    clusters: Vec<String>,
    split: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMapping {
    target: Option<String>,
    from: Option<String>,
    equals: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawKubecost {
    endpoint: Option<String>,
    /// The bridge's name for the single cluster `endpoint` serves (default `default`).
    cluster: Option<String>,
    flavor: Option<String>,
    kubecost_cluster_id: Option<String>,
    auth: Option<RawAuth>,
    tls: Option<RawTls>,
    #[serde(default)]
    apis: RawApis,
}

#[derive(Debug, Default, Deserialize)]
struct RawApis {
    #[serde(default)]
    allocation: RawApi1,
    #[serde(default)]
    assets: RawApi1,
    #[serde(default)]
    budgets: RawToggle,
    #[serde(default)]
    savings: RawToggle,
    #[serde(default)]
    predictions: RawPredictions,
}

#[derive(Debug, Default, Deserialize)]
struct RawApi1 {
    enabled: Option<bool>,
    window: Option<String>,
    aggregate: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawToggle {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawPredictions {
    enabled: Option<bool>,
    /// Kubernetes workload specs (YAML files) to price with `/model/prediction/speccost`.
    #[serde(default)]
    specs: Vec<String>,
    default_namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCluster {
    name: Option<String>,
    endpoint: Option<String>,
    flavor: Option<String>,
    kubecost_cluster_id: Option<String>,
    auth: Option<RawAuth>,
    tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAuth {
    #[serde(rename = "type")]
    kind: Option<String>,
    token_file: Option<String>,
    token_env: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTls {
    ca_file: Option<String>,
    /// Client certificate (PEM) for mutual TLS with Kubecost; needs `key_file`.
    cert_file: Option<String>,
    key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCloudtuner {
    #[serde(default)]
    storage: RawStorage,
}

#[derive(Debug, Default, Deserialize)]
struct RawStorage {
    sqlite: Option<String>,
    influxdb: Option<String>,
    clickhouse: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSchedule {
    allocation_sync: Option<String>,
    asset_sync: Option<String>,
    cleanup: Option<String>,
    aggregation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawExtract {
    lookback: Option<String>,
    hourly_retention: Option<String>,
    settle: Option<String>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    max_concurrency: Option<usize>,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Debug, Default, Deserialize)]
struct RawRetry {
    max_attempts: Option<u32>,
    base_delay: Option<String>,
    max_delay: Option<String>,
    max_elapsed: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRetention {
    allocations: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawApi {
    listen: Option<String>,
    #[serde(default)]
    auth: RawApiAuth,
    /// `stdout`, `off`, or a file path (appended).
    audit_log: Option<String>,
    cache_ttl: Option<String>,
    request_timeout: Option<String>,
    currency: Option<String>,
    tls: Option<RawApiTls>,
    /// `auto`, `always` or `never`: the dashboard session cookie's `Secure` attribute.
    dashboard_secure_cookie: Option<String>,
    /// `sqlite` (default) or `clickhouse`: which store the API reads.
    query_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawApiAuth {
    enabled: Option<bool>,
    #[serde(default)]
    keys: Vec<RawApiKey>,
    default_rate_limit: Option<RawRateLimit>,
    jwt: Option<RawJwt>,
}

#[derive(Debug, Default, Deserialize)]
struct RawJwt {
    issuer: Option<String>,
    audience: Option<String>,
    jwks_file: Option<String>,
    jwks_url: Option<String>,
    jwks_refresh: Option<String>,
    scopes_claim: Option<String>,
    scope_prefix: Option<String>,
    clusters_claim: Option<String>,
    rate_limit: Option<RawRateLimit>,
    leeway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawApiKey {
    id: Option<String>,
    name: Option<String>,
    secret_file: Option<String>,
    secret_env: Option<String>,
    /// The hex SHA-256 of the token, so the config never holds the token itself.
    sha256: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    clusters: Option<Vec<String>>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRateLimit {
    per_second: Option<f64>,
    burst: Option<u32>,
}

/// `api.tls`: serve HTTPS from these PEM files.
#[derive(Debug, Default, Deserialize)]
struct RawApiTls {
    cert_file: Option<String>,
    key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawShutdown {
    /// How long `run` takes at most after SIGTERM (default 30s).
    deadline: Option<String>,
}

/// `kubernetes:`: metadata enrichment from the Kubernetes API.
#[derive(Debug, Default, Deserialize)]
struct RawKubernetes {
    enabled: Option<bool>,
    /// Default: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (in-cluster).
    api_server: Option<String>,
    token_file: Option<String>,
    ca_file: Option<String>,
    refresh_interval: Option<String>,
    request_timeout: Option<String>,
    namespace_annotations: Option<Vec<String>>,
    pod_labels: Option<Vec<String>>,
}

// ----- validated ----------------------------------------------------------------------------

/// Which Kubecost-compatible server a cluster's endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Kubecost 1.x or 2.x (`/model/allocation`, `idle=`).
    Kubecost,
    /// OpenCost (`/allocation`, `includeIdle=`).
    OpenCost,
}

/// Where a secret comes from; read at start-up by the wiring, never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// How the bridge authenticates to a Kubecost endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthConfig {
    None,
    Bearer {
        token: SecretSource,
    },
    Basic {
        username: String,
        password: SecretSource,
    },
}

/// One cluster to extract.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClusterConfig {
    /// The bridge's name for the cluster: what the store and the API call it.
    pub name: String,
    pub endpoint: url::Url,
    pub flavor: Flavor,
    /// Kubecost's cluster id to filter by when the endpoint serves several clusters.
    pub kubecost_cluster_id: Option<String>,
    pub auth: AuthConfig,
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key for mutual TLS (`tls.cert_file`, `tls.key_file`).
    pub client_cert: Option<TlsFiles>,
}

/// A PEM certificate (chain) and its private key, read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The allocation API settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AllocationApi {
    pub enabled: bool,
    /// The extraction grain for windows within Kubecost's hourly retention (`1h`).
    pub window: String,
    /// The `aggregate` asked of Kubecost (see [`effective_aggregate`]).
    pub aggregate: Vec<String>,
}

/// The assets API settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AssetsApi {
    pub enabled: bool,
    pub window: String,
    pub aggregate: Vec<String>,
}

/// Extraction settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExtractConfig {
    pub lookback: Duration,
    pub hourly_retention: Duration,
    pub settle: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_concurrency: usize,
    pub retry: RetryPolicy,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub clusters: Vec<ClusterConfig>,
    pub allocation: AllocationApi,
    pub assets: AssetsApi,
    pub budgets_enabled: bool,
    pub savings_enabled: bool,
    pub predictions_enabled: bool,
    pub prediction_specs: Vec<PathBuf>,
    pub prediction_namespace: String,
    pub sqlite_path: PathBuf,
    pub influxdb: Option<String>,
    pub clickhouse: Option<String>,
    pub allocation_schedule: Schedule,
    pub asset_schedule: Schedule,
    pub cleanup_schedule: Schedule,
    pub extract: ExtractConfig,
    pub allocation_retention: Duration,
    /// Where `run` serves the API, remote_write, health and `/metrics`.
    pub api_listen: std::net::SocketAddr,
    pub aggregation: AggregationConfig,
    pub aggregation_schedule: Schedule,
    pub remote_write: RemoteWriteConfig,
    pub realtime: RealtimeConfig,
    pub clickhouse_settings: ClickhouseSettings,
    pub alerts: kb_ops::AlertsConfig,
    pub influxdb_settings: InfluxSettings,
    pub api: ApiSettings,
    /// `budgets:`, served by `/budgets` beside Kubecost's.
    pub budgets: Vec<kb_analytics::budget::BudgetSpec>,
    /// Metadata enrichment from the Kubernetes API (`kubernetes.enabled`), `None` when off.
    pub kubernetes: Option<KubernetesConfig>,
    /// After SIGTERM, `run` exits within this (`shutdown.deadline`, 30 s): windows not
    /// committed by then are rolled back and extracted again at the next start (exit code 3).
    pub shutdown_deadline: Duration,
}

/// How an API key's secret is given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeySource {
    Secret(SecretSource),
    Sha256(String),
}

/// One API key (`api.auth.keys[]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiKey {
    pub id: String,
    pub name: String,
    pub secret: KeySource,
    /// `read` or `admin`.
    pub scopes: Vec<kb_api::Scope>,
    pub clusters: Option<Vec<String>>,
    pub rate_limit: Option<kb_api::RateLimit>,
}

/// The REST API's settings (`api:`). The bootstrap admin token comes from the environment
/// variable `KUBECOST_BRIDGE_ADMIN_TOKEN`, read by the wiring.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiSettings {
    pub auth_enabled: bool,
    pub keys: Vec<ApiKey>,
    pub default_rate_limit: Option<kb_api::RateLimit>,
    /// `None`: no audit log; `Some(None)`: stdout; `Some(Some(path))`: appended to a file.
    pub audit_log: Option<Option<PathBuf>>,
    pub cache_ttl: Duration,
    pub request_timeout: Duration,
    pub currency: String,
    /// A bootstrap admin token set by the demo; `run` reads `KUBECOST_BRIDGE_ADMIN_TOKEN`.
    pub bootstrap_token: Option<String>,
    /// OIDC/JWT bearer tokens beside the keys (`api.auth.jwt`).
    pub jwt: Option<JwtSettings>,
    /// Serve HTTPS with this certificate and key (`api.tls`); plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// When the dashboard's session cookie is `Secure` (`auto`: when the request came over
    /// https, as a TLS proxy's `X-Forwarded-Proto` or `Forwarded` header says).
    pub dashboard_secure_cookie: kb_dashboard::SecureCookie,
    /// The store the API reads (`api.query_store`).
    pub query_store: QueryStore,
}

/// Where the JWT signing keys (a JWKS document) come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JwksSource {
    File(PathBuf),
    /// Fetched at start and every `refresh` (the IdP's `jwks_uri`).
    Url {
        url: url::Url,
        refresh: Duration,
    },
}

/// `api.auth.jwt`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JwtSettings {
    pub config: kb_api::JwtConfig,
    pub jwks: JwksSource,
}

/// Which store serves the API's queries (`api.query_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryStore {
    /// The embedded SQLite store (the system of record).
    Sqlite,
    /// The ClickHouse mirror (`cloudtuner.storage.clickhouse` must be set).
    Clickhouse,
}

/// How to write to InfluxDB (`influxdb:`; the URL is `cloudtuner.storage.influxdb`): the v1
/// API with a database (1.x, and the v1-compatible endpoint of 2.x and 3.x), or the v2 API
/// with org, bucket and token when `bucket` is set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InfluxSettings {
    pub database: String,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    /// `(org, bucket, token)` for the v2 API.
    pub v2: Option<(String, String, SecretSource)>,
    pub tls: StoreTls,
}

/// How to reach ClickHouse (`clickhouse:`; the URL is `cloudtuner.storage.clickhouse`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClickhouseSettings {
    pub database: String,
    pub user: String,
    pub password: Option<SecretSource>,
    /// ClickHouse cluster name for `ON CLUSTER` DDL and replicated tables.
    pub cluster: Option<String>,
    /// How often the mirror copies windows it lacks from the embedded store.
    pub mirror_interval: Duration,
    pub tls: StoreTls,
}

/// TLS files of an `https://` store URL (`ca_file`, `client_cert_file`, `client_key_file`),
/// read by the wiring at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StoreTls {
    /// PEM CA certificates to trust besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS (both or neither).
    pub client: Option<(PathBuf, PathBuf)>,
}

fn store_tls(
    section: &str,
    ca: &Option<String>,
    cert: &Option<String>,
    key: &Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> StoreTls {
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            problems.push(ConfigProblem {
                path: format!("{section}.client_cert_file"),
                reason: "client_cert_file and client_key_file go together".into(),
            });
            None
        }
    };
    StoreTls {
        ca_file: ca.as_ref().map(PathBuf::from),
        client,
    }
}

/// One remote_write data source (`remote_write.sources[]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RwSource {
    /// The `Cloud-Account-Id` header value naming the source.
    pub cloud_account_id: String,
    /// The cluster its series are stored under.
    pub cluster: String,
    pub username: String,
    pub password: SecretSource,
}

/// The remote_write receiver (`remote_write:`), served on `api.listen`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RemoteWriteConfig {
    pub sources: Vec<RwSource>,
    pub max_body_bytes: usize,
    /// Answer 503 (default) or 429 when the receiver is full. Prometheus retries 503 always
    /// and 429 only with `queue_config.retry_on_http_429: true`.
    pub overload_429: bool,
    /// The durable spool of accepted samples (default: `realtime-spool` beside the SQLite file).
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
}

/// Scrapes and the real-time estimate (`realtime:`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RealtimeConfig {
    pub scrape: Vec<String>,
    pub scrape_interval: Duration,
    /// How often the open hour's estimate is written to the store.
    pub persist_interval: Duration,
}
/// The aggregator's settings (`aggregation:`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AggregationConfig {
    pub enabled: bool,
    /// How far back each scheduled run aggregates again (late or replaced windows).
    pub lookback: Duration,
    /// History read for anomaly detection and forecasts.
    pub history: Duration,
    /// The seed's anomaly rule: an increase above this fraction in 24 h.
    pub anomaly_threshold: f64,
    /// The rule skips hours whose cost 24 h earlier was below this (in the currency Kubecost
    /// reports), so a job costing cents does not raise "+500%".
    pub anomaly_min_cost: f64,
    pub rules: kb_analytics::Rules,
    /// Allocation rows (ending at the last closed hour) the recommendations are computed from.
    pub observe: Duration,
    pub optimization: kb_analytics::recommend::RecommendConfig,
}

/// The default embedded store file.
pub(crate) const DEFAULT_SQLITE: &str = "data/kubecost-bridge.db";

impl Config {
    /// Parses and validates a YAML document, with `env` (variable name to value) applied on top.
    pub(crate) fn from_yaml(
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut value: Value = match serde_yaml_ng::from_str(text) {
            Ok(Value::Null) => Value::Mapping(Default::default()),
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigProblem {
                    path: "(document)".into(),
                    reason: format!("not valid YAML: {e}"),
                }]));
            }
        };
        apply_env(&mut value, env, &mut problems);

        // Every unknown key, with its path.
        let mut unknown = Vec::new();
        let typed: Result<RawConfig, _> =
            serde_ignored::deserialize(value.clone(), |p| unknown.push(p.to_string()));
        for p in unknown {
            problems.push(ConfigProblem {
                path: p,
                reason: "unknown key".into(),
            });
        }
        let raw = match typed {
            Ok(raw) => raw,
            Err(_) => {
                // Ask again with path tracking to say where the type error is.
                let r: Result<RawConfig, _> = serde_path_to_error::deserialize(value);
                match r {
                    Ok(raw) => raw,
                    Err(e) => {
                        problems.push(ConfigProblem {
                            path: e.path().to_string(),
                            reason: e.inner().to_string(),
                        });
                        return Err(ConfigErrors(problems));
                    }
                }
            }
        };
        let kube = kubernetes(&raw.kubernetes, env, &mut problems);
        match validate(raw, &mut problems) {
            Some(mut cfg) if problems.is_empty() => {
                cfg.kubernetes = kube;
                Ok(cfg)
            }
            _ => Err(ConfigErrors(problems)),
        }
    }

    /// Returns the configuration the demo uses: the given clusters on one simulator endpoint,
    /// assets unaggregated, everything else at its default.
    pub(crate) fn for_simulator(
        endpoint: &url::Url,
        clusters: &[String],
        sqlite: PathBuf,
    ) -> Result<Config, ConfigErrors> {
        let mut cfg = Config::from_yaml("{}", &BTreeMap::new())?;
        cfg.clusters = clusters
            .iter()
            .map(|c| ClusterConfig {
                name: c.clone(),
                endpoint: endpoint.clone(),
                flavor: Flavor::Kubecost,
                kubecost_cluster_id: Some(c.clone()),
                auth: AuthConfig::None,
                ca_file: None,
                client_cert: None,
            })
            .collect();
        cfg.sqlite_path = sqlite;
        cfg.assets.aggregate = Vec::new();
        Ok(cfg)
    }
}

fn default_extract() -> ExtractConfig {
    ExtractConfig {
        lookback: Duration::from_secs(7 * 86_400),
        hourly_retention: Duration::from_secs(49 * 3_600),
        settle: Duration::from_secs(5 * 60),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(300),
        max_concurrency: 2,
        retry: RetryPolicy::default(),
    }
}

/// Returns the aggregate actually sent to Kubecost for a configured one.
///
/// Kubecost keeps on an aggregated row only the properties all its members share, and Kubecost
/// 2.x drops most properties unless asked (awslabs/containers-cost-allocation-dashboard#4). The
/// store's grain is the pod-hour with its controller and node, so when the configured aggregate
/// names `pod` (as the seed's does) the bridge asks for `cluster`, `namespace`, `controllerKind`,
/// `controller`, `node` and `pod` explicitly; those all are properties a pod has exactly one of,
/// so the rows and their costs are the same, only better labelled. An empty aggregate is the
/// same pod grain. Any other aggregate is sent as configured.
pub(crate) fn effective_aggregate(configured: &[String]) -> Vec<String> {
    if configured.is_empty() || configured.iter().any(|a| a == "pod") {
        [
            "cluster",
            "node",
            "namespace",
            "controllerKind",
            "controller",
            "pod",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        configured.to_vec()
    }
}

fn apply_env(value: &mut Value, env: &BTreeMap<String, String>, problems: &mut Vec<ConfigProblem>) {
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            problems.push(ConfigProblem {
                path: k.clone(),
                reason: "empty path segment".into(),
            });
            continue;
        }
        let scalar: Value = serde_yaml_ng::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
        let mut cur = &mut *value;
        let mut ok = true;
        for (i, seg) in path.iter().enumerate() {
            if !matches!(cur, Value::Mapping(_)) {
                *cur = Value::Mapping(Default::default());
            }
            let Value::Mapping(m) = cur else {
                ok = false;
                break;
            };
            let key = Value::String(seg.clone());
            if i + 1 == path.len() {
                m.insert(key, scalar.clone());
                break;
            }
            cur = m
                .entry(key)
                .or_insert_with(|| Value::Mapping(Default::default()));
        }
        if !ok {
            problems.push(ConfigProblem {
                path: k.clone(),
                reason: "cannot apply".into(),
            });
        }
    }
}

fn duration(
    raw: &Option<String>,
    path: &str,
    default: Duration,
    problems: &mut Vec<ConfigProblem>,
) -> Duration {
    match raw {
        None => default,
        Some(s) => match parse_duration(s) {
            Some(d) => d,
            None => {
                problems.push(ConfigProblem {
                    path: path.into(),
                    reason: format!("{s:?} is not a duration (examples: 500ms, 30s, 5m, 49h, 7d)"),
                });
                default
            }
        },
    }
}

/// Parses `500ms`, `30s`, `5m`, `49h`, `7d`, `2w`, or humantime forms such as `1h 30m`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(secs) = kb_core::window::parse_duration(s) {
        return u64::try_from(secs).ok().map(Duration::from_secs);
    }
    humantime::parse_duration(s.trim()).ok()
}

fn schedule(
    raw: &Option<String>,
    path: &str,
    default: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Schedule> {
    let expr = raw.as_deref().unwrap_or(default);
    match Schedule::parse(expr) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: e.to_string(),
            });
            None
        }
    }
}

fn flavor(raw: &Option<String>, path: &str, problems: &mut Vec<ConfigProblem>) -> Flavor {
    match raw.as_deref() {
        None | Some("kubecost") => Flavor::Kubecost,
        Some("opencost") => Flavor::OpenCost,
        Some(other) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: format!("{other:?} is not a flavor (kubecost or opencost)"),
            });
            Flavor::Kubecost
        }
    }
}

fn secret(
    file: &Option<String>,
    env: &Option<String>,
    path: &str,
    what: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SecretSource> {
    match (file, env) {
        (Some(f), None) => Some(SecretSource::File(PathBuf::from(f))),
        (None, Some(e)) => Some(SecretSource::Env(e.clone())),
        (Some(_), Some(_)) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: format!("give either {what}_file or {what}_env, not both"),
            });
            None
        }
        (None, None) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: format!("{what}_file or {what}_env is required"),
            });
            None
        }
    }
}

fn auth(raw: &Option<RawAuth>, path: &str, problems: &mut Vec<ConfigProblem>) -> AuthConfig {
    let Some(a) = raw else {
        return AuthConfig::None;
    };
    match a.kind.as_deref() {
        None | Some("none") => AuthConfig::None,
        Some("bearer") => {
            match secret(
                &a.token_file,
                &a.token_env,
                &format!("{path}.auth"),
                "token",
                problems,
            ) {
                Some(token) => AuthConfig::Bearer { token },
                None => AuthConfig::None,
            }
        }
        Some("basic") => {
            let Some(username) = a.username.clone() else {
                problems.push(ConfigProblem {
                    path: format!("{path}.auth.username"),
                    reason: "required for basic auth".into(),
                });
                return AuthConfig::None;
            };
            match secret(
                &a.password_file,
                &a.password_env,
                &format!("{path}.auth"),
                "password",
                problems,
            ) {
                Some(password) => AuthConfig::Basic { username, password },
                None => AuthConfig::None,
            }
        }
        Some(other) => {
            problems.push(ConfigProblem {
                path: format!("{path}.auth.type"),
                reason: format!("{other:?} is not an auth type (none, bearer or basic)"),
            });
            AuthConfig::None
        }
    }
}

fn endpoint(
    raw: &Option<String>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<url::Url> {
    let s = raw.as_deref()?;
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
        Ok(u) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: format!("scheme {:?} is not http or https", u.scheme()),
            });
            None
        }
        Err(e) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: format!("not a URL: {e}"),
            });
            None
        }
    }
}

const AGGREGATES: &[&str] = &[
    "cluster",
    "node",
    "namespace",
    "controllerKind",
    "controller",
    "pod",
    "container",
    "service",
];

fn aggregates(
    raw: &Option<Vec<String>>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<String> {
    let list = raw.clone().unwrap_or_default();
    for (i, a) in list.iter().enumerate() {
        let ok = AGGREGATES.contains(&a.as_str())
            || a.strip_prefix("label:").is_some_and(|l| !l.is_empty())
            || a.strip_prefix("annotation:").is_some_and(|l| !l.is_empty());
        if !ok {
            problems.push(ConfigProblem {
                path: format!("{path}[{i}]"),
                reason: format!(
                    "{a:?} is not a Kubecost aggregate ({}, label:NAME)",
                    AGGREGATES.join(", ")
                ),
            });
        }
    }
    list
}

/// Validates the raw config; `None` only when a problem was recorded.
fn validate(raw: RawConfig, problems: &mut Vec<ConfigProblem>) -> Option<Config> {
    let mut clusters = Vec::new();
    let top = endpoint(&raw.kubecost.endpoint, "kubecost.endpoint", problems);
    // With `clusters:` given, `kubecost.endpoint` is only their shared default.
    if let Some(url) = top.filter(|_| raw.clusters.is_empty()) {
        clusters.push(ClusterConfig {
            name: raw
                .kubecost
                .cluster
                .clone()
                .unwrap_or_else(|| "default".into()),
            endpoint: url,
            flavor: flavor(&raw.kubecost.flavor, "kubecost.flavor", problems),
            kubecost_cluster_id: raw.kubecost.kubecost_cluster_id.clone(),
            auth: auth(&raw.kubecost.auth, "kubecost", problems),
            ca_file: raw
                .kubecost
                .tls
                .as_ref()
                .and_then(|t| t.ca_file.clone())
                .map(PathBuf::from),
            client_cert: tls_files(
                raw.kubecost
                    .tls
                    .as_ref()
                    .map(|t| (&t.cert_file, &t.key_file)),
                "kubecost.tls",
                problems,
            ),
        });
    }
    for (i, c) in raw.clusters.iter().enumerate() {
        let path = format!("clusters[{i}]");
        let Some(name) = c.name.clone().filter(|n| !n.is_empty()) else {
            problems.push(ConfigProblem {
                path: format!("{path}.name"),
                reason: "required".into(),
            });
            continue;
        };
        // A cluster without its own endpoint uses `kubecost.endpoint` (a federated Kubecost).
        let url = match &c.endpoint {
            Some(_) => endpoint(&c.endpoint, &format!("{path}.endpoint"), problems),
            None => endpoint(
                &raw.kubecost.endpoint,
                &format!("{path}.endpoint"),
                &mut Vec::new(),
            ),
        };
        let Some(url) = url else {
            if c.endpoint.is_none() {
                problems.push(ConfigProblem {
                    path: format!("{path}.endpoint"),
                    reason: "required (or set kubecost.endpoint)".into(),
                });
            }
            continue;
        };
        if clusters.iter().any(|x: &ClusterConfig| x.name == name) {
            problems.push(ConfigProblem {
                path: format!("{path}.name"),
                reason: format!("duplicate cluster name {name:?}"),
            });
        }
        let auth_cfg = if c.auth.is_some() {
            auth(&c.auth, &path, problems)
        } else {
            auth(&raw.kubecost.auth, "kubecost", &mut Vec::new())
        };
        clusters.push(ClusterConfig {
            name,
            endpoint: url,
            flavor: flavor(
                if c.flavor.is_some() {
                    &c.flavor
                } else {
                    &raw.kubecost.flavor
                },
                &format!("{path}.flavor"),
                problems,
            ),
            kubecost_cluster_id: c.kubecost_cluster_id.clone(),
            auth: auth_cfg,
            ca_file: c
                .tls
                .as_ref()
                .or(raw.kubecost.tls.as_ref())
                .and_then(|t| t.ca_file.clone())
                .map(PathBuf::from),
            client_cert: match &c.tls {
                Some(t) => tls_files(
                    Some((&t.cert_file, &t.key_file)),
                    &format!("{path}.tls"),
                    problems,
                ),
                None => tls_files(
                    raw.kubecost
                        .tls
                        .as_ref()
                        .map(|t| (&t.cert_file, &t.key_file)),
                    "kubecost.tls",
                    &mut Vec::new(),
                ),
            },
        });
    }

    let apis = &raw.kubecost.apis;
    let alloc_window = apis
        .allocation
        .window
        .clone()
        .unwrap_or_else(|| "1h".into());
    if alloc_window != "1h" {
        problems.push(ConfigProblem {
            path: "kubecost.apis.allocation.window".into(),
            reason: format!(
                "{alloc_window:?}: only \"1h\" is supported (windows older than extract.hourly_retention are taken daily)"
            ),
        });
    }
    let asset_window = apis.assets.window.clone().unwrap_or_else(|| "1d".into());
    if asset_window != "1d" {
        problems.push(ConfigProblem {
            path: "kubecost.apis.assets.window".into(),
            reason: format!("{asset_window:?}: only \"1d\" is supported"),
        });
    }
    let allocation = AllocationApi {
        enabled: apis.allocation.enabled.unwrap_or(true),
        window: alloc_window,
        aggregate: aggregates(
            &apis.allocation.aggregate,
            "kubecost.apis.allocation.aggregate",
            problems,
        ),
    };
    let asset_aggs = apis.assets.aggregate.clone().unwrap_or_default();
    for (i, a) in asset_aggs.iter().enumerate() {
        if ![
            "account",
            "cluster",
            "project",
            "providerid",
            "provider",
            "type",
        ]
        .contains(&a.as_str())
        {
            problems.push(ConfigProblem {
                path: format!("kubecost.apis.assets.aggregate[{i}]"),
                reason: format!("{a:?} is not an asset aggregate (account, cluster, project, providerid, provider, type)"),
            });
        }
    }
    let assets = AssetsApi {
        enabled: apis.assets.enabled.unwrap_or(true),
        window: asset_window,
        aggregate: asset_aggs,
    };

    let d = default_extract();
    let e = &raw.extract;
    let retry = RetryPolicy {
        max_attempts: e.retry.max_attempts.unwrap_or(d.retry.max_attempts).max(1),
        base_delay: duration(
            &e.retry.base_delay,
            "extract.retry.base_delay",
            d.retry.base_delay,
            problems,
        ),
        max_delay: duration(
            &e.retry.max_delay,
            "extract.retry.max_delay",
            d.retry.max_delay,
            problems,
        ),
        max_elapsed: duration(
            &e.retry.max_elapsed,
            "extract.retry.max_elapsed",
            d.retry.max_elapsed,
            problems,
        ),
    };
    let extract = ExtractConfig {
        lookback: duration(&e.lookback, "extract.lookback", d.lookback, problems),
        hourly_retention: duration(
            &e.hourly_retention,
            "extract.hourly_retention",
            d.hourly_retention,
            problems,
        ),
        settle: duration(&e.settle, "extract.settle", d.settle, problems),
        connect_timeout: duration(
            &e.connect_timeout,
            "extract.connect_timeout",
            d.connect_timeout,
            problems,
        ),
        request_timeout: duration(
            &e.request_timeout,
            "extract.request_timeout",
            d.request_timeout,
            problems,
        ),
        max_concurrency: e.max_concurrency.unwrap_or(d.max_concurrency),
        retry,
    };
    if extract.max_concurrency == 0 {
        problems.push(ConfigProblem {
            path: "extract.max_concurrency".into(),
            reason: "must be at least 1".into(),
        });
    }

    let storage = &raw.cloudtuner.storage;
    for (key, v) in [
        ("influxdb", &storage.influxdb),
        ("clickhouse", &storage.clickhouse),
    ] {
        endpoint(v, &format!("cloudtuner.storage.{key}"), problems);
    }
    let api_listen = match raw.api.listen.as_deref() {
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(s) => match s.parse() {
            Ok(a) => a,
            Err(_) => {
                problems.push(ConfigProblem {
                    path: "api.listen".into(),
                    reason: format!("{s:?} is not an address:port"),
                });
                std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        },
    };
    let p = &apis.predictions;
    let allocation_schedule = schedule(
        &raw.schedule.allocation_sync,
        "schedule.allocation_sync",
        "0 */1 * * *",
        problems,
    );
    let asset_schedule = schedule(
        &raw.schedule.asset_sync,
        "schedule.asset_sync",
        "0 0 * * *",
        problems,
    );
    let cleanup_schedule = schedule(
        &raw.schedule.cleanup,
        "schedule.cleanup",
        "0 2 * * *",
        problems,
    );
    let aggregation_schedule = schedule(
        &raw.schedule.aggregation,
        "schedule.aggregation",
        "*/15 * * * *",
        problems,
    );
    let aggregation = aggregation(&raw.aggregation, problems);
    let sqlite_path = PathBuf::from(
        storage
            .sqlite
            .clone()
            .unwrap_or_else(|| DEFAULT_SQLITE.into()),
    );
    let remote_write = remote_write(&raw.remote_write, &sqlite_path, problems);
    let ch = &raw.clickhouse;
    let clickhouse_settings = ClickhouseSettings {
        database: ch.database.clone().unwrap_or_else(|| "cloudtuner".into()),
        user: ch.user.clone().unwrap_or_else(|| "default".into()),
        password: match (&ch.password_file, &ch.password_env) {
            (None, None) => None,
            (Some(f), None) => Some(SecretSource::File(PathBuf::from(f))),
            (None, Some(e)) => Some(SecretSource::Env(e.clone())),
            (Some(_), Some(_)) => {
                problems.push(ConfigProblem {
                    path: "clickhouse.password_file".into(),
                    reason: "give password_file or password_env, not both".into(),
                });
                None
            }
        },
        cluster: ch.cluster.clone(),
        mirror_interval: duration(
            &ch.mirror_interval,
            "clickhouse.mirror_interval",
            Duration::from_secs(60),
            problems,
        ),
        tls: store_tls(
            "clickhouse",
            &ch.ca_file,
            &ch.client_cert_file,
            &ch.client_key_file,
            problems,
        ),
    };
    for (i, c) in raw.realtime.scrape.iter().enumerate() {
        if !clusters.iter().any(|x| &x.name == c) {
            problems.push(ConfigProblem {
                path: format!("realtime.scrape[{i}]"),
                reason: format!("{c:?} is not a configured cluster"),
            });
        }
    }
    let realtime = RealtimeConfig {
        scrape: raw.realtime.scrape.clone(),
        scrape_interval: duration(
            &raw.realtime.scrape_interval,
            "realtime.scrape_interval",
            Duration::from_secs(60),
            problems,
        ),
        persist_interval: duration(
            &raw.realtime.persist_interval,
            "realtime.persist_interval",
            Duration::from_secs(10),
            problems,
        ),
    };
    let api = api_settings(&raw.api, problems);
    if api.query_store == QueryStore::Clickhouse && storage.clickhouse.is_none() {
        problems.push(ConfigProblem {
            path: "api.query_store".into(),
            reason: "clickhouse needs cloudtuner.storage.clickhouse (no ClickHouse is configured)"
                .into(),
        });
    }
    let budgets = budgets(&raw, &clusters, problems);
    Some(Config {
        clusters,
        allocation,
        assets,
        budgets_enabled: apis.budgets.enabled.unwrap_or(true),
        savings_enabled: apis.savings.enabled.unwrap_or(true),
        predictions_enabled: p.enabled.unwrap_or(!p.specs.is_empty()),
        prediction_specs: p.specs.iter().map(PathBuf::from).collect(),
        prediction_namespace: p
            .default_namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        sqlite_path,
        influxdb: storage.influxdb.clone(),
        clickhouse: storage.clickhouse.clone(),
        allocation_schedule: allocation_schedule?,
        asset_schedule: asset_schedule?,
        cleanup_schedule: cleanup_schedule?,
        extract,
        allocation_retention: duration(
            &raw.retention.allocations,
            "retention.allocations",
            Duration::from_secs(90 * 86_400),
            problems,
        ),
        api_listen,
        aggregation,
        aggregation_schedule: aggregation_schedule?,
        remote_write,
        realtime,
        clickhouse_settings,
        alerts: alerts(&raw.alerts, problems),
        influxdb_settings: influx_settings(&raw.influxdb, problems),
        api,
        budgets,
        shutdown_deadline: shutdown_deadline(&raw.shutdown, problems),
        kubernetes: None,
    })
}

/// `kubernetes:` when enabled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KubernetesConfig {
    pub api_server: url::Url,
    /// The service account's bearer token (read at start-up).
    pub token_file: PathBuf,
    /// The API server's CA; `None` trusts the system roots only.
    pub ca_file: Option<PathBuf>,
    pub refresh_interval: Duration,
    pub request_timeout: Duration,
    /// Namespace annotations added to `namespace_labels` as `annotation_<key>`.
    pub namespace_annotations: Vec<String>,
    /// Pod labels added to a row's `labels` when Kubecost did not report them.
    pub pod_labels: Vec<String>,
}

/// The service account's files, as every in-cluster client reads them.
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn kubernetes(
    raw: &RawKubernetes,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<KubernetesConfig> {
    if !raw.enabled.unwrap_or(false) {
        return None;
    }
    let in_cluster = match (
        env.get("KUBERNETES_SERVICE_HOST"),
        env.get("KUBERNETES_SERVICE_PORT"),
    ) {
        (Some(h), Some(p)) if h.contains(':') => Some(format!("https://[{h}]:{p}")),
        (Some(h), Some(p)) => Some(format!("https://{h}:{p}")),
        _ => None,
    };
    let Some(api_server) = endpoint(
        &raw.api_server.clone().or(in_cluster),
        "kubernetes.api_server",
        problems,
    ) else {
        if raw.api_server.is_none() {
            problems.push(ConfigProblem {
                path: "kubernetes.api_server".into(),
                reason: "required outside a pod (KUBERNETES_SERVICE_HOST is not set)".into(),
            });
        }
        return None;
    };
    Some(KubernetesConfig {
        api_server,
        token_file: PathBuf::from(
            raw.token_file
                .clone()
                .unwrap_or_else(|| format!("{SA_DIR}/token")),
        ),
        ca_file: Some(PathBuf::from(
            raw.ca_file
                .clone()
                .unwrap_or_else(|| format!("{SA_DIR}/ca.crt")),
        )),
        refresh_interval: duration(
            &raw.refresh_interval,
            "kubernetes.refresh_interval",
            Duration::from_secs(300),
            problems,
        )
        .max(Duration::from_secs(1)),
        request_timeout: duration(
            &raw.request_timeout,
            "kubernetes.request_timeout",
            Duration::from_secs(30),
            problems,
        ),
        namespace_annotations: raw
            .namespace_annotations
            .clone()
            .unwrap_or_else(|| vec!["owner".into(), "team".into()]),
        pod_labels: raw
            .pod_labels
            .clone()
            .unwrap_or_else(|| vec!["owner".into(), "team".into()]),
    })
}

/// The default of `shutdown.deadline`.
pub(crate) const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

fn shutdown_deadline(raw: &RawShutdown, problems: &mut Vec<ConfigProblem>) -> Duration {
    let d = duration(
        &raw.deadline,
        "shutdown.deadline",
        DEFAULT_SHUTDOWN_DEADLINE,
        problems,
    );
    if d < Duration::from_secs(1) {
        problems.push(ConfigProblem {
            path: "shutdown.deadline".into(),
            reason: "must be at least 1s".into(),
        });
    }
    d
}

fn rate_limit(
    raw: &Option<RawRateLimit>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<kb_api::RateLimit> {
    let r = raw.as_ref()?;
    match (r.per_second, r.burst) {
        (Some(p), burst) if p.is_finite() && p > 0.0 => Some(kb_api::RateLimit {
            per_second: p,
            burst: burst.unwrap_or_else(|| p.ceil().max(1.0) as u32).max(1),
        }),
        _ => {
            problems.push(ConfigProblem {
                path: format!("{path}.per_second"),
                reason: "a number of requests per second above 0 is required".into(),
            });
            None
        }
    }
}

fn jwt_settings(raw: &RawJwt, problems: &mut Vec<ConfigProblem>) -> Option<JwtSettings> {
    let path = "api.auth.jwt";
    let mut required = |v: &Option<String>, key: &str| -> Option<String> {
        let v = v.clone().filter(|s| !s.trim().is_empty());
        if v.is_none() {
            problems.push(ConfigProblem {
                path: format!("{path}.{key}"),
                reason: "required for JWT auth".into(),
            });
        }
        v
    };
    let issuer = required(&raw.issuer, "issuer");
    let audience = required(&raw.audience, "audience");
    let jwks =
        match (&raw.jwks_file, &raw.jwks_url) {
            (Some(f), None) => Some(JwksSource::File(PathBuf::from(f))),
            (None, Some(u)) => endpoint(&Some(u.clone()), &format!("{path}.jwks_url"), problems)
                .map(|url| JwksSource::Url {
                    url,
                    refresh: duration(
                        &raw.jwks_refresh,
                        &format!("{path}.jwks_refresh"),
                        Duration::from_secs(600),
                        problems,
                    ),
                }),
            _ => {
                problems.push(ConfigProblem {
                    path: format!("{path}.jwks_file"),
                    reason: "exactly one of jwks_file or jwks_url is required".into(),
                });
                None
            }
        };
    let leeway = duration(
        &raw.leeway,
        &format!("{path}.leeway"),
        Duration::from_secs(60),
        problems,
    );
    let rate_limit = rate_limit(&raw.rate_limit, &format!("{path}.rate_limit"), problems);
    let mut config = kb_api::JwtConfig::new(issuer?, audience?);
    if let Some(c) = raw.scopes_claim.clone().filter(|s| !s.is_empty()) {
        config.scopes_claim = c;
    }
    config.scope_prefix = raw.scope_prefix.clone().unwrap_or_default();
    config.clusters_claim = raw.clusters_claim.clone().filter(|s| !s.is_empty());
    config.rate_limit = rate_limit;
    config.leeway_secs = leeway.as_secs();
    Some(JwtSettings {
        config,
        jwks: jwks?,
    })
}

fn api_settings(raw: &RawApi, problems: &mut Vec<ConfigProblem>) -> ApiSettings {
    let mut keys = Vec::new();
    for (i, k) in raw.auth.keys.iter().enumerate() {
        let path = format!("api.auth.keys[{i}]");
        let Some(id) = k.id.clone().filter(|s| !s.trim().is_empty()) else {
            problems.push(ConfigProblem {
                path: format!("{path}.id"),
                reason: "required".into(),
            });
            continue;
        };
        let secret = match (&k.secret_file, &k.secret_env, &k.sha256) {
            (Some(f), None, None) => KeySource::Secret(SecretSource::File(PathBuf::from(f))),
            (None, Some(e), None) => KeySource::Secret(SecretSource::Env(e.clone())),
            (None, None, Some(h)) => KeySource::Sha256(h.clone()),
            _ => {
                problems.push(ConfigProblem {
                    path: format!("{path}.secret_file"),
                    reason: "exactly one of secret_file, secret_env or sha256 is required".into(),
                });
                continue;
            }
        };
        let mut scopes = Vec::new();
        for (j, sc) in k.scopes.iter().enumerate() {
            match kb_api::Scope::parse(sc) {
                Some(s) => scopes.push(s),
                None => problems.push(ConfigProblem {
                    path: format!("{path}.scopes[{j}]"),
                    reason: format!("{sc:?} is not read or admin"),
                }),
            }
        }
        if scopes.is_empty() {
            scopes.push(kb_api::Scope::Read);
        }
        keys.push(ApiKey {
            name: k.name.clone().unwrap_or_else(|| id.clone()),
            id,
            secret,
            scopes,
            clusters: k.clusters.clone(),
            rate_limit: rate_limit(&k.rate_limit, &format!("{path}.rate_limit"), problems),
        });
    }
    let audit_log = match raw.audit_log.as_deref() {
        None | Some("stdout") => Some(None),
        Some("off") => None,
        Some(p) => Some(Some(PathBuf::from(p))),
    };
    ApiSettings {
        auth_enabled: raw.auth.enabled.unwrap_or(true),
        keys,
        default_rate_limit: rate_limit(
            &raw.auth.default_rate_limit,
            "api.auth.default_rate_limit",
            problems,
        ),
        audit_log,
        cache_ttl: duration(
            &raw.cache_ttl,
            "api.cache_ttl",
            Duration::from_secs(60),
            problems,
        ),
        request_timeout: duration(
            &raw.request_timeout,
            "api.request_timeout",
            Duration::from_secs(30),
            problems,
        ),
        currency: raw.currency.clone().unwrap_or_else(|| "USD".into()),
        bootstrap_token: None,
        jwt: raw
            .auth
            .jwt
            .as_ref()
            .and_then(|j| jwt_settings(j, problems)),
        tls: tls_files(
            raw.tls.as_ref().map(|t| (&t.cert_file, &t.key_file)),
            "api.tls",
            problems,
        ),
        dashboard_secure_cookie: match raw.dashboard_secure_cookie.as_deref() {
            None | Some("auto") => kb_dashboard::SecureCookie::Auto,
            Some("always") => kb_dashboard::SecureCookie::Always,
            Some("never") => kb_dashboard::SecureCookie::Never,
            Some(_) => {
                problems.push(ConfigProblem {
                    path: "api.dashboard_secure_cookie".into(),
                    reason: "expected auto, always or never".into(),
                });
                kb_dashboard::SecureCookie::Auto
            }
        },
        query_store: match raw.query_store.as_deref().map(str::trim) {
            None | Some("sqlite") => QueryStore::Sqlite,
            Some("clickhouse") => QueryStore::Clickhouse,
            Some(other) => {
                problems.push(ConfigProblem {
                    path: "api.query_store".into(),
                    reason: format!("{other:?} is not sqlite or clickhouse"),
                });
                QueryStore::Sqlite
            }
        },
    }
}

/// A certificate and key pair under `path` (`cert_file` and `key_file`, both or neither).
fn tls_files(
    raw: Option<(&Option<String>, &Option<String>)>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<TlsFiles> {
    match raw? {
        (None, None) => None,
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_file: PathBuf::from(c),
            key_file: PathBuf::from(k),
        }),
        (Some(_), None) => {
            problems.push(ConfigProblem {
                path: format!("{path}.key_file"),
                reason: "required with cert_file".into(),
            });
            None
        }
        (None, Some(_)) => {
            problems.push(ConfigProblem {
                path: format!("{path}.cert_file"),
                reason: "required with key_file".into(),
            });
            None
        }
    }
}

fn one_secret(
    file: &Option<String>,
    env: &Option<String>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SecretSource> {
    match (file, env) {
        (None, None) => None,
        (Some(f), None) => Some(SecretSource::File(PathBuf::from(f))),
        (None, Some(e)) => Some(SecretSource::Env(e.clone())),
        (Some(_), Some(_)) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: "give the _file or the _env form, not both".into(),
            });
            None
        }
    }
}

fn influx_settings(raw: &RawInfluxdb, problems: &mut Vec<ConfigProblem>) -> InfluxSettings {
    let token = one_secret(
        &raw.token_file,
        &raw.token_env,
        "influxdb.token_file",
        problems,
    );
    let v2 = match (&raw.org, &raw.bucket, token) {
        (None, None, None) => None,
        (Some(o), Some(b), Some(t)) => Some((o.clone(), b.clone(), t)),
        _ => {
            problems.push(ConfigProblem {
                path: "influxdb.bucket".into(),
                reason: "the v2 API needs org, bucket and token_file (or token_env) together"
                    .into(),
            });
            None
        }
    };
    InfluxSettings {
        database: raw.database.clone().unwrap_or_else(|| "cloudtuner".into()),
        username: raw.username.clone(),
        password: one_secret(
            &raw.password_file,
            &raw.password_env,
            "influxdb.password_file",
            problems,
        ),
        v2,
        tls: store_tls(
            "influxdb",
            &raw.ca_file,
            &raw.client_cert_file,
            &raw.client_key_file,
            problems,
        ),
    }
}

fn alerts(raw: &RawAlerts, problems: &mut Vec<ConfigProblem>) -> kb_ops::AlertsConfig {
    let mut cfg = kb_ops::AlertsConfig::default();
    cfg.interval = duration(&raw.interval, "alerts.interval", cfg.interval, problems);
    let r = &raw.rules;
    let mut ratio = |v: Option<f64>, path: &str, slot: &mut f64| {
        if let Some(v) = v {
            if v.is_finite() && v > 0.0 {
                *slot = v;
            } else {
                problems.push(ConfigProblem {
                    path: path.into(),
                    reason: format!("{v} is not a ratio above 0"),
                });
            }
        }
    };
    ratio(
        r.extraction_failure_rate,
        "alerts.rules.extraction_failure_rate",
        &mut cfg.rules.extraction_failure_rate,
    );
    ratio(
        r.cost_spike_ratio,
        "alerts.rules.cost_spike_ratio",
        &mut cfg.rules.cost_spike_ratio,
    );
    ratio(
        r.storage_used_ratio,
        "alerts.rules.storage_used_ratio",
        &mut cfg.rules.storage_used_ratio,
    );
    if r.for_.is_some() {
        let d = duration(&r.for_, "alerts.rules.for", Duration::ZERO, problems);
        cfg.rules.extraction_failure_for = d;
        cfg.rules.stale_for = d;
        cfg.rules.cost_spike_for = d;
        cfg.rules.storage_for = d;
    }
    cfg.rules.stale_after = duration(
        &r.stale_after,
        "alerts.rules.stale_after",
        cfg.rules.stale_after,
        problems,
    );
    cfg.rules.extraction_failure_window = duration(
        &r.extraction_failure_window,
        "alerts.rules.extraction_failure_window",
        cfg.rules.extraction_failure_window,
        problems,
    );
    for (i, w) in raw.webhooks.iter().enumerate() {
        let path = format!("alerts.webhooks[{i}]");
        let Some(url) = endpoint(&w.url, &format!("{path}.url"), problems) else {
            if w.url.is_none() {
                problems.push(ConfigProblem {
                    path: format!("{path}.url"),
                    reason: "required".into(),
                });
            }
            continue;
        };
        let format = match kb_ops::WebhookFormat::parse(w.format.as_deref().unwrap_or("generic")) {
            Some(f) => f,
            None => {
                problems.push(ConfigProblem {
                    path: format!("{path}.format"),
                    reason: "must be generic, slack or alertmanager".into(),
                });
                continue;
            }
        };
        cfg.webhooks.push(kb_ops::WebhookConfig {
            url: url.to_string(),
            format,
        });
    }
    cfg.external_url.clone_from(&raw.external_url);
    for p in cfg.problems() {
        problems.push(ConfigProblem {
            path: "alerts".into(),
            reason: p,
        });
    }
    cfg
}

fn remote_write(
    raw: &RawRemoteWrite,
    sqlite: &std::path::Path,
    problems: &mut Vec<ConfigProblem>,
) -> RemoteWriteConfig {
    let mut sources = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let path = format!("remote_write.sources[{i}]");
        let mut need = |v: &Option<String>, key: &str| match v.as_deref() {
            Some(x) if !x.trim().is_empty() => Some(x.to_string()),
            _ => {
                problems.push(ConfigProblem {
                    path: format!("{path}.{key}"),
                    reason: "required".into(),
                });
                None
            }
        };
        let id = need(&s.cloud_account_id, "cloud_account_id");
        let cluster = need(&s.cluster, "cluster");
        let username = need(&s.username, "username");
        let password = match (&s.password_file, &s.password_env) {
            (Some(f), None) => Some(SecretSource::File(PathBuf::from(f))),
            (None, Some(e)) => Some(SecretSource::Env(e.clone())),
            _ => {
                problems.push(ConfigProblem {
                    path: format!("{path}.password_file"),
                    reason: "exactly one of password_file or password_env is required".into(),
                });
                None
            }
        };
        if let (Some(cloud_account_id), Some(cluster), Some(username), Some(password)) =
            (id, cluster, username, password)
        {
            if sources
                .iter()
                .any(|x: &RwSource| x.cloud_account_id == cloud_account_id)
            {
                problems.push(ConfigProblem {
                    path: format!("{path}.cloud_account_id"),
                    reason: format!("{cloud_account_id:?} is used by an earlier source"),
                });
            }
            sources.push(RwSource {
                cloud_account_id,
                cluster,
                username,
                password,
            });
        }
    }
    let overload_429 = match raw.overload_status {
        None | Some(503) => false,
        Some(429) => true,
        Some(other) => {
            problems.push(ConfigProblem {
                path: "remote_write.overload_status".into(),
                reason: format!("{other} is not 429 or 503"),
            });
            false
        }
    };
    let dir = sqlite
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    RemoteWriteConfig {
        sources,
        max_body_bytes: raw.max_body_bytes.unwrap_or(16 << 20).max(1),
        overload_429,
        spool_dir: raw
            .spool_dir
            .as_ref()
            .map_or_else(|| dir.join("realtime-spool"), PathBuf::from),
        spool_max_bytes: raw.spool_max_bytes.unwrap_or(1 << 30).max(1 << 20),
    }
}

fn choice<T: Copy>(
    raw: &Option<String>,
    path: &str,
    options: &[(&str, T)],
    default: T,
    problems: &mut Vec<ConfigProblem>,
) -> T {
    let Some(s) = raw.as_deref() else {
        return default;
    };
    match options.iter().find(|(name, _)| *name == s) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            problems.push(ConfigProblem {
                path: path.into(),
                reason: format!("{s:?} is not one of {}", names.join(", ")),
            });
            default
        }
    }
}

/// The attribution rules used when `aggregation.rules.mappings` is not set: team, owner,
/// product and cost centre from the pod label of that name (`cost_center` also as
/// `cost-center`), and team from the namespace's `team` label when the pod has none.
fn default_mappings() -> Vec<kb_analytics::rules::MappingRule> {
    use kb_analytics::rules::{MappingRule, Source, Target};
    vec![
        MappingRule::copy(Target::Team, Source::Label("team".into())),
        MappingRule::copy(Target::Team, Source::NamespaceLabel("team".into())),
        MappingRule::copy(Target::Owner, Source::Label("owner".into())),
        MappingRule::copy(Target::Product, Source::Label("product".into())),
        MappingRule::copy(Target::CostCenter, Source::Label("cost_center".into())),
        MappingRule::copy(Target::CostCenter, Source::Label("cost-center".into())),
    ]
}

fn aggregation(raw: &RawAggregation, problems: &mut Vec<ConfigProblem>) -> AggregationConfig {
    use kb_analytics::rules::{
        IdleMode, IdleScope, MappingRule, Overhead, Rules, Source, SplitMode, Target,
    };
    let r = &raw.rules;
    let split_options = [("weighted", SplitMode::Weighted), ("even", SplitMode::Even)];
    let mut rules = Rules::new(r.version.unwrap_or(1));
    rules.idle.mode = choice(
        &r.idle,
        "aggregation.rules.idle",
        &[("keep", IdleMode::Keep), ("share", IdleMode::Share)],
        IdleMode::Keep,
        problems,
    );
    rules.idle.scope = choice(
        &r.idle_scope,
        "aggregation.rules.idle_scope",
        &[("cluster", IdleScope::Cluster), ("node", IdleScope::Node)],
        IdleScope::Cluster,
        problems,
    );
    rules.shared.namespaces = r.shared_namespaces.clone();
    for (i, sel) in r.shared_labels.iter().enumerate() {
        match sel.split_once('=') {
            Some((k, v)) if !k.is_empty() => rules.shared.labels.push((k.into(), v.into())),
            _ => problems.push(ConfigProblem {
                path: format!("aggregation.rules.shared_labels[{i}]"),
                reason: format!("{sel:?} is not key=value"),
            }),
        }
    }
    rules.shared.split = choice(
        &r.shared_split,
        "aggregation.rules.shared_split",
        &split_options,
        SplitMode::Weighted,
        problems,
    );
    for (i, o) in r.overheads.iter().enumerate() {
        let path = format!("aggregation.rules.overheads[{i}]");
        let Some(monthly_cost) = o.monthly_cost.filter(|v| v.is_finite() && *v >= 0.0) else {
            problems.push(ConfigProblem {
                path: format!("{path}.monthly_cost"),
                reason: "a number of currency units per month, at least 0, is required".into(),
            });
            continue;
        };
        rules.overheads.push(Overhead {
            name: o.name.clone().unwrap_or_else(|| format!("overhead-{i}")),
            monthly_cost,
            clusters: o.clusters.clone(),
            split: choice(
                &o.split,
                &format!("{path}.split"),
                &split_options,
                SplitMode::Weighted,
                problems,
            ),
        });
    }
    rules.mappings = match &r.mappings {
        None => default_mappings(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, m) in list.iter().enumerate() {
                let path = format!("aggregation.rules.mappings[{i}]");
                let target = match m.target.as_deref() {
                    Some("team") => Target::Team,
                    Some("owner") => Target::Owner,
                    Some("product") => Target::Product,
                    Some("cost_center") => Target::CostCenter,
                    other => {
                        problems.push(ConfigProblem {
                            path: format!("{path}.target"),
                            reason: format!(
                                "{other:?} is not one of team, owner, product, cost_center"
                            ),
                        });
                        continue;
                    }
                };
                let from = m.from.as_deref().unwrap_or("");
                let source = match from.split_once(':') {
                    Some(("label", k)) if !k.is_empty() => Source::Label(k.into()),
                    Some(("annotation", k)) if !k.is_empty() => Source::Annotation(k.into()),
                    Some(("namespace_label", k)) if !k.is_empty() => {
                        Source::NamespaceLabel(k.into())
                    }
                    None if from == "namespace" => Source::Namespace,
                    None if from == "cluster" => Source::Cluster,
                    _ => {
                        problems.push(ConfigProblem {
                            path: format!("{path}.from"),
                            reason: format!(
                                "{from:?} is not label:KEY, annotation:KEY, namespace_label:KEY, namespace or cluster"
                            ),
                        });
                        continue;
                    }
                };
                out.push(MappingRule {
                    target,
                    source,
                    equals: m.equals.clone(),
                    value: m.value.clone(),
                });
            }
            out
        }
    };
    if let Some(d) = &r.default {
        rules.default_value = d.clone();
    }
    if let Err(e) = rules.validate() {
        problems.push(ConfigProblem {
            path: "aggregation.rules".into(),
            reason: e.to_string(),
        });
    }
    let anomaly_threshold = match raw.anomaly_threshold {
        None => 0.5,
        Some(v) if v.is_finite() && v > 0.0 => v,
        Some(v) => {
            problems.push(ConfigProblem {
                path: "aggregation.anomaly_threshold".into(),
                reason: format!("{v} is not a fraction above 0 (0.5 = an increase of 50%)"),
            });
            0.5
        }
    };
    let anomaly_min_cost = match raw.anomaly_min_cost {
        None => 0.01,
        Some(v) if v.is_finite() && v >= 0.0 => v,
        Some(v) => {
            problems.push(ConfigProblem {
                path: "aggregation.anomaly_min_cost".into(),
                reason: format!("{v} is not an amount of at least 0"),
            });
            0.01
        }
    };
    AggregationConfig {
        enabled: raw.enabled.unwrap_or(true),
        anomaly_min_cost,
        lookback: duration(
            &raw.lookback,
            "aggregation.lookback",
            Duration::from_secs(2 * 86_400),
            problems,
        ),
        history: duration(
            &raw.history,
            "aggregation.history",
            Duration::from_secs(28 * 86_400),
            problems,
        ),
        anomaly_threshold,
        rules,
        observe: duration(
            &raw.optimization.observe,
            "aggregation.optimization.observe",
            Duration::from_secs(7 * 86_400),
            problems,
        ),
        optimization: optimization(&raw.optimization, problems),
    }
}

fn fraction(
    raw: Option<f64>,
    path: &str,
    default: f64,
    ok: impl Fn(f64) -> bool,
    what: &str,
    problems: &mut Vec<ConfigProblem>,
) -> f64 {
    match raw {
        None => default,
        Some(v) if v.is_finite() && ok(v) => v,
        Some(v) => {
            problems.push(ConfigProblem {
                path: path.into(),
                reason: format!("{v} is not {what}"),
            });
            default
        }
    }
}

fn optimization(
    raw: &RawOptimization,
    problems: &mut Vec<ConfigProblem>,
) -> kb_analytics::recommend::RecommendConfig {
    let d = kb_analytics::recommend::RecommendConfig::default();
    let p = "aggregation.optimization";
    kb_analytics::recommend::RecommendConfig {
        optimize: kb_analytics::optimize::OptimizeConfig {
            quantile: fraction(
                raw.quantile,
                &format!("{p}.quantile"),
                d.optimize.quantile,
                |v| v > 0.0 && v <= 1.0,
                "a quantile above 0 and at most 1 (0.95 = p95)",
                problems,
            ),
            headroom: fraction(
                raw.headroom,
                &format!("{p}.headroom"),
                d.optimize.headroom,
                |v| v >= 0.0,
                "a fraction of at least 0 (0.2 = 20% above the quantile)",
                problems,
            ),
            ..d.optimize
        },
        node_target_utilization: fraction(
            raw.node_target_utilization,
            &format!("{p}.node_target_utilization"),
            d.node_target_utilization,
            |v| v > 0.0 && v <= 1.0,
            "a fraction above 0 and at most 1 (0.8 = 80% allocated)",
            problems,
        ),
        spot_discount: fraction(
            raw.spot_discount,
            &format!("{p}.spot_discount"),
            d.spot_discount,
            |v| (0.0..1.0).contains(&v),
            "a fraction from 0 to below 1 (0.6 = spot is 60% cheaper)",
            problems,
        ),
        spot_min_replicas: match raw.spot_min_replicas {
            None => d.spot_min_replicas,
            Some(0) => {
                problems.push(ConfigProblem {
                    path: format!("{p}.spot_min_replicas"),
                    reason: "must be at least 1".into(),
                });
                d.spot_min_replicas
            }
            Some(n) => n,
        },
        ..d
    }
}

/// Validates `budgets:`: each names a configured cluster, at most one of namespace, team,
/// owner, product and cost_center, a positive amount, a period and the currency Kubecost
/// reports (`api.currency`; the bridge does not convert).
fn budgets(
    raw: &RawConfig,
    clusters: &[ClusterConfig],
    problems: &mut Vec<ConfigProblem>,
) -> Vec<kb_analytics::budget::BudgetSpec> {
    use kb_analytics::Dimension;
    use kb_analytics::budget::{BudgetPeriod, BudgetSpec};
    let currency = raw.api.currency.clone().unwrap_or_else(|| "USD".into());
    let mut out: Vec<BudgetSpec> = Vec::new();
    for (i, b) in raw.budgets.iter().enumerate() {
        let path = format!("budgets[{i}]");
        let mut bad = |key: &str, reason: String| {
            problems.push(ConfigProblem {
                path: format!("{path}.{key}"),
                reason,
            });
        };
        let name = b.name.clone().filter(|n| !n.trim().is_empty());
        if name.is_none() {
            bad("name", "a budget needs a name".into());
        } else if out.iter().any(|o| Some(&o.name) == name.as_ref()) {
            bad("name", "another budget has this name".into());
        }
        let cluster = b.cluster.clone().unwrap_or_default();
        if !clusters.iter().any(|c| c.name == cluster) {
            bad(
                "cluster",
                format!("{cluster:?} is not a configured cluster"),
            );
        }
        let filters: Vec<(Dimension, &String)> = [
            (Dimension::Namespace, &b.namespace),
            (Dimension::Team, &b.team),
            (Dimension::Owner, &b.owner),
            (Dimension::Product, &b.product),
            (Dimension::CostCenter, &b.cost_center),
        ]
        .into_iter()
        .filter_map(|(d, v)| v.as_ref().map(|v| (d, v)))
        .collect();
        if filters.len() > 1 {
            bad(
                "namespace",
                "give at most one of namespace, team, owner, product, cost_center".into(),
            );
        }
        if filters.iter().any(|(_, v)| v.is_empty()) {
            bad("namespace", "a filter value cannot be empty".into());
        }
        let amount = match b.amount {
            Some(a) if a.is_finite() && a > 0.0 => a,
            Some(a) => {
                bad("amount", format!("{a} is not an amount above 0"));
                0.0
            }
            None => {
                bad(
                    "amount",
                    "the budget's amount per period is required".into(),
                );
                0.0
            }
        };
        let period = match b.period.as_deref().unwrap_or("month") {
            "month" => match b.start_day {
                None => BudgetPeriod::Monthly { start_day: 1 },
                Some(d) if (1..=28).contains(&d) => BudgetPeriod::Monthly { start_day: d },
                Some(d) => {
                    bad(
                        "start_day",
                        format!("{d} is not a day of the month from 1 to 28"),
                    );
                    BudgetPeriod::Monthly { start_day: 1 }
                }
            },
            "week" => match b.start_day {
                None => BudgetPeriod::Weekly { start_weekday: 1 },
                Some(d) if d <= 6 => BudgetPeriod::Weekly { start_weekday: d },
                Some(d) => {
                    bad(
                        "start_day",
                        format!("{d} is not a weekday from 0 (Sunday) to 6"),
                    );
                    BudgetPeriod::Weekly { start_weekday: 1 }
                }
            },
            other => {
                bad("period", format!("{other:?} is not one of month, week"));
                BudgetPeriod::Monthly { start_day: 1 }
            }
        };
        let c = b.currency.clone().unwrap_or_else(|| currency.clone());
        if !c.eq_ignore_ascii_case(&currency) {
            bad(
                "currency",
                format!(
                    "{c:?} is not the currency Kubecost reports (api.currency: {currency}); \
                     the bridge does not convert"
                ),
            );
        }
        out.push(BudgetSpec {
            name: name.unwrap_or_default(),
            cluster,
            filter: filters.first().map(|(d, v)| (*d, (*v).clone())),
            amount,
            period,
            currency: currency.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
kubecost:
  endpoint: "http://kubecost-cost-analyzer.kubecost.svc.cluster.local:9090"
  apis:
    allocation:
      enabled: true
      window: "1h"
      aggregate: ["cluster", "namespace", "pod"]
    assets:
      enabled: true
      window: "1d"
      aggregate: ["cluster"]

cloudtuner:
  storage:
    influxdb: "http://influxdb.default.svc.cluster.local"
    clickhouse: "http://clickhouse.default.svc.cluster.local:8123"

schedule:
  allocation_sync: "0 */1 * * *"  # Every hour
  asset_sync: "0 0 * * *"         # Daily
  cleanup: "0 2 * * *"            # Daily cleanup at 2 AM
"#;

    #[test]
    fn the_seed_config_loads_and_means_what_it_says() {
        let c = Config::from_yaml(SEED, &BTreeMap::new()).unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.clusters[0].endpoint.port(), Some(9090));
        assert_eq!(c.allocation.aggregate, ["cluster", "namespace", "pod"]);
        assert_eq!(c.assets.aggregate, ["cluster"]);
        assert_eq!(c.allocation_schedule.expr(), "0 */1 * * *");
        assert_eq!(c.cleanup_schedule.next_after(0), Some(2 * 3600));
        assert_eq!(
            c.clickhouse.as_deref(),
            Some("http://clickhouse.default.svc.cluster.local:8123")
        );
        assert_eq!(c.extract.hourly_retention, Duration::from_secs(49 * 3600));
    }

    #[test]
    fn every_bad_key_is_reported_with_its_path() {
        let bad = r#"
kubecost:
  endpoint: "ftp://x"
  apis:
    allocation: { aggregate: ["namespace", "colour"], windw: "1h" }
clusters:
  - name: a
    endpoint: "http://127.0.0.1:1"
    auth: { type: bearer }
  - endpoint: "http://127.0.0.1:2"
schedule:
  cleanup: "at two"
extract:
  lookback: "a week"
bogus: 1
"#;
        let e = Config::from_yaml(bad, &BTreeMap::new()).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "bogus",
            "kubecost.apis.allocation.windw",
            "kubecost.endpoint",
            "kubecost.apis.allocation.aggregate[1]",
            "clusters[0].auth",
            "clusters[1].name",
            "schedule.cleanup",
            "extract.lookback",
        ] {
            assert!(paths.contains(&want), "missing {want} in {e}");
        }
    }

    #[test]
    fn aggregation_rules_load_and_bad_ones_name_their_path() {
        let ok = "aggregation:\n  rules:\n    version: 3\n    idle: share\n    shared_namespaces: [kube-system]\n    shared_labels: [\"tier=infra\"]\n    overheads: [{ name: ops, monthly_cost: 730 }]\n    mappings: [{ target: team, from: \"label:squad\" }]\n";
        let c = Config::from_yaml(ok, &BTreeMap::new()).unwrap();
        let r = &c.aggregation.rules;
        assert_eq!(r.version, 3);
        assert_eq!(r.idle.mode, kb_analytics::rules::IdleMode::Share);
        assert_eq!(r.shared.labels, vec![("tier".into(), "infra".into())]);
        assert_eq!(r.overheads[0].monthly_cost, 730.0);
        assert_eq!(r.mappings.len(), 1);
        assert_eq!(c.aggregation_schedule.next_after(0), Some(15 * 60));
        // Defaults: team, owner, product and cost centre from labels.
        let d = Config::from_yaml("{}", &BTreeMap::new()).unwrap();
        assert_eq!(d.aggregation.rules.mappings.len(), 6);
        assert_eq!(d.aggregation.anomaly_threshold, 0.5);

        let bad = "aggregation:\n  anomaly_threshold: -1\n  rules:\n    idle: sometimes\n    shared_labels: [novalue]\n    overheads: [{ name: x }]\n    mappings: [{ target: boss, from: \"label:x\" }, { target: team, from: \"pod\" }]\n";
        let e = Config::from_yaml(bad, &BTreeMap::new()).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "aggregation.anomaly_threshold",
            "aggregation.rules.idle",
            "aggregation.rules.shared_labels[0]",
            "aggregation.rules.overheads[0].monthly_cost",
            "aggregation.rules.mappings[0].target",
            "aggregation.rules.mappings[1].from",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
    }

    #[test]
    fn type_errors_name_their_path() {
        let e =
            Config::from_yaml("extract:\n  max_concurrency: lots\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(e.0[0].path, "extract.max_concurrency", "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = BTreeMap::from([
            (
                "KUBECOST_BRIDGE__API__LISTEN".to_string(),
                "0.0.0.0:9999".to_string(),
            ),
            (
                "KUBECOST_BRIDGE__EXTRACT__MAX_CONCURRENCY".to_string(),
                "7".to_string(),
            ),
            (
                "KUBECOST_BRIDGE__CLOUDTUNER__STORAGE__SQLITE".to_string(),
                "/tmp/x.db".to_string(),
            ),
            ("UNRELATED".to_string(), "1".to_string()),
        ]);
        let c = Config::from_yaml("api:\n  listen: 127.0.0.1:1\n", &env).unwrap();
        assert_eq!(c.api_listen.port(), 9999);
        assert_eq!(c.extract.max_concurrency, 7);
        assert_eq!(c.sqlite_path, PathBuf::from("/tmp/x.db"));
    }

    #[test]
    fn the_dashboard_cookie_setting_parses() {
        use kb_dashboard::SecureCookie;
        for (v, want) in [
            ("auto", SecureCookie::Auto),
            ("always", SecureCookie::Always),
            ("never", SecureCookie::Never),
        ] {
            let yaml = format!("api:\n  dashboard_secure_cookie: {v}\n");
            let c = Config::from_yaml(&yaml, &BTreeMap::new()).unwrap();
            assert_eq!(c.api.dashboard_secure_cookie, want, "{v}");
        }
        let c = Config::from_yaml("api:\n  listen: 127.0.0.1:1\n", &BTreeMap::new()).unwrap();
        assert_eq!(c.api.dashboard_secure_cookie, SecureCookie::Auto);
        let e = Config::from_yaml(
            "api:\n  dashboard_secure_cookie: sometimes\n",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(e.0[0].path, "api.dashboard_secure_cookie", "{e}");
        assert!(e.0[0].reason.contains("auto, always or never"), "{e}");
    }

    #[test]
    fn pod_aggregates_ask_for_controller_and_node() {
        let seed = vec!["cluster".to_string(), "namespace".into(), "pod".into()];
        let eff = effective_aggregate(&seed);
        assert!(eff.contains(&"controllerKind".to_string()) && eff.contains(&"node".to_string()));
        let ns = vec!["namespace".to_string()];
        assert_eq!(effective_aggregate(&ns), ns);
    }
}

#[cfg(test)]
mod example {
    use super::*;

    #[test]
    fn the_example_config_documents_valid_keys() {
        let text = include_str!("../../../config/example.yaml");
        let c = Config::from_yaml(text, &BTreeMap::new()).unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.clusters[0].name, "prod-eu");
        assert_eq!(c.extract.max_concurrency, 2);
        assert_eq!(c.api.keys.len(), 2);
        let jwt = c.api.jwt.as_ref().unwrap();
        assert_eq!(jwt.config.audience, "kubecost-bridge");
        assert_eq!(jwt.config.scope_prefix, "kubecost-bridge:");
        assert_eq!(jwt.config.clusters_claim.as_deref(), Some("clusters"));
        assert!(matches!(
            jwt.jwks,
            JwksSource::Url { refresh, .. } if refresh == Duration::from_secs(600)
        ));
        assert_eq!(c.budgets.len(), 2);
        assert_eq!(c.aggregation.observe, Duration::from_secs(7 * 86_400));
        assert_eq!(c.aggregation.optimization.spot_discount, 0.6);
        assert_eq!(c.shutdown_deadline, DEFAULT_SHUTDOWN_DEADLINE);
        assert_eq!(
            c.api.dashboard_secure_cookie,
            kb_dashboard::SecureCookie::Auto
        );
        assert_eq!(c.api.query_store, QueryStore::Sqlite);
        // The commented TLS keys are valid keys too.
        let tls = text
            .replace("  # ca_file:", "  ca_file:")
            .replace("  # client_cert_file:", "  client_cert_file:")
            .replace("  # client_key_file:", "  client_key_file:");
        let c = Config::from_yaml(&tls, &BTreeMap::new()).unwrap();
        assert_eq!(
            c.clickhouse_settings.tls.ca_file.as_deref(),
            Some(std::path::Path::new(
                "/etc/kubecost-bridge/clickhouse-ca.pem"
            ))
        );
        assert!(c.clickhouse_settings.tls.client.is_some());
        assert!(c.influxdb_settings.tls.client.is_some());
        assert_eq!(
            c.alerts.rules.extraction_failure_window,
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn jwt_settings_name_their_bad_keys() {
        let bad = "api:\n  auth:\n    jwt:\n      audience: x\n      jwks_file: a\n      jwks_url: http://127.0.0.1/j\n";
        let e = Config::from_yaml(bad, &BTreeMap::new()).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"api.auth.jwt.issuer"), "{paths:?}");
        assert!(paths.contains(&"api.auth.jwt.jwks_file"), "{paths:?}");
        let ok = "api:\n  auth:\n    jwt:\n      issuer: https://idp\n      audience: x\n      jwks_file: /j.json\n";
        let c = Config::from_yaml(ok, &BTreeMap::new()).unwrap();
        let j = c.api.jwt.unwrap();
        assert_eq!(j.config.scopes_claim, "scope");
        assert_eq!(j.config.clusters_claim, None);
        assert_eq!(j.jwks, JwksSource::File("/j.json".into()));
    }

    const CLUSTER: &str = "clusters:\n  - { name: a, endpoint: \"http://k:9090\" }\n";

    #[test]
    fn budgets_load_with_their_filter_period_and_currency() {
        use kb_analytics::Dimension;
        use kb_analytics::budget::BudgetPeriod;
        let text = format!(
            "{CLUSTER}budgets:\n  - {{ name: all, cluster: a, amount: 1000 }}\n  - {{ name: shop, cluster: a, team: shop, amount: 50.5, period: week, start_day: 0, currency: usd }}\n"
        );
        let c = Config::from_yaml(&text, &BTreeMap::new()).unwrap();
        let all = &c.budgets[0];
        assert_eq!((all.name.as_str(), all.cluster.as_str()), ("all", "a"));
        assert_eq!(all.filter, None);
        assert_eq!(all.period, BudgetPeriod::Monthly { start_day: 1 });
        assert_eq!(all.currency, "USD");
        let shop = &c.budgets[1];
        assert_eq!(shop.filter, Some((Dimension::Team, "shop".to_string())));
        assert_eq!(shop.amount, 50.5);
        assert_eq!(shop.period, BudgetPeriod::Weekly { start_weekday: 0 });
    }

    #[test]
    fn bad_budgets_and_optimization_settings_name_their_path() {
        let text = format!(
            "{CLUSTER}aggregation:\n  optimization: {{ observe: often, spot_discount: 1.5, node_target_utilization: 0, spot_min_replicas: 0 }}\nbudgets:\n  - {{ cluster: b, namespace: x, team: y, amount: -1, period: year }}\n  - {{ name: m, cluster: a, amount: 1, start_day: 31, currency: EUR }}\n  - {{ name: m, cluster: a, amount: 2 }}\n"
        );
        let e = Config::from_yaml(&text, &BTreeMap::new()).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "aggregation.optimization.observe",
            "aggregation.optimization.spot_discount",
            "aggregation.optimization.node_target_utilization",
            "aggregation.optimization.spot_min_replicas",
            "budgets[0].name",
            "budgets[0].cluster",
            "budgets[0].namespace",
            "budgets[0].amount",
            "budgets[0].period",
            "budgets[1].start_day",
            "budgets[1].currency",
            "budgets[2].name",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        let currency =
            e.0.iter()
                .find(|p| p.path == "budgets[1].currency")
                .unwrap();
        assert!(
            currency.reason.contains("does not convert"),
            "{}",
            currency.reason
        );
    }

    #[test]
    fn kubernetes_enrichment_finds_the_api_server_in_the_pod_environment() {
        assert_eq!(
            Config::from_yaml("{}", &BTreeMap::new())
                .unwrap()
                .kubernetes,
            None
        );
        let env = BTreeMap::from([
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "10.96.0.1".to_string(),
            ),
            ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
        ]);
        let c = Config::from_yaml("kubernetes:\n  enabled: true\n", &env).unwrap();
        let k = c.kubernetes.unwrap();
        assert_eq!(k.api_server.as_str(), "https://10.96.0.1/");
        assert_eq!(
            k.token_file,
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
        );
        assert_eq!(k.pod_labels, ["owner", "team"]);
        let e = Config::from_yaml("kubernetes:\n  enabled: true\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(e.0[0].path, "kubernetes.api_server", "{e}");
    }

    #[test]
    fn shutdown_deadline_and_failure_window_are_read_and_checked() {
        let c = Config::from_yaml(
            "shutdown:\n  deadline: 5s\nalerts:\n  rules:\n    extraction_failure_window: 10m\n",
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(c.shutdown_deadline, Duration::from_secs(5));
        assert_eq!(
            c.alerts.rules.extraction_failure_window,
            Duration::from_secs(600)
        );
        let e = Config::from_yaml(
            "shutdown:\n  deadline: 0s\nalerts:\n  rules:\n    extraction_failure_window: soon\n",
            &BTreeMap::new(),
        )
        .unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"shutdown.deadline"), "{e}");
        assert!(
            paths.contains(&"alerts.rules.extraction_failure_window"),
            "{e}"
        );
    }

    #[test]
    fn query_store_and_tls_keys_are_checked() {
        let base = "";
        let bad = format!("{base}api:\n  query_store: clickhouse\n");
        let e = Config::from_yaml(&bad, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("api.query_store") && e.contains("no ClickHouse"),
            "{e}"
        );
        let ok = format!(
            "{base}api:\n  query_store: clickhouse\ncloudtuner:\n  storage:\n    clickhouse: https://ch:8443\n"
        );
        let c = Config::from_yaml(&ok, &BTreeMap::new()).unwrap();
        assert_eq!(c.api.query_store, QueryStore::Clickhouse);
        let half = format!("{base}influxdb:\n  client_cert_file: /x.crt\n");
        let e = Config::from_yaml(&half, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("influxdb.client_cert_file"), "{e}");
    }
}
