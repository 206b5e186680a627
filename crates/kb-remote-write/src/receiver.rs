//! The remote_write HTTP receiver: an axum [`Router`] with `POST /storage/api/v2/write` (the
//! path CloudTuner's ingestion proxy serves) and `POST /api/v1/write` (Prometheus's own).
//!
//! # Request handling, in order
//!
//! 1. `X-Prometheus-Remote-Write-Version`: absent or `0.x` is accepted; `2.x`, and a
//!    `Content-Type` whose `proto=` parameter is not `prometheus.WriteRequest` (remote write
//!    2.0), get **415**.
//! 2. `Cloud-Account-Id` missing or empty: **400** (as the proxy does). When the header is
//!    absent, a `cloud_account_id` URL query parameter is used instead (for example
//!    `remote_write.url: https://host/storage/api/v2/write?cloud_account_id=ds-1`): Debian's
//!    Prometheus 2.42.0+ds does not send `remote_write.headers` at all (seen in our
//!    integration test; upstream issue prometheus/prometheus#13030). The credentials are
//!    checked the same way either way. Both present and different: **400**.
//! 3. Basic auth against that source's credentials, in constant time: **401** with
//!    `WWW-Authenticate: Basic` for a wrong user or password, a missing `Authorization`, *and*
//!    an unknown `Cloud-Account-Id` (so the answer never reveals which sources exist).
//! 4. `Content-Encoding`: absent or `snappy` is accepted (remote write 1.0 bodies are always
//!    snappy); anything else (`gzip`, ...) gets **415**. `Content-Type`: absent,
//!    `application/x-protobuf`, `application/protobuf` (what the proxy's spec names) or
//!    `application/octet-stream` are accepted; others get **415**.
//! 5. A `Content-Length` above `max_body_bytes` gets **413** before reading; a body that grows
//!    past it while being read (chunked) also gets **413**. A body not read within
//!    `body_timeout` gets **408**.
//! 6. Admission: at most `max_in_flight` requests are read, decoded, queued or written at once
//!    (a semaphore, tried without waiting). Above that the answer is **429**, or **503** with
//!    [`OverloadStatus::ServiceUnavailable`], with `Retry-After: 1`. Prometheus 2.42 drops a
//!    batch answered 429 unless its `queue_config.retry_on_http_429: true` is set; it always
//!    retries 5xx. So use 503 for senders without that setting, 429 for senders with it.
//! 7. Decode (snappy + protobuf, see [`crate::proto`]): any error gets **400** (Prometheus does
//!    not retry it; nothing of the request is kept).
//! 8. The decoded batch goes into a bounded queue; one worker hands batches to the
//!    [`SampleSink`] in order, and the request answers **204** only after the sink returned
//!    `Ok`. A sink error, shutdown, or no answer within `ack_timeout`, gets **503** (Prometheus
//!    retries; a batch written after its request timed out is then written twice, which the
//!    sinks must tolerate: [`crate::LiveCosts`] ignores samples not newer than what it has).
//!
//! Series labels never choose the cluster: the sink receives the source's configured cluster,
//! and `cluster`/`cluster_id` labels in the data are ignored.
//!
//! Memory bound: `max_in_flight × (max_body_bytes + decompressed + decoded size)`: the
//! decompressed buffer is checked against `decode.max_decompressed_bytes` before it is
//! allocated, and the decoded batch is at most about 3× the decompressed size (label bytes
//! copied once, 12 bytes of index per label, 16 per sample). Defaults: 32 × (16 MiB + 64 MiB +
//! ~192 MiB) in the worst case, a few MiB in practice (Prometheus sends ≤ 2,000 samples, about
//! 100 KiB, per request).
//!
//! Every answer is also reported to the [`RequestObserver`] given to
//! [`Receiver::start_observed`] (the binary counts them in `/metrics` by [`RequestOutcome`]).
//!
//! Not covered here: the HTTP/1 header read timeout and connection limits belong to the
//! listener the binary serves this router on.

use crate::auth::{AuthError, Source, SourceError, Sources};
use crate::batch::DecodedBatch;
use crate::proto::{DecodeLimits, decode_write_request};
use crate::sink::{SampleSink, SinkError};
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kb_pipeline::shutdown::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// The status answered when the receiver is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverloadStatus {
    /// 429: retried by Prometheus only with `retry_on_http_429: true`.
    TooManyRequests,
    /// 503: always retried by Prometheus.
    #[default]
    ServiceUnavailable,
}

/// Receiver configuration (config `remote_write`).
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Allowed data sources.
    pub sources: Vec<Source>,
    /// Largest compressed body accepted (413 above).
    pub max_body_bytes: usize,
    /// Decoding limits (decompressed size, labels per series).
    pub decode: DecodeLimits,
    /// Requests read, decoded, queued or being written at once; more are refused.
    pub max_in_flight: usize,
    /// Status for refused requests.
    pub overload_status: OverloadStatus,
    /// Longest time to read a body.
    pub body_timeout: Duration,
    /// Longest wait for the sink's confirmation.
    pub ack_timeout: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            sources: Vec::new(),
            max_body_bytes: 16 << 20,
            decode: DecodeLimits::default(),
            max_in_flight: 32,
            overload_status: OverloadStatus::default(),
            body_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(20),
        }
    }
}

/// How one request ended, by the status it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestOutcome {
    /// 204: the sink stored the samples.
    Accepted,
    /// 400, 408 or 415: a request Prometheus must not retry (bad body, format or account id).
    Rejected,
    /// 401: wrong or missing credentials, or an unknown source.
    Unauthorized,
    /// 413: the body is above `max_body_bytes`.
    TooLarge,
    /// 429, or 503 with `Retry-After`: the receiver was full.
    Overloaded,
    /// 503 without `Retry-After`: the sink failed or timed out, or the receiver is stopping.
    Error,
}

impl RequestOutcome {
    /// The outcome of an answer with status `code`; `retry_after` when it carries the header.
    pub fn of(code: StatusCode, retry_after: bool) -> RequestOutcome {
        match code {
            c if c.is_success() => RequestOutcome::Accepted,
            StatusCode::UNAUTHORIZED => RequestOutcome::Unauthorized,
            StatusCode::PAYLOAD_TOO_LARGE => RequestOutcome::TooLarge,
            StatusCode::TOO_MANY_REQUESTS => RequestOutcome::Overloaded,
            StatusCode::SERVICE_UNAVAILABLE if retry_after => RequestOutcome::Overloaded,
            c if c.is_server_error() => RequestOutcome::Error,
            _ => RequestOutcome::Rejected,
        }
    }
}

/// Told about every answered request (for metrics). Called on the request's task: keep it
/// quick and non-blocking.
pub trait RequestObserver: Send + Sync {
    /// `source` is the authenticated source's cluster, `None` before (or without) a successful
    /// authentication, so an unauthenticated sender never chooses a label value. `samples` is
    /// the request's sample count once decoded (0 before).
    fn observe(&self, source: Option<&str>, outcome: RequestOutcome, samples: u64);
}

/// What a request got to before it was answered.
#[derive(Default)]
struct Seen {
    source: Option<Arc<str>>,
    samples: u64,
}

/// Counters of what the receiver did.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Requests answered 204.
    pub accepted_requests: AtomicU64,
    /// Samples in those requests.
    pub accepted_samples: AtomicU64,
    /// Requests answered 400/413/415/408.
    pub rejected_requests: AtomicU64,
    /// Requests answered 401.
    pub unauthorized_requests: AtomicU64,
    /// Requests refused for overload.
    pub overloaded_requests: AtomicU64,
    /// Requests answered 503 for a sink error, shutdown or ack timeout.
    pub failed_requests: AtomicU64,
}

struct Job {
    cluster: Arc<str>,
    batch: DecodedBatch,
    ack: oneshot::Sender<Result<(), SinkError>>,
}

struct Inner {
    sources: Sources,
    cfg: ReceiverConfig,
    gate: Arc<Semaphore>,
    tx: mpsc::Sender<Job>,
    stats: Arc<ReceiverStats>,
    observer: Option<Arc<dyn RequestObserver>>,
}

/// A running receiver: its router and the worker that feeds the sink.
pub struct Receiver {
    inner: Arc<Inner>,
    worker: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

/// Why a receiver could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("remote_write: {0} must be > 0")]
    Zero(&'static str),
}

impl Receiver {
    /// Validates `cfg` and spawns the worker (needs a tokio runtime). The worker stops on
    /// `shutdown` or when the router is dropped; requests still queued then answer 503.
    pub fn start(
        cfg: ReceiverConfig,
        sink: Arc<dyn SampleSink>,
        shutdown: Shutdown,
    ) -> Result<Receiver, ReceiverError> {
        Receiver::start_observed(cfg, sink, shutdown, None)
    }

    /// [`Receiver::start`], reporting every answered request to `observer`.
    pub fn start_observed(
        cfg: ReceiverConfig,
        sink: Arc<dyn SampleSink>,
        shutdown: Shutdown,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Result<Receiver, ReceiverError> {
        for (v, name) in [
            (cfg.max_body_bytes, "max_body_bytes"),
            (cfg.max_in_flight, "max_in_flight"),
            (cfg.decode.max_decompressed_bytes, "max_decompressed_bytes"),
            (cfg.decode.max_labels_per_series, "max_labels_per_series"),
            (
                cfg.decode.max_label_bytes_per_series,
                "max_label_bytes_per_series",
            ),
        ] {
            if v == 0 {
                return Err(ReceiverError::Zero(name));
            }
        }
        let sources = Sources::new(&cfg.sources)?;
        let (tx, rx) = mpsc::channel(cfg.max_in_flight);
        let stats = Arc::new(ReceiverStats::default());
        let worker = tokio::spawn(run_worker(rx, sink, shutdown));
        let inner = Arc::new(Inner {
            sources,
            gate: Arc::new(Semaphore::new(cfg.max_in_flight)),
            cfg,
            tx,
            stats,
            observer,
        });
        Ok(Receiver { inner, worker })
    }

    /// The router to mount on the listener (state included).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/storage/api/v2/write", post(handle))
            .route("/api/v1/write", post(handle))
            .with_state(self.inner.clone())
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ReceiverStats> {
        self.inner.stats.clone()
    }

    /// Waits for the worker to end (after shutdown, or once every router clone is dropped).
    pub async fn join(self) {
        let Receiver { inner, worker } = self;
        drop(inner);
        if let Err(e) = worker.await {
            tracing::error!(error = %e, "remote_write worker failed");
        }
    }
}

/// Most queued batches handed to the sink in one blocking task.
const WORKER_CHUNK: usize = 16;

async fn run_worker(mut rx: mpsc::Receiver<Job>, sink: Arc<dyn SampleSink>, shutdown: Shutdown) {
    loop {
        let job = tokio::select! {
            j = rx.recv() => j,
            () = shutdown.wait() => None,
        };
        let Some(job) = job else { break };
        // Take what else is queued, to hop to a blocking thread once for several batches.
        let mut jobs = vec![job];
        while jobs.len() < WORKER_CHUNK {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let sink = sink.clone();
        let done = tokio::task::spawn_blocking(move || {
            for Job {
                cluster,
                batch,
                ack,
            } in jobs
            {
                let res = sink.write(&cluster, &batch);
                drop(batch);
                // The request may have timed out meanwhile; then nobody listens.
                ack.send(res).ok();
            }
        })
        .await;
        if let Err(e) = done {
            // The acks of that chunk were dropped: those requests answer 503.
            tracing::error!(error = %e, "remote_write sink task failed");
        }
    }
    // Anything still queued is dropped unacknowledged: its requests answer 503.
    rx.close();
}

fn status(code: StatusCode, msg: &'static str) -> Response {
    (code, msg).into_response()
}

fn header_bytes<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    h.get(name).map(HeaderValue::as_bytes)
}

/// Checks version, encoding and type headers; `Some(response)` refuses the request.
fn check_format(h: &HeaderMap) -> Option<Response> {
    if let Some(v) = header_bytes(h, "x-prometheus-remote-write-version") {
        let v = v.trim_ascii();
        if !(v.is_empty() || v.starts_with(b"0.") || v.starts_with(b"1.")) {
            return Some(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "only remote write 1.0 is supported\n",
            ));
        }
    }
    if let Some(enc) = header_bytes(h, "content-encoding") {
        let enc = enc.trim_ascii();
        if !(enc.is_empty() || enc.eq_ignore_ascii_case(b"snappy")) {
            return Some(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-encoding must be snappy\n",
            ));
        }
    }
    if let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let mut parts = ct.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let ok_mime = matches!(
            mime.as_str(),
            "" | "application/x-protobuf" | "application/protobuf" | "application/octet-stream"
        );
        let ok_proto = parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("proto") => {
                v.trim().trim_matches('"') == "prometheus.WriteRequest"
            }
            _ => true,
        });
        if !ok_mime || !ok_proto {
            return Some(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type must be application/x-protobuf (remote write 1.0)\n",
            ));
        }
    }
    None
}

async fn handle(
    State(st): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut seen = Seen::default();
    let r = handle_inner(&st, query.as_deref(), &headers, body, &mut seen).await;
    if let Some(o) = &st.observer {
        let outcome = RequestOutcome::of(r.status(), r.headers().contains_key(header::RETRY_AFTER));
        o.observe(seen.source.as_deref(), outcome, seen.samples);
    }
    let counter = match r.status() {
        StatusCode::NO_CONTENT => None,
        StatusCode::UNAUTHORIZED => Some(&st.stats.unauthorized_requests),
        StatusCode::TOO_MANY_REQUESTS => Some(&st.stats.overloaded_requests),
        StatusCode::SERVICE_UNAVAILABLE if r.headers().contains_key(header::RETRY_AFTER) => {
            Some(&st.stats.overloaded_requests)
        }
        s if s.is_server_error() => Some(&st.stats.failed_requests),
        _ => Some(&st.stats.rejected_requests),
    };
    if let Some(c) = counter {
        c.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// The `cloud_account_id` query parameter, percent-decoded.
fn query_account_id(query: Option<&str>) -> Option<Vec<u8>> {
    let v = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("cloud_account_id="))?;
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|d| char::from(*d).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

async fn handle_inner(
    st: &Inner,
    query: Option<&str>,
    h: &HeaderMap,
    body: Body,
    seen: &mut Seen,
) -> Response {
    if let Some(r) = check_format(h) {
        return r;
    }
    let from_header = header_bytes(h, "cloud-account-id").map(<[u8]>::trim_ascii);
    let from_query = query_account_id(query);
    if let (Some(a), Some(b)) = (from_header, from_query.as_deref()) {
        if !a.is_empty() && a != b.trim_ascii() {
            return status(
                StatusCode::BAD_REQUEST,
                "Cloud-Account-Id header and cloud_account_id parameter differ\n",
            );
        }
    }
    let account_id = match from_header {
        Some(a) if !a.is_empty() => Some(a),
        _ => from_query.as_deref(),
    };
    let cluster = match st
        .sources
        .authenticate(account_id, header_bytes(h, "authorization"))
    {
        Ok(c) => c,
        Err(AuthError::MissingAccountId) => {
            return status(StatusCode::BAD_REQUEST, "missing Cloud-Account-Id header\n");
        }
        Err(AuthError::Invalid) => {
            let mut r = status(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"remote_write\""),
            );
            return r;
        }
    };
    seen.source = Some(cluster.clone());
    let limit = st.cfg.max_body_bytes;
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return status(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
    }
    // Admission: bounded memory for bodies, decoded batches and the queue.
    let Ok(permit) = st.gate.clone().try_acquire_owned() else {
        return overloaded(st.cfg.overload_status);
    };
    let cap = declared.map_or(0, |n| n as usize);
    let bytes = match tokio::time::timeout(st.cfg.body_timeout, read_limited(body, limit, cap))
        .await
    {
        Err(_) => return status(StatusCode::REQUEST_TIMEOUT, "body read timed out\n"),
        Ok(Err(ReadError::TooLarge)) => {
            return status(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
        }
        Ok(Err(ReadError::Io)) => return status(StatusCode::BAD_REQUEST, "could not read body\n"),
        Ok(Ok(b)) => b,
    };
    let decoded = if bytes.len() > 1 << 20 {
        let limits = st.cfg.decode;
        tokio::task::spawn_blocking(move || decode_write_request(&bytes, &limits))
            .await
            .unwrap_or_else(|e| {
                Err(crate::proto::DecodeError::Snappy(format!(
                    "decode task failed: {e}"
                )))
            })
    } else {
        decode_write_request(&bytes, &st.cfg.decode)
    };
    let batch = match decoded {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(cluster = %cluster, error = %e, "remote_write body refused");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let samples = batch.sample_count() as u64;
    seen.samples = samples;
    if batch.is_empty() {
        // Metadata-only requests carry no samples.
        drop(permit);
        return accepted(st, 0);
    }
    let (ack_tx, ack_rx) = oneshot::channel();
    let job = Job {
        cluster,
        batch,
        ack: ack_tx,
    };
    match st.tx.try_send(job) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => return overloaded(st.cfg.overload_status),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return status(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        }
    }
    let res = tokio::time::timeout(st.cfg.ack_timeout, ack_rx).await;
    drop(permit);
    match res {
        Ok(Ok(Ok(()))) => accepted(st, samples),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "remote_write sink failed");
            status(StatusCode::SERVICE_UNAVAILABLE, "storage failed, retry\n")
        }
        Ok(Err(_)) => status(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        Err(_) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage timed out, retry\n",
        ),
    }
}

enum ReadError {
    TooLarge,
    Io,
}

/// Reads a body, failing as soon as it passes `limit` bytes.
async fn read_limited(
    mut body: Body,
    limit: usize,
    size_hint: usize,
) -> Result<Vec<u8>, ReadError> {
    use axum::body::HttpBody;
    let mut buf = Vec::with_capacity(size_hint.min(limit));
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|_| ReadError::Io)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

fn accepted(st: &Inner, samples: u64) -> Response {
    st.stats.accepted_requests.fetch_add(1, Ordering::Relaxed);
    st.stats
        .accepted_samples
        .fetch_add(samples, Ordering::Relaxed);
    StatusCode::NO_CONTENT.into_response()
}

fn overloaded(s: OverloadStatus) -> Response {
    let code = match s {
        OverloadStatus::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        OverloadStatus::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut r = status(code, "receiver is full, retry later\n");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
