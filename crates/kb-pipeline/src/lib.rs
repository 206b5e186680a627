//! The application layer of kubecost-bridge: the ports that adapters implement and the runtime
//! semantics shared by every job (retry with backoff, cron schedules, shutdown).
//!
//! - [`ports`]: the traits between the extractor and its adapters (Kubecost source, store).
//! - [`insights`]: the ports for the aggregator's results (summaries, anomalies, forecasts)
//!   and the API's reads of them.
//! - [`retry`]: exponential backoff with full jitter, `Retry-After`, and retry hints.
//! - [`schedule`]: cron schedules that watch shutdown.
//! - [`secret`]: the one redacting type for passwords and tokens.
//! - [`shutdown`]: a cloneable shutdown signal.
//! - [`tls`]: the TLS settings (CA, client certificate) of an HTTPS client to a store.
//!
//! It depends on `kb-core` and `kb-analytics` (both pure) and never on an adapter crate.

pub mod insights;
pub mod ports;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod shutdown;
pub mod tls;
