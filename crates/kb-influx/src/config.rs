//! Connection settings of the InfluxDB store.

use std::time::Duration;

/// The database (1.x) the store writes to unless configured otherwise.
pub const DEFAULT_DATABASE: &str = "cloudtuner";
/// Lines a window writer encodes into one request body.
pub const DEFAULT_BATCH_LINES: usize = 5_000;

pub use kb_pipeline::secret::Secret;
pub use kb_pipeline::tls::ClientTls;

/// Which write API the store talks to.
#[derive(Debug, Clone, PartialEq)]
pub enum InfluxApi {
    /// InfluxDB 1.x `/write?db=..` and `/query` (also the v1-compatible endpoints of 2.x and
    /// 3.x). Credentials, when set, go in an `Authorization: Basic` header, never in the URL.
    V1 {
        /// Database (default `cloudtuner`), created at open when missing (see
        /// [`InfluxConfig::create_database`]).
        database: String,
        /// Retention policy to write to; the database's default when `None`.
        retention_policy: Option<String>,
        /// User name (1.x users; on 2.x any name with the token as password).
        username: Option<String>,
        /// Password; never logged or printed.
        password: Option<Secret>,
    },
    /// InfluxDB 2.x and later `/api/v2/write?org=..&bucket=..` with `Authorization: Token ..`.
    /// Reads go through the v1-compatible `/query?db=<bucket>` (2.x needs a DBRP mapping for
    /// the bucket), window deletes through `/api/v2/delete`.
    V2 {
        org: String,
        bucket: String,
        /// API token; never logged or printed.
        token: Secret,
    },
}

/// How to reach InfluxDB and how to write to it.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxConfig {
    /// Base URL, for example `http://127.0.0.1:8086` (a path prefix is kept). Must not carry
    /// credentials or a query.
    pub url: String,
    /// The write API and its credentials.
    pub api: InfluxApi,
    /// Time to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time for a whole request (send, server work, response body).
    pub timeout: Duration,
    /// Lines per request body.
    pub batch_lines: usize,
    /// Whether request bodies are gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// v1 only: send `CREATE DATABASE` (idempotent) when the store opens. A user without the
    /// admin privilege gets 403 for it, which the store then ignores.
    pub create_database: bool,
    /// Whether a window write first deletes what the cluster has inside the window, so rows
    /// that disappeared from Kubecost's answer do not linger. Needs DELETE (1.x InfluxQL,
    /// 2.x `/api/v2/delete`); turn it off for servers without deletes (3.x), where a rewrite
    /// only overwrites the points it writes again.
    pub replace_windows: bool,
    /// For an `https://` URL: CA certificates to trust and an optional client certificate.
    pub tls: ClientTls,
}

impl InfluxConfig {
    /// Settings for a 1.x server (or a v1-compatible endpoint) at `url` with the defaults:
    /// database `cloudtuner`, no credentials, 5 s connect and 60 s request timeouts, 5000 lines
    /// per body, gzip on, database created when missing, windows replaced.
    pub fn v1(url: impl Into<String>) -> InfluxConfig {
        InfluxConfig {
            url: url.into(),
            api: InfluxApi::V1 {
                database: DEFAULT_DATABASE.to_string(),
                retention_policy: None,
                username: None,
                password: None,
            },
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
            batch_lines: DEFAULT_BATCH_LINES,
            gzip: true,
            create_database: true,
            replace_windows: true,
            tls: ClientTls::default(),
        }
    }

    /// Settings for the v2 API (2.x and later) with the same defaults as [`InfluxConfig::v1`].
    pub fn v2(
        url: impl Into<String>,
        org: impl Into<String>,
        bucket: impl Into<String>,
        token: Secret,
    ) -> InfluxConfig {
        InfluxConfig {
            api: InfluxApi::V2 {
                org: org.into(),
                bucket: bucket.into(),
                token,
            },
            ..InfluxConfig::v1(url)
        }
    }

    /// The database (v1) or bucket (v2) the store writes to.
    pub fn target(&self) -> &str {
        match &self.api {
            InfluxApi::V1 { database, .. } => database,
            InfluxApi::V2 { bucket, .. } => bucket,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let mut c = InfluxConfig::v1("http://127.0.0.1:8086");
        c.api = InfluxApi::V1 {
            database: "db".into(),
            retention_policy: None,
            username: Some("u".into()),
            password: Some(Secret::new("hunter2")),
        };
        let v2 = InfluxConfig::v2("http://x", "o", "b", Secret::new("tok-s3cret"));
        let shown = format!("{c:?} {v2:?} {}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("tok-s3cret"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(c.target(), "db");
        assert_eq!(v2.target(), "b");
    }
}
