//! Webhook notifications of the alerts: payloads in three formats, and one worker per webhook
//! fed by a bounded queue, so delivering never blocks the evaluator.
//!
//! - `generic`: one JSON object per notification ([`generic_body`]).
//! - `slack`: `{"text": ...}` ([`slack_body`]), for incoming webhooks.
//! - `alertmanager`: a JSON array of alerts as `POST /api/v2/alerts` takes ([`alertmanager_body`]).
//!   Alertmanager resolves an alert whose `endsAt` has passed, and deduplicates and repeats on
//!   its own, so, like Prometheus, the bridge sends it every firing alert at every evaluation
//!   with `endsAt` four intervals ahead, and each resolution once with its real end. The other
//!   formats get the notify-once / repeat-interval / resolved-once sequence of
//!   [`crate::alerts::AlertBook`].
//!
//! Delivery: `POST` with `Content-Type: application/json`, a connect and a total timeout, and
//! retries with full-jitter backoff ([`kb_pipeline::retry`]) on connection errors, timeouts, 408,
//! 429 (honouring `Retry-After` in seconds) and 5xx; other statuses are permanent. A full queue
//! drops the new notification with a warning.
//!
//! Secrets: webhook URLs may embed tokens (Slack's path does). Every log line and error shows the
//! URL as [`redact_url`] gives it (scheme, host and port only), and transport errors are
//! stripped of their URL before they are formatted.

use std::collections::BTreeMap;
use std::time::Duration;

use kb_pipeline::retry::{RetryHint, RetryPolicy, Retryable, retry};
use kb_pipeline::shutdown::Shutdown;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alerts::{AlertState, AlertStatus, Notification};
use crate::config::{AlertsConfig, WebhookFormat};

/// Returns `scheme://host[:port]`, with `/…` when the URL had a path, query or fragment;
/// user info is dropped. Anything that does not look like a URL becomes `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return "<redacted>".into();
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let tail = if tail.is_empty() || tail == "/" {
        ""
    } else {
        "/…"
    };
    format!("{scheme}://{host}{tail}")
}

fn rfc3339(secs: i64) -> Value {
    chrono::DateTime::from_timestamp(secs, 0).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

fn starts_at(a: &AlertState) -> i64 {
    a.fired_at.unwrap_or(a.active_since)
}

/// The `generic` payload: `alert`, `status`, `repeat`, `fingerprint`, `labels`,
/// `annotations` (`summary`, `description`), `summary`, `value`, `threshold`, `startsAt`,
/// `endsAt` (null while firing).
pub fn generic_body(n: &Notification) -> Value {
    let a = &n.alert;
    json!({
        "alert": a.name,
        "status": n.status.as_str(),
        "repeat": n.repeat,
        "fingerprint": a.fingerprint,
        "labels": a.labels,
        "annotations": { "summary": a.summary, "description": a.description },
        "summary": a.summary,
        "value": a.value,
        "threshold": a.threshold,
        "startsAt": rfc3339(starts_at(a)),
        "endsAt": match (n.status, a.resolved_at) {
            (AlertStatus::Resolved, Some(t)) => rfc3339(t),
            _ => Value::Null,
        },
    })
}

/// The `slack` payload: `{"text": "[FIRING] summary\ndescription"}`.
pub fn slack_body(n: &Notification) -> Value {
    let a = &n.alert;
    let tag = match n.status {
        AlertStatus::Resolved => "RESOLVED",
        _ if n.repeat => "FIRING, still",
        _ => "FIRING",
    };
    json!({ "text": format!("[{tag}] {}: {}\n{}", a.name, a.summary, a.description) })
}

/// The `alertmanager` payload: an array of `{labels, annotations, startsAt, endsAt,
/// generatorURL?}`; `labels` hold `alertname` and the alert's labels. `alerts` pairs each state
/// with its `endsAt` (unix seconds).
pub fn alertmanager_body(alerts: &[(AlertState, i64)], external_url: Option<&str>) -> Value {
    let items: Vec<Value> = alerts
        .iter()
        .map(|(a, ends)| {
            let mut labels: BTreeMap<String, String> = a.labels.clone();
            labels.insert("alertname".into(), a.name.clone());
            let mut o = json!({
                "labels": labels,
                "annotations": {
                    "summary": a.summary,
                    "description": a.description,
                    "value": a.value.to_string(),
                    "threshold": a.threshold.to_string(),
                },
                "startsAt": rfc3339(starts_at(a)),
                "endsAt": rfc3339(*ends),
            });
            if let (Some(u), Some(m)) = (external_url, o.as_object_mut()) {
                m.insert(
                    "generatorURL".into(),
                    Value::String(format!("{}/metrics", u.trim_end_matches('/'))),
                );
            }
            o
        })
        .collect();
    Value::Array(items)
}

/// Why a delivery attempt failed. Never holds the webhook's full URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {url}: {message}")]
    Transport { url: String, message: String },
    #[error("webhook {url}: status {status}")]
    Status {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
    },
}

impl Retryable for WebhookError {
    fn retry_hint(&self) -> RetryHint {
        match self {
            WebhookError::Transport { .. } => RetryHint::Retry { after: None },
            WebhookError::Status {
                status,
                retry_after,
                ..
            } => {
                if *status == 408 || *status == 429 || *status >= 500 {
                    RetryHint::Retry {
                        after: *retry_after,
                    }
                } else {
                    RetryHint::Permanent
                }
            }
        }
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook client: {0}")]
    Client(String),
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    redacted: &str,
    body: Vec<u8>,
) -> Result<(), WebhookError> {
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let e = e.without_url();
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message.push_str(": ");
                message.push_str(&s.to_string());
                src = s.source();
            }
            WebhookError::Transport {
                url: redacted.to_string(),
                message,
            }
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Err(WebhookError::Status {
        url: redacted.to_string(),
        status: status.as_u16(),
        retry_after,
    })
}

struct Hook {
    format: WebhookFormat,
    redacted: String,
    tx: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

/// The webhook workers and their queues.
pub struct Notifier {
    hooks: Vec<Hook>,
    external_url: Option<String>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.hooks.iter().map(|h| (&h.redacted, h.format)))
            .finish()
    }
}

async fn worker(
    client: reqwest::Client,
    url: String,
    redacted: String,
    mut rx: mpsc::Receiver<Vec<u8>>,
    policy: RetryPolicy,
    shutdown: Shutdown,
) {
    loop {
        let body = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = shutdown.wait() => break,
        };
        let r = retry(
            policy,
            &shutdown,
            |_| post(&client, &url, &redacted, body.clone()),
            |e, attempt, delay| {
                tracing::warn!(
                    webhook = %redacted,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %e,
                    "webhook delivery failed; retrying"
                );
            },
        )
        .await;
        match r {
            Ok(()) => tracing::debug!(webhook = %redacted, "webhook delivered"),
            Err(e) => {
                let attempts = e.attempts();
                tracing::warn!(
                    webhook = %redacted,
                    attempts,
                    error = %e.into_inner(),
                    "webhook delivery failed; notification dropped"
                );
            }
        }
    }
}

impl Notifier {
    /// Starts one worker per configured webhook (on the current Tokio runtime).
    pub fn start(cfg: &AlertsConfig, shutdown: &Shutdown) -> Result<Notifier, NotifyError> {
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Client(e.without_url().to_string()))?;
        let hooks = cfg
            .webhooks
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
                let redacted = redact_url(&w.url);
                let task = tokio::spawn(worker(
                    client.clone(),
                    w.url.clone(),
                    redacted.clone(),
                    rx,
                    cfg.retry,
                    shutdown.clone(),
                ));
                Hook {
                    format: w.format,
                    redacted,
                    tx,
                    task,
                }
            })
            .collect();
        Ok(Notifier {
            hooks,
            external_url: cfg.external_url.clone(),
        })
    }

    /// Queues this evaluation's notifications (and, for Alertmanager, every firing alert)
    /// without waiting. `interval` is the evaluation interval (Alertmanager's `endsAt`).
    pub fn dispatch(
        &self,
        notes: &[Notification],
        firing: &[AlertState],
        now: i64,
        interval: Duration,
    ) {
        for h in &self.hooks {
            let bodies: Vec<(Value, String)> = match h.format {
                WebhookFormat::Generic => notes
                    .iter()
                    .map(|n| (generic_body(n), n.alert.name.clone()))
                    .collect(),
                WebhookFormat::Slack => notes
                    .iter()
                    .map(|n| (slack_body(n), n.alert.name.clone()))
                    .collect(),
                WebhookFormat::Alertmanager => {
                    let ahead = i64::try_from(interval.max(Duration::from_secs(60)).as_secs())
                        .unwrap_or(3600)
                        .saturating_mul(4);
                    let mut alerts: Vec<(AlertState, i64)> = firing
                        .iter()
                        .map(|a| (a.clone(), now.saturating_add(ahead)))
                        .collect();
                    alerts.extend(
                        notes
                            .iter()
                            .filter(|n| n.status == AlertStatus::Resolved)
                            .map(|n| (n.alert.clone(), n.alert.resolved_at.unwrap_or(now))),
                    );
                    if alerts.is_empty() {
                        Vec::new()
                    } else {
                        let what = format!("{} alerts", alerts.len());
                        vec![(
                            alertmanager_body(&alerts, self.external_url.as_deref()),
                            what,
                        )]
                    }
                }
            };
            for (body, what) in bodies {
                let bytes = match serde_json::to_vec(&body) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "notification could not be encoded");
                        continue;
                    }
                };
                match h.tx.try_send(bytes) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                        webhook = %h.redacted,
                        what,
                        "webhook queue full; notification dropped"
                    ),
                    Err(mpsc::error::TrySendError::Closed(_)) => tracing::warn!(
                        webhook = %h.redacted,
                        what,
                        "webhook worker stopped; notification dropped"
                    ),
                }
            }
        }
    }

    /// Closes the queues and waits for the workers (which stop at once on shutdown, or after
    /// delivering what is queued otherwise).
    pub async fn close(self) {
        for h in self.hooks {
            drop(h.tx);
            if let Err(e) = h.task.await {
                tracing::warn!(webhook = %h.redacted, error = %e, "webhook worker failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_everything_but_scheme_host_and_port() {
        assert_eq!(
            redact_url("https://hooks.example.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@am.monitoring.svc:9093/api/v2/alerts?token=x"),
            "http://am.monitoring.svc:9093/…"
        );
        assert_eq!(redact_url("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        assert_eq!(redact_url("not a url with secret"), "<redacted>");
    }

    #[test]
    fn status_retry_hints() {
        let s = |status| WebhookError::Status {
            url: "u".into(),
            status,
            retry_after: None,
        };
        assert_eq!(s(500).retry_hint(), RetryHint::Retry { after: None });
        assert_eq!(s(429).retry_hint(), RetryHint::Retry { after: None });
        assert_eq!(s(400).retry_hint(), RetryHint::Permanent);
        assert_eq!(s(404).retry_hint(), RetryHint::Permanent);
    }
}
