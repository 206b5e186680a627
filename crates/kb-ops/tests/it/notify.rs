//! Webhook delivery to a real local receiver in each format, retried on 500 until it
//! succeeds, with the URL's secret never in the logs.

use std::collections::BTreeMap;
use std::time::Duration;

use kb_ops::alerts::{AlertState, AlertStatus, Notification, STORAGE_FULL};
use kb_ops::notify::Notifier;
use kb_ops::{AlertsConfig, WebhookConfig, WebhookFormat};
use kb_pipeline::retry::RetryPolicy;
use kb_pipeline::shutdown::Shutdown;
use serde_json::Value;

use crate::common::*;

const SECRET: &str = "T0001/B0002/XXXXSECRETXXXX";
const NOW: i64 = 1_699_920_000;

fn state(status: AlertStatus) -> AlertState {
    let mut labels = BTreeMap::new();
    labels.insert("store".to_string(), "sqlite".to_string());
    labels.insert("disk".to_string(), "data".to_string());
    labels.insert("severity".to_string(), "warning".to_string());
    AlertState {
        fingerprint: "0123456789abcdef".into(),
        name: STORAGE_FULL.into(),
        labels,
        status,
        active_since: NOW - 900,
        fired_at: Some(NOW),
        resolved_at: (status == AlertStatus::Resolved).then_some(NOW + 3600),
        last_notified: Some(NOW),
        last_seen: NOW,
        value: 0.91,
        threshold: 0.8,
        summary: "kubecost-bridge: sqlite storage above 80.0%".into(),
        description: "sqlite disk data is 91.0% full".into(),
    }
}

fn cfg(url: String, format: WebhookFormat) -> AlertsConfig {
    AlertsConfig {
        webhooks: vec![WebhookConfig { url, format }],
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(10),
        },
        external_url: Some("https://bridge.example.test/".into()),
        ..AlertsConfig::default()
    }
}

/// Sends one firing notification through a receiver that fails twice; returns the delivered
/// body and the logs.
async fn deliver(format: WebhookFormat, status: AlertStatus) -> (Value, String, String) {
    let (logs, _guard) = capture_logs();
    let (base, received) = receiver(2).await;
    let url = format!("{base}/services/{SECRET}");
    let shutdown = Shutdown::new();
    let notifier = Notifier::start(&cfg(url, format), &shutdown).unwrap();
    let n = Notification {
        status,
        repeat: false,
        alert: state(status),
    };
    let firing = if status == AlertStatus::Firing {
        vec![n.alert.clone()]
    } else {
        Vec::new()
    };
    notifier.dispatch(&[n], &firing, NOW, Duration::from_secs(60));
    until(|| received.all().len() == 3).await;
    notifier.close().await;
    let all = received.all();
    assert!(
        all.iter()
            .all(|(p, b)| *p == format!("/services/{SECRET}") && *b == all[0].1)
    );
    let body = serde_json::from_str(&all[2].1).unwrap();
    (body, logs.text(), base)
}

fn check_logs(logs: &str, base: &str) {
    assert!(logs.contains("webhook delivery failed; retrying"), "{logs}");
    assert!(logs.contains("status 500"), "{logs}");
    assert!(logs.contains(&format!("{base}/…")), "{logs}");
    assert!(
        !logs.contains("XXXXSECRET") && !logs.contains("services/T0001"),
        "{logs}"
    );
}

#[tokio::test]
async fn generic_webhook_is_retried_until_delivered() {
    let (body, logs, base) = deliver(WebhookFormat::Generic, AlertStatus::Firing).await;
    check_logs(&logs, &base);
    assert_eq!(body["alert"], STORAGE_FULL);
    assert_eq!(body["status"], "firing");
    assert_eq!(body["labels"]["store"], "sqlite");
    assert_eq!(body["annotations"]["summary"], body["summary"]);
    assert_eq!(body["value"], 0.91);
    assert_eq!(body["threshold"], 0.8);
    assert_eq!(body["startsAt"], "2023-11-14T00:00:00Z");
    assert!(body["endsAt"].is_null());
    let (body, _, _) = deliver(WebhookFormat::Generic, AlertStatus::Resolved).await;
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["endsAt"], "2023-11-14T01:00:00Z");
}

#[tokio::test]
async fn slack_webhook_gets_text() {
    let (body, logs, base) = deliver(WebhookFormat::Slack, AlertStatus::Firing).await;
    check_logs(&logs, &base);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[FIRING] KubecostBridgeStorageFull: "),
        "{text}"
    );
    assert!(text.contains("91.0% full"));
    let (body, _, _) = deliver(WebhookFormat::Slack, AlertStatus::Resolved).await;
    assert!(body["text"].as_str().unwrap().starts_with("[RESOLVED]"));
}

#[tokio::test]
async fn alertmanager_webhook_gets_an_array_of_alerts() {
    let (body, logs, base) = deliver(WebhookFormat::Alertmanager, AlertStatus::Firing).await;
    check_logs(&logs, &base);
    let alerts = body.as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a["labels"]["alertname"], STORAGE_FULL);
    assert_eq!(a["labels"]["disk"], "data");
    assert_eq!(a["labels"]["severity"], "warning");
    assert!(a["annotations"]["summary"].is_string());
    assert_eq!(a["annotations"]["value"], "0.91");
    assert_eq!(a["startsAt"], "2023-11-14T00:00:00Z");
    // Firing: ends four intervals (at least a minute each) ahead, re-sent every evaluation.
    assert_eq!(a["endsAt"], "2023-11-14T00:04:00Z");
    assert_eq!(a["generatorURL"], "https://bridge.example.test/metrics");
    let (body, _, _) = deliver(WebhookFormat::Alertmanager, AlertStatus::Resolved).await;
    assert_eq!(body[0]["endsAt"], "2023-11-14T01:00:00Z");
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_unreachable_hooks_redact_their_url() {
    let (logs, _guard) = capture_logs();
    // Nothing listens on this port (bound, then dropped).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = cfg(
        format!("http://127.0.0.1:{port}/hooks/{SECRET}?token=abc"),
        WebhookFormat::Generic,
    );
    c.retry.max_attempts = 2;
    let shutdown = Shutdown::new();
    let notifier = Notifier::start(&c, &shutdown).unwrap();
    assert!(!format!("{notifier:?} {c:?}").contains("SECRET"));
    let n = Notification {
        status: AlertStatus::Firing,
        repeat: false,
        alert: state(AlertStatus::Firing),
    };
    notifier.dispatch(&[n], &[], NOW, Duration::from_secs(60));
    until(|| logs.text().contains("notification dropped")).await;
    notifier.close().await;
    let text = logs.text();
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/…")),
        "{text}"
    );
    assert!(
        !text.contains("SECRET") && !text.contains("token=abc"),
        "{text}"
    );
}
