//! The seed's alerts, evaluated in-process: a pure evaluator ([`evaluate`]) over plain data
//! ([`Snapshot`]), a state machine with fingerprint dedup ([`AlertBook`]), persistence of the
//! states ([`AlertStateStore`], implemented for [`kb_store::SqliteStore`]), and the loop that
//! runs them every interval and hands notifications to the webhooks ([`run_alerts`]).
//!
//! The alerts and their names are those of `deploy/prometheus/kubecost-bridge-rules.yaml`:
//!
//! | alert | condition (per key) | default | `for` |
//! | --- | --- | --- | --- |
//! | `KubecostBridgeExtractionFailureRate` | failures / runs over the last `extraction_failure_window` (1 h), per cluster and endpoint, > threshold (no runs: no data) | 0.05 | 5m |
//! | `KubecostBridgeDataStale` | freshness of an hourly source (`allocation`, `remote_write`) > `stale_after` | 4h | 5m |
//! | `KubecostBridgeCostSpike` | cost increase ratio (24 h vs the 24 h before), per cluster and namespace, > threshold | 0.5 | 15m |
//! | `KubecostBridgeStorageFull` | used / capacity of a store's disk > threshold | 0.8 | 15m |
//!
//! # States
//!
//! An alert is identified by its fingerprint (a stable hash of its name and labels). A breach
//! makes it `pending`; still breaching after its `for` duration, it is `firing` and notifies;
//! while it keeps firing it notifies again only every `repeat_interval`; when the condition
//! clears it is `resolved` and notifies once. A pending alert that clears is forgotten without
//! notice. A key with no data (no extraction in the last hour, a disk that cannot be read, a
//! ratio no longer exported) keeps its state; after `resolve_absent_after` without data a
//! firing alert resolves, so a removed cluster does not fire forever, while a restart (which
//! empties the in-memory hour of outcomes) does not resolve it at once. Resolved states are kept
//! for [`RESOLVED_RETENTION_SECS`], then dropped.
//!
//! States are saved after every evaluation, so a restart neither notifies a firing alert again
//! before its repeat interval nor forgets one. A notification counts as sent once it is queued
//! for the webhooks (delivery failures are logged, not retried beyond the webhook's retry
//! policy).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kb_pipeline::ports::StoreError;
use kb_pipeline::shutdown::Shutdown;
use serde::{Deserialize, Serialize};

use crate::config::AlertsConfig;
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifyError};

/// `KubecostBridgeExtractionFailureRate`.
pub const EXTRACTION_FAILURE_RATE: &str = "KubecostBridgeExtractionFailureRate";
/// `KubecostBridgeDataStale`.
pub const DATA_STALE: &str = "KubecostBridgeDataStale";
/// `KubecostBridgeCostSpike`.
pub const COST_SPIKE: &str = "KubecostBridgeCostSpike";
/// `KubecostBridgeStorageFull`.
pub const STORAGE_FULL: &str = "KubecostBridgeStorageFull";

/// How long a resolved state is kept (seconds).
pub const RESOLVED_RETENTION_SECS: i64 = 7 * 86_400;

/// The most alert states held; new alerts beyond it are not tracked (with a warning).
pub const MAX_STATES: usize = 10_000;

/// Thresholds and durations of the alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    /// Failure ratio over the last hour above which extraction alerts (0.05 = 5%).
    pub extraction_failure_rate: f64,
    pub extraction_failure_for: Duration,
    /// The window the failure rate is computed over (1 h, as the PrometheusRule). A shorter
    /// one resolves the alert sooner once Kubecost recovers.
    pub extraction_failure_window: Duration,
    /// Data older than this is stale (4 h).
    pub stale_after: Duration,
    /// The sources the staleness alert watches (the hourly ones).
    pub stale_sources: Vec<String>,
    pub stale_for: Duration,
    /// Cost increase ratio above which a spike alerts (0.5 = +50% in 24 h).
    pub cost_spike_ratio: f64,
    pub cost_spike_for: Duration,
    /// Disk used ratio above which storage alerts (0.8).
    pub storage_used_ratio: f64,
    pub storage_for: Duration,
    /// A firing alert notifies again after this long (4 h).
    pub repeat_interval: Duration,
    /// A firing alert whose key has had no data this long resolves (2 h).
    pub resolve_absent_after: Duration,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            extraction_failure_rate: 0.05,
            extraction_failure_for: Duration::from_secs(5 * 60),
            extraction_failure_window: crate::metrics::DEFAULT_FAILURE_WINDOW,
            stale_after: Duration::from_secs(4 * 3600),
            stale_sources: vec!["allocation".into(), "remote_write".into()],
            stale_for: Duration::from_secs(5 * 60),
            cost_spike_ratio: 0.5,
            cost_spike_for: Duration::from_secs(15 * 60),
            storage_used_ratio: 0.8,
            storage_for: Duration::from_secs(15 * 60),
            repeat_interval: Duration::from_secs(4 * 3600),
            resolve_absent_after: Duration::from_secs(2 * 3600),
        }
    }
}

/// Extraction outcomes of one cluster and endpoint over the rate window.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractionCounts {
    pub cluster: String,
    pub endpoint: String,
    pub failures: u64,
    pub total: u64,
}

/// Seconds since the last success of one cluster and source.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub cluster: String,
    pub source: String,
    pub age_secs: f64,
}

/// Used ratio of one store's disk.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageUse {
    pub store: String,
    pub disk: String,
    pub used_ratio: f64,
}

/// Cost increase ratio of a cluster (`namespace: None`) or a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct CostIncrease {
    pub cluster: String,
    pub namespace: Option<String>,
    pub ratio: f64,
}

/// Everything the alerts read, as plain data ([`Metrics::snapshot`] builds it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub extraction: Vec<ExtractionCounts>,
    pub freshness: Vec<Freshness>,
    pub storage: Vec<StorageUse>,
    pub cost_increase: Vec<CostIncrease>,
}

/// One observation of an alert's key: whether its condition holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub name: String,
    /// The alert's labels (its key and `severity`).
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    /// The condition holds.
    pub active: bool,
    pub value: f64,
    pub threshold: f64,
    /// How long the condition must hold before firing.
    pub for_: Duration,
    pub summary: String,
    pub description: String,
    /// Unix seconds of the evaluation.
    pub at: i64,
}

/// A stable fingerprint of an alert: FNV-1a (64 bit, hex) over the name and the sorted labels.
pub fn fingerprint(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator no label contains.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    feed(name.as_bytes());
    for (k, v) in labels {
        feed(k.as_bytes());
        feed(v.as_bytes());
    }
    format!("{h:016x}")
}

fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn hours(secs: f64) -> String {
    format!("{:.1}h", secs / 3600.0)
}

struct Draft<'a> {
    name: &'static str,
    labels: Vec<(&'static str, &'a str)>,
    active: bool,
    value: f64,
    threshold: f64,
    for_: Duration,
    summary: String,
    description: String,
}

/// Evaluates every rule over `snap` at `now` (unix seconds): one event per observed key, active
/// or not. Keys without data (no extraction runs in the window) give no event.
pub fn evaluate(rules: &AlertRules, snap: &Snapshot, now: i64) -> Vec<AlertEvent> {
    let mut drafts = Vec::new();
    for e in &snap.extraction {
        if e.total == 0 {
            continue;
        }
        let rate = e.failures as f64 / e.total as f64;
        drafts.push(Draft {
            name: EXTRACTION_FAILURE_RATE,
            labels: vec![("cluster", &e.cluster), ("endpoint", &e.endpoint)],
            active: rate > rules.extraction_failure_rate,
            value: rate,
            threshold: rules.extraction_failure_rate,
            for_: rules.extraction_failure_for,
            summary: format!(
                "kubecost-bridge: {} {} extractions failing",
                e.cluster, e.endpoint
            ),
            description: format!(
                "{} of {} extractions for cluster {} failed in the last hour ({} of {}; threshold {}).",
                percent(rate),
                e.endpoint,
                e.cluster,
                e.failures,
                e.total,
                percent(rules.extraction_failure_rate)
            ),
        });
    }
    let stale = rules.stale_after.as_secs_f64();
    for f in &snap.freshness {
        if !rules.stale_sources.contains(&f.source) {
            continue;
        }
        drafts.push(Draft {
            name: DATA_STALE,
            labels: vec![("cluster", &f.cluster), ("source", &f.source)],
            active: f.age_secs > stale,
            value: f.age_secs,
            threshold: stale,
            for_: rules.stale_for,
            summary: format!("kubecost-bridge: {} {} data is stale", f.cluster, f.source),
            description: format!(
                "The last successful {} sync for cluster {} was {} ago (threshold {}).",
                f.source,
                f.cluster,
                hours(f.age_secs),
                hours(stale)
            ),
        });
    }
    for c in &snap.cost_increase {
        let mut labels = vec![("cluster", c.cluster.as_str())];
        let mut scope = format!("cluster {}", c.cluster);
        if let Some(ns) = &c.namespace {
            labels.push(("namespace", ns.as_str()));
            scope = format!("cluster {}, namespace {ns}", c.cluster);
        }
        drafts.push(Draft {
            name: COST_SPIKE,
            labels,
            active: c.ratio > rules.cost_spike_ratio,
            value: c.ratio,
            threshold: rules.cost_spike_ratio,
            for_: rules.cost_spike_for,
            summary: format!(
                "Cost spike in {}{}",
                c.cluster,
                c.namespace
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default()
            ),
            description: format!(
                "Cost in the last 24h is {} above the previous 24h (threshold {}) for {scope}.",
                percent(c.ratio),
                percent(rules.cost_spike_ratio)
            ),
        });
    }
    for s in &snap.storage {
        drafts.push(Draft {
            name: STORAGE_FULL,
            labels: vec![("store", &s.store), ("disk", &s.disk)],
            active: s.used_ratio > rules.storage_used_ratio,
            value: s.used_ratio,
            threshold: rules.storage_used_ratio,
            for_: rules.storage_for,
            summary: format!(
                "kubecost-bridge: {} storage above {}",
                s.store,
                percent(rules.storage_used_ratio)
            ),
            description: format!(
                "{} disk {} is {} full (threshold {}). Grow the volume or shorten retention.",
                s.store,
                s.disk,
                percent(s.used_ratio),
                percent(rules.storage_used_ratio)
            ),
        });
    }
    drafts
        .into_iter()
        .map(|d| {
            let mut labels: BTreeMap<String, String> = d
                .labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
            labels.insert("severity".into(), "warning".into());
            AlertEvent {
                fingerprint: fingerprint(d.name, &labels),
                name: d.name.to_string(),
                labels,
                active: d.active,
                value: d.value,
                threshold: d.threshold,
                for_: d.for_,
                summary: d.summary,
                description: d.description,
                at: now,
            }
        })
        .collect()
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Pending,
    Firing,
    Resolved,
}

impl AlertStatus {
    /// `pending`, `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "pending",
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// The persisted state of one alert (times in unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub fingerprint: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: AlertStatus,
    /// When the condition was first seen holding (this episode).
    pub active_since: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_notified: Option<i64>,
    /// The last evaluation that had data for the key.
    pub last_seen: i64,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
    pub description: String,
}

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// `Firing` or `Resolved`.
    pub status: AlertStatus,
    /// A firing alert notified again after its repeat interval.
    pub repeat: bool,
    pub alert: AlertState,
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// The alerts' states, keyed by fingerprint, and their transitions.
#[derive(Debug, Clone, Default)]
pub struct AlertBook {
    states: BTreeMap<String, AlertState>,
}

impl AlertBook {
    /// A book holding previously saved states.
    pub fn new(states: Vec<AlertState>) -> AlertBook {
        AlertBook {
            states: states
                .into_iter()
                .map(|s| (s.fingerprint.clone(), s))
                .collect(),
        }
    }

    /// Every state, by fingerprint.
    pub fn states(&self) -> Vec<AlertState> {
        self.states.values().cloned().collect()
    }

    /// The firing alerts.
    pub fn firing(&self) -> Vec<AlertState> {
        self.states
            .values()
            .filter(|s| s.status == AlertStatus::Firing)
            .cloned()
            .collect()
    }

    /// Applies one evaluation's events at `now`; returns the notifications to send.
    pub fn step(
        &mut self,
        events: &[AlertEvent],
        now: i64,
        repeat_interval: Duration,
        resolve_absent_after: Duration,
    ) -> Vec<Notification> {
        let repeat = i64::try_from(repeat_interval.as_secs()).unwrap_or(i64::MAX);
        let absent = i64::try_from(resolve_absent_after.as_secs()).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for e in events {
            seen.insert(e.fingerprint.as_str());
            let for_ = i64::try_from(e.for_.as_secs()).unwrap_or(i64::MAX);
            if !e.active {
                match self.states.get(&e.fingerprint).map(|s| s.status) {
                    Some(AlertStatus::Pending) => {
                        self.states.remove(&e.fingerprint);
                    }
                    Some(AlertStatus::Firing) => {
                        if let Some(s) = self.states.get_mut(&e.fingerprint) {
                            s.value = finite(e.value);
                            s.last_seen = now;
                            s.description.clone_from(&e.description);
                            out.push(resolve(s, now));
                        }
                    }
                    Some(AlertStatus::Resolved) | None => {}
                }
                continue;
            }
            let fresh = !matches!(
                self.states.get(&e.fingerprint).map(|s| s.status),
                Some(AlertStatus::Pending | AlertStatus::Firing)
            );
            if fresh {
                if !self.states.contains_key(&e.fingerprint) && self.states.len() >= MAX_STATES {
                    tracing::warn!(
                        alert = e.name,
                        max = MAX_STATES,
                        "too many alert states; alert not tracked"
                    );
                    continue;
                }
                self.states.insert(
                    e.fingerprint.clone(),
                    AlertState {
                        fingerprint: e.fingerprint.clone(),
                        name: e.name.clone(),
                        labels: e.labels.clone(),
                        status: AlertStatus::Pending,
                        active_since: now,
                        fired_at: None,
                        resolved_at: None,
                        last_notified: None,
                        last_seen: now,
                        value: finite(e.value),
                        threshold: finite(e.threshold),
                        summary: e.summary.clone(),
                        description: e.description.clone(),
                    },
                );
            }
            let Some(s) = self.states.get_mut(&e.fingerprint) else {
                continue;
            };
            s.value = finite(e.value);
            s.threshold = finite(e.threshold);
            s.last_seen = now;
            s.summary.clone_from(&e.summary);
            s.description.clone_from(&e.description);
            match s.status {
                AlertStatus::Pending if now.saturating_sub(s.active_since) >= for_ => {
                    s.status = AlertStatus::Firing;
                    s.fired_at = Some(now);
                    s.last_notified = Some(now);
                    out.push(Notification {
                        status: AlertStatus::Firing,
                        repeat: false,
                        alert: s.clone(),
                    });
                }
                AlertStatus::Firing
                    if s.last_notified
                        .is_none_or(|t| now.saturating_sub(t) >= repeat) =>
                {
                    s.last_notified = Some(now);
                    out.push(Notification {
                        status: AlertStatus::Firing,
                        repeat: true,
                        alert: s.clone(),
                    });
                }
                _ => {}
            }
        }
        // Keys without data this time.
        let mut drop = Vec::new();
        for (fp, s) in &mut self.states {
            if seen.contains(fp.as_str()) {
                continue;
            }
            match s.status {
                AlertStatus::Pending if now.saturating_sub(s.last_seen) > absent => {
                    drop.push(fp.clone());
                }
                AlertStatus::Firing if now.saturating_sub(s.last_seen) > absent => {
                    out.push(resolve(s, now));
                }
                AlertStatus::Resolved
                    if now.saturating_sub(s.resolved_at.unwrap_or(now))
                        > RESOLVED_RETENTION_SECS =>
                {
                    drop.push(fp.clone());
                }
                _ => {}
            }
        }
        for fp in drop {
            self.states.remove(&fp);
        }
        out
    }
}

fn resolve(s: &mut AlertState, now: i64) -> Notification {
    s.status = AlertStatus::Resolved;
    s.resolved_at = Some(now);
    s.last_notified = Some(now);
    Notification {
        status: AlertStatus::Resolved,
        repeat: false,
        alert: s.clone(),
    }
}

/// Where alert states are kept across restarts.
pub trait AlertStateStore: Send + Sync {
    /// Every saved state.
    fn load(&self) -> Result<Vec<AlertState>, StoreError>;
    /// Replaces the saved states with `states`.
    fn save(&self, states: &[AlertState]) -> Result<(), StoreError>;
}

impl AlertStateStore for kb_store::SqliteStore {
    fn load(&self) -> Result<Vec<AlertState>, StoreError> {
        let rows = self.load_alert_states()?;
        Ok(rows
            .into_iter()
            .filter_map(|(fp, json)| match serde_json::from_str::<AlertState>(&json) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(fingerprint = fp, error = %e, "unreadable alert state skipped");
                    None
                }
            })
            .collect())
    }

    fn save(&self, states: &[AlertState]) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(states.len());
        for s in states {
            let json = serde_json::to_string(s)
                .map_err(|e| StoreError::permanent(format!("encode alert state: {e}")))?;
            rows.push((s.fingerprint.clone(), json));
        }
        self.save_alert_states(&rows)
    }
}

/// States in memory (no persistence): for tests and a bridge without a local store.
#[derive(Debug, Default)]
pub struct MemoryAlertStore {
    states: Mutex<Vec<AlertState>>,
}

impl AlertStateStore for MemoryAlertStore {
    fn load(&self) -> Result<Vec<AlertState>, StoreError> {
        Ok(match self.states.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        })
    }

    fn save(&self, states: &[AlertState]) -> Result<(), StoreError> {
        let mut g = match self.states.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = states.to_vec();
        Ok(())
    }
}

/// Why [`run_alerts`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("alerts: {0}")]
    Notify(#[from] NotifyError),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::permanent(format!("alert state task failed: {e}")))?
}

/// Evaluates the alerts every `cfg.interval` until shutdown: reads [`Metrics::snapshot`],
/// applies [`evaluate`] and the [`AlertBook`], saves the states, and queues notifications for
/// the webhooks (never waiting on them). On shutdown, saves the states and stops the webhook
/// workers (notifications still queued are dropped).
pub async fn run_alerts(
    metrics: Metrics,
    cfg: AlertsConfig,
    store: Arc<dyn AlertStateStore>,
    shutdown: Shutdown,
) -> Result<(), AlertsError> {
    let notifier = Notifier::start(&cfg, &shutdown)?;
    metrics.set_failure_window(cfg.rules.extraction_failure_window);
    let loaded = {
        let store = store.clone();
        blocking(move || store.load()).await
    };
    let mut book = match loaded {
        Ok(states) => {
            tracing::info!(states = states.len(), "alert states loaded");
            AlertBook::new(states)
        }
        Err(e) => {
            tracing::warn!(error = %e, "alert states could not be loaded; starting empty");
            AlertBook::default()
        }
    };
    let interval = cfg.interval.max(Duration::from_millis(10));
    loop {
        let now = metrics.now().floor() as i64;
        // `statvfs` may block on a slow filesystem: off the async threads.
        let m = metrics.clone();
        let snap = match tokio::task::spawn_blocking(move || m.snapshot()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "alert snapshot failed");
                Snapshot::default()
            }
        };
        let events = evaluate(&cfg.rules, &snap, now);
        let notes = book.step(
            &events,
            now,
            cfg.rules.repeat_interval,
            cfg.rules.resolve_absent_after,
        );
        for n in &notes {
            tracing::info!(
                alert = n.alert.name,
                status = n.status.as_str(),
                repeat = n.repeat,
                fingerprint = n.alert.fingerprint,
                summary = n.alert.summary,
                "alert notification"
            );
        }
        let states = book.states();
        let s2 = store.clone();
        if let Err(e) = blocking(move || s2.save(&states)).await {
            tracing::warn!(error = %e, "alert states could not be saved");
        }
        notifier.dispatch(&notes, &book.firing(), now, interval);
        if shutdown.sleep(interval).await.is_err() {
            break;
        }
    }
    notifier.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_name_and_labels_only() {
        let mut l = BTreeMap::new();
        l.insert("cluster".to_string(), "a".to_string());
        let f1 = fingerprint("X", &l);
        assert_eq!(f1, fingerprint("X", &l.clone()));
        assert_ne!(f1, fingerprint("Y", &l));
        l.insert("cluster".to_string(), "b".to_string());
        assert_ne!(f1, fingerprint("X", &l));
        assert_eq!(f1.len(), 16);
    }
}
