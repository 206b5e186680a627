//! `kubecost-bridge demo`: the simulator, the extractor and the embedded store in one process,
//! with no configuration; and the progress bar `backfill` and `demo` show on a terminal.
//!
//! The demo starts the simulator on a loopback port, extracts the last `--days` days for every
//! simulated cluster (hourly within Kubecost's 49 h hourly retention, daily before it, exactly as
//! `run` would), syncs assets, budgets and savings, aggregates, and prints what it stored and
//! where. It then serves the bridge on `--listen` (health, the REST API, the dashboard,
//! real-time costs from scrapes of the simulator's `/metrics`) until Ctrl-C; `--once` exits
//! after the summary. The dashboard's sign-in link is printed with the other commands.

#![allow(clippy::print_stdout, reason = "the demo reports to the terminal")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kb_core::Window;
use kb_pipeline::shutdown::Shutdown;

use crate::app::{self, Failure, runtime};
use crate::config::Config;
use crate::extract::Progress;

/// Arguments of `demo`.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Where the bridge serves the API and real-time costs (the simulator takes a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The data folder (the SQLite store goes inside).
    #[arg(long, default_value = "kubecost-bridge-demo")]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 7)]
    days: u32,
    #[arg(long, default_value_t = 3)]
    clusters: usize,
    /// Pods per simulated cluster.
    #[arg(long, default_value_t = 150)]
    pods: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Exit after the extraction and the summary instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
}

/// A progress bar on a terminal; draws nothing when stderr is not one.
pub(crate) struct Bar(ProgressBar);

impl Bar {
    /// Makes a bar with a label.
    pub(crate) fn new(label: &str) -> Bar {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} windows, {per_sec}, eta {eta} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        Bar(bar)
    }

    /// Clears the bar.
    pub(crate) fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn planned(&self, windows: u64) {
        self.0.set_length(windows);
    }

    fn window_done(&self, cluster: &str, window: &Window, ok: bool) {
        self.0.inc(1);
        let status = if ok { "" } else { " (failed)" };
        self.0.set_message(format!(
            "{cluster} {}{status}",
            kb_core::window::format_rfc3339(window.start)
        ));
    }
}

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs, shutdown: Shutdown) -> Result<(), Failure> {
    let sim = kb_sim::SimConfig {
        clusters: args.clusters.max(1),
        pods: args.pods.max(1),
        seed: args.seed,
        faults: kb_sim::Faults::default(),
        spikes: Vec::new(),
    };
    let names = kb_sim::Fleet::new(&sim).cluster_names();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen for the simulator")
        .map_err(runtime)?;
    let addr = listener.local_addr().map_err(runtime)?;
    let api_listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))
        .map_err(runtime)?;
    let api_addr = api_listener.local_addr().map_err(runtime)?;
    let sim_shutdown = Shutdown::new();
    let stop = sim_shutdown.clone();
    let server = tokio::spawn(kb_sim::serve(
        listener,
        sim,
        async move { stop.wait().await },
    ));
    let url = url::Url::parse(&format!("http://{addr}/")).map_err(runtime)?;

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))
        .map_err(runtime)?;
    let db = args.data_dir.join("kubecost-bridge.db");
    let mut cfg = Config::for_simulator(&url, &names, db.clone())?;
    cfg.extract.lookback = Duration::from_secs(u64::from(args.days.max(1)) * 86_400);
    cfg.extract.settle = Duration::ZERO;
    cfg.api_listen = api_addr;
    cfg.realtime.scrape.clone_from(&names);
    cfg.realtime.scrape_interval = Duration::from_secs(15);
    cfg.remote_write.spool_dir = args.data_dir.join("realtime-spool");
    cfg.api.audit_log = Some(Some(args.data_dir.join("audit.log")));
    // The demo's key: KUBECOST_BRIDGE_ADMIN_TOKEN when set, else a fresh random one.
    let token = std::env::var("KUBECOST_BRIDGE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| {
            let mut rng = fastrand::Rng::new();
            (0..32)
                .map(|_| char::from(b"0123456789abcdef"[rng.usize(..16)]))
                .collect()
        });
    cfg.api.bootstrap_token = Some(token.clone());

    println!(
        "kubecost simulator: {url} ({} clusters x {} pods)",
        names.len(),
        args.pods
    );
    println!(
        "extracting the last {} days into {} ...",
        args.days,
        db.display()
    );
    let store = app::open_store(&cfg)?;
    let ex = app::extractor(&cfg, store.clone(), shutdown.clone())?;
    let now = chrono::Utc::now().timestamp();
    let (from, until) = crate::extract::lookback_range(now, cfg.extract.lookback);
    let bar = Bar::new("extract");
    let started = std::time::Instant::now();
    let report = app::sync_range(&cfg, &ex, from, until, None, &bar).await?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();

    let rows: u64 = report.windows.iter().map(|w| w.rows).sum();
    let max_err = report
        .windows
        .iter()
        .map(|w| w.relative_error)
        .fold(0.0, f64::max);
    println!(
        "stored {} allocation windows ({rows} rows) and {} asset days in {secs:.1}s; max reconciliation error against kubecost's totals: {max_err:.2e}",
        report.windows.len(),
        report.asset_windows,
    );
    let range = Window {
        start: kb_core::window::floor_to(from, 86_400),
        end: until,
    };
    println!("\ncost per cluster, {}:", range);
    for row in app::cluster_totals(&store, range)? {
        println!(
            "  {:<12} total {:>10.2}  cpu {:>9.2}  memory {:>9.2}  storage {:>8.2}  network {:>7.2}  idle {:>9.2}  efficiency {:>5.1}%",
            row.cluster,
            row.total_cost,
            row.cpu_cost,
            row.memory_cost,
            row.storage_cost,
            row.network_cost,
            row.idle_cost,
            row.efficiency_score * 100.0
        );
    }
    let started = std::time::Instant::now();
    let agg = app::run_aggregation(&cfg, &store, from, until, None).await?;
    println!(
        "\naggregated {} cluster-days in {:.1}s: {} summaries (hour, day, month x cluster, namespace, workload, team, owner, product, cost centre), {} anomalies, {} forecasts",
        agg.days,
        started.elapsed().as_secs_f64(),
        agg.summaries,
        agg.anomalies,
        agg.forecasts
    );
    for f in &report.failures {
        println!("failed: {f}");
    }
    for f in &report.other_failures {
        println!("warning: {f}");
    }
    println!("\nwhere to look:");
    println!(
        "  sqlite3 {} 'SELECT * FROM sync_state ORDER BY window_start DESC LIMIT 5'",
        db.display()
    );
    println!(
        "  sqlite3 {} 'SELECT * FROM reconciliations ORDER BY relative_error DESC LIMIT 5'",
        db.display()
    );
    println!(
        "  sqlite3 {} \"SELECT dimension, name, round(sum(total_cost), 2) AS cost FROM cost_summaries WHERE window_duration = '1d' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10\"",
        db.display()
    );
    println!(
        "  curl '{url}model/allocation?window=24h&aggregate=namespace&accumulate=true'   (the simulator)"
    );
    println!(
        "  curl -H 'Authorization: Bearer {token}' http://{api_addr}/api/v1/costs/kubernetes   (the REST API; OpenAPI at /api/v1/openapi.json)"
    );
    println!(
        "  curl -H 'Authorization: Bearer {token}' http://{api_addr}/api/v1/costs/kubernetes/cluster-1/namespaces?window=7d"
    );
    println!(
        "  curl http://{api_addr}/metrics   (the bridge's own metrics; /healthz and /readyz for probes)"
    );
    println!(
        "  dashboard: http://{api_addr}/?token={token}   (signs this browser in, then shows the overview)"
    );

    if !args.once {
        let metrics = app::metrics(&cfg, &store);
        let server = crate::server::build(&cfg, store.clone(), &shutdown, &metrics)?;
        println!(
            "\nserving the bridge at http://{api_addr}/ and the simulator at {url}; Ctrl-C to stop"
        );
        server.serve(api_listener, shutdown.clone()).await?;
    }
    sim_shutdown.trigger();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(runtime(e)),
        Err(e) => return Err(runtime(anyhow::anyhow!("simulator task failed: {e}"))),
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(runtime(anyhow::anyhow!(
            "{} window(s) failed",
            report.failures.len()
        )))
    }
}
