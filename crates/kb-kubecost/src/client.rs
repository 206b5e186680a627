//! The HTTP client for one Kubecost (or OpenCost) instance.
//!
//! Invariants:
//! - At most `max_concurrency` requests are in flight per client (clones share the limit); a
//!   permit is held from before the request is sent until its body has been read completely.
//! - Allocation and asset bodies are streamed through [`crate::stream::Framer`], so memory is
//!   bounded whatever their size; other bodies are read whole up to [`SMALL_BODY_LIMIT`].
//! - Secrets are sent only as headers (reqwest marks them sensitive) and never appear in
//!   errors, logs or `Debug` output; credentials inside `base_url` are refused.
//! - Every call is a single attempt: the caller retries, guided by
//!   [`kb_pipeline::retry::Retryable`] on [`Error`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kb_core::{Allocation, Asset, Budget, SavingsRecommendation, SpecCostPrediction, Window};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use url::Url;

use crate::convert::{AllocationCollector, AssetCollector, SetWindows, StreamSummary};
use crate::error::{DOCUMENT, Error};
use crate::stream::{DEFAULT_MAX_VALUE_BYTES, Envelope, Event, Framer};

/// Largest body read whole (budgets, savings, predictions, error bodies excluded).
pub const SMALL_BODY_LIMIT: usize = 256 << 20;
/// Rows per batch sent on the allocation channel (batches may exceed it by one chunk's rows).
pub const BATCH_ROWS: usize = 1024;
/// How much of an error body is read to find Kubecost's message.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// Which API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Kubecost: `/model/allocation` with `idle=`, v1 and v2 filters, budgets, savings.
    Kubecost,
    /// OpenCost: `/allocation` with `includeIdle=`, no server-side filter (filtered here).
    OpenCost,
}

impl Flavor {
    /// Returns the flavor's name as configured (`kubecost` or `opencost`).
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Kubecost => "kubecost",
            Flavor::OpenCost => "opencost",
        }
    }
}

pub use kb_pipeline::secret::Secret;

/// How to authenticate to Kubecost (usually behind an ingress or proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No authentication.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP basic authentication.
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password.
        password: Secret,
    },
}

/// Everything needed to talk to one Kubecost instance.
#[derive(Clone)]
pub struct ClientConfig {
    /// `http(s)://host:port[/prefix]`; a trailing `/model` is tolerated for Kubecost.
    pub base_url: Url,
    /// Which API the server speaks.
    pub flavor: Flavor,
    /// How to authenticate.
    pub auth: Auth,
    /// Extra CA certificates (PEM, one or more) trusted besides the built-in roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// A client certificate chain and its private key (PEM, concatenated) for mutual TLS. The
    /// key is a secret: `Debug` shows only its size.
    pub client_identity_pem: Option<Secret>,
    /// Time to establish a connection; zero means no limit.
    pub connect_timeout: Duration,
    /// Time for a whole request including reading the body; zero means no limit.
    pub request_timeout: Duration,
    /// Requests in flight at most (at least 1).
    pub max_concurrency: usize,
}

impl ClientConfig {
    /// Returns a configuration with no auth, 10 s connect timeout, 10 min request timeout and
    /// 2 requests in flight.
    pub fn new(base_url: Url, flavor: Flavor) -> ClientConfig {
        ClientConfig {
            base_url,
            flavor,
            auth: Auth::None,
            ca_cert_pem: None,
            client_identity_pem: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(600),
            max_concurrency: 2,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("flavor", &self.flavor)
            .field("auth", &self.auth)
            .field(
                "ca_cert_pem",
                &self
                    .ca_cert_pem
                    .as_ref()
                    .map(|p| format!("{} bytes", p.len())),
            )
            .field(
                "client_identity_pem",
                &self.client_identity_pem.as_ref().map(|_| "[redacted]"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

/// One allocation query.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationQuery {
    /// The window to read (sent as an RFC3339 pair).
    pub window: Window,
    /// Properties to aggregate by (`cluster`, `namespace`, `pod`, `label:app`, ...).
    pub aggregate: Vec<String>,
    /// Seconds per set; `None` asks for one accumulated set.
    pub step: Option<i64>,
    /// Include idle rows (`idle=` on Kubecost, `includeIdle=` on OpenCost).
    pub include_idle: bool,
    /// Distribute idle cost over the allocations (`shareIdle=`).
    pub share_idle: bool,
    /// Only this cluster (server-side on Kubecost, client-side on OpenCost).
    pub filter_cluster: Option<String>,
}

/// One asset query.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetQuery {
    /// The window to read (sent as an RFC3339 pair).
    pub window: Window,
    /// Properties to aggregate by (`type`, `cluster`, ...); empty for one row per asset.
    pub aggregate: Vec<String>,
    /// One set for the whole window instead of daily sets.
    pub accumulate: bool,
    /// Only this cluster (assets without a cluster, such as cloud items, are kept).
    pub filter_cluster: Option<String>,
}

/// A client for one Kubecost instance. Cheap to clone; clones share connections and the
/// concurrency limit.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    flavor: Flavor,
    auth: Auth,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
    max_value: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .field("flavor", &self.inner.flavor)
            .field("auth", &self.inner.auth)
            .field("max_concurrency", &self.inner.max_concurrency)
            .finish()
    }
}

/// Formats a step in seconds as Kubecost's duration (`1h`, `1d`, `30m`).
fn step_param(step: i64) -> String {
    let step = step.max(60);
    if step % 86_400 == 0 {
        format!("{}d", step / 86_400)
    } else if step % 3_600 == 0 {
        format!("{}h", step / 3_600)
    } else {
        format!("{}m", (step / 60).max(1))
    }
}

fn bool_param(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Standard base64 with padding (only to recognise an echoed basic-auth header).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Joins an error and its sources into one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

fn send_error(e: reqwest::Error, endpoint: &str) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        Error::Timeout {
            endpoint: endpoint.to_string(),
        }
    } else {
        Error::Connect {
            endpoint: endpoint.to_string(),
            message: chain(&e),
        }
    }
}

fn body_error(e: reqwest::Error, endpoint: &str, byte_offset: u64) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        Error::Timeout {
            endpoint: endpoint.to_string(),
        }
    } else {
        Error::Truncated {
            endpoint: endpoint.to_string(),
            what: format!("reading the body failed: {}", chain(&e)),
            byte_offset,
        }
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Extracts a human message from an error body: the JSON `message`, or the text's first line.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Msg {
        #[serde(default)]
        message: Option<String>,
    }
    if let Ok(Msg { message: Some(m) }) = serde_json::from_slice::<Msg>(body) {
        if !m.is_empty() {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return "empty body".to_string();
    }
    line.chars().take(300).collect()
}

/// Byte offset of a serde_json error (which gives line and column) in `bytes`.
fn json_error_offset(bytes: &[u8], e: &serde_json::Error) -> u64 {
    let mut line = 1usize;
    let mut line_start = 0usize;
    if e.line() > 1 {
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                line += 1;
                line_start = i + 1;
                if line == e.line() {
                    break;
                }
            }
        }
    }
    (line_start + e.column().saturating_sub(1)) as u64
}

fn json_error(bytes: &[u8], e: serde_json::Error) -> Error {
    let at = json_error_offset(bytes, &e);
    if e.is_eof() {
        Error::truncated(format!("the document ended early: {e}"), at)
    } else {
        Error::malformed(e.to_string(), at)
    }
}

/// Parses a small JSON body that is either an envelope `{code, status, message, data}` or the
/// bare data. `Ok(None)` for `data: null`.
pub(crate) fn parse_enveloped<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, Error> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(default, borrow)]
        data: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default)]
        status: Option<serde_json::Value>,
        #[serde(default)]
        message: Option<serde_json::Value>,
    }
    let first = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(Error::truncated("the response body is empty", 0));
    };
    match bytes[first] {
        b'[' => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| json_error(bytes, e)),
        b'{' => {
            let probe: Probe<'_> =
                serde_json::from_slice(bytes).map_err(|e| json_error(bytes, e))?;
            if probe.data.is_none() && probe.code.is_none() && probe.status.is_none() {
                // No envelope: the object is the data itself.
                return serde_json::from_slice(bytes)
                    .map(Some)
                    .map_err(|e| json_error(bytes, e));
            }
            let text = |v: Option<serde_json::Value>| match v {
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            };
            let env = Envelope {
                code: match &probe.code {
                    Some(serde_json::Value::Number(n)) => n.as_i64(),
                    Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                    _ => None,
                },
                status: text(probe.status),
                message: text(probe.message),
                warning: None,
                has_data: probe.data.is_some(),
            };
            if let Some((code, message)) = env.error() {
                return Err(Error::Api {
                    endpoint: DOCUMENT.to_string(),
                    code,
                    message,
                });
            }
            match probe.data {
                None => Ok(None),
                Some(raw) => {
                    let inner = raw.get().as_bytes();
                    let base =
                        (raw.get().as_ptr() as usize).saturating_sub(bytes.as_ptr() as usize);
                    serde_json::from_slice(inner).map(Some).map_err(|e| {
                        let mut err = json_error(inner, e);
                        if let Error::Malformed { byte_offset, .. }
                        | Error::Truncated { byte_offset, .. } = &mut err
                        {
                            *byte_offset += base as u64;
                        }
                        err
                    })
                }
            }
        }
        _ => {
            let line = bytes[first..].split(|&b| b == b'\n').next().unwrap_or(&[]);
            let snippet = String::from_utf8_lossy(&line[..line.len().min(200)]).to_string();
            Err(Error::malformed(
                format!("the response is not json: {:?}", snippet.trim()),
                first as u64,
            ))
        }
    }
}

/// A response whose body is read chunk by chunk into a framer.
struct BodyFramer<'e> {
    resp: reqwest::Response,
    framer: Framer,
    endpoint: &'e str,
}

impl BodyFramer<'_> {
    /// Feeds the next chunk; returns false at the end of the body.
    async fn next_chunk(&mut self) -> Result<bool, Error> {
        match self.resp.chunk().await {
            Ok(Some(c)) => {
                self.framer.feed(&c);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(body_error(
                e,
                self.endpoint,
                self.framer.offset() + self.framer.buffered() as u64,
            )),
        }
    }

    /// Checks the document ended and the envelope reports no error.
    fn finish(&self) -> Result<(), Error> {
        self.framer.finish().map_err(|e| e.at(self.endpoint))?;
        self.envelope_error()?;
        if !self.framer.envelope().has_data {
            return Err(Error::malformed("the response has no data member", 0).at(self.endpoint));
        }
        Ok(())
    }

    fn envelope_error(&self) -> Result<(), Error> {
        match self.framer.envelope().error() {
            Some((code, message)) => Err(Error::Api {
                endpoint: self.endpoint.to_string(),
                code,
                message,
            }),
            None => Ok(()),
        }
    }
}

impl Client {
    /// Builds a client. Fails on an unusable URL or CA certificate.
    pub fn new(cfg: ClientConfig) -> Result<Client, Error> {
        let base = cfg.base_url;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(Error::Config(format!(
                "base url scheme must be http or https, not {}",
                base.scheme()
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::Config(
                "base url must not contain credentials; use the auth settings".to_string(),
            ));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(Error::Config("base url has no host".to_string()));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            .user_agent(concat!("kubecost-bridge/", env!("CARGO_PKG_VERSION")));
        if !cfg.connect_timeout.is_zero() {
            b = b.connect_timeout(cfg.connect_timeout);
        }
        if !cfg.request_timeout.is_zero() {
            b = b.timeout(cfg.request_timeout);
        }
        if let Some(pem) = &cfg.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("ca certificate: {}", chain(&e))))?;
            if certs.is_empty() {
                return Err(Error::Config(
                    "ca certificate: no certificate found in the pem data".to_string(),
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(pem) = &cfg.client_identity_pem {
            // reqwest's error would not contain the key, but say nothing of the content anyway.
            let id = reqwest::Identity::from_pem(pem.expose().as_bytes()).map_err(|_| {
                Error::Config(
                    "client certificate: needs a PEM certificate and its PEM private key"
                        .to_string(),
                )
            })?;
            b = b.identity(id);
        }
        let http = b
            .build()
            .map_err(|e| Error::Config(format!("http client: {}", chain(&e))))?;
        let max_concurrency = cfg.max_concurrency.max(1);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                flavor: cfg.flavor,
                auth: cfg.auth,
                permits: Arc::new(Semaphore::new(max_concurrency)),
                max_concurrency,
                max_value: DEFAULT_MAX_VALUE_BYTES,
            }),
        })
    }

    /// Returns the flavor this client speaks.
    pub fn flavor(&self) -> Flavor {
        self.inner.flavor
    }

    /// Returns the URL of an endpoint path (`/model/allocation`), with no query.
    fn url(&self, path: &str) -> Url {
        let mut u = self.inner.base.clone();
        let base_path = u.path().trim_end_matches('/').to_string();
        // Users often configure the UI's `/model` prefix in the base URL already.
        let path = match path.strip_prefix("/model") {
            Some(rest) if base_path.ends_with("/model") && rest.starts_with('/') => rest,
            _ => path,
        };
        u.set_path(&format!("{base_path}{path}"));
        u.set_query(None);
        u.set_fragment(None);
        u
    }

    fn kubecost_only(&self, endpoint: &str) -> Result<(), Error> {
        match self.inner.flavor {
            Flavor::Kubecost => Ok(()),
            Flavor::OpenCost => Err(Error::Unsupported {
                endpoint: endpoint.to_string(),
                flavor: "opencost",
            }),
        }
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Config("the client's request limiter was closed".to_string()))
    }

    /// Sends a request (the caller holds a permit) and turns non-2xx answers into errors.
    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        endpoint: &str,
        body: Option<(String, &'static str)>,
    ) -> Result<reqwest::Response, Error> {
        tracing::debug!(endpoint, "kubecost request");
        let mut req = self.inner.http.request(method, url);
        req = match &self.inner.auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token.expose()),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
        };
        if let Some((body, content_type)) = body {
            req = req.header(CONTENT_TYPE, content_type).body(body);
        }
        let resp = req.send().await.map_err(|e| send_error(e, endpoint))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = retry_after(resp.headers());
        let body = read_capped(resp, ERROR_BODY_LIMIT, endpoint, true)
            .await
            .unwrap_or_default();
        Err(Error::Http {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            message: self.redact(error_message(&body)),
            retry_after,
        })
    }

    /// Removes the client's secrets from text a server sent (a proxy may echo headers back).
    fn redact(&self, mut text: String) -> String {
        let secrets: Vec<String> = match &self.inner.auth {
            Auth::None => Vec::new(),
            Auth::Bearer(t) => vec![t.expose().to_string()],
            Auth::Basic { username, password } => vec![
                base64(format!("{username}:{}", password.expose()).as_bytes()),
                password.expose().to_string(),
            ],
        };
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "***");
            }
        }
        text
    }

    /// GETs a small endpoint and returns its whole body.
    async fn get_small(&self, url: Url, endpoint: &str) -> Result<Vec<u8>, Error> {
        let _permit = self.permit().await?;
        let resp = self.send(reqwest::Method::GET, url, endpoint, None).await?;
        read_capped(resp, SMALL_BODY_LIMIT, endpoint, false).await
    }

    fn allocation_url(&self, q: &AllocationQuery, accumulate_cluster: bool) -> (Url, String) {
        let path = match self.inner.flavor {
            Flavor::Kubecost => "/model/allocation",
            Flavor::OpenCost => "/allocation",
        };
        let mut url = self.url(path);
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("window", &q.window.to_kubecost_param());
            let aggregate = if accumulate_cluster {
                "cluster".to_string()
            } else {
                q.aggregate.join(",")
            };
            if !aggregate.is_empty() {
                qp.append_pair("aggregate", &aggregate);
            }
            match (accumulate_cluster, q.step) {
                (false, Some(step)) => {
                    qp.append_pair("step", &step_param(step));
                }
                _ => {
                    qp.append_pair("accumulate", "true");
                }
            }
            let idle = accumulate_cluster || q.include_idle;
            match self.inner.flavor {
                Flavor::Kubecost => {
                    qp.append_pair("idle", bool_param(idle));
                    qp.append_pair("shareIdle", bool_param(q.share_idle));
                    if let Some(c) = &q.filter_cluster {
                        qp.append_pair("filter", &format!("cluster:\"{c}\""));
                        qp.append_pair("filterClusters", c);
                    }
                }
                Flavor::OpenCost => {
                    qp.append_pair("includeIdle", bool_param(idle));
                    qp.append_pair("shareIdle", bool_param(q.share_idle));
                    qp.append_pair("includeAggregatedMetadata", "true");
                }
            }
        }
        let endpoint = format!("GET {} window {}", url.path(), q.window);
        (url, endpoint)
    }

    /// Streams the allocation sets of one query into `tx` in batches of about
    /// [`BATCH_ROWS`] rows. A single attempt: on error the rows already sent must be
    /// discarded by the caller, who retries the whole window.
    pub async fn allocations(
        &self,
        q: &AllocationQuery,
        tx: mpsc::Sender<Vec<Allocation>>,
    ) -> Result<StreamSummary, Error> {
        self.stream_allocations(q, false, Some(&tx)).await
    }

    /// Returns the sum of `totalCost` (idle included) Kubecost reports for the query's cluster
    /// filter over its window: `aggregate=cluster&accumulate=true`, for reconciliation.
    pub async fn allocation_total(&self, q: &AllocationQuery) -> Result<f64, Error> {
        Ok(self.stream_allocations(q, true, None).await?.total_cost)
    }

    async fn stream_allocations(
        &self,
        q: &AllocationQuery,
        totals: bool,
        tx: Option<&mpsc::Sender<Vec<Allocation>>>,
    ) -> Result<StreamSummary, Error> {
        let (url, endpoint) = self.allocation_url(q, totals);
        let client_filter = match self.inner.flavor {
            Flavor::Kubecost => None,
            Flavor::OpenCost => q.filter_cluster.clone(),
        };
        let windows = SetWindows {
            window: q.window,
            step: if totals { None } else { q.step },
        };
        let mut collector = AllocationCollector::new(windows, client_filter, tx.is_some());
        let _permit = self.permit().await?;
        let resp = self
            .send(reqwest::Method::GET, url, &endpoint, None)
            .await?;
        let mut body = BodyFramer {
            resp,
            framer: Framer::new(self.inner.max_value),
            endpoint: &endpoint,
        };
        while body.next_chunk().await? {
            while let Some(ev) = body.framer.next_event().map_err(|e| e.at(&endpoint))? {
                let set_start = matches!(ev, Event::SetStart { .. });
                collector.on_event(ev).map_err(|e| e.at(&endpoint))?;
                if set_start {
                    // An error envelope whose code came before its data: stop early.
                    body.envelope_error()?;
                }
            }
            if let Some(tx) = tx {
                if collector.batch.len() >= BATCH_ROWS {
                    send_batch(tx, collector.take_batch(), &endpoint).await?;
                }
            }
        }
        body.finish()?;
        if let Some(tx) = tx {
            if !collector.batch.is_empty() {
                send_batch(tx, collector.take_batch(), &endpoint).await?;
            }
        }
        tracing::debug!(
            endpoint = %endpoint,
            rows = collector.summary.rows,
            sets = collector.summary.sets,
            "kubecost allocations read"
        );
        Ok(collector.summary)
    }

    /// Reads the assets of one query (streamed through the framer; the result is in memory).
    pub async fn assets(&self, q: &AssetQuery) -> Result<Vec<Asset>, Error> {
        let path = match self.inner.flavor {
            Flavor::Kubecost => "/model/assets",
            Flavor::OpenCost => "/assets",
        };
        let mut url = self.url(path);
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("window", &q.window.to_kubecost_param());
            if !q.aggregate.is_empty() {
                qp.append_pair("aggregate", &q.aggregate.join(","));
            }
            qp.append_pair("accumulate", bool_param(q.accumulate));
            if let Some(c) = &q.filter_cluster {
                qp.append_pair("filter", &format!("cluster:\"{c}\""));
                if self.inner.flavor == Flavor::Kubecost {
                    qp.append_pair("filterClusters", c);
                }
            }
        }
        let endpoint = format!("GET {} window {}", url.path(), q.window);
        let windows = SetWindows {
            window: q.window,
            step: if q.accumulate {
                None
            } else {
                Some(kb_core::window::DAY)
            },
        };
        let mut collector = AssetCollector::new(windows, q.filter_cluster.clone());
        let _permit = self.permit().await?;
        let resp = self
            .send(reqwest::Method::GET, url, &endpoint, None)
            .await?;
        let mut body = BodyFramer {
            resp,
            framer: Framer::new(self.inner.max_value),
            endpoint: &endpoint,
        };
        while body.next_chunk().await? {
            while let Some(ev) = body.framer.next_event().map_err(|e| e.at(&endpoint))? {
                collector.on_event(ev).map_err(|e| e.at(&endpoint))?;
            }
        }
        body.finish()?;
        Ok(collector.assets)
    }

    /// Reads every budget (`GET /model/budgets`; Kubecost only).
    pub async fn budgets(&self) -> Result<Vec<Budget>, Error> {
        let url = self.url("/model/budgets");
        let endpoint = format!("GET {}", url.path());
        self.kubecost_only(&endpoint)?;
        let body = self.get_small(url, &endpoint).await?;
        crate::parse_budgets_document(&body).map_err(|e| e.at(&endpoint))
    }

    /// Reads container request right-sizing recommendations (`/model/savings/requestSizingV2`).
    /// `window` is a Kubecost window string (`7d`, an RFC3339 pair, ...).
    pub async fn request_sizing(
        &self,
        window: &str,
        filter_cluster: Option<&str>,
    ) -> Result<Vec<SavingsRecommendation>, Error> {
        let mut url = self.url("/model/savings/requestSizingV2");
        let endpoint = format!("GET {} window {window}", url.path());
        self.kubecost_only(&endpoint)?;
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("window", window);
            if let Some(c) = filter_cluster {
                qp.append_pair("filter", &format!("cluster:\"{c}\""));
                qp.append_pair("filterClusters", c);
            }
        }
        let body = self.get_small(url, &endpoint).await?;
        crate::parse_request_sizing_document(&body).map_err(|e| e.at(&endpoint))
    }

    /// Reads node-pool right-sizing recommendations (`/model/savings/clusterSizingETL`): per
    /// cluster, the option that saves the most.
    pub async fn cluster_sizing(&self, window: &str) -> Result<Vec<SavingsRecommendation>, Error> {
        let mut url = self.url("/model/savings/clusterSizingETL");
        let endpoint = format!("GET {} window {window}", url.path());
        self.kubecost_only(&endpoint)?;
        url.query_pairs_mut().append_pair("window", window);
        let body = self.get_small(url, &endpoint).await?;
        crate::parse_cluster_sizing_document(&body).map_err(|e| e.at(&endpoint))
    }

    /// Reads abandoned workloads (`/model/savings/abandonedWorkloads?days=`).
    pub async fn abandoned_workloads(
        &self,
        days: u32,
    ) -> Result<Vec<SavingsRecommendation>, Error> {
        let mut url = self.url("/model/savings/abandonedWorkloads");
        let endpoint = format!("GET {} days {days}", url.path());
        self.kubecost_only(&endpoint)?;
        url.query_pairs_mut()
            .append_pair("days", &days.max(1).to_string());
        let body = self.get_small(url, &endpoint).await?;
        crate::parse_abandoned_document(&body).map_err(|e| e.at(&endpoint))
    }

    /// Predicts the cost of Kubernetes workload specs (`POST /model/prediction/speccost`,
    /// YAML body, multi-document allowed).
    pub async fn spec_cost(
        &self,
        cluster_id: &str,
        default_namespace: &str,
        yaml_body: String,
    ) -> Result<Vec<SpecCostPrediction>, Error> {
        let mut url = self.url("/model/prediction/speccost");
        let endpoint = format!("POST {}", url.path());
        self.kubecost_only(&endpoint)?;
        url.query_pairs_mut()
            .append_pair("clusterID", cluster_id)
            .append_pair("defaultNamespace", default_namespace);
        let _permit = self.permit().await?;
        let resp = self
            .send(
                reqwest::Method::POST,
                url,
                &endpoint,
                Some((yaml_body, "application/yaml")),
            )
            .await?;
        let body = read_capped(resp, SMALL_BODY_LIMIT, &endpoint, false).await?;
        crate::parse_spec_cost_document(&body).map_err(|e| e.at(&endpoint))
    }
}

async fn send_batch(
    tx: &mpsc::Sender<Vec<Allocation>>,
    batch: Vec<Allocation>,
    endpoint: &str,
) -> Result<(), Error> {
    tx.send(batch).await.map_err(|_| Error::ReceiverDropped {
        endpoint: endpoint.to_string(),
    })
}

/// Reads a whole body up to `cap` bytes. With `truncate_ok` a longer body is cut at `cap`
/// (for error messages); otherwise it is an error.
async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
    endpoint: &str,
    truncate_ok: bool,
) -> Result<Vec<u8>, Error> {
    if !truncate_ok {
        if let Some(len) = resp.content_length() {
            if len > cap as u64 {
                return Err(Error::TooLarge {
                    endpoint: endpoint.to_string(),
                    what: "the response body".to_string(),
                    limit: cap as u64,
                });
            }
        }
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > cap {
                    if truncate_ok {
                        let room = cap - out.len();
                        out.extend_from_slice(&c[..room.min(c.len())]);
                        return Ok(out);
                    }
                    return Err(Error::TooLarge {
                        endpoint: endpoint.to_string(),
                        what: "the response body".to_string(),
                        limit: cap as u64,
                    });
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(body_error(e, endpoint, out.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn steps_are_kubecost_durations() {
        assert_eq!(step_param(3600), "1h");
        assert_eq!(step_param(86400), "1d");
        assert_eq!(step_param(7200), "2h");
        assert_eq!(step_param(1800), "30m");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        h.insert(RETRY_AFTER, future.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_messages_come_from_json_or_text() {
        assert_eq!(
            error_message(
                br#"{"code":400,"status":"","data":null,"message":"Error: bad request"}"#
            ),
            "Error: bad request"
        );
        assert_eq!(
            error_message(b"Invalid 'window' parameter: illegal window: x\n"),
            "Invalid 'window' parameter: illegal window: x"
        );
        assert_eq!(error_message(b""), "empty body");
    }

    #[test]
    fn enveloped_or_bare_bodies_parse() {
        let v: Option<Vec<i32>> = parse_enveloped(b" [1,2]").unwrap();
        assert_eq!(v, Some(vec![1, 2]));
        let v: Option<Vec<i32>> = parse_enveloped(br#"{"code":200,"data":[3]}"#).unwrap();
        assert_eq!(v, Some(vec![3]));
        let v: Option<Vec<i32>> = parse_enveloped(br#"{"code":200,"data":null}"#).unwrap();
        assert_eq!(v, None);
        let e = parse_enveloped::<Vec<i32>>(br#"{"code":500,"message":"boom","data":null}"#)
            .unwrap_err();
        assert!(matches!(e, Error::Api { code: 500, .. }), "{e:?}");
        let e = parse_enveloped::<Vec<i32>>(br#"{"code":200,"data":[1,"x"]}"#).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Malformed {
                    byte_offset: 24,
                    ..
                }
            ),
            "{e:?}"
        ); // serde points just after the bad token
        let e = parse_enveloped::<Vec<i32>>(br#"{"code":200,"data":[1,"#).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
        let e = parse_enveloped::<Vec<i32>>(b"Invalid 'window'").unwrap_err();
        assert!(e.to_string().contains("not json"), "{e}");
    }

    #[test]
    fn urls_join_the_base_path() {
        let c = Client::new(ClientConfig::new(
            Url::parse("http://kc:9090/model/").unwrap(),
            Flavor::Kubecost,
        ))
        .unwrap();
        assert_eq!(
            c.url("/model/allocation").as_str(),
            "http://kc:9090/model/allocation"
        );
        let c = Client::new(ClientConfig::new(
            Url::parse("https://proxy/kubecost").unwrap(),
            Flavor::Kubecost,
        ))
        .unwrap();
        assert_eq!(
            c.url("/model/assets").as_str(),
            "https://proxy/kubecost/model/assets"
        );
    }

    #[test]
    fn credentials_in_the_url_and_bad_certificates_are_refused() {
        let e = Client::new(ClientConfig::new(
            Url::parse("http://u:hunter2@kc:9090").unwrap(),
            Flavor::Kubecost,
        ))
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        let mut cfg = ClientConfig::new(Url::parse("https://kc").unwrap(), Flavor::Kubecost);
        cfg.ca_cert_pem = Some(b"not a certificate".to_vec());
        assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
        // A client identity that is not a certificate and key: refused without echoing it.
        let mut cfg = ClientConfig::new(Url::parse("https://kc").unwrap(), Flavor::Kubecost);
        cfg.client_identity_pem = Some(Secret::new("-----BEGIN PRIVATE KEY-----\nhunter2\n"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let e = Client::new(cfg).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
