//! The alerts' configuration, as plain data the binary fills from its config file
//! (`alerts.interval`, `alerts.rules.*`, `alerts.webhooks[]`).

use std::time::Duration;

use kb_pipeline::retry::RetryPolicy;

use crate::alerts::AlertRules;
use crate::notify::redact_url;

/// The payload shape a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// One JSON object per notification (see [`crate::notify::generic_body`]).
    Generic,
    /// `{"text": ...}`, for Slack's incoming webhooks and compatible receivers.
    Slack,
    /// A JSON array of alerts, as Alertmanager's `POST /api/v2/alerts` takes. The URL is the
    /// full endpoint (`http://alertmanager:9093/api/v2/alerts`).
    Alertmanager,
}

impl WebhookFormat {
    /// Parses `generic`, `slack` or `alertmanager`.
    pub fn parse(s: &str) -> Option<WebhookFormat> {
        match s {
            "generic" => Some(WebhookFormat::Generic),
            "slack" => Some(WebhookFormat::Slack),
            "alertmanager" => Some(WebhookFormat::Alertmanager),
            _ => None,
        }
    }

    /// The configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Alertmanager => "alertmanager",
        }
    }
}

/// One webhook (`alerts.webhooks[]`). Its URL may hold a secret (Slack's does): `Debug` and
/// every log show it redacted ([`redact_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub format: WebhookFormat,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .finish()
    }
}

/// The alerts' configuration (`alerts.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Evaluation interval (`alerts.interval`, 1 minute).
    pub interval: Duration,
    /// Thresholds (`alerts.rules.extraction_failure_rate`, `stale_after`, `cost_spike_ratio`,
    /// `storage_used_ratio`) and durations.
    pub rules: AlertRules,
    /// Receivers (`alerts.webhooks`).
    pub webhooks: Vec<WebhookConfig>,
    /// TCP and TLS connect timeout of a webhook request (5 s).
    pub connect_timeout: Duration,
    /// Total timeout of one webhook request (10 s).
    pub request_timeout: Duration,
    /// Retries of a failed delivery (5 attempts, 1 s doubling to 30 s, 5 minutes at most).
    pub retry: RetryPolicy,
    /// Notifications queued per webhook; beyond it new ones are dropped with a warning (256).
    pub queue_capacity: usize,
    /// The bridge's external URL: Alertmanager's `generatorURL` is `{external_url}/metrics`
    /// when set, absent otherwise.
    pub external_url: Option<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            interval: Duration::from_secs(60),
            rules: AlertRules::default(),
            webhooks: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(30),
                max_elapsed: Duration::from_secs(300),
            },
            queue_capacity: 256,
            external_url: None,
        }
    }
}

impl AlertsConfig {
    /// Every problem with the configuration, each naming its key (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.interval < Duration::from_secs(1) {
            out.push("alerts.interval: must be at least 1s".to_string());
        }
        let r = &self.rules;
        for (key, v, max) in [
            (
                "alerts.rules.extraction_failure_rate",
                r.extraction_failure_rate,
                1.0,
            ),
            (
                "alerts.rules.cost_spike_ratio",
                r.cost_spike_ratio,
                f64::MAX,
            ),
            ("alerts.rules.storage_used_ratio", r.storage_used_ratio, 1.0),
        ] {
            if !v.is_finite() || v < 0.0 || v > max {
                out.push(format!(
                    "{key}: {v} is out of range (0 to {})",
                    if max == f64::MAX {
                        "any".to_string()
                    } else {
                        max.to_string()
                    }
                ));
            }
        }
        if r.extraction_failure_window < Duration::from_secs(1) {
            out.push("alerts.rules.extraction_failure_window: must be at least 1s".to_string());
        }
        if r.stale_after.is_zero() {
            out.push("alerts.rules.stale_after: must be positive".to_string());
        }
        if self.queue_capacity == 0 {
            out.push("alerts.queue_capacity: must be positive".to_string());
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let ok = w.url.starts_with("http://") || w.url.starts_with("https://");
            if !ok {
                out.push(format!(
                    "alerts.webhooks[{i}].url: {} is not an http(s) URL",
                    redact_url(&w.url)
                ));
            }
        }
        out
    }
}
