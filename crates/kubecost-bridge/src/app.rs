//! Wiring: builds clients, the store and the extractor from a [`Config`], and runs the commands.
//!
//! This is the only place that reads files, environment variables and secrets, and that knows
//! every adapter. Errors carry `anyhow` context; [`Failure::exit_code`] maps them to the CLI's
//! exit codes (0 ok, 1 runtime failure, 2 usage or config error).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use kb_core::{Resolution, Window};
use kb_kubecost::{Auth, Client, ClientConfig, Secret};
use kb_pipeline::ports::{CostReader, CostStore, Endpoint};
use kb_pipeline::shutdown::Shutdown;
use kb_store::SqliteStore;

use crate::config::{AuthConfig, Config, ConfigErrors, Flavor, SecretSource, effective_aggregate};
use crate::extract::{Extractor, Progress, RunReport, Settings, Target, lookback_range};

/// An error with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage or configuration: exit code 2.
    Usage(anyhow::Error),
    /// Anything that went wrong while running: exit code 1.
    Runtime(anyhow::Error),
}

impl Failure {
    /// Returns the process exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    /// Returns the error to print.
    pub(crate) fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Usage(e) | Failure::Runtime(e) => e,
        }
    }
}

impl From<ConfigErrors> for Failure {
    fn from(e: ConfigErrors) -> Self {
        Failure::Usage(e.into())
    }
}

/// Shorthand for runtime failures.
pub(crate) fn runtime(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Runtime(e.into())
}

/// Reads and validates a configuration file, with the process environment on top.
pub(crate) fn load_config(path: &Path) -> Result<Config, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))
        .map_err(Failure::Usage)?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    Ok(Config::from_yaml(&text, &env)?)
}

pub(crate) fn read_secret(src: &SecretSource) -> Result<Secret, Failure> {
    let value = match src {
        SecretSource::File(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read secret file {}", p.display()))
            .map_err(Failure::Usage)?,
        SecretSource::Env(name) => std::env::var(name)
            .with_context(|| format!("secret environment variable {name} is not set"))
            .map_err(Failure::Usage)?,
    };
    // Kubernetes Secret mounts often end in a newline that is not part of the secret.
    Ok(Secret::new(
        value.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

/// Builds one client per distinct endpoint (so clusters of one federated Kubecost share its
/// concurrency limit) and the extraction targets.
pub(crate) fn targets(cfg: &Config) -> Result<Vec<Target>, Failure> {
    let mut clients: Vec<(String, Client)> = Vec::new();
    let mut out = Vec::new();
    for c in &cfg.clusters {
        let key = format!(
            "{}|{:?}|{:?}|{:?}|{:?}",
            c.endpoint, c.flavor, c.auth, c.ca_file, c.client_cert
        );
        let client = match clients.iter().find(|(k, _)| *k == key) {
            Some((_, client)) => client.clone(),
            None => {
                let auth = match &c.auth {
                    AuthConfig::None => Auth::None,
                    AuthConfig::Bearer { token } => Auth::Bearer(read_secret(token)?),
                    AuthConfig::Basic { username, password } => Auth::Basic {
                        username: username.clone(),
                        password: read_secret(password)?,
                    },
                };
                let ca_cert_pem = match &c.ca_file {
                    Some(p) => Some(
                        std::fs::read(p)
                            .with_context(|| format!("cannot read CA file {}", p.display()))
                            .map_err(Failure::Usage)?,
                    ),
                    None => None,
                };
                let client_identity_pem = match &c.client_cert {
                    Some(t) => Some(client_identity(t)?),
                    None => None,
                };
                let client = Client::new(ClientConfig {
                    base_url: c.endpoint.clone(),
                    flavor: match c.flavor {
                        Flavor::Kubecost => kb_kubecost::Flavor::Kubecost,
                        Flavor::OpenCost => kb_kubecost::Flavor::OpenCost,
                    },
                    auth,
                    ca_cert_pem,
                    client_identity_pem,
                    connect_timeout: cfg.extract.connect_timeout,
                    request_timeout: cfg.extract.request_timeout,
                    max_concurrency: cfg.extract.max_concurrency,
                })
                .with_context(|| format!("cannot build the client for cluster {}", c.name))
                .map_err(Failure::Usage)?;
                clients.push((key, client.clone()));
                client
            }
        };
        out.push(Target {
            name: c.name.clone(),
            client,
            filter_cluster: c.kubecost_cluster_id.clone(),
        });
    }
    Ok(out)
}

/// Reads a client certificate and its key into one PEM secret (for mutual TLS).
fn client_identity(t: &crate::config::TlsFiles) -> Result<Secret, Failure> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .with_context(|| format!("cannot read {}", p.display()))
            .map_err(Failure::Usage)
    };
    let mut pem = read(&t.cert_file)?;
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(&read(&t.key_file)?);
    Ok(Secret::new(pem))
}

/// Opens the store the configuration names.
pub(crate) fn open_store(cfg: &Config) -> Result<Arc<SqliteStore>, Failure> {
    if let Some(dir) = cfg
        .sqlite_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", dir.display()))
            .map_err(runtime)?;
    }
    private_file(&cfg.sqlite_path, true)?;
    let store = SqliteStore::open(&cfg.sqlite_path)
        .with_context(|| format!("cannot open the store {}", cfg.sqlite_path.display()))
        .map_err(runtime)?;
    // SQLite gives its journal files the database's mode; check anyway.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = cfg.sqlite_path.clone().into_os_string();
        p.push(suffix);
        private_file(Path::new(&p), false)?;
    }
    Ok(Arc::new(store))
}

/// Makes `path` readable and writable by the owner only (0600): created so when `create` and
/// missing (SQLite then initialises the empty file), tightened with a warning when an existing
/// file is open to others. The store holds cost data of every workload: at rest it is private
/// to the bridge's user (encryption at rest is the volume's, see deploy/README.md).
fn private_file(path: &Path, create: bool) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::metadata(path) {
            Ok(m) => {
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(file = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "store file readable by others; setting 0600");
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .with_context(|| format!("cannot chmod 0600 {}", path.display()))
                        .map_err(runtime)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let made = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path);
                match made {
                    Ok(_) => {}
                    // Another process made it first: it is checked at its next start.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(runtime(
                            anyhow::Error::new(e)
                                .context(format!("cannot create {}", path.display())),
                        ));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(runtime(
                    anyhow::Error::new(e).context(format!("cannot stat {}", path.display())),
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, create);
    Ok(())
}

/// The mirrors the configuration names (ClickHouse when `cloudtuner.storage.clickhouse` is
/// set). Secrets are read now, so a missing secret is a usage error at start-up.
pub(crate) fn mirrors(cfg: &Config) -> Result<Vec<crate::mirror::Mirror>, Failure> {
    let mut out = Vec::new();
    if cfg.clickhouse.is_some() {
        let ch = clickhouse_config(cfg)?;
        out.push(crate::mirror::Mirror {
            name: "clickhouse",
            open: Arc::new(move || {
                let s = Arc::new(kb_clickhouse::ClickHouseStore::open(&ch)?);
                Ok(crate::mirror::Target {
                    cost: s.clone(),
                    insights: Some(s),
                })
            }),
        });
    }
    if let Some(ic) = influx_config(cfg)? {
        out.push(crate::mirror::Mirror {
            name: "influxdb",
            open: Arc::new(move || {
                Ok(crate::mirror::Target {
                    cost: Arc::new(kb_influx::InfluxStore::open(&ic)?),
                    insights: None,
                })
            }),
        });
    }
    Ok(out)
}

/// The ClickHouse store's settings from `cloudtuner.storage.clickhouse` and `clickhouse:`
/// (secrets read now, so a missing one is a usage error at start-up).
pub(crate) fn clickhouse_config(cfg: &Config) -> Result<kb_clickhouse::ClickHouseConfig, Failure> {
    let url = cfg
        .clickhouse
        .clone()
        .context("cloudtuner.storage.clickhouse is not set")
        .map_err(Failure::Usage)?;
    let s = &cfg.clickhouse_settings;
    let mut ch = kb_clickhouse::ClickHouseConfig::new(url);
    ch.database.clone_from(&s.database);
    ch.user.clone_from(&s.user);
    ch.cluster.clone_from(&s.cluster);
    if let Some(p) = &s.password {
        ch.password = Some(kb_clickhouse::Secret::new(read_secret(p)?.expose()));
    }
    ch.tls = read_tls(&s.tls, "clickhouse")?;
    Ok(ch)
}

/// Reads the TLS files of a store section (`clickhouse`, `influxdb`); a missing or unreadable
/// file, or one without the PEM it should hold, is a usage error at start-up.
pub(crate) fn read_tls(
    files: &crate::config::StoreTls,
    section: &str,
) -> Result<kb_pipeline::tls::ClientTls, Failure> {
    let read = |p: &Path, key: &str| {
        std::fs::read(p)
            .with_context(|| format!("{section}.{key}: cannot read {}", p.display()))
            .map_err(Failure::Usage)
    };
    let tls = kb_pipeline::tls::ClientTls {
        ca_pem: match &files.ca_file {
            Some(p) => Some(read(p, "ca_file")?),
            None => None,
        },
        client: match &files.client {
            Some((cert, key)) => Some((
                read(cert, "client_cert_file")?,
                kb_pipeline::secret::Secret::new(
                    String::from_utf8(read(key, "client_key_file")?).map_err(|_| {
                        Failure::Usage(anyhow::anyhow!(
                            "{section}.client_key_file: not a PEM text file"
                        ))
                    })?,
                ),
            )),
            None => None,
        },
    };
    tls.check()
        .map_err(|e| Failure::Usage(anyhow::anyhow!("{section}: {e}")))?;
    Ok(tls)
}

/// The InfluxDB store's settings from `cloudtuner.storage.influxdb` and `influxdb:`, or
/// `None` when InfluxDB is not configured (secrets and TLS files read now).
pub(crate) fn influx_config(cfg: &Config) -> Result<Option<kb_influx::InfluxConfig>, Failure> {
    let Some(url) = &cfg.influxdb else {
        return Ok(None);
    };
    let s = &cfg.influxdb_settings;
    let ic = match &s.v2 {
        Some((org, bucket, token)) => kb_influx::InfluxConfig::v2(
            url.clone(),
            org.clone(),
            bucket.clone(),
            kb_influx::Secret::new(read_secret(token)?.expose()),
        ),
        None => {
            let mut c = kb_influx::InfluxConfig::v1(url.clone());
            let password = match &s.password {
                Some(p) => Some(kb_influx::Secret::new(read_secret(p)?.expose())),
                None => None,
            };
            c.api = kb_influx::InfluxApi::V1 {
                database: s.database.clone(),
                retention_policy: None,
                username: s.username.clone(),
                password,
            };
            c
        }
    };
    let mut ic = ic;
    ic.tls = read_tls(&s.tls, "influxdb")?;
    Ok(Some(ic))
}

/// Copies what the mirrors lack once (after a CLI extraction); failures are warnings, since
/// the next `run` catches up.
pub(crate) async fn mirror_once(cfg: &Config, store: &Arc<SqliteStore>) -> Result<(), Failure> {
    let clusters: Vec<String> = cfg.clusters.iter().map(|c| c.name.clone()).collect();
    for m in mirrors(cfg)? {
        let (store, clusters) = (store.clone(), clusters.clone());
        let name = m.name;
        let r = tokio::task::spawn_blocking(move || {
            let st = (m.open)()?;
            crate::mirror::catch_up(&store, &st, &clusters, &Shutdown::new(), None)
        })
        .await
        .map_err(runtime)?;
        match r {
            Ok((copied, missing, _)) => {
                tracing::info!(store = name, copied, missing, "mirror caught up")
            }
            Err(e) => {
                tracing::warn!(store = name, error = %e, "mirror not updated; `run` will catch up")
            }
        }
    }
    Ok(())
}

/// Builds the extractor for a configuration.
pub(crate) fn extractor(
    cfg: &Config,
    store: Arc<SqliteStore>,
    shutdown: Shutdown,
) -> Result<Extractor, Failure> {
    let settings = Settings {
        aggregate: effective_aggregate(&cfg.allocation.aggregate),
        asset_aggregate: cfg.assets.aggregate.clone(),
        hourly_retention: cfg.extract.hourly_retention,
        settle: cfg.extract.settle,
        retry: cfg.extract.retry,
        budgets: cfg.budgets_enabled,
        savings: cfg.savings_enabled,
        prediction_specs: if cfg.predictions_enabled {
            cfg.prediction_specs.clone()
        } else {
            Vec::new()
        },
        prediction_namespace: cfg.prediction_namespace.clone(),
    };
    let store: Arc<dyn CostStore> = store;
    Ok(Extractor::new(store, targets(cfg)?, settings, shutdown))
}

/// Starts the Kubernetes metadata source when `kubernetes.enabled` and hands it to `ex`.
pub(crate) async fn enrich(
    cfg: &Config,
    ex: &mut Extractor,
    shutdown: &Shutdown,
) -> Result<(), Failure> {
    if let Some(k) = &cfg.kubernetes {
        let meta = crate::kube::start(k, shutdown.clone())
            .await
            .map_err(Failure::Usage)?;
        ex.with_metadata(meta);
    }
    Ok(())
}

/// Runs one catch-up pass: every unsynced allocation window and asset day in `[from, until)`,
/// then budgets, savings and predictions.
pub(crate) async fn sync_range(
    cfg: &Config,
    ex: &Extractor,
    from: i64,
    until: i64,
    only: Option<&str>,
    progress: &dyn Progress,
) -> Result<RunReport, Failure> {
    let now = chrono::Utc::now().timestamp();
    let mut report = RunReport::default();
    if cfg.allocation.enabled {
        let plan = ex
            .plan(Endpoint::Allocation, from, until, only, now)
            .map_err(runtime)?;
        report = ex.sync_allocations(plan, progress).await;
    }
    if cfg.assets.enabled {
        let plan = ex
            .plan(Endpoint::Assets, from, until, only, now)
            .map_err(runtime)?;
        ex.sync_assets(plan, &mut report).await;
    }
    ex.sync_other(&mut report).await;
    Ok(report)
}

/// Extracts the windows of `[window.start, window.end)` again, synced or not (the store replaces
/// them), at hourly grain within the hourly retention and daily before it.
pub(crate) async fn extract_exact(
    cfg: &Config,
    ex: &Extractor,
    window: Window,
    only: Option<&str>,
) -> Result<RunReport, Failure> {
    let now = chrono::Utc::now().timestamp();
    let cutoff = now - cfg.extract.hourly_retention.as_secs() as i64;
    let mut report = RunReport::default();
    for cluster in ex.clusters() {
        if only.is_some_and(|o| o != cluster) {
            continue;
        }
        let mut t = window.start;
        while t < window.end {
            let (w, r) = if t < cutoff && t % 86_400 == 0 && t + 86_400 <= window.end {
                (
                    Window {
                        start: t,
                        end: t + 86_400,
                    },
                    Resolution::Day,
                )
            } else {
                let end = (kb_core::window::floor_to(t, 3_600) + 3_600).min(window.end);
                (Window { start: t, end }, Resolution::Hour)
            };
            match ex.extract_window(&cluster, w, r).await {
                Ok(rep) => report.windows.push(rep),
                Err(e) => report.failures.push(e),
            }
            t = w.end;
        }
    }
    Ok(report)
}

/// Runs the aggregator over `[from, to)` for the configured clusters (or one) on a blocking
/// thread.
pub(crate) async fn run_aggregation(
    cfg: &Config,
    store: &Arc<SqliteStore>,
    from: i64,
    to: i64,
    only: Option<&str>,
) -> Result<crate::aggregate::AggregateReport, Failure> {
    let clusters: Vec<String> = cfg
        .clusters
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| only.is_none_or(|o| o == c))
        .collect();
    let (store, acfg) = (store.clone(), cfg.aggregation.clone());
    let now = chrono::Utc::now().timestamp();
    tokio::task::spawn_blocking(move || {
        crate::aggregate::aggregate(&store, &acfg, &clusters, from, to.min(now), now)
    })
    .await
    .map_err(runtime)?
    .map_err(Failure::Runtime)
}

/// Publishes an aggregation's 24 h increase ratios as `kubecost_bridge_cost_increase_ratio`.
pub(crate) fn publish_increases(m: &kb_ops::Metrics, r: &crate::aggregate::AggregateReport) {
    for (cluster, incs) in &r.increases {
        let ratios: Vec<(Option<&str>, f64)> =
            incs.iter().map(|(ns, v)| (ns.as_deref(), *v)).collect();
        m.set_cost_increases(cluster, &ratios);
    }
}

/// The bridge's self-monitoring for a configuration: every cluster x endpoint series at 0,
/// freshness from the store's newest checkpoints (so it survives restarts), the store's disk.
pub(crate) fn metrics(cfg: &Config, store: &SqliteStore) -> kb_ops::Metrics {
    let m = kb_ops::Metrics::new(env!("CARGO_PKG_VERSION"));
    let clusters: Vec<&str> = cfg.clusters.iter().map(|c| c.name.as_str()).collect();
    let mut endpoints = vec![Endpoint::Allocation];
    if cfg.assets.enabled {
        endpoints.push(Endpoint::Assets);
    }
    if cfg.budgets_enabled {
        endpoints.push(Endpoint::Budgets);
    }
    if cfg.savings_enabled {
        endpoints.push(Endpoint::Savings);
    }
    if !cfg.prediction_specs.is_empty() {
        endpoints.push(Endpoint::Predictions);
    }
    let names: Vec<&str> = endpoints.iter().map(|e| e.as_str()).collect();
    m.register_targets(&clusters, &names);
    for c in &clusters {
        for e in [Endpoint::Allocation, Endpoint::Assets] {
            if let Ok(cps) = store.checkpoints(c, e) {
                if let Some(t) = cps.iter().map(|cp| cp.synced_at).max() {
                    m.set_last_success(c, e.as_str(), t as f64);
                }
            }
        }
    }
    for s in &cfg.remote_write.sources {
        m.register_freshness(&s.cluster, "remote_write");
    }
    let dir = cfg
        .sqlite_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("."), Path::to_path_buf);
    m.register_disk("sqlite", "data", &dir);
    m
}

/// The `run` command: catch up once, then follow the schedules until shutdown.
pub(crate) async fn run(cfg: Config, shutdown: Shutdown) -> Result<(), Failure> {
    let store = open_store(&cfg)?;
    let metrics = metrics(&cfg, &store);
    let mut ex = extractor(&cfg, store.clone(), shutdown.clone())?;
    ex.with_metrics(metrics.clone());
    enrich(&cfg, &mut ex, &shutdown).await?;
    let mut mirror_tasks = Vec::new();
    for m in mirrors(&cfg)? {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        ex.notify_commits(tx);
        tracing::info!(store = m.name, "mirroring the embedded store");
        mirror_tasks.push(tokio::spawn(crate::mirror::run(
            store.clone(),
            m,
            cfg.clusters.iter().map(|c| c.name.clone()).collect(),
            rx,
            cfg.clickhouse_settings.mirror_interval,
            shutdown.clone(),
            Some(metrics.clone()),
        )));
    }
    let ex = Arc::new(ex);
    let cfg = Arc::new(cfg);
    tracing::info!(clusters = cfg.clusters.len(), store = %cfg.sqlite_path.display(), "starting");
    // The listener comes first, so health checks answer while the catch-up runs.
    let listener = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.api_listen))
        .map_err(runtime)?;
    let server = crate::server::build(&cfg, store.clone(), &shutdown, &metrics)?;
    tracing::info!(listen = %cfg.api_listen, tls = cfg.api.tls.is_some(), remote_write_sources = cfg.remote_write.sources.len(), scraped = cfg.realtime.scrape.len(), "serving");
    let tls = match &cfg.api.tls {
        Some(t) => Some(
            crate::tls::server_config(&t.cert_file, &t.key_file)
                .context("api.tls")
                .map_err(Failure::Usage)?,
        ),
        None => None,
    };
    let readiness = server.readiness.clone();
    let serving = tokio::spawn(server.serve_on(listener, tls, shutdown.clone()));
    let now = chrono::Utc::now().timestamp();
    let (from, until) = lookback_range(now, cfg.extract.lookback);
    let report = sync_range(&cfg, &ex, from, until, None, &crate::extract::NoProgress).await?;
    log_report("catch-up", &report);
    if cfg.aggregation.enabled && !shutdown.is_triggered() {
        match run_aggregation(&cfg, &store, from, until, None).await {
            Ok(r) => publish_increases(&metrics, &r),
            Err(e) => tracing::error!(error = %e.error(), "catch-up aggregation failed"),
        }
    }

    let alloc = {
        let (cfg, ex, sd) = (cfg.clone(), ex.clone(), shutdown.clone());
        let alive = readiness.alive("allocation schedule");
        tokio::spawn(async move {
            let _alive = alive;
            while cfg.allocation_schedule.wait_next(&sd).await.is_ok() {
                let now = chrono::Utc::now().timestamp();
                let (from, until) = lookback_range(now, cfg.extract.lookback);
                match ex.plan(Endpoint::Allocation, from, until, None, now) {
                    Ok(plan) => {
                        let r = ex.sync_allocations(plan, &crate::extract::NoProgress).await;
                        log_report("allocation sync", &r);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot plan allocation windows"),
                }
            }
        })
    };
    let assets = {
        let (cfg, ex, sd) = (cfg.clone(), ex.clone(), shutdown.clone());
        let alive = readiness.alive("asset schedule");
        tokio::spawn(async move {
            let _alive = alive;
            while cfg.asset_schedule.wait_next(&sd).await.is_ok() {
                let now = chrono::Utc::now().timestamp();
                let (from, until) = lookback_range(now, cfg.extract.lookback);
                let mut r = RunReport::default();
                match ex.plan(Endpoint::Assets, from, until, None, now) {
                    Ok(plan) => ex.sync_assets(plan, &mut r).await,
                    Err(e) => tracing::error!(error = %e, "cannot plan asset windows"),
                }
                ex.sync_other(&mut r).await;
                log_report("asset sync", &r);
            }
        })
    };
    let cleanup = {
        let (cfg, store, sd) = (cfg.clone(), store.clone(), shutdown.clone());
        let alive = readiness.alive("cleanup schedule");
        tokio::spawn(async move {
            let _alive = alive;
            while cfg.cleanup_schedule.wait_next(&sd).await.is_ok() {
                let before =
                    chrono::Utc::now().timestamp() - cfg.allocation_retention.as_secs() as i64;
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.cleanup(before)).await {
                    Ok(Ok(n)) => tracing::info!(rows = n, "cleanup done"),
                    Ok(Err(e)) => tracing::error!(error = %e, "cleanup failed"),
                    Err(e) => tracing::error!(error = %e, "cleanup task failed"),
                }
            }
        })
    };
    let aggregation = {
        let (cfg, store, sd, metrics) = (
            cfg.clone(),
            store.clone(),
            shutdown.clone(),
            metrics.clone(),
        );
        let alive = cfg
            .aggregation
            .enabled
            .then(|| readiness.alive("aggregation schedule"));
        tokio::spawn(async move {
            let _alive = alive;
            if !cfg.aggregation.enabled {
                return;
            }
            while cfg.aggregation_schedule.wait_next(&sd).await.is_ok() {
                let now = chrono::Utc::now().timestamp();
                let from = now - cfg.aggregation.lookback.as_secs() as i64;
                match run_aggregation(&cfg, &store, from, now, None).await {
                    Ok(r) => publish_increases(&metrics, &r),
                    Err(e) => tracing::error!(error = %e.error(), "aggregation failed"),
                }
            }
        })
    };
    shutdown.wait().await;
    // The listener stopped accepting when the signal fired; the schedules stop at their next
    // wait, after the window each one has in flight commits (or fails).
    tracing::info!("shutting down: finishing the windows in flight");
    for t in [alloc, assets, cleanup, aggregation]
        .into_iter()
        .chain(mirror_tasks)
    {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "task ended abnormally");
        }
    }
    let served = match serving.await {
        Ok(r) => r,
        Err(e) => Err(runtime(e)),
    };
    if served.is_ok() {
        tracing::info!("shut down cleanly");
    }
    served
}

/// Logs a run's outcome.
pub(crate) fn log_report(what: &str, r: &RunReport) {
    let max_err = r
        .windows
        .iter()
        .map(|w| w.relative_error)
        .fold(0.0, f64::max);
    tracing::info!(
        run = what,
        windows = r.windows.len(),
        asset_windows = r.asset_windows,
        failures = r.failures.len() + r.other_failures.len(),
        max_relative_error = max_err,
        "run finished"
    );
}

/// Totals per cluster over a range, from the read port (for the demo's summary).
pub(crate) fn cluster_totals(
    store: &SqliteStore,
    range: Window,
) -> Result<Vec<kb_pipeline::ports::CostRow>, Failure> {
    let q = kb_pipeline::ports::CostQuery {
        cluster: None,
        namespace: None,
        range,
        granularity: None,
        group_by: kb_pipeline::ports::GroupBy::Cluster,
        include_idle: true,
    };
    store.costs(&q).map_err(runtime)
}

/// What `import` stored.
#[derive(Debug)]
pub(crate) struct ImportReport {
    pub rows: u64,
    pub total_cost: f64,
}

/// The `import` command: stores a recorded allocation response (a file saved from Kubecost's
/// `/model/allocation` for one window) as that window of `cluster`, exactly as `extract` would
/// have: the same streaming parser, the same writer, one transaction with the checkpoint.
///
/// The file is parsed on a reader thread while this thread inserts (a bounded channel of a few
/// batches between them), so parsing and SQLite overlap and memory stays bounded whatever the
/// file's size. Rows of other Kubecost clusters are dropped when the cluster has a
/// `kubecost_cluster_id`; every stored row carries the bridge's name for the cluster.
pub(crate) fn import_file(
    cfg: &Config,
    store: &SqliteStore,
    cluster: &str,
    window: Window,
    file: &Path,
) -> Result<ImportReport, Failure> {
    let resolution = match window.end - window.start {
        kb_core::window::HOUR if window.start % kb_core::window::HOUR == 0 => Resolution::Hour,
        kb_core::window::DAY if window.start % kb_core::window::DAY == 0 => Resolution::Day,
        _ => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--window must be one whole UTC hour or day, got {window}"
            )));
        }
    };
    let filter = cfg
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.kubecost_cluster_id.clone());
    let reader = std::fs::File::open(file)
        .with_context(|| format!("cannot open {}", file.display()))
        .map_err(Failure::Usage)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<kb_core::Allocation>>(4);
    // Written batches go back to the parser, which overwrites their rows with the next ones:
    // the writer frees nothing and the parser allocates (almost) nothing per row.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<kb_core::Allocation>>();
    let parser = std::thread::Builder::new()
        .name("import-parse".into())
        .spawn(move || {
            // Read in the parser's own chunks: a BufReader would only add a copy.
            kb_kubecost::read_allocations_recycling(
                reader,
                window,
                filter,
                |batch| tx.send(batch).is_ok(),
                || done_rx.try_recv().ok(),
            )
        })
        .context("cannot start the parser thread")
        .map_err(runtime)?;
    let what = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "import {} into cluster {cluster} window {window}: {e}",
            file.display()
        )
    };
    // The closure owns the receiver, so a store error drops it and stops the parser.
    let written = (move || {
        let mut w = store.begin_allocations(cluster, window, resolution)?;
        for mut batch in rx {
            for row in &mut batch {
                if row.cluster != cluster {
                    row.cluster.clear();
                    row.cluster.push_str(cluster);
                }
            }
            w.write(&batch)?;
            // A parser that already finished has dropped its end: the batch is freed here.
            done_tx.send(batch).ok();
        }
        Ok::<_, kb_pipeline::ports::StoreError>(w)
    })();
    let parsed = parser
        .join()
        .map_err(|_| runtime(anyhow::anyhow!("the parser thread panicked")))?;
    // A store error explains a parser stopped by a dropped channel, so it comes first; an
    // uncommitted writer dropped here rolls back.
    let writer = written.map_err(|e| runtime(what(&e)))?;
    let summary = parsed.map_err(|e| runtime(what(&e)))?;
    let stats = writer
        .commit(&kb_pipeline::ports::Checkpoint {
            cluster: cluster.to_string(),
            endpoint: Endpoint::Allocation,
            window,
            resolution,
            synced_at: chrono::Utc::now().timestamp(),
            rows: summary.rows,
            response_total_cost: summary.total_cost,
            null_fields: summary.null_fields,
        })
        .map_err(|e| runtime(what(&e)))?;
    Ok(ImportReport {
        rows: stats.rows,
        total_cost: stats.total_cost,
    })
}
