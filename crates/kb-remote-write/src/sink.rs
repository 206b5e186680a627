//! The port between the receiver/scraper and whatever keeps the samples.

use crate::batch::DecodedBatch;

/// Takes decoded batches. `write` returns only once the batch is kept as durably as the sink
/// promises (the receiver answers 2xx only after `Ok`). It runs on a blocking thread, one batch
/// at a time per receiver, in arrival order.
///
/// `cluster` is the configured cluster of the data source (or scrape target); sinks must not
/// take the cluster from series labels. A sink must tolerate a batch written twice (a request
/// retried after its confirmation timed out).
pub trait SampleSink: Send + Sync + 'static {
    /// Keeps a batch for `cluster`.
    fn write(&self, cluster: &str, batch: &DecodedBatch) -> Result<(), SinkError>;
}

/// A sink failure; the receiver answers 503 so the sender retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink: {message}")]
pub struct SinkError {
    message: String,
}

impl SinkError {
    /// Makes an error with a message (never put secrets in it).
    pub fn new(message: impl Into<String>) -> SinkError {
        SinkError {
            message: message.into(),
        }
    }
}

impl<S: SampleSink + ?Sized> SampleSink for std::sync::Arc<S> {
    fn write(&self, cluster: &str, batch: &DecodedBatch) -> Result<(), SinkError> {
        (**self).write(cluster, batch)
    }
}
