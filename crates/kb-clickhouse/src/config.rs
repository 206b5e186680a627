//! Connection settings of the ClickHouse store.

use std::time::Duration;

/// The database the store uses unless configured otherwise.
pub const DEFAULT_DATABASE: &str = "cloudtuner";
/// Rows a window writer buffers before it sends an insert.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;

pub use kb_pipeline::secret::Secret;
pub use kb_pipeline::tls::ClientTls;

/// How to reach ClickHouse and how to lay out the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickHouseConfig {
    /// Base URL of the HTTP interface, for example `http://127.0.0.1:8123`. Must not carry
    /// credentials: use [`ClickHouseConfig::user`] and [`ClickHouseConfig::password`].
    pub url: String,
    /// Database holding the store's tables (created when missing).
    pub database: String,
    /// User name, sent as `X-ClickHouse-User`.
    pub user: String,
    /// Password, sent as `X-ClickHouse-Key`; never logged or printed.
    pub password: Option<Secret>,
    /// ClickHouse cluster name (from the server's `remote_servers`): when set, the DDL runs
    /// `ON CLUSTER` with replicated local tables behind Distributed tables.
    pub cluster: Option<String>,
    /// Time to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time for a whole request (send, server work, response body).
    pub request_timeout: Duration,
    /// Rows a window writer buffers before sending one insert.
    pub batch_rows: usize,
    /// How long [`kb_pipeline::ports::CostStore::cleanup`] waits for its delete mutations.
    pub mutation_timeout: Duration,
    /// For an `https://` URL: CA certificates to trust and an optional client certificate.
    pub tls: ClientTls,
}

impl ClickHouseConfig {
    /// Settings for the server at `url` with the defaults: database `cloudtuner`, user
    /// `default` without password, single server, 5 s connect and 120 s request timeouts,
    /// batches of 10k rows.
    pub fn new(url: impl Into<String>) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url.into(),
            database: DEFAULT_DATABASE.to_string(),
            user: "default".to_string(),
            password: None,
            cluster: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            batch_rows: DEFAULT_BATCH_ROWS,
            mutation_timeout: Duration::from_secs(120),
            tls: ClientTls::default(),
        }
    }
}

/// Returns true when `s` is a safe ClickHouse identifier (database or cluster name), so it can
/// be written into SQL without quoting.
pub(crate) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !s.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let mut c = ClickHouseConfig::new("http://127.0.0.1:8123");
        c.password = Some(Secret::new("hunter2"));
        let shown = format!("{c:?} {}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("cloudtuner"));
        assert!(is_identifier("kb_test-1"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a b"));
        assert!(!is_identifier("a`b"));
        assert!(!is_identifier("a'b"));
    }
}
