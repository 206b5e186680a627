//! The application layer of kubecost-bridge: the ports that adapters implement and the runtime
//! semantics shared by every job (retry with backoff, cron schedules, shutdown).
//!
//! - [`ports`]: the traits between the extractor and its adapters (Kubecost source, store).
//! - [`retry`]: exponential backoff with full jitter, `Retry-After`, and retry hints.
//! - [`schedule`]: cron schedules that watch shutdown.
//! - [`shutdown`]: a cloneable shutdown signal.
//!
//! It depends on `kb-core` and never on an adapter crate.

pub mod ports;
pub mod retry;
pub mod schedule;
pub mod shutdown;
