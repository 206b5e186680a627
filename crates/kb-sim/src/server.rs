//! The HTTP side: axum routes for Kubecost's and OpenCost's endpoints, query parsing, the
//! response envelopes, fault injection and [`serve`].
//!
//! Invariants: the clock is only used to resolve relative windows and to cut data at "now";
//! sets that start at or after now are left out, and the part of a set after now has no data;
//! a hanging (timeout fault) request ends when the server shuts down.

// Handlers return ready responses as errors; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use crate::alloc::{AggProp, AllocOpts, Field, Filter, write_sets};
use crate::assets::{AssetOpts, write_asset_sets};
use crate::faults::{Decision, decide};
use crate::stream::{self, BodyFaults};
use crate::{Fleet, SimConfig, extra, metrics};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kb_core::Window;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The server's clock: current unix time in seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Most sets one response may have (guards against `window=52w&step=1m`).
const MAX_SETS: usize = 20_000;

pub(crate) struct AppState {
    pub fleet: Arc<Fleet>,
    pub cfg: SimConfig,
    pub clock: Clock,
    counter: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// Keeps the shutdown channel open for routers built without [`serve`].
    _keep: Option<watch::Sender<bool>>,
}

impl AppState {
    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    fn decide(&self) -> Decision {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        decide(&self.cfg.faults, self.cfg.seed, n)
    }
}

type St = State<Arc<AppState>>;
type Params = Query<Vec<(String, String)>>;

fn real_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp())
}

/// The router of a simulator using the real clock (hung requests last about an hour).
pub fn router(cfg: SimConfig) -> Router {
    router_with_clock(cfg, real_clock())
}

/// The router of a simulator with an injected clock (for tests).
pub fn router_with_clock(cfg: SimConfig, clock: Clock) -> Router {
    let (tx, rx) = watch::channel(false);
    // A router without `serve` has no shutdown: keep the sender alive so hangs last their hour.
    build(cfg, clock, rx, Some(tx))
}

fn build(
    cfg: SimConfig,
    clock: Clock,
    shutdown: watch::Receiver<bool>,
    keep: Option<watch::Sender<bool>>,
) -> Router {
    let fleet = Arc::new(Fleet::new(&cfg));
    let st = Arc::new(AppState {
        fleet,
        cfg,
        clock,
        counter: AtomicU64::new(0),
        shutdown,
        _keep: keep,
    });
    Router::new()
        .route("/model/allocation", get(alloc_kubecost))
        .route("/model/allocation/compute", get(alloc_kubecost))
        .route("/allocation", get(alloc_opencost))
        .route("/allocation/compute", get(alloc_opencost))
        .route("/model/allocation/summary/topline", get(extra::topline))
        .route("/model/assets", get(assets))
        .route("/model/budgets", get(extra::budgets))
        .route("/model/savings/requestSizingV2", get(extra::request_sizing))
        .route(
            "/model/savings/clusterSizingETL",
            get(extra::cluster_sizing),
        )
        .route("/model/savings/abandonedWorkloads", get(extra::abandoned))
        .route("/model/prediction/speccost", post(extra::speccost))
        .route("/metrics", get(metrics::handler))
        .with_state(st)
}

/// Serves the simulator on `listener` until `shutdown` completes, with the real clock.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: SimConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_clock(listener, cfg, real_clock(), shutdown).await
}

/// [`serve`] with an injected clock.
pub async fn serve_with_clock(
    listener: tokio::net::TcpListener,
    cfg: SimConfig,
    clock: Clock,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = build(cfg, clock, rx, None);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Wake hung requests so graceful shutdown does not wait for them.
            tx.send(true).ok();
        })
        .await
}

pub(crate) fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

pub(crate) fn flag(q: &[(String, String)], k: &str, default: bool) -> bool {
    match param(q, k) {
        Some(v) => matches!(v.trim(), "true" | "1" | "weighted" | "even"),
        None => default,
    }
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn plain(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

/// Kubecost's `WriteError` envelope.
fn error_envelope(status: StatusCode, msg: &str) -> Response {
    let mut b = Vec::new();
    b.extend_from_slice(b"{\"code\":");
    crate::json::int(&mut b, i64::from(status.as_u16()));
    b.extend_from_slice(b",\"status\":\"\",\"data\":null,\"message\":");
    crate::json::string(&mut b, &format!("Error: {msg}"));
    b.push(b'}');
    json_response(status, b)
}

/// Applies latency, hang and failure faults; returns a response when the request ends here.
async fn pre_faults(st: &AppState, d: Decision) -> Option<Response> {
    if st.cfg.faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(st.cfg.faults.latency_ms)).await;
    }
    if d.timeout {
        let mut rx = st.shutdown.clone();
        let wait = async {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let hung = tokio::time::timeout(Duration::from_secs(3600), wait).await;
        drop(hung);
        return Some(error_envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated timeout",
        ));
    }
    if d.fail {
        return Some(error_envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated internal error",
        ));
    }
    None
}

/// Resolves `window` (400 plain text when bad, like Kubecost).
pub(crate) fn window_param(st: &AppState, q: &[(String, String)]) -> Result<Window, Response> {
    let Some(w) = param(q, "window") else {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "Invalid 'window' parameter: missing window".to_string(),
        ));
    };
    kb_core::window::parse_kubecost_window(w, st.now()).map_err(|e| {
        plain(
            StatusCode::BAD_REQUEST,
            format!("Invalid 'window' parameter: {e}"),
        )
    })
}

/// Splits a window into `(set window, data window)` pairs, cutting data at now.
pub(crate) fn sets(
    st: &AppState,
    q: &[(String, String)],
    w: Window,
    default_step: Option<i64>,
) -> Result<Vec<(Window, Window)>, Response> {
    let bad = |m: &str| error_envelope(StatusCode::BAD_REQUEST, &format!("bad request: {m}"));
    let acc = param(q, "accumulate").unwrap_or("false");
    let step = match acc {
        "true" | "all" => None,
        "hour" => Some(3_600),
        "day" => Some(86_400),
        "week" => Some(7 * 86_400),
        _ => match param(q, "step") {
            Some(s) => Some(
                kb_core::window::parse_duration(s)
                    .filter(|d| *d > 0)
                    .ok_or_else(|| bad("invalid step"))?,
            ),
            None => default_step,
        },
    };
    let pieces = match step {
        Some(s) => {
            if w.seconds() / s > MAX_SETS as i64 {
                return Err(bad("too many steps"));
            }
            w.split(s)
        }
        None => vec![w],
    };
    let now = st.now();
    Ok(pieces
        .into_iter()
        .filter(|s| s.start < now)
        .map(|s| {
            (
                s,
                Window {
                    start: s.start,
                    end: s.end.min(now),
                },
            )
        })
        .collect())
}

async fn alloc_kubecost(st: St, Query(q): Params) -> Response {
    allocation(st.0, q, false).await
}

async fn alloc_opencost(st: St, Query(q): Params) -> Response {
    allocation(st.0, q, true).await
}

pub(crate) fn alloc_opts(q: &[(String, String)], opencost: bool) -> Result<AllocOpts, String> {
    let mut aggregate = Vec::new();
    if let Some(a) = param(q, "aggregate").filter(|a| !a.trim().is_empty()) {
        for p in a.split(',') {
            aggregate.push(
                AggProp::parse(p)
                    .ok_or_else(|| format!("bad request: unsupported aggregate {p:?}"))?,
            );
        }
    }
    let mut filter = match param(q, "filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => Filter::parse_v2(f)?,
        None => Filter::default(),
    };
    if param(q, "filter").is_none_or(|f| f.trim().is_empty()) {
        for (k, field) in [
            ("filterClusters", Field::Cluster),
            ("filterNamespaces", Field::Namespace),
            ("filterNodes", Field::Node),
            ("filterControllerKinds", Field::ControllerKind),
            ("filterControllers", Field::Controller),
            ("filterPods", Field::Pod),
            ("filterContainers", Field::Container),
        ] {
            if let Some(v) = param(q, k) {
                filter.and_v1(field, v);
            }
        }
    }
    let idle = if opencost {
        flag(q, "includeIdle", false)
    } else {
        flag(q, "idle", true)
    };
    Ok(AllocOpts {
        aggregate,
        idle,
        share_idle: flag(q, "shareIdle", false),
        split_idle: flag(q, "splitIdle", false),
        filter,
        nan: false,
    })
}

async fn allocation(st: Arc<AppState>, q: Vec<(String, String)>, opencost: bool) -> Response {
    let d = st.decide();
    if let Some(r) = pre_faults(&st, d).await {
        return r;
    }
    let w = match window_param(&st, &q) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let mut o = match alloc_opts(&q, opencost) {
        Ok(o) => o,
        Err(e) => return error_envelope(StatusCode::BAD_REQUEST, &e),
    };
    o.nan = d.nan;
    let sets = match sets(&st, &q, w, if opencost { None } else { Some(86_400) }) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if d.null_data {
        return json_response(StatusCode::OK, b"{\"code\":200,\"data\":[null]}".to_vec());
    }
    let fleet = st.fleet.clone();
    let body = stream::body(
        BodyFaults {
            truncate: d.truncate,
            malformed: d.malformed,
        },
        move |out| {
            out.buf.extend_from_slice(if opencost {
                b"{\"code\":200,\"status\":\"success\",\"data\":["
            } else {
                b"{\"code\":200,\"data\":["
            });
            if write_sets(&fleet, &sets, &o, out) {
                out.buf.extend_from_slice(b"]}");
            }
        },
    );
    streaming(body)
}

pub(crate) fn streaming(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn assets(State(st): St, Query(q): Params) -> Response {
    let d = st.decide();
    if let Some(r) = pre_faults(&st, d).await {
        return r;
    }
    let w = match window_param(&st, &q) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let sets = match sets(&st, &q, w, Some(86_400)) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut o = AssetOpts::default();
    if let Some(a) = param(&q, "aggregate").filter(|a| !a.trim().is_empty()) {
        o.aggregate = a.split(',').map(|s| s.trim().to_string()).collect();
    }
    if let Some(c) = param(&q, "filterClusters").or(param(&q, "cluster")) {
        o.clusters = c
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(t) = param(&q, "filterTypes").or(param(&q, "type")) {
        o.types = t
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(f) = param(&q, "filter").filter(|f| !f.trim().is_empty()) {
        // Asset v2 filter: cluster and assetType clauses.
        match Filter::parse_v2(&f.replace("assetType", "container")) {
            Ok(fl) => {
                for c in fl.groups.iter().flatten() {
                    match c.field {
                        Field::Cluster => o.clusters.extend(c.values.iter().cloned()),
                        Field::Container => o.types.extend(c.values.iter().cloned()),
                        _ => {}
                    }
                }
            }
            Err(e) => return error_envelope(StatusCode::BAD_REQUEST, &e),
        }
    }
    if d.null_data {
        return json_response(StatusCode::OK, b"{\"code\":200,\"data\":[null]}".to_vec());
    }
    let fleet = st.fleet.clone();
    let body = stream::body(
        BodyFaults {
            truncate: d.truncate,
            malformed: d.malformed,
        },
        move |out| {
            out.buf.extend_from_slice(b"{\"code\":200,\"data\":[");
            if write_asset_sets(&fleet, &sets, &o, out) {
                out.buf.extend_from_slice(b"]}");
            }
        },
    );
    streaming(body)
}

/// Wraps already-written JSON `data` in Kubecost's envelope.
pub(crate) fn envelope(data: &[u8]) -> Response {
    let mut b = Vec::with_capacity(data.len() + 24);
    b.extend_from_slice(b"{\"code\":200,\"data\":");
    b.extend_from_slice(data);
    b.push(b'}');
    json_response(StatusCode::OK, b)
}
