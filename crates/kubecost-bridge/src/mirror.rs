//! Mirrors: stores fed from the embedded store (ClickHouse today) rather than from Kubecost.
//!
//! The embedded SQLite store is the system of record: the extractor commits a window's rows
//! and checkpoint there first. A mirror then gets the same window, read back from SQLite and
//! written through the mirror's own `CostStore` port with the same checkpoint:
//! - right after each commit (the extractor sends the window on a bounded channel; when the
//!   channel is full the window waits for the next catch-up), and
//! - on a timer, by a catch-up that copies every window SQLite has and the mirror lacks,
//!   oldest first.
//!
//! So when a mirror is down or slow, nothing is lost and nothing waits in memory: the windows
//! it missed stay in SQLite (the spool, in effect: bounded by SQLite's retention, durable,
//! replayed in order once the mirror answers). The mirror's writes are idempotent (ClickHouse
//! versions each window write), so a window copied twice is counted once. The number of
//! windows a mirror lacks is its spool depth, logged by every catch-up.
//!
//! Not covered: a window re-extracted while the mirror is down keeps its older copy in the
//! mirror until it is extracted again (the catch-up copies missing windows, not changed ones).

use std::sync::Arc;
use std::time::Duration;

use kb_core::{Allocation, Resolution, Window};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint, StoreError};
use kb_pipeline::shutdown::Shutdown;
use kb_store::SqliteStore;
use tokio::sync::mpsc;

/// Rows per write to a mirror.
const BATCH: usize = 10_000;

/// Opens a mirror's store (it may be down: the worker retries on every catch-up).
pub(crate) type Opener = Arc<dyn Fn() -> Result<Arc<dyn CostStore>, StoreError> + Send + Sync>;

/// A store fed from the embedded one.
#[derive(Clone)]
pub(crate) struct Mirror {
    pub name: &'static str,
    pub open: Opener,
}

/// Copies one committed window of `cluster` from `primary` to the mirror.
pub(crate) fn copy_window(
    primary: &SqliteStore,
    mirror: &dyn CostStore,
    cp: &Checkpoint,
) -> Result<u64, StoreError> {
    let mut w = mirror.begin_allocations(&cp.cluster, cp.window, cp.resolution)?;
    let mut batch: Vec<Allocation> = Vec::with_capacity(BATCH);
    let mut err: Option<StoreError> = None;
    primary
        .allocations(&cp.cluster, cp.window, &mut |a| {
            batch.push(a);
            if batch.len() >= BATCH {
                if let Err(e) = w.write(&batch) {
                    err.get_or_insert(e);
                    return Err(StoreError::permanent("mirror write failed"));
                }
                batch.clear();
            }
            Ok(())
        })
        .map_err(|e| err.take().unwrap_or(e))?;
    if !batch.is_empty() {
        w.write(&batch)?;
    }
    Ok(w.commit(cp)?.rows)
}

/// Copies every allocation window `primary` holds and the mirror lacks; returns (windows
/// copied, windows still missing, rows copied).
pub(crate) fn catch_up(
    primary: &SqliteStore,
    store: &dyn CostStore,
    clusters: &[String],
    shutdown: &Shutdown,
) -> Result<(u64, u64, u64), StoreError> {
    let mut copied = 0;
    let mut missing = 0;
    let mut rows = 0;
    for cluster in clusters {
        let have: Vec<(Window, Resolution)> =
            store.synced_windows(cluster, Endpoint::Allocation, i64::MIN)?;
        let todo: Vec<Checkpoint> = primary
            .checkpoints(cluster, Endpoint::Allocation)?
            .into_iter()
            .filter(|cp| {
                !have
                    .iter()
                    .any(|(w, r)| *w == cp.window && *r == cp.resolution)
            })
            .collect();
        missing += todo.len() as u64;
        for cp in todo {
            if shutdown.is_triggered() {
                return Ok((copied, missing, rows));
            }
            rows += copy_window(primary, store, &cp)?;
            copied += 1;
            missing -= 1;
        }
    }
    Ok((copied, missing, rows))
}

/// A mirror's worker: copies windows as the extractor commits them, and catches up every
/// `every` (and once at start). Opens the mirror's store lazily, so a mirror that is down at
/// start-up is picked up once it answers.
pub(crate) async fn run(
    primary: Arc<SqliteStore>,
    m: Mirror,
    clusters: Vec<String>,
    mut committed: mpsc::Receiver<Checkpoint>,
    every: Duration,
    shutdown: Shutdown,
    metrics: Option<kb_ops::Metrics>,
) {
    let mut store: Option<Arc<dyn CostStore>> = None;
    let mut next_catch_up = tokio::time::Instant::now();
    loop {
        let cp = tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep_until(next_catch_up) => None,
            cp = committed.recv() => match cp {
                Some(cp) => Some(cp),
                None => break,
            },
        };
        let (p, mm, cl, sd, st) = (
            primary.clone(),
            m.clone(),
            clusters.clone(),
            shutdown.clone(),
            store.clone(),
        );
        let res = tokio::task::spawn_blocking(move || {
            let st = match st {
                Some(s) => s,
                None => (mm.open)()?,
            };
            let r = match cp {
                // A window committed while the mirror is not open yet waits for the catch-up.
                Some(cp) => copy_window(&p, st.as_ref(), &cp).map(|rows| (None, rows)),
                None => catch_up(&p, st.as_ref(), &cl, &sd)
                    .map(|(copied, missing, rows)| (Some((copied, missing)), rows)),
            };
            Ok::<_, StoreError>((st, r))
        })
        .await;
        match res {
            Ok(Ok((st, r))) => {
                store = Some(st);
                if let (Ok((_, rows)), Some(metrics)) = (&r, &metrics) {
                    metrics.add_rows_written(m.name, "allocations", *rows);
                }
                match r {
                    Ok((Some((copied, missing)), _)) => {
                        next_catch_up = tokio::time::Instant::now() + every;
                        if let Some(metrics) = &metrics {
                            // Windows the mirror still lacks: its spool depth (bytes live in
                            // SQLite, so none are counted here).
                            metrics.set_spool(m.name, missing, 0);
                        }
                        if copied > 0 || missing > 0 {
                            tracing::info!(store = m.name, copied, missing, "mirror caught up");
                        }
                    }
                    Ok((None, _)) => {}
                    Err(e) => {
                        // The window stays in SQLite; the next catch-up copies it.
                        tracing::warn!(store = m.name, error = %e, "mirror write failed; will retry");
                        next_catch_up = next_catch_up.min(tokio::time::Instant::now() + every);
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(store = m.name, error = %e, "cannot open the mirror; will retry");
                next_catch_up = tokio::time::Instant::now() + every;
            }
            Err(e) => tracing::error!(store = m.name, error = %e, "mirror task failed"),
        }
    }
}
