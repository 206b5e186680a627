//! Graceful shutdown of `run`: SIGTERM while windows are in flight against a slow Kubecost
//! (the simulator's `latency_ms`) exits cleanly within `shutdown.deadline`, and after a restart
//! every window is stored exactly once with an exact reconciliation; a window that cannot
//! finish within the deadline (a Kubecost that never answers) is rolled back, the process exits
//! with code 3, and the next start extracts it.

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kb_core::Window;
use kb_core::window::{HOUR, floor_to};
use kb_pipeline::ports::{CostReader, Endpoint};

use crate::{Reaped, free_port};
use crate::{Sim, assert_exact, bin, sim_config, write_config};

/// `run` with its stderr collected line by line (killed when dropped, if still running).
struct Running {
    child: Reaped,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(cfg: &Path) -> Running {
        let mut child = bin()
            .args(["run", "--config"])
            .arg(cfg)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = lines.clone();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line);
            }
        });
        Running {
            child: Reaped(child),
            lines,
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `needle`.
    fn wait_line(&mut self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
        {
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                let _ = self.child.kill();
                panic!("no log line {needle:?}; stderr:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    fn exit_code(&mut self, secs: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // The pipe ends with the process: the reader has every line once it returns.
                if let Some(r) = self.reader.take() {
                    r.join().unwrap();
                }
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("run did not exit; stderr:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn synced(db: &Path) -> Vec<Window> {
    let store = kb_store::SqliteStore::open(db).unwrap();
    store
        .checkpoints("cluster-1", Endpoint::Allocation)
        .unwrap()
        .into_iter()
        .map(|c| c.window)
        .collect()
}

fn config(dir: &Path, sim: &Sim, extra: &str) -> std::path::PathBuf {
    let port = free_port();
    let yaml = format!(
        "extract:\n  lookback: 12h\n  settle: 0s\n  hourly_retention: 100000h\n  request_timeout: 60s\n  retry:\n    max_attempts: 3\n    base_delay: 10ms\n    max_delay: 50ms\naggregation:\n  enabled: false\napi:\n  listen: \"127.0.0.1:{port}\"\n  audit_log: \"off\"\n{extra}"
    );
    write_config(dir, sim, &["cluster-1"], &yaml)
}

#[test]
fn sigterm_during_extraction_loses_nothing_and_the_restart_reconciles_exactly() {
    let mut sc = sim_config(1, 20);
    sc.faults.latency_ms = 300;
    let sim = Sim::start(sc);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bridge.db");
    let cfg = config(dir.path(), &sim, "shutdown:\n  deadline: 20s\n");
    let from = floor_to(chrono::Utc::now().timestamp() - 12 * HOUR, HOUR);

    let mut first = Running::start(&cfg);
    // One window committed: the next one is in flight (each takes at least 300 ms).
    first.wait_line("allocation window synced", 60);
    first.sigterm();
    let code = first.exit_code(60);
    let log = first.log();
    assert_eq!(code, 0, "a clean exit within the deadline; stderr:\n{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("shut down cleanly"), "{log}");
    let after_first = synced(&db);
    assert!(
        !after_first.is_empty() && after_first.len() < 12,
        "interrupted mid catch-up: {after_first:?}"
    );
    // What was committed before the signal is exact already.
    for w in &after_first {
        assert_exact(&db, &sim, &["cluster-1"], *w);
    }

    // Restart and let it catch up.
    let restarted_at = chrono::Utc::now().timestamp();
    let until = floor_to(restarted_at, HOUR);
    let range = Window {
        start: from,
        end: until,
    };
    let mut second = Running::start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = synced(&db);
        if range.split(HOUR).iter().all(|h| got.contains(h)) {
            break;
        }
        if Instant::now() > deadline || second.child.try_wait().unwrap().is_some() {
            let _ = second.child.kill();
            panic!("the restart did not catch up: {got:?}\n{}", second.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    second.sigterm();
    assert_eq!(second.exit_code(60), 0, "{}", second.log());

    // Every window exactly once, equal to the simulator's, and reconciled exactly.
    let rows = assert_exact(&db, &sim, &["cluster-1"], range);
    assert!(rows > 0);
    let store = kb_store::SqliteStore::open(&db).unwrap();
    let recs: Vec<_> = store
        .reconciliations("cluster-1", range)
        .unwrap()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Allocation)
        .collect();
    assert_eq!(recs.len(), range.split(HOUR).len(), "{recs:?}");
    let mut stored = 0.0;
    let mut truth = 0.0;
    for r in &recs {
        assert!(r.relative_error <= 1e-9, "{r:?}");
        stored += r.stored;
        truth += sim.fleet.allocation_total("cluster-1", r.window);
    }
    let rel = kb_core::cost::relative_error(truth, stored);
    assert!(rel <= 1e-9, "stored {stored} simulator {truth}");
}

#[test]
fn a_window_that_cannot_finish_within_the_deadline_is_rolled_back_and_extracted_at_restart() {
    // Kubecost never answers: the window in flight cannot finish.
    let mut sc = sim_config(1, 10);
    sc.faults.timeout_rate = 1.0;
    let hanging = Sim::start(sc);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bridge.db");
    let cfg = config(dir.path(), &hanging, "shutdown:\n  deadline: 2s\n");
    let mut run = Running::start(&cfg);
    run.wait_line("serving", 60);
    // Let the first request go out.
    std::thread::sleep(Duration::from_millis(500));
    run.sigterm();
    let code = run.exit_code(60);
    let log = run.log();
    assert_eq!(code, 3, "the deadline's exit code; stderr:\n{log}");
    assert!(log.contains("shutdown deadline"), "{log}");
    assert!(synced(&db).is_empty(), "nothing half-written was kept");
    drop(hanging);

    // The next start against a healthy Kubecost extracts every window.
    let sim = Sim::start(sim_config(1, 10));
    let cfg = config(dir.path(), &sim, "shutdown:\n  deadline: 20s\n");
    let now = chrono::Utc::now().timestamp();
    let range = Window {
        start: floor_to(now - 12 * HOUR, HOUR),
        end: floor_to(now, HOUR),
    };
    let mut again = Running::start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !range.split(HOUR).iter().all(|h| synced(&db).contains(h)) {
        if Instant::now() > deadline || again.child.try_wait().unwrap().is_some() {
            let _ = again.child.kill();
            panic!("no catch-up after the aborted run:\n{}", again.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    again.sigterm();
    assert_eq!(again.exit_code(60), 0, "{}", again.log());
    assert_exact(&db, &sim, &["cluster-1"], range);
}
