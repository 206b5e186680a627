//! The bridge's own metrics: a small registry with one typed method per series of the contract
//! (`deploy/prometheus/README.md`), rendered in the Prometheus text format 0.0.4.
//!
//! # Why hand-rolled
//!
//! The contract is fifteen fixed families, two of them computed at scrape time (freshness from
//! stored timestamps and the clock, storage from `statvfs`) and one that must be pre-created at
//! zero for every cluster × endpoint × outcome. `prometheus-client` would need custom collectors
//! for the scrape-time gauges and brings its own encoder and locking; the text format is a page
//! of code. So the registry is a set of `BTreeMap`s behind one mutex (sorted, stable output),
//! and [`Metrics::render`] writes the page. Critical sections are a map lookup and an add; the
//! scrape-time work (probes, `statvfs`) runs outside the lock.
//!
//! # Bounded label values
//!
//! Every label value comes from configuration or a fixed set: `cluster` (configured clusters),
//! `endpoint` / `source` (the extractor's endpoints and configured remote_write sources),
//! `store`, `table`, `disk` (code constants or ClickHouse disk names), `namespace` (only for
//! namespaces the anomaly detector reports above its noise floor), `route` (the router's route
//! templates via [`axum::extract::MatchedPath`], `unmatched` otherwise: never a raw path),
//! `method` (the standard methods, `other` for the rest), `code` (an HTTP status or `error`).
//! As a last guard, each family holds at most [`MAX_SERIES_PER_FAMILY`] series; beyond that new
//! series are dropped (with one warning per family), never the process's memory.
//!
//! # Time
//!
//! The clock is injected ([`Clock`]): unix seconds as `f64`. Freshness is computed from it at
//! scrape time, and the ring of extraction outcomes (for the alerts' failure rate over
//! `alerts.rules.extraction_failure_window`, 1 h by default, [`Metrics::snapshot`]) is indexed
//! by it: [`RATE_SLOTS`] slots of a sixtieth of the window each (a minute for 1 h).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::alerts::{CostIncrease, ExtractionCounts, Freshness, Snapshot, StorageUse};

/// Unix seconds now, as `f64`. Injected so tests control time.
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Reads a spool's `(depth, bytes)` at scrape time.
pub type SpoolProbe = Arc<dyn Fn() -> (u64, u64) + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// The most series one family holds; new series beyond it are dropped.
pub const MAX_SERIES_PER_FAMILY: usize = 4096;

/// Buckets of `kubecost_bridge_kubecost_request_duration_seconds` (allocation bodies of large
/// clusters take minutes).
pub const KUBECOST_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Buckets of `kubecost_bridge_http_request_duration_seconds`.
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The extraction endpoints of the contract (`endpoint` label values).
pub const ENDPOINTS: &[&str] = &["allocation", "assets", "budgets", "savings", "predictions"];

/// Slots of the extraction-outcome ring; each covers 1/60 of the failure-rate window.
pub const RATE_SLOTS: usize = 60;

/// The failure-rate window unless [`Metrics::set_failure_window`] says otherwise (1 h, as the
/// PrometheusRule's `increase(...[1h])`).
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(3600);

/// How one window extraction ended, after all retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExtractionOutcome {
    /// Rows and checkpoint committed.
    Success,
    /// Gave up; the window stays unsynced.
    Failure,
}

impl ExtractionOutcome {
    /// `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractionOutcome::Success => "success",
            ExtractionOutcome::Failure => "failure",
        }
    }
}

/// How one remote_write request ended, by the status it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteWriteOutcome {
    /// 204: stored.
    Accepted,
    /// 400, 408 or 415: a bad request (body, format or account id); not retried.
    Rejected,
    /// 401: wrong or missing credentials.
    Unauthorized,
    /// 413: the body is above `remote_write.max_body_bytes`.
    TooLarge,
    /// 429, or 503 with `Retry-After`: the receiver was full (retried).
    Overloaded,
    /// 503: the bridge failed (spool error, timeout, shutting down; retried).
    Error,
}

impl RemoteWriteOutcome {
    /// Every outcome, in label order.
    pub const ALL: [RemoteWriteOutcome; 6] = [
        RemoteWriteOutcome::Accepted,
        RemoteWriteOutcome::Rejected,
        RemoteWriteOutcome::Unauthorized,
        RemoteWriteOutcome::TooLarge,
        RemoteWriteOutcome::Overloaded,
        RemoteWriteOutcome::Error,
    ];

    /// `accepted`, `rejected`, `unauthorized`, `too_large`, `overloaded` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteWriteOutcome::Accepted => "accepted",
            RemoteWriteOutcome::Rejected => "rejected",
            RemoteWriteOutcome::Unauthorized => "unauthorized",
            RemoteWriteOutcome::TooLarge => "too_large",
            RemoteWriteOutcome::Overloaded => "overloaded",
            RemoteWriteOutcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        if v.is_finite() {
            self.sum += v;
        }
        self.count += 1;
    }
}

/// Extraction outcomes of one cluster and endpoint per slot (a sixtieth of the failure-rate
/// window: a minute by default), for the last window.
#[derive(Debug, Clone)]
struct Ring {
    /// `(slot, successes, failures)`; a slot whose number is old is stale.
    slots: [(i64, u64, u64); RATE_SLOTS],
}

impl Ring {
    fn new() -> Ring {
        Ring {
            slots: [(i64::MIN, 0, 0); RATE_SLOTS],
        }
    }

    fn record(&mut self, slot_no: i64, outcome: ExtractionOutcome) {
        let i = slot_no.rem_euclid(RATE_SLOTS as i64) as usize;
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.0 != slot_no {
                *slot = (slot_no, 0, 0);
            }
            match outcome {
                ExtractionOutcome::Success => slot.1 += 1,
                ExtractionOutcome::Failure => slot.2 += 1,
            }
        }
    }

    /// `(failures, total)` over the slots `(slot_no - 60, slot_no]`.
    fn totals(&self, slot_no: i64) -> (u64, u64) {
        let window = RATE_SLOTS as i64;
        self.slots
            .iter()
            .filter(|s| s.0 <= slot_no && slot_no.saturating_sub(s.0) < window)
            .fold((0, 0), |(f, t), s| (f + s.2, t + s.1 + s.2))
    }
}

#[derive(Clone)]
enum DiskSource {
    /// `statvfs` of this path at scrape time.
    Path(PathBuf),
    /// Figures pushed by the caller (ClickHouse's `system.disks`).
    Fixed { used: u64, capacity: u64 },
}

struct Registry {
    /// Milliseconds per ring slot: the failure-rate window / [`RATE_SLOTS`].
    slot_ms: f64,
    extraction: BTreeMap<(String, String, ExtractionOutcome), u64>,
    rings: BTreeMap<(String, String), Ring>,
    kubecost: BTreeMap<(String, String, String), Histogram>,
    /// Freshness keys; `None` until the first success.
    last_success: BTreeMap<(String, String), Option<f64>>,
    rows: BTreeMap<(String, String), u64>,
    spool: BTreeMap<String, (u64, u64)>,
    spool_probes: BTreeMap<String, SpoolProbe>,
    rw_requests: BTreeMap<(String, RemoteWriteOutcome), u64>,
    rw_samples: BTreeMap<(String, RemoteWriteOutcome), u64>,
    reconciliation: BTreeMap<(String, String), f64>,
    disks: BTreeMap<(String, String), DiskSource>,
    /// `(cluster, namespace)`; the empty namespace is the cluster's total.
    cost_increase: BTreeMap<(String, String), f64>,
    http: BTreeMap<(String, &'static str, u16), Histogram>,
    dropped: BTreeSet<&'static str>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            slot_ms: DEFAULT_FAILURE_WINDOW.as_secs_f64() * 1e3 / RATE_SLOTS as f64,
            extraction: BTreeMap::new(),
            rings: BTreeMap::new(),
            kubecost: BTreeMap::new(),
            last_success: BTreeMap::new(),
            rows: BTreeMap::new(),
            spool: BTreeMap::new(),
            spool_probes: BTreeMap::new(),
            rw_requests: BTreeMap::new(),
            rw_samples: BTreeMap::new(),
            reconciliation: BTreeMap::new(),
            disks: BTreeMap::new(),
            cost_increase: BTreeMap::new(),
            http: BTreeMap::new(),
            dropped: BTreeSet::new(),
        }
    }
}

impl Registry {
    /// The ring slot holding unix second `now`.
    fn slot(&self, now: f64) -> i64 {
        (now * 1e3 / self.slot_ms).floor() as i64
    }
}

/// Returns the entry for `key`, creating it with `make` unless the family is full.
fn entry<'a, K: Ord, V>(
    map: &'a mut BTreeMap<K, V>,
    dropped: &mut BTreeSet<&'static str>,
    family: &'static str,
    key: K,
    make: impl FnOnce() -> V,
) -> Option<&'a mut V> {
    if !map.contains_key(&key) && map.len() >= MAX_SERIES_PER_FAMILY {
        if dropped.insert(family) {
            tracing::warn!(
                family,
                max = MAX_SERIES_PER_FAMILY,
                "metric family is full; new series are dropped"
            );
        }
        return None;
    }
    Some(map.entry(key).or_insert_with(make))
}

struct Inner {
    version: String,
    clock: Clock,
    started: f64,
    state: Mutex<Registry>,
}

/// The bridge's metrics registry. Cheap to clone (one `Arc`); every method takes `&self`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("version", &self.inner.version)
            .field("started", &self.inner.started)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry for this build's `version`, on the wall clock.
    pub fn new(version: &str) -> Metrics {
        Metrics::with_clock(version, system_clock())
    }

    /// A registry on an injected clock; the process start is the clock's current reading.
    pub fn with_clock(version: &str, clock: Clock) -> Metrics {
        let started = clock();
        Metrics {
            inner: Arc::new(Inner {
                version: version.to_string(),
                clock,
                started,
                state: Mutex::new(Registry::default()),
            }),
        }
    }

    /// The clock's current reading (unix seconds).
    pub fn now(&self) -> f64 {
        (self.inner.clock)()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        match self.inner.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Pre-creates every extraction series (each cluster × endpoint × both outcomes) at 0 and
    /// the freshness series of each cluster × endpoint. Call once at start-up with the
    /// configured clusters and enabled endpoints ([`ENDPOINTS`] names). Idempotent.
    pub fn register_targets<C: AsRef<str>, E: AsRef<str>>(&self, clusters: &[C], endpoints: &[E]) {
        let mut st = self.lock();
        let st = &mut *st;
        for c in clusters {
            for e in endpoints {
                register_pair(st, c.as_ref(), e.as_ref());
                let key = (c.as_ref().to_string(), e.as_ref().to_string());
                entry(
                    &mut st.last_success,
                    &mut st.dropped,
                    "data_freshness_seconds",
                    key,
                    || None,
                );
            }
        }
    }

    /// Sets the window of the failure rate the alerts read (`alerts.rules.extraction_failure_window`,
    /// [`DEFAULT_FAILURE_WINDOW`] otherwise; at least 60 ms). Call at start-up: outcomes
    /// recorded before a change are forgotten.
    pub fn set_failure_window(&self, window: Duration) {
        let ms = (window.as_secs_f64() * 1e3 / RATE_SLOTS as f64).max(1.0);
        let mut st = self.lock();
        if (st.slot_ms - ms).abs() > f64::EPSILON {
            st.slot_ms = ms;
            for r in st.rings.values_mut() {
                *r = Ring::new();
            }
        }
    }

    /// Registers a freshness series (e.g. `source="remote_write"`) so it is exported, counting
    /// from the process start, before its first success.
    pub fn register_freshness(&self, cluster: &str, source: &str) {
        let mut st = self.lock();
        let st = &mut *st;
        entry(
            &mut st.last_success,
            &mut st.dropped,
            "data_freshness_seconds",
            (cluster.to_string(), source.to_string()),
            || None,
        );
    }

    /// Counts one finished window extraction (after all retries) and records it in the
    /// ring behind the alerts' failure rate.
    pub fn record_extraction(&self, cluster: &str, endpoint: &str, outcome: ExtractionOutcome) {
        let now = self.now();
        let mut st = self.lock();
        let st = &mut *st;
        let slot = st.slot(now);
        register_pair(st, cluster, endpoint);
        if let Some(v) =
            st.extraction
                .get_mut(&(cluster.to_string(), endpoint.to_string(), outcome))
        {
            *v += 1;
        }
        if let Some(r) = st
            .rings
            .get_mut(&(cluster.to_string(), endpoint.to_string()))
        {
            r.record(slot, outcome);
        }
    }

    /// Observes one request to Kubecost, body included. `status` is the HTTP status, or `None`
    /// for a connection error, timeout or truncated body (`code="error"`).
    pub fn observe_kubecost_request(
        &self,
        cluster: &str,
        endpoint: &str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(h) = entry(
            &mut st.kubecost,
            &mut st.dropped,
            "kubecost_request_duration_seconds",
            (cluster.to_string(), endpoint.to_string(), code),
            || Histogram::new(KUBECOST_BUCKETS),
        ) {
            h.observe(KUBECOST_BUCKETS, elapsed.as_secs_f64());
        }
    }

    /// Records the last successful sync of `source` for `cluster` (unix seconds). A time older
    /// than the one held is ignored. At start-up, feed it the store's newest checkpoints so
    /// freshness survives restarts.
    pub fn set_last_success(&self, cluster: &str, source: &str, unix_secs: f64) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(v) = entry(
            &mut st.last_success,
            &mut st.dropped,
            "data_freshness_seconds",
            (cluster.to_string(), source.to_string()),
            || None,
        ) {
            if v.is_none_or(|old| unix_secs > old) {
                *v = Some(unix_secs);
            }
        }
    }

    /// Adds committed rows of a store's table.
    pub fn add_rows_written(&self, store: &str, table: &str, rows: u64) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(v) = entry(
            &mut st.rows,
            &mut st.dropped,
            "rows_written_total",
            (store.to_string(), table.to_string()),
            || 0,
        ) {
            *v += rows;
        }
    }

    /// Sets a spool's depth (batches) and bytes. A probe registered for the store wins.
    pub fn set_spool(&self, store: &str, depth: u64, bytes: u64) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(v) = entry(
            &mut st.spool,
            &mut st.dropped,
            "spool_depth",
            store.to_string(),
            || (0, 0),
        ) {
            *v = (depth, bytes);
        }
    }

    /// Registers a callback read at every scrape for a store's spool `(depth, bytes)`. It runs
    /// outside the registry's lock and must be quick.
    pub fn register_spool_probe(&self, store: &str, probe: SpoolProbe) {
        self.lock().spool_probes.insert(store.to_string(), probe);
    }

    /// Pre-creates the remote_write series of a configured source (every outcome) at 0, so a
    /// first rejection is an increase Prometheus can see. Call at start-up per source.
    pub fn register_remote_write_source(&self, source: &str) {
        let mut st = self.lock();
        let st = &mut *st;
        for o in RemoteWriteOutcome::ALL {
            let key = (source.to_string(), o);
            entry(
                &mut st.rw_requests,
                &mut st.dropped,
                "remote_write_requests_total",
                key.clone(),
                || 0,
            );
            entry(
                &mut st.rw_samples,
                &mut st.dropped,
                "remote_write_samples_total",
                key,
                || 0,
            );
        }
    }

    /// Counts one remote_write request and its samples.
    pub fn record_remote_write(&self, source: &str, outcome: RemoteWriteOutcome, samples: u64) {
        let mut st = self.lock();
        let st = &mut *st;
        let key = (source.to_string(), outcome);
        if let Some(v) = entry(
            &mut st.rw_requests,
            &mut st.dropped,
            "remote_write_requests_total",
            key.clone(),
            || 0,
        ) {
            *v += 1;
        }
        if let Some(v) = entry(
            &mut st.rw_samples,
            &mut st.dropped,
            "remote_write_samples_total",
            key,
            || 0,
        ) {
            *v += samples;
        }
    }

    /// Sets |stored − Kubecost's total| / Kubecost's total of the last reconciled window.
    pub fn set_reconciliation_error(&self, cluster: &str, endpoint: &str, relative_error: f64) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(v) = entry(
            &mut st.reconciliation,
            &mut st.dropped,
            "reconciliation_relative_error",
            (cluster.to_string(), endpoint.to_string()),
            || 0.0,
        ) {
            *v = relative_error;
        }
    }

    /// Registers a store's disk measured by `statvfs(path)` at scrape time (SQLite:
    /// `register_disk("sqlite", "data", db_path)`). Used bytes are those not available to the
    /// bridge (`capacity − available`, reserved blocks counted as used).
    pub fn register_disk(&self, store: &str, disk: &str, path: &Path) {
        self.set_disk(store, disk, DiskSource::Path(path.to_path_buf()));
    }

    /// Sets a store's disk figures read elsewhere (ClickHouse: each disk of `system.disks`,
    /// and the database's parts; see `deploy/prometheus/README.md`).
    pub fn set_storage(&self, store: &str, disk: &str, used_bytes: u64, capacity_bytes: u64) {
        self.set_disk(
            store,
            disk,
            DiskSource::Fixed {
                used: used_bytes,
                capacity: capacity_bytes,
            },
        );
    }

    fn set_disk(&self, store: &str, disk: &str, src: DiskSource) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(v) = entry(
            &mut st.disks,
            &mut st.dropped,
            "storage_used_bytes",
            (store.to_string(), disk.to_string()),
            || DiskSource::Fixed {
                used: 0,
                capacity: 0,
            },
        ) {
            *v = src;
        }
    }

    /// Replaces the cost increase ratios of one cluster with `ratios`: `(None, r)` is the
    /// cluster's total, `(Some(ns), r)` a namespace; series of the cluster not listed vanish
    /// (below the detector's noise floor). Non-finite ratios are skipped.
    pub fn set_cost_increases(&self, cluster: &str, ratios: &[(Option<&str>, f64)]) {
        let mut st = self.lock();
        let st = &mut *st;
        st.cost_increase.retain(|(c, _), _| c != cluster);
        for (ns, r) in ratios {
            if !r.is_finite() {
                continue;
            }
            if let Some(v) = entry(
                &mut st.cost_increase,
                &mut st.dropped,
                "cost_increase_ratio",
                (cluster.to_string(), ns.unwrap_or_default().to_string()),
                || 0.0,
            ) {
                *v = *r;
            }
        }
    }

    /// Observes one request to the bridge's own API. `route` must be a route template.
    pub fn observe_http(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(h) = entry(
            &mut st.http,
            &mut st.dropped,
            "http_request_duration_seconds",
            (route.to_string(), method_label(method), status),
            || Histogram::new(HTTP_BUCKETS),
        ) {
            h.observe(HTTP_BUCKETS, elapsed.as_secs_f64());
        }
    }

    /// Seconds since the last success of every freshness key (since the start before the
    /// first one), at `now`.
    fn freshness(st: &Registry, now: f64, started: f64) -> Vec<Freshness> {
        st.last_success
            .iter()
            .map(|((cluster, source), last)| Freshness {
                cluster: cluster.clone(),
                source: source.clone(),
                age_secs: (now - last.unwrap_or(started)).max(0.0),
            })
            .collect()
    }

    /// Reads the disks (outside the lock) as `(store, disk, used, capacity)`.
    fn storage(disks: Vec<((String, String), DiskSource)>) -> Vec<(String, String, u64, u64)> {
        disks
            .into_iter()
            .filter_map(|((store, disk), src)| {
                let (used, cap) = match src {
                    DiskSource::Fixed { used, capacity } => (used, capacity),
                    DiskSource::Path(p) => match disk_usage(&p) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::debug!(store, disk, error = %e, "statvfs failed");
                            return None;
                        }
                    },
                };
                Some((store, disk, used, cap))
            })
            .collect()
    }

    /// What the alerts read: failure counts over the failure-rate window, freshness, storage
    /// ratios and cost increase ratios, at the clock's current time.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let (mut snap, disks) = {
            let st = self.lock();
            let slot = st.slot(now);
            let snap = Snapshot {
                extraction: st
                    .rings
                    .iter()
                    .map(|((cluster, endpoint), ring)| {
                        let (failures, total) = ring.totals(slot);
                        ExtractionCounts {
                            cluster: cluster.clone(),
                            endpoint: endpoint.clone(),
                            failures,
                            total,
                        }
                    })
                    .collect(),
                freshness: Metrics::freshness(&st, now, self.inner.started),
                storage: Vec::new(),
                cost_increase: st
                    .cost_increase
                    .iter()
                    .map(|((cluster, ns), r)| CostIncrease {
                        cluster: cluster.clone(),
                        namespace: (!ns.is_empty()).then(|| ns.clone()),
                        ratio: *r,
                    })
                    .collect(),
            };
            let disks: Vec<_> = st
                .disks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (snap, disks)
        };
        snap.storage = Metrics::storage(disks)
            .into_iter()
            .filter(|s| s.3 > 0)
            .map(|(store, disk, used, cap)| StorageUse {
                store,
                disk,
                used_ratio: used as f64 / cap as f64,
            })
            .collect();
        snap
    }

    /// Renders every series in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let now = self.now();
        let (disks, probes) = {
            let st = self.lock();
            let disks: Vec<_> = st
                .disks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let probes: Vec<_> = st
                .spool_probes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (disks, probes)
        };
        let storage = Metrics::storage(disks);
        let probed: Vec<(String, (u64, u64))> = probes.into_iter().map(|(s, p)| (s, p())).collect();

        let st = self.lock();
        let mut out = String::with_capacity(16 * 1024);
        let w = &mut out;

        family(
            w,
            "kubecost_bridge_build_info",
            "gauge",
            "Build information; always 1.",
        );
        sample(
            w,
            "kubecost_bridge_build_info",
            &[("version", &self.inner.version)],
            1.0,
        );

        let name = "kubecost_bridge_extraction_runs_total";
        family(
            w,
            name,
            "counter",
            "Window extractions that finished, after all retries, by outcome.",
        );
        for ((c, e, o), v) in &st.extraction {
            sample(
                w,
                name,
                &[("cluster", c), ("endpoint", e), ("outcome", o.as_str())],
                *v as f64,
            );
        }

        let name = "kubecost_bridge_kubecost_request_duration_seconds";
        family(
            w,
            name,
            "histogram",
            "Time of one request to Kubecost, body included.",
        );
        for ((c, e, code), h) in &st.kubecost {
            histogram(
                w,
                name,
                &[("cluster", c), ("endpoint", e), ("code", code)],
                KUBECOST_BUCKETS,
                h,
            );
        }

        let name = "kubecost_bridge_data_freshness_seconds";
        family(
            w,
            name,
            "gauge",
            "Seconds from the last successful sync (or the bridge's start) to the scrape.",
        );
        for f in Metrics::freshness(&st, now, self.inner.started) {
            sample(
                w,
                name,
                &[("cluster", &f.cluster), ("source", &f.source)],
                f.age_secs,
            );
        }

        let name = "kubecost_bridge_rows_written_total";
        family(w, name, "counter", "Rows committed, by store and table.");
        for ((s, t), v) in &st.rows {
            sample(w, name, &[("store", s), ("table", t)], *v as f64);
        }

        let mut spool = st.spool.clone();
        for (s, v) in probed {
            spool.insert(s, v);
        }
        let name = "kubecost_bridge_spool_depth";
        family(
            w,
            name,
            "gauge",
            "Batches waiting in the spool for a store that is unreachable.",
        );
        for (s, (depth, _)) in &spool {
            sample(w, name, &[("store", s)], *depth as f64);
        }
        let name = "kubecost_bridge_spool_bytes";
        family(w, name, "gauge", "Bytes of the spooled batches on disk.");
        for (s, (_, bytes)) in &spool {
            sample(w, name, &[("store", s)], *bytes as f64);
        }

        for (name, help, map) in [
            (
                "kubecost_bridge_remote_write_requests_total",
                "remote_write requests received, by outcome.",
                &st.rw_requests,
            ),
            (
                "kubecost_bridge_remote_write_samples_total",
                "Samples in the remote_write requests received, by outcome.",
                &st.rw_samples,
            ),
        ] {
            family(w, name, "counter", help);
            for ((s, o), v) in map {
                sample(
                    w,
                    name,
                    &[("source", s), ("outcome", o.as_str())],
                    *v as f64,
                );
            }
        }

        let name = "kubecost_bridge_reconciliation_relative_error";
        family(
            w,
            name,
            "gauge",
            "|stored - Kubecost's total| / Kubecost's total for the last reconciled window.",
        );
        for ((c, e), v) in &st.reconciliation {
            sample(w, name, &[("cluster", c), ("endpoint", e)], *v);
        }

        let name = "kubecost_bridge_storage_used_bytes";
        family(w, name, "gauge", "Bytes used on the store's disk.");
        for (s, d, used, _) in &storage {
            sample(w, name, &[("store", s), ("disk", d)], *used as f64);
        }
        let name = "kubecost_bridge_storage_capacity_bytes";
        family(w, name, "gauge", "Size of the store's disk.");
        for (s, d, _, cap) in &storage {
            sample(w, name, &[("store", s), ("disk", d)], *cap as f64);
        }
        let name = "kubecost_bridge_storage_used_ratio";
        family(
            w,
            name,
            "gauge",
            "Used / capacity of the store's disk, 0 to 1.",
        );
        for (s, d, used, cap) in &storage {
            if *cap > 0 {
                sample(
                    w,
                    name,
                    &[("store", s), ("disk", d)],
                    *used as f64 / *cap as f64,
                );
            }
        }

        let name = "kubecost_bridge_cost_increase_ratio";
        family(
            w,
            name,
            "gauge",
            "(Cost of the last 24 closed hours / cost of the 24 before) - 1.",
        );
        for ((c, ns), v) in &st.cost_increase {
            if ns.is_empty() {
                sample(w, name, &[("cluster", c)], *v);
            } else {
                sample(w, name, &[("cluster", c), ("namespace", ns)], *v);
            }
        }

        let name = "kubecost_bridge_http_request_duration_seconds";
        family(
            w,
            name,
            "histogram",
            "Requests to the bridge's own API, by route template.",
        );
        for ((route, method, code), h) in &st.http {
            let code = code.to_string();
            histogram(
                w,
                name,
                &[("route", route), ("method", method), ("code", &code)],
                HTTP_BUCKETS,
                h,
            );
        }
        out
    }
}

/// Creates both extraction series and the ring of a pair, when new.
fn register_pair(st: &mut Registry, cluster: &str, endpoint: &str) {
    for o in [ExtractionOutcome::Success, ExtractionOutcome::Failure] {
        entry(
            &mut st.extraction,
            &mut st.dropped,
            "extraction_runs_total",
            (cluster.to_string(), endpoint.to_string(), o),
            || 0,
        );
    }
    entry(
        &mut st.rings,
        &mut st.dropped,
        "extraction_runs_total",
        (cluster.to_string(), endpoint.to_string()),
        Ring::new,
    );
}

/// The contract's cost increase ratio: `last / previous − 1`, or `None` (not exported) when
/// `previous` is not above the detector's noise floor `min_previous` or a figure is not finite.
pub fn cost_increase_ratio(last: f64, previous: f64, min_previous: f64) -> Option<f64> {
    if !last.is_finite() || !previous.is_finite() || previous <= min_previous.max(0.0) {
        return None;
    }
    Some(last / previous - 1.0)
}

/// `(used, capacity)` bytes of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path)?;
    let unit = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    let capacity = s.f_blocks.saturating_mul(unit);
    let available = s.f_bavail.saturating_mul(unit);
    Ok((capacity.saturating_sub(available), capacity))
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    w.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn sample(w: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    w.push_str(name);
    if !labels.is_empty() {
        w.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                w.push(',');
            }
            w.push_str(k);
            w.push_str("=\"");
            w.push_str(&escape(val));
            w.push('"');
        }
        w.push('}');
    }
    w.push(' ');
    w.push_str(&number(v));
    w.push('\n');
}

fn histogram(w: &mut String, name: &str, labels: &[(&str, &str)], bounds: &[f64], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut cum = 0;
    for (i, c) in h.counts.iter().enumerate() {
        cum += c;
        let le = bounds
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| number(*b));
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", &le));
        sample(w, &bucket, &with_le, cum as f64);
    }
    sample(w, &format!("{name}_sum"), labels, h.sum);
    sample(w, &format!("{name}_count"), labels, h.count as f64);
}

/// The content type of [`Metrics::render`]'s page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: the rendered page.
pub async fn metrics_handler(State(metrics): State<Metrics>) -> Response {
    let body = tokio::task::spawn_blocking(move || metrics.render()).await;
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A router serving `GET /metrics`, to merge into the bridge's listener.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics)
}

/// Middleware recording `kubecost_bridge_http_request_duration_seconds` with the route
/// template ([`MatchedPath`]; `unmatched` when no route matched), the method and the status.
/// Install with [`track_http`] or
/// `router.layer(axum::middleware::from_fn_with_state(metrics, record_http))`. The time is to
/// the response's head (a streamed body's tail is not counted).
pub async fn record_http(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let t0 = Instant::now();
    let resp = next.run(req).await;
    metrics.observe_http(&route, &method, resp.status().as_u16(), t0.elapsed());
    resp
}

/// Adds [`record_http`] to every route of `router` (call after the routes are added: a layer
/// covers the routes before it).
pub fn track_http<S>(router: Router<S>, metrics: &Metrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        record_http,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_counts_the_last_hour_only() {
        let mut r = Ring::new();
        r.record(100, ExtractionOutcome::Failure);
        r.record(130, ExtractionOutcome::Success);
        r.record(159, ExtractionOutcome::Success);
        assert_eq!(r.totals(159), (1, 3));
        assert_eq!(r.totals(160), (0, 2), "minute 100 left the window");
        // Minute 160 reuses minute 100's slot.
        r.record(160, ExtractionOutcome::Success);
        assert_eq!(r.totals(160), (0, 3));
        assert_eq!(r.totals(300), (0, 0));
    }

    #[test]
    fn cost_increase_ratio_respects_the_noise_floor() {
        assert_eq!(cost_increase_ratio(15.0, 10.0, 1.0), Some(0.5));
        assert_eq!(cost_increase_ratio(15.0, 0.5, 1.0), None);
        assert_eq!(cost_increase_ratio(15.0, 0.0, 0.0), None);
        assert_eq!(cost_increase_ratio(f64::NAN, 10.0, 0.0), None);
    }

    #[test]
    fn escapes_label_values_and_numbers() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(3.0), "3");
    }
}
