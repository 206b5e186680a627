//! [`InfluxStore`]: the pipeline's [`CostStore`] over InfluxDB, and its window writer.

use std::collections::HashSet;

use kb_core::{
    Allocation, Asset, Budget, Resolution, SavingsRecommendation, SpecCostPrediction, Window,
};
use kb_pipeline::ports::{
    Checkpoint, CostStore, Endpoint, Reconciliation, StoreError, WindowStats, WindowWriter,
};

use crate::client::{InfluxClient, Series, gzip};
use crate::config::InfluxConfig;
use crate::error::Error;
use crate::line::{ALLOCATIONS, ASSETS, LineBatch, SYNC, ql_ident, ql_str, ql_time};

/// The InfluxDB store: see the crate docs for the schema and the write protocol.
#[derive(Debug, Clone)]
pub struct InfluxStore {
    client: InfluxClient,
    batch_lines: usize,
    gzip: bool,
    replace_windows: bool,
}

impl InfluxStore {
    /// Connects: creates the database when missing (v1, when configured), else checks that
    /// the server answers.
    pub fn open(cfg: &InfluxConfig) -> Result<InfluxStore, StoreError> {
        let client = InfluxClient::new(cfg)?;
        if client.is_v1() && cfg.create_database {
            client.create_database()?;
        } else {
            client.ping()?;
        }
        Ok(InfluxStore {
            client,
            batch_lines: cfg.batch_lines.max(1),
            gzip: cfg.gzip,
            replace_windows: cfg.replace_windows,
        })
    }

    /// The client the store writes with (to send spooled bodies, or live costs).
    pub fn client(&self) -> &InfluxClient {
        &self.client
    }

    /// Rows and `sum(total_cost)` of the cluster's `cost_allocations` points inside the window
    /// (InfluxQL `SELECT count(total_cost), sum(total_cost) ...`).
    pub fn window_total(&self, cluster: &str, window: Window) -> Result<WindowStats, StoreError> {
        Ok(self.stats(ALLOCATIONS, cluster, window)?)
    }

    /// `sum(total_cost)` of the cluster's `asset_costs` points inside the window.
    pub fn asset_total(&self, cluster: &str, window: Window) -> Result<f64, StoreError> {
        Ok(self.stats(ASSETS, cluster, window)?.total_cost)
    }

    fn stats(
        &self,
        measurement: &str,
        cluster: &str,
        window: Window,
    ) -> Result<WindowStats, Error> {
        let q = format!(
            "SELECT count(total_cost), sum(total_cost) FROM {} WHERE cluster = {} AND {}",
            ql_ident(measurement),
            ql_str(cluster),
            ql_time(window)
        );
        let series = self.client.query_inner("read window totals", &q, true)?;
        let mut stats = WindowStats {
            rows: 0,
            total_cost: 0.0,
        };
        if let Some(s) = series.first() {
            let row = s.values.first();
            let get = |name: &str| {
                s.column(name)
                    .and_then(|i| row.and_then(|r| r.get(i)))
                    .and_then(serde_json::Value::as_f64)
            };
            stats.rows = get("count").unwrap_or(0.0) as u64;
            stats.total_cost = get("sum").unwrap_or(0.0);
        }
        Ok(stats)
    }

    /// Every checkpoint of a cluster and endpoint, oldest window first.
    pub fn checkpoints(
        &self,
        cluster: &str,
        endpoint: Endpoint,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let q = format!(
            "SELECT window_end, resolution, synced_at, \"rows\", response_total_cost, null_fields, \
             state FROM {} WHERE cluster = {} AND endpoint = {}",
            ql_ident(SYNC),
            ql_str(cluster),
            ql_str(endpoint.as_str())
        );
        let series = self.client.query_inner("read checkpoints", &q, true)?;
        let mut out = Vec::new();
        for s in &series {
            for row in &s.values {
                let num = |name: &str| {
                    s.column(name)
                        .and_then(|i| row.get(i))
                        .and_then(serde_json::Value::as_f64)
                };
                let int = |name: &str| {
                    s.column(name)
                        .and_then(|i| row.get(i))
                        .and_then(serde_json::Value::as_i64)
                };
                let bad = || Error::Decode {
                    op: "read checkpoints".into(),
                    message: format!("bad checkpoint point {row:?}"),
                };
                let pending = s
                    .column("state")
                    .and_then(|i| row.get(i))
                    .and_then(|v| v.as_str())
                    == Some("pending");
                if pending {
                    continue;
                }
                let start = int("time").ok_or_else(bad)?;
                let end = int("window_end").ok_or_else(bad)?;
                let resolution = s
                    .column("resolution")
                    .and_then(|i| row.get(i))
                    .and_then(|v| v.as_str())
                    .and_then(Resolution::parse)
                    .ok_or_else(bad)?;
                out.push(Checkpoint {
                    cluster: cluster.to_string(),
                    endpoint,
                    window: Window::new(start, end).map_err(|_| bad())?,
                    resolution,
                    synced_at: int("synced_at").unwrap_or(0),
                    rows: int("rows").unwrap_or(0).max(0) as u64,
                    response_total_cost: num("response_total_cost").unwrap_or(0.0),
                    null_fields: int("null_fields").unwrap_or(0).max(0) as u64,
                });
            }
        }
        out.sort_by_key(|c| (c.window.start, c.window.end));
        Ok(out)
    }

    /// Compresses (when configured) a finished batch into a request body.
    fn seal(&self, batch: &LineBatch) -> Result<Vec<u8>, StoreError> {
        if self.gzip {
            gzip(batch.as_bytes())
        } else {
            Ok(batch.as_bytes().to_vec())
        }
    }

    /// True when a checkpoint or a pending marker of the cluster and endpoint overlaps the
    /// window, that is when the store may hold rows inside it. Checkpoints are looked for up
    /// to 31 days before the window (no window the extractor plans is longer).
    fn window_touched(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        window: Window,
    ) -> Result<bool, Error> {
        let q = format!(
            "SELECT window_end FROM {} WHERE cluster = {} AND endpoint = {} AND time >= {}s \
             AND time < {}s",
            ql_ident(SYNC),
            ql_str(cluster),
            ql_str(endpoint.as_str()),
            window.start - 31 * 86_400,
            window.end
        );
        let series = self.client.query_inner("read checkpoints", &q, true)?;
        Ok(series.iter().any(|s| {
            s.column("window_end").is_some_and(|i| {
                s.values.iter().any(|r| {
                    r.get(i)
                        .and_then(serde_json::Value::as_i64)
                        .is_none_or(|end| end > window.start)
                })
            })
        }))
    }

    /// The commit protocol shared by allocations and assets (see the crate docs): when
    /// replacing windows and the window may hold data, delete its checkpoints and rows; write
    /// the pending marker; send the rows; write the checkpoint last. Every body was accepted
    /// whole (InfluxDB answers 204 only when it stored every point), and no two rows share a
    /// series and timestamp (the writer checks), so the window now holds exactly the rows
    /// written: the stats are theirs.
    fn commit_window(
        &self,
        measurement: &str,
        checkpoint: &Checkpoint,
        bodies: Vec<Vec<u8>>,
        rows: u64,
        total: f64,
    ) -> Result<WindowStats, StoreError> {
        let cluster = checkpoint.cluster.as_str();
        let endpoint = checkpoint.endpoint;
        let window = checkpoint.window;
        if self.replace_windows {
            // Reads of a v2 bucket need a DBRP mapping: there, always delete.
            let touched = !self.client.is_v1() || self.window_touched(cluster, endpoint, window)?;
            if touched {
                // The checkpoints go first: a crash from here on leaves the window unsynced
                // (to be extracted again), never a checkpoint without its rows.
                self.client.delete_inner(
                    SYNC,
                    &[("cluster", cluster), ("endpoint", endpoint.as_str())],
                    Some(window),
                    None,
                )?;
                self.client.delete_inner(
                    measurement,
                    &[("cluster", cluster)],
                    Some(window),
                    None,
                )?;
            }
            let mut marker = LineBatch::new();
            marker.push_pending(checkpoint);
            self.client.send(marker.as_bytes())?;
        }
        self.client.send_all(bodies, self.gzip)?;
        let mut cp = LineBatch::new();
        cp.push_checkpoint(checkpoint);
        self.client.send(cp.as_bytes())?;
        Ok(WindowStats {
            rows,
            total_cost: total,
        })
    }

    /// How many points of `measurement` started at or before `before - duration` for each
    /// `window_duration` tag value, deleting them (used by [`CostStore::cleanup`]).
    fn cleanup_measurement(&self, measurement: &str, before: i64) -> Result<u64, Error> {
        let q = format!(
            "SHOW TAG VALUES FROM {} WITH KEY = \"window_duration\"",
            ql_ident(measurement)
        );
        let durations: Vec<String> = self
            .client
            .query_inner("cleanup", &q, true)?
            .iter()
            .flat_map(|s: &Series| {
                let i = s.column("value");
                s.values
                    .iter()
                    .filter_map(move |r| i.and_then(|i| r.get(i)).and_then(|v| v.as_str()))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut removed = 0;
        for d in durations {
            let Some(secs) = kb_core::window::parse_duration(&d) else {
                continue;
            };
            // A row's window ended by `before` when it started at or before `before - secs`.
            let bound = before - secs + 1;
            let q = format!(
                "SELECT count(total_cost) FROM {} WHERE window_duration = {} AND time < {bound}s",
                ql_ident(measurement),
                ql_str(&d)
            );
            let n = self
                .client
                .query_inner("cleanup", &q, true)?
                .first()
                .and_then(|s| {
                    let i = s.column("count")?;
                    s.values.first()?.get(i)?.as_f64()
                })
                .unwrap_or(0.0) as u64;
            if n > 0 {
                self.client.delete_inner(
                    measurement,
                    &[("window_duration", d.as_str())],
                    None,
                    Some(bound),
                )?;
                removed += n;
            }
        }
        Ok(removed)
    }
}

/// Refuses a checkpoint that does not belong to the write it is committed with.
fn check_checkpoint(
    cp: &Checkpoint,
    cluster: &str,
    endpoint: Endpoint,
    window: Window,
) -> Result<(), StoreError> {
    match cp.mismatch(cluster, endpoint, Some(window)) {
        Some(why) => Err(Error::Invalid(why).into()),
        None => Ok(()),
    }
}

/// Buffers one window's `cost_allocations` points as compressed request bodies and sends them
/// on commit (see the crate docs): dropping it sends nothing.
pub struct InfluxWindowWriter {
    store: InfluxStore,
    cluster: String,
    window: Window,
    batch: LineBatch,
    bodies: Vec<Vec<u8>>,
    rows: u64,
    total: f64,
    failed: Option<String>,
    /// Identities (series and timestamp) of the points written, to refuse two rows that
    /// InfluxDB would store as one.
    seen: HashSet<u64>,
}

impl std::fmt::Debug for InfluxWindowWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxWindowWriter")
            .field("cluster", &self.cluster)
            .field("window", &self.window)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl InfluxWindowWriter {
    fn fail(&mut self, message: String) -> StoreError {
        self.failed = Some(message.clone());
        Error::Invalid(message).into()
    }

    fn seal(&mut self) -> Result<(), StoreError> {
        if !self.batch.is_empty() {
            let body = self.store.seal(&self.batch)?;
            self.bodies.push(body);
            self.batch.clear();
        }
        Ok(())
    }
}

impl WindowWriter for InfluxWindowWriter {
    fn write(&mut self, rows: &[Allocation]) -> Result<(), StoreError> {
        if let Some(m) = &self.failed {
            return Err(Error::Invalid(format!("writer failed earlier: {m}")).into());
        }
        for a in rows {
            if !self.window.contains(&a.window) {
                let m = format!(
                    "{}: row {} of window {} lies outside the window {}",
                    self.cluster, a.name, a.window, self.window
                );
                return Err(self.fail(m));
            }
            let before = self.batch.lines();
            self.batch.push_allocation(&self.cluster, a);
            if self.batch.lines() > before {
                let id = self.batch.last_identity().unwrap_or_default();
                if !self.seen.insert(id) {
                    let m = format!(
                        "{}: row {} of window {} is written twice (same series and time)",
                        self.cluster, a.name, a.window
                    );
                    return Err(self.fail(m));
                }
            }
            self.rows += 1;
            self.total += a.total_cost;
            if self.batch.lines() >= self.store.batch_lines {
                self.seal()?;
            }
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>, checkpoint: &Checkpoint) -> Result<WindowStats, StoreError> {
        if let Some(m) = &self.failed {
            return Err(Error::Invalid(format!("cannot commit a failed writer: {m}")).into());
        }
        check_checkpoint(checkpoint, &self.cluster, Endpoint::Allocation, self.window)?;
        self.seal()?;
        let bodies = std::mem::take(&mut self.bodies);
        self.store
            .commit_window(ALLOCATIONS, checkpoint, bodies, self.rows, self.total)
    }
}

impl CostStore for InfluxStore {
    fn begin_allocations(
        &self,
        cluster: &str,
        window: Window,
        _resolution: Resolution,
    ) -> Result<Box<dyn WindowWriter>, StoreError> {
        Ok(Box::new(InfluxWindowWriter {
            store: self.clone(),
            cluster: cluster.to_string(),
            window,
            batch: LineBatch::with_capacity(self.batch_lines.min(20_000) * 600),
            bodies: Vec::new(),
            rows: 0,
            total: 0.0,
            failed: None,
            seen: HashSet::new(),
        }))
    }

    fn put_assets(
        &self,
        assets: &[Asset],
        checkpoint: &Checkpoint,
    ) -> Result<WindowStats, StoreError> {
        check_checkpoint(
            checkpoint,
            &checkpoint.cluster,
            Endpoint::Assets,
            checkpoint.window,
        )?;
        let mut bodies = Vec::new();
        let mut batch = LineBatch::new();
        let mut seen = HashSet::new();
        let mut total = 0.0;
        for a in assets {
            if !checkpoint.window.contains(&a.window) {
                return Err(Error::Invalid(format!(
                    "{}: asset {} of window {} lies outside the window {}",
                    checkpoint.cluster, a.key, a.window, checkpoint.window
                ))
                .into());
            }
            let before = batch.lines();
            batch.push_asset(&checkpoint.cluster, a);
            if batch.lines() > before && !seen.insert(batch.last_identity().unwrap_or_default()) {
                return Err(Error::Invalid(format!(
                    "{}: asset {} of window {} is written twice (same series and time)",
                    checkpoint.cluster, a.key, a.window
                ))
                .into());
            }
            total += a.total_cost;
            if batch.lines() >= self.batch_lines {
                bodies.push(self.seal(&batch)?);
                batch.clear();
            }
        }
        if !batch.is_empty() {
            bodies.push(self.seal(&batch)?);
        }
        self.commit_window(ASSETS, checkpoint, bodies, assets.len() as u64, total)
    }

    /// Budgets are not time series: the InfluxDB store keeps none (the SQLite store, the
    /// system of record, does). Accepted and ignored.
    fn put_budgets(
        &self,
        _cluster: &str,
        _budgets: &[Budget],
        _fetched_at: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Savings recommendations are not time series: accepted and ignored, like budgets.
    fn put_savings(
        &self,
        _cluster: &str,
        _recommendations: &[SavingsRecommendation],
        _fetched_at: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Spec-cost predictions are not time series: accepted and ignored, like budgets.
    fn put_predictions(
        &self,
        _cluster: &str,
        _predictions: &[SpecCostPrediction],
        _fetched_at: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn synced_windows(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        since: i64,
    ) -> Result<Vec<(Window, Resolution)>, StoreError> {
        Ok(self
            .checkpoints(cluster, endpoint)?
            .into_iter()
            .filter(|c| c.window.end > since)
            .map(|c| (c.window, c.resolution))
            .collect())
    }

    fn record_reconciliation(&self, r: &Reconciliation) -> Result<(), StoreError> {
        let mut b = LineBatch::new();
        b.push_reconciliation(r);
        self.client.send(b.as_bytes())
    }

    fn cleanup(&self, before: i64) -> Result<u64, StoreError> {
        let a = self.cleanup_measurement(ALLOCATIONS, before)?;
        let b = self.cleanup_measurement(ASSETS, before)?;
        Ok(a + b)
    }
}

impl InfluxStore {
    /// The recorded reconciliations of a cluster whose window starts inside `range`.
    pub fn reconciliations(
        &self,
        cluster: &str,
        range: Window,
    ) -> Result<Vec<Reconciliation>, StoreError> {
        let q = format!(
            "SELECT window_end, expected, stored, relative_error, checked_at FROM {} \
             WHERE cluster = {} AND {} GROUP BY endpoint",
            ql_ident(crate::line::RECONCILIATIONS),
            ql_str(cluster),
            ql_time(range)
        );
        let mut out = Vec::new();
        for s in self.client.query_inner("read reconciliations", &q, true)? {
            let endpoint = match s.tags.get("endpoint").map(String::as_str) {
                Some("allocation") => Endpoint::Allocation,
                Some("assets") => Endpoint::Assets,
                Some("budgets") => Endpoint::Budgets,
                Some("predictions") => Endpoint::Predictions,
                Some("savings") => Endpoint::Savings,
                _ => continue,
            };
            for row in &s.values {
                let num = |name: &str| {
                    s.column(name)
                        .and_then(|i| row.get(i))
                        .and_then(serde_json::Value::as_f64)
                };
                let int = |name: &str| {
                    s.column(name)
                        .and_then(|i| row.get(i))
                        .and_then(serde_json::Value::as_i64)
                };
                let (Some(start), Some(end)) = (int("time"), int("window_end")) else {
                    continue;
                };
                let Ok(window) = Window::new(start, end) else {
                    continue;
                };
                out.push(Reconciliation {
                    cluster: cluster.to_string(),
                    endpoint,
                    window,
                    expected: num("expected").unwrap_or(0.0),
                    stored: num("stored").unwrap_or(0.0),
                    relative_error: num("relative_error").unwrap_or(0.0),
                    checked_at: int("checked_at").unwrap_or(0),
                });
            }
        }
        out.sort_by_key(|r| (r.window.start, r.endpoint.as_str()));
        Ok(out)
    }
}
