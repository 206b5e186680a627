//! Builds the API benchmark's store: one year of data for 3 clusters × 2,000 namespaces ×
//! 20,000 pods, rolled up, written through the store's real write ports.
//!
//! `cargo run --release -p kb-api --example api_bench_data -- DB [NOW [NAMESPACES DAYS PODS]]`
//! (the last three shrink the store, for the schemathesis demo).
//!
//! What it writes (NOW defaults to 2025-06-15T12:30:00Z; the year ends at the end of NOW's day):
//! - summaries (`InsightStore::put_summaries`, source `api`) per cluster:
//!   cluster dimension hourly, daily and monthly for the whole year; namespace dimension
//!   (2,000 per cluster) daily and monthly for the whole year and hourly for the last 35 days;
//!   team dimension (40 teams) daily for the year and hourly for the last 35 days. Hourly
//!   namespace rows for the whole year (52M rows) are left out to keep generation cheap: no
//!   endpoint reads hourly rows beyond a range's edge hours;
//! - pod allocations (`CostStore`) for the last 24 hours: 20,000 pods over the 3 clusters
//!   in 2,000 controllers, plus an idle row per cluster and hour, so `/workloads`, the FOCUS
//!   export and freshness have raw rows, checkpointed like the extractor does;
//! - anomalies and forecasts (`InsightStore`) and budgets (`CostStore`), a few per cluster.
//!
//! Costs are a deterministic hash of (cluster, namespace, hour): no randomness.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::time::Instant;

use kb_analytics::anomaly::{Anomaly, DetectorKind, Severity};
use kb_analytics::summary::{CostTotals, Dimension, Granularity};
use kb_analytics::{CostSummary, SeriesKey};
use kb_core::window::{DAY, HOUR};
use kb_core::{Allocation, Budget, Resolution, Window};
use kb_pipeline::insights::{ForecastRow, InsightStore, Source};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint};
use kb_store::SqliteStore;

const CLUSTERS: usize = 3;
const TEAMS: usize = 40;
const HOURLY_DAYS: i64 = 35;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// Hourly totals of one namespace (or team) in one hour.
fn hour_totals(c: usize, ns: usize, hour: i64) -> CostTotals {
    let k = ((c as u64) << 48) ^ ((ns as u64) << 24) ^ (hour as u64);
    let scale = 0.02 + 0.5 * unit(k ^ 0xabc) * (1.0 + 0.3 * ((hour % 24) as f64 / 24.0));
    let cpu = scale * 0.45;
    let mem = scale * 0.30;
    let net = scale * 0.03;
    let sto = scale * 0.07;
    let shared = scale * 0.05;
    let idle = if ns == 0 { scale * 2.0 } else { 0.0 };
    CostTotals {
        total_cost: cpu + mem + net + sto + shared + idle,
        cpu_cost: cpu,
        memory_cost: mem,
        network_cost: net,
        storage_cost: sto,
        shared_cost: shared,
        idle_cost: idle,
        usage_cost: (cpu + mem) * (0.3 + 0.5 * unit(k ^ 7)),
        request_cost: cpu + mem,
        rows: 10,
        ..CostTotals::default()
    }
}

fn ns_name(ns: usize) -> String {
    if ns == 0 {
        "__idle__".to_string()
    } else {
        format!("ns-{ns:04}")
    }
}

fn summary(
    g: Granularity,
    bucket: Window,
    d: Dimension,
    cluster: &str,
    namespace: &str,
    name: &str,
    totals: CostTotals,
) -> CostSummary {
    CostSummary {
        granularity: g,
        bucket,
        dimension: d,
        cluster: cluster.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        efficiency_score: totals.efficiency_score(),
        totals,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let db = args.next().ok_or("usage: api_bench_data DB [NOW]")?;
    let now: i64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_749_990_600);
    let namespaces: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
        .max(2);
    let days: i64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(365);
    let pods: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
        .max(CLUSTERS);
    let store = SqliteStore::open(Path::new(&db))?;
    let end = now - now % DAY + DAY;
    let start = end - days * DAY;
    let hourly_from = end - HOURLY_DAYS * DAY;
    let t0 = Instant::now();
    let mut written = 0u64;
    for c in 0..CLUSTERS {
        let cluster = format!("bench-{}", c + 1);
        // One day at a time: hourly rows where kept, and the day's rollup.
        let mut month_acc: std::collections::BTreeMap<(i64, usize), CostTotals> =
            std::collections::BTreeMap::new();
        let mut month_cluster: std::collections::BTreeMap<i64, CostTotals> =
            std::collections::BTreeMap::new();
        let mut day = start;
        while day < end {
            let dw = Window {
                start: day,
                end: day + DAY,
            };
            let mut hourly_ns = Vec::new();
            let mut hourly_cluster = Vec::new();
            let mut hourly_team = Vec::new();
            let mut day_ns = vec![CostTotals::default(); namespaces];
            let mut day_cluster = CostTotals::default();
            for h in 0..24 {
                let hs = day + h * HOUR;
                let hw = Window {
                    start: hs,
                    end: hs + HOUR,
                };
                let mut hc = CostTotals::default();
                let mut teams = vec![CostTotals::default(); TEAMS];
                for (ns, acc) in day_ns.iter_mut().enumerate() {
                    let t = hour_totals(c, ns, hs / HOUR);
                    acc.merge(&t);
                    hc.merge(&t);
                    if let Some(team) = teams.get_mut(ns % TEAMS) {
                        team.merge(&t);
                    }
                    if day >= hourly_from {
                        hourly_ns.push(summary(
                            Granularity::Hour,
                            hw,
                            Dimension::Namespace,
                            &cluster,
                            &ns_name(ns),
                            &ns_name(ns),
                            t,
                        ));
                    }
                }
                if day >= hourly_from {
                    for (i, t) in teams.into_iter().enumerate() {
                        hourly_team.push(summary(
                            Granularity::Hour,
                            hw,
                            Dimension::Team,
                            &cluster,
                            "",
                            &format!("team-{i:02}"),
                            t,
                        ));
                    }
                }
                day_cluster.merge(&hc);
                hourly_cluster.push(summary(
                    Granularity::Hour,
                    hw,
                    Dimension::Cluster,
                    &cluster,
                    "",
                    &cluster,
                    hc,
                ));
            }
            let mut hourly = hourly_cluster;
            hourly.extend(hourly_ns);
            hourly.extend(hourly_team);
            written +=
                store.put_summaries(&cluster, Granularity::Hour, dw, Source::Api, 1, &hourly)?;
            let mut daily = vec![summary(
                Granularity::Day,
                dw,
                Dimension::Cluster,
                &cluster,
                "",
                &cluster,
                day_cluster,
            )];
            let mut teams = vec![CostTotals::default(); TEAMS];
            let m = Granularity::Month.bucket(day).start;
            for (ns, t) in day_ns.iter().enumerate() {
                daily.push(summary(
                    Granularity::Day,
                    dw,
                    Dimension::Namespace,
                    &cluster,
                    &ns_name(ns),
                    &ns_name(ns),
                    *t,
                ));
                if let Some(team) = teams.get_mut(ns % TEAMS) {
                    team.merge(t);
                }
                month_acc.entry((m, ns)).or_default().merge(t);
            }
            for (i, t) in teams.into_iter().enumerate() {
                daily.push(summary(
                    Granularity::Day,
                    dw,
                    Dimension::Team,
                    &cluster,
                    "",
                    &format!("team-{i:02}"),
                    t,
                ));
            }
            month_cluster.entry(m).or_default().merge(&day_cluster);
            written +=
                store.put_summaries(&cluster, Granularity::Day, dw, Source::Api, 1, &daily)?;
            day += DAY;
        }
        let mut monthly = Vec::new();
        for (m, t) in &month_cluster {
            let b = Granularity::Month.bucket(*m);
            monthly.push(summary(
                Granularity::Month,
                b,
                Dimension::Cluster,
                &cluster,
                "",
                &cluster,
                *t,
            ));
        }
        for ((m, ns), t) in &month_acc {
            let b = Granularity::Month.bucket(*m);
            monthly.push(summary(
                Granularity::Month,
                b,
                Dimension::Namespace,
                &cluster,
                &ns_name(*ns),
                &ns_name(*ns),
                *t,
            ));
        }
        let mrange = Window {
            start: Granularity::Month.bucket(start).start,
            end: Granularity::Month.bucket(end).end,
        };
        written += store.put_summaries(
            &cluster,
            Granularity::Month,
            mrange,
            Source::Api,
            1,
            &monthly,
        )?;
        eprintln!(
            "{cluster}: summaries written ({written} so far, {:.0} s)",
            t0.elapsed().as_secs_f64()
        );

        // Raw pod rows for the last 24 hours.
        let pods_here = pods / CLUSTERS;
        for h in 0..24 {
            let hs = end - DAY + h * HOUR;
            let w = Window {
                start: hs,
                end: hs + HOUR,
            };
            let mut rows = Vec::with_capacity(pods_here + 1);
            for p in 0..pods_here {
                let ns = 1 + p % (namespaces - 1);
                let ctrl = p % 2_000 / CLUSTERS;
                let k = ((c as u64) << 48) ^ ((p as u64) << 20) ^ (hs as u64);
                let mut a = Allocation {
                    name: format!("{cluster}/{}/pod-{p}", ns_name(ns)),
                    cluster: cluster.clone(),
                    node: format!("node-{}", p % 300),
                    namespace: ns_name(ns),
                    controller_kind: "deployment".to_string(),
                    controller: format!("app-{ctrl}"),
                    pod: format!("app-{ctrl}-{p:05x}"),
                    window: w,
                    start: w.start,
                    end: w.end,
                    minutes: 60.0,
                    ..Allocation::default()
                };
                a.cpu_cost = 0.01 + 0.05 * unit(k);
                a.ram_cost = 0.005 + 0.02 * unit(k ^ 1);
                a.network_cost = 0.001 * unit(k ^ 2);
                a.pv_cost = if p % 7 == 0 { 0.004 } else { 0.0 };
                a.total_cost = kb_core::cost::allocation_total(&a);
                a.total_efficiency = 0.3 + 0.5 * unit(k ^ 3);
                rows.push(a);
            }
            rows.push(Allocation {
                name: "__idle__".to_string(),
                cluster: cluster.clone(),
                window: w,
                start: w.start,
                end: w.end,
                cpu_cost: 12.5,
                ram_cost: 4.5,
                total_cost: 17.0,
                ..Allocation::default()
            });
            let mut wr = store.begin_allocations(&cluster, w, Resolution::Hour)?;
            wr.write(&rows)?;
            wr.commit(&Checkpoint {
                cluster: cluster.clone(),
                endpoint: Endpoint::Allocation,
                window: w,
                resolution: Resolution::Hour,
                synced_at: now,
                rows: rows.len() as u64,
                response_total_cost: rows.iter().map(|a| a.total_cost).sum(),
                null_fields: 0,
            })?;
        }
        let key = |ns: usize| SeriesKey {
            dimension: Dimension::Namespace,
            cluster: cluster.clone(),
            namespace: ns_name(ns),
            name: ns_name(ns),
        };
        let anomalies: Vec<Anomaly> = (0..20)
            .map(|i| Anomaly {
                key: key(1 + (i * 37) % (namespaces - 1)),
                detector: DetectorKind::IncreaseRule,
                start: end - (i as i64 + 2) * DAY,
                end: end - (i as i64 + 2) * DAY + 3 * HOUR,
                expected: 1.0,
                actual: 2.5,
                score: 1.5,
                severity: Severity::Warning,
            })
            .collect();
        store.put_anomalies(&cluster, Window { start, end }, &anomalies)?;
        store.put_forecasts(
            &cluster,
            &[7u32, 30]
                .iter()
                .map(|h| ForecastRow {
                    cluster: cluster.clone(),
                    dimension: Dimension::Cluster,
                    namespace: String::new(),
                    name: cluster.clone(),
                    made_at: end - DAY,
                    horizon_days: *h,
                    total: 1000.0 * f64::from(*h),
                    lower: 900.0 * f64::from(*h),
                    upper: 1100.0 * f64::from(*h),
                    kubecost: None,
                })
                .collect::<Vec<_>>(),
        )?;
        store.put_budgets(
            &cluster,
            &[Budget {
                id: format!("{cluster}-monthly"),
                name: "monthly".to_string(),
                budget_type: "allocations".to_string(),
                values: vec![("cluster".to_string(), vec![cluster.clone()])],
                interval: "monthly".to_string(),
                interval_day: 1,
                spend_limit: 50_000.0,
                current_spend: 31_000.0,
                window: Window {
                    start: Granularity::Month.bucket(now).start,
                    end: Granularity::Month.bucket(now).end,
                },
            }],
            now,
        )?;
        eprintln!(
            "{cluster}: raw pods written ({:.0} s)",
            t0.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "done: {written} summaries, {} pods x 24 h, {:.0} s",
        pods,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
