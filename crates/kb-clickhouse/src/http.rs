//! The HTTP side: one `reqwest` client, a small private tokio runtime that drives it, and the
//! two request shapes the store sends (a statement in the body, or an `INSERT ... FORMAT
//! RowBinary` in the URL with the rows in the body).
//!
//! The store's traits are synchronous and are called both from plain threads and from inside
//! the extractor's async tasks. [`Rt::run`] therefore never calls `block_on` on the caller's
//! thread: it spawns the future onto the store's own runtime and waits on a channel, which
//! works in every context (a runtime cannot be entered twice, a channel can be waited on).

use std::future::Future;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::config::{ClickHouseConfig, Secret};
use crate::error::{Error, clean_message, parse_code};

/// The store's own runtime (one worker thread), shut down in the background on drop so a
/// store can be dropped anywhere, even inside another runtime.
pub(crate) struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    pub(crate) fn new() -> Result<Rt, Error> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kb-clickhouse")
            .enable_all()
            .build()
            .map(|rt| Rt(Some(rt)))
            .map_err(|e| Error::Config(format!("cannot start the http runtime: {e}")))
    }

    /// Runs `fut` on the store's runtime and waits for its output.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        op: &str,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Error> {
        let rx = self.spawn(op, fut)?;
        rx.recv().map_err(|_| Error::Runtime(op.to_string()))
    }

    /// Returns a handle to spawn on the store's runtime from anywhere.
    pub(crate) fn handle(&self) -> Result<tokio::runtime::Handle, Error> {
        self.0
            .as_ref()
            .map(|rt| rt.handle().clone())
            .ok_or_else(|| Error::Runtime("start".into()))
    }

    /// Starts `fut` on the store's runtime and returns its task handle.
    pub(crate) fn spawn_task<T: Send + 'static>(
        &self,
        op: &str,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<T>, Error> {
        let rt = self
            .0
            .as_ref()
            .ok_or_else(|| Error::Runtime(op.to_string()))?;
        Ok(rt.spawn(fut))
    }

    /// Starts `fut` on the store's runtime; its output arrives on the returned channel.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        op: &str,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<std::sync::mpsc::Receiver<T>, Error> {
        let rt = self
            .0
            .as_ref()
            .ok_or_else(|| Error::Runtime(op.to_string()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            // The receiver is gone only when the caller gave up waiting; nothing to report.
            tx.send(fut.await).ok();
        });
        Ok(rx)
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A cheap-to-clone handle for sending statements to one ClickHouse database.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    database: String,
    user: String,
    password: Option<Secret>,
    timeout: Duration,
    /// Extra URL settings sent with every insert (`insert_distributed_sync=1` in cluster mode).
    insert_settings: Vec<(&'static str, &'static str)>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base.as_str())
            .field("database", &self.database)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Checks and normalises the base URL: http(s), no credentials, no query or fragment.
pub(crate) fn parse_base_url(s: &str) -> Result<Url, Error> {
    let url = Url::parse(s.trim())
        .map_err(|e| Error::Config(format!("clickhouse url is not a url: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Error::Config(format!(
            "clickhouse url must be http or https, not {}",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(
            "clickhouse url must not contain credentials: set user and password instead".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(
            "clickhouse url must not have a query or fragment".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(Error::Config("clickhouse url has no host".into()));
    }
    Ok(url)
}

impl Http {
    pub(crate) fn new(cfg: &ClickHouseConfig) -> Result<Http, Error> {
        let base = parse_base_url(&cfg.url)?;
        let builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .pool_idle_timeout(Duration::from_secs(2));
        let client = kb_pipeline::tls::apply(builder, &cfg.tls)
            .map_err(|e| Error::Config(format!("tls: {e}")))?
            .build()
            .map_err(|e| {
                Error::Config(format!("cannot build the http client: {}", e.without_url()))
            })?;
        let insert_settings = if cfg.cluster.is_some() {
            vec![("insert_distributed_sync", "1")]
        } else {
            Vec::new()
        };
        Ok(Http {
            client,
            base,
            database: cfg.database.clone(),
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            timeout: cfg.request_timeout,
            insert_settings,
        })
    }

    fn headers(&self) -> Result<HeaderMap, Error> {
        let mut h = HeaderMap::new();
        let user = HeaderValue::from_str(&self.user)
            .map_err(|_| Error::Config("user name is not a valid header value".into()))?;
        h.insert("X-ClickHouse-User", user);
        if let Some(p) = &self.password {
            let mut key = HeaderValue::from_str(p.expose())
                .map_err(|_| Error::Config("password is not a valid header value".into()))?;
            key.set_sensitive(true);
            h.insert("X-ClickHouse-Key", key);
        }
        Ok(h)
    }

    /// Runs one statement (sent in the body) and returns the response body.
    /// `use_db` selects the store's database for unqualified names.
    pub(crate) async fn execute(
        &self,
        op: &str,
        sql: &str,
        use_db: bool,
    ) -> Result<Vec<u8>, Error> {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            if use_db {
                q.append_pair("database", &self.database);
            }
            // Buffer the result server-side so an error is always an HTTP error status,
            // never a truncated 200 body.
            q.append_pair("wait_end_of_query", "1");
        }
        tracing::trace!(op, sql, "clickhouse statement");
        self.send(
            op,
            url,
            sql.as_bytes().to_vec(),
            "text/plain; charset=utf-8",
        )
        .await
    }

    /// Sends `INSERT INTO {target} FORMAT RowBinary` with `data` as the rows.
    pub(crate) async fn insert_rowbinary(
        &self,
        op: &str,
        target: &str,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("database", &self.database);
            q.append_pair("query", &format!("INSERT INTO {target} FORMAT RowBinary"));
            for (k, v) in &self.insert_settings {
                q.append_pair(k, v);
            }
        }
        self.send(op, url, data, "application/octet-stream").await?;
        Ok(())
    }

    /// Runs a statement that changes data (`INSERT ... SELECT`, `ALTER`), with the insert
    /// settings.
    pub(crate) async fn execute_write(&self, op: &str, sql: &str) -> Result<(), Error> {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("database", &self.database);
            for (k, v) in &self.insert_settings {
                q.append_pair(k, v);
            }
        }
        tracing::trace!(op, sql, "clickhouse write");
        self.send(
            op,
            url,
            sql.as_bytes().to_vec(),
            "text/plain; charset=utf-8",
        )
        .await?;
        Ok(())
    }

    async fn send(
        &self,
        op: &str,
        url: Url,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let resp = self
            .client
            .post(url)
            .headers(self.headers()?)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(op, e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(op, e))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let text = String::from_utf8_lossy(&bytes);
        let code = parse_code(&text);
        let message = clean_message(&text, self.password.as_ref().map(Secret::expose));
        let status = status.as_u16();
        if status == 401 || status == 403 || matches!(code, Some(192 | 193 | 516)) {
            return Err(Error::Auth {
                op: op.to_string(),
                user: self.user.clone(),
                status,
                message,
            });
        }
        Err(Error::Server {
            op: op.to_string(),
            status,
            code,
            message,
        })
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
                detail: kb_pipeline::tls::describe(&e, "clickhouse"),
                source: e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert!(parse_base_url("http://127.0.0.1:8123").is_ok());
        assert!(parse_base_url("https://ch.example:8443/proxy/").is_ok());
        assert!(parse_base_url("ftp://x").is_err());
        let e = parse_base_url("http://u:hunter2@127.0.0.1:8123").unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        assert!(parse_base_url("http://127.0.0.1:8123/?database=x").is_err());
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn runtime_runs_from_inside_another_runtime() {
        let rt = Rt::new().unwrap();
        assert_eq!(rt.run("x", async { 41 + 1 }).unwrap(), 42);
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = outer.block_on(async { rt.run("x", async { 7 }).unwrap() });
        assert_eq!(v, 7);
        // Dropping the store's runtime inside another runtime must not panic either.
        outer.block_on(async move { drop(rt) });
    }
}
