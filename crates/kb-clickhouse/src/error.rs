//! Errors of the ClickHouse store and their mapping to the pipeline's [`StoreError`].
//!
//! Invariants: messages are lowercase, start with `clickhouse:` and the operation that failed,
//! and never contain the password (the password only travels in a request header, reqwest's
//! errors are stripped of their URL, and server text is scrubbed of the password before it is
//! kept). Connection errors, timeouts and HTTP 5xx answers are retryable, except 5xx answers
//! whose ClickHouse error code says the statement itself is wrong (syntax, unknown table or
//! column, bad data), which would fail again.

use kb_pipeline::ports::StoreError;

/// An error of the ClickHouse store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (bad URL, credentials in the URL, bad identifier).
    #[error("clickhouse: configuration: {0}")]
    Config(String),
    /// No connection, or the connection broke.
    #[error("clickhouse: {op}: cannot reach the server: {detail}")]
    Connect {
        op: String,
        /// The error with its causes (and what to check for a TLS failure).
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    /// The request took longer than the configured timeout.
    #[error("clickhouse: {op}: timed out after {secs} s")]
    Timeout { op: String, secs: u64 },
    /// The server refused the credentials (HTTP 401/403, or error code 192/193/516).
    #[error("clickhouse: {op}: authentication failed for user {user:?} (http {status}): {message}")]
    Auth {
        op: String,
        user: String,
        status: u16,
        message: String,
    },
    /// The server answered with an error.
    #[error("clickhouse: {op}: http {status}{}: {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Server {
        op: String,
        status: u16,
        code: Option<u32>,
        message: String,
    },
    /// The answer could not be decoded.
    #[error("clickhouse: {op}: cannot decode the answer: {message}")]
    Decode { op: String, message: String },
    /// The caller broke the store's contract (for example a row outside its window).
    #[error("clickhouse: {0}")]
    Invalid(String),
    /// A migration or the stored schema is not what this build expects.
    #[error("clickhouse: schema: {0}")]
    Schema(String),
    /// A delete mutation did not finish in time.
    #[error("clickhouse: {op}: mutation still running after {secs} s")]
    MutationTimeout { op: String, secs: u64 },
    /// The store's internal runtime stopped.
    #[error("clickhouse: {0}: the store's runtime stopped")]
    Runtime(String),
}

/// ClickHouse error codes that say the statement or its data is wrong: retrying cannot help.
const PERMANENT_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    16,  // NO_SUCH_COLUMN_IN_TABLE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS
    41,  // CANNOT_PARSE_DATETIME
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    46,  // UNKNOWN_FUNCTION
    47,  // UNKNOWN_IDENTIFIER
    50,  // UNKNOWN_TYPE
    53,  // TYPE_MISMATCH
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    73,  // UNKNOWN_FORMAT
    81,  // UNKNOWN_DATABASE
    115, // UNKNOWN_SETTING
    117, // INCORRECT_DATA
    164, // READONLY
    170, // BAD_GET
    497, // ACCESS_DENIED
];

impl Error {
    /// Returns true when the same request may succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::MutationTimeout { .. } => true,
            Error::Server { status, code, .. } => {
                *status >= 500 && !code.is_some_and(|c| PERMANENT_CODES.contains(&c))
            }
            Error::Auth { .. }
            | Error::Config(_)
            | Error::Decode { .. }
            | Error::Invalid(_)
            | Error::Schema(_)
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

/// Reads ClickHouse's error code from an error body: `Code: 60, e.displayText() = ...`
/// (18.16) or `Code: 60. DB::Exception: ...` (current versions).
pub(crate) fn parse_code(body: &str) -> Option<u32> {
    let rest = &body[body.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Shortens a server error body to its first line and at most 500 characters, with
/// `secret` (when not empty) replaced by `***`.
pub(crate) fn clean_message(body: &str, secret: Option<&str>) -> String {
    let mut text = body.trim().to_string();
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
    fn codes_are_parsed_from_old_and_new_bodies() {
        assert_eq!(
            parse_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(
            parse_code("Code: 193. DB::Exception: Wrong password"),
            Some(193)
        );
        assert_eq!(parse_code("gateway timeout"), None);
    }

    #[test]
    fn retryable_follows_status_and_code() {
        let server = |status, code| Error::Server {
            op: "x".into(),
            status,
            code,
            message: String::new(),
        };
        assert!(server(503, None).retryable());
        assert!(server(500, Some(252)).retryable(), "too many parts");
        assert!(!server(500, Some(27)).retryable(), "bad data");
        assert!(!server(400, Some(62)).retryable());
        assert!(!server(404, None).retryable());
        assert!(
            Error::Timeout {
                op: "x".into(),
                secs: 1
            }
            .retryable()
        );
        let e: StoreError = server(502, None).into();
        assert!(e.retryable);
        assert_eq!(e.message, "clickhouse: x: http 502: ");
    }

    #[test]
    fn messages_are_scrubbed_and_short() {
        let m = clean_message("bad pw s3cret here\nsecond line", Some("s3cret"));
        assert_eq!(m, "bad pw *** here");
        let long = "x".repeat(2000);
        assert_eq!(clean_message(&long, None).len(), 503);
    }
}
