//! The ClickHouse store of kubecost-bridge: [`ClickHouseStore`] implements the pipeline's ports
//! [`kb_pipeline::ports::CostStore`] and [`kb_pipeline::ports::CostReader`] over ClickHouse's
//! HTTP interface, and passes the same conformance suite (`kb-conformance`) as the embedded
//! SQLite store.
//!
//! # Transport
//!
//! One `reqwest` client with connect and total timeouts, driven by a small private tokio
//! runtime (the ports are synchronous; see `http`). Every statement is one POST (18.16 refuses
//! multi-statements). Rows go both ways in `RowBinary`, so floats keep their exact bits.
//! Values are bound on the client side (`'...'` literals with `\` and `'` escaped), because
//! 18.16 has no query parameters. The password travels only in the `X-ClickHouse-Key` header;
//! it is never in a URL, a log line or an error message ([`Secret`] prints `***`).
//!
//! Errors map to [`kb_pipeline::ports::StoreError`]: connection errors, timeouts and HTTP 5xx
//! are retryable unless ClickHouse's error code says the statement or data is wrong; a refused
//! password is a permanent `authentication failed` error.
//!
//! # Idempotent writes: versioned windows
//!
//! ClickHouse has no transactions, and its deletes (`ALTER TABLE ... DELETE`) are asynchronous
//! mutations. So a write never deletes before it commits; instead every write is versioned and
//! readers only count rows of the latest *committed* version of each hour:
//!
//! 1. [`kb_pipeline::ports::CostStore::begin_allocations`] takes a new `version` (nanoseconds
//!    since the epoch, strictly increasing in the process and above every version stored when
//!    the store opened, so a clock stepping back cannot reorder commits). The writer buffers
//!    rows and sends
//!    `INSERT ... FORMAT RowBinary` batches of `batch_rows` (10k by default), one insert in
//!    flight while the next batch is encoded. Every row carries `cluster`, `version` and
//!    `slot` (the start of the hour its window starts in).
//! 2. `commit` sends the last batch, writes the window's `cost_summaries` rows with
//!    `INSERT ... SELECT` from this version's rows, and then, last, inserts the checkpoint:
//!    one `sync_state` row per hour slot of the window, all in one insert (one block, into an
//!    unpartitioned table, so it lands whole or not at all), each naming the write's version
//!    (`row_version`) and a newer `commit_version`. This insert is the commit point.
//! 3. The **visibility rule**: a row of `allocations`, `cost_summaries` or `assets` counts only
//!    when `(cluster, slot, version)` is the owner of its slot, where the owner of a slot is
//!    `argMax(row_version, commit_version)` over the slot's `sync_state` rows. Every read the
//!    store makes applies it, and the `allocations_current`, `cost_summaries_current` and
//!    `assets_current` views apply it for ad-hoc SQL.
//!
//! Consequences, matching the SQLite store's contract:
//! - Extracting a window again never double counts: the new commit owns the window's slots,
//!   so the old rows drop out of every query at the instant the checkpoint lands. A daily
//!   window takes over the 24 hourly slots (and so replaces the hours' rows and checkpoints).
//! - A crash or a dropped writer before the checkpoint leaves rows no checkpoint names, which
//!   no read counts; and no checkpoint exists without its rows (rows first, checkpoint last).
//! - The last commit wins, whatever order writers began in.
//!
//! Superseded rows (and an abandoned writer's rows) are then removed in the background with
//! `ALTER TABLE ... DELETE WHERE (cluster = .. AND slot in the window AND version IN (old))
//! OR ...`: a janitor collects these conditions for half a second and sends one mutation per
//! table for up to 200 of them (a mutation rewrites data parts, so one per commit would be
//! costly when a whole week is extracted again). Nothing depends on when that finishes; rows
//! it misses (the process exits first) stay invisible until the retention cleanup. Budgets, savings and predictions use the same idea
//! per cluster: rows with a new version, then a `snapshots` row
//! (`ReplacingMergeTree(version)`) that makes that version the current list. Reconciliations
//! are a `ReplacingMergeTree(version)` read with `argMax`. Reads never rely on background
//! merges: `argMax` picks the winner whether or not parts were merged.
//!
//! [`kb_pipeline::ports::CostStore::cleanup`] deletes allocation and asset rows whose window
//! ended at or before the cutoff with `ALTER TABLE ... DELETE` (18.16 has no TTL) and waits for
//! the mutations to finish; checkpoints, summaries and the small tables stay.
//!
//! # Schema (version 1, database `cloudtuner` by default)
//!
//! | table | engine | key | holds |
//! |---|---|---|---|
//! | `allocations` | `MergeTree()`, `PARTITION BY toYYYYMM(window_start)` | `ORDER BY (window_start, cluster, namespace, controller, pod)` | one row per allocation Kubecost sent (pod-hour grain by default): every field of [`kb_core::Allocation`], labels, annotations and namespace labels as JSON objects, services as a JSON array, plus `cluster` (the bridge's name), `source_cluster` (Kubecost's), `version`, `slot`, `resolution`, `is_idle` |
//! | `cost_summaries` | `MergeTree()`, `PARTITION BY toYYYYMM(timestamp)` | `ORDER BY (timestamp, cluster, namespace)` | the seed's table (`timestamp, cluster, namespace, window_duration, total_cost, cpu_cost, memory_cost, network_cost, storage_cost, efficiency_score`) plus `gpu_cost, load_balancer_cost, shared_cost, external_cost, idle_cost, rows, slot, version`; one row per row window and namespace |
//! | `assets` | `MergeTree()`, `PARTITION BY toYYYYMM(window_start)` | `ORDER BY (window_start, cluster, asset_type, asset_key)` | every field of [`kb_core::Asset`] |
//! | `sync_state` | `ReplacingMergeTree(commit_version)` | `ORDER BY (cluster, endpoint, slot)` | checkpoints, one row per hour slot |
//! | `snapshots` | `ReplacingMergeTree(version)` | `ORDER BY (cluster, kind)` | the current version of each cluster's budgets, savings, predictions |
//! | `budgets`, `savings`, `predictions` | `MergeTree()` | `ORDER BY (cluster, version, seq)` | the lists, `seq` keeps their order |
//! | `reconciliations` | `ReplacingMergeTree(version)` | `ORDER BY (cluster, endpoint, window_start, window_end)` | one result per window |
//! | `schema_version` | `MergeTree()` | `ORDER BY version` | one row per migration run |
//!
//! Money is `Float64`, windows in fact tables `DateTime('UTC')` (so month partitions and
//! buckets are UTC whatever the server's time zone), elsewhere `Int64` unix seconds. Cost
//! column names follow the seed and the SQLite store (`memory_cost` = `ramCost`,
//! `storage_cost` = `pvCost`, `efficiency_score` = `totalEfficiency`). Migrations are forward
//! only; each statement is `IF NOT EXISTS`, and a database with a newer version is refused.
//!
//! # Cluster mode
//!
//! With [`ClickHouseConfig::cluster`] set to a cluster of the servers' `remote_servers` (with
//! `{shard}` and `{replica}` macros and ZooKeeper configured), every statement runs
//! `ON CLUSTER`, data lives in replicated `<table>_local` tables, and reads and inserts go
//! through Distributed tables of the plain names, sharded by `cityHash64(cluster)` (so one
//! Kubernetes cluster's rows, checkpoints included, live on one shard). For example, for
//! `allocations` in database `cloudtuner` on cluster `prod`:
//!
//! ```sql
//! CREATE DATABASE IF NOT EXISTS `cloudtuner` ON CLUSTER `prod`
//! CREATE TABLE IF NOT EXISTS `cloudtuner`.allocations_local ON CLUSTER `prod` (cluster String, version UInt64, slot Int64, ...)
//!   ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/cloudtuner/allocations_local', '{replica}')
//!   PARTITION BY toYYYYMM(window_start) ORDER BY (window_start, cluster, namespace, controller, pod)
//! CREATE TABLE IF NOT EXISTS `cloudtuner`.allocations ON CLUSTER `prod` AS `cloudtuner`.allocations_local
//!   ENGINE = Distributed('prod', 'cloudtuner', 'allocations_local', cityHash64(cluster))
//! CREATE TABLE IF NOT EXISTS `cloudtuner`.sync_state_local ON CLUSTER `prod` (...)
//!   ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/cloudtuner/sync_state_local', '{replica}', commit_version)
//!   ORDER BY (cluster, endpoint, slot)
//! CREATE VIEW IF NOT EXISTS `cloudtuner`.allocations_current ON CLUSTER `prod` AS SELECT * FROM `cloudtuner`.allocations
//!   WHERE (cluster, slot, version) GLOBAL IN (SELECT cluster, slot, argMax(row_version, commit_version)
//!   FROM `cloudtuner`.sync_state WHERE endpoint = 'allocation' GROUP BY cluster, slot)
//! ```
//!
//! and the same pair for every other table. Inserts carry `insert_distributed_sync=1`, so rows
//! are on their shard before the checkpoint is sent (the commit order holds across shards);
//! the visibility subquery uses `GLOBAL IN`; mutations run `ALTER TABLE <t>_local ON CLUSTER`.
//! `cleanup` waits only for the mutations of the server it talks to. The integration tests run
//! single-server mode; the cluster DDL is checked by unit tests.

mod config;
mod error;
mod http;
mod insights;
mod query;
mod rowbinary;
mod rows;
mod schema;
mod store;

pub use config::{ClickHouseConfig, ClientTls, DEFAULT_BATCH_ROWS, DEFAULT_DATABASE, Secret};
pub use error::Error;
pub use schema::SCHEMA_VERSION;
pub use store::{ClickHouseStore, ClickHouseWindowWriter, StorageUsage};
