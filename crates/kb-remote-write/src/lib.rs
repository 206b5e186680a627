//! `kb-remote-write`: real-time Kubernetes costs from Prometheus metrics.
//!
//! - [`receiver`]: the remote_write 1.0 receiver (axum [`Router`](axum::Router)), a drop-in for
//!   CloudTuner's ingestion proxy: `Cloud-Account-Id` + Basic auth per data source, body and
//!   label limits, bounded queue with 429/503 backpressure, 2xx only after the sink confirmed.
//! - [`proto`]: snappy + protobuf `WriteRequest` decoding (a zero-copy walker) and encoding.
//! - [`exposition`] and [`scrape`]: the text-format parser and the `/metrics` scraper.
//! - [`sink`]: the [`SampleSink`] port both feed.
//! - [`state`] (pure) and [`live`]: Kubecost cost rates per container, pod, controller,
//!   namespace and cluster, accumulated cost, usage and efficiency ([`LiveCosts`]).
//!
//! Data flow: `HTTP body → decode (handler) → bounded queue → worker → SampleSink::write →
//! 204`; `scraper → parse → SampleSink::write`.

pub mod auth;
pub mod batch;
pub mod exposition;
pub mod live;
pub mod proto;
pub mod receiver;
pub mod scrape;
pub mod sink;
pub mod state;

pub use auth::{Secret, Source};
pub use batch::{DecodedBatch, Sample, Series};
pub use live::LiveCosts;
pub use proto::{DecodeError, DecodeLimits};
pub use receiver::{
    OverloadStatus, Receiver, ReceiverConfig, ReceiverError, ReceiverStats, RequestObserver,
    RequestOutcome,
};
pub use scrape::{ScrapeTarget, Scraper};
pub use sink::{SampleSink, SinkError};
pub use state::{DefaultPrices, LiveConfig};
