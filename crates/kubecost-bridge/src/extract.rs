//! The extractor: plans the closed windows each cluster still lacks, pulls them from Kubecost,
//! streams them into the store, checkpoints, and reconciles.
//!
//! One window at a time, oldest first. Inside a window three things overlap: the HTTP body
//! arrives and is parsed (the client's task), parsed batches are inserted (a blocking writer
//! thread fed by a bounded channel), and Kubecost's own cluster total for the window is fetched
//! for reconciliation. A window's rows and its checkpoint are committed in one store
//! transaction, and only after the whole response arrived and parsed, so a crash, a kill -9, a
//! truncated body or a retry can neither lose nor duplicate anything: the window is simply
//! still unsynced and the next attempt (or run) replaces it.
//!
//! Failure policy, per window: connection errors, timeouts, truncated bodies, 408/429/5xx and
//! Kubecost's empty `data:[null]` for a closed window (kubecost/kubecost#3758) are retried with
//! backoff; malformed JSON and other 4xx are not retried in this run. Either way the window's
//! checkpoint does not advance and the error names cluster, endpoint and window.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kb_core::window::{HOUR, PlanParams, SyncedWindows, plan_windows};
use kb_core::{Allocation, Resolution, Window};
use kb_kubecost::{AllocationQuery, AssetQuery, Client};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint, Reconciliation, StoreError};
use kb_pipeline::retry::{RetryHint, RetryPolicy, Retryable, retry};
use kb_pipeline::shutdown::Shutdown;
use tokio::sync::mpsc;

/// One cluster to extract, with its client.
#[derive(Clone)]
pub(crate) struct Target {
    /// The bridge's name for the cluster.
    pub name: String,
    pub client: Client,
    /// Kubecost's id of the cluster, when the endpoint serves several.
    pub filter_cluster: Option<String>,
}

/// What the extractor needs besides its targets and store.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The allocation `aggregate` sent to Kubecost.
    pub aggregate: Vec<String>,
    /// The asset `aggregate` sent to Kubecost (empty: one row per asset).
    pub asset_aggregate: Vec<String>,
    pub hourly_retention: Duration,
    pub settle: Duration,
    pub retry: RetryPolicy,
    pub budgets: bool,
    pub savings: bool,
    /// Workload specs to price with the spec-cost prediction API.
    pub prediction_specs: Vec<PathBuf>,
    pub prediction_namespace: String,
}

/// Why one window could not be extracted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Kubecost(#[from] kb_kubecost::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kubecost returned no data (data:[null]) for a closed window")]
    NoData,
    #[error("store holds {stored} for the window but the response summed to {response}")]
    StoreMismatch { stored: f64, response: f64 },
    #[error("writer thread failed: {0}")]
    Join(String),
    #[error("could not read {path}: {error}")]
    Spec { path: String, error: String },
}

impl Retryable for Failure {
    fn retry_hint(&self) -> RetryHint {
        match self {
            Failure::Kubecost(e) => e.retry_hint(),
            Failure::Store(e) => e.retry_hint(),
            Failure::NoData => RetryHint::Retry { after: None },
            Failure::StoreMismatch { .. } | Failure::Join(_) | Failure::Spec { .. } => {
                RetryHint::Permanent
            }
        }
    }
}

/// A failed window, with everything needed to find it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cluster {cluster}: {endpoint} window {window} failed after {attempts} attempt(s): {source}"
)]
pub(crate) struct WindowError {
    pub cluster: String,
    pub endpoint: &'static str,
    pub window: Window,
    pub attempts: u32,
    #[source]
    pub source: Failure,
}

/// The outcome of one synced window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WindowReport {
    pub cluster: String,
    pub window: Window,
    pub resolution: Resolution,
    pub rows: u64,
    pub stored_total: f64,
    /// Kubecost's cluster-level total for the window.
    pub expected_total: f64,
    pub relative_error: f64,
    pub attempts: u32,
}

/// The outcome of a run over many windows.
#[derive(Debug, Default)]
pub(crate) struct RunReport {
    pub windows: Vec<WindowReport>,
    pub failures: Vec<WindowError>,
    /// Asset windows synced.
    pub asset_windows: u64,
    /// Non-window syncs (budgets, savings, predictions) that failed, as messages.
    pub other_failures: Vec<String>,
}

/// Receives progress events (a progress bar on a terminal, nothing otherwise).
pub(crate) trait Progress: Send + Sync {
    /// Called once with the number of windows planned.
    fn planned(&self, windows: u64);
    /// Called after each window, synced or failed.
    fn window_done(&self, cluster: &str, window: &Window, ok: bool);
}

/// A progress sink that ignores everything.
pub(crate) struct NoProgress;

impl Progress for NoProgress {
    fn planned(&self, _: u64) {}
    fn window_done(&self, _: &str, _: &Window, _: bool) {}
}

/// The extractor.
pub(crate) struct Extractor {
    store: Arc<dyn CostStore>,
    targets: Vec<Target>,
    settings: Settings,
    shutdown: Shutdown,
    /// Told of every committed allocation window (mirrors); a full channel drops the notice
    /// (the mirror's catch-up finds the window later).
    on_commit: Vec<mpsc::Sender<Checkpoint>>,
    /// Self-monitoring (`/metrics`), when served.
    metrics: Option<kb_ops::Metrics>,
    /// Kubernetes API metadata merged into rows before they are stored (`kubernetes.enabled`).
    metadata: Option<Arc<crate::kube::Metadata>>,
}

struct Synced(HashSet<(Window, Resolution)>);

impl SyncedWindows for Synced {
    fn is_synced(&self, w: &Window, r: Resolution) -> bool {
        self.0.contains(&(*w, r))
    }
}

/// Rows per batch between the parser and the writer; the channel holds a few batches.
const CHANNEL_BATCHES: usize = 4;

impl Extractor {
    /// Makes an extractor.
    pub(crate) fn new(
        store: Arc<dyn CostStore>,
        targets: Vec<Target>,
        settings: Settings,
        shutdown: Shutdown,
    ) -> Extractor {
        Extractor {
            store,
            targets,
            settings,
            shutdown,
            on_commit: Vec::new(),
            metrics: None,
            metadata: None,
        }
    }

    /// Enriches allocation rows with `metadata` (see [`crate::kube`]).
    pub(crate) fn with_metadata(&mut self, metadata: Arc<crate::kube::Metadata>) {
        self.metadata = Some(metadata);
    }

    /// Records runs, freshness, reconciliation errors and rows in `metrics`.
    pub(crate) fn with_metrics(&mut self, metrics: kb_ops::Metrics) {
        self.metrics = Some(metrics);
    }

    /// Records the outcome of one window or list sync of an endpoint.
    fn record(&self, cluster: &str, endpoint: Endpoint, ok: bool, rows: u64) {
        let Some(m) = &self.metrics else {
            return;
        };
        let ep = endpoint.as_str();
        if ok {
            m.record_extraction(cluster, ep, kb_ops::ExtractionOutcome::Success);
            m.set_last_success(cluster, ep, chrono::Utc::now().timestamp() as f64);
            let table = match endpoint {
                Endpoint::Allocation => "allocations",
                Endpoint::Assets => "assets",
                Endpoint::Budgets => "budgets",
                Endpoint::Savings => "savings",
                Endpoint::Predictions => "predictions",
            };
            m.add_rows_written("sqlite", table, rows);
        } else {
            m.record_extraction(cluster, ep, kb_ops::ExtractionOutcome::Failure);
        }
    }

    /// Observes one timed Kubecost request in `kubecost_request_duration_seconds` (`code` is
    /// the HTTP status, or `error` when no status arrived) and returns its result.
    fn observed<T>(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        (result, elapsed): (Result<T, kb_kubecost::Error>, Duration),
    ) -> Result<T, kb_kubecost::Error> {
        if let Some(m) = &self.metrics {
            let status = match &result {
                Ok(_) => Some(200),
                Err(kb_kubecost::Error::Http { status, .. }) => Some(*status),
                // A JSON envelope's error arrives with a 200.
                Err(kb_kubecost::Error::Api { .. }) => Some(200),
                Err(_) => None,
            };
            m.observe_kubecost_request(cluster, endpoint.as_str(), status, elapsed);
        }
        result
    }

    /// Adds a receiver of committed allocation checkpoints.
    pub(crate) fn notify_commits(&mut self, tx: mpsc::Sender<Checkpoint>) {
        self.on_commit.push(tx);
    }

    /// Returns the cluster names this extractor serves.
    pub(crate) fn clusters(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Plans the unsynced allocation windows in `[from, until)` for the given clusters (all when
    /// `only` is `None`), oldest first.
    pub(crate) fn plan(
        &self,
        endpoint: Endpoint,
        from: i64,
        until: i64,
        only: Option<&str>,
        now: i64,
    ) -> Result<Vec<(String, Window, Resolution)>, StoreError> {
        let mut all = Vec::new();
        for t in &self.targets {
            if only.is_some_and(|o| o != t.name) {
                continue;
            }
            let synced = self
                .store
                .synced_windows(&t.name, endpoint, from - 2 * 86_400)?;
            let params = PlanParams {
                now,
                from,
                until,
                hourly_retention: secs(self.settings.hourly_retention),
                settle: secs(self.settings.settle),
            };
            let plan = plan_windows(params, &Synced(synced.into_iter().collect()));
            let plan: Vec<_> = match endpoint {
                // Assets are synced daily (the seed's `assets.window: "1d"`), closed days only.
                Endpoint::Assets => {
                    let mut days: Vec<Window> = plan
                        .iter()
                        .map(|(w, _)| {
                            let d = kb_core::window::floor_to(w.start, 86_400);
                            Window {
                                start: d,
                                end: d + 86_400,
                            }
                        })
                        .filter(|d| d.end <= now)
                        .collect();
                    days.dedup();
                    days.into_iter().map(|d| (d, Resolution::Day)).collect()
                }
                _ => plan,
            };
            all.extend(plan.into_iter().map(|(w, r)| (t.name.clone(), w, r)));
        }
        all.sort_by_key(|(c, w, _)| (w.start, c.clone()));
        Ok(all)
    }

    /// Extracts every planned window; failures are collected, not fatal.
    pub(crate) async fn sync_allocations(
        &self,
        plan: Vec<(String, Window, Resolution)>,
        progress: &dyn Progress,
    ) -> RunReport {
        let mut report = RunReport::default();
        progress.planned(plan.len() as u64);
        for (cluster, window, resolution) in plan {
            if self.shutdown.is_triggered() {
                break;
            }
            match self.extract_window(&cluster, window, resolution).await {
                Ok(r) => {
                    progress.window_done(&cluster, &window, true);
                    report.windows.push(r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "allocation window not synced");
                    progress.window_done(&cluster, &window, false);
                    report.failures.push(e);
                }
            }
        }
        report
    }

    /// Extracts one allocation window for one cluster, with retries.
    pub(crate) async fn extract_window(
        &self,
        cluster: &str,
        window: Window,
        resolution: Resolution,
    ) -> Result<WindowReport, WindowError> {
        let fail = |attempts, source| WindowError {
            cluster: cluster.to_string(),
            endpoint: Endpoint::Allocation.as_str(),
            window,
            attempts,
            source,
        };
        let Some(target) = self.target(cluster) else {
            return Err(fail(
                0,
                Failure::Store(StoreError::permanent("unknown cluster")),
            ));
        };
        let query = AllocationQuery {
            window,
            aggregate: self.settings.aggregate.clone(),
            step: None,
            include_idle: true,
            share_idle: false,
            filter_cluster: target.filter_cluster.clone(),
        };
        let result = retry(
            self.settings.retry,
            &self.shutdown,
            |attempt| {
                let query = query.clone();
                async move {
                    self.try_window(target, &query, resolution).await.map(|mut r| {
                        r.attempts = attempt;
                        r
                    })
                }
            },
            |e, attempt, delay| {
                tracing::info!(cluster, %window, attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying allocation window");
            },
        )
        .await;
        match &result {
            Ok(r) => {
                self.record(cluster, Endpoint::Allocation, true, r.rows);
                if let Some(m) = &self.metrics {
                    m.set_reconciliation_error(
                        cluster,
                        Endpoint::Allocation.as_str(),
                        r.relative_error,
                    );
                }
            }
            Err(_) => self.record(cluster, Endpoint::Allocation, false, 0),
        }
        match result {
            Ok(r) => {
                tracing::info!(
                    cluster,
                    %window,
                    rows = r.rows,
                    total_cost = r.stored_total,
                    relative_error = r.relative_error,
                    "allocation window synced"
                );
                Ok(r)
            }
            Err(e) => {
                let attempts = e.attempts();
                Err(fail(attempts, e.into_inner()))
            }
        }
    }

    async fn try_window(
        &self,
        target: &Target,
        query: &AllocationQuery,
        resolution: Resolution,
    ) -> Result<WindowReport, Failure> {
        let window = query.window;
        let (tx, mut rx) = mpsc::channel::<Vec<Allocation>>(CHANNEL_BATCHES);
        let store = self.store.clone();
        let cluster = target.name.clone();
        let meta = self.metadata.as_ref().map(|m| m.snapshot());
        // The writer runs on a blocking thread and owns the open transaction; it returns the
        // writer uncommitted so that the commit happens only once the response is known good.
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = store.begin_allocations(&cluster, window, resolution)?;
            while let Some(mut batch) = rx.blocking_recv() {
                for row in &mut batch {
                    // The bridge's cluster name is the identity the store and API use.
                    if row.cluster != cluster {
                        row.cluster.clone_from(&cluster);
                    }
                    if let Some(m) = &meta {
                        m.enrich(row);
                    }
                }
                w.write(&batch)?;
            }
            Ok::<_, StoreError>(w)
        });
        let (streamed, expected) = tokio::join!(
            timed(target.client.allocations(query, tx)),
            timed(target.client.allocation_total(query))
        );
        let (streamed, expected) = (
            self.observed(&target.name, Endpoint::Allocation, streamed),
            self.observed(&target.name, Endpoint::Allocation, expected),
        );
        let writer = writer.await.map_err(|e| Failure::Join(e.to_string()))?;
        // A store error explains a failed stream (the channel closed), so it is reported first;
        // an uncommitted writer dropped here rolls back.
        let (writer, summary) = match (writer, streamed) {
            (Err(e), _) => return Err(e.into()),
            (Ok(_), Err(e)) => return Err(e.into()),
            (Ok(w), Ok(s)) => (w, s),
        };
        let expected = expected?;
        if summary.rows == 0 && summary.null_sets > 0 {
            return Err(Failure::NoData);
        }
        let checkpoint = Checkpoint {
            cluster: target.name.clone(),
            endpoint: Endpoint::Allocation,
            window,
            resolution,
            synced_at: chrono::Utc::now().timestamp(),
            rows: summary.rows,
            response_total_cost: summary.total_cost,
            null_fields: summary.null_fields,
        };
        let committed = checkpoint.clone();
        let stats = tokio::task::spawn_blocking(move || writer.commit(&checkpoint))
            .await
            .map_err(|e| Failure::Join(e.to_string()))??;
        for tx in &self.on_commit {
            if tx.try_send(committed.clone()).is_err() {
                tracing::debug!(cluster = %target.name, %window, "mirror busy; its catch-up will copy the window");
            }
        }
        if !kb_core::cost::approx_eq(stats.total_cost, summary.total_cost, 1e-9, 1e-9) {
            // Committed, but the store does not hold what Kubecost sent: a bug worth an error.
            tracing::error!(cluster = %target.name, %window, stored = stats.total_cost, response = summary.total_cost, "stored total differs from the response");
            return Err(Failure::StoreMismatch {
                stored: stats.total_cost,
                response: summary.total_cost,
            });
        }
        let relative_error = kb_core::cost::relative_error(expected, stats.total_cost);
        let rec = Reconciliation {
            cluster: target.name.clone(),
            endpoint: Endpoint::Allocation,
            window,
            expected,
            stored: stats.total_cost,
            relative_error,
            checked_at: chrono::Utc::now().timestamp(),
        };
        if relative_error > 1e-6 {
            tracing::warn!(cluster = %target.name, %window, expected, stored = stats.total_cost, relative_error, "stored total differs from kubecost's cluster total");
        }
        self.store.record_reconciliation(&rec)?;
        Ok(WindowReport {
            cluster: target.name.clone(),
            window,
            resolution,
            rows: stats.rows,
            stored_total: stats.total_cost,
            expected_total: expected,
            relative_error,
            attempts: 1,
        })
    }

    /// Syncs every planned asset day.
    pub(crate) async fn sync_assets(
        &self,
        plan: Vec<(String, Window, Resolution)>,
        report: &mut RunReport,
    ) {
        for (cluster, window, resolution) in plan {
            if self.shutdown.is_triggered() {
                break;
            }
            let Some(target) = self.target(&cluster) else {
                continue;
            };
            let q = AssetQuery {
                window,
                aggregate: self.settings.asset_aggregate.clone(),
                accumulate: true,
                filter_cluster: target.filter_cluster.clone(),
            };
            let res = retry(
                self.settings.retry,
                &self.shutdown,
                |_| async {
                    let mut assets = self.observed(
                        &target.name,
                        Endpoint::Assets,
                        timed(target.client.assets(&q)).await,
                    )?;
                    for a in &mut assets {
                        a.cluster.clone_from(&target.name);
                    }
                    let total: f64 = assets.iter().map(|a| a.total_cost).sum();
                    let cp = Checkpoint {
                        cluster: target.name.clone(),
                        endpoint: Endpoint::Assets,
                        window,
                        resolution,
                        synced_at: chrono::Utc::now().timestamp(),
                        rows: assets.len() as u64,
                        response_total_cost: total,
                        null_fields: assets.iter().map(|a| u64::from(a.null_fields)).sum(),
                    };
                    let store = self.store.clone();
                    tokio::task::spawn_blocking(move || store.put_assets(&assets, &cp))
                        .await
                        .map_err(|e| Failure::Join(e.to_string()))?
                        .map_err(Failure::from)
                },
                |_, _, _| {},
            )
            .await;
            match res {
                Ok(stats) => {
                    self.record(&cluster, Endpoint::Assets, true, stats.rows);
                    report.asset_windows += 1;
                }
                Err(e) => {
                    self.record(&cluster, Endpoint::Assets, false, 0);
                    let attempts = e.attempts();
                    let err = WindowError {
                        cluster: cluster.clone(),
                        endpoint: Endpoint::Assets.as_str(),
                        window,
                        attempts,
                        source: e.into_inner(),
                    };
                    tracing::warn!(error = %err, "asset window not synced");
                    report.failures.push(err);
                }
            }
        }
    }

    /// Syncs budgets, savings recommendations and spec-cost predictions for every cluster.
    pub(crate) async fn sync_other(&self, report: &mut RunReport) {
        let now = chrono::Utc::now().timestamp();
        for t in &self.targets {
            if self.shutdown.is_triggered() {
                return;
            }
            if self.settings.budgets {
                let r = self
                    .with_retry(|| async { t.client.budgets().await.map_err(Failure::from) })
                    .await
                    .and_then(|b| {
                        self.store
                            .put_budgets(&t.name, &b, now)
                            .map_err(Failure::from)
                    });
                self.record(&t.name, Endpoint::Budgets, r.is_ok(), 0);
                if let Err(e) = r {
                    report
                        .other_failures
                        .push(format!("cluster {}: budgets: {e}", t.name));
                }
            }
            if self.settings.savings {
                let r = self.savings(t).await.and_then(|recs| {
                    self.store
                        .put_savings(&t.name, &recs, now)
                        .map_err(Failure::from)
                });
                self.record(&t.name, Endpoint::Savings, r.is_ok(), 0);
                if let Err(e) = r {
                    report
                        .other_failures
                        .push(format!("cluster {}: savings: {e}", t.name));
                }
            }
            if !self.settings.prediction_specs.is_empty() {
                let r = self.predictions(t).await.and_then(|p| {
                    self.store
                        .put_predictions(&t.name, &p, now)
                        .map_err(Failure::from)
                });
                self.record(&t.name, Endpoint::Predictions, r.is_ok(), 0);
                if let Err(e) = r {
                    report
                        .other_failures
                        .push(format!("cluster {}: predictions: {e}", t.name));
                }
            }
        }
        for f in &report.other_failures {
            tracing::warn!(error = %f, "sync failed");
        }
    }

    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        retry(self.settings.retry, &self.shutdown, |_| op(), |_, _, _| {})
            .await
            .map_err(|e| e.into_inner())
    }

    async fn savings(&self, t: &Target) -> Result<Vec<kb_core::SavingsRecommendation>, Failure> {
        let filter = t.filter_cluster.as_deref();
        let mut recs = self
            .with_retry(|| async { Ok(t.client.request_sizing("7d", filter).await?) })
            .await?;
        recs.extend(
            self.with_retry(|| async { Ok(t.client.cluster_sizing("7d").await?) })
                .await?,
        );
        recs.extend(
            self.with_retry(|| async { Ok(t.client.abandoned_workloads(7).await?) })
                .await?,
        );
        // A federated Kubecost answers for all its clusters: keep this cluster's.
        if let Some(id) = filter {
            recs.retain(|r| r.cluster.is_empty() || r.cluster == id);
        }
        for r in &mut recs {
            r.cluster.clone_from(&t.name);
        }
        Ok(recs)
    }

    async fn predictions(&self, t: &Target) -> Result<Vec<kb_core::SpecCostPrediction>, Failure> {
        let mut out = Vec::new();
        let cluster_id = t.filter_cluster.clone().unwrap_or_else(|| t.name.clone());
        for path in &self.settings.prediction_specs {
            let body = std::fs::read_to_string(path).map_err(|e| Failure::Spec {
                path: path.display().to_string(),
                error: e.to_string(),
            })?;
            let ns = self.settings.prediction_namespace.clone();
            let p = self
                .with_retry(|| async {
                    Ok(t.client.spec_cost(&cluster_id, &ns, body.clone()).await?)
                })
                .await?;
            out.extend(p);
        }
        Ok(out)
    }
}

/// Runs `f` and returns its output with how long it took.
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t0 = std::time::Instant::now();
    let out = f.await;
    (out, t0.elapsed())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// Returns the `[from, until)` range a regular run covers: the lookback up to now.
pub(crate) fn lookback_range(now: i64, lookback: Duration) -> (i64, i64) {
    (kb_core::window::floor_to(now - secs(lookback), HOUR), now)
}
