//! The audit log: one JSON line per API request (who, what, when, parameters, status, rows).
//!
//! Lines go through a bounded channel to a writer thread, so a slow disk never blocks a request:
//! when the channel is full the line is dropped and counted ([`AuditSink::dropped`]), and the
//! next line written says how many were lost (`"dropped_before"`).
//!
//! A line never holds a secret: the key is named by its configured id and name, and only the
//! query parameters an endpoint knows are written with their values (unknown ones by name).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::Serialize;

/// One request, as written to the audit log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// RFC3339 time the request arrived.
    pub ts: String,
    /// The key's configured id (`anonymous` when no valid key was given).
    pub key_id: String,
    pub key_name: String,
    pub method: String,
    /// The route template, e.g. `/api/v1/costs/kubernetes/{cluster}/namespaces`.
    pub route: String,
    /// The path as requested (without the query).
    pub path: String,
    /// The cluster of a per-cluster route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Query parameters; unknown ones have the value `<redacted>`.
    pub params: Vec<(String, String)>,
    pub status: u16,
    /// Rows of the answer's main array (0 for errors).
    pub rows: u64,
    pub duration_ms: f64,
    /// Served from the response cache.
    pub cached: bool,
    /// Lines lost before this one because the channel was full.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_before: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where audit lines go.
#[derive(Clone)]
pub struct AuditSink {
    tx: Option<SyncSender<AuditRecord>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("enabled", &self.tx.is_some())
            .field("dropped", &self.dropped())
            .finish()
    }
}

fn writer_loop(rx: Receiver<AuditRecord>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(rec) = next {
            if let Ok(mut line) = serde_json::to_vec(&rec) {
                line.push(b'\n');
                if let Err(e) = out.write_all(&line) {
                    tracing::warn!(error = %e, "api: audit log write failed");
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, "api: audit log flush failed");
        }
    }
    if let Err(e) = out.flush() {
        tracing::warn!(error = %e, "api: audit log flush failed");
    }
}

impl AuditSink {
    /// Writes lines to `out` (a file opened for append, or stdout) from a writer thread,
    /// holding at most `capacity` lines in flight.
    pub fn new(out: Box<dyn Write + Send>, capacity: usize) -> std::io::Result<AuditSink> {
        let (tx, rx) = sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name("kb-api-audit".to_string())
            .spawn(move || writer_loop(rx, out))?;
        Ok(AuditSink {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Writes nothing.
    pub fn disabled() -> AuditSink {
        AuditSink {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Lines dropped so far because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues a line without waiting.
    pub fn record(&self, mut rec: AuditRecord) {
        let Some(tx) = &self.tx else {
            return;
        };
        rec.dropped_before = self.dropped.swap(0, Ordering::Relaxed);
        match tx.try_send(rec) {
            Ok(()) => {}
            Err(TrySendError::Full(r)) | Err(TrySendError::Disconnected(r)) => {
                self.dropped
                    .fetch_add(1 + r.dropped_before, Ordering::Relaxed);
            }
        }
    }
}
