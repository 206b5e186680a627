//! Evaluation on simulator data: six weeks of hourly per-namespace cost from `kb-sim` (served
//! in process, parsed by `kb-kubecost`), through the rules and summaries, with injected spikes:
//! anomaly precision and recall, no anomaly on the normal pattern, forecast MAPE, and
//! optimisation savings.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::Arc;

use kb_analytics::anomaly::{Anomaly, IncreaseRule, SeasonalConfig, detect_all};
use kb_analytics::forecast::{ForecastConfig, holdout_mape};
use kb_analytics::optimize::{OptimizeConfig, advise};
use kb_analytics::recommend::{RecommendConfig, RecommendationKind, recommend};
use kb_analytics::series::{Series, SeriesKey, series_from_summaries};
use kb_analytics::summary::{Dimension, Granularity, SummaryBuilder};
use kb_analytics::{Rules, apply_rules};
use kb_core::model::{Allocation, IDLE, UNMOUNTED};
use kb_core::window::{DAY, HOUR, Window};
use kb_sim::{Clock, Fleet, SimConfig, Spike};

/// 2024-06-03T13:30:00Z (a Monday afternoon), the simulator's "now".
const NOW: i64 = 1_717_421_400;
const DAY0: i64 = NOW - NOW % DAY;
const WEEKS: i64 = 6;
const START: i64 = DAY0 - WEEKS * 7 * DAY;
/// Anomalies are scored from here on (three weeks of history before it).
const EVAL_START: i64 = START + 21 * DAY;

struct Sim {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(cfg: SimConfig) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let clock: Clock = Arc::new(|| NOW);
    let task = tokio::spawn(kb_sim::serve_with_clock(listener, cfg, clock, async move {
        rx.await.ok();
    }));
    Sim {
        base: format!("http://{addr}"),
        stop: Some(tx),
        task,
    }
}

impl Sim {
    async fn allocations(&self, w: Window, query: &str) -> Vec<Allocation> {
        let url = format!(
            "{}/model/allocation?window={},{}&{query}",
            self.base, w.start, w.end
        );
        let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
        kb_kubecost::parse_allocation_document(&body, w).unwrap().0
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
        self.task.await.unwrap().unwrap();
    }
}

/// Hourly namespace and cluster series of six weeks, through the rules and the streaming
/// summary builder.
async fn series_of(cfg: SimConfig) -> BTreeMap<SeriesKey, Series> {
    let sim = start(cfg).await;
    let rules = Rules::new(1);
    let mut b = SummaryBuilder::new(
        &[Dimension::Cluster, Dimension::Namespace],
        &[Granularity::Hour],
    );
    let mut sums = Vec::new();
    let mut t = START;
    while t < DAY0 {
        let w = Window {
            start: t,
            end: (t + 7 * DAY).min(DAY0),
        };
        let rows = sim
            .allocations(w, "step=1h&aggregate=cluster,namespace&splitIdle=true")
            .await;
        let out = apply_rules(&rows, &rules).unwrap();
        assert_eq!(out.skipped_non_finite, 0);
        for g in &out.groups {
            assert!((g.output_total - g.input_total).abs() <= 1e-9 * g.input_total.abs().max(1.0));
        }
        b.add(&out.rows);
        sums.extend(b.flush_before(w.end));
        t = w.end;
    }
    sums.extend(b.finish());
    sim.stop().await;
    let mut all = series_from_summaries(&sums, Granularity::Hour, Dimension::Namespace);
    all.extend(series_from_summaries(
        &sums,
        Granularity::Hour,
        Dimension::Cluster,
    ));
    all
}

fn base_cfg() -> SimConfig {
    SimConfig {
        clusters: 2,
        pods: 60,
        seed: 7,
        ..SimConfig::default()
    }
}

/// Transient spikes: `factor` from `start` for `hours` (a spike and its inverse).
fn spikes() -> Vec<(usize, f64, i64, i64)> {
    // (namespace index in cluster-1, factor, start hour after EVAL_START, hours)
    vec![
        (0, 2.0, 10, 4),
        (1, 3.0, 40, 2),
        (2, 1.8, 75, 6),
        (3, 2.5, 130, 3),
        (4, 4.0, 200, 1),
        (0, 1.7, 260, 8),
        (5, 2.2, 300, 5),
        (1, 2.0, 350, 12),
        (6, 3.0, 420, 2),
        (2, 2.5, 470, 4),
        (3, 1.4, 20, 6),
        (5, 1.5, 160, 3),
    ]
}

fn score(found: &[Anomaly], events: &[(String, String, i64, i64)]) -> (usize, usize, usize, usize) {
    let hit = |a: &Anomaly, e: &(String, String, i64, i64)| {
        a.key.cluster == e.0 && a.key.name == e.1 && a.start < e.3 + 2 * HOUR && a.end > e.2
    };
    let tp = found
        .iter()
        .filter(|a| events.iter().any(|e| hit(a, e)))
        .count();
    let detected = events
        .iter()
        .filter(|e| found.iter().any(|a| hit(a, e)))
        .count();
    (tp, found.len(), detected, events.len())
}

fn scored(a: &Anomaly) -> bool {
    a.end > EVAL_START
        && a.key.dimension == Dimension::Namespace
        && a.key.name != IDLE
        && a.key.name != UNMOUNTED
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_and_forecasts_on_simulator_data() {
    // Normal pattern.
    let normal = series_of(base_cfg()).await;
    let seasonal = SeasonalConfig::default();
    let rule = IncreaseRule::default();
    let normal_found = detect_all(normal.iter(), None, Some(&seasonal));
    eprintln!(
        "normal pattern: {} series, {} seasonal anomalies",
        normal.len(),
        normal_found.len()
    );
    for a in &normal_found {
        eprintln!("  unexpected: {a:?}");
    }
    assert!(normal_found.is_empty(), "anomalies on the normal pattern");
    let rule_normal = detect_all(normal.iter(), Some(&rule), None);
    eprintln!(
        "normal pattern: {} increase-rule (>50% vs same hour 24 h before) anomalies",
        rule_normal.len()
    );

    // Forecast error: fit five weeks, forecast the sixth.
    let fc = ForecastConfig::default();
    let mut per_series = Vec::new();
    for (k, s) in &normal {
        if let Some(h) = holdout_mape(s, 168, &fc) {
            if k.name != UNMOUNTED {
                per_series.push((k.clone(), h));
            }
        }
    }
    let mut mapes: Vec<f64> = per_series.iter().map(|(_, h)| h.mape).collect();
    mapes.sort_by(f64::total_cmp);
    let mean = mapes.iter().sum::<f64>() / mapes.len() as f64;
    let median = mapes[mapes.len() / 2];
    let coverage =
        per_series.iter().map(|(_, h)| h.coverage).sum::<f64>() / per_series.len() as f64;
    let total_err =
        per_series.iter().map(|(_, h)| h.total_error).sum::<f64>() / per_series.len() as f64;
    eprintln!(
        "forecast (7-day holdout, hourly, {} series): MAPE mean {:.2}% median {:.2}% max {:.2}%; \
         weekly total error mean {:.2}%; 95% interval coverage {:.1}%",
        per_series.len(),
        mean * 100.0,
        median * 100.0,
        mapes.last().copied().unwrap_or(0.0) * 100.0,
        total_err * 100.0,
        coverage * 100.0
    );
    for (k, h) in per_series
        .iter()
        .filter(|(k, _)| k.dimension == Dimension::Cluster)
    {
        eprintln!(
            "  cluster {}: MAPE {:.2}%, week total error {:.2}%",
            k.cluster,
            h.mape * 100.0,
            h.total_error * 100.0
        );
    }
    assert!(median < 0.15, "median forecast MAPE {median}");

    // Injected spikes.
    let fleet = Fleet::new(&base_cfg());
    let ns_names: Vec<String> = fleet.clusters()[0]
        .namespaces
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let mut cfg = base_cfg();
    let mut events = Vec::new();
    for (ni, factor, at, hours) in spikes() {
        let ns = &ns_names[ni % ns_names.len()];
        let s = EVAL_START + at * HOUR;
        let e = s + hours * HOUR;
        cfg.spikes.push(Spike {
            namespace: ns.clone(),
            factor,
            start: s,
        });
        cfg.spikes.push(Spike {
            namespace: ns.clone(),
            factor: 1.0 / factor,
            start: e,
        });
        for c in fleet.clusters() {
            if c.namespaces.iter().any(|n| &n.name == ns) {
                events.push((c.name.clone(), ns.clone(), s, e));
            }
        }
    }
    let spiked = series_of(cfg).await;
    let found: Vec<Anomaly> = detect_all(spiked.iter(), None, Some(&seasonal))
        .into_iter()
        .filter(scored)
        .collect();
    let (tp, n, detected, n_events) = score(&found, &events);
    let precision = tp as f64 / n.max(1) as f64;
    let recall = detected as f64 / n_events.max(1) as f64;
    eprintln!(
        "seasonal detector: {n_events} injected spikes, {n} anomalies, precision {precision:.3}, recall {recall:.3}"
    );
    for a in &found {
        eprintln!(
            "  {} {} {}..{} expected {:.4} actual {:.4} score {:.1} {}",
            a.key.cluster,
            a.key.name,
            kb_core::window::format_rfc3339(a.start),
            kb_core::window::format_rfc3339(a.end),
            a.expected,
            a.actual,
            a.score,
            a.severity.as_str()
        );
    }
    let rule_found: Vec<Anomaly> = detect_all(spiked.iter(), Some(&rule), None)
        .into_iter()
        .filter(scored)
        .collect();
    let (rtp, rn, rdet, _) = score(&rule_found, &events);
    eprintln!(
        "increase rule: {rn} anomalies, precision {:.3}, recall {:.3}",
        rtp as f64 / rn.max(1) as f64,
        rdet as f64 / n_events.max(1) as f64
    );
    assert!(n_events >= 10);
    assert!(precision >= 0.9, "precision {precision}");
    assert!(recall >= 0.9, "recall {recall}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimisation_on_simulator_data() {
    let sim = start(base_cfg()).await;
    let w = Window {
        start: DAY0 - 2 * DAY,
        end: DAY0,
    };
    let rows = sim.allocations(w, "step=1h&splitIdle=true").await;
    // Node assets, a day at a time as the extractor asks.
    let mut nodes = Vec::new();
    for day in [w.start, w.start + DAY] {
        let dw = Window {
            start: day,
            end: day + DAY,
        };
        let url = format!(
            "{}/model/assets?window={},{}&filterTypes=Node",
            sim.base, dw.start, dw.end
        );
        let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
        nodes.extend(kb_kubecost::parse_assets_document(&body, dw).unwrap());
    }
    sim.stop().await;
    let advice = advise(&rows, &OptimizeConfig::default());
    let share = advice.monthly_savings / advice.monthly_cost;
    eprintln!(
        "optimisation over 2 days of container rows ({} rows): monthly cost {:.2}, savings {:.2} ({:.1}%), \
         {} right-sizing, {} idle workloads, cluster idle shares {:?}",
        rows.len(),
        advice.monthly_cost,
        advice.monthly_savings,
        share * 100.0,
        advice.right_sizing.len(),
        advice.idle_workloads.len(),
        advice
            .cluster_idle
            .iter()
            .map(|c| format!("{} {:.1}%", c.cluster, c.idle_share * 100.0))
            .collect::<Vec<_>>()
    );
    assert!(!advice.right_sizing.is_empty());
    assert!(share > 0.0 && share < 1.0);

    // The bridge's whole list, per cluster, against what the cluster costs (idle included).
    let rec = recommend(&rows, &nodes, &RecommendConfig::default());
    for (cluster, monthly) in &rec.monthly_cost {
        let mine: Vec<_> = rec.items.iter().filter(|r| &r.cluster == cluster).collect();
        let total = rec.monthly_savings(cluster);
        let by_kind: Vec<String> = RecommendationKind::ALL
            .iter()
            .map(|k| {
                let of: Vec<_> = mine.iter().filter(|r| r.kind == *k).collect();
                let s: f64 = of.iter().map(|r| r.monthly_savings).sum::<f64>() + 0.0;
                format!("{} {} ({:.1}%)", of.len(), k.as_str(), s / monthly * 100.0)
            })
            .collect();
        eprintln!(
            "recommendations for {cluster}: monthly cost {monthly:.2}, savings {total:.2} ({:.1}%): {}",
            total / monthly * 100.0,
            by_kind.join(", ")
        );
        assert!(total > 0.0 && total < *monthly);
        assert!(
            mine.iter()
                .any(|r| r.kind == RecommendationKind::SpotCandidate)
        );
        for r in &mine {
            assert!(r.current_monthly_cost >= 0.0 && r.monthly_savings.is_finite());
            assert!(
                r.monthly_savings <= r.current_monthly_cost + 1e-9,
                "a saving above what the target costs: {r:?}"
            );
        }
    }
}
