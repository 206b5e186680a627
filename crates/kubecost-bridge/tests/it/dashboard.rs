//! The dashboard in a real browser: `kubecost-bridge demo` serves a small simulated fleet, and
//! `tests/browser/e2e.mjs` drives Debian's headless Chromium through it with playwright-core
//! (sign-in link, cookie flags, the overview's total against the API's JSON, keyboard
//! navigation, a namespace's workloads), saving screenshots in `target/screenshots/`.
//!
//! Needs `node`, `/usr/bin/chromium` (or `$CHROMIUM`) and `npm ci` in `tests/browser`
//! (`scripts/test` installs all three). Without them the test says it skipped, unless
//! `KUBECOST_BRIDGE_REQUIRE_BROWSER=1`, where their absence fails it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, free_port};

/// Kills the demo when the test ends, however it ends.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What is missing to run the browser test, if anything.
fn missing() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        return Some("node is not installed".into());
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is not installed (apt-get install chromium)"
        ));
    }
    if !root()
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        return Some("playwright-core is not installed (npm ci in tests/browser)".into());
    }
    None
}

fn healthy(base: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
}

#[test]
fn the_dashboard_in_headless_chromium_shows_the_api_totals_and_drills_down_to_workloads() {
    if let Some(why) = missing() {
        assert!(
            std::env::var("KUBECOST_BRIDGE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "KUBECOST_BRIDGE_REQUIRE_BROWSER=1 but {why}"
        );
        println!("skipped: the browser test needs node, chromium and playwright-core: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "browser-test-token-5f1c2a";
    let mut demo = Demo(
        bin()
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--days", "3", "--clusters", "2", "--pods", "30"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("KUBECOST_BRIDGE_ADMIN_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The demo prints the dashboard's sign-in link, then starts serving.
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let link = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the demo never printed the dashboard link");
        if let Some(rest) = line.trim().strip_prefix("dashboard: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(link, format!("{base}/?token={token}"));
    while !healthy(&base) {
        assert!(demo.0.try_wait().unwrap().is_none(), "the demo exited");
        assert!(Instant::now() < deadline, "the demo never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Keep draining the demo's output so it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});

    let shots = root().join("target/screenshots");
    let out = Command::new("node")
        .arg(root().join("tests/browser/e2e.mjs"))
        .args([base.as_str(), token])
        .arg(&shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("RESULT ok"),
        "browser test failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    for name in [
        "login.png",
        "overview.png",
        "cluster.png",
        "cluster-by-namespace.png",
        "namespace.png",
    ] {
        let len = std::fs::metadata(shots.join(name)).unwrap().len();
        assert!(len > 10_000, "{name}: {len} bytes");
    }
}
