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
//! For ClickHouse, which can serve the API (`api.query_store: clickhouse`), each catch-up
//! then copies the aggregator's results and Kubecost's lists ([`sync_insights`]): units whose
//! fingerprint over SQLite's rows differs from the mark left in ClickHouse by the last copy.
//! Why here and not a second store behind the aggregator: the aggregator then never waits on
//! ClickHouse, and a ClickHouse outage is covered by the same catch-up as the windows.
//!
//! Not covered: a window re-extracted while the mirror is down keeps its older copy in the
//! mirror until it is extracted again (the catch-up copies missing windows, not changed ones).

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use kb_analytics::{Dimension, Granularity};
use kb_clickhouse::ClickHouseStore;
use kb_core::window::{DAY, floor_to};
use kb_core::{Allocation, Resolution, Window};
use kb_pipeline::insights::{InsightReader, InsightStore, Source, StoredSummary, SummaryQuery};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint, StoreError};
use kb_pipeline::shutdown::Shutdown;
use kb_store::SqliteStore;
use tokio::sync::mpsc;

/// Rows per write to a mirror.
const BATCH: usize = 10_000;
/// How far back a routine catch-up compares insight units (the scheduled aggregator rewrites
/// the last `aggregation.lookback`, 2 days by default; month rollups start earlier and are
/// compared from the start of the month this reaches into).
const RECENT: Duration = Duration::from_secs(4 * 86_400);
/// How often a catch-up compares every insight unit (history aggregated again by hand).
const FULL_SCAN_EVERY: Duration = Duration::from_secs(6 * 3600);

/// What a mirror writes to: its `CostStore`, and for ClickHouse (which can serve the API) the
/// same store for the aggregator's results and Kubecost's lists.
#[derive(Clone)]
pub(crate) struct Target {
    pub cost: Arc<dyn CostStore>,
    pub insights: Option<Arc<ClickHouseStore>>,
}

/// Opens a mirror's store (it may be down: the worker retries on every catch-up).
pub(crate) type Opener = Arc<dyn Fn() -> Result<Target, StoreError> + Send + Sync>;

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

/// Copies every allocation window `primary` holds and the mirror lacks, then (for a mirror
/// that serves the API) the insights and lists that differ; returns (windows copied, windows
/// still missing, rows copied).
///
/// `since` limits the insight comparison to units starting at or after it (`None`: all).
pub(crate) fn catch_up(
    primary: &SqliteStore,
    target: &Target,
    clusters: &[String],
    shutdown: &Shutdown,
    since: Option<i64>,
) -> Result<(u64, u64, u64), StoreError> {
    let (copied, missing, rows) =
        catch_up_windows(primary, target.cost.as_ref(), clusters, shutdown)?;
    let mut rows = rows;
    if let Some(ch) = &target.insights
        && !shutdown.is_triggered()
    {
        rows += sync_insights(primary, ch, clusters, shutdown, since)?;
    }
    Ok((copied, missing, rows))
}

/// Copies every allocation window `primary` holds and the mirror lacks; returns (windows
/// copied, windows still missing, rows copied).
fn catch_up_windows(
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

/// Publishes ClickHouse's storage as `kubecost_bridge_storage_*{store="clickhouse"}`: one
/// series per disk of `system.disks` (used and total space), and `disk="database"` for the
/// database's active parts, with the disks' total as its capacity (0 when the server does not
/// report disks, as 18.16 does not; the ratio is then left out).
pub(crate) fn publish_storage(metrics: &kb_ops::Metrics, u: &kb_clickhouse::StorageUsage) {
    let total: u64 = u.disks.iter().map(|(_, _, t)| *t).sum();
    metrics.set_storage("clickhouse", "database", u.parts_bytes, total);
    for (disk, used, cap) in &u.disks {
        metrics.set_storage("clickhouse", disk, *used, *cap);
    }
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
    let mut store: Option<Target> = None;
    let mut next_catch_up = tokio::time::Instant::now();
    // The insights are compared in full on the first catch-up and every FULL_SCAN_EVERY;
    // in between, only the recent units the scheduled aggregator rewrites.
    let mut next_full = tokio::time::Instant::now();
    loop {
        let cp = tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep_until(next_catch_up) => None,
            cp = committed.recv() => match cp {
                Some(cp) => Some(cp),
                None => break,
            },
        };
        let full = cp.is_none() && tokio::time::Instant::now() >= next_full;
        let since = (!full).then(|| chrono::Utc::now().timestamp() - RECENT.as_secs() as i64);
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
                Some(cp) => copy_window(&p, st.cost.as_ref(), &cp).map(|rows| (None, rows)),
                None => catch_up(&p, &st, &cl, &sd, since)
                    .map(|(copied, missing, rows)| (Some((copied, missing)), rows)),
            };
            // ClickHouse's storage, read after each catch-up for `/metrics`.
            let usage = match (&r, &st.insights) {
                (Ok((Some(_), _)), Some(ch)) => match ch.storage_usage() {
                    Ok(u) => Some(u),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read ClickHouse's storage usage");
                        None
                    }
                },
                _ => None,
            };
            Ok::<_, StoreError>((st, r, usage))
        })
        .await;
        match res {
            Ok(Ok((st, r, usage))) => {
                store = Some(st);
                if let (Some(u), Some(metrics)) = (usage, &metrics) {
                    publish_storage(metrics, &u);
                }
                if let (Ok((_, rows)), Some(metrics)) = (&r, &metrics) {
                    metrics.add_rows_written(m.name, "allocations", *rows);
                }
                match r {
                    Ok((Some((copied, missing)), _)) => {
                        next_catch_up = tokio::time::Instant::now() + every;
                        if full {
                            next_full = tokio::time::Instant::now() + FULL_SCAN_EVERY;
                        }
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

/// The whole time axis, for reading everything the embedded store holds of a cluster.
const ALL_TIME: Window = Window {
    start: i64::MIN / 2,
    end: i64::MAX / 2,
};

/// A fingerprint of what a unit holds (stable within a build; a new build's hasher at worst
/// makes the mirror copy each unit once more).
fn fingerprint(feed: impl FnOnce(&mut std::hash::DefaultHasher)) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    feed(&mut h);
    h.finish()
}

fn hash_summary(h: &mut std::hash::DefaultHasher, s: &StoredSummary) {
    let x = &s.summary;
    (
        s.source.as_str(),
        s.rules_version,
        x.dimension.as_str(),
        x.bucket.start,
        x.bucket.end,
        &x.namespace,
        &x.name,
        x.totals.rows,
    )
        .hash(h);
    let t = &x.totals;
    for v in [
        t.total_cost,
        t.cpu_cost,
        t.memory_cost,
        t.gpu_cost,
        t.network_cost,
        t.storage_cost,
        t.load_balancer_cost,
        t.external_cost,
        t.shared_cost,
        t.idle_cost,
        t.usage_cost,
        t.request_cost,
        x.efficiency_score,
    ] {
        v.to_bits().hash(h);
    }
}

/// The mirror unit of a summary bucket: its UTC day (hour and day summaries) or its month.
fn unit_of(g: Granularity, bucket_start: i64) -> Window {
    match g {
        Granularity::Month => g.bucket(bucket_start),
        _ => {
            let d = floor_to(bucket_start, DAY);
            Window {
                start: d,
                end: d + DAY,
            }
        }
    }
}

/// Units from `from` on whose fingerprint differs from the mirror's mark, plus units the
/// mirror has marked that the embedded store no longer holds (they are written empty).
fn changed<T>(
    ours: &BTreeMap<i64, (u64, T)>,
    marks: &[(i64, u64)],
    empty: u64,
    from: i64,
) -> (Vec<i64>, Vec<i64>) {
    let marked: BTreeMap<i64, u64> = marks.iter().copied().filter(|(u, _)| *u >= from).collect();
    let changed = ours
        .iter()
        .filter(|(u, (fp, _))| marked.get(u) != Some(fp))
        .map(|(u, _)| *u)
        .collect();
    let gone = marked
        .iter()
        .filter(|(u, fp)| !ours.contains_key(u) && **fp != empty)
        .map(|(u, _)| *u)
        .collect();
    (changed, gone)
}

/// Copies to ClickHouse the aggregator's results (summaries, anomalies, forecasts, the
/// bridge's recommendations) and Kubecost's lists (budgets, savings, predictions) that differ
/// from the embedded store's, so ClickHouse can serve the API. Each kind is split into units (a day, a month, or the whole
/// list); a unit is copied when its fingerprint differs from the mark the mirror left in
/// ClickHouse with its last copy. Returns the rows copied.
pub(crate) fn sync_insights(
    primary: &SqliteStore,
    ch: &ClickHouseStore,
    clusters: &[String],
    shutdown: &Shutdown,
    since: Option<i64>,
) -> Result<u64, StoreError> {
    let empty = fingerprint(|_| {});
    let mut rows = 0u64;
    for cluster in clusters {
        for g in Granularity::ALL {
            if shutdown.is_triggered() {
                return Ok(rows);
            }
            // The first unit compared: the unit `since` falls in (the whole axis for `None`).
            let from = since.map_or(ALL_TIME.start, |t| unit_of(g, t).start);
            let mut units: BTreeMap<i64, (u64, Vec<StoredSummary>)> = BTreeMap::new();
            for dimension in Dimension::ALL {
                for s in primary.summaries(&SummaryQuery {
                    cluster: Some(cluster.clone()),
                    dimension,
                    granularity: g,
                    range: Window {
                        start: from,
                        end: ALL_TIME.end,
                    },
                    namespace: None,
                    name: None,
                })? {
                    units
                        .entry(unit_of(g, s.summary.bucket.start).start)
                        .or_default()
                        .1
                        .push(s);
                }
            }
            for (fp, list) in units.values_mut() {
                *fp = fingerprint(|h| list.iter().for_each(|s| hash_summary(h, s)));
            }
            let kind = format!("summaries:{}", g.as_str());
            let (todo, gone) = changed(&units, &ch.mirror_marks(cluster, &kind)?, empty, from);
            let mut marks = Vec::new();
            for unit in todo.iter().chain(&gone) {
                let range = unit_of(g, *unit);
                let list = units
                    .get(unit)
                    .map(|(_, l)| l.as_slice())
                    .unwrap_or_default();
                for source in [Source::Api, Source::Realtime] {
                    let part: Vec<_> = list.iter().filter(|s| s.source == source).collect();
                    let rules = part.iter().map(|s| s.rules_version).max().unwrap_or(0);
                    let sums: Vec<_> = part.iter().map(|s| s.summary.clone()).collect();
                    rows += ch.put_summaries(cluster, g, range, source, rules, &sums)?;
                }
                marks.push((*unit, units.get(unit).map_or(empty, |(fp, _)| *fp)));
            }
            ch.set_mirror_marks(cluster, &kind, &marks)?;
        }

        let from = since.map_or(ALL_TIME.start, |t| floor_to(t, DAY));
        let mut units: BTreeMap<i64, (u64, Vec<kb_analytics::anomaly::Anomaly>)> = BTreeMap::new();
        let range = Window {
            start: from,
            end: ALL_TIME.end,
        };
        for a in primary.anomalies(Some(cluster), range)? {
            // Overlapping anomalies that start before `from` belong to units not compared.
            if a.start >= from {
                units.entry(floor_to(a.start, DAY)).or_default().1.push(a);
            }
        }
        for (fp, list) in units.values_mut() {
            *fp = fingerprint(|h| format!("{list:?}").hash(h));
        }
        let (todo, gone) = changed(&units, &ch.mirror_marks(cluster, "anomalies")?, empty, from);
        let mut marks = Vec::new();
        for unit in todo.iter().chain(&gone) {
            let list = units
                .get(unit)
                .map(|(_, l)| l.as_slice())
                .unwrap_or_default();
            ch.put_anomalies(
                cluster,
                Window {
                    start: *unit,
                    end: unit + DAY,
                },
                list,
            )?;
            rows += list.len() as u64;
            marks.push((*unit, units.get(unit).map_or(empty, |(fp, _)| *fp)));
        }
        ch.set_mirror_marks(cluster, "anomalies", &marks)?;

        // Whole lists: one unit each, fingerprinted by their debug form (exact float digits).
        let now = chrono::Utc::now().timestamp();
        let forecasts = primary.forecasts(cluster)?;
        rows += copy_list(ch, cluster, "forecasts", &forecasts, || {
            ch.put_forecasts(cluster, &forecasts)
        })?;
        let budgets = primary.budgets(cluster)?;
        rows += copy_list(ch, cluster, "budgets", &budgets, || {
            ch.put_budgets(cluster, &budgets, now)
        })?;
        let savings = primary.savings(cluster)?;
        rows += copy_list(ch, cluster, "savings", &savings, || {
            ch.put_savings(cluster, &savings, now)
        })?;
        let predictions = primary.predictions(cluster)?;
        rows += copy_list(ch, cluster, "predictions", &predictions, || {
            ch.put_predictions(cluster, &predictions, now)
        })?;
        // The bridge's recommendations: the newest run (its items, window and monthly cost),
        // one unit. Before the aggregator made any there is nothing to copy.
        let recommendations = primary.recommendations(cluster)?;
        if copy_list(
            ch,
            cluster,
            "recommendations",
            recommendations.as_slice(),
            || match &recommendations {
                Some(set) => ch.put_recommendations(set),
                None => Ok(()),
            },
        )? > 0
        {
            rows += recommendations.as_ref().map_or(0, |s| s.items.len() as u64);
        }
    }
    Ok(rows)
}

/// Writes a whole list when its fingerprint differs from the mirror's mark; returns the rows.
fn copy_list<T: std::fmt::Debug>(
    ch: &ClickHouseStore,
    cluster: &str,
    kind: &str,
    list: &[T],
    put: impl FnOnce() -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let fp = fingerprint(|h| format!("{list:?}").hash(h));
    let marks = ch.mirror_marks(cluster, kind)?;
    if marks.first().map(|(_, m)| *m) == Some(fp) {
        return Ok(0);
    }
    put()?;
    ch.set_mirror_marks(cluster, kind, &[(0, fp)])?;
    Ok(list.len() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clickhouse_storage_is_published_per_disk_and_for_the_database() {
        let m = kb_ops::Metrics::new("test");
        // 18.16: no system.disks, so no capacity and no ratio.
        super::publish_storage(
            &m,
            &kb_clickhouse::StorageUsage {
                parts_bytes: 4096,
                disks: Vec::new(),
            },
        );
        let text = m.render();
        assert!(
            text.contains(
                r#"kubecost_bridge_storage_used_bytes{store="clickhouse",disk="database"} 4096"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"kubecost_bridge_storage_used_ratio{store="clickhouse""#));
        super::publish_storage(
            &m,
            &kb_clickhouse::StorageUsage {
                parts_bytes: 4096,
                disks: vec![("default".to_string(), 900, 1000)],
            },
        );
        let text = m.render();
        assert!(
            text.contains(
                r#"kubecost_bridge_storage_used_ratio{store="clickhouse",disk="default"} 0.9"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kubecost_bridge_storage_capacity_bytes{store="clickhouse",disk="database"} 1000"#
            ),
            "{text}"
        );
    }

    use super::*;

    #[test]
    fn units_are_days_or_months_and_changes_are_found_from_the_horizon() {
        // 2024-03-15T10:00:00Z
        let t = 1_710_496_800;
        assert_eq!(unit_of(Granularity::Hour, t).start, 1_710_460_800);
        assert_eq!(unit_of(Granularity::Day, t), unit_of(Granularity::Hour, t));
        let m = unit_of(Granularity::Month, t);
        assert_eq!(m.start, 1_709_251_200, "2024-03-01");
        let empty = fingerprint(|_| {});
        let mut ours: BTreeMap<i64, (u64, ())> = BTreeMap::new();
        ours.insert(DAY, (1, ()));
        ours.insert(2 * DAY, (2, ()));
        // Day 1 unchanged, day 2 changed, day 3 gone, day 4 marked empty, day 0 before `from`.
        let marks = [
            (0, 9),
            (DAY, 1),
            (2 * DAY, 7),
            (3 * DAY, 5),
            (4 * DAY, empty),
        ];
        let (todo, gone) = changed(&ours, &marks, empty, DAY);
        assert_eq!(todo, vec![2 * DAY]);
        assert_eq!(gone, vec![3 * DAY]);
        let (todo, gone) = changed(&ours, &marks, empty, ALL_TIME.start);
        assert_eq!(todo, vec![2 * DAY]);
        assert_eq!(gone, vec![0, 3 * DAY]);
        assert_ne!(fingerprint(|h| 1u8.hash(h)), empty);
    }
}
