//! Operations for kubecost-bridge: its own metrics on `/metrics`, the seed's alerts evaluated
//! in-process, and their webhook notifications (issue 7, points 1 and 2).
//!
//! - [`metrics`]: the [`Metrics`] registry (every series of `deploy/prometheus/README.md`),
//!   the `/metrics` handler and the HTTP latency middleware.
//! - [`alerts`]: [`alerts::evaluate`] (pure), the [`alerts::AlertBook`] state machine,
//!   [`alerts::AlertStateStore`] (implemented for `kb_store::SqliteStore`) and
//!   [`alerts::run_alerts`], the evaluation loop.
//! - [`notify`]: webhook payloads (generic, Slack, Alertmanager) and delivery.
//! - [`config`]: [`AlertsConfig`], plain data the binary fills from `alerts.*`.
//!
//! # Wiring
//!
//! One [`Metrics`] (cheap to clone) is made at start-up with `Metrics::new(version)` and handed
//! to every component:
//!
//! | series | call | where |
//! | --- | --- | --- |
//! | `build_info` | [`Metrics::new`] | start-up |
//! | `extraction_runs_total` | [`Metrics::register_targets`] (clusters × enabled endpoints, at start-up), then [`Metrics::record_extraction`] once per window and endpoint after retries | extractor |
//! | `kubecost_request_duration_seconds` | [`Metrics::observe_kubecost_request`] (`None` status for connection errors, timeouts, truncated bodies) | extractor, around each Kubecost request |
//! | `data_freshness_seconds` | [`Metrics::set_last_success`] at start-up from the newest checkpoints and after each committed window; [`Metrics::register_freshness`] for `remote_write` | extractor, receiver |
//! | `rows_written_total` | [`Metrics::add_rows_written`] after a commit | each store |
//! | `spool_depth`, `spool_bytes` | [`Metrics::set_spool`] or [`Metrics::register_spool_probe`] | spools |
//! | `remote_write_*_total` | [`Metrics::register_remote_write_source`] per configured source at start-up, then [`Metrics::record_remote_write`] per answered request (the receiver's `RequestObserver`) | receiver |
//! | `reconciliation_relative_error` | [`Metrics::set_reconciliation_error`] | extractor |
//! | `storage_*` | [`Metrics::register_disk`] (SQLite: `"sqlite", "data", db path`); [`Metrics::set_storage`] (ClickHouse `system.disks`) | start-up / ClickHouse poller |
//! | `cost_increase_ratio` | [`Metrics::set_cost_increases`] per cluster after each aggregation ([`metrics::cost_increase_ratio`] computes one) | aggregator |
//! | `http_request_duration_seconds` | [`metrics::track_http`] around the API router | API |
//!
//! `/metrics`: merge [`metrics::metrics_router`] into the listener. Alerts: spawn
//! [`run_alerts`] with the config, an `Arc<dyn AlertStateStore>` (the `SqliteStore`, or
//! [`alerts::MemoryAlertStore`] without a local store) and the shutdown signal.

pub mod alerts;
pub mod config;
pub mod metrics;
pub mod notify;

pub use alerts::{AlertRules, AlertState, AlertStateStore, run_alerts};
pub use config::{AlertsConfig, WebhookConfig, WebhookFormat};
pub use metrics::{ExtractionOutcome, Metrics, RemoteWriteOutcome};
