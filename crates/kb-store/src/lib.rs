//! Stores for kubecost-bridge: the embedded SQLite store, [`SqliteStore`], the default.
//!
//! It implements the pipeline's ports [`kb_pipeline::ports::CostStore`] (what the extractor
//! writes) and [`kb_pipeline::ports::CostReader`] (what the REST API reads), keeping their
//! contract: a window's rows and its checkpoint commit together, writing a window replaces what
//! the store held for that cluster inside it, and a writer dropped without commit (or a crash)
//! changes nothing.
//!
//! # Schema
//!
//! Forward-only migrations ([`schema::MIGRATIONS`]); `PRAGMA user_version` is the number run.
//!
//! Dimension tables with integer ids and UNIQUE natural keys (cached in memory by the writers):
//! `clusters(name)` (the bridge's cluster name), `namespaces(cluster_id, name)`,
//! `controllers(namespace_id, kind, name)`, `nodes(cluster_id, name, provider_id)`,
//! `pods(controller_id, name, node_id)`, `label_sets(hash, json)` (pod labels, annotations and
//! namespace labels as JSON objects, services as a JSON array). Missing properties are stored
//! as the empty string, so every fact row has every dimension (no NULL joins).
//!
//! Fact table `allocations`, one row per allocation row Kubecost sent (pod-hour grain for the
//! bridge's default queries): `cluster_id`, `window_start`, `window_end`, `resolution` (`1h` /
//! `1d`), `name` (Kubecost's allocation key, kept for idle and unmounted rows),
//! `source_cluster` (Kubecost's own cluster property), the dimension ids, `container`,
//! `is_idle`, `run_start` / `run_end` (Kubecost's `start` / `end`), `minutes`, `null_fields`
//! and every quantity and cost of [`kb_core::Allocation`]. Column names follow the seed where
//! it names the cost, Kubecost otherwise:
//!
//! | column | `kb_core::Allocation` field (Kubecost JSON) |
//! |---|---|
//! | `cpu_cost` | `cpu_cost` (`cpuCost`) |
//! | `memory_cost` | `ram_cost` (`ramCost`) |
//! | `storage_cost` | `pv_cost` (`pvCost`) |
//! | `network_cost` | `network_cost` (`networkCost`) |
//! | `total_cost` | `total_cost` (`totalCost`) |
//! | `efficiency_score` | `total_efficiency` (`totalEfficiency`) |
//! | every other column | the field of the same name (`cpu_core_hours` = `cpuCoreHours`, `ram_cost_adjustment` = `ramCostAdjustment`, `pv_cost_adjustment` = `pvCostAdjustment`, ...) |
//!
//! `assets` keeps every field of [`kb_core::Asset`] under Kubecost's names (`asset_key` is the
//! asset's key), keyed by cluster, window and key. `budgets`, `predictions` and `savings` hold
//! the latest list per cluster. `sync_state` holds the checkpoints (PRIMARY KEY cluster,
//! endpoint, window_start, window_end) and `reconciliations` one result per cluster, endpoint
//! and window.
//!
//! Indexes: `allocations(cluster_id, window_start, window_end)` serves the cost queries, the
//! window totals and the replace-window delete.
//!
//! Money is `f64` and never NULL: the model's numbers are already finite, and the writers bind
//! a non-finite number as 0 all the same (SQLite would otherwise store NaN as NULL).

mod alerts;
mod dims;
pub mod error;
mod insights;
mod query;
mod read;
pub mod schema;
mod sqlite;

pub use error::StoreError;
pub use sqlite::{SqliteStore, SqliteWindowWriter, StoreStats};
