//! The test server: `scripts/services/clickhouse.sh start` on free ports in a temp dir, once
//! per test binary. A watchdog shell process stops the server and removes the dir when the
//! test binary exits. If the server cannot be installed or started, every test fails with the
//! script's output: the tests never pass without a server. Set `KB_CLICKHOUSE_KEEP=1` to keep
//! the data dir (with the server's logs under `log/`) after the run.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use kb_clickhouse::{ClickHouseConfig, ClickHouseStore};

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();

fn script() -> String {
    format!(
        "{}/../../scripts/services/clickhouse.sh",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Result<String, String> {
    if let Ok(url) = std::env::var("KB_CLICKHOUSE_URL") {
        return Ok(url);
    }
    let dir = tempfile::Builder::new()
        .prefix("kb-clickhouse-it-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir: {e}"))?
        // The watchdog removes it once the test binary is gone.
        .keep();
    let (http, tcp) = (free_port(), free_port());
    let envs = [
        ("CLICKHOUSE_DIR", dir.display().to_string()),
        ("CLICKHOUSE_HTTP_PORT", http.to_string()),
        ("CLICKHOUSE_TCP_PORT", tcp.to_string()),
        ("CLICKHOUSE_START_TIMEOUT", "90".to_string()),
    ];
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            std::fs::remove_dir_all(&dir).ok();
            return Err(format!("cannot run bash {}: {e}", script()));
        }
    };
    if !out.status.success() {
        if std::env::var_os("KB_CLICKHOUSE_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
        return Err(format!(
            "{} start failed ({}):\n{}{}",
            script(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' stop >/dev/null 2>&1; [ -n \"$KB_CLICKHOUSE_KEEP\" ] || rm -rf '{dir}'",
        pid = std::process::id(),
        script = script(),
        dir = dir.display()
    );
    Command::new("bash")
        .arg("-c")
        .arg(watchdog)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the server's watchdog: {e}"))?;
    Ok(url)
}

/// Returns the URL of the test server, starting it on first use.
pub(crate) fn url() -> &'static str {
    match SERVER.get_or_init(start) {
        Ok(url) => url,
        Err(e) => panic!("the ClickHouse test server is not available: {e}"),
    }
}

/// A configuration for a database no other test uses.
pub(crate) fn config(name: &str) -> ClickHouseConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut cfg = ClickHouseConfig::new(url());
    cfg.database = format!(
        "kbit_{}_{}_{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    cfg
}

/// A fresh store in a database of its own.
pub(crate) fn store(name: &str) -> ClickHouseStore {
    ClickHouseStore::open(&config(name)).unwrap()
}

/// Runs one SQL statement over HTTP and returns the body (for checks the ports cannot make).
pub(crate) fn raw(sql: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sql = sql.to_string();
    rt.block_on(async move {
        let resp = reqwest::Client::new()
            .post(url())
            .body(sql.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{sql}: {status} {text}");
        text
    })
}
