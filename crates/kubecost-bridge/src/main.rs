//! The `kubecost-bridge` command line: parses arguments, sets up logging and signals, runs a
//! command, and maps its outcome to an exit code (0 ok, 1 runtime failure, 2 usage or config
//! error, 3 `run` did not finish within `shutdown.deadline` after SIGTERM, 130 a second SIGTERM
//! or Ctrl-C). Printing to stdout and stderr is allowed here and in `demo.rs` only.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's own output"
)]

mod aggregate;
mod alert_reader;
mod app;
mod config;
mod demo;
mod extract;
mod kube;
mod mirror;
mod realtime;
mod server;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use app::{Failure, runtime};
use clap::{Parser, Subcommand};
use kb_pipeline::shutdown::Shutdown;

/// Kubecost cost data into CloudTuner's stores.
#[derive(Parser)]
#[command(name = "kubecost-bridge", version, about)]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `kubecost_bridge=debug,warn` (RUST_LOG also works).
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Catch up on every unsynced window, then follow the schedules until SIGTERM or Ctrl-C.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Extract the windows of a range again (replacing what the store holds).
    Extract {
        #[arg(long)]
        config: PathBuf,
        /// Only this cluster (the config's name for it).
        #[arg(long)]
        cluster: Option<String>,
        /// `START,END` (RFC3339, dates or unix seconds) or a Kubecost window such as `24h`.
        #[arg(long)]
        window: String,
    },
    /// Extract every unsynced window between two dates.
    Backfill {
        #[arg(long)]
        config: PathBuf,
        /// Start: RFC3339, a date (YYYY-MM-DD, midnight UTC) or unix seconds.
        #[arg(long)]
        from: String,
        /// End (exclusive), same forms; capped at now.
        #[arg(long)]
        to: String,
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Store a recorded allocation response (saved from Kubecost for one hour or day) as that
    /// window of a cluster, as `extract` would have.
    Import {
        #[arg(long)]
        config: PathBuf,
        /// The cluster (the config's name for it) the rows belong to.
        #[arg(long)]
        cluster: String,
        /// The response's window, `START,END`: one whole UTC hour or day.
        #[arg(long)]
        window: String,
        /// The recorded `/model/allocation` response (JSON).
        #[arg(long)]
        file: PathBuf,
    },
    /// Apply the allocation rules and rebuild summaries, anomalies and forecasts over a range
    /// (whole UTC days), e.g. after changing the rules.
    Aggregate {
        #[arg(long)]
        config: PathBuf,
        /// Start: RFC3339, a date (YYYY-MM-DD, midnight UTC) or unix seconds.
        #[arg(long)]
        from: String,
        /// End (exclusive), same forms; capped at now.
        #[arg(long)]
        to: String,
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Validate a configuration file and report every problem with its path.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Apply retention now: delete pod-level rows older than `retention.allocations`.
    Cleanup {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve a Kubecost-compatible simulator over a synthetic fleet.
    Simulate(SimArgs),
    /// Run the whole pipeline against an in-process simulator and show where the data went.
    Demo(demo::DemoArgs),
}

#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 3)]
    clusters: usize,
    /// Pods per cluster.
    #[arg(long, default_value_t = 200)]
    pods: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fraction of requests answered with a 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Delay added to every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests never answered.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// Fraction of responses cut off mid-body.
    #[arg(long, default_value_t = 0.0)]
    truncate_rate: f64,
    /// Fraction of responses with invalid JSON.
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
    /// Fraction of responses with NaN (null) efficiencies and usage averages.
    #[arg(long, default_value_t = 0.0)]
    nan_rate: f64,
    /// Fraction of responses answered `{"code":200,"data":[null]}`.
    #[arg(long, default_value_t = 0.0)]
    null_data_rate: f64,
    /// Cost spike `NAMESPACE:FACTOR:START` (START RFC3339 or unix seconds); repeatable.
    #[arg(long)]
    spike: Vec<String>,
}

impl SimArgs {
    fn config(&self) -> Result<kb_sim::SimConfig, Failure> {
        let mut spikes = Vec::new();
        for s in &self.spike {
            spikes.push(
                s.parse::<kb_sim::Spike>()
                    .map_err(|e| Failure::Usage(anyhow::anyhow!("--spike {s:?}: {e}")))?,
            );
        }
        for (name, v) in [
            ("--fail-rate", self.fail_rate),
            ("--timeout-rate", self.timeout_rate),
            ("--truncate-rate", self.truncate_rate),
            ("--malformed-rate", self.malformed_rate),
            ("--nan-rate", self.nan_rate),
            ("--null-data-rate", self.null_data_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "{name} must be between 0 and 1"
                )));
            }
        }
        Ok(kb_sim::SimConfig {
            clusters: self.clusters,
            pods: self.pods,
            seed: self.seed,
            faults: kb_sim::Faults {
                fail_rate: self.fail_rate,
                latency_ms: self.latency_ms,
                timeout_rate: self.timeout_rate,
                truncate_rate: self.truncate_rate,
                malformed_rate: self.malformed_rate,
                nan_rate: self.nan_rate,
                null_data_rate: self.null_data_rate,
            },
            spikes,
        })
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help and version to stdout (exit 0) and usage errors to stderr (2).
            let code = if e.use_stderr() { 2 } else { 0 };
            let _printed = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.log.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error());
            ExitCode::from(f.exit_code())
        }
    }
}

fn init_logging(filter: Option<&str>) {
    let spec = filter
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let targets: tracing_subscriber::filter::Targets = spec.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let _already = tracing_subscriber::registry()
        .with(fmt)
        .with(targets)
        .try_init();
}

/// Exit code of `run` when the shutdown deadline passed before it finished.
const EXIT_DEADLINE: i32 = 3;

/// Exit code after a second SIGTERM or Ctrl-C.
const EXIT_ABORTED: i32 = 130;

/// Returns a shutdown signal that fires on SIGTERM or Ctrl-C; a second signal exits at once.
fn signals() -> Shutdown {
    signals_with_deadline(None)
}

/// [`signals`], and once shutdown starts, exits with [`EXIT_DEADLINE`] if the process is still
/// running `deadline` later. Nothing is lost then: a window's rows and checkpoint commit in one
/// transaction, so an uncommitted window rolls back and is extracted again at the next start;
/// accepted remote_write samples are already in the durable spool.
fn signals_with_deadline(deadline: Option<Duration>) -> Shutdown {
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        wait_signal().await;
        match deadline {
            Some(d) => {
                tracing::info!(
                    deadline_secs = d.as_secs_f64(),
                    "shutdown requested; finishing the windows in flight (signal again to abort)"
                );
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    eprintln!(
                        "shutdown deadline of {d:?} passed: windows not committed were rolled back and will be extracted again"
                    );
                    std::process::exit(EXIT_DEADLINE);
                });
            }
            None => tracing::info!(
                "shutdown requested; finishing the current window (Ctrl-C again to abort)"
            ),
        }
        s.trigger();
        wait_signal().await;
        eprintln!("aborted: the window in flight was not committed and will be extracted again");
        std::process::exit(EXIT_ABORTED);
    });
    shutdown
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                if let Err(e) = tokio::signal::ctrl_c().await {
                    tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        }
    }
}

async fn dispatch(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::CheckConfig { config } => {
            let cfg = app::load_config(&config)?;
            println!(
                "{}: ok ({} cluster(s), store {})",
                config.display(),
                cfg.clusters.len(),
                cfg.sqlite_path.display()
            );
            Ok(())
        }
        Command::Run { config } => {
            let cfg = app::load_config(&config)?;
            let deadline = cfg.shutdown_deadline;
            app::run(cfg, signals_with_deadline(Some(deadline))).await
        }
        Command::Extract {
            config,
            cluster,
            window,
        } => {
            let cfg = app::load_config(&config)?;
            let now = chrono::Utc::now().timestamp();
            let w = kb_core::window::parse_kubecost_window(&window, now)
                .map_err(|e| Failure::Usage(anyhow::anyhow!("--window: {e}")))?;
            check_cluster(&cfg, cluster.as_deref())?;
            let store = app::open_store(&cfg)?;
            let shutdown = signals();
            let mut ex = app::extractor(&cfg, store.clone(), shutdown.clone())?;
            app::enrich(&cfg, &mut ex, &shutdown).await?;
            let report = app::extract_exact(&cfg, &ex, w, cluster.as_deref()).await?;
            app::mirror_once(&cfg, &store).await?;
            finish(report)
        }
        Command::Import {
            config,
            cluster,
            window,
            file,
        } => {
            let cfg = app::load_config(&config)?;
            let now = chrono::Utc::now().timestamp();
            let w = kb_core::window::parse_kubecost_window(&window, now)
                .map_err(|e| Failure::Usage(anyhow::anyhow!("--window: {e}")))?;
            check_cluster(&cfg, Some(&cluster))?;
            let store = app::open_store(&cfg)?;
            let r =
                tokio::task::block_in_place(|| app::import_file(&cfg, &store, &cluster, w, &file))?;
            println!(
                "imported {} allocation rows (total_cost {:.6}) into cluster {cluster} window {w}",
                r.rows, r.total_cost
            );
            Ok(())
        }
        Command::Aggregate {
            config,
            from,
            to,
            cluster,
        } => {
            let cfg = app::load_config(&config)?;
            let (from, to) = parse_range(&from, &to)?;
            check_cluster(&cfg, cluster.as_deref())?;
            let store = app::open_store(&cfg)?;
            let r = app::run_aggregation(&cfg, &store, from, to, cluster.as_deref()).await?;
            println!(
                "aggregated {} day(s) of {} allocation rows under rules version {}: {} summaries, {} anomalies, {} forecasts, {} recommendations saving {:.2} a month",
                r.days,
                r.rows,
                cfg.aggregation.rules.version,
                r.summaries,
                r.anomalies,
                r.forecasts,
                r.recommendations,
                r.monthly_savings
            );
            app::mirror_once(&cfg, &store).await?;
            Ok(())
        }
        Command::Backfill {
            config,
            from,
            to,
            cluster,
        } => {
            let cfg = app::load_config(&config)?;
            let (from, to) = parse_range(&from, &to)?;
            check_cluster(&cfg, cluster.as_deref())?;
            let store = app::open_store(&cfg)?;
            let shutdown = signals();
            let mut ex = app::extractor(&cfg, store.clone(), shutdown.clone())?;
            app::enrich(&cfg, &mut ex, &shutdown).await?;
            let bar = demo::Bar::new("backfill");
            let report = app::sync_range(&cfg, &ex, from, to, cluster.as_deref(), &bar).await?;
            bar.finish();
            if cfg.aggregation.enabled && !report.windows.is_empty() {
                let r = app::run_aggregation(&cfg, &store, from, to, cluster.as_deref()).await?;
                println!(
                    "aggregated {} day(s): {} summaries, {} anomalies, {} forecasts",
                    r.days, r.summaries, r.anomalies, r.forecasts
                );
            }
            app::mirror_once(&cfg, &store).await?;
            finish(report)
        }
        Command::Cleanup { config } => {
            let cfg = app::load_config(&config)?;
            let store = app::open_store(&cfg)?;
            let before = chrono::Utc::now().timestamp() - cfg.allocation_retention.as_secs() as i64;
            let n =
                kb_pipeline::ports::CostStore::cleanup(store.as_ref(), before).map_err(runtime)?;
            println!(
                "deleted {n} rows older than {}",
                kb_core::window::format_rfc3339(before)
            );
            Ok(())
        }
        Command::Simulate(args) => {
            let cfg = args.config()?;
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))
                .map_err(runtime)?;
            let addr = listener.local_addr().map_err(runtime)?;
            println!(
                "kubecost simulator: http://{addr}  ({} clusters x {} pods, seed {})",
                cfg.clusters, cfg.pods, cfg.seed
            );
            let shutdown = signals();
            kb_sim::serve(listener, cfg, async move { shutdown.wait().await })
                .await
                .map_err(runtime)
        }
        Command::Demo(args) => demo::run(args, signals()).await,
    }
}

/// Parses `--from` and `--to` (RFC3339, a date or unix seconds); `to` must be after `from`.
fn parse_range(from: &str, to: &str) -> Result<(i64, i64), Failure> {
    let parse = |flag: &str, s: &str| {
        kb_core::window::parse_instant(s).ok_or_else(|| {
            Failure::Usage(anyhow::anyhow!(
                "{flag} {s:?}: not RFC3339, a date or unix seconds"
            ))
        })
    };
    let (from, to) = (parse("--from", from)?, parse("--to", to)?);
    if to <= from {
        return Err(Failure::Usage(anyhow::anyhow!("--to must be after --from")));
    }
    Ok((from, to))
}

fn check_cluster(cfg: &config::Config, cluster: Option<&str>) -> Result<(), Failure> {
    match cluster {
        Some(c) if !cfg.clusters.iter().any(|x| x.name == c) => Err(Failure::Usage(
            anyhow::anyhow!("--cluster {c:?} is not in the configuration"),
        )),
        _ => Ok(()),
    }
}

fn finish(report: extract::RunReport) -> Result<(), Failure> {
    let rows: u64 = report.windows.iter().map(|w| w.rows).sum();
    let max_err = report
        .windows
        .iter()
        .map(|w| w.relative_error)
        .fold(0.0, f64::max);
    println!(
        "synced {} allocation window(s) ({rows} rows, max reconciliation error {max_err:.2e}), {} asset window(s)",
        report.windows.len(),
        report.asset_windows
    );
    for f in &report.other_failures {
        eprintln!("warning: {f}");
    }
    if report.failures.is_empty() {
        return Ok(());
    }
    for f in &report.failures {
        eprintln!("error: {f}");
    }
    Err(runtime(anyhow::anyhow!(
        "{} window(s) failed; their checkpoints did not advance",
        report.failures.len()
    )))
}
