//! End-to-end tests of the `kubecost-bridge` binary over real HTTP: the simulator runs in the
//! test process on 127.0.0.1, the binary extracts from it into a SQLite file in a temp folder,
//! and the tests compare what was stored with the simulator's ground truth.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::let_underscore_must_use,
    reason = "tests fail by panicking, and ignore the outcome of best-effort cleanup"
)]

mod advice;
mod aggregate;
mod alerts;
mod cli;
mod dashboard;
mod deploy;
mod e2e;
mod faults;
mod jwt;
mod kube;
mod live;
mod mirror;
mod prometheus;
mod query_store;
mod serve;
mod shutdown;
mod tidy;
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kb_core::Window;
use kb_core::window::{DAY, HOUR, floor_to};

/// A simulator served on an ephemeral loopback port for the duration of a test.
pub struct Sim {
    pub url: String,
    pub fleet: kb_sim::Fleet,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sim {
    pub fn start(cfg: kb_sim::SimConfig) -> Sim {
        let fleet = kb_sim::Fleet::new(&cfg);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                kb_sim::serve(listener, cfg, async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Sim {
            url: format!("http://{addr}"),
            fleet,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Hanging requests (timeout faults) may keep the server busy; do not wait for them.
        drop(self.thread.take());
    }
}

pub fn sim_config(clusters: usize, pods: usize) -> kb_sim::SimConfig {
    kb_sim::SimConfig {
        clusters,
        pods,
        seed: 7,
        faults: kb_sim::Faults::default(),
        spikes: Vec::new(),
    }
}

/// A config file for the simulator's clusters, with fast retries, in `dir`.
pub fn write_config(dir: &Path, sim: &Sim, clusters: &[&str], extra: &str) -> PathBuf {
    write_config_for(dir, &sim.url, clusters, extra)
}

/// [`write_config`] for a Kubecost at `url`.
pub fn write_config_for(dir: &Path, url: &str, clusters: &[&str], extra: &str) -> PathBuf {
    let mut yaml = format!(
        "kubecost:\n  endpoint: \"{url}\"\n  apis:\n    allocation:\n      aggregate: [\"cluster\", \"namespace\", \"pod\"]\n    assets:\n      aggregate: []\nclusters:\n"
    );
    for c in clusters {
        yaml.push_str(&format!("  - name: {c}\n    kubecost_cluster_id: {c}\n"));
    }
    yaml.push_str(&format!(
        "cloudtuner:\n  storage:\n    sqlite: \"{}\"\n",
        dir.join("bridge.db").display()
    ));
    yaml.push_str(extra);
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The extract settings every test uses unless it says otherwise: hourly windows for the whole
/// test range, quick retries.
pub const FAST: &str = "extract:\n  hourly_retention: 100000h\n  settle: 0s\n  request_timeout: 5s\n  retry:\n    max_attempts: 8\n    base_delay: 10ms\n    max_delay: 200ms\n";

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubecost-bridge"));
    c.env_remove("RUST_LOG");
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "command failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fixed, closed range of whole hours some days ago.
pub fn past_range(hours: i64) -> Window {
    let start = floor_to(chrono::Utc::now().timestamp(), DAY) - 10 * DAY;
    Window {
        start,
        end: start + hours * HOUR,
    }
}

pub fn rfc(ts: i64) -> String {
    kb_core::window::format_rfc3339(ts)
}

/// Asserts the store holds, for every hour of `range` and every cluster, exactly the
/// simulator's total and one checkpoint, and returns the number of rows stored.
pub fn assert_exact(db: &Path, sim: &Sim, clusters: &[&str], range: Window) -> u64 {
    use kb_pipeline::ports::Endpoint;
    let store = kb_store::SqliteStore::open(db).unwrap();
    let mut rows = 0;
    for c in clusters {
        let cps = store.checkpoints(c, Endpoint::Allocation).unwrap();
        for h in range.split(HOUR) {
            let want = sim.fleet.allocation_total(c, h);
            let got = store.window_total(c, h).unwrap();
            let rel = kb_core::cost::relative_error(want, got.total_cost);
            assert!(
                rel <= 1e-9,
                "{c} {h}: stored {} want {want} (rel {rel:e})",
                got.total_cost
            );
            let cp: Vec<_> = cps.iter().filter(|cp| cp.window == h).collect();
            assert_eq!(cp.len(), 1, "{c} {h}: one checkpoint");
            assert_eq!(
                cp[0].rows, got.rows,
                "{c} {h}: rows stored = rows sent, no duplicates"
            );
            rows += got.rows;
        }
    }
    rows
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when the test ends, passed or not, so a failing test
/// leaves no bridge running.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// GET with an optional bearer token and a 10 s timeout; `None` when nothing answered.
pub fn http_get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = reqwest::Client::new()
            .get(url)
            .timeout(std::time::Duration::from_secs(10));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    })
}
