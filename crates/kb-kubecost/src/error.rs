//! Errors of the Kubecost client and its parsers, and whether retrying may help.
//!
//! Invariants: no message ever contains a header, a token or a password (errors are built from
//! the endpoint path, the window, status codes and response bodies only, and reqwest errors are
//! stripped of their URL). Every variant says which request it belongs to through `endpoint`
//! (for example `GET /model/allocation window 2024-01-01T00:00:00Z..2024-01-02T00:00:00Z`);
//! the pure parsers use `document` and the client replaces it with [`Error::at`].

use std::time::Duration;

use kb_pipeline::retry::{RetryHint, Retryable};

/// What went wrong talking to Kubecost or reading its answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client configuration is unusable (bad URL, bad CA certificate, ...).
    #[error("invalid kubecost client configuration: {0}")]
    Config(String),
    /// The connection could not be made or broke before a response arrived (retryable).
    #[error("{endpoint}: connection failed: {message}")]
    Connect { endpoint: String, message: String },
    /// The connect timeout or the whole-request timeout expired (retryable).
    #[error("{endpoint}: timed out")]
    Timeout { endpoint: String },
    /// Kubecost answered with a non-2xx HTTP status. 408, 429 and 5xx are retryable.
    #[error("{endpoint}: http status {status}: {message}")]
    Http {
        endpoint: String,
        status: u16,
        /// Kubecost's message (from a JSON envelope) or the start of the plain-text body.
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The JSON envelope reported an error (`code` not 2xx or `status: "error"`).
    #[error("{endpoint}: kubecost reported error code {code}: {message}")]
    Api {
        endpoint: String,
        code: i64,
        message: String,
    },
    /// The body ended before the JSON document did (connection closed early; retryable).
    #[error("{endpoint}: response truncated at byte {byte_offset}: {what}")]
    Truncated {
        endpoint: String,
        what: String,
        byte_offset: u64,
    },
    /// The body is not the JSON Kubecost should send (permanent).
    #[error("{endpoint}: malformed response at byte {byte_offset}: {what}")]
    Malformed {
        endpoint: String,
        what: String,
        byte_offset: u64,
    },
    /// A body, or one allocation object in it, is larger than the configured limit.
    #[error("{endpoint}: {what} is larger than the limit of {limit} bytes")]
    TooLarge {
        endpoint: String,
        what: String,
        limit: u64,
    },
    /// The endpoint does not exist for this flavor (for example budgets on OpenCost).
    #[error("{endpoint}: not supported by {flavor}")]
    Unsupported {
        endpoint: String,
        flavor: &'static str,
    },
    /// The receiver of allocation batches was dropped, so streaming stopped.
    #[error("{endpoint}: the receiver of allocation batches was dropped")]
    ReceiverDropped { endpoint: String },
}

/// The `endpoint` placeholder of errors from the pure parsers.
pub(crate) const DOCUMENT: &str = "document";

impl Error {
    /// Replaces the `document` placeholder with the request's endpoint description.
    pub fn at(mut self, endpoint: &str) -> Error {
        let slot = match &mut self {
            Error::Config(_) => return self,
            Error::Connect { endpoint, .. }
            | Error::Timeout { endpoint }
            | Error::Http { endpoint, .. }
            | Error::Api { endpoint, .. }
            | Error::Truncated { endpoint, .. }
            | Error::Malformed { endpoint, .. }
            | Error::TooLarge { endpoint, .. }
            | Error::Unsupported { endpoint, .. }
            | Error::ReceiverDropped { endpoint } => endpoint,
        };
        if slot == DOCUMENT {
            *slot = endpoint.to_string();
        }
        self
    }

    pub(crate) fn malformed(what: impl Into<String>, byte_offset: u64) -> Error {
        Error::Malformed {
            endpoint: DOCUMENT.to_string(),
            what: what.into(),
            byte_offset,
        }
    }

    pub(crate) fn truncated(what: impl Into<String>, byte_offset: u64) -> Error {
        Error::Truncated {
            endpoint: DOCUMENT.to_string(),
            what: what.into(),
            byte_offset,
        }
    }

    pub(crate) fn too_large(what: impl Into<String>, limit: u64) -> Error {
        Error::TooLarge {
            endpoint: DOCUMENT.to_string(),
            what: what.into(),
            limit,
        }
    }
}

/// Returns true for HTTP (or envelope) codes worth retrying: 408, 429 and 5xx.
pub(crate) fn retryable_code(code: i64) -> bool {
    code == 408 || code == 429 || (500..=599).contains(&code)
}

impl Retryable for Error {
    fn retry_hint(&self) -> RetryHint {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::Truncated { .. } => {
                RetryHint::Retry { after: None }
            }
            Error::Http {
                status,
                retry_after,
                ..
            } if retryable_code(i64::from(*status)) => RetryHint::Retry {
                after: *retry_after,
            },
            Error::Api { code, .. } if retryable_code(*code) => RetryHint::Retry { after: None },
            Error::Config(_)
            | Error::Http { .. }
            | Error::Api { .. }
            | Error::Malformed { .. }
            | Error::TooLarge { .. }
            | Error::Unsupported { .. }
            | Error::ReceiverDropped { .. } => RetryHint::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hints_follow_the_status() {
        let http = |status, retry_after| Error::Http {
            endpoint: "x".into(),
            status,
            message: String::new(),
            retry_after,
        };
        assert_eq!(
            http(503, None).retry_hint(),
            RetryHint::Retry { after: None }
        );
        assert_eq!(
            http(429, Some(Duration::from_secs(3))).retry_hint(),
            RetryHint::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            http(408, None).retry_hint(),
            RetryHint::Retry { after: None }
        );
        assert_eq!(http(404, None).retry_hint(), RetryHint::Permanent);
        assert_eq!(http(400, None).retry_hint(), RetryHint::Permanent);
        assert_eq!(
            Error::truncated("x", 1).retry_hint(),
            RetryHint::Retry { after: None }
        );
        assert_eq!(Error::malformed("x", 1).retry_hint(), RetryHint::Permanent);
    }

    #[test]
    fn at_fills_only_the_placeholder() {
        let e = Error::malformed("bad", 3).at("GET /model/allocation");
        assert!(
            e.to_string()
                .starts_with("GET /model/allocation: malformed")
        );
        let e = e.at("other");
        assert!(e.to_string().starts_with("GET /model/allocation"));
    }
}
