//! The HTTP side: [`InfluxClient`] sends line-protocol bodies, InfluxQL statements and window
//! deletes, over one `reqwest` client driven by a small private tokio runtime.
//!
//! The store's traits are synchronous and are called both from plain threads and from inside
//! the extractor's async tasks. [`Rt::run`] therefore never calls `block_on` on the caller's
//! thread: it spawns the future onto the client's own runtime and waits on a channel, which
//! works in every context (a runtime cannot be entered twice, a channel can be waited on).
//! This is the same design as the ClickHouse store's.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use kb_core::Window;
use kb_pipeline::ports::StoreError;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::config::{InfluxApi, InfluxConfig};
use crate::error::{Error, server_message};
use crate::line::{ql_ident, ql_str, ql_time};

/// The gzip level of request bodies: level 1 compresses line protocol about 10×, several
/// times faster than the default level, and keeps compression off the critical path.
const GZIP_LEVEL: u32 = 1;

/// Write requests in flight in [`InfluxClient::send_all`].
const IN_FLIGHT: usize = 2;

/// The next finished task's result (a panicked or cancelled task is a runtime error).
async fn join_next(
    tasks: &mut tokio::task::JoinSet<Result<(), Error>>,
) -> Option<Result<(), Error>> {
    let r = tasks.join_next().await?;
    Some(r.unwrap_or_else(|_| Err(Error::Runtime("write".into()))))
}

/// Compresses a line-protocol body with gzip (what [`InfluxClient::send_gzip`] expects).
pub fn gzip(lines: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(lines.len() / 6 + 64),
        flate2::Compression::new(GZIP_LEVEL),
    );
    enc.write_all(lines)
        .and_then(|()| enc.finish())
        .map_err(|e| Error::Invalid(format!("gzip: {e}")).into())
}

/// The client's own runtime (one worker thread), shut down in the background on drop so a
/// client can be dropped anywhere, even inside another runtime.
struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    fn new() -> Result<Rt, Error> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kb-influx")
            .enable_all()
            .build()
            .map(|rt| Rt(Some(rt)))
            .map_err(|e| Error::Config(format!("cannot start the http runtime: {e}")))
    }

    /// Runs `fut` on the client's runtime and waits for its output.
    fn run<T: Send + 'static>(
        &self,
        op: &str,
        fut: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let rt = self
            .0
            .as_ref()
            .ok_or_else(|| Error::Runtime(op.to_string()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            // The receiver is gone only when the caller gave up waiting; nothing to report.
            tx.send(fut.await).ok();
        });
        rx.recv().map_err(|_| Error::Runtime(op.to_string()))?
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One series of an InfluxQL answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    /// The `GROUP BY` tags of the series.
    pub tags: BTreeMap<String, String>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<serde_json::Value>>,
}

impl Series {
    /// The index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// The request side shared by clones of a client.
struct Http {
    client: reqwest::Client,
    base: Url,
    api: InfluxApi,
    gzip: bool,
    timeout: Duration,
}

/// A client for one InfluxDB database (v1) or bucket (v2). Cheap to clone.
///
/// Every request has the configured connect and total timeouts. Re-sending a body is
/// idempotent: points with the same measurement, tag set and timestamp overwrite each other.
#[derive(Clone)]
pub struct InfluxClient {
    http: Arc<Http>,
    rt: Arc<Rt>,
}

impl std::fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxClient")
            .field("base", &self.http.base.as_str())
            .field("api", &self.http.api)
            .field("gzip", &self.http.gzip)
            .finish_non_exhaustive()
    }
}

/// Checks and normalises the base URL: http(s), no credentials, no query or fragment, a path
/// ending in `/` (so endpoints join under a path prefix).
pub(crate) fn parse_base_url(s: &str) -> Result<Url, Error> {
    let mut url = Url::parse(s.trim())
        .map_err(|e| Error::Config(format!("influxdb url is not a url: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Error::Config(format!(
            "influxdb url must be http or https, not {}",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(
            "influxdb url must not contain credentials: set them in the api settings".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(
            "influxdb url must not have a query or fragment".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(Error::Config("influxdb url has no host".into()));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

impl InfluxClient {
    /// Makes a client (no request is sent).
    pub fn new(cfg: &InfluxConfig) -> Result<InfluxClient, StoreError> {
        Ok(InfluxClient::build(cfg)?)
    }

    fn build(cfg: &InfluxConfig) -> Result<InfluxClient, Error> {
        let base = parse_base_url(&cfg.url)?;
        match &cfg.api {
            InfluxApi::V1 { database, .. } if database.is_empty() => {
                return Err(Error::Config("the database name is empty".into()));
            }
            InfluxApi::V2 { org, bucket, .. } if org.is_empty() || bucket.is_empty() => {
                return Err(Error::Config("the org and bucket must be set".into()));
            }
            _ => {}
        }
        if cfg.batch_lines == 0 {
            return Err(Error::Config("batch_lines must be at least 1".into()));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .pool_idle_timeout(Duration::from_secs(2));
        let client = kb_pipeline::tls::apply(builder, &cfg.tls)
            .map_err(|e| Error::Config(format!("tls: {e}")))?
            .build()
            .map_err(|e| {
                Error::Config(format!("cannot build the http client: {}", e.without_url()))
            })?;
        Ok(InfluxClient {
            http: Arc::new(Http {
                client,
                base,
                api: cfg.api.clone(),
                gzip: cfg.gzip,
                timeout: cfg.timeout,
            }),
            rt: Arc::new(Rt::new()?),
        })
    }

    /// Checks that the server answers `/ping` (no credentials needed) and returns its version
    /// (the `X-Influxdb-Version` header, empty when absent).
    pub fn ping(&self) -> Result<String, StoreError> {
        let http = self.http.clone();
        Ok(self.rt.run("ping", async move {
            let url = http.endpoint("ping")?;
            let resp = http
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| http.transport_error("ping", e))?;
            let version = resp
                .headers()
                .get("x-influxdb-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| http.transport_error("ping", e))?;
            if status.is_success() {
                Ok(version)
            } else {
                Err(http.status_error("ping", status, &body))
            }
        })?)
    }

    /// Sends a line-protocol body (newline-separated points, timestamps in seconds) to the
    /// write endpoint, gzip-compressed when configured. Any refused point is an error with
    /// the server's message (InfluxDB may have stored the body's other points; sending the
    /// same body again after fixing the cause is idempotent).
    pub fn send(&self, lines: &[u8]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        if self.http.gzip {
            self.send_gzip(gzip(lines)?)
        } else {
            Ok(self.post_write(lines.to_vec(), false)?)
        }
    }

    /// Sends a body already compressed with [`gzip`] (whatever the `gzip` setting).
    pub fn send_gzip(&self, body: Vec<u8>) -> Result<(), StoreError> {
        Ok(self.post_write(body, true)?)
    }

    /// Sends several bodies ([`gzip`]-compressed when `gzipped`) with up to two requests in
    /// flight (InfluxDB parses and indexes a body per core); returns the first error.
    pub fn send_all(&self, bodies: Vec<Vec<u8>>, gzipped: bool) -> Result<(), StoreError> {
        let http = self.http.clone();
        Ok(self.rt.run("write", async move {
            let mut tasks = tokio::task::JoinSet::new();
            let mut first_err = None;
            for body in bodies {
                if tasks.len() >= IN_FLIGHT {
                    if let Some(Err(e)) = join_next(&mut tasks).await {
                        first_err.get_or_insert(e);
                        break;
                    }
                }
                let http = http.clone();
                tasks.spawn(async move { http.write(body, gzipped).await });
            }
            while let Some(r) = join_next(&mut tasks).await {
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })?)
    }

    fn post_write(&self, body: Vec<u8>, gzipped: bool) -> Result<(), Error> {
        let http = self.http.clone();
        self.rt
            .run("write", async move { http.write(body, gzipped).await })
    }

    /// Runs one InfluxQL statement (POST `/query` against the database or bucket, epoch
    /// seconds) and returns the series of its answer. A statement error is an error.
    pub fn query(&self, statement: &str) -> Result<Vec<Series>, StoreError> {
        Ok(self.query_inner("query", statement, true)?)
    }

    pub(crate) fn query_inner(
        &self,
        op: &str,
        statement: &str,
        use_db: bool,
    ) -> Result<Vec<Series>, Error> {
        let http = self.http.clone();
        let statement = statement.to_string();
        let op = op.to_string();
        let op2 = op.clone();
        self.rt.run(&op2, async move {
            let mut url = http.endpoint("query")?;
            {
                let mut q = url.query_pairs_mut();
                if use_db {
                    q.append_pair("db", http.target());
                }
                q.append_pair("epoch", "s");
                q.append_pair("q", &statement);
            }
            tracing::trace!(op, statement, "influxql");
            let resp = http
                .authed(Method::POST, url)?
                .send()
                .await
                .map_err(|e| http.transport_error(&op, e))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| http.transport_error(&op, e))?;
            if status == StatusCode::BAD_REQUEST {
                // A statement InfluxDB cannot parse: `{"error":"error parsing query: ..."}`.
                return Err(Error::Query {
                    message: server_message(&bytes, http.secret()),
                    op,
                });
            }
            if !status.is_success() {
                return Err(http.status_error(&op, status, &bytes));
            }
            parse_query_answer(&op, &bytes, http.secret())
        })
    }

    /// Creates the database (v1) when missing (`CREATE DATABASE` is idempotent). A 403 (a
    /// user without the admin privilege) is ignored: the database may exist already, and a
    /// write to a missing one fails with InfluxDB's `database not found`.
    pub fn create_database(&self) -> Result<(), StoreError> {
        let InfluxApi::V1 { database, .. } = &self.http.api else {
            return Ok(());
        };
        let stmt = format!("CREATE DATABASE {}", ql_ident(database));
        match self.query_inner("create database", &stmt, false) {
            Ok(_) => Ok(()),
            Err(Error::Auth { status: 403, .. }) => {
                tracing::debug!(
                    database = %database,
                    "influxdb: not allowed to create the database; assuming it exists"
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the points of `measurement` whose tags equal `tags` inside `[start, end)` of
    /// `window`: InfluxQL `DELETE` on v1, `/api/v2/delete` on v2.
    pub fn delete(
        &self,
        measurement: &str,
        tags: &[(&str, &str)],
        window: Window,
    ) -> Result<(), StoreError> {
        Ok(self.delete_inner(measurement, tags, Some(window), None)?)
    }

    /// Deletes with an optional window and an optional `time < before` bound.
    pub(crate) fn delete_inner(
        &self,
        measurement: &str,
        tags: &[(&str, &str)],
        window: Option<Window>,
        before: Option<i64>,
    ) -> Result<(), Error> {
        // Without a window: everything before `before` (or everything at all).
        let (start, end) = match (window, before) {
            (Some(w), _) => (w.start, w.end),
            (None, Some(b)) => (0, b),
            (None, None) => (0, i64::MAX / 1_000_000_000),
        };
        match &self.http.api {
            InfluxApi::V1 { .. } => {
                let mut stmt = format!("DELETE FROM {} WHERE ", ql_ident(measurement));
                for (k, v) in tags {
                    stmt.push_str(&format!("{} = {} AND ", ql_ident(k), ql_str(v)));
                }
                stmt.push_str(&ql_time(Window { start, end }));
                self.query_inner("delete", &stmt, true).map(|_| ())
            }
            InfluxApi::V2 { .. } => {
                let mut predicate = format!("_measurement=\"{}\"", v2_escape(measurement));
                for (k, v) in tags {
                    predicate.push_str(&format!(
                        " AND {}=\"{}\"",
                        k,
                        v2_escape(&crate::line::normalize_tag(v))
                    ));
                }
                let body = serde_json::json!({
                    "start": kb_core::window::format_rfc3339(start),
                    // `stop` is inclusive; every point is on a whole second.
                    "stop": kb_core::window::format_rfc3339(end - 1),
                    "predicate": predicate,
                });
                self.post_v2_delete(body.to_string())
            }
        }
    }

    fn post_v2_delete(&self, body: String) -> Result<(), Error> {
        let http = self.http.clone();
        self.rt.run("delete", async move {
            let InfluxApi::V2 { org, bucket, .. } = &http.api else {
                return Err(Error::Invalid("v2 delete on a v1 client".into()));
            };
            let mut url = http.endpoint("api/v2/delete")?;
            url.query_pairs_mut()
                .append_pair("org", org)
                .append_pair("bucket", bucket);
            let resp = http
                .authed(Method::POST, url)?
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| http.transport_error("delete", e))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| http.transport_error("delete", e))?;
            if status.is_success() {
                Ok(())
            } else {
                Err(http.status_error("delete", status, &bytes))
            }
        })
    }

    /// True for the v1 API (InfluxQL `DELETE` and `/query` against a database).
    pub(crate) fn is_v1(&self) -> bool {
        matches!(self.http.api, InfluxApi::V1 { .. })
    }
}

fn v2_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Http {
    fn endpoint(&self, path: &str) -> Result<Url, Error> {
        self.base
            .join(path)
            .map_err(|e| Error::Config(format!("cannot join {path} to the url: {e}")))
    }

    fn target(&self) -> &str {
        match &self.api {
            InfluxApi::V1 { database, .. } => database,
            InfluxApi::V2 { bucket, .. } => bucket,
        }
    }

    fn secret(&self) -> Option<&str> {
        match &self.api {
            InfluxApi::V1 { password, .. } => password.as_ref().map(|p| p.expose()),
            InfluxApi::V2 { token, .. } => Some(token.expose()),
        }
    }

    /// Who the credentials name, for error messages (never the secret).
    fn who(&self) -> String {
        match &self.api {
            InfluxApi::V1 {
                username: Some(u), ..
            } => format!("user {u:?}"),
            InfluxApi::V1 {
                password: Some(_), ..
            } => "the configured token".into(),
            InfluxApi::V1 { .. } => "anonymous access (no credentials configured)".into(),
            InfluxApi::V2 { .. } => "the configured token".into(),
        }
    }

    fn write_url(&self) -> Result<Url, Error> {
        match &self.api {
            InfluxApi::V1 {
                database,
                retention_policy,
                ..
            } => {
                let mut url = self.endpoint("write")?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("db", database);
                    if let Some(rp) = retention_policy {
                        q.append_pair("rp", rp);
                    }
                    q.append_pair("precision", "s");
                }
                Ok(url)
            }
            InfluxApi::V2 { org, bucket, .. } => {
                let mut url = self.endpoint("api/v2/write")?;
                url.query_pairs_mut()
                    .append_pair("org", org)
                    .append_pair("bucket", bucket)
                    .append_pair("precision", "s");
                Ok(url)
            }
        }
    }

    /// POSTs one body to the write endpoint.
    async fn write(&self, body: Vec<u8>, gzipped: bool) -> Result<(), Error> {
        let mut req = self
            .authed(Method::POST, self.write_url()?)?
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if gzipped {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error("write", e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error("write", e))?;
        if status.is_success() {
            return Ok(());
        }
        let e = self.status_error("write", status, &bytes);
        if let Error::Server {
            op,
            status: s @ (400 | 422),
            message,
        } = e
        {
            return Err(Error::Write {
                op,
                status: s,
                message,
            });
        }
        Err(e)
    }

    /// A request with the configured credentials: basic auth for a v1 user, a `Token` header
    /// for a v2 token (or a v1 password without a user name).
    fn authed(&self, method: Method, url: Url) -> Result<reqwest::RequestBuilder, Error> {
        let req = self.client.request(method, url);
        let token = match &self.api {
            InfluxApi::V1 {
                username: Some(u),
                password,
                ..
            } => return Ok(req.basic_auth(u, password.as_ref().map(|p| p.expose()))),
            InfluxApi::V1 {
                password: Some(p), ..
            } => p.expose(),
            InfluxApi::V1 { .. } => return Ok(req),
            InfluxApi::V2 { token, .. } => token.expose(),
        };
        let mut value = HeaderValue::from_str(&format!("Token {token}"))
            .map_err(|_| Error::Config("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok(req.header(AUTHORIZATION, value))
    }

    fn status_error(&self, op: &str, status: StatusCode, body: &[u8]) -> Error {
        let message = server_message(body, self.secret());
        let status = status.as_u16();
        if status == 401 || status == 403 {
            return Error::Auth {
                op: op.to_string(),
                who: self.who(),
                status,
                message,
            };
        }
        Error::Server {
            op: op.to_string(),
            status,
            message,
        }
    }

    fn transport_error(&self, op: &str, e: reqwest::Error) -> Error {
        let e = e.without_url();
        if e.is_timeout() {
            Error::Timeout {
                op: op.to_string(),
                secs: self.timeout.as_secs(),
            }
        } else {
            Error::Connect {
                op: op.to_string(),
                detail: kb_pipeline::tls::describe(&e, "influxdb"),
                source: e,
            }
        }
    }
}

/// Reads `{"results":[{"statement_id":0,"series":[...]}]}`; an `error` member at the top or
/// in a result is an error.
fn parse_query_answer(op: &str, body: &[u8], secret: Option<&str>) -> Result<Vec<Series>, Error> {
    let decode = |message: String| Error::Decode {
        op: op.to_string(),
        message,
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| decode(format!("not json: {e}")))?;
    let query_error = |m: &str| Error::Query {
        op: op.to_string(),
        message: crate::error::clean_message(m, secret),
    };
    if let Some(m) = v.get("error").and_then(|e| e.as_str()) {
        return Err(query_error(m));
    }
    let mut out = Vec::new();
    for result in v
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or_else(|| decode("no results".into()))?
    {
        if let Some(m) = result.get("error").and_then(|e| e.as_str()) {
            return Err(query_error(m));
        }
        for s in result
            .get("series")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            let strings = |key: &str| -> Vec<String> {
                s.get(key)
                    .and_then(|c| c.as_array())
                    .into_iter()
                    .flatten()
                    .map(|c| c.as_str().unwrap_or_default().to_string())
                    .collect()
            };
            out.push(Series {
                name: s
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string(),
                tags: s
                    .get("tags")
                    .and_then(|t| t.as_object())
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                columns: strings("columns"),
                values: s
                    .get("values")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .map(|row| row.as_array().cloned().unwrap_or_default())
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:8086").unwrap().as_str(),
            "http://127.0.0.1:8086/"
        );
        assert_eq!(
            parse_base_url("https://influx.example/prefix")
                .unwrap()
                .join("write")
                .unwrap()
                .as_str(),
            "https://influx.example/prefix/write"
        );
        assert!(parse_base_url("ftp://x").is_err());
        let e = parse_base_url("http://u:hunter2@127.0.0.1:8086").unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        assert!(parse_base_url("http://127.0.0.1:8086/?db=x").is_err());
    }

    #[test]
    fn query_answers_are_parsed() {
        let body = br#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"ns":"a"},"columns":["time","sum"],"values":[[0,1.5]]}]}]}"#;
        let s = parse_query_answer("q", body, None).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].tags.get("ns").unwrap(), "a");
        assert_eq!(s[0].column("sum"), Some(1));
        assert_eq!(s[0].values[0][1].as_f64(), Some(1.5));
        assert!(
            parse_query_answer("q", br#"{"results":[{"statement_id":0}]}"#, None)
                .unwrap()
                .is_empty()
        );
        let e = parse_query_answer(
            "q",
            br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "influxdb: q: query failed: database not found: x"
        );
        assert!(parse_query_answer("q", b"<html>", None).is_err());
    }

    #[test]
    fn gzip_roundtrips() {
        use std::io::Read as _;
        let lines = b"m a=1.0 1\n".repeat(1000);
        let gz = gzip(&lines).unwrap();
        assert!(gz.len() < lines.len() / 10);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, lines);
    }
}
