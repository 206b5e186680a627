//! The alerts: the evaluator's rules and thresholds, the state machine (pending, firing after
//! `for`, dedup, repeat interval, resolved once), persistence across a restart through the
//! real SQLite store, and the evaluation loop end to end with a webhook.

use std::sync::Arc;
use std::time::Duration;

use kb_ops::alerts::{
    AlertBook, AlertEvent, AlertStatus, COST_SPIKE, CostIncrease, DATA_STALE,
    EXTRACTION_FAILURE_RATE, ExtractionCounts, Freshness, MemoryAlertStore, STORAGE_FULL, Snapshot,
    StorageUse, evaluate,
};
use kb_ops::{AlertRules, AlertStateStore, AlertsConfig, Metrics, WebhookConfig, WebhookFormat};
use kb_pipeline::retry::RetryPolicy;
use kb_pipeline::shutdown::Shutdown;
use kb_store::SqliteStore;

use crate::common::*;

const NOW: i64 = 1_699_920_000;
const MIN: i64 = 60;
const HOUR: i64 = 3600;

fn snapshot(failures: u64, total: u64, age: f64, spike: f64, used: f64) -> Snapshot {
    Snapshot {
        extraction: vec![
            ExtractionCounts {
                cluster: "c1".into(),
                endpoint: "allocation".into(),
                failures,
                total,
            },
            ExtractionCounts {
                cluster: "c1".into(),
                endpoint: "assets".into(),
                failures: 0,
                total: 0,
            },
        ],
        freshness: vec![
            Freshness {
                cluster: "c1".into(),
                source: "allocation".into(),
                age_secs: age,
            },
            Freshness {
                cluster: "c1".into(),
                source: "assets".into(),
                age_secs: 1e9,
            },
        ],
        storage: vec![StorageUse {
            store: "sqlite".into(),
            disk: "data".into(),
            used_ratio: used,
        }],
        cost_increase: vec![
            CostIncrease {
                cluster: "c1".into(),
                namespace: Some("shop".into()),
                ratio: spike,
            },
            CostIncrease {
                cluster: "c1".into(),
                namespace: None,
                ratio: 0.1,
            },
        ],
    }
}

fn active(events: &[AlertEvent]) -> Vec<(String, Vec<(String, String)>)> {
    let mut v: Vec<_> = events
        .iter()
        .filter(|e| e.active)
        .map(|e| {
            (
                e.name.clone(),
                e.labels
                    .iter()
                    .filter(|(k, _)| *k != "severity")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
        .collect();
    v.sort();
    v
}

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn evaluate_applies_the_seed_thresholds() {
    let rules = AlertRules::default();
    // All below threshold: observed, none active. Assets had no runs: no event; assets'
    // freshness is not watched.
    let quiet = evaluate(&rules, &snapshot(1, 20, 14_400.0, 0.5, 0.8), NOW);
    assert!(active(&quiet).is_empty(), "{quiet:?}");
    assert_eq!(quiet.len(), 1 + 1 + 2 + 1);
    assert!(
        !quiet
            .iter()
            .any(|e| e.labels.get("endpoint").map(String::as_str) == Some("assets"))
    );
    let loud = evaluate(&rules, &snapshot(2, 20, 14_401.0, 0.51, 0.81), NOW);
    assert_eq!(
        active(&loud),
        vec![
            (
                COST_SPIKE.to_string(),
                l(&[("cluster", "c1"), ("namespace", "shop")])
            ),
            (
                DATA_STALE.to_string(),
                l(&[("cluster", "c1"), ("source", "allocation")])
            ),
            (
                EXTRACTION_FAILURE_RATE.to_string(),
                l(&[("cluster", "c1"), ("endpoint", "allocation")])
            ),
            (
                STORAGE_FULL.to_string(),
                l(&[("disk", "data"), ("store", "sqlite")])
            ),
        ]
    );
    let rate = loud
        .iter()
        .find(|e| e.name == EXTRACTION_FAILURE_RATE)
        .unwrap();
    assert_eq!((rate.value, rate.threshold), (0.1, 0.05));
    assert_eq!(rate.for_, Duration::from_secs(300));
    assert!(rate.summary.contains("c1 allocation"));
    // Thresholds come from the rules.
    let strict = AlertRules {
        storage_used_ratio: 0.5,
        ..AlertRules::default()
    };
    let e = evaluate(&strict, &snapshot(0, 1, 0.0, 0.0, 0.6), NOW);
    assert_eq!(active(&e).len(), 1);
    // Fingerprints are stable and distinct.
    let again = evaluate(&rules, &snapshot(2, 20, 14_401.0, 0.51, 0.81), NOW + 60);
    for (a, b) in loud.iter().zip(&again) {
        assert_eq!(a.fingerprint, b.fingerprint);
    }
    let mut fps: Vec<_> = loud.iter().map(|e| &e.fingerprint).collect();
    fps.sort();
    fps.dedup();
    assert_eq!(fps.len(), loud.len());
}

fn storage(used: f64) -> Vec<AlertEvent> {
    let snap = Snapshot {
        storage: vec![StorageUse {
            store: "sqlite".into(),
            disk: "data".into(),
            used_ratio: used,
        }],
        ..Snapshot::default()
    };
    evaluate(&AlertRules::default(), &snap, 0)
}

const REPEAT: Duration = Duration::from_secs(4 * 3600);
const ABSENT: Duration = Duration::from_secs(2 * 3600);

#[test]
fn pending_then_firing_once_then_repeat_then_resolved_once() {
    let mut book = AlertBook::default();
    let step = |book: &mut AlertBook, used: f64, t: i64| {
        book.step(&storage(used), t, REPEAT, ABSENT)
            .into_iter()
            .map(|n| (n.status, n.repeat))
            .collect::<Vec<_>>()
    };
    // Breach: pending, no notification until `for` (15 min) has passed.
    assert!(step(&mut book, 0.9, NOW).is_empty());
    assert_eq!(book.states()[0].status, AlertStatus::Pending);
    assert!(step(&mut book, 0.9, NOW + 14 * MIN).is_empty());
    assert_eq!(
        step(&mut book, 0.95, NOW + 15 * MIN),
        vec![(AlertStatus::Firing, false)]
    );
    let s = &book.states()[0];
    assert_eq!(
        (s.status, s.fired_at, s.value),
        (AlertStatus::Firing, Some(NOW + 15 * MIN), 0.95)
    );
    // Dedup: every minute for almost 4 h, nothing new.
    for m in 16..(15 + 4 * 60) {
        assert!(step(&mut book, 0.9, NOW + m * MIN).is_empty(), "minute {m}");
    }
    // The repeat interval.
    assert_eq!(
        step(&mut book, 0.9, NOW + 15 * MIN + 4 * HOUR),
        vec![(AlertStatus::Firing, true)]
    );
    assert!(step(&mut book, 0.9, NOW + 16 * MIN + 4 * HOUR).is_empty());
    // Cleared: resolved once.
    let t = NOW + 5 * HOUR;
    assert_eq!(
        step(&mut book, 0.1, t),
        vec![(AlertStatus::Resolved, false)]
    );
    assert_eq!(book.states()[0].resolved_at, Some(t));
    assert!(step(&mut book, 0.1, t + MIN).is_empty());
    assert!(book.firing().is_empty());
    // A new breach is a new episode: pending again.
    assert!(step(&mut book, 0.9, t + 2 * MIN).is_empty());
    assert_eq!(book.states()[0].status, AlertStatus::Pending);
    assert_eq!(book.states()[0].active_since, t + 2 * MIN);
}

#[test]
fn a_pending_alert_that_clears_is_forgotten_silently() {
    let mut book = AlertBook::default();
    assert!(book.step(&storage(0.9), NOW, REPEAT, ABSENT).is_empty());
    assert!(
        book.step(&storage(0.5), NOW + MIN, REPEAT, ABSENT)
            .is_empty()
    );
    assert!(book.states().is_empty());
    // A zero `for` fires at the first breach.
    let ev: Vec<AlertEvent> = storage(0.9)
        .into_iter()
        .map(|mut e| {
            e.for_ = Duration::ZERO;
            e
        })
        .collect();
    assert_eq!(book.step(&ev, NOW, REPEAT, ABSENT).len(), 1);
}

#[test]
fn a_firing_alert_without_data_resolves_only_after_the_absence_limit() {
    let mut book = AlertBook::default();
    book.step(&storage(0.9), NOW, REPEAT, ABSENT);
    assert_eq!(
        book.step(&storage(0.9), NOW + 15 * MIN, REPEAT, ABSENT)
            .len(),
        1
    );
    // No data (e.g. after a restart, or the disk became unreadable): the state holds.
    assert!(book.step(&[], NOW + HOUR, REPEAT, ABSENT).is_empty());
    assert_eq!(book.firing().len(), 1);
    let n = book.step(&[], NOW + 15 * MIN + 2 * HOUR + 1, REPEAT, ABSENT);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].status, AlertStatus::Resolved);
    // Resolved states are dropped after a week.
    assert_eq!(book.states().len(), 1);
    book.step(&[], NOW + 8 * 86_400, REPEAT, ABSENT);
    assert!(book.states().is_empty());
}

#[test]
fn states_survive_a_restart_through_sqlite_without_renotifying() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let mut book = AlertBook::new(AlertStateStore::load(&store).unwrap());
        book.step(&storage(0.9), NOW, REPEAT, ABSENT);
        assert_eq!(
            book.step(&storage(0.9), NOW + 15 * MIN, REPEAT, ABSENT)
                .len(),
            1
        );
        // A second, pending alert.
        let other = evaluate(
            &AlertRules::default(),
            &Snapshot {
                cost_increase: vec![CostIncrease {
                    cluster: "c1".into(),
                    namespace: None,
                    ratio: 2.0,
                }],
                ..Snapshot::default()
            },
            0,
        );
        book.step(&other, NOW + 15 * MIN, REPEAT, ABSENT);
        AlertStateStore::save(&store, &book.states()).unwrap();
    }
    // Restart.
    let store = SqliteStore::open(&path).unwrap();
    let loaded = AlertStateStore::load(&store).unwrap();
    assert_eq!(loaded.len(), 2);
    let mut book = AlertBook::new(loaded);
    assert_eq!(book.firing().len(), 1);
    // The pending one kept its start.
    let pending = book
        .states()
        .into_iter()
        .find(|s| s.status == AlertStatus::Pending)
        .unwrap();
    assert_eq!(pending.active_since, NOW + 15 * MIN);
    // Still firing: no new notification until the repeat interval from the first one.
    assert!(
        book.step(&storage(0.9), NOW + 20 * MIN, REPEAT, ABSENT)
            .is_empty()
    );
    assert!(
        book.step(&storage(0.9), NOW + 14 * MIN + 4 * HOUR, REPEAT, ABSENT)
            .is_empty()
    );
    let n = book.step(&storage(0.9), NOW + 15 * MIN + 4 * HOUR, REPEAT, ABSENT);
    assert_eq!((n.len(), n[0].repeat), (1, true));
    // The pending one had no data for over 2 h: forgotten without notice.
    assert!(
        book.states()
            .iter()
            .all(|s| s.status != AlertStatus::Pending)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_alerts_fires_delivers_and_resolves() {
    let (base, received) = receiver(0).await;
    let clock = ManualClock::new(T0);
    let metrics = Metrics::with_clock("dev", clock.clock());
    metrics.register_targets(&["c1"], &["allocation"]);
    metrics.set_last_success("c1", "allocation", T0);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AlertStateStore> =
        Arc::new(SqliteStore::open(&dir.path().join("kb.db")).unwrap());
    let cfg = AlertsConfig {
        interval: Duration::from_millis(20),
        rules: AlertRules {
            extraction_failure_for: Duration::ZERO,
            ..AlertRules::default()
        },
        webhooks: vec![WebhookConfig {
            url: format!("{base}/generic/token"),
            format: WebhookFormat::Generic,
        }],
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(5),
        },
        ..AlertsConfig::default()
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(kb_ops::run_alerts(
        metrics.clone(),
        cfg,
        store.clone(),
        shutdown.clone(),
    ));
    // A failing endpoint: 1 failure of 2 runs in the hour.
    metrics.record_extraction("c1", "allocation", kb_ops::ExtractionOutcome::Failure);
    metrics.record_extraction("c1", "allocation", kb_ops::ExtractionOutcome::Success);
    until(|| !received.all().is_empty()).await;
    let first: serde_json::Value = serde_json::from_str(&received.all()[0].1).unwrap();
    assert_eq!(first["alert"], EXTRACTION_FAILURE_RATE);
    assert_eq!(first["status"], "firing");
    assert_eq!(first["value"], 0.5);
    // Dedup across many evaluations.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received.all().len(), 1);
    // Kubecost recovers: after an hour the failure has left the window.
    clock.advance(3600.0);
    metrics.set_last_success("c1", "allocation", clock.get());
    metrics.record_extraction("c1", "allocation", kb_ops::ExtractionOutcome::Success);
    until(|| received.all().len() == 2).await;
    let resolved: serde_json::Value = serde_json::from_str(&received.all()[1].1).unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["endsAt"].is_string());
    shutdown.trigger();
    task.await.unwrap().unwrap();
    let saved = store.load().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].status, AlertStatus::Resolved);
    assert_eq!(received.all().len(), 2);
}

#[tokio::test]
async fn run_alerts_stops_on_shutdown_without_webhooks() {
    let metrics = Metrics::new("dev");
    let shutdown = Shutdown::new();
    let store = Arc::new(MemoryAlertStore::default());
    let task = tokio::spawn(kb_ops::run_alerts(
        metrics,
        AlertsConfig::default(),
        store,
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
