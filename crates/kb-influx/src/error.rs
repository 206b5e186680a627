//! Errors of the InfluxDB store and their mapping to the pipeline's [`StoreError`].
//!
//! Invariants: messages are lowercase, start with `influxdb:` and the operation that failed,
//! and never contain a password or token (secrets only travel in the `Authorization` header,
//! reqwest's errors are stripped of their URL, and server text is scrubbed of the secret
//! before it is kept). Connection errors, timeouts, HTTP 5xx, 408 and 429 are retryable; other
//! 4xx answers (a bad line, a field type conflict, a partial write, an unknown database) are
//! permanent; 401 and 403 are a permanent authentication error.

use kb_pipeline::ports::StoreError;

/// An error of the InfluxDB store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (bad URL, credentials in the URL, a header value).
    #[error("influxdb: bad configuration: {0}")]
    Config(String),
    /// The server could not be reached, or the connection broke.
    #[error("influxdb: {op}: cannot reach the server: {detail}")]
    Connect {
        op: String,
        /// The error with its causes (and what to check for a TLS failure).
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    /// The request did not finish within the configured timeout.
    #[error("influxdb: {op}: no answer within {secs} s")]
    Timeout { op: String, secs: u64 },
    /// The server refused the credentials (401) or the user lacks a privilege (403).
    #[error("influxdb: {op}: authentication failed for {who} (http {status}): {message}")]
    Auth {
        op: String,
        /// The user name, or `token` for the v2 API (never the secret).
        who: String,
        status: u16,
        message: String,
    },
    /// Some points of a write were refused (`partial write: ...`, a field type conflict, an
    /// unparsable line); InfluxDB may have stored the other points of the body.
    #[error("influxdb: {op}: write refused (http {status}): {message}")]
    Write {
        op: String,
        status: u16,
        message: String,
    },
    /// Any other error status.
    #[error("influxdb: {op}: http {status}: {message}")]
    Server {
        op: String,
        status: u16,
        message: String,
    },
    /// A query statement failed (InfluxQL errors come back inside a 200 answer).
    #[error("influxdb: {op}: query failed: {message}")]
    Query { op: String, message: String },
    /// A response body was not what InfluxDB sends.
    #[error("influxdb: {op}: cannot read the answer: {message}")]
    Decode { op: String, message: String },
    /// A writer was used after a failed write, or a commit did not match the writer.
    #[error("influxdb: {0}")]
    Invalid(String),
    /// The store's HTTP runtime is gone.
    #[error("influxdb: {0}: the http runtime stopped")]
    Runtime(String),
}

impl Error {
    /// Returns true when the same request may succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } => true,
            Error::Server { status, .. } | Error::Write { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            Error::Auth { .. }
            | Error::Config(_)
            | Error::Query { .. }
            | Error::Decode { .. }
            | Error::Invalid(_)
            | Error::Runtime(_) => false,
        }
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        StoreError {
            message: e.to_string(),
            retryable: e.retryable(),
            source: Some(Box::new(e)),
        }
    }
}

/// Reads InfluxDB's error text from an error body: the `error` member of a JSON object
/// (`{"error":"partial write: ..."}`, 1.x and 3.x), the `message` member (2.x), or the body.
/// The text is scrubbed of `secret`, kept to its first line and at most 500 characters.
pub(crate) fn server_message(body: &[u8], secret: Option<&str>) -> String {
    let raw = String::from_utf8_lossy(body);
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["error", "message"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_string))
        })
        .unwrap_or_else(|| raw.trim().to_string());
    clean_message(&text, secret)
}

/// Shortens a message to its first line and at most 500 characters, with `secret` (when not
/// empty) replaced by `***`.
pub(crate) fn clean_message(text: &str, secret: Option<&str>) -> String {
    let mut text = text.trim().to_string();
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        text = text.replace(s, "***");
    }
    let first = text.lines().next().unwrap_or_default();
    let mut out: String = first.chars().take(500).collect();
    if out.len() < first.len() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_from_json_or_text_and_are_scrubbed() {
        assert_eq!(
            server_message(
                br#"{"error":"partial write: field type conflict dropped=1"}"#,
                None
            ),
            "partial write: field type conflict dropped=1"
        );
        assert_eq!(
            server_message(
                br#"{"code":"unauthorized","message":"bad token tok1"}"#,
                Some("tok1")
            ),
            "bad token ***"
        );
        assert_eq!(server_message(b"gateway down\nmore", None), "gateway down");
        assert_eq!(clean_message(&"x".repeat(900), None).len(), 503);
    }

    #[test]
    fn retryable_follows_the_status() {
        let server = |status| Error::Server {
            op: "x".into(),
            status,
            message: String::new(),
        };
        assert!(server(503).retryable());
        assert!(server(429).retryable());
        assert!(!server(404).retryable());
        let write = Error::Write {
            op: "write".into(),
            status: 400,
            message: "partial write".into(),
        };
        assert!(!write.retryable());
        let e: StoreError = write.into();
        assert!(!e.retryable);
        assert_eq!(
            e.message,
            "influxdb: write: write refused (http 400): partial write"
        );
        assert!(
            Error::Timeout {
                op: "x".into(),
                secs: 1
            }
            .retryable()
        );
    }
}
