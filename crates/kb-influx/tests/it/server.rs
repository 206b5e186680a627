//! The test servers: `scripts/services/influxdb.sh start` on free ports in a temp dir, once
//! per test binary (and once more with `INFLUXDB_AUTH=1` for the authentication test). A
//! watchdog shell process stops each server and removes its dir when the test binary exits.
//! If influxd cannot be installed or started, every test that needs it fails with the
//! script's output: the tests never pass without a server.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use kb_influx::{InfluxApi, InfluxConfig, InfluxStore};

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
static AUTH_SERVER: OnceLock<Result<String, String>> = OnceLock::new();

/// The admin of the auth-enabled server.
pub(crate) const ADMIN: &str = "kbadmin";
/// The admin's password (a value that must never show up in an error message).
pub(crate) const ADMIN_PASSWORD: &str = "s3cret-Adm1n-pw";

fn script() -> String {
    format!(
        "{}/../../scripts/services/influxdb.sh",
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

fn start(auth: bool) -> Result<String, String> {
    if !auth {
        if let Ok(url) = std::env::var("KB_INFLUX_URL") {
            return Ok(url);
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("kb-influx-it-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir: {e}"))?
        // The watchdog removes it once the test binary is gone.
        .keep();
    let (http, rpc) = (free_port(), free_port());
    let mut envs = vec![
        ("INFLUXDB_DIR", dir.display().to_string()),
        ("INFLUXDB_PORT", http.to_string()),
        ("INFLUXDB_RPC_PORT", rpc.to_string()),
        ("INFLUXDB_START_TIMEOUT", "90".to_string()),
    ];
    if auth {
        envs.push(("INFLUXDB_AUTH", "1".to_string()));
        envs.push(("INFLUXDB_ADMIN_USER", ADMIN.to_string()));
        envs.push(("INFLUXDB_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()));
    }
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script()))?;
    if !out.status.success() {
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
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' stop >/dev/null 2>&1; [ -n \"$KB_KEEP\" ] || rm -rf '{dir}'",
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
    match SERVER.get_or_init(|| start(false)) {
        Ok(url) => url,
        Err(e) => panic!("the InfluxDB test server is not available: {e}"),
    }
}

/// Returns the URL of the auth-enabled test server, starting it on first use.
pub(crate) fn auth_url() -> &'static str {
    match AUTH_SERVER.get_or_init(|| start(true)) {
        Ok(url) => url,
        Err(e) => panic!("the InfluxDB test server with auth is not available: {e}"),
    }
}

/// A database name no other test uses.
pub(crate) fn database(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "kbit_{}_{}_{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration for a database no other test uses.
pub(crate) fn config(name: &str) -> InfluxConfig {
    let mut cfg = InfluxConfig::v1(url());
    cfg.api = InfluxApi::V1 {
        database: database(name),
        retention_policy: None,
        username: None,
        password: None,
    };
    cfg
}

/// A fresh store in a database of its own.
pub(crate) fn store(name: &str) -> InfluxStore {
    InfluxStore::open(&config(name)).unwrap()
}

/// Runs one InfluxQL statement against a database with curl-like plain HTTP (for checks the
/// store's API does not make), returning the JSON body.
pub(crate) fn raw_query(db: &str, q: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut u = reqwest::Url::parse(url()).unwrap().join("query").unwrap();
    u.query_pairs_mut()
        .append_pair("db", db)
        .append_pair("epoch", "s")
        .append_pair("q", q);
    rt.block_on(async move {
        let resp = reqwest::Client::new().post(u).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{q}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    })
}
