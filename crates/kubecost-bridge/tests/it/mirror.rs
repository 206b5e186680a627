//! The mirrors against real servers (Debian's `clickhouse-server` and `influxd`, started by
//! the project's `scripts/services/*.sh` on free ports): what the extractor stores in SQLite
//! reaches ClickHouse and InfluxDB with the same totals per window; with ClickHouse stopped the
//! extraction still succeeds, and once it is back the missing windows are replayed, exactly
//! once. The same holds when the server is killed (SIGKILL) while the mirror is copying a
//! batch of windows.

use std::process::{Command, Stdio};

use kb_core::Window;
use kb_core::window::HOUR;
use kb_pipeline::ports::{CostQuery, CostReader, Granularity, GroupBy};

use crate::{FAST, Sim, bin, free_port, past_range, rfc, run_ok, sim_config, write_config};

pub(crate) fn script(name: &str) -> String {
    format!(
        "{}/../../scripts/services/{name}.sh",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A server in a temp dir, stopped on drop.
pub(crate) struct Server {
    script: String,
    envs: Vec<(&'static str, String)>,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    pub(crate) fn clickhouse() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let envs = vec![
            ("CLICKHOUSE_DIR", dir.path().display().to_string()),
            ("CLICKHOUSE_HTTP_PORT", free_port().to_string()),
            ("CLICKHOUSE_TCP_PORT", free_port().to_string()),
            ("CLICKHOUSE_START_TIMEOUT", "90".to_string()),
        ];
        Server::start(script("clickhouse"), envs, dir)
    }

    pub(crate) fn influxdb() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let envs = vec![
            ("INFLUXDB_DIR", dir.path().display().to_string()),
            ("INFLUXDB_PORT", free_port().to_string()),
            ("INFLUXDB_RPC_PORT", free_port().to_string()),
        ];
        Server::start(script("influxdb"), envs, dir)
    }

    fn start(script: String, envs: Vec<(&'static str, String)>, dir: tempfile::TempDir) -> Server {
        let mut s = Server {
            script,
            envs,
            url: String::new(),
            _dir: dir,
        };
        s.url = s.run("start");
        s
    }

    /// SIGKILL to the server process (no clean shutdown), and waits until it is gone.
    pub(crate) fn kill9(&self) {
        let pidfile = match self.script.ends_with("clickhouse.sh") {
            true => "clickhouse.pid",
            false => "influxd.pid",
        };
        let pid = std::fs::read_to_string(self._dir.path().join(pidfile)).unwrap();
        let pid = pid.trim();
        let ok = Command::new("kill").args(["-9", pid]).status().unwrap();
        assert!(ok.success(), "kill -9 {pid}");
        while Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub(crate) fn run(&self, cmd: &str) -> String {
        let out = Command::new("bash")
            .arg(&self.script)
            .arg(cmd)
            .envs(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {cmd} failed: {}{}",
            self.script,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .envs(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}

fn hourly_totals(r: &dyn CostReader, range: Window) -> Vec<(i64, f64)> {
    r.costs(&CostQuery {
        cluster: Some("cluster-1".into()),
        namespace: None,
        range,
        granularity: Some(Granularity::Hour),
        group_by: GroupBy::Cluster,
        include_idle: true,
    })
    .unwrap()
    .into_iter()
    .map(|row| (row.bucket_start, row.total_cost))
    .collect()
}

fn assert_same(a: &[(i64, f64)], b: &[(i64, f64)]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for ((ta, va), (tb, vb)) in a.iter().zip(b) {
        assert_eq!(ta, tb);
        assert!(
            kb_core::cost::relative_error(*va, *vb) <= 1e-9,
            "{ta}: {va} vs {vb}"
        );
    }
}

#[test]
fn clickhouse_mirrors_the_embedded_store_and_replays_after_an_outage() {
    let server = Server::clickhouse();
    let sim = Sim::start(sim_config(1, 20));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{FAST}clickhouse:\n  database: bridge_mirror_test\n",);
    let cfg_path = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let yaml = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "cloudtuner:\n  storage:\n",
        &format!(
            "cloudtuner:\n  storage:\n    clickhouse: \"{}\"\n",
            server.url
        ),
    );
    std::fs::write(&cfg_path, yaml).unwrap();

    let range = past_range(6);
    let first = Window::new(range.start, range.start + 4 * HOUR).unwrap();
    run_ok(bin().args(["backfill", "--config"]).arg(&cfg_path).args([
        "--from",
        &rfc(first.start),
        "--to",
        &rfc(first.end),
    ]));
    let sqlite = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let mut ch_cfg = kb_clickhouse::ClickHouseConfig::new(server.url.clone());
    ch_cfg.database = "bridge_mirror_test".into();
    let ch = kb_clickhouse::ClickHouseStore::open(&ch_cfg).unwrap();
    let want = hourly_totals(&sqlite, first);
    assert_eq!(want.len(), 4);
    assert_same(&hourly_totals(&ch, first), &want);
    drop(ch);

    // ClickHouse down: extraction into SQLite still succeeds.
    server.run("stop");
    run_ok(bin().args(["backfill", "--config"]).arg(&cfg_path).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    // Back up: the next run replays the two missing windows, and only those.
    server.run("start");
    run_ok(bin().args(["backfill", "--config"]).arg(&cfg_path).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    let ch = kb_clickhouse::ClickHouseStore::open(&ch_cfg).unwrap();
    let want = hourly_totals(&sqlite, range);
    assert_eq!(want.len(), 6);
    assert_same(&hourly_totals(&ch, range), &want);
}

#[test]
fn influxdb_mirrors_the_embedded_store() {
    let server = Server::influxdb();
    let sim = Sim::start(sim_config(1, 20));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{FAST}influxdb:\n  database: bridge_mirror_test\n");
    let cfg_path = write_config(dir.path(), &sim, &["cluster-1"], &extra);
    let yaml = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "cloudtuner:\n  storage:\n",
        &format!(
            "cloudtuner:\n  storage:\n    influxdb: \"{}\"\n",
            server.url
        ),
    );
    std::fs::write(&cfg_path, yaml).unwrap();
    let range = past_range(3);
    run_ok(bin().args(["backfill", "--config"]).arg(&cfg_path).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    let sqlite = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let mut ic = kb_influx::InfluxConfig::v1(server.url.clone());
    if let kb_influx::InfluxApi::V1 { database, .. } = &mut ic.api {
        *database = "bridge_mirror_test".into();
    }
    let influx = kb_influx::InfluxStore::open(&ic).unwrap();
    for hour in range.split(HOUR) {
        let want = sqlite.window_total("cluster-1", hour).unwrap();
        let got = influx.window_total("cluster-1", hour).unwrap();
        assert_eq!(got.rows, want.rows, "{hour}");
        assert!(
            kb_core::cost::relative_error(want.total_cost, got.total_cost) <= 1e-9,
            "{hour}"
        );
    }
}

/// Runs `backfill` in the background, kills the mirror's server (SIGKILL) once the mirror has
/// committed some of the windows but not all, restarts it, and lets a second `backfill`
/// replay the rest. `progress` says how many windows the mirror has committed.
fn kill_mid_mirror(
    server: &Server,
    cfg_path: &std::path::Path,
    range: Window,
    progress: &dyn Fn() -> Option<usize>,
) {
    let windows = range.split(HOUR).len();
    let mut child = bin()
        .args(["backfill", "--config"])
        .arg(cfg_path)
        .args(["--from", &rfc(range.start), "--to", &rfc(range.end)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let at_kill = loop {
        if let Some(n) = progress()
            && n > 0
        {
            server.kill9();
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "backfill finished before the mirror committed anything"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(
        at_kill < windows,
        "the server was killed after the mirror had finished ({at_kill} of {windows}): not mid-write"
    );
    // The extraction into SQLite is not affected: backfill succeeds and says the mirror
    // is behind.
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.run("start");
    run_ok(bin().args(["backfill", "--config"]).arg(cfg_path).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
}

fn config_with(
    server_key: &str,
    url: &str,
    dir: &std::path::Path,
    sim: &Sim,
    extra: &str,
) -> std::path::PathBuf {
    let cfg_path = write_config(dir, sim, &["cluster-1"], extra);
    let yaml = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "cloudtuner:\n  storage:\n",
        &format!("cloudtuner:\n  storage:\n    {server_key}: \"{url}\"\n"),
    );
    std::fs::write(&cfg_path, yaml).unwrap();
    cfg_path
}

#[test]
fn clickhouse_killed_mid_mirror_replays_exactly_once() {
    let server = Server::clickhouse();
    let sim = Sim::start(sim_config(1, 120));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{FAST}clickhouse:\n  database: bridge_kill_test\naggregation:\n  enabled: false\n"
    );
    let cfg_path = config_with("clickhouse", &server.url, dir.path(), &sim, &extra);
    let range = past_range(48);
    let url = server.url.clone();
    let progress = move || -> Option<usize> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(&url)
                .body("SELECT count(DISTINCT slot) FROM bridge_kill_test.sync_state WHERE endpoint = 'allocation'")
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.text().await.ok()?.trim().parse().ok()
        })
    };
    kill_mid_mirror(&server, &cfg_path, range, &progress);

    let sqlite = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let mut ch_cfg = kb_clickhouse::ClickHouseConfig::new(server.url.clone());
    ch_cfg.database = "bridge_kill_test".into();
    let ch = kb_clickhouse::ClickHouseStore::open(&ch_cfg).unwrap();
    let cps = ch
        .checkpoints("cluster-1", kb_pipeline::ports::Endpoint::Allocation)
        .unwrap();
    assert_eq!(
        cps.len(),
        range.split(HOUR).len(),
        "one checkpoint per window"
    );
    for hour in range.split(HOUR) {
        let want = sqlite.window_total("cluster-1", hour).unwrap();
        let got = ch.window_total("cluster-1", hour).unwrap();
        assert_eq!(got.rows, want.rows, "{hour}: rows counted once");
        assert!(
            kb_core::cost::relative_error(want.total_cost, got.total_cost) <= 1e-9,
            "{hour}: {} vs {}",
            got.total_cost,
            want.total_cost
        );
        assert!(
            kb_core::cost::relative_error(
                sim.fleet.allocation_total("cluster-1", hour),
                got.total_cost
            ) <= 1e-9,
            "{hour}: the simulator's total"
        );
    }
    assert_same(&hourly_totals(&ch, range), &hourly_totals(&sqlite, range));
}

#[test]
fn influxdb_killed_mid_mirror_replays_exactly_once() {
    let server = Server::influxdb();
    let sim = Sim::start(sim_config(1, 120));
    let dir = tempfile::tempdir().unwrap();
    let extra =
        format!("{FAST}influxdb:\n  database: bridge_kill_test\naggregation:\n  enabled: false\n");
    let cfg_path = config_with("influxdb", &server.url, dir.path(), &sim, &extra);
    let range = past_range(48);
    let mut ic = kb_influx::InfluxConfig::v1(server.url.clone());
    if let kb_influx::InfluxApi::V1 { database, .. } = &mut ic.api {
        *database = "bridge_kill_test".into();
    }
    ic.create_database = false;
    ic.timeout = std::time::Duration::from_secs(2);
    let probe = ic.clone();
    let progress = move || -> Option<usize> {
        let s = kb_influx::InfluxStore::open(&probe).ok()?;
        s.checkpoints("cluster-1", kb_pipeline::ports::Endpoint::Allocation)
            .ok()
            .map(|c| c.len())
    };
    kill_mid_mirror(&server, &cfg_path, range, &progress);

    let sqlite = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let influx = kb_influx::InfluxStore::open(&ic).unwrap();
    let cps = influx
        .checkpoints("cluster-1", kb_pipeline::ports::Endpoint::Allocation)
        .unwrap();
    assert_eq!(
        cps.len(),
        range.split(HOUR).len(),
        "one checkpoint per window"
    );
    for hour in range.split(HOUR) {
        let want = sqlite.window_total("cluster-1", hour).unwrap();
        let got = influx.window_total("cluster-1", hour).unwrap();
        assert_eq!(got.rows, want.rows, "{hour}: rows counted once");
        assert!(
            kb_core::cost::relative_error(want.total_cost, got.total_cost) <= 1e-9,
            "{hour}: {} vs {}",
            got.total_cost,
            want.total_cost
        );
    }
}
