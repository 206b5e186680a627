//! [`ClickHouseStore`]: the ports over ClickHouse's HTTP interface (see the crate docs for the
//! versioned-window scheme this code follows).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kb_core::{
    Allocation, Asset, Budget, MonthlyCost, Resolution, SavingsKind, SavingsRecommendation,
    SpecCostPrediction, Window,
};
use kb_pipeline::ports::{
    Checkpoint, CostQuery, CostReader, CostRow, CostStore, Endpoint, PodLabels, Reconciliation,
    StoreError, WindowStats, WindowWriter,
};

use crate::config::{ClickHouseConfig, is_identifier};
use crate::error::Error;
use crate::http::{Http, Rt};
use crate::query::{EFFICIENCY_WEIGHT, costs_sql, decode_costs, dt, lit, visible};
use crate::rowbinary::{self, DecodeError, Reader, put_f64, put_i64, put_str, put_u64};
use crate::rows::{
    ALLOCATION_COLS, ASSET_COLS, ListCtx, WriteCtx, budget_cols, column_list, encode,
    encode_prediction, prediction_cost_columns, prediction_head_cols, savings_cols, slot_of,
};
use crate::schema::{Layout, SCHEMA_VERSION};

/// The ClickHouse store. Cheap to share: window writers hold a reference to the same client.
pub struct ClickHouseStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    // Declared first so pending requests stop before the client is dropped.
    rt: Rt,
    http: Http,
    pub(crate) layout: Layout,
    pub(crate) batch_rows: usize,
    mutation_timeout: Duration,
    last_version: AtomicU64,
    pub(crate) janitor: Arc<Janitor>,
}

/// How long the janitor collects deletes before sending them.
const JANITOR_DELAY: Duration = Duration::from_millis(500);
/// Conditions per `ALTER TABLE ... DELETE` (keeps the statement far below `max_query_size`).
const JANITOR_CHUNK: usize = 200;

/// Deletes rows the visibility rule already hides (superseded versions, abandoned writes) in
/// the background, coalescing the conditions of many commits into one mutation per table:
/// a mutation rewrites data parts, so one per commit would be costly on a re-extraction.
/// Nothing depends on when (or whether) it runs; rows it misses stay invisible until the
/// retention cleanup removes them.
pub(crate) struct Janitor {
    runtime: tokio::runtime::Handle,
    http: Http,
    layout: Layout,
    queue: std::sync::Mutex<Vec<(&'static str, String)>>,
    scheduled: std::sync::atomic::AtomicBool,
}

impl Janitor {
    /// Queues `DELETE WHERE condition` on each table and makes sure a flush is scheduled.
    pub(crate) fn delete(self: &Arc<Self>, tables: &[&'static str], condition: &str) {
        {
            let mut q = match self.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            for t in tables {
                q.push((t, condition.to_string()));
            }
        }
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(JANITOR_DELAY).await;
            me.flush().await;
        });
    }

    async fn flush(&self) {
        // Cleared before draining: a delete queued from now on schedules another flush.
        self.scheduled.store(false, Ordering::Release);
        let items = {
            let mut q = match self.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            std::mem::take(&mut *q)
        };
        let mut by_table: std::collections::BTreeMap<&'static str, Vec<String>> =
            std::collections::BTreeMap::new();
        for (t, c) in items {
            by_table.entry(t).or_default().push(c);
        }
        for (table, conditions) in by_table {
            for chunk in conditions.chunks(JANITOR_CHUNK) {
                let sql = format!(
                    "{}DELETE WHERE {}",
                    self.layout.alter(table),
                    chunk
                        .iter()
                        .map(|c| format!("({c})"))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                );
                if let Err(e) = self.http.execute_write("delete hidden rows", &sql).await {
                    tracing::warn!(error = %e, table, "clickhouse: background delete failed");
                }
            }
        }
    }
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("http", &self.inner.http)
            .field("layout", &self.inner.layout)
            .finish_non_exhaustive()
    }
}

pub(crate) fn decode_err(op: &str) -> impl Fn(DecodeError) -> Error + '_ {
    move |e| Error::Decode {
        op: op.to_string(),
        message: e.0,
    }
}

fn endpoint_from_str(s: &str) -> Option<Endpoint> {
    Some(match s {
        "allocation" => Endpoint::Allocation,
        "assets" => Endpoint::Assets,
        "budgets" => Endpoint::Budgets,
        "predictions" => Endpoint::Predictions,
        "savings" => Endpoint::Savings,
        _ => return None,
    })
}

/// Checks that a window fits ClickHouse's `DateTime` (1970..2106).
fn check_window(what: &str, w: Window) -> Result<(), Error> {
    if rowbinary::datetime(w.start).is_none() || rowbinary::datetime(w.end).is_none() {
        return Err(Error::Invalid(format!(
            "{what} window {w} is outside the range clickhouse DateTime can hold (1970..2106)"
        )));
    }
    Ok(())
}

/// Refuses a checkpoint that does not belong to the write it is committed with.
fn check_checkpoint(
    cp: &Checkpoint,
    cluster: &str,
    endpoint: Endpoint,
    window: Option<Window>,
) -> Result<(), Error> {
    match cp.mismatch(cluster, endpoint, window) {
        Some(why) => Err(Error::Invalid(why)),
        None => Ok(()),
    }
}

/// The hour slots a window covers: `[slot_of(start), end)` in steps of an hour.
fn slots(w: Window) -> impl Iterator<Item = i64> {
    let mut s = slot_of(w.start);
    std::iter::from_fn(move || {
        if s < w.end {
            let out = s;
            s += 3600;
            Some(out)
        } else {
            None
        }
    })
}

impl Inner {
    /// Returns a new version: unique and increasing in this process, nanoseconds since the
    /// epoch so versions of successive processes keep increasing too.
    pub(crate) fn next_version(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut last = self.last_version.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.last_version.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    pub(crate) fn query(&self, op: &str, sql: String) -> Result<Vec<u8>, Error> {
        let http = self.http.clone();
        let o = op.to_string();
        self.rt
            .run(op, async move { http.execute(&o, &sql, true).await })?
    }

    fn write(&self, op: &str, sql: String) -> Result<(), Error> {
        let http = self.http.clone();
        let o = op.to_string();
        self.rt
            .run(op, async move { http.execute_write(&o, &sql).await })?
    }

    pub(crate) fn insert(
        &self,
        op: &str,
        table: &str,
        columns: &str,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        let http = self.http.clone();
        let o = op.to_string();
        let target = format!("{} ({columns})", self.layout.table(table));
        self.rt.run(
            op,
            async move { http.insert_rowbinary(&o, &target, data).await },
        )?
    }

    pub(crate) fn read_u64s(&self, op: &str, sql: String) -> Result<Vec<u64>, Error> {
        let body = self.query(op, sql)?;
        let mut r = Reader::new(&body);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(r.u64().map_err(decode_err(op))?);
        }
        Ok(out)
    }

    /// Row versions that own a slot of the window now (for `endpoint`, one cluster).
    fn owners(&self, cluster: &str, endpoint: &str, w: Window) -> Result<Vec<u64>, Error> {
        self.read_u64s(
            "read window owners",
            format!(
                "SELECT DISTINCT toUInt64(v_) FROM (SELECT argMax(row_version, commit_version) AS v_ \
                 FROM {} WHERE cluster = {} AND endpoint = {} AND slot >= {} AND slot < {} \
                 GROUP BY slot) FORMAT RowBinary",
                self.layout.table("sync_state"),
                lit(cluster),
                lit(endpoint),
                slot_of(w.start),
                w.end
            ),
        )
    }

    /// Inserts the checkpoint: one `sync_state` row per slot of its window, in one insert
    /// (one block, so it lands whole or not at all). This is the commit point of a write.
    fn insert_checkpoint(&self, cp: &Checkpoint, row_version: u64) -> Result<(), Error> {
        let commit_version = self.next_version();
        let mut data = Vec::new();
        for slot in slots(cp.window) {
            put_str(&mut data, &cp.cluster);
            put_str(&mut data, cp.endpoint.as_str());
            put_i64(&mut data, slot);
            put_i64(&mut data, cp.window.start);
            put_i64(&mut data, cp.window.end);
            put_str(&mut data, cp.resolution.as_str());
            put_i64(&mut data, cp.synced_at);
            put_u64(&mut data, cp.rows);
            put_f64(&mut data, cp.response_total_cost);
            put_u64(&mut data, cp.null_fields);
            put_u64(&mut data, row_version);
            put_u64(&mut data, commit_version);
        }
        self.insert(
            "write checkpoint",
            "sync_state",
            "cluster, endpoint, slot, window_start, window_end, resolution, synced_at, rows, \
             response_total_cost, null_fields, row_version, commit_version",
            data,
        )
    }

    /// Count and `sum(total_cost)` of the visible rows of `table` inside the window.
    fn window_stats(
        &self,
        table: &str,
        endpoint: &str,
        cluster: &str,
        w: Window,
    ) -> Result<WindowStats, Error> {
        let op = "read window totals";
        let body = self.query(
            op,
            format!(
                "SELECT count(), sum(total_cost) FROM {} WHERE cluster = {} AND window_start >= {} \
                 AND window_end <= {} AND {} FORMAT RowBinary",
                self.layout.table(table),
                lit(cluster),
                dt(w.start),
                dt(w.end),
                visible(&self.layout, endpoint, Some(cluster), w.start, w.end)
            ),
        )?;
        let mut r = Reader::new(&body);
        Ok(WindowStats {
            rows: r.u64().map_err(decode_err(op))?,
            total_cost: r.f64().map_err(decode_err(op))?,
        })
    }

    /// Deletes (in the background) the rows of superseded versions inside the window.
    fn drop_superseded(
        &self,
        tables: &[&'static str],
        cluster: &str,
        w: Window,
        old: &[u64],
        keep: u64,
    ) {
        let old: Vec<String> = old
            .iter()
            .filter(|v| **v != keep)
            .map(u64::to_string)
            .collect();
        if old.is_empty() {
            return;
        }
        self.janitor.delete(
            tables,
            &format!(
                "cluster = {} AND slot >= {} AND slot < {} AND version IN ({})",
                lit(cluster),
                slot_of(w.start),
                w.end,
                old.join(", ")
            ),
        );
    }

    /// Deletes (in the background) the rows of a write that was never committed.
    fn drop_version(&self, tables: &[&'static str], cluster: &str, version: u64) {
        self.janitor.delete(
            tables,
            &format!("cluster = {} AND version = {version}", lit(cluster)),
        );
    }

    /// Replaces a cluster's list (budgets, savings, predictions): rows with a new version,
    /// then the `snapshots` row that makes them the current list.
    pub(crate) fn put_list(
        &self,
        kind: &'static str,
        cluster: &str,
        fetched_at: i64,
        n: usize,
        columns: String,
        encode_row: impl Fn(&ListCtx, usize, &mut Vec<u8>),
    ) -> Result<(), Error> {
        let version = self.next_version();
        let mut ctx = ListCtx {
            cluster: cluster.to_string(),
            version,
            fetched_at,
            seq: 0,
        };
        let mut data = Vec::new();
        for i in 0..n {
            ctx.seq = u32::try_from(i).unwrap_or(u32::MAX);
            encode_row(&ctx, i, &mut data);
        }
        let op = format!("replace {kind}");
        if n > 0 {
            self.insert(&op, kind, &columns, data)?;
        }
        let mut snap = Vec::new();
        put_str(&mut snap, cluster);
        put_str(&mut snap, kind);
        put_u64(&mut snap, version);
        put_i64(&mut snap, fetched_at);
        put_u64(&mut snap, n as u64);
        self.insert(
            &op,
            "snapshots",
            "cluster, kind, version, fetched_at, rows",
            snap,
        )?;
        let older = self.read_u64s(
            &op,
            format!(
                "SELECT count() FROM {} WHERE cluster = {} AND version < {version} FORMAT RowBinary",
                self.layout.table(kind),
                lit(cluster)
            ),
        )?;
        if older.first().copied().unwrap_or(0) > 0 {
            self.janitor.delete(
                &[kind],
                &format!("cluster = {} AND version < {version}", lit(cluster)),
            );
        }
        Ok(())
    }

    /// The filter selecting the current list of a cluster.
    pub(crate) fn current_list(&self, kind: &str, cluster: &str) -> String {
        format!(
            "cluster = {c} AND version = (SELECT toUInt64(max(version)) FROM {snap} \
             WHERE cluster = {c} AND kind = {k})",
            c = lit(cluster),
            snap = self.layout.table("snapshots"),
            k = lit(kind)
        )
    }

    /// Waits until no mutation of `tables` is pending on the server the store talks to.
    fn wait_mutations(&self, op: &str, tables: &[&str]) -> Result<(), Error> {
        let names: Vec<String> = tables
            .iter()
            .map(|t| {
                let name = if self.layout.cluster.is_some() {
                    format!("{t}_local")
                } else {
                    (*t).to_string()
                };
                lit(&name)
            })
            .collect();
        let sql = format!(
            "SELECT count() FROM system.mutations WHERE database = {} AND table IN ({}) \
             AND is_done = 0 FORMAT RowBinary",
            lit(&self.layout.database),
            names.join(", ")
        );
        let started = Instant::now();
        loop {
            let pending = self.read_u64s(op, sql.clone())?;
            if pending.first().copied().unwrap_or(0) == 0 {
                return Ok(());
            }
            if started.elapsed() >= self.mutation_timeout {
                return Err(Error::MutationTimeout {
                    op: op.to_string(),
                    secs: self.mutation_timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl ClickHouseStore {
    /// Connects, creates the database and tables when missing, and migrates them forward.
    pub fn open(cfg: &ClickHouseConfig) -> Result<ClickHouseStore, StoreError> {
        Ok(Self::open_inner(cfg)?)
    }

    fn open_inner(cfg: &ClickHouseConfig) -> Result<ClickHouseStore, Error> {
        if !is_identifier(&cfg.database) {
            return Err(Error::Config(format!(
                "database name {:?} must be letters, digits, '_' or '-'",
                cfg.database
            )));
        }
        if let Some(c) = &cfg.cluster
            && !is_identifier(c)
        {
            return Err(Error::Config(format!(
                "cluster name {c:?} must be letters, digits, '_' or '-'"
            )));
        }
        if cfg.batch_rows == 0 {
            return Err(Error::Config("batch_rows must be at least 1".into()));
        }
        let http = Http::new(cfg)?;
        let layout = Layout {
            database: cfg.database.clone(),
            cluster: cfg.cluster.clone(),
        };
        let rt = Rt::new()?;
        let inner = Inner {
            janitor: Arc::new(Janitor {
                runtime: rt.handle()?,
                http: http.clone(),
                layout: layout.clone(),
                queue: std::sync::Mutex::new(Vec::new()),
                scheduled: std::sync::atomic::AtomicBool::new(false),
            }),
            rt,
            http,
            layout,
            batch_rows: cfg.batch_rows,
            mutation_timeout: cfg.mutation_timeout,
            last_version: AtomicU64::new(0),
        };
        let store = ClickHouseStore {
            inner: Arc::new(inner),
        };
        store.migrate()?;
        store.seed_versions()?;
        Ok(store)
    }

    /// Starts this process's versions above every version already committed, so a clock that
    /// stepped back since the last run cannot make a new commit lose to an older one.
    fn seed_versions(&self) -> Result<(), Error> {
        let layout = &self.inner.layout;
        let seen = self.inner.read_u64s(
            "read the newest version",
            format!(
                "SELECT toUInt64(max(commit_version)) FROM {} \
                 UNION ALL SELECT toUInt64(max(version)) FROM {} \
                 UNION ALL SELECT toUInt64(max(version)) FROM {} \
                 UNION ALL SELECT toUInt64(max(commit_version)) FROM {} \
                 UNION ALL SELECT toUInt64(max(version)) FROM {} FORMAT RowBinary",
                layout.table("sync_state"),
                layout.table("snapshots"),
                layout.table("reconciliations"),
                layout.table("insight_commits"),
                layout.table("mirror_marks"),
            ),
        )?;
        let newest = seen.into_iter().max().unwrap_or(0);
        self.inner.last_version.fetch_max(newest, Ordering::Relaxed);
        Ok(())
    }

    fn migrate(&self) -> Result<(), Error> {
        let inner = &self.inner;
        for sql in inner.layout.bootstrap() {
            let http = inner.http.clone();
            inner.rt.run("create database", async move {
                http.execute("create database", &sql, false).await
            })??;
        }
        let current = self.schema_version_inner()?;
        if current > SCHEMA_VERSION {
            return Err(Error::Schema(format!(
                "database {} has schema version {current}, newer than this build's {SCHEMA_VERSION}",
                inner.layout.database
            )));
        }
        for version in current + 1..=SCHEMA_VERSION {
            for sql in inner.layout.migration(version) {
                inner.query(&format!("migrate to schema version {version}"), sql)?;
            }
            let mut row = Vec::new();
            rowbinary::put_u32(&mut row, version);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            rowbinary::put_u32(&mut row, u32::try_from(now).unwrap_or(u32::MAX));
            inner.insert(
                "record schema version",
                "schema_version",
                "version, applied_at",
                row,
            )?;
            tracing::info!(version, database = %inner.layout.database, "clickhouse schema migrated");
        }
        Ok(())
    }

    fn schema_version_inner(&self) -> Result<u32, Error> {
        let op = "read schema version";
        let body = self.inner.query(
            op,
            format!(
                "SELECT toUInt32(max(version)) FROM {} FORMAT RowBinary",
                self.inner.layout.table("schema_version")
            ),
        )?;
        Reader::new(&body).u32().map_err(decode_err(op))
    }

    /// Returns the schema version of the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self.schema_version_inner()?)
    }

    /// Returns the row count and `sum(total_cost)` of the cluster's visible allocation rows
    /// inside the window.
    pub fn window_total(&self, cluster: &str, window: Window) -> Result<WindowStats, StoreError> {
        Ok(self
            .inner
            .window_stats("allocations", "allocation", cluster, window)?)
    }

    /// Returns `sum(total_cost)` of the cluster's visible assets inside the window.
    pub fn asset_total(&self, cluster: &str, window: Window) -> Result<f64, StoreError> {
        Ok(self
            .inner
            .window_stats("assets", "assets", cluster, window)?
            .total_cost)
    }

    /// Returns every live checkpoint of a cluster and endpoint, oldest window first.
    pub fn checkpoints(
        &self,
        cluster: &str,
        endpoint: Endpoint,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(self.checkpoints_since(cluster, endpoint, i64::MIN)?)
    }

    fn checkpoints_since(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        since: i64,
    ) -> Result<Vec<Checkpoint>, Error> {
        let op = "read checkpoints";
        let body = self.inner.query(
            op,
            format!(
                "SELECT ws_, we_, res_, at_, n_, tot_, nul_ FROM (SELECT \
                 argMax(window_start, commit_version) AS ws_, \
                 argMax(window_end, commit_version) AS we_, \
                 argMax(resolution, commit_version) AS res_, \
                 argMax(synced_at, commit_version) AS at_, \
                 argMax(rows, commit_version) AS n_, \
                 argMax(response_total_cost, commit_version) AS tot_, \
                 argMax(null_fields, commit_version) AS nul_, \
                 argMax(row_version, commit_version) AS rv_ \
                 FROM {} WHERE cluster = {} AND endpoint = {} GROUP BY slot) \
                 WHERE we_ > {since} \
                 GROUP BY rv_, ws_, we_, res_, at_, n_, tot_, nul_ ORDER BY ws_, we_, rv_ \
                 FORMAT RowBinary",
                self.inner.layout.table("sync_state"),
                lit(cluster),
                lit(endpoint.as_str()),
            ),
        )?;
        let mut r = Reader::new(&body);
        let mut out = Vec::new();
        let d = decode_err(op);
        while !r.is_empty() {
            let start = r.i64().map_err(&d)?;
            let end = r.i64().map_err(&d)?;
            let res = r.string().map_err(&d)?;
            let resolution = Resolution::parse(&res).ok_or_else(|| Error::Decode {
                op: op.into(),
                message: format!("unknown resolution {res:?}"),
            })?;
            out.push(Checkpoint {
                cluster: cluster.to_string(),
                endpoint,
                window: Window { start, end },
                resolution,
                synced_at: r.i64().map_err(&d)?,
                rows: r.u64().map_err(&d)?,
                response_total_cost: r.f64().map_err(&d)?,
                null_fields: r.u64().map_err(&d)?,
            });
        }
        Ok(out)
    }

    /// Returns the budgets stored for a cluster, in the order they were put.
    pub fn budgets(&self, cluster: &str) -> Result<Vec<Budget>, StoreError> {
        let op = "read budgets";
        let inner = &self.inner;
        let body = inner.query(
            op,
            format!(
                "SELECT budget_id, name, budget_type, values_json, budget_interval, interval_day, \
                 spend_limit, current_spend, window_start, window_end FROM {} WHERE {} \
                 ORDER BY seq FORMAT RowBinary",
                inner.layout.table("budgets"),
                inner.current_list("budgets", cluster)
            ),
        )?;
        let mut r = Reader::new(&body);
        let d = decode_err(op);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(Budget {
                id: r.string().map_err(&d)?,
                name: r.string().map_err(&d)?,
                budget_type: r.string().map_err(&d)?,
                values: parse_budget_values(&r.string().map_err(&d)?),
                interval: r.string().map_err(&d)?,
                interval_day: r.u32().map_err(&d)?,
                spend_limit: r.f64().map_err(&d)?,
                current_spend: r.f64().map_err(&d)?,
                window: Window {
                    start: r.i64().map_err(&d)?,
                    end: r.i64().map_err(&d)?,
                },
            });
        }
        Ok(out)
    }

    /// Returns the savings recommendations stored for a cluster, largest saving first.
    pub fn savings(&self, cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError> {
        let op = "read savings";
        let inner = &self.inner;
        let body = inner.query(
            op,
            format!(
                "SELECT kind, namespace, controller_kind, controller, target, monthly_savings, \
                 detail FROM {} WHERE {} ORDER BY monthly_savings DESC, seq FORMAT RowBinary",
                inner.layout.table("savings"),
                inner.current_list("savings", cluster)
            ),
        )?;
        let mut r = Reader::new(&body);
        let d = decode_err(op);
        let mut out = Vec::new();
        while !r.is_empty() {
            let kind = r.string().map_err(&d)?;
            let kind = match kind.as_str() {
                "request_sizing" => SavingsKind::RequestSizing,
                "cluster_sizing" => SavingsKind::ClusterSizing,
                "abandoned_workload" => SavingsKind::AbandonedWorkload,
                other => {
                    return Err(Error::Decode {
                        op: op.into(),
                        message: format!("unknown savings kind {other:?}"),
                    }
                    .into());
                }
            };
            out.push(SavingsRecommendation {
                kind,
                cluster: cluster.to_string(),
                namespace: r.string().map_err(&d)?,
                controller_kind: r.string().map_err(&d)?,
                controller: r.string().map_err(&d)?,
                target: r.string().map_err(&d)?,
                monthly_savings: r.f64().map_err(&d)?,
                detail: r.string().map_err(&d)?,
            });
        }
        Ok(out)
    }

    /// Returns the spec-cost predictions stored for a cluster, in the order they were put.
    pub fn predictions(&self, cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError> {
        let op = "read predictions";
        let inner = &self.inner;
        let body = inner.query(
            op,
            format!(
                "SELECT namespace, controller_kind, controller_name, {} FROM {} WHERE {} \
                 ORDER BY seq FORMAT RowBinary",
                prediction_cost_columns().join(", "),
                inner.layout.table("predictions"),
                inner.current_list("predictions", cluster)
            ),
        )?;
        let mut r = Reader::new(&body);
        let d = decode_err(op);
        let mut out = Vec::new();
        while !r.is_empty() {
            let namespace = r.string().map_err(&d)?;
            let controller_kind = r.string().map_err(&d)?;
            let controller_name = r.string().map_err(&d)?;
            let mut m = || -> Result<MonthlyCost, DecodeError> {
                Ok(MonthlyCost {
                    total_monthly_rate: r.f64()?,
                    cpu_monthly_rate: r.f64()?,
                    ram_monthly_rate: r.f64()?,
                    gpu_monthly_rate: r.f64()?,
                    monthly_cpu_core_hours: r.f64()?,
                    monthly_ram_byte_hours: r.f64()?,
                    monthly_gpu_hours: r.f64()?,
                })
            };
            let cost_before = m().map_err(&d)?;
            let cost_after = m().map_err(&d)?;
            let cost_change = m().map_err(&d)?;
            out.push(SpecCostPrediction {
                namespace,
                controller_kind,
                controller_name,
                cost_before,
                cost_after,
                cost_change,
            });
        }
        Ok(out)
    }

    /// Merges every table's parts (`OPTIMIZE TABLE ... FINAL`): not needed for correct reads,
    /// only to compact after a bulk load or to make superseded rows go away sooner.
    pub fn optimize(&self) -> Result<(), StoreError> {
        for t in crate::schema::tables() {
            let table = self.inner.layout.data_table(t.name);
            let on = self
                .inner
                .layout
                .cluster
                .as_ref()
                .map(|c| format!(" ON CLUSTER `{c}`"))
                .unwrap_or_default();
            self.inner.write(
                "optimize table",
                format!("OPTIMIZE TABLE {table}{on} FINAL"),
            )?;
        }
        Ok(())
    }
}

fn parse_budget_values(s: &str) -> Vec<(String, Vec<String>)> {
    // Written by `rows::budget_values_json` as `[[category, [values...]], ...]`.
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(s) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let serde_json::Value::Array(pair) = item else {
                return None;
            };
            let mut it = pair.into_iter();
            let key = it.next()?.as_str()?.to_string();
            let values = it
                .next()?
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            Some((key, values))
        })
        .collect()
}

/// The allocation writer of one window (see the crate docs for the protocol).
pub struct ClickHouseWindowWriter {
    inner: Arc<Inner>,
    ctx: WriteCtx,
    columns: String,
    buf: Vec<u8>,
    buffered: usize,
    /// The insert in flight (at most one: encoding the next batch overlaps sending this one).
    pending: Option<tokio::task::JoinHandle<Result<(), Error>>>,
    /// A batch was sent: rows of this version may exist on the server.
    sent: bool,
    /// The checkpoint insert was attempted: from here on the rows are never deleted on drop
    /// (the checkpoint may have landed even if its request failed).
    checkpoint_attempted: bool,
    failed: bool,
}

impl std::fmt::Debug for ClickHouseWindowWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseWindowWriter")
            .field("cluster", &self.ctx.cluster)
            .field("window", &self.ctx.window)
            .field("version", &self.ctx.version)
            .finish_non_exhaustive()
    }
}

impl ClickHouseWindowWriter {
    fn add_rows(&mut self, rows: &[Allocation]) -> Result<(), Error> {
        for a in rows {
            let w = if a.window == Window::default() {
                self.ctx.window
            } else {
                a.window
            };
            if !self.ctx.window.contains(&w) {
                return Err(Error::Invalid(format!(
                    "allocation row window {w} lies outside the window being written {}",
                    self.ctx.window
                )));
            }
            encode(ALLOCATION_COLS, &self.ctx, a, &mut self.buf);
            self.buffered += 1;
            if self.buffered >= self.inner.batch_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Waits for the insert in flight, if any.
    fn wait_pending(&mut self) -> Result<(), Error> {
        if let Some(h) = self.pending.take() {
            self.inner.rt.run("insert allocation rows", async move {
                match h.await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Runtime("insert allocation rows".into())),
                }
            })??;
        }
        Ok(())
    }

    /// Sends the buffered rows as one insert (after the previous insert finished).
    fn flush(&mut self) -> Result<(), Error> {
        if self.buffered == 0 {
            return Ok(());
        }
        self.wait_pending()?;
        let data = std::mem::take(&mut self.buf);
        self.buf = Vec::with_capacity(data.len());
        self.buffered = 0;
        let http = self.inner.http.clone();
        let target = format!(
            "{} ({})",
            self.inner.layout.table("allocations"),
            self.columns
        );
        self.sent = true;
        self.pending = Some(
            self.inner
                .rt
                .spawn_task("insert allocation rows", async move {
                    http.insert_rowbinary("insert allocation rows", &target, data)
                        .await
                })?,
        );
        Ok(())
    }

    fn commit_inner(&mut self, checkpoint: &Checkpoint) -> Result<WindowStats, Error> {
        if self.failed {
            return Err(Error::Invalid(
                "window writer failed earlier; nothing was committed".into(),
            ));
        }
        check_checkpoint(
            checkpoint,
            &self.ctx.cluster,
            Endpoint::Allocation,
            Some(self.ctx.window),
        )?;
        self.flush()?;
        self.wait_pending()?;
        let inner = Arc::clone(&self.inner);
        let (cluster, w, version) = (&self.ctx.cluster, self.ctx.window, self.ctx.version);
        let old = inner.owners(cluster, "allocation", w)?;
        if self.sent {
            inner.write(
                "write cost summaries",
                summaries_sql(&inner.layout, cluster, w, version),
            )?;
        }
        self.checkpoint_attempted = true;
        inner.insert_checkpoint(checkpoint, version)?;
        let stats = inner.window_stats("allocations", "allocation", cluster, w)?;
        inner.drop_superseded(
            &["allocations", "cost_summaries"],
            cluster,
            w,
            &old,
            version,
        );
        tracing::debug!(
            cluster = %cluster,
            window = %w,
            resolution = self.ctx.resolution,
            rows = stats.rows,
            "allocation window committed"
        );
        Ok(stats)
    }
}

/// `INSERT INTO cost_summaries SELECT ...`: the seed's per-namespace summary of one write's
/// rows, one row per row window and namespace, tagged with the write's version.
fn summaries_sql(layout: &Layout, cluster: &str, w: Window, version: u64) -> String {
    let d = "(toInt64(toUInt32(window_end)) - toInt64(toUInt32(window_start)))";
    let weight = EFFICIENCY_WEIGHT;
    format!(
        "INSERT INTO {summaries} (timestamp, cluster, namespace, window_duration, total_cost, \
         cpu_cost, memory_cost, network_cost, storage_cost, efficiency_score, gpu_cost, \
         load_balancer_cost, shared_cost, external_cost, idle_cost, rows, slot, version) \
         SELECT window_start, cluster, namespace, \
         multiIf({d} % 86400 = 0, concat(toString(intDiv({d}, 86400)), 'd'), \
         {d} % 3600 = 0, concat(toString(intDiv({d}, 3600)), 'h'), concat(toString({d}), 's')), \
         sum(total_cost), sum(cpu_cost + cpu_cost_adjustment), \
         sum(memory_cost + ram_cost_adjustment), sum(network_cost + network_cost_adjustment), \
         sum(storage_cost + pv_cost_adjustment), \
         if(sumIf({weight}, is_idle = 0) > 0, \
         sumIf(efficiency_score * {weight}, is_idle = 0) / sumIf({weight}, is_idle = 0), 0.), \
         sum(gpu_cost + gpu_cost_adjustment), \
         sum(load_balancer_cost + load_balancer_cost_adjustment), sum(shared_cost), \
         sum(external_cost), sumIf(total_cost, is_idle != 0), count(), any(slot), {version} \
         FROM {allocations} WHERE cluster = {c} AND version = {version} \
         AND window_start >= {ws} AND window_start < {we} \
         GROUP BY window_start, window_end, cluster, namespace",
        summaries = layout.table("cost_summaries"),
        allocations = layout.table("allocations"),
        c = lit(cluster),
        ws = dt(w.start),
        we = dt(w.end),
    )
}

impl WindowWriter for ClickHouseWindowWriter {
    fn write(&mut self, rows: &[Allocation]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::permanent(
                "clickhouse: window writer failed earlier; drop it and start the window again",
            ));
        }
        let r = self.add_rows(rows);
        if r.is_err() {
            self.failed = true;
        }
        Ok(r?)
    }

    fn commit(mut self: Box<Self>, checkpoint: &Checkpoint) -> Result<WindowStats, StoreError> {
        let r = self.commit_inner(checkpoint);
        if r.is_err() {
            self.failed = true;
        }
        Ok(r?)
    }
}

impl Drop for ClickHouseWindowWriter {
    fn drop(&mut self) {
        if self.checkpoint_attempted || !self.sent {
            return;
        }
        // Abandoned: the rows are invisible (no checkpoint names their version); queue their
        // deletion once the insert in flight, if any, has finished.
        let pending = self.pending.take();
        let janitor = Arc::clone(&self.inner.janitor);
        let condition = format!(
            "cluster = {} AND version = {}",
            lit(&self.ctx.cluster),
            self.ctx.version
        );
        let tables = ["allocations", "cost_summaries"];
        match pending {
            None => janitor.delete(&tables, &condition),
            Some(h) => {
                self.inner.janitor.runtime.spawn(async move {
                    h.await.ok();
                    janitor.delete(&tables, &condition);
                });
            }
        }
        tracing::debug!(cluster = %self.ctx.cluster, window = %self.ctx.window, "allocation window abandoned");
    }
}

impl CostStore for ClickHouseStore {
    fn begin_allocations(
        &self,
        cluster: &str,
        window: Window,
        resolution: Resolution,
    ) -> Result<Box<dyn WindowWriter>, StoreError> {
        check_window("allocation", window)?;
        let version = self.inner.next_version();
        Ok(Box::new(ClickHouseWindowWriter {
            inner: Arc::clone(&self.inner),
            ctx: WriteCtx {
                cluster: cluster.to_string(),
                version,
                window,
                resolution: resolution.as_str(),
            },
            columns: column_list(ALLOCATION_COLS),
            buf: Vec::new(),
            buffered: 0,
            pending: None,
            sent: false,
            checkpoint_attempted: false,
            failed: false,
        }))
    }

    fn put_assets(
        &self,
        assets: &[Asset],
        checkpoint: &Checkpoint,
    ) -> Result<WindowStats, StoreError> {
        let inner = &self.inner;
        check_checkpoint(checkpoint, &checkpoint.cluster, Endpoint::Assets, None)?;
        let window = checkpoint.window;
        check_window("asset", window)?;
        let cluster = &checkpoint.cluster;
        let ctx = WriteCtx {
            cluster: cluster.clone(),
            version: inner.next_version(),
            window,
            resolution: checkpoint.resolution.as_str(),
        };
        let columns = column_list(ASSET_COLS);
        let mut sent = false;
        let result = (|| -> Result<WindowStats, Error> {
            let mut data = Vec::new();
            let mut n = 0;
            for a in assets {
                let w = if a.window == Window::default() {
                    window
                } else {
                    a.window
                };
                if !window.contains(&w) {
                    return Err(Error::Invalid(format!(
                        "asset window {w} lies outside the window being written {window}"
                    )));
                }
                encode(ASSET_COLS, &ctx, a, &mut data);
                n += 1;
                if n >= inner.batch_rows {
                    sent = true;
                    inner.insert(
                        "insert asset rows",
                        "assets",
                        &columns,
                        std::mem::take(&mut data),
                    )?;
                    n = 0;
                }
            }
            if n > 0 {
                sent = true;
                inner.insert("insert asset rows", "assets", &columns, data)?;
            }
            let old = inner.owners(cluster, "assets", window)?;
            // The commit point: from here the rows are never deleted as abandoned.
            sent = false;
            inner.insert_checkpoint(checkpoint, ctx.version)?;
            let stats = inner.window_stats("assets", "assets", cluster, window)?;
            inner.drop_superseded(&["assets"], cluster, window, &old, ctx.version);
            Ok(stats)
        })();
        if result.is_err() && sent {
            inner.drop_version(&["assets"], cluster, ctx.version);
        }
        Ok(result?)
    }

    fn put_budgets(
        &self,
        cluster: &str,
        budgets: &[Budget],
        fetched_at: i64,
    ) -> Result<(), StoreError> {
        let cols = budget_cols();
        Ok(self.inner.put_list(
            "budgets",
            cluster,
            fetched_at,
            budgets.len(),
            column_list(&cols),
            |ctx, i, out| {
                if let Some(b) = budgets.get(i) {
                    encode(&cols, ctx, b, out);
                }
            },
        )?)
    }

    fn put_savings(
        &self,
        cluster: &str,
        recommendations: &[SavingsRecommendation],
        fetched_at: i64,
    ) -> Result<(), StoreError> {
        let cols = savings_cols();
        Ok(self.inner.put_list(
            "savings",
            cluster,
            fetched_at,
            recommendations.len(),
            column_list(&cols),
            |ctx, i, out| {
                if let Some(r) = recommendations.get(i) {
                    encode(&cols, ctx, r, out);
                }
            },
        )?)
    }

    fn put_predictions(
        &self,
        cluster: &str,
        predictions: &[SpecCostPrediction],
        fetched_at: i64,
    ) -> Result<(), StoreError> {
        let mut columns = column_list(&prediction_head_cols());
        for c in prediction_cost_columns() {
            columns.push_str(", ");
            columns.push_str(&c);
        }
        Ok(self.inner.put_list(
            "predictions",
            cluster,
            fetched_at,
            predictions.len(),
            columns,
            |ctx, i, out| {
                if let Some(p) = predictions.get(i) {
                    encode_prediction(ctx, p, out);
                }
            },
        )?)
    }

    fn synced_windows(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        since: i64,
    ) -> Result<Vec<(Window, Resolution)>, StoreError> {
        Ok(self
            .checkpoints_since(cluster, endpoint, since)?
            .into_iter()
            .map(|c| (c.window, c.resolution))
            .collect())
    }

    fn record_reconciliation(&self, r: &Reconciliation) -> Result<(), StoreError> {
        let mut data = Vec::new();
        put_str(&mut data, &r.cluster);
        put_str(&mut data, r.endpoint.as_str());
        put_i64(&mut data, r.window.start);
        put_i64(&mut data, r.window.end);
        put_f64(&mut data, r.expected);
        put_f64(&mut data, r.stored);
        put_f64(&mut data, r.relative_error);
        put_i64(&mut data, r.checked_at);
        put_u64(&mut data, self.inner.next_version());
        Ok(self.inner.insert(
            "record reconciliation",
            "reconciliations",
            "cluster, endpoint, window_start, window_end, expected, stored, relative_error, \
             checked_at, version",
            data,
        )?)
    }

    fn cleanup(&self, before: i64) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let op = "clean up old rows";
        let mut removed = 0u64;
        let mut mutated = Vec::new();
        for (table, endpoint) in [("allocations", "allocation"), ("assets", "assets")] {
            let t = inner.layout.table(table);
            let counts = inner.read_u64s(
                op,
                format!(
                    "SELECT count(), countIf({vis}) FROM {t} WHERE window_end <= {b} FORMAT RowBinary",
                    vis = visible(&inner.layout, endpoint, None, 0, before),
                    b = dt(before),
                ),
            )?;
            let (physical, live) = (
                counts.first().copied().unwrap_or(0),
                counts.get(1).copied().unwrap_or(0),
            );
            removed = removed.saturating_add(live);
            if physical > 0 {
                inner.write(
                    op,
                    format!(
                        "{}DELETE WHERE window_end <= {}",
                        inner.layout.alter(table),
                        dt(before)
                    ),
                )?;
                mutated.push(table);
            }
        }
        if !mutated.is_empty() {
            inner.wait_mutations(op, &mutated)?;
        }
        Ok(removed)
    }
}

/// What the bridge's data takes on the ClickHouse server it talks to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageUsage {
    /// Bytes of the active parts of the database's tables (`system.parts`; in cluster mode,
    /// this server's share).
    pub parts_bytes: u64,
    /// `(disk, used, total)` bytes of the server's disks (`system.disks`, ClickHouse 19.15 and
    /// later; empty on servers without that table, such as 18.16).
    pub disks: Vec<(String, u64, u64)>,
}

impl ClickHouseStore {
    /// Reads the database's parts size and, where the server has `system.disks`, its disks.
    pub fn storage_usage(&self) -> Result<StorageUsage, StoreError> {
        let inner = &self.inner;
        let op = "read storage usage";
        let body = inner.query(
            op,
            format!(
                "SELECT toUInt64(sum(bytes_on_disk)) FROM system.parts WHERE active AND database = {} \
                 FORMAT RowBinary",
                lit(&inner.layout.database)
            ),
        )?;
        let d = decode_err(op);
        let mut r = Reader::new(&body);
        let parts_bytes = if r.is_empty() {
            0
        } else {
            r.u64().map_err(&d)?
        };
        let mut disks = Vec::new();
        let has_disks = inner.query(
            op,
            "SELECT toUInt64(count()) FROM system.tables WHERE database = 'system' AND name = 'disks' \
             FORMAT RowBinary"
                .to_string(),
        )?;
        let mut r = Reader::new(&has_disks);
        if !r.is_empty() && r.u64().map_err(&d)? > 0 {
            let body = inner.query(
                op,
                "SELECT name, toUInt64(free_space), toUInt64(total_space) FROM system.disks \
                 ORDER BY name FORMAT RowBinary"
                    .to_string(),
            )?;
            let mut r = Reader::new(&body);
            while !r.is_empty() {
                let name = r.string().map_err(&d)?;
                let free = r.u64().map_err(&d)?;
                let total = r.u64().map_err(&d)?;
                disks.push((name, total.saturating_sub(free), total));
            }
        }
        Ok(StorageUsage { parts_bytes, disks })
    }
}

impl CostReader for ClickHouseStore {
    fn costs(&self, q: &CostQuery) -> Result<Vec<CostRow>, StoreError> {
        let op = "query costs";
        let body = self.inner.query(op, costs_sql(&self.inner.layout, q))?;
        Ok(decode_costs(&body, q).map_err(decode_err(op))?)
    }

    fn pod_labels(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        range: Window,
    ) -> Result<Vec<PodLabels>, StoreError> {
        let op = "read pod labels";
        let inner = &self.inner;
        let mut filters = vec![
            format!("cluster = {}", lit(cluster)),
            format!("window_start >= {}", dt(range.start)),
            format!("window_start < {}", dt(range.end)),
            "is_idle = 0".to_string(),
        ];
        if let Some(ns) = namespace {
            filters.push(format!("namespace = {}", lit(ns)));
        }
        filters.push(visible(
            &inner.layout,
            "allocation",
            Some(cluster),
            range.start,
            range.end,
        ));
        let body = inner.query(
            op,
            format!(
                "SELECT toString(namespace) AS ns_, toString(controller_kind) AS ck_, \
                 toString(controller) AS ct_, toString(pod) AS pd_, \
                 argMax(labels, window_start), argMax(annotations, window_start), \
                 argMax(namespace_labels, window_start) FROM {} WHERE {} \
                 GROUP BY ns_, ck_, ct_, pd_ ORDER BY ns_, ct_, ck_, pd_ FORMAT RowBinary",
                inner.layout.table("allocations"),
                filters.join(" AND "),
            ),
        )?;
        let mut r = Reader::new(&body);
        let d = decode_err(op);
        let labels = |json: String| -> Result<kb_core::model::Labels, Error> {
            serde_json::from_str::<std::collections::BTreeMap<String, String>>(&json)
                .map(|m| m.into_iter().collect())
                .map_err(|e| Error::Decode {
                    op: op.to_string(),
                    message: format!("stored labels are not a JSON object of strings: {e}"),
                })
        };
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(PodLabels {
                namespace: r.string().map_err(&d)?,
                controller_kind: r.string().map_err(&d)?,
                controller: r.string().map_err(&d)?,
                pod: r.string().map_err(&d)?,
                labels: labels(r.string().map_err(&d)?)?,
                annotations: labels(r.string().map_err(&d)?)?,
                namespace_labels: labels(r.string().map_err(&d)?)?,
            });
        }
        Ok(out)
    }

    fn clusters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let op = "list clusters";
        let inner = &self.inner;
        let body = inner.query(
            op,
            format!(
                "SELECT cluster, toInt64(max(if(endpoint = 'allocation', we_, 0))) FROM \
                 (SELECT cluster, endpoint, argMax(window_end, commit_version) AS we_ FROM {} \
                 GROUP BY cluster, endpoint, slot) GROUP BY cluster \
                 UNION ALL SELECT DISTINCT cluster, toInt64(0) FROM {} FORMAT RowBinary",
                inner.layout.table("sync_state"),
                inner.layout.table("snapshots"),
            ),
        )?;
        let mut r = Reader::new(&body);
        let d = decode_err(op);
        let mut out: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        while !r.is_empty() {
            let name = r.string().map_err(&d)?;
            let end = r.i64().map_err(&d)?;
            let e = out.entry(name).or_insert(0);
            *e = (*e).max(end);
        }
        Ok(out.into_iter().collect())
    }

    fn reconciliations(
        &self,
        cluster: &str,
        range: Window,
    ) -> Result<Vec<Reconciliation>, StoreError> {
        let op = "read reconciliations";
        let inner = &self.inner;
        let body = inner.query(
            op,
            format!(
                "SELECT endpoint, window_start, window_end, argMax(expected, version), \
                 argMax(stored, version), argMax(relative_error, version), \
                 argMax(checked_at, version) FROM {} WHERE cluster = {} AND window_start >= {} \
                 AND window_start < {} GROUP BY endpoint, window_start, window_end \
                 ORDER BY window_start, endpoint, window_end FORMAT RowBinary",
                inner.layout.table("reconciliations"),
                lit(cluster),
                range.start,
                range.end
            ),
        )?;
        let mut r = Reader::new(&body);
        let d = decode_err(op);
        let mut out = Vec::new();
        while !r.is_empty() {
            let ep = r.string().map_err(&d)?;
            let endpoint = endpoint_from_str(&ep).ok_or_else(|| Error::Decode {
                op: op.into(),
                message: format!("unknown endpoint {ep:?}"),
            })?;
            out.push(Reconciliation {
                cluster: cluster.to_string(),
                endpoint,
                window: Window {
                    start: r.i64().map_err(&d)?,
                    end: r.i64().map_err(&d)?,
                },
                expected: r.f64().map_err(&d)?,
                stored: r.f64().map_err(&d)?,
                relative_error: r.f64().map_err(&d)?,
                checked_at: r.i64().map_err(&d)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_the_window() {
        let w = Window {
            start: 7200,
            end: 7200 + 86_400,
        };
        let s: Vec<i64> = slots(w).collect();
        assert_eq!(s.len(), 24);
        assert_eq!(s[0], 7200);
        assert_eq!(s[23], 7200 + 23 * 3600);
        let odd: Vec<i64> = slots(Window {
            start: 5400,
            end: 9000,
        })
        .collect();
        assert_eq!(odd, vec![3600, 7200]);
    }

    #[test]
    fn summaries_are_tagged_with_the_write_version() {
        let layout = Layout {
            database: "db".into(),
            cluster: None,
        };
        let sql = summaries_sql(
            &layout,
            "c1",
            Window {
                start: 0,
                end: 3600,
            },
            42,
        );
        assert!(sql.starts_with("INSERT INTO `db`.cost_summaries (timestamp, cluster"));
        assert!(sql.contains("WHERE cluster = 'c1' AND version = 42"));
        assert!(sql.contains("any(slot), 42 FROM"));
    }
}
