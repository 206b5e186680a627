//! The delivery worker: drains a [`Spool`] in order into a backend.
//!
//! Shutdown: [`kb_pipeline::shutdown::Shutdown`] is tokio-based and this worker is a plain
//! thread, so the worker has its own stop flag. Call [`Deliverer::shutdown`] (or
//! [`StopHandle::stop`] from an async task that awaited `Shutdown::wait`); either wakes the
//! worker at once, whether it waits for records or backs off. A delivery in progress is not
//! interrupted: [`Delivery::deliver`] must have its own timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Seq, SpoolError};
use crate::spool::{Spool, SpoolDepth};

/// Why a delivery failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What failed, lowercase, without secrets; written next to a dead-lettered record.
    pub message: String,
    /// True for a backend that is down, slow or overloaded; false when the record itself is
    /// refused (bad request, schema mismatch) and retrying cannot help.
    pub retryable: bool,
    /// The backend's own `Retry-After`, used instead of the backoff (capped by `max_delay`).
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that retrying cannot fix: the record goes to `dead/`.
    pub fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// A backend that takes encoded batches.
///
/// `deliver` returns `Ok` only once the backend holds the payload durably; it is called with
/// the same payload again after a crash or a retryable error (at-least-once), so backends must
/// write idempotently (replacing keys, deduplicating tables). It must time out on its own.
/// It may be called from the worker thread and from [`Deliverer::write_through`] callers.
pub trait Delivery: Send + Sync {
    fn deliver(&self, kind: u16, payload: &[u8]) -> Result<(), DeliveryError>;
}

/// How the worker retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelivererConfig {
    /// Delay cap for the first retry; doubles on each retry of the same record.
    pub base_delay: Duration,
    /// Largest delay between two attempts. Retries of a record never stop (order is strict),
    /// so this is also how stale a recovered backend may wait at most.
    pub max_delay: Duration,
}

impl Default for DelivererConfig {
    fn default() -> Self {
        // The numbers of `kb_pipeline::retry::RetryPolicy::default()`.
        DelivererConfig {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl DelivererConfig {
    /// The full-jitter delay before retry number `retry` (0 first): uniform in
    /// `[0, min(max_delay, base_delay × 2^retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.as_secs_f64() * 2f64.powi(retry.min(30) as i32);
        let cap = exp.min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(cap * fastrand::f64())
    }
}

/// Counters since the worker started, and the spool's depth now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelivererStats {
    /// Records delivered from the spool.
    pub delivered: u64,
    /// Records [`Deliverer::write_through`] delivered directly, never spooled.
    pub direct: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Records moved to `dead/` after a permanent error.
    pub dead: u64,
    /// Spool errors (reading, acknowledging, dead-lettering) the worker backed off from.
    pub spool_errors: u64,
    pub depth: SpoolDepth,
}

/// What [`Deliverer::write_through`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The backend took it directly (the spool was empty); nothing was written to disk.
    Delivered,
    /// It is durable in the spool with this sequence number; the worker will deliver it.
    Spooled(Seq),
    /// The backend refused it permanently; it was written to `dead/` with the error.
    Dead,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    direct: AtomicU64,
    retries: AtomicU64,
    dead: AtomicU64,
    spool_errors: AtomicU64,
}

struct Shared {
    spool: Arc<Spool>,
    delivery: Arc<dyn Delivery>,
    cfg: DelivererConfig,
    stop: AtomicBool,
    sleep_lock: Mutex<()>,
    sleep_cv: Condvar,
    /// Serializes `write_through` callers, which gives them one order.
    direct_lock: Mutex<()>,
    counters: Counters,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        drop(
            self.sleep_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.sleep_cv.notify_all();
        self.spool.wake();
    }

    /// Sleeps for `d` unless stopped first; returns false if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self
            .sleep_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            g = self
                .sleep_cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Stops a [`Deliverer`] from anywhere (another thread, an async shutdown task).
#[derive(Clone)]
pub struct StopHandle(Arc<Shared>);

impl StopHandle {
    /// Asks the worker to stop after the delivery in progress, if any. Idempotent.
    pub fn stop(&self) {
        self.0.stop();
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.0.stopped())
            .finish()
    }
}

/// A worker thread that delivers a spool's records in order; stopped and joined on drop.
///
/// Guarantees: records are delivered in sequence order, one at a time; a record is
/// acknowledged (removed from the spool) only after `deliver` returned `Ok` or it was written
/// to `dead/`. A retryable error is retried forever with capped full-jitter backoff, never
/// skipping to a later record. A crash or stop between `deliver` returning and the ack replays
/// that one record after restart (at-least-once; at most the in-flight record is repeated).
pub struct Deliverer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Deliverer {
    /// Starts the worker thread.
    pub fn start(
        spool: Arc<Spool>,
        delivery: Arc<dyn Delivery>,
        cfg: DelivererConfig,
    ) -> Result<Deliverer, SpoolError> {
        let shared = Arc::new(Shared {
            spool,
            delivery,
            cfg,
            stop: AtomicBool::new(false),
            sleep_lock: Mutex::new(()),
            sleep_cv: Condvar::new(),
            direct_lock: Mutex::new(()),
            counters: Counters::default(),
        });
        let worker = Arc::clone(&shared);
        let dir = shared.spool.dir().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("kb-spool-deliver".into())
            .spawn(move || run(&worker))
            .map_err(|e| SpoolError::io("start worker for", dir, e))?;
        Ok(Deliverer {
            shared,
            thread: Some(thread),
        })
    }

    /// Returns the spool the worker drains.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.shared.spool
    }

    /// Returns a handle that stops the worker.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.shared))
    }

    /// Returns the counters and the spool's depth.
    pub fn stats(&self) -> DelivererStats {
        let c = &self.shared.counters;
        DelivererStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            direct: c.direct.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            dead: c.dead.load(Ordering::Relaxed),
            spool_errors: c.spool_errors.load(Ordering::Relaxed),
            depth: self.shared.spool.depth(),
        }
    }

    /// Stops the worker (after the delivery in progress) and waits for it; returns the final
    /// stats. Unacknowledged records stay in the spool for the next start.
    pub fn shutdown(mut self) -> DelivererStats {
        self.stop_and_join();
        self.stats()
    }

    fn stop_and_join(&mut self) {
        self.shared.stop();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("spool delivery worker panicked");
            }
        }
    }

    /// Makes a record durable, delivering it directly when nothing is spooled.
    ///
    /// Calls to `write_through` are serialized (a mutex held through the call), and records
    /// reach the backend in the order the calls took it, interleaved correctly with spooled
    /// records:
    ///
    /// - if the spool holds unacknowledged records (the worker is behind, or a record is in
    ///   flight), the record is appended behind them, never delivered around them;
    /// - if the spool is empty, `deliver` is tried once on the caller's thread (no disk write).
    ///   On `Ok` it returns [`WriteOutcome::Delivered`]. On a retryable error the record is
    ///   appended and the worker retries it (the failed attempt may have reached the backend
    ///   anyway: idempotent writes absorb the repeat). On a permanent error it is buried in
    ///   `dead/` ([`WriteOutcome::Dead`]).
    ///
    /// When it returns `Ok`, the record is durable: in the backend, in the spool (per the
    /// fsync policy) or in `dead/`, so the caller may acknowledge upstream. On `Err` (for
    /// instance [`SpoolError::Full`]) nothing was stored: do not acknowledge upstream; back off
    /// and try again. Records appended straight to the spool by other callers while a direct
    /// delivery is in flight are not ordered relative to it.
    pub fn write_through(&self, kind: u16, payload: &[u8]) -> Result<WriteOutcome, SpoolError> {
        let s = &self.shared;
        let _order = s.direct_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if s.spool.is_empty() {
            match s.delivery.deliver(kind, payload) {
                Ok(()) => {
                    s.counters.direct.fetch_add(1, Ordering::Relaxed);
                    return Ok(WriteOutcome::Delivered);
                }
                Err(e) if !e.retryable => {
                    s.spool.bury(None, kind, payload, &e.message)?;
                    s.counters.dead.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(kind, "record refused by the backend, moved to dead/: {e}");
                    return Ok(WriteOutcome::Dead);
                }
                Err(e) => {
                    tracing::debug!(kind, "direct delivery failed, spooling: {e}");
                }
            }
        }
        let seq = s.spool.append(kind, payload)?;
        Ok(WriteOutcome::Spooled(seq))
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// How long an idle worker waits before checking its stop flag on its own; appends and stops
/// wake it sooner, so this only bounds a missed wakeup.
const IDLE_WAIT: Duration = Duration::from_secs(5);

fn run(s: &Shared) {
    let mut retry = 0u32;
    while !s.stopped() {
        let record = match s.spool.peek() {
            Ok(Some(r)) => r,
            Ok(None) => {
                s.spool.wait_for_record(&s.stop, IDLE_WAIT);
                continue;
            }
            Err(e) => {
                s.counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("reading the spool: {e}");
                if !s.sleep(s.cfg.delay(retry).max(Duration::from_millis(10))) {
                    return;
                }
                retry = retry.saturating_add(1);
                continue;
            }
        };
        let settled = match s.delivery.deliver(record.kind, &record.payload) {
            Ok(()) => Settled::Delivered,
            Err(e) if e.retryable => {
                s.counters.retries.fetch_add(1, Ordering::Relaxed);
                let delay = e
                    .retry_after
                    .map_or_else(|| s.cfg.delay(retry), |d| d.min(s.cfg.max_delay));
                tracing::warn!(
                    seq = record.seq,
                    kind = record.kind,
                    retry,
                    delay_ms = delay.as_millis() as u64,
                    "delivery failed, retrying: {e}"
                );
                retry = retry.saturating_add(1);
                if !s.sleep(delay) {
                    return;
                }
                continue;
            }
            Err(e) => match s
                .spool
                .bury(Some(record.seq), record.kind, &record.payload, &e.message)
            {
                Ok(path) => {
                    tracing::error!(
                        seq = record.seq,
                        kind = record.kind,
                        dead_file = %path.display(),
                        "record refused by the backend, moved to dead/: {e}"
                    );
                    Settled::Dead
                }
                Err(b) => {
                    s.counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(seq = record.seq, "writing a dead record: {b}");
                    if !s.sleep(s.cfg.delay(retry).max(Duration::from_millis(10))) {
                        return;
                    }
                    retry = retry.saturating_add(1);
                    continue;
                }
            },
        };
        // Acknowledge; on failure retry the ack alone (re-delivering is also safe, but the
        // backend already has the record).
        let mut ack_retry = 0u32;
        loop {
            match s.spool.ack(record.seq) {
                Ok(()) => break,
                Err(e) => {
                    s.counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(seq = record.seq, "acknowledging a delivered record: {e}");
                    if !s.sleep(s.cfg.delay(ack_retry).max(Duration::from_millis(10))) {
                        return;
                    }
                    ack_retry = ack_retry.saturating_add(1);
                }
            }
        }
        match settled {
            Settled::Delivered => s.counters.delivered.fetch_add(1, Ordering::Relaxed),
            Settled::Dead => s.counters.dead.fetch_add(1, Ordering::Relaxed),
        };
        retry = 0;
    }
}

enum Settled {
    Delivered,
    Dead,
}
