//! The InfluxDB store of kubecost-bridge: [`InfluxStore`] implements the ports
//! [`kb_pipeline::ports::CostStore`] and [`kb_pipeline::ports::CostReader`] by InfluxDB line
//! protocol over HTTP, for InfluxDB 1.x (`/write`, also the v1-compatible endpoint of 2.x and
//! 3.x) and the v2 API (`/api/v2/write` with a token). It is meant as an extra *sink*: when
//! both are configured, the embedded SQLite store stays the system of record for checkpoints
//! (it plans the windows), budgets, savings and predictions.
//!
//! # Transport
//!
//! [`InfluxClient`]: one `reqwest` client with connect and total timeouts on every request,
//! driven by a small private tokio runtime (the ports are synchronous; same design as the
//! ClickHouse store). Bodies are gzip-compressed (`Content-Encoding: gzip`, level 1) and
//! batched ([`InfluxConfig::batch_lines`], 5000 lines by default). Credentials travel only in
//! the `Authorization` header (basic auth for a v1 user, `Token ...` for a v2 token), never in
//! a URL, a log line or an error message ([`Secret`] prints `***`, server messages are
//! scrubbed of the secret). The v1 database (default `cloudtuner`) is created at open with
//! `CREATE DATABASE` (idempotent).
//!
//! Errors map to [`kb_pipeline::ports::StoreError`]: connection errors, timeouts, 5xx, 408
//! and 429 are retryable; other 4xx are permanent; a refused point (`partial write: ...`,
//! `field type conflict`, an unparsable line: HTTP 400) is a permanent error carrying the
//! server's message, never swallowed; 401 and 403 are an `authentication failed for user
//! ...` error that names the user, never the secret.
//!
//! Encoding is separate from sending ([`LineBatch`], [`encode_allocations`],
//! [`encode_assets`], [`encode_live_cost`] return bytes; [`InfluxClient::send`] sends them), so
//! a durable spool can store encoded bodies as opaque records and replay them: sending a body
//! again is idempotent (see below).
//!
//! # Schema
//!
//! Line protocol details (timestamps in **seconds**, `precision=s`; money always a float and
//! never `1i`; non-finite values left out) are in the `line` module docs and
//! [`LineBatch`]'s methods. The measurements follow the seed design:
//!
//! | measurement | one point per | tags | fields |
//! |---|---|---|---|
//! | `cost_allocations` | allocation row Kubecost sent (pod-hour by default), at the start of the row's window | `allocation` (Kubecost's row key), `cluster` (the bridge's name), `namespace`, `pod`, `container`, `controller_kind`, `controller`, `node`, `resource_type` (`workload` / `idle` / `unmounted`), `owner`, `team` (pod label, else namespace label), `window_duration` (`1h`, `1d`) | `cpu_cost`, `memory_cost`, `gpu_cost`, `storage_cost`, `network_cost`, `load_balancer_cost` (with adjustments), `shared_cost`, `external_cost`, `total_cost`, `efficiency`, `efficiency_weight`, `weighted_efficiency`, usage hours, `minutes` |
//! | `asset_costs` | asset, at the start of its window | `asset` (key), `asset_name`, `asset_type`, `cluster`, `instance_type`, `node_type` (`spot` / `on_demand`), `storage_class`, `zone`, `window_duration` | `cpu_cores`, `memory_gb`, `storage_gb`, `gpu_count`, `cpu_cost`, `memory_cost`, `gpu_cost`, `adjustment`, `total_cost`, `minutes` |
//! | `live_costs` | cluster or namespace and instant | `cluster`, `namespace` | `*_rate` in currency per hour |
//! | `kubecost_bridge_sync` | committed window (checkpoint), or window being written (marker) | `cluster`, `endpoint` | `window_end`, `resolution`, `state` (`pending` / `committed`), `synced_at`, `rows`, `null_fields`, `response_total_cost` |
//! | `kubecost_bridge_reconciliation` | checked window | `cluster`, `endpoint` | `window_end`, `expected`, `stored`, `relative_error`, `checked_at` |
//!
//! The seed lists fields for `cpu/memory/network/storage/total_cost` and the tags
//! `resource_type, owner, team`: the store writes one point per allocation with all cost
//! fields (so `sum(total_cost)` is the window's cost, the same number as the SQLite store),
//! not one point per resource type; `resource_type` says what the row is.
//!
//! # Idempotency and window rewrites
//!
//! InfluxDB keeps one point per measurement, tag set and timestamp: writing it again
//! overwrites it (last write wins). Every tag and the timestamp are functions of the row
//! (the `allocation` tag is Kubecost's key of the row, unique in its set; the timestamp is the
//! start of the row's own window), so writing the same rows again, or replaying a spooled
//! body, never counts twice.
//!
//! Rows that disappear from Kubecost's answer in a rewrite would linger, so a commit with
//! [`InfluxConfig::replace_windows`] (the default) replaces the window, in this order:
//!
//! 1. look for a checkpoint or pending marker of the cluster and endpoint that overlaps the
//!    window (one cheap `SELECT` on `kubecost_bridge_sync`). Only when there is one, the store
//!    may hold rows in the window, and it deletes, checkpoints first:
//!    `DELETE FROM kubecost_bridge_sync WHERE cluster = .. AND endpoint = .. AND time >= ..s
//!    AND time < ..s`, then `DELETE FROM cost_allocations WHERE cluster = .. AND time >= ..s
//!    AND time < ..s` (2.x: `/api/v2/delete` with a predicate, always, as reads need a DBRP
//!    mapping there). Deleting is the costly step on 1.x (it visits every series of the
//!    cluster), so a window written for the first time skips it;
//! 2. write a *pending marker*: the checkpoint's point with `state = "pending"` only;
//! 3. send the rows (the writer kept them as compressed bodies since `write`; two requests
//!    in flight);
//! 4. write the checkpoint (`state = "committed"`), last, over the marker.
//!
//! InfluxDB has no transactions, so this is not atomic. What holds: a dropped writer sends
//! nothing (the store is as it was); a crash or error between 1 and 4 leaves the window
//! *without a checkpoint* (the marker is not one; the window is extracted again on the next
//! run, and that commit finds the marker and deletes the half-written rows), never a
//! checkpoint without its rows; readers may see a window half written while a commit runs. A
//! daily window deletes the checkpoints and rows of the hours it covers.
//!
//! InfluxDB answers 204 only when it stored every point of a body, and the writer refuses two
//! rows with the same series and timestamp (InfluxDB would keep one), so after step 4 the
//! window holds exactly the rows written: the returned [`kb_pipeline::ports::WindowStats`] are
//! theirs (no read-back query, which costs as much as the delete on 1.x).
//!
//! On servers without deletes (3.x), turn `replace_windows` off: rewrites then only
//! overwrite the points written again, and rows missing from a rewrite stay.
//!
//! # The rest of the port
//!
//! - `synced_windows`: the committed points of `kubecost_bridge_sync` (InfluxQL `SELECT`).
//! - `record_reconciliation`: one point per cluster, endpoint and window start; a newer check
//!   overwrites the older.
//! - `cleanup(before)`: for each `window_duration` tag value `d`, counts and deletes the
//!   points of `cost_allocations` and `asset_costs` that started at or before `before - d`
//!   (so their window ended by `before`); checkpoints stay. A retention policy on the
//!   database is the InfluxDB-native alternative.
//! - `put_budgets`, `put_savings`, `put_predictions`: not time series; accepted and ignored
//!   (the SQLite store keeps them).
//! - Reads: [`kb_pipeline::ports::CostReader`] (cost queries by InfluxQL `GROUP BY`, see the
//!   `read` module; clusters from the tag values and checkpoints; reconciliations),
//!   [`InfluxStore::window_total`], [`InfluxStore::asset_total`], [`InfluxStore::checkpoints`],
//!   and raw InfluxQL through [`InfluxClient::query`]. Reads use `/query` (on 2.x this needs a
//!   DBRP mapping for the bucket).
//!
//! The store passes the conformance suite (`kb-conformance`) except `small_tables`, which
//! does not apply (budgets, savings and predictions are not kept).

mod client;
mod config;
mod error;
mod line;
mod read;
mod store;

pub use client::{InfluxClient, Series, gzip};
pub use config::{
    ClientTls, DEFAULT_BATCH_LINES, DEFAULT_DATABASE, InfluxApi, InfluxConfig, Secret,
};
pub use error::Error;
pub use line::{
    ALLOCATIONS, ASSETS, LIVE_COSTS, LineBatch, LiveCostRates, RECONCILIATIONS, SYNC, duration_tag,
    encode_allocations, encode_assets, encode_live_cost, normalize_tag, resource_type,
};
pub use store::{InfluxStore, InfluxWindowWriter};
