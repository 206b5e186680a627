//! The SQLite schema: forward-only migrations and the column lists the writers bind.
//!
//! Invariants:
//! - [`MIGRATIONS`] is append-only. A released script is never edited; a change to the schema
//!   is a new script at the end. `PRAGMA user_version` holds how many scripts a database has run,
//!   and each script runs in the same transaction as the `user_version` bump, so a database is
//!   always exactly at one version.
//! - A database whose version is newer than [`SCHEMA_VERSION`] is refused, never downgraded.
//! - The fact tables reference dimension rows by integer id (enforced by the writers, not by
//!   FOREIGN KEY clauses, which would cost an index probe per id per row); dimension rows are
//!   never deleted,
//!   so an id, once committed, stays valid for the life of the file (the writers cache them).
//! - The `f64` column lists ([`ALLOCATION_F64`], [`ASSET_F64`]) are the single place that pairs
//!   a column with a model field; the insert statements are built from them, and a unit test
//!   checks every listed column exists in the migrated schema.

use kb_core::{Allocation, Asset};
use rusqlite::Connection;

use crate::error::{StoreError, db_err};

/// Migration 1: dimensions, the allocation fact table, checkpoints and reconciliations.
const MIGRATION_1: &str = r#"
CREATE TABLE clusters (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE nodes (
    id          INTEGER PRIMARY KEY,
    cluster_id  INTEGER NOT NULL REFERENCES clusters(id),
    name        TEXT NOT NULL,
    provider_id TEXT NOT NULL DEFAULT '',
    UNIQUE (cluster_id, name)
);
CREATE TABLE namespaces (
    id         INTEGER PRIMARY KEY,
    cluster_id INTEGER NOT NULL REFERENCES clusters(id),
    name       TEXT NOT NULL,
    UNIQUE (cluster_id, name)
);
CREATE TABLE controllers (
    id           INTEGER PRIMARY KEY,
    namespace_id INTEGER NOT NULL REFERENCES namespaces(id),
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    UNIQUE (namespace_id, kind, name)
);
CREATE TABLE pods (
    id            INTEGER PRIMARY KEY,
    controller_id INTEGER NOT NULL REFERENCES controllers(id),
    name          TEXT NOT NULL,
    node_id       INTEGER NOT NULL REFERENCES nodes(id),
    UNIQUE (controller_id, name, node_id)
);
CREATE TABLE label_sets (
    id   INTEGER PRIMARY KEY,
    hash INTEGER NOT NULL,
    json TEXT NOT NULL,
    UNIQUE (hash, json)
);
-- The hot path: no FOREIGN KEY and no NOT NULL on the REAL columns, because each costs a
-- check per column per row. The writer takes every id from the dimension tables and binds a
-- finite number (non-finite becomes 0) for every REAL column, so neither can be violated.
-- window_end is in the index so the replace-window DELETE never reads table rows.
CREATE TABLE allocations (
    id                            INTEGER PRIMARY KEY,
    cluster_id                    INTEGER NOT NULL,
    window_start                  INTEGER NOT NULL,
    window_end                    INTEGER NOT NULL,
    resolution                    TEXT NOT NULL,
    name                          TEXT NOT NULL,
    source_cluster                TEXT NOT NULL,
    namespace_id                  INTEGER NOT NULL,
    controller_id                 INTEGER NOT NULL,
    pod_id                        INTEGER NOT NULL,
    node_id                       INTEGER NOT NULL,
    container                     TEXT NOT NULL,
    labels_id                     INTEGER NOT NULL,
    annotations_id                INTEGER NOT NULL,
    namespace_labels_id           INTEGER NOT NULL,
    services_id                   INTEGER NOT NULL,
    is_idle                       INTEGER NOT NULL,
    run_start                     INTEGER NOT NULL,
    run_end                       INTEGER NOT NULL,
    null_fields                   INTEGER NOT NULL,
    minutes                       REAL,
    cpu_cores                     REAL,
    cpu_core_request_average      REAL,
    cpu_core_usage_average        REAL,
    cpu_core_hours                REAL,
    cpu_cost                      REAL,
    cpu_cost_adjustment           REAL,
    cpu_cost_idle                 REAL,
    cpu_efficiency                REAL,
    gpu_count                     REAL,
    gpu_hours                     REAL,
    gpu_cost                      REAL,
    gpu_cost_adjustment           REAL,
    gpu_cost_idle                 REAL,
    gpu_efficiency                REAL,
    ram_bytes                     REAL,
    ram_byte_request_average      REAL,
    ram_byte_usage_average        REAL,
    ram_byte_hours                REAL,
    memory_cost                   REAL,
    ram_cost_adjustment           REAL,
    ram_cost_idle                 REAL,
    ram_efficiency                REAL,
    pv_bytes                      REAL,
    pv_byte_hours                 REAL,
    storage_cost                  REAL,
    pv_cost_adjustment            REAL,
    network_transfer_bytes        REAL,
    network_receive_bytes         REAL,
    network_cost                  REAL,
    network_cross_zone_cost       REAL,
    network_cross_region_cost     REAL,
    network_internet_cost         REAL,
    network_cost_adjustment       REAL,
    load_balancer_cost            REAL,
    load_balancer_cost_adjustment REAL,
    shared_cost                   REAL,
    external_cost                 REAL,
    total_cost                    REAL,
    efficiency_score              REAL
);
CREATE INDEX allocations_cluster_window ON allocations (cluster_id, window_start, window_end);
CREATE TABLE sync_state (
    cluster             TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    window_start        INTEGER NOT NULL,
    window_end          INTEGER NOT NULL,
    resolution          TEXT NOT NULL,
    synced_at           INTEGER NOT NULL,
    "rows"              INTEGER NOT NULL,
    response_total_cost REAL NOT NULL,
    null_fields         INTEGER NOT NULL,
    PRIMARY KEY (cluster, endpoint, window_start, window_end)
) WITHOUT ROWID;
CREATE TABLE reconciliations (
    cluster        TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    window_start   INTEGER NOT NULL,
    window_end     INTEGER NOT NULL,
    expected       REAL NOT NULL,
    stored         REAL NOT NULL,
    relative_error REAL NOT NULL,
    checked_at     INTEGER NOT NULL,
    PRIMARY KEY (cluster, endpoint, window_start, window_end)
) WITHOUT ROWID;
"#;

/// Migration 2: assets, budgets, spec-cost predictions and savings recommendations.
const MIGRATION_2: &str = r#"
CREATE TABLE assets (
    id             INTEGER PRIMARY KEY,
    cluster_id     INTEGER NOT NULL,
    window_start   INTEGER NOT NULL,
    window_end     INTEGER NOT NULL,
    asset_key      TEXT NOT NULL,
    asset_type     TEXT NOT NULL,
    source_cluster TEXT NOT NULL,
    name           TEXT NOT NULL,
    provider       TEXT NOT NULL,
    provider_id    TEXT NOT NULL,
    account        TEXT NOT NULL,
    project        TEXT NOT NULL,
    service        TEXT NOT NULL,
    category       TEXT NOT NULL,
    labels_id      INTEGER NOT NULL,
    node_type      TEXT NOT NULL,
    zone           TEXT NOT NULL,
    run_start      INTEGER NOT NULL,
    run_end        INTEGER NOT NULL,
    null_fields    INTEGER NOT NULL,
    minutes        REAL NOT NULL,
    cpu_cores      REAL NOT NULL,
    ram_bytes      REAL NOT NULL,
    cpu_core_hours REAL NOT NULL,
    ram_byte_hours REAL NOT NULL,
    gpu_hours      REAL NOT NULL,
    gpu_count      REAL NOT NULL,
    cpu_cost       REAL NOT NULL,
    ram_cost       REAL NOT NULL,
    gpu_cost       REAL NOT NULL,
    preemptible    REAL NOT NULL,
    discount       REAL NOT NULL,
    bytes          REAL NOT NULL,
    byte_hours     REAL NOT NULL,
    cost           REAL NOT NULL,
    adjustment     REAL NOT NULL,
    credit         REAL NOT NULL,
    total_cost     REAL NOT NULL,
    UNIQUE (cluster_id, window_start, window_end, asset_key)
);
CREATE TABLE budgets (
    cluster_id      INTEGER NOT NULL REFERENCES clusters(id),
    budget_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    budget_type     TEXT NOT NULL,
    values_json     TEXT NOT NULL,
    budget_interval TEXT NOT NULL,
    interval_day    INTEGER NOT NULL,
    spend_limit     REAL NOT NULL,
    current_spend   REAL NOT NULL,
    window_start    INTEGER NOT NULL,
    window_end      INTEGER NOT NULL,
    fetched_at      INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, budget_id)
);
CREATE TABLE predictions (
    id                            INTEGER PRIMARY KEY,
    cluster_id                    INTEGER NOT NULL REFERENCES clusters(id),
    namespace                     TEXT NOT NULL,
    controller_kind               TEXT NOT NULL,
    controller_name               TEXT NOT NULL,
    before_total_monthly_rate     REAL NOT NULL,
    before_cpu_monthly_rate       REAL NOT NULL,
    before_ram_monthly_rate       REAL NOT NULL,
    before_gpu_monthly_rate       REAL NOT NULL,
    before_monthly_cpu_core_hours REAL NOT NULL,
    before_monthly_ram_byte_hours REAL NOT NULL,
    before_monthly_gpu_hours      REAL NOT NULL,
    after_total_monthly_rate      REAL NOT NULL,
    after_cpu_monthly_rate        REAL NOT NULL,
    after_ram_monthly_rate        REAL NOT NULL,
    after_gpu_monthly_rate        REAL NOT NULL,
    after_monthly_cpu_core_hours  REAL NOT NULL,
    after_monthly_ram_byte_hours  REAL NOT NULL,
    after_monthly_gpu_hours       REAL NOT NULL,
    change_total_monthly_rate     REAL NOT NULL,
    change_cpu_monthly_rate       REAL NOT NULL,
    change_ram_monthly_rate       REAL NOT NULL,
    change_gpu_monthly_rate       REAL NOT NULL,
    change_monthly_cpu_core_hours REAL NOT NULL,
    change_monthly_ram_byte_hours REAL NOT NULL,
    change_monthly_gpu_hours      REAL NOT NULL,
    fetched_at                    INTEGER NOT NULL
);
CREATE INDEX predictions_cluster ON predictions (cluster_id);
CREATE TABLE savings (
    id              INTEGER PRIMARY KEY,
    cluster_id      INTEGER NOT NULL REFERENCES clusters(id),
    kind            TEXT NOT NULL,
    namespace       TEXT NOT NULL,
    controller_kind TEXT NOT NULL,
    controller      TEXT NOT NULL,
    target          TEXT NOT NULL,
    monthly_savings REAL NOT NULL,
    detail          TEXT NOT NULL,
    fetched_at      INTEGER NOT NULL
);
CREATE INDEX savings_cluster ON savings (cluster_id);
"#;

/// Migration 3: the aggregator's results. `cost_summaries` follows the seed's table
/// (`timestamp` = bucket start, `window_duration` = `1h` / `1d` / `1mo`, the cost columns and
/// `efficiency_score`) with the bridge's additions: the dimension and its value, gpu, shared
/// and idle costs, the efficiency's numerator and denominator, the source (`api` or
/// `realtime`) and the rules' version. Its primary key is the natural key, so a bucket is
/// stored once per source.
const MIGRATION_3: &str = r#"
CREATE TABLE cost_summaries (
    cluster_id         INTEGER NOT NULL,
    window_duration    TEXT NOT NULL,
    dimension          TEXT NOT NULL,
    timestamp          INTEGER NOT NULL,
    bucket_end         INTEGER NOT NULL,
    namespace          TEXT NOT NULL,
    name               TEXT NOT NULL,
    source             TEXT NOT NULL,
    rules_version      INTEGER NOT NULL,
    total_cost         REAL NOT NULL,
    cpu_cost           REAL NOT NULL,
    memory_cost        REAL NOT NULL,
    gpu_cost           REAL NOT NULL,
    network_cost       REAL NOT NULL,
    storage_cost       REAL NOT NULL,
    load_balancer_cost REAL NOT NULL,
    external_cost      REAL NOT NULL,
    shared_cost        REAL NOT NULL,
    idle_cost          REAL NOT NULL,
    usage_cost         REAL NOT NULL,
    request_cost       REAL NOT NULL,
    efficiency_score   REAL NOT NULL,
    rows               INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, window_duration, dimension, timestamp, namespace, name, source)
) WITHOUT ROWID;
CREATE TABLE anomalies (
    id         INTEGER PRIMARY KEY,
    cluster_id INTEGER NOT NULL,
    dimension  TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    detector   TEXT NOT NULL,
    start      INTEGER NOT NULL,
    end        INTEGER NOT NULL,
    expected   REAL NOT NULL,
    actual     REAL NOT NULL,
    score      REAL NOT NULL,
    severity   TEXT NOT NULL
);
CREATE INDEX anomalies_cluster_start ON anomalies (cluster_id, start);
CREATE TABLE forecasts (
    cluster_id   INTEGER NOT NULL,
    dimension    TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    horizon_days INTEGER NOT NULL,
    made_at      INTEGER NOT NULL,
    total        REAL NOT NULL,
    lower        REAL NOT NULL,
    upper        REAL NOT NULL,
    kubecost     REAL,
    PRIMARY KEY (cluster_id, dimension, namespace, name, horizon_days)
) WITHOUT ROWID;
"#;

/// Migration 4: the in-process alerts' states (`kb-ops`), one opaque JSON document per alert
/// fingerprint, so a restart neither forgets a firing alert nor notifies it again.
const MIGRATION_4: &str = r#"
CREATE TABLE alert_states (
    fingerprint TEXT PRIMARY KEY,
    state       TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Migration 5: the bridge's own recommendations (beside Kubecost's `savings`), replaced per
/// cluster by each aggregation run: `recommendation_runs` holds one row per cluster (when, the
/// observed period and the cluster's monthly cost, the base of the savings' share) and
/// `recommendations` its list.
const MIGRATION_5: &str = r#"
CREATE TABLE recommendation_runs (
    cluster_id    INTEGER PRIMARY KEY,
    made_at       INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    window_end    INTEGER NOT NULL,
    monthly_cost  REAL NOT NULL
);
CREATE TABLE recommendations (
    id                   INTEGER PRIMARY KEY,
    cluster_id           INTEGER NOT NULL,
    kind                 TEXT NOT NULL,
    namespace            TEXT NOT NULL,
    controller_kind      TEXT NOT NULL,
    controller           TEXT NOT NULL,
    target               TEXT NOT NULL,
    description          TEXT NOT NULL,
    current_monthly_cost REAL NOT NULL,
    monthly_savings      REAL NOT NULL
);
CREATE INDEX recommendations_cluster ON recommendations (cluster_id);
"#;

/// The migration scripts, oldest first; script `i` takes a database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
];

/// The schema version this binary writes (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Tables listed by [`crate::StoreStats`], in a stable order.
pub const TABLES: &[&str] = &[
    "clusters",
    "namespaces",
    "controllers",
    "pods",
    "nodes",
    "label_sets",
    "allocations",
    "assets",
    "sync_state",
    "reconciliations",
    "budgets",
    "predictions",
    "savings",
    "cost_summaries",
    "anomalies",
    "forecasts",
    "alert_states",
    "recommendation_runs",
    "recommendations",
];

/// An `f64` field of a model record and the column that stores it.
pub type F64Column<T> = (&'static str, fn(&T) -> f64);

/// Every `f64` field of [`Allocation`], in column order. Names follow the seed where it names
/// the cost (`memory_cost` = `ramCost`, `storage_cost` = `pvCost`, `efficiency_score` =
/// `totalEfficiency`) and Kubecost otherwise.
pub const ALLOCATION_F64: &[F64Column<Allocation>] = &[
    ("minutes", |a| a.minutes),
    ("cpu_cores", |a| a.cpu_cores),
    ("cpu_core_request_average", |a| a.cpu_core_request_average),
    ("cpu_core_usage_average", |a| a.cpu_core_usage_average),
    ("cpu_core_hours", |a| a.cpu_core_hours),
    ("cpu_cost", |a| a.cpu_cost),
    ("cpu_cost_adjustment", |a| a.cpu_cost_adjustment),
    ("cpu_cost_idle", |a| a.cpu_cost_idle),
    ("cpu_efficiency", |a| a.cpu_efficiency),
    ("gpu_count", |a| a.gpu_count),
    ("gpu_hours", |a| a.gpu_hours),
    ("gpu_cost", |a| a.gpu_cost),
    ("gpu_cost_adjustment", |a| a.gpu_cost_adjustment),
    ("gpu_cost_idle", |a| a.gpu_cost_idle),
    ("gpu_efficiency", |a| a.gpu_efficiency),
    ("ram_bytes", |a| a.ram_bytes),
    ("ram_byte_request_average", |a| a.ram_byte_request_average),
    ("ram_byte_usage_average", |a| a.ram_byte_usage_average),
    ("ram_byte_hours", |a| a.ram_byte_hours),
    ("memory_cost", |a| a.ram_cost),
    ("ram_cost_adjustment", |a| a.ram_cost_adjustment),
    ("ram_cost_idle", |a| a.ram_cost_idle),
    ("ram_efficiency", |a| a.ram_efficiency),
    ("pv_bytes", |a| a.pv_bytes),
    ("pv_byte_hours", |a| a.pv_byte_hours),
    ("storage_cost", |a| a.pv_cost),
    ("pv_cost_adjustment", |a| a.pv_cost_adjustment),
    ("network_transfer_bytes", |a| a.network_transfer_bytes),
    ("network_receive_bytes", |a| a.network_receive_bytes),
    ("network_cost", |a| a.network_cost),
    ("network_cross_zone_cost", |a| a.network_cross_zone_cost),
    ("network_cross_region_cost", |a| a.network_cross_region_cost),
    ("network_internet_cost", |a| a.network_internet_cost),
    ("network_cost_adjustment", |a| a.network_cost_adjustment),
    ("load_balancer_cost", |a| a.load_balancer_cost),
    ("load_balancer_cost_adjustment", |a| {
        a.load_balancer_cost_adjustment
    }),
    ("shared_cost", |a| a.shared_cost),
    ("external_cost", |a| a.external_cost),
    ("total_cost", |a| a.total_cost),
    ("efficiency_score", |a| a.total_efficiency),
];

/// The non-`f64` columns of `allocations` the writer binds, in order, before [`ALLOCATION_F64`].
pub const ALLOCATION_KEYS: &[&str] = &[
    "cluster_id",
    "window_start",
    "window_end",
    "resolution",
    "name",
    "source_cluster",
    "namespace_id",
    "controller_id",
    "pod_id",
    "node_id",
    "container",
    "labels_id",
    "annotations_id",
    "namespace_labels_id",
    "services_id",
    "is_idle",
    "run_start",
    "run_end",
    "null_fields",
];

/// Every `f64` field of [`Asset`], in column order (Kubecost's names).
pub const ASSET_F64: &[F64Column<Asset>] = &[
    ("minutes", |a| a.minutes),
    ("cpu_cores", |a| a.cpu_cores),
    ("ram_bytes", |a| a.ram_bytes),
    ("cpu_core_hours", |a| a.cpu_core_hours),
    ("ram_byte_hours", |a| a.ram_byte_hours),
    ("gpu_hours", |a| a.gpu_hours),
    ("gpu_count", |a| a.gpu_count),
    ("cpu_cost", |a| a.cpu_cost),
    ("ram_cost", |a| a.ram_cost),
    ("gpu_cost", |a| a.gpu_cost),
    ("preemptible", |a| a.preemptible),
    ("discount", |a| a.discount),
    ("bytes", |a| a.bytes),
    ("byte_hours", |a| a.byte_hours),
    ("cost", |a| a.cost),
    ("adjustment", |a| a.adjustment),
    ("credit", |a| a.credit),
    ("total_cost", |a| a.total_cost),
];

/// The non-`f64` columns of `assets` the store binds, in order, before [`ASSET_F64`].
pub const ASSET_KEYS: &[&str] = &[
    "cluster_id",
    "window_start",
    "window_end",
    "asset_key",
    "asset_type",
    "source_cluster",
    "name",
    "provider",
    "provider_id",
    "account",
    "project",
    "service",
    "category",
    "labels_id",
    "node_type",
    "zone",
    "run_start",
    "run_end",
    "null_fields",
];

/// Builds `INSERT [OR REPLACE] INTO table (keys..., f64s...) VALUES (?1, ...)`.
pub(crate) fn insert_sql(table: &str, or_replace: bool, keys: &[&str], f64s: &[&str]) -> String {
    let cols: Vec<&str> = keys.iter().chain(f64s.iter()).copied().collect();
    let params: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT {}INTO {table} ({}) VALUES ({})",
        if or_replace { "OR REPLACE " } else { "" },
        cols.join(", "),
        params.join(", ")
    )
}

/// Returns the database's `user_version`.
pub fn read_version(conn: &Connection) -> Result<u32, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_err("read schema version"))
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Runs the migrations a database has not run yet, up to `target` (at most
/// [`SCHEMA_VERSION`]). Each script and its version bump commit together. A database newer
/// than this binary is refused.
pub fn migrate(conn: &mut Connection, target: u32) -> Result<u32, StoreError> {
    let target = target.min(SCHEMA_VERSION);
    loop {
        // Immediate: two processes opening the same new file must not both run a script.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err("begin migration"))?;
        let current = read_version(&tx)?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::permanent(format!(
                "database schema version {current} is newer than this binary supports \
                 ({SCHEMA_VERSION}); upgrade kubecost-bridge"
            )));
        }
        if current >= target {
            return Ok(current);
        }
        let script = usize::try_from(current)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or_else(|| StoreError::permanent("migration script missing"))?;
        tx.execute_batch(script)
            .map_err(db_err(&format!("run migration {}", current + 1)))?;
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(db_err("record schema version"))?;
        tx.commit().map_err(db_err("commit migration"))?;
        tracing::info!(version = current + 1, "sqlite schema migrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut st = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn every_bound_column_exists_and_every_fact_column_is_bound() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, SCHEMA_VERSION).unwrap(), SCHEMA_VERSION);
        for (table, keys, f64s) in [
            (
                "allocations",
                ALLOCATION_KEYS,
                ALLOCATION_F64.iter().map(|c| c.0).collect::<Vec<_>>(),
            ),
            (
                "assets",
                ASSET_KEYS,
                ASSET_F64.iter().map(|c| c.0).collect::<Vec<_>>(),
            ),
        ] {
            let mut bound: Vec<String> = keys
                .iter()
                .chain(f64s.iter())
                .map(|s| s.to_string())
                .collect();
            bound.push("id".into());
            bound.sort();
            let mut have = columns(&conn, table);
            have.sort();
            assert_eq!(bound, have, "{table}");
            conn.prepare(&insert_sql(table, false, keys, &f64s))
                .unwrap();
        }
    }

    #[test]
    fn migrations_are_stepwise_and_newer_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, 1).unwrap(), 1);
        assert_eq!(read_version(&conn).unwrap(), 1);
        assert!(columns(&conn, "assets").is_empty());
        assert_eq!(migrate(&mut conn, SCHEMA_VERSION).unwrap(), SCHEMA_VERSION);
        assert!(!columns(&conn, "assets").is_empty());
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, SCHEMA_VERSION).unwrap_err();
        assert!(err.message.contains("newer"), "{}", err.message);
        assert!(!err.retryable);
    }
}
