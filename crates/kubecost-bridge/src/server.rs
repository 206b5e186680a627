//! The bridge's one listener (`api.listen`): the remote_write receiver, health endpoints and
//! (as later issues land) the REST API, `/metrics` and the dashboard.
//!
//! - `GET /healthz`: the process is alive (always 200 while it serves).
//! - `GET /readyz`: 200 when the store answers a query, else 503 with the reason.
//! - `POST /api/v1/write`, `POST /storage/api/v2/write`: Prometheus remote_write (see
//!   `kb_remote_write::receiver`), when `remote_write.sources` names at least one source.
//! - `GET /metrics`: the bridge's own metrics (`deploy/prometheus/README.md` is the contract).
//! - `/api/v1/...`: the REST API (`kb_api`), reading the embedded store, with API keys from
//!   `api.auth` and the bootstrap admin token from `KUBECOST_BRIDGE_ADMIN_TOKEN`; answers are
//!   cached for `api.cache_ttl` (60 s), so new data shows within that.
//! - `/`, `/clusters/...`, `/login`: the web dashboard (`kb_dashboard`), reading through the
//!   same API with the key kept in its session cookie.
//!
//! Alerts are evaluated in-process every `alerts.interval` with their states in the store.
//!
//! The listener is plain HTTP, or HTTPS when `api.tls` names a certificate and key
//! ([`Server::serve_on`], [`crate::tls`]). On shutdown it stops accepting at once and lets the
//! requests in flight finish.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use kb_pipeline::insights::InsightReader;
use kb_pipeline::ports::CostReader;
use kb_pipeline::shutdown::Shutdown;
use kb_remote_write::{OverloadStatus, Receiver, ReceiverConfig, ScrapeTarget, Scraper};
use kb_store::SqliteStore;

use crate::app::{Failure, read_secret, runtime};
use crate::config::Config;
use crate::realtime::{Realtime, persist_loop};

/// What the server runs besides the listener.
pub(crate) struct Server {
    pub router: Router,
    receiver: Option<Receiver>,
    /// What `/readyz` checks besides the store: the schedules `run` registers.
    pub readiness: Arc<Readiness>,
}

/// The long-running tasks `/readyz` watches. A task holds an [`Alive`] guard for as long as
/// it runs; one that ends or panics before shutdown makes `/readyz` answer 503 and name it.
/// Before any task registers (the start-up catch-up), readiness rests on the store alone, so
/// the API serves while history is fetched. After SIGTERM it answers 503, so traffic moves
/// away while the windows in flight finish.
#[derive(Debug)]
pub(crate) struct Readiness {
    tasks: std::sync::Mutex<Vec<(&'static str, Arc<std::sync::atomic::AtomicBool>)>>,
    shutdown: Shutdown,
}

/// Marks a task alive until dropped.
#[derive(Debug)]
pub(crate) struct Alive(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Readiness {
    pub(crate) fn new(shutdown: Shutdown) -> Readiness {
        Readiness {
            tasks: std::sync::Mutex::new(Vec::new()),
            shutdown,
        }
    }

    /// Registers a running task; keep the guard inside it.
    pub(crate) fn alive(&self, name: &'static str) -> Alive {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut g = match self.tasks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.push((name, flag.clone()));
        Alive(flag)
    }

    /// `Err(reason)` while shutting down or when a registered task has stopped.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.shutdown.is_triggered() {
            return Err("shutting down".to_string());
        }
        let g = match self.tasks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let stopped: Vec<&str> = g
            .iter()
            .filter(|(_, f)| !f.load(std::sync::atomic::Ordering::SeqCst))
            .map(|(n, _)| *n)
            .collect();
        if stopped.is_empty() {
            Ok(())
        } else {
            Err(format!("stopped: {}", stopped.join(", ")))
        }
    }
}

/// Builds the router and starts the real-time path (spool, delivery, scrapers, persistence).
pub(crate) fn build(
    cfg: &Config,
    store: Arc<SqliteStore>,
    shutdown: &Shutdown,
    metrics: &kb_ops::Metrics,
) -> Result<Server, Failure> {
    let realtime = Arc::new(
        Realtime::start(
            &cfg.remote_write.spool_dir,
            cfg.remote_write.spool_max_bytes,
        )
        .with_context(|| {
            format!(
                "cannot open the real-time spool {}",
                cfg.remote_write.spool_dir.display()
            )
        })
        .map_err(runtime)?,
    );
    realtime.stop_on(shutdown.clone());
    let ready_store = store.clone();
    let readiness = Arc::new(Readiness::new(shutdown.clone()));
    let ready = readiness.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = ready_store.clone();
                let ready = ready.clone();
                async move {
                    if let Err(why) = ready.check() {
                        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
                    }
                    match tokio::task::spawn_blocking(move || store.schema_version()).await {
                        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_string()),
                        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
                    }
                }
            }),
        );
    let mut receiver = None;
    if !cfg.remote_write.sources.is_empty() {
        let mut sources = Vec::new();
        for s in &cfg.remote_write.sources {
            sources.push(kb_remote_write::Source {
                cloud_account_id: s.cloud_account_id.clone(),
                cluster: s.cluster.clone(),
                username: s.username.clone(),
                password: kb_remote_write::Secret::new(read_secret(&s.password)?.expose()),
            });
        }
        let rc = ReceiverConfig {
            sources,
            max_body_bytes: cfg.remote_write.max_body_bytes,
            overload_status: if cfg.remote_write.overload_429 {
                OverloadStatus::TooManyRequests
            } else {
                OverloadStatus::ServiceUnavailable
            },
            ..ReceiverConfig::default()
        };
        let sink = Arc::new(MeteredSink {
            inner: realtime.sink.clone(),
            metrics: metrics.clone(),
        });
        for s in &cfg.remote_write.sources {
            metrics.register_remote_write_source(&s.cluster);
        }
        let observer = Arc::new(RwObserver(metrics.clone()));
        let r = Receiver::start_observed(rc, sink, shutdown.clone(), Some(observer))
            .context("cannot start the remote_write receiver")
            .map_err(Failure::Usage)?;
        router = router.merge(r.router());
        receiver = Some(r);
    }
    if !cfg.realtime.scrape.is_empty() {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("cannot build the scrape client")
            .map_err(runtime)?;
        for name in &cfg.realtime.scrape {
            let Some(c) = cfg.clusters.iter().find(|c| &c.name == name) else {
                continue;
            };
            let url = c
                .endpoint
                .join("metrics")
                .context("cannot build the metrics URL")
                .map_err(Failure::Usage)?;
            let mut target = ScrapeTarget::new(name.clone(), url.to_string());
            target.interval = cfg.realtime.scrape_interval;
            let scraper = Scraper::new(target, client.clone());
            tokio::spawn(scraper.run(realtime.sink.clone(), shutdown.clone()));
        }
    }
    let rt = realtime.clone();
    metrics.register_spool_probe(
        "realtime",
        Arc::new(move || {
            let d = rt.stats().depth;
            (d.records, d.bytes)
        }),
    );
    let (m, acfg, st, sd) = (
        metrics.clone(),
        cfg.alerts.clone(),
        store.clone() as Arc<dyn kb_ops::AlertStateStore>,
        shutdown.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = kb_ops::run_alerts(m, acfg, st, sd).await {
            tracing::error!(error = %e, "alert evaluation stopped");
        }
    });
    let api = api_state(cfg, &store, shutdown)?;
    router = router.route(
        "/api/v1/costs/kubernetes/{cluster}/realtime",
        get(realtime_handler).with_state(Live {
            keys: api.keys.clone(),
            audit: api.audit.clone(),
            live: realtime.live.clone(),
        }),
    );
    let dashboard = kb_dashboard::Options {
        secure_cookie: cfg.api.dashboard_secure_cookie,
        ..kb_dashboard::Options::default()
    };
    router = router.merge(kb_dashboard::router(api.clone(), dashboard));
    router = router.merge(kb_api::router(api));
    router = router.merge(kb_ops::metrics::metrics_router(metrics.clone()));
    let router = kb_ops::metrics::track_http(router, metrics);
    tokio::spawn(persist_loop(
        realtime.live.clone(),
        store,
        cfg.aggregation.rules.version,
        cfg.realtime.persist_interval,
        shutdown.clone(),
        crate::app::influx_config(cfg)?,
    ));
    Ok(Server {
        router,
        receiver,
        readiness,
    })
}

/// What `GET /api/v1/costs/kubernetes/{cluster}/realtime` reads.
#[derive(Clone)]
struct Live {
    keys: Arc<kb_api::KeyRing>,
    audit: kb_api::AuditSink,
    live: Arc<kb_remote_write::LiveCosts>,
}

/// The live view (issue 3): the current cost rate per namespace in currency per hour, with
/// the time of the newest sample, behind the API's keys, rate limits and audit log. A cluster
/// the key may not see, or with no live data, is a 404.
async fn realtime_handler(
    axum::extract::State(st): axum::extract::State<Live>,
    axum::extract::Path(cluster): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let t0 = std::time::Instant::now();
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let who = st.keys.authenticate(auth);
    let (resp, rows) = match &who {
        Err(e) => (e.clone().into_response(), 0),
        Ok(p) => match st
            .keys
            .admit(p, std::time::Instant::now())
            .and_then(|()| p.require(kb_api::Scope::Read))
        {
            Err(e) => (e.into_response(), 0),
            Ok(()) => {
                let newest = st.live.newest_sample_ms(&cluster);
                match (p.may_see(&cluster), newest) {
                    (true, Some(ms)) => {
                        let ns = st.live.namespace_rates(&cluster);
                        let rows = ns.len() as u64;
                        let namespaces: Vec<serde_json::Value> = ns
                            .iter()
                            .map(|n| {
                                let r = &n.rates.rate;
                                serde_json::json!({
                                    "namespace": n.namespace,
                                    "cost_per_hour": r.total(),
                                    "cpu_cost_per_hour": r.cpu,
                                    "memory_cost_per_hour": r.ram,
                                    "gpu_cost_per_hour": r.gpu,
                                    "storage_cost_per_hour": r.pv,
                                    "network_cost_per_hour": r.network,
                                    "load_balancer_cost_per_hour": r.load_balancer,
                                    "accumulated_cost": n.rates.accumulated,
                                    "default_priced": n.rates.default_priced,
                                })
                            })
                            .collect();
                        let total = st
                            .live
                            .cluster_rate(&cluster)
                            .map_or(0.0, |r| r.rate.total());
                        let body = serde_json::json!({
                            "cluster": cluster,
                            "newest_sample": kb_core::window::format_rfc3339(ms.div_euclid(1000)),
                            "cost_per_hour": total,
                            "namespaces": namespaces,
                        });
                        (axum::Json(body).into_response(), rows)
                    }
                    _ => (
                        kb_api::ApiError::cluster_not_found(&cluster).into_response(),
                        0,
                    ),
                }
            }
        },
    };
    let p = who.ok();
    st.audit.record(kb_api::AuditRecord {
        ts: kb_core::window::format_rfc3339(chrono::Utc::now().timestamp()),
        key_id: p
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |p| p.key_id.clone()),
        key_name: p.as_ref().map(|p| p.key_name.clone()).unwrap_or_default(),
        method: "GET".into(),
        route: "/api/v1/costs/kubernetes/{cluster}/realtime".into(),
        path: format!("/api/v1/costs/kubernetes/{cluster}/realtime"),
        cluster: Some(cluster),
        params: Vec::new(),
        status: resp.status().as_u16(),
        rows,
        duration_ms: t0.elapsed().as_secs_f64() * 1e3,
        cached: false,
        dropped_before: 0,
    });
    resp
}

/// The JWT key set of `api.auth.jwt`: read from its file now, or fetched from its URL by a task
/// that refreshes it until shutdown.
fn jwt_auth(
    s: &crate::config::JwtSettings,
    shutdown: &Shutdown,
) -> Result<kb_api::JwtAuth, Failure> {
    use crate::config::JwksSource;
    let jwks = match &s.jwks {
        JwksSource::File(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read api.auth.jwt.jwks_file {}", path.display()))
                .map_err(Failure::Usage)?;
            Arc::new(
                kb_api::Jwks::from_json(&bytes)
                    .with_context(|| format!("in {}", path.display()))
                    .map_err(Failure::Usage)?,
            )
        }
        JwksSource::Url { url, refresh } => {
            let jwks = Arc::new(kb_api::Jwks::empty());
            tokio::spawn(refresh_jwks(
                url.clone(),
                *refresh,
                jwks.clone(),
                shutdown.clone(),
            ));
            jwks
        }
    };
    Ok(kb_api::JwtAuth {
        config: s.config.clone(),
        jwks,
    })
}

/// Fetches the JWKS now and every `every` (every 10 s while none has loaded), keeping the last
/// good set when a fetch fails.
async fn refresh_jwks(
    url: url::Url,
    every: std::time::Duration,
    jwks: Arc<kb_api::Jwks>,
    shutdown: Shutdown,
) {
    const MAX_BYTES: usize = 1 << 20;
    let client = match reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the JWKS client: JWTs will be refused");
            return;
        }
    };
    let host = url.host_str().unwrap_or_default().to_string();
    loop {
        let fetched = async {
            let resp = client.get(url.clone()).send().await?.error_for_status()?;
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>(body)
        }
        .await;
        match fetched {
            Ok(body) if body.len() > MAX_BYTES => {
                tracing::warn!(%host, bytes = body.len(), "JWKS too large, kept the previous keys");
            }
            Ok(body) => match jwks.replace(&body) {
                Ok(n) => tracing::debug!(%host, keys = n, "JWKS loaded"),
                Err(e) => tracing::warn!(%host, error = %e, "JWKS refused, kept the previous keys"),
            },
            Err(e) => tracing::warn!(%host, error = %e.without_url(), "cannot fetch the JWKS"),
        }
        let wait = if jwks.is_empty() {
            std::time::Duration::from_secs(10).min(every)
        } else {
            every
        };
        if shutdown.sleep(wait).await.is_err() {
            return;
        }
    }
}

/// The ClickHouse store the API reads, opened on first use and again after a failed open, so
/// `run` starts (and extracts into SQLite) while ClickHouse is down; the API answers with a
/// store error until it is up.
struct LazyClickHouse {
    cfg: kb_clickhouse::ClickHouseConfig,
    store: std::sync::Mutex<Option<Arc<kb_clickhouse::ClickHouseStore>>>,
}

impl LazyClickHouse {
    fn get(&self) -> Result<Arc<kb_clickhouse::ClickHouseStore>, kb_pipeline::ports::StoreError> {
        let mut slot = match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(kb_clickhouse::ClickHouseStore::open(&self.cfg)?);
        *slot = Some(s.clone());
        Ok(s)
    }
}

impl CostReader for LazyClickHouse {
    fn costs(
        &self,
        q: &kb_pipeline::ports::CostQuery,
    ) -> Result<Vec<kb_pipeline::ports::CostRow>, kb_pipeline::ports::StoreError> {
        self.get()?.costs(q)
    }

    fn clusters(&self) -> Result<Vec<(String, i64)>, kb_pipeline::ports::StoreError> {
        self.get()?.clusters()
    }

    fn reconciliations(
        &self,
        cluster: &str,
        range: kb_core::Window,
    ) -> Result<Vec<kb_pipeline::ports::Reconciliation>, kb_pipeline::ports::StoreError> {
        self.get()?.reconciliations(cluster, range)
    }

    fn pod_labels(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        range: kb_core::Window,
    ) -> Result<Vec<kb_pipeline::ports::PodLabels>, kb_pipeline::ports::StoreError> {
        self.get()?.pod_labels(cluster, namespace, range)
    }
}

impl InsightReader for LazyClickHouse {
    fn summaries(
        &self,
        q: &kb_pipeline::insights::SummaryQuery,
    ) -> Result<Vec<kb_pipeline::insights::StoredSummary>, kb_pipeline::ports::StoreError> {
        self.get()?.summaries(q)
    }

    fn anomalies(
        &self,
        cluster: Option<&str>,
        range: kb_core::Window,
    ) -> Result<Vec<kb_analytics::anomaly::Anomaly>, kb_pipeline::ports::StoreError> {
        self.get()?.anomalies(cluster, range)
    }

    fn forecasts(
        &self,
        cluster: &str,
    ) -> Result<Vec<kb_pipeline::insights::ForecastRow>, kb_pipeline::ports::StoreError> {
        self.get()?.forecasts(cluster)
    }

    fn budgets(
        &self,
        cluster: &str,
    ) -> Result<Vec<kb_core::Budget>, kb_pipeline::ports::StoreError> {
        InsightReader::budgets(self.get()?.as_ref(), cluster)
    }

    fn savings(
        &self,
        cluster: &str,
    ) -> Result<Vec<kb_core::SavingsRecommendation>, kb_pipeline::ports::StoreError> {
        InsightReader::savings(self.get()?.as_ref(), cluster)
    }

    fn predictions(
        &self,
        cluster: &str,
    ) -> Result<Vec<kb_core::SpecCostPrediction>, kb_pipeline::ports::StoreError> {
        InsightReader::predictions(self.get()?.as_ref(), cluster)
    }
    fn recommendations(
        &self,
        cluster: &str,
    ) -> Result<Option<kb_pipeline::insights::RecommendationSet>, kb_pipeline::ports::StoreError>
    {
        InsightReader::recommendations(self.get()?.as_ref(), cluster)
    }
}

/// The API's state over the store `api.query_store` names (the embedded store by default).
fn api_state(
    cfg: &Config,
    store: &Arc<SqliteStore>,
    shutdown: &Shutdown,
) -> Result<kb_api::ApiState, Failure> {
    use crate::config::KeySource;
    let a = &cfg.api;
    let mut keys = Vec::new();
    for k in &a.keys {
        keys.push(kb_api::ApiKeyConfig {
            id: k.id.clone(),
            name: k.name.clone(),
            secret: match &k.secret {
                KeySource::Secret(src) => {
                    kb_api::KeySecret::Plain(kb_api::Secret::new(read_secret(src)?.expose()))
                }
                KeySource::Sha256(h) => kb_api::KeySecret::Sha256Hex(h.clone()),
            },
            scopes: k.scopes.clone(),
            clusters: k.clusters.clone(),
            rate_limit: k.rate_limit,
        });
    }
    let bootstrap = a
        .bootstrap_token
        .clone()
        .or_else(|| std::env::var("KUBECOST_BRIDGE_ADMIN_TOKEN").ok())
        .filter(|t| !t.trim().is_empty())
        .map(kb_api::Secret::new);
    let auth = kb_api::AuthConfig {
        enabled: a.auth_enabled,
        keys,
        bootstrap_admin: bootstrap,
        bootstrap_rate_limit: None,
        default_rate_limit: a.default_rate_limit,
        jwt: match &a.jwt {
            Some(j) => Some(jwt_auth(j, shutdown)?),
            None => None,
        },
    };
    let audit = match &a.audit_log {
        None => kb_api::AuditSink::disabled(),
        Some(None) => kb_api::AuditSink::new(Box::new(std::io::stdout()), 4096)
            .context("cannot start the audit log")
            .map_err(runtime)?,
        Some(Some(path)) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the audit log {}", path.display()))
                .map_err(Failure::Usage)?;
            kb_api::AuditSink::new(Box::new(f), 4096)
                .context("cannot start the audit log")
                .map_err(runtime)?
        }
    };
    // `api.query_store`: the embedded store, or the ClickHouse mirror (which the mirror
    // worker fills with the same windows, summaries, anomalies, forecasts and lists).
    let (costs, insights): (Arc<dyn CostReader>, Arc<dyn InsightReader>) = match a.query_store {
        crate::config::QueryStore::Sqlite => (store.clone(), store.clone()),
        crate::config::QueryStore::Clickhouse => {
            let ch = Arc::new(LazyClickHouse {
                cfg: crate::app::clickhouse_config(cfg)?,
                store: std::sync::Mutex::new(None),
            });
            tracing::info!(database = %cfg.clickhouse_settings.database, "the API reads ClickHouse");
            (ch.clone(), ch)
        }
    };
    let mut state = kb_api::ApiState::new(costs, insights, &auth, audit, kb_api::system_clock())
        .context("invalid api.auth")
        .map_err(Failure::Usage)?
        .with_limits(kb_api::Limits {
            request_timeout: a.request_timeout,
            cache_ttl: a.cache_ttl,
            ..kb_api::Limits::default()
        })
        .with_rules(cfg.aggregation.rules.clone())
        .with_budgets(cfg.budgets.clone())
        .with_alerts(Arc::new(crate::alert_reader::StoredAlerts(store.clone())));
    state.currency.clone_from(&a.currency);
    Ok(state)
}

/// The receiver's sink: spools like [`crate::realtime::SpoolSink`] and records remote_write
/// freshness per source (named by its cluster) when a batch is kept.
struct MeteredSink {
    inner: Arc<crate::realtime::SpoolSink>,
    metrics: kb_ops::Metrics,
}

impl kb_remote_write::SampleSink for MeteredSink {
    fn write(
        &self,
        cluster: &str,
        batch: &kb_remote_write::DecodedBatch,
    ) -> Result<(), kb_remote_write::SinkError> {
        self.inner.write(cluster, batch)?;
        self.metrics.set_last_success(
            cluster,
            "remote_write",
            chrono::Utc::now().timestamp() as f64,
        );
        Ok(())
    }
}

/// Counts every remote_write answer in `/metrics` by outcome; requests that did not
/// authenticate count under `source="unauthenticated"` (never a value the sender chose).
struct RwObserver(kb_ops::Metrics);

impl kb_remote_write::RequestObserver for RwObserver {
    fn observe(
        &self,
        source: Option<&str>,
        outcome: kb_remote_write::RequestOutcome,
        samples: u64,
    ) {
        use kb_ops::RemoteWriteOutcome as M;
        use kb_remote_write::RequestOutcome as R;
        let outcome = match outcome {
            R::Accepted => M::Accepted,
            R::Rejected => M::Rejected,
            R::Unauthorized => M::Unauthorized,
            R::TooLarge => M::TooLarge,
            R::Overloaded => M::Overloaded,
            R::Error => M::Error,
        };
        self.0
            .record_remote_write(source.unwrap_or("unauthenticated"), outcome, samples);
    }
}

impl Server {
    /// Serves plain HTTP on `listener` until `shutdown`, then waits for the receiver's worker.
    pub(crate) async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: Shutdown,
    ) -> Result<(), Failure> {
        self.serve_on(listener, None, shutdown).await
    }

    /// Serves on `listener`, with TLS when `tls` is given (`api.tls`), until `shutdown`: the
    /// listener stops accepting at once, requests in flight finish, then the receiver's worker
    /// hands its last batches to the spool.
    pub(crate) async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<rustls::ServerConfig>,
        shutdown: Shutdown,
    ) -> Result<(), Failure> {
        let Server {
            router, receiver, ..
        } = self;
        let sd = shutdown.clone();
        let served = match tls {
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { sd.wait().await })
                    .await
            }
            Some(cfg) => {
                let tls = crate::tls::TlsListener::start(listener, cfg, shutdown.clone())
                    .context("cannot start the tls listener")
                    .map_err(runtime)?;
                axum::serve(tls, router)
                    .with_graceful_shutdown(async move { sd.wait().await })
                    .await
            }
        };
        served.context("the api listener failed").map_err(runtime)?;
        if let Some(r) = receiver {
            r.join().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod readiness_tests {
    use super::*;

    #[test]
    fn a_stopped_task_or_shutdown_makes_the_bridge_unready() {
        let sd = Shutdown::new();
        let r = Readiness::new(sd.clone());
        assert_eq!(r.check(), Ok(()), "nothing registered yet: ready");
        let alloc = r.alive("allocation schedule");
        let assets = r.alive("asset schedule");
        assert_eq!(r.check(), Ok(()));
        drop(assets);
        assert_eq!(r.check(), Err("stopped: asset schedule".to_string()));
        drop(alloc);
        assert_eq!(
            r.check(),
            Err("stopped: allocation schedule, asset schedule".to_string())
        );
        let r = Readiness::new(sd.clone());
        let _a = r.alive("cleanup schedule");
        sd.trigger();
        assert_eq!(r.check(), Err("shutting down".to_string()));
    }
}
