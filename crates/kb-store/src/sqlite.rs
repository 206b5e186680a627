//! [`SqliteStore`]: the embedded store, implementing [`CostStore`] and [`CostReader`].
//!
//! Connections: one shared connection behind a mutex serves reads and the small writes
//! (assets, budgets, checkpoints, cleanup); every allocation window gets its own connection,
//! so a long window write never blocks readers (WAL: readers see the last commit).
//!
//! Window write protocol ([`CostStore::begin_allocations`]):
//! 1. open a connection and `BEGIN IMMEDIATE` (takes the write lock now, so the transaction
//!    can never fail later with a lock upgrade deadlock), remember the largest allocation rowid;
//! 2. [`WindowWriter::write`] inserts rows with one cached prepared statement; new rows get
//!    rowids above the remembered one (SQLite assigns `max(rowid) + 1`);
//! 3. [`WindowWriter::commit`] deletes the cluster's rows inside the window with a rowid at or
//!    below the remembered one (the old data, including hourly rows of a day being replaced by
//!    its daily window), deletes the allocation checkpoints inside the window, writes the new
//!    checkpoint, reads back the stored totals and commits.
//!
//! Dropping a writer without committing rolls back; a crash does the same through SQLite's
//! journal. Either way the previous data and checkpoints stay as they were.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use kb_core::{
    Allocation, Asset, Budget, Resolution, SavingsRecommendation, SpecCostPrediction, Window,
};
use kb_pipeline::ports::{
    Checkpoint, CostQuery, CostReader, CostRow, CostStore, Endpoint, PodLabels, Reconciliation,
    WindowStats, WindowWriter,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::dims::{Resolver, SharedDims};
use crate::error::{StoreError, db_err};
use crate::schema;

/// How long a connection waits for another connection's write lock before failing (retryable).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache per connection, in KiB (SQLite's negative `cache_size`).
const CACHE_KIB: i64 = 16 * 1024;

/// Row counts and size of a store, for summaries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// `(table, rows)` for every table of the schema.
    pub tables: Vec<(String, u64)>,
    /// Size of the main database file in bytes (page count × page size).
    pub database_bytes: u64,
    /// Size of the write-ahead log in bytes (0 when absent).
    pub wal_bytes: u64,
}

impl StoreStats {
    /// Returns the row count of a table (0 when unknown).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// The embedded SQLite store (see the module docs for its connections and write protocol).
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    dims: Arc<SharedDims>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn allocation_insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let f: Vec<&str> = schema::ALLOCATION_F64.iter().map(|c| c.0).collect();
        schema::insert_sql("allocations", false, schema::ALLOCATION_KEYS, &f)
    })
}

fn asset_insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let f: Vec<&str> = schema::ASSET_F64.iter().map(|c| c.0).collect();
        schema::insert_sql("assets", true, schema::ASSET_KEYS, &f)
    })
}

/// Creates the database file readable and writable by the owner only (it holds cost data).
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError {
            message: format!("sqlite: create database file {}: {e}", path.display()),
            retryable: false,
            source: Some(Box::new(e)),
        }),
    }
}

/// Opens a connection with the store's pragmas (WAL, synchronous=NORMAL, busy timeout,
/// foreign keys, a large page cache).
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db_err("open database"))?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    let op = "configure connection";
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err(op))?;
    // NORMAL before the switch to WAL: on a new file the switch itself commits through the
    // rollback journal, and NORMAL spares it fsyncs that WAL mode does not need.
    conn.execute_batch("PRAGMA synchronous = NORMAL")
        .map_err(db_err(op))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_err(op))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(mode = %mode, "sqlite did not switch to wal journal mode");
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -{CACHE_KIB};"
    ))
    .map_err(db_err(op))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
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

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Refuses a checkpoint that does not belong to the write it is committed with.
fn check_checkpoint(
    cp: &Checkpoint,
    cluster: &str,
    endpoint: Endpoint,
    window: Option<Window>,
) -> Result<(), StoreError> {
    match cp.mismatch(cluster, endpoint, window) {
        Some(why) => Err(StoreError::permanent(why)),
        None => Ok(()),
    }
}

/// Replaces the checkpoints of a cluster and endpoint inside the checkpoint's window with it.
fn write_checkpoint(conn: &Connection, cp: &Checkpoint) -> Result<(), StoreError> {
    let op = "write checkpoint";
    conn.prepare_cached(
        "DELETE FROM sync_state WHERE cluster = ?1 AND endpoint = ?2 \
         AND window_start >= ?3 AND window_end <= ?4",
    )
    .and_then(|mut s| {
        s.execute(params![
            cp.cluster,
            cp.endpoint.as_str(),
            cp.window.start,
            cp.window.end
        ])
    })
    .map_err(db_err(op))?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sync_state (cluster, endpoint, window_start, window_end, \
         resolution, synced_at, \"rows\", response_total_cost, null_fields) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            cp.cluster,
            cp.endpoint.as_str(),
            cp.window.start,
            cp.window.end,
            cp.resolution.as_str(),
            cp.synced_at,
            to_i64(cp.rows),
            cp.response_total_cost,
            to_i64(cp.null_fields),
        ])
    })
    .map_err(db_err(op))?;
    Ok(())
}

fn allocation_stats(
    conn: &Connection,
    cluster_id: i64,
    window: Window,
) -> Result<WindowStats, StoreError> {
    conn.prepare_cached(
        "SELECT count(*), COALESCE(sum(total_cost), 0.0) FROM allocations \
         WHERE cluster_id = ?1 AND window_start >= ?2 AND window_end <= ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![cluster_id, window.start, window.end], |r| {
            Ok(WindowStats {
                rows: to_u64(r.get(0)?),
                total_cost: r.get(1)?,
            })
        })
    })
    .map_err(db_err("read window totals"))
}

pub(crate) fn cluster_id(conn: &Connection, cluster: &str) -> Result<Option<i64>, StoreError> {
    match conn
        .prepare_cached("SELECT id FROM clusters WHERE name = ?1")
        .and_then(|mut s| s.query_row(params![cluster], |r| r.get(0)))
    {
        Ok(id) => Ok(Some(id)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(crate::error::to_store_error("look up cluster", e)),
    }
}

impl SqliteStore {
    /// Opens (creating with mode 0600 when missing) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        create_private_file(path)?;
        let mut conn = open_connection(path)?;
        schema::migrate(&mut conn, schema::SCHEMA_VERSION)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            dims: Arc::new(SharedDims::default()),
        })
    }

    /// Returns the path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the shared connection. A poisoned lock is recovered: any transaction a
    /// panicking holder left open is rolled back first, so the connection is clean.
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard: MutexGuard<'_, Connection> = match self.conn.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !guard.is_autocommit() {
            guard
                .execute_batch("ROLLBACK")
                .map_err(db_err("roll back abandoned transaction"))?;
        }
        f(&mut guard)
    }

    /// Returns the schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.with_conn(|c| schema::read_version(c))
    }

    /// Returns the row count and `sum(total_cost)` of the cluster's allocation rows inside the
    /// window.
    pub fn window_total(&self, cluster: &str, window: Window) -> Result<WindowStats, StoreError> {
        self.with_conn(|c| match cluster_id(c, cluster)? {
            Some(id) => allocation_stats(c, id, window),
            None => Ok(WindowStats {
                rows: 0,
                total_cost: 0.0,
            }),
        })
    }

    /// Returns every checkpoint of a cluster and endpoint, oldest window first.
    pub fn checkpoints(
        &self,
        cluster: &str,
        endpoint: Endpoint,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        self.with_conn(|c| {
            let op = "read checkpoints";
            let mut st = c
                .prepare_cached(
                    "SELECT window_start, window_end, resolution, synced_at, \"rows\", \
                     response_total_cost, null_fields FROM sync_state \
                     WHERE cluster = ?1 AND endpoint = ?2 ORDER BY window_start, window_end",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster, endpoint.as_str()], |r| {
                    Ok((
                        Window {
                            start: r.get(0)?,
                            end: r.get(1)?,
                        },
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, f64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(db_err(op))?;
            let mut out = Vec::new();
            for row in rows {
                let (window, res, synced_at, n, total, nulls) = row.map_err(db_err(op))?;
                out.push(Checkpoint {
                    cluster: cluster.to_string(),
                    endpoint,
                    window,
                    resolution: parse_resolution(&res)?,
                    synced_at,
                    rows: to_u64(n),
                    response_total_cost: total,
                    null_fields: to_u64(nulls),
                });
            }
            Ok(out)
        })
    }

    /// Returns `sum(total_cost)` of the cluster's assets inside the window.
    pub fn asset_total(&self, cluster: &str, window: Window) -> Result<f64, StoreError> {
        self.with_conn(|c| {
            c.prepare_cached(
                "SELECT COALESCE(sum(a.total_cost), 0.0) FROM assets a \
                 JOIN clusters c ON c.id = a.cluster_id \
                 WHERE c.name = ?1 AND a.window_start >= ?2 AND a.window_end <= ?3",
            )
            .and_then(|mut s| s.query_row(params![cluster, window.start, window.end], |r| r.get(0)))
            .map_err(db_err("read asset total"))
        })
    }

    /// Returns the rows of every table and the file sizes.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = self.with_conn(|c| {
            let op = "read store stats";
            let mut tables = Vec::new();
            for t in schema::TABLES {
                let n: i64 = c
                    .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                    .map_err(db_err(op))?;
                tables.push(((*t).to_string(), to_u64(n)));
            }
            let pages: i64 = c
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(db_err(op))?;
            let size: i64 = c
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(db_err(op))?;
            Ok(StoreStats {
                tables,
                database_bytes: to_u64(pages.saturating_mul(size)),
                wal_bytes: 0,
            })
        })?;
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        stats.wal_bytes = std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len());
        Ok(stats)
    }

    /// Returns the budgets stored for a cluster, by id.
    pub fn budgets(&self, cluster: &str) -> Result<Vec<Budget>, StoreError> {
        self.with_conn(|c| {
            let op = "read budgets";
            let mut st = c
                .prepare_cached(
                    "SELECT b.budget_id, b.name, b.budget_type, b.values_json, b.budget_interval, \
                     b.interval_day, b.spend_limit, b.current_spend, b.window_start, b.window_end \
                     FROM budgets b JOIN clusters c ON c.id = b.cluster_id WHERE c.name = ?1 \
                     ORDER BY b.budget_id",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster], |r| {
                    let values: String = r.get(3)?;
                    Ok(Budget {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        budget_type: r.get(2)?,
                        values: parse_budget_values(&values),
                        interval: r.get(4)?,
                        interval_day: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                        spend_limit: r.get(6)?,
                        current_spend: r.get(7)?,
                        window: Window {
                            start: r.get(8)?,
                            end: r.get(9)?,
                        },
                    })
                })
                .map_err(db_err(op))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
        })
    }

    /// Returns the savings recommendations stored for a cluster, largest saving first.
    pub fn savings(&self, cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError> {
        self.with_conn(|c| {
            let op = "read savings";
            let mut st = c
                .prepare_cached(
                    "SELECT s.kind, s.namespace, s.controller_kind, s.controller, s.target, \
                     s.monthly_savings, s.detail FROM savings s \
                     JOIN clusters c ON c.id = s.cluster_id WHERE c.name = ?1 \
                     ORDER BY s.monthly_savings DESC, s.id",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        SavingsRecommendation {
                            kind: kb_core::SavingsKind::RequestSizing,
                            cluster: cluster.to_string(),
                            namespace: r.get(1)?,
                            controller_kind: r.get(2)?,
                            controller: r.get(3)?,
                            target: r.get(4)?,
                            monthly_savings: r.get(5)?,
                            detail: r.get(6)?,
                        },
                    ))
                })
                .map_err(db_err(op))?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, mut rec) = row.map_err(db_err(op))?;
                rec.kind = match kind.as_str() {
                    "request_sizing" => kb_core::SavingsKind::RequestSizing,
                    "cluster_sizing" => kb_core::SavingsKind::ClusterSizing,
                    "abandoned_workload" => kb_core::SavingsKind::AbandonedWorkload,
                    other => {
                        return Err(StoreError::permanent(format!(
                            "unknown savings kind {other:?} in store"
                        )));
                    }
                };
                out.push(rec);
            }
            Ok(out)
        })
    }

    /// Returns the spec-cost predictions stored for a cluster, in the order they were put.
    pub fn predictions(&self, cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError> {
        self.with_conn(|c| {
            let op = "read predictions";
            let mut st = c
                .prepare_cached(
                    "SELECT p.* FROM predictions p JOIN clusters c ON c.id = p.cluster_id \
                     WHERE c.name = ?1 ORDER BY p.id",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster], |r| {
                    let m = |prefix: &str| -> rusqlite::Result<kb_core::MonthlyCost> {
                        let g = |f: &str| r.get::<_, f64>(format!("{prefix}_{f}").as_str());
                        Ok(kb_core::MonthlyCost {
                            total_monthly_rate: g("total_monthly_rate")?,
                            cpu_monthly_rate: g("cpu_monthly_rate")?,
                            ram_monthly_rate: g("ram_monthly_rate")?,
                            gpu_monthly_rate: g("gpu_monthly_rate")?,
                            monthly_cpu_core_hours: g("monthly_cpu_core_hours")?,
                            monthly_ram_byte_hours: g("monthly_ram_byte_hours")?,
                            monthly_gpu_hours: g("monthly_gpu_hours")?,
                        })
                    };
                    Ok(SpecCostPrediction {
                        namespace: r.get("namespace")?,
                        controller_kind: r.get("controller_kind")?,
                        controller_name: r.get("controller_name")?,
                        cost_before: m("before")?,
                        cost_after: m("after")?,
                        cost_change: m("change")?,
                    })
                })
                .map_err(db_err(op))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
        })
    }

    /// Runs a replace-the-cluster's-rows write in one immediate transaction on the shared
    /// connection, merging new dimension ids into the cache after the commit.
    fn replace_for_cluster(
        &self,
        cluster: &str,
        what: &str,
        f: impl FnOnce(&Connection, &mut Resolver, i64) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let fresh = self.with_conn(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err(&format!("begin {what} write")))?;
            let mut resolver = Resolver::new(self.dims.snapshot());
            let cid = resolver.cluster(&tx, cluster)?;
            f(&tx, &mut resolver, cid)?;
            tx.commit().map_err(db_err(&format!("commit {what}")))?;
            Ok(resolver.into_fresh())
        })?;
        self.dims.merge(fresh);
        Ok(())
    }
}

fn parse_resolution(s: &str) -> Result<Resolution, StoreError> {
    Resolution::parse(s)
        .ok_or_else(|| StoreError::permanent(format!("unknown resolution {s:?} in store")))
}

fn budget_values_json(values: &[(String, Vec<String>)]) -> String {
    let arr: Vec<serde_json::Value> = values
        .iter()
        .map(|(k, v)| {
            serde_json::Value::from(vec![serde_json::Value::from(k.as_str()), v.clone().into()])
        })
        .collect();
    serde_json::Value::from(arr).to_string()
}

fn parse_budget_values(s: &str) -> Vec<(String, Vec<String>)> {
    // Written by `budget_values_json` as `[[category, [values...]], ...]`.
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

/// The state of an open window write; `None` in [`SqliteWindowWriter`] once committed.
struct WriterState {
    conn: Connection,
    cluster: String,
    cluster_id: i64,
    window: Window,
    resolution: Resolution,
    /// Largest allocation rowid before this write: rows at or below it are the old data.
    max_id_before: i64,
    resolver: Resolver,
    /// Set when a write failed part-way: such a writer can only be dropped.
    failed: bool,
}

/// The allocation writer of one window (see the module docs).
pub struct SqliteWindowWriter {
    state: Option<WriterState>,
    dims: Arc<SharedDims>,
}

impl std::fmt::Debug for SqliteWindowWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SqliteWindowWriter");
        if let Some(s) = &self.state {
            d.field("cluster", &s.cluster).field("window", &s.window);
        }
        d.finish_non_exhaustive()
    }
}

impl SqliteWindowWriter {
    fn state(&mut self) -> Result<&mut WriterState, StoreError> {
        self.state
            .as_mut()
            .ok_or_else(|| StoreError::permanent("window writer already finished"))
    }
}

impl WriterState {
    /// Inserts rows with the cached insert statement.
    ///
    /// Two shortcuts keep the per-row cost down, both exact: dimension ids are reused from the
    /// previous row when its natural key is equal (Kubecost rows of one pod or namespace tend to
    /// be adjacent), and a parameter is only re-bound when its value differs from what is
    /// still bound from the previous row (SQLite keeps bindings across `reset`; many columns
    /// are the same or 0 row after row).
    fn insert_rows(&mut self, rows: &[Allocation]) -> Result<(), StoreError> {
        let op = "insert allocation row";
        let WriterState {
            conn,
            cluster_id,
            window,
            resolution,
            resolver,
            ..
        } = self;
        let cid = *cluster_id;
        let mut st = conn
            .prepare_cached(allocation_insert_sql())
            .map_err(db_err("prepare allocation insert"))?;
        // A statement fresh from the cache has no bindings: every slot starts unknown.
        let mut bound = Bound::new();
        let mut prev: Option<(&Allocation, RowIds)> = None;
        st.raw_bind_parameter(4, resolution.as_str())
            .map_err(db_err(op))?;
        for a in rows {
            // An adapter that left the row's window unset means the window being written.
            let w = if a.window == Window::default() {
                *window
            } else {
                a.window
            };
            if !window.contains(&w) {
                return Err(StoreError::permanent(format!(
                    "allocation row window {w} lies outside the window being written {window}"
                )));
            }
            let ids = RowIds::resolve(resolver, conn, cid, a, prev)?;
            let same_text = |f: fn(&Allocation) -> &str| prev.is_some_and(|(p, _)| f(p) == f(a));
            let mut bind = || -> rusqlite::Result<usize> {
                let ints: [(usize, i64); 15] = [
                    (1, cid),
                    (2, w.start),
                    (3, w.end),
                    (7, ids.namespace),
                    (8, ids.controller),
                    (9, ids.pod),
                    (10, ids.node),
                    (12, ids.labels),
                    (13, ids.annotations),
                    (14, ids.namespace_labels),
                    (15, ids.services),
                    (16, i64::from(a.is_idle())),
                    (17, a.start),
                    (18, a.end),
                    (19, i64::from(a.null_fields)),
                ];
                for (idx, v) in ints {
                    if bound.set(idx, v.to_ne_bytes()) {
                        st.raw_bind_parameter(idx, v)?;
                    }
                }
                if !same_text(|r| r.name.as_str()) {
                    st.raw_bind_parameter(5, a.name.as_str())?;
                }
                if !same_text(|r| r.cluster.as_str()) {
                    st.raw_bind_parameter(6, a.cluster.as_str())?;
                }
                if !same_text(|r| r.container.as_str()) {
                    st.raw_bind_parameter(11, a.container.as_str())?;
                }
                let base = schema::ALLOCATION_KEYS.len();
                for (i, (_, get)) in schema::ALLOCATION_F64.iter().enumerate() {
                    // SQLite would bind NaN as NULL; the model promises finite numbers, and
                    // the store keeps that promise even for a row that breaks it.
                    let v = get(a);
                    let v = if v.is_finite() { v } else { 0.0 };
                    let idx = base + i + 1;
                    if bound.set(idx, v.to_bits().to_ne_bytes()) {
                        st.raw_bind_parameter(idx, v)?;
                    }
                }
                st.raw_execute()
            };
            if let Err(e) = bind() {
                return Err(crate::error::to_store_error(op, e));
            }
            prev = Some((a, ids));
        }
        Ok(())
    }
}

/// What is bound to each parameter of the insert statement, as raw bytes (`None`: unknown).
struct Bound(Vec<Option<[u8; 8]>>);

impl Bound {
    fn new() -> Bound {
        Bound(vec![
            None;
            schema::ALLOCATION_KEYS.len()
                + schema::ALLOCATION_F64.len()
                + 1
        ])
    }

    /// Records `v` for parameter `idx`; returns true when it differs from what is bound.
    fn set(&mut self, idx: usize, v: [u8; 8]) -> bool {
        match self.0.get_mut(idx) {
            Some(slot) if *slot == Some(v) => false,
            Some(slot) => {
                *slot = Some(v);
                true
            }
            None => true,
        }
    }
}

/// The dimension ids of one allocation row.
#[derive(Clone, Copy)]
struct RowIds {
    namespace: i64,
    controller: i64,
    node: i64,
    pod: i64,
    labels: i64,
    annotations: i64,
    namespace_labels: i64,
    services: i64,
}

impl RowIds {
    /// Resolves a row's ids, reusing the previous row's where the natural key is the same.
    fn resolve(
        r: &mut Resolver,
        conn: &Connection,
        cid: i64,
        a: &Allocation,
        prev: Option<(&Allocation, RowIds)>,
    ) -> Result<RowIds, StoreError> {
        let same = |f: fn(&Allocation, &Allocation) -> bool| prev.filter(|(p, _)| f(p, a));
        let namespace = match same(|p, a| p.namespace == a.namespace) {
            Some((_, ids)) => ids.namespace,
            None => r.namespace(conn, cid, &a.namespace)?,
        };
        let controller = match same(|p, a| {
            p.namespace == a.namespace
                && p.controller == a.controller
                && p.controller_kind == a.controller_kind
        }) {
            Some((_, ids)) => ids.controller,
            None => r.controller(conn, namespace, &a.controller_kind, &a.controller)?,
        };
        let node = match same(|p, a| p.node == a.node && p.provider_id == a.provider_id) {
            Some((_, ids)) => ids.node,
            None => r.node(conn, cid, &a.node, &a.provider_id)?,
        };
        let pod = match same(|p, a| {
            p.namespace == a.namespace
                && p.controller == a.controller
                && p.controller_kind == a.controller_kind
                && p.node == a.node
                && p.pod == a.pod
        }) {
            Some((_, ids)) => ids.pod,
            None => r.pod(conn, controller, &a.pod, node)?,
        };
        let labels = match same(|p, a| p.labels == a.labels) {
            Some((_, ids)) => ids.labels,
            None => r.labels(conn, &a.labels)?,
        };
        let annotations = match same(|p, a| p.annotations == a.annotations) {
            Some((_, ids)) => ids.annotations,
            None => r.labels(conn, &a.annotations)?,
        };
        let namespace_labels = match same(|p, a| p.namespace_labels == a.namespace_labels) {
            Some((_, ids)) => ids.namespace_labels,
            None => r.labels(conn, &a.namespace_labels)?,
        };
        let services = match same(|p, a| p.services == a.services) {
            Some((_, ids)) => ids.services,
            None => r.services(conn, &a.services)?,
        };
        Ok(RowIds {
            namespace,
            controller,
            node,
            pod,
            labels,
            annotations,
            namespace_labels,
            services,
        })
    }
}

impl WindowWriter for SqliteWindowWriter {
    fn write(&mut self, rows: &[Allocation]) -> Result<(), StoreError> {
        let state = self.state()?;
        if state.failed {
            return Err(StoreError::permanent(
                "window writer failed earlier; drop it and start the window again",
            ));
        }
        let result = state.insert_rows(rows);
        if result.is_err() {
            state.failed = true;
        }
        result
    }

    fn commit(mut self: Box<Self>, checkpoint: &Checkpoint) -> Result<WindowStats, StoreError> {
        let state = self.state()?;
        if state.failed {
            return Err(StoreError::permanent(
                "window writer failed earlier; nothing was committed",
            ));
        }
        check_checkpoint(
            checkpoint,
            &state.cluster,
            Endpoint::Allocation,
            Some(state.window),
        )?;
        let op = "replace window rows";
        state
            .conn
            .prepare_cached(
                "DELETE FROM allocations WHERE cluster_id = ?1 AND window_start >= ?2 \
                 AND window_end <= ?3 AND id <= ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    state.cluster_id,
                    state.window.start,
                    state.window.end,
                    state.max_id_before
                ])
            })
            .map_err(db_err(op))?;
        write_checkpoint(&state.conn, checkpoint)?;
        let stats = allocation_stats(&state.conn, state.cluster_id, state.window)?;
        state
            .conn
            .execute_batch("COMMIT")
            .map_err(db_err("commit window"))?;
        tracing::debug!(
            cluster = %state.cluster,
            window = %state.window,
            resolution = state.resolution.as_str(),
            rows = stats.rows,
            "allocation window committed"
        );
        if let Some(state) = self.state.take() {
            let fresh = state.resolver.into_fresh();
            drop(state.conn);
            self.dims.merge(fresh);
        }
        Ok(stats)
    }
}

impl Drop for SqliteWindowWriter {
    fn drop(&mut self) {
        if let Some(state) = self.state.take()
            && !state.conn.is_autocommit()
        {
            // Closing the connection would roll back too; doing it explicitly logs failures.
            if let Err(e) = state.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "sqlite: roll back window write failed");
            } else {
                tracing::debug!(cluster = %state.cluster, window = %state.window, "allocation window rolled back");
            }
        }
    }
}

impl CostStore for SqliteStore {
    fn begin_allocations(
        &self,
        cluster: &str,
        window: Window,
        resolution: Resolution,
    ) -> Result<Box<dyn WindowWriter>, StoreError> {
        let conn = open_connection(&self.path)?;
        // Foreign keys off on this connection only: every id the writer binds comes from the
        // resolver (a row it inserted or read in this transaction, or a committed id, and
        // dimension rows are never deleted), so the checks cannot fail; they cost a parent
        // lookup per new pod, controller and node, about a fifth of the writer's time on a new
        // cluster. (The pragma cannot change inside a transaction, hence before BEGIN.)
        conn.execute_batch("PRAGMA foreign_keys = OFF; BEGIN IMMEDIATE")
            .map_err(db_err("begin window write"))?;
        // From here, dropping `writer` rolls back.
        let mut writer = SqliteWindowWriter {
            state: Some(WriterState {
                conn,
                cluster: cluster.to_string(),
                cluster_id: 0,
                window,
                resolution,
                max_id_before: 0,
                resolver: Resolver::with_capacity(self.dims.snapshot(), 16 * 1024),
                failed: false,
            }),
            dims: Arc::clone(&self.dims),
        };
        let state = writer.state()?;
        state.max_id_before = state
            .conn
            .query_row("SELECT COALESCE(max(id), 0) FROM allocations", [], |r| {
                r.get(0)
            })
            .map_err(db_err("begin window write"))?;
        state.cluster_id = state.resolver.cluster(&state.conn, cluster)?;
        // Stored windows never partly overlap: a window replaces the windows inside it (the
        // commit's range DELETE), but one inside or across a stored window would count its
        // hours twice, so it is refused (for example an hour of a day stored at daily grain).
        let across: Option<(i64, i64)> = state
            .conn
            .prepare_cached(
                "SELECT window_start, window_end FROM sync_state WHERE cluster = ?1 \
                 AND endpoint = 'allocation' AND window_start < ?3 AND window_end > ?2 \
                 AND (window_start < ?2 OR window_end > ?3) LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(params![cluster, window.start, window.end], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(db_err("begin window write"))?;
        if let Some((start, end)) = across {
            return Err(StoreError::permanent(format!(
                "allocation window {} of cluster {cluster} overlaps the stored window {}: \
                 extract that whole window again instead (stored windows never partly \
                 overlap, so no hour is counted twice)",
                window.to_kubecost_param(),
                Window { start, end }.to_kubecost_param()
            )));
        }
        Ok(Box::new(writer))
    }

    fn put_assets(
        &self,
        assets: &[Asset],
        checkpoint: &Checkpoint,
    ) -> Result<WindowStats, StoreError> {
        check_checkpoint(checkpoint, &checkpoint.cluster, Endpoint::Assets, None)?;
        let window = checkpoint.window;
        let mut stats = WindowStats {
            rows: 0,
            total_cost: 0.0,
        };
        self.replace_for_cluster(&checkpoint.cluster, "assets", |c, resolver, cid| {
            let op = "replace assets";
            c.prepare_cached(
                "DELETE FROM assets WHERE cluster_id = ?1 AND window_start >= ?2 \
                 AND window_end <= ?3",
            )
            .and_then(|mut s| s.execute(params![cid, window.start, window.end]))
            .map_err(db_err(op))?;
            for a in assets {
                let w = if a.window == Window::default() {
                    window
                } else {
                    a.window
                };
                if !window.contains(&w) {
                    return Err(StoreError::permanent(format!(
                        "asset window {w} lies outside the window being written {window}"
                    )));
                }
                let labels = resolver.labels(c, &a.labels)?;
                let mut st = c
                    .prepare_cached(asset_insert_sql())
                    .map_err(db_err("prepare asset insert"))?;
                let text: [&str; 10] = [
                    &a.key,
                    a.asset_type.as_str(),
                    &a.cluster,
                    &a.name,
                    &a.provider,
                    &a.provider_id,
                    &a.account,
                    &a.project,
                    &a.service,
                    &a.category,
                ];
                let bind = |st: &mut rusqlite::CachedStatement<'_>| -> rusqlite::Result<usize> {
                    st.raw_bind_parameter(1, cid)?;
                    st.raw_bind_parameter(2, w.start)?;
                    st.raw_bind_parameter(3, w.end)?;
                    for (i, t) in text.iter().enumerate() {
                        st.raw_bind_parameter(4 + i, *t)?;
                    }
                    st.raw_bind_parameter(14, labels)?;
                    st.raw_bind_parameter(15, a.node_type.as_str())?;
                    st.raw_bind_parameter(16, a.zone.as_str())?;
                    st.raw_bind_parameter(17, a.start)?;
                    st.raw_bind_parameter(18, a.end)?;
                    st.raw_bind_parameter(19, i64::from(a.null_fields))?;
                    let base = schema::ASSET_KEYS.len();
                    for (i, (_, get)) in schema::ASSET_F64.iter().enumerate() {
                        let v = get(a);
                        st.raw_bind_parameter(base + i + 1, if v.is_finite() { v } else { 0.0 })?;
                    }
                    st.raw_execute()
                };
                bind(&mut st).map_err(db_err("insert asset row"))?;
            }
            write_checkpoint(c, checkpoint)?;
            stats = c
                .prepare_cached(
                    "SELECT count(*), COALESCE(sum(total_cost), 0.0) FROM assets \
                     WHERE cluster_id = ?1 AND window_start >= ?2 AND window_end <= ?3",
                )
                .and_then(|mut s| {
                    s.query_row(params![cid, window.start, window.end], |r| {
                        Ok(WindowStats {
                            rows: to_u64(r.get(0)?),
                            total_cost: r.get(1)?,
                        })
                    })
                })
                .map_err(db_err("read asset totals"))?;
            Ok(())
        })?;
        Ok(stats)
    }

    fn put_budgets(
        &self,
        cluster: &str,
        budgets: &[Budget],
        fetched_at: i64,
    ) -> Result<(), StoreError> {
        self.replace_for_cluster(cluster, "budgets", |c, _, cid| {
            let op = "replace budgets";
            c.execute("DELETE FROM budgets WHERE cluster_id = ?1", params![cid])
                .map_err(db_err(op))?;
            let mut st = c
                .prepare_cached(
                    "INSERT OR REPLACE INTO budgets (cluster_id, budget_id, name, budget_type, \
                     values_json, budget_interval, interval_day, spend_limit, current_spend, \
                     window_start, window_end, fetched_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(db_err(op))?;
            for b in budgets {
                st.execute(params![
                    cid,
                    b.id,
                    b.name,
                    b.budget_type,
                    budget_values_json(&b.values),
                    b.interval,
                    i64::from(b.interval_day),
                    b.spend_limit,
                    b.current_spend,
                    b.window.start,
                    b.window.end,
                    fetched_at
                ])
                .map_err(db_err(op))?;
            }
            Ok(())
        })
    }

    fn put_savings(
        &self,
        cluster: &str,
        recommendations: &[SavingsRecommendation],
        fetched_at: i64,
    ) -> Result<(), StoreError> {
        self.replace_for_cluster(cluster, "savings", |c, _, cid| {
            let op = "replace savings";
            c.execute("DELETE FROM savings WHERE cluster_id = ?1", params![cid])
                .map_err(db_err(op))?;
            let mut st = c
                .prepare_cached(
                    "INSERT INTO savings (cluster_id, kind, namespace, controller_kind, \
                     controller, target, monthly_savings, detail, fetched_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(db_err(op))?;
            for r in recommendations {
                st.execute(params![
                    cid,
                    r.kind.as_str(),
                    r.namespace,
                    r.controller_kind,
                    r.controller,
                    r.target,
                    r.monthly_savings,
                    r.detail,
                    fetched_at
                ])
                .map_err(db_err(op))?;
            }
            Ok(())
        })
    }

    fn put_predictions(
        &self,
        cluster: &str,
        predictions: &[SpecCostPrediction],
        fetched_at: i64,
    ) -> Result<(), StoreError> {
        self.replace_for_cluster(cluster, "predictions", |c, _, cid| {
            let op = "replace predictions";
            c.execute(
                "DELETE FROM predictions WHERE cluster_id = ?1",
                params![cid],
            )
            .map_err(db_err(op))?;
            let mut cols = vec![
                "cluster_id".to_string(),
                "namespace".into(),
                "controller_kind".into(),
                "controller_name".into(),
            ];
            for prefix in ["before", "after", "change"] {
                for f in MONTHLY_FIELDS {
                    cols.push(format!("{prefix}_{f}"));
                }
            }
            cols.push("fetched_at".into());
            let params_sql: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO predictions ({}) VALUES ({})",
                cols.join(", "),
                params_sql.join(", ")
            );
            let mut st = c.prepare_cached(&sql).map_err(db_err(op))?;
            for p in predictions {
                let bind = |st: &mut rusqlite::CachedStatement<'_>| -> rusqlite::Result<usize> {
                    st.raw_bind_parameter(1, cid)?;
                    st.raw_bind_parameter(2, p.namespace.as_str())?;
                    st.raw_bind_parameter(3, p.controller_kind.as_str())?;
                    st.raw_bind_parameter(4, p.controller_name.as_str())?;
                    let mut i = 5;
                    for m in [&p.cost_before, &p.cost_after, &p.cost_change] {
                        for v in monthly_values(m) {
                            st.raw_bind_parameter(i, v)?;
                            i += 1;
                        }
                    }
                    st.raw_bind_parameter(i, fetched_at)?;
                    st.raw_execute()
                };
                bind(&mut st).map_err(db_err(op))?;
            }
            Ok(())
        })
    }

    fn synced_windows(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        since: i64,
    ) -> Result<Vec<(Window, Resolution)>, StoreError> {
        self.with_conn(|c| {
            let op = "read synced windows";
            let mut st = c
                .prepare_cached(
                    "SELECT window_start, window_end, resolution FROM sync_state \
                     WHERE cluster = ?1 AND endpoint = ?2 AND window_end > ?3 \
                     ORDER BY window_start, window_end",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster, endpoint.as_str(), since], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(db_err(op))?;
            let mut out = Vec::new();
            for row in rows {
                let (start, end, res) = row.map_err(db_err(op))?;
                out.push((Window { start, end }, parse_resolution(&res)?));
            }
            Ok(out)
        })
    }

    fn record_reconciliation(&self, r: &Reconciliation) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO reconciliations (cluster, endpoint, window_start, \
                 window_end, expected, stored, relative_error, checked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    r.cluster,
                    r.endpoint.as_str(),
                    r.window.start,
                    r.window.end,
                    r.expected,
                    r.stored,
                    r.relative_error,
                    r.checked_at
                ])
            })
            .map_err(db_err("record reconciliation"))?;
            Ok(())
        })
    }

    fn cleanup(&self, before: i64) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            let op = "clean up old rows";
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err(op))?;
            let a = tx
                .execute(
                    "DELETE FROM allocations WHERE window_end <= ?1",
                    params![before],
                )
                .map_err(db_err(op))?;
            let b = tx
                .execute("DELETE FROM assets WHERE window_end <= ?1", params![before])
                .map_err(db_err(op))?;
            tx.commit().map_err(db_err(op))?;
            Ok((a as u64).saturating_add(b as u64))
        })
    }
}

const MONTHLY_FIELDS: [&str; 7] = [
    "total_monthly_rate",
    "cpu_monthly_rate",
    "ram_monthly_rate",
    "gpu_monthly_rate",
    "monthly_cpu_core_hours",
    "monthly_ram_byte_hours",
    "monthly_gpu_hours",
];

fn monthly_values(m: &kb_core::MonthlyCost) -> [f64; 7] {
    [
        m.total_monthly_rate,
        m.cpu_monthly_rate,
        m.ram_monthly_rate,
        m.gpu_monthly_rate,
        m.monthly_cpu_core_hours,
        m.monthly_ram_byte_hours,
        m.monthly_gpu_hours,
    ]
}

impl CostReader for SqliteStore {
    fn costs(&self, q: &CostQuery) -> Result<Vec<CostRow>, StoreError> {
        self.with_conn(|c| crate::query::costs(c, q))
    }

    fn pod_labels(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        range: Window,
    ) -> Result<Vec<PodLabels>, StoreError> {
        self.with_conn(|c| SqliteStore::read_pod_labels(c, cluster, namespace, range))
    }

    fn clusters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.with_conn(|c| {
            let op = "list clusters";
            let mut st = c
                .prepare_cached(
                    "SELECT name, COALESCE((SELECT max(s.window_end) FROM sync_state s \
                     WHERE s.cluster = clusters.name AND s.endpoint = 'allocation'), 0) \
                     FROM clusters ORDER BY name",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db_err(op))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
        })
    }

    fn reconciliations(
        &self,
        cluster: &str,
        range: Window,
    ) -> Result<Vec<Reconciliation>, StoreError> {
        self.with_conn(|c| {
            let op = "read reconciliations";
            let mut st = c
                .prepare_cached(
                    "SELECT endpoint, window_start, window_end, expected, stored, \
                     relative_error, checked_at FROM reconciliations \
                     WHERE cluster = ?1 AND window_start >= ?2 AND window_start < ?3 \
                     ORDER BY window_start, endpoint, window_end",
                )
                .map_err(db_err(op))?;
            let rows = st
                .query_map(params![cluster, range.start, range.end], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Window {
                            start: r.get(1)?,
                            end: r.get(2)?,
                        },
                        r.get::<_, f64>(3)?,
                        r.get::<_, f64>(4)?,
                        r.get::<_, f64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(db_err(op))?;
            let mut out = Vec::new();
            for row in rows {
                let (ep, window, expected, stored, relative_error, checked_at) =
                    row.map_err(db_err(op))?;
                let endpoint = endpoint_from_str(&ep).ok_or_else(|| {
                    StoreError::permanent(format!("unknown endpoint {ep:?} in store"))
                })?;
                out.push(Reconciliation {
                    cluster: cluster.to_string(),
                    endpoint,
                    window,
                    expected,
                    stored,
                    relative_error,
                    checked_at,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_round_trip() {
        for e in [
            Endpoint::Allocation,
            Endpoint::Assets,
            Endpoint::Budgets,
            Endpoint::Predictions,
            Endpoint::Savings,
        ] {
            assert_eq!(endpoint_from_str(e.as_str()), Some(e));
        }
        assert_eq!(endpoint_from_str("nope"), None);
    }

    #[test]
    fn budget_values_round_trip() {
        let v = vec![
            (
                "namespace".to_string(),
                vec!["a".to_string(), "b".to_string()],
            ),
            ("label:team".to_string(), vec![]),
        ];
        assert_eq!(parse_budget_values(&budget_values_json(&v)), v);
        assert!(parse_budget_values("not json").is_empty());
    }
}
