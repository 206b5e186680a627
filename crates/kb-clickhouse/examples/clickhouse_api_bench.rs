//! The API's 30-day namespace breakdown served from ClickHouse, next to the same data served
//! from SQLite: latency p50/p99 of sequential requests with the response cache off, so every
//! request reads the store.
//!
//! `cargo run --release -p kb-clickhouse --example clickhouse_api_bench -- CLICKHOUSE_URL
//! [NAMESPACES [REQUESTS]]`
//!
//! It writes one cluster (`bench-1`) through the stores' write ports: hourly and daily
//! namespace summaries for the 35 days before NOW (2025-06-15T12:30:00Z) and monthly
//! rollups, and one allocation window (so the API knows the cluster), into a fresh
//! ClickHouse database `kb_api_bench` and a SQLite file in a temp dir,
//! then serves each with `kb_api::router` (2 tokio workers, clock fixed at NOW) and times
//! `GET /api/v1/costs/kubernetes/bench-1/namespaces?window=30d&limit=NAMESPACES`.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kb_analytics::CostSummary;
use kb_analytics::summary::{CostTotals, Dimension, Granularity};
use kb_core::window::{DAY, HOUR};
use kb_core::{Resolution, Window};
use kb_pipeline::insights::{InsightReader, InsightStore, Source};
use kb_pipeline::ports::CostReader;

const NOW: i64 = 1_749_990_600;
const DAYS: i64 = 35;
const TOKEN: &str = "clickhouse-api-bench-token";

fn unit(x: u64) -> f64 {
    let mut x = x ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn totals(ns: usize, hour: i64, hours: f64) -> CostTotals {
    let scale = (0.02 + 0.5 * unit(((ns as u64) << 32) ^ hour as u64)) * hours;
    CostTotals {
        total_cost: scale,
        cpu_cost: scale * 0.5,
        memory_cost: scale * 0.3,
        storage_cost: scale * 0.2,
        usage_cost: scale * 0.4,
        request_cost: scale * 0.8,
        rows: 10,
        ..CostTotals::default()
    }
}

fn summary(g: Granularity, bucket: Window, ns: usize, t: CostTotals) -> CostSummary {
    let name = format!("ns-{ns:04}");
    CostSummary {
        granularity: g,
        bucket,
        dimension: Dimension::Namespace,
        cluster: "bench-1".into(),
        namespace: name.clone(),
        name,
        efficiency_score: t.efficiency_score(),
        totals: t,
    }
}

/// Writes the summaries through the insight port.
fn fill(store: &dyn InsightStore, namespaces: usize) -> Result<u64, Box<dyn std::error::Error>> {
    let end = NOW - NOW % DAY + DAY;
    let mut written = 0;
    let mut months: std::collections::BTreeMap<(i64, usize), CostTotals> = Default::default();
    let mut day = end - DAYS * DAY;
    while day < end {
        let dw = Window {
            start: day,
            end: day + DAY,
        };
        let mut hourly = Vec::with_capacity(namespaces * 24);
        let mut daily = Vec::with_capacity(namespaces);
        for ns in 0..namespaces {
            let mut d = CostTotals::default();
            for h in 0..24 {
                let start = day + h * HOUR;
                let t = totals(ns, start / HOUR, 1.0);
                d.merge(&t);
                hourly.push(summary(
                    Granularity::Hour,
                    Window {
                        start,
                        end: start + HOUR,
                    },
                    ns,
                    t,
                ));
            }
            months
                .entry((Granularity::Month.bucket(day).start, ns))
                .or_default()
                .merge(&d);
            daily.push(summary(Granularity::Day, dw, ns, d));
        }
        written +=
            store.put_summaries("bench-1", Granularity::Hour, dw, Source::Api, 1, &hourly)?;
        written += store.put_summaries("bench-1", Granularity::Day, dw, Source::Api, 1, &daily)?;
        day += DAY;
    }
    let mut by_month: std::collections::BTreeMap<i64, Vec<CostSummary>> = Default::default();
    for ((m, ns), t) in months {
        by_month.entry(m).or_default().push(summary(
            Granularity::Month,
            Granularity::Month.bucket(m),
            ns,
            t,
        ));
    }
    for (m, rows) in by_month {
        written += store.put_summaries(
            "bench-1",
            Granularity::Month,
            Granularity::Month.bucket(m),
            Source::Api,
            1,
            &rows,
        )?;
    }
    Ok(written)
}

/// (p50, p99, max) in ms, and the first answer's size in bytes and `source`.
type Measured = (f64, f64, f64, usize, String);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Serves `costs`/`insights` and times `requests` sequential requests; returns (p50, p99, max)
/// in ms and the first answer's size and source.
fn measure(
    costs: Arc<dyn CostReader>,
    insights: Arc<dyn InsightReader>,
    namespaces: usize,
    requests: usize,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let auth = kb_api::AuthConfig {
        bootstrap_admin: Some(kb_api::Secret::new(TOKEN)),
        ..kb_api::AuthConfig::default()
    };
    let clock: kb_api::Clock = Arc::new(|| NOW);
    let state =
        kb_api::ApiState::new(costs, insights, &auth, kb_api::AuditSink::disabled(), clock)?
            .with_limits(kb_api::Limits {
                cache_ttl: Duration::ZERO,
                ..kb_api::Limits::default()
            });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, kb_api::router(state))
                .with_graceful_shutdown(async {
                    stopped.await.ok();
                })
                .await
        });
        let client = reqwest::Client::new();
        let url = format!(
            "http://{addr}/api/v1/costs/kubernetes/bench-1/namespaces?window=30d&limit={namespaces}"
        );
        let mut times = Vec::with_capacity(requests);
        let mut first = (0, String::new());
        // One warm-up request, not counted.
        for i in 0..=requests {
            let t0 = Instant::now();
            let resp = client.get(&url).bearer_auth(TOKEN).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)).into());
            }
            if i == 0 {
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                first = (body.len(), v["source"].as_str().unwrap_or("").to_string());
            } else {
                times.push(ms);
            }
        }
        stop.send(()).ok();
        server.await??;
        times.sort_by(f64::total_cmp);
        Ok((
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(0.0),
            first.0,
            first.1,
        ))
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: clickhouse_api_bench CLICKHOUSE_URL [NAMESPACES [REQUESTS]]")?;
    let namespaces: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let requests: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);

    let mut cfg = kb_clickhouse::ClickHouseConfig::new(url.clone());
    cfg.database = "kb_api_bench".into();
    drop_database(&url, &cfg.database)?;
    let ch = Arc::new(kb_clickhouse::ClickHouseStore::open(&cfg)?);
    let dir = tempfile::tempdir()?;
    let sqlite = Arc::new(kb_store::SqliteStore::open(&dir.path().join("bench.db"))?);
    // One committed allocation window, so the API knows the cluster and its freshness.
    let last_hour = Window {
        start: NOW - NOW % HOUR - HOUR,
        end: NOW - NOW % HOUR,
    };
    let rows = kb_conformance::window_rows("bench-1", last_hour, 1.0);
    kb_conformance::put_window(ch.as_ref(), "bench-1", last_hour, Resolution::Hour, &rows)?;
    kb_conformance::put_window(
        sqlite.as_ref(),
        "bench-1",
        last_hour,
        Resolution::Hour,
        &rows,
    )?;
    for (name, store) in [
        ("clickhouse", ch.clone() as Arc<dyn InsightStore>),
        ("sqlite", sqlite.clone() as Arc<dyn InsightStore>),
    ] {
        let t0 = Instant::now();
        let n = fill(store.as_ref(), namespaces)?;
        eprintln!(
            "{name}: {n} summaries written in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    println!(
        "| store | namespaces | response bytes | source | requests | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    for (name, costs, insights) in [
        (
            "clickhouse",
            ch.clone() as Arc<dyn CostReader>,
            ch.clone() as Arc<dyn InsightReader>,
        ),
        (
            "sqlite",
            sqlite.clone() as Arc<dyn CostReader>,
            sqlite.clone() as Arc<dyn InsightReader>,
        ),
    ] {
        let (p50, p99, max, bytes, source) = measure(costs, insights, namespaces, requests)?;
        println!(
            "| {name} | {namespaces} | {bytes} | {source} | {requests} | {p50:.2} | {p99:.2} | {max:.2} |"
        );
    }
    Ok(())
}

/// Drops the bench database so every run starts empty.
fn drop_database(url: &str, db: &str) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(url)
            .body(format!("DROP DATABASE IF EXISTS `{db}`"))
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("drop database: {}", r.status()).into());
        }
        Ok(())
    })
}
