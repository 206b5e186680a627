//! Trends, anomalies, forecasts, budgets and optimisation on hand-made data.

use crate::{T0, row};
use kb_analytics::anomaly::{
    DetectorKind, IncreaseRule, SeasonalConfig, Severity, detect_increase, detect_seasonal,
};
use kb_analytics::budget::{BudgetPeriod, budget_status};
use kb_analytics::forecast::{ForecastConfig, forecast_days, holdout_mape, mape};
use kb_analytics::optimize::{OptimizeConfig, advise, to_savings};
use kb_analytics::series::{Series, SeriesKey, series_from_summaries};
use kb_analytics::summary::{Dimension, Granularity, SummaryBuilder, summarize};
use kb_analytics::trends::{month_to_date, moving_average, period_over_period};
use kb_analytics::{Rules, apply_rules};
use kb_core::model::SavingsKind;
use kb_core::window::{DAY, HOUR};

fn key() -> SeriesKey {
    SeriesKey {
        dimension: Dimension::Namespace,
        cluster: "c1".into(),
        namespace: "web".into(),
        name: "web".into(),
    }
}

/// Hourly series with a daily bump and a weekend dip, deterministic noise.
fn seasonal(weeks: usize) -> Series {
    let values = (0..weeks * 168)
        .map(|i| {
            let ts = T0 + i as i64 * HOUR;
            let hod = (ts % DAY) / HOUR;
            let dow = (ts / DAY + 4) % 7;
            let daily = if (8..20).contains(&hod) { 1.5 } else { 1.0 };
            let weekly = if dow == 0 || dow == 6 { 0.6 } else { 1.0 };
            let noise = 1.0 + 0.05 * (((i * 7919) % 13) as f64 / 13.0 - 0.5);
            10.0 * daily * weekly * noise
        })
        .collect();
    Series {
        start: T0,
        step: HOUR,
        values,
    }
}

#[test]
fn seasonal_detector_ignores_the_pattern_and_finds_a_spike() {
    let mut s = seasonal(6);
    let cfg = SeasonalConfig::default();
    assert!(detect_seasonal(&key(), &s, &cfg).is_empty());
    // Three hours at 3x on a Tuesday of week 5, then a drop to 10% for two hours.
    let at = 4 * 168 + 24 * 2 + 10;
    for v in &mut s.values[at..at + 3] {
        *v *= 3.0;
    }
    for v in &mut s.values[at + 30..at + 32] {
        *v *= 0.1;
    }
    let found = detect_seasonal(&key(), &s, &cfg);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].start, s.ts(at));
    assert_eq!(found[0].end, s.ts(at + 3));
    assert_eq!(found[0].severity, Severity::Critical);
    assert_eq!(found[0].detector, DetectorKind::Seasonal);
    assert!(found[0].actual > 2.5 * found[0].expected);
    assert!(found[1].score < 0.0);
    let no_drops = SeasonalConfig {
        drops: false,
        ..cfg
    };
    assert_eq!(detect_seasonal(&key(), &s, &no_drops).len(), 1);
}

#[test]
fn increase_rule_flags_more_than_half_in_a_day() {
    let mut values = vec![10.0; 72];
    values[50] = 16.0; // +60% against the same hour yesterday
    values[51] = 14.0; // +40%: not flagged
    let s = Series {
        start: T0,
        step: HOUR,
        values,
    };
    let found = detect_increase(&key(), &s, &IncreaseRule::default());
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].start, found[0].end), (s.ts(50), s.ts(51)));
    assert_eq!(found[0].severity, Severity::Info);
    let daily = IncreaseRule {
        smoothing: 24,
        ..IncreaseRule::default()
    };
    assert!(detect_increase(&key(), &s, &daily).is_empty());
}

#[test]
fn forecast_follows_the_seasonal_pattern() {
    let s = seasonal(6);
    let h = holdout_mape(&s, 168, &ForecastConfig::default()).unwrap();
    assert!(h.mape < 0.05, "{h:?}");
    assert!(h.coverage > 0.8, "{h:?}");
    let f = forecast_days(&s, 30, &ForecastConfig::default()).unwrap();
    assert_eq!(f.points.len(), 720);
    assert_eq!(f.season, 168);
    assert!(f.total_lower <= f.total && f.total <= f.total_upper);
    assert_eq!(f.points[0].ts, s.end());
    // Short history: daily season, still works.
    let short = Series {
        start: T0,
        step: HOUR,
        values: s.values[..72].to_vec(),
    };
    assert_eq!(
        forecast_days(&short, 7, &ForecastConfig::default())
            .unwrap()
            .season,
        24
    );
    assert!(forecast_days(&Series::new(T0, HOUR), 7, &ForecastConfig::default()).is_err());
    assert_eq!(mape(&[100.0, 0.0, 50.0], &[110.0, 5.0, 45.0]), Some(0.1));
    assert_eq!(mape(&[0.0], &[1.0]), None);
}

#[test]
fn trends_month_to_date_and_budget() {
    // 2024-06-10T00:00Z: 9 days into June at $2/h.
    let s = Series {
        start: 1_717_200_000,
        step: HOUR,
        values: vec![2.0; 9 * 24],
    };
    let now = s.end();
    let mtd = month_to_date(&s, now, 168);
    assert_eq!(mtd.spend, 432.0);
    assert_eq!(mtd.run_rate_per_hour, 2.0);
    assert_eq!(mtd.remaining_hours, 21.0 * 24.0);
    assert_eq!(mtd.projected_month_end, 2.0 * 30.0 * 24.0);
    let pop = period_over_period(&s, now, DAY);
    assert_eq!(pop.relative_change, Some(0.0));
    let ma = moving_average(&s, 24);
    assert!(ma.values.iter().all(|v| *v == 2.0));

    let period = BudgetPeriod::Monthly { start_day: 1 }.window(now);
    assert_eq!(period, mtd.month);
    let b = budget_status(1000.0, mtd.spend, mtd.run_rate_per_hour, period, now).unwrap();
    assert_eq!(b.utilisation, 0.432);
    assert_eq!(b.projected_spend, 1440.0);
    assert_eq!(b.projected_overrun, 440.0);
    // 568 left at $2/h: 284 hours after now.
    assert_eq!(b.exceeds_at, Some(now + 284 * HOUR));
    assert!(budget_status(f64::NAN, 0.0, 0.0, period, now).is_err());
    // Weekly from Monday (1): 2024-06-10 is a Monday.
    let w = BudgetPeriod::Weekly { start_weekday: 1 }.window(now + 5 * HOUR);
    assert_eq!(w.start, now);
    let m15 = BudgetPeriod::Monthly { start_day: 15 }.window(now);
    assert_eq!(
        kb_core::window::format_rfc3339(m15.start),
        "2024-05-15T00:00:00Z"
    );
    assert_eq!(
        kb_core::window::format_rfc3339(m15.end),
        "2024-06-15T00:00:00Z"
    );
}

#[test]
fn streaming_summaries_equal_one_shot_and_feed_series() {
    let mut input = Vec::new();
    for h in 0..50 {
        for (ns, c) in [("web", 1.0), ("api", 2.0)] {
            let mut a = row("c1", ns, "p", c, 0.5);
            a.window = crate::hour(T0 + h * HOUR);
            input.push(a);
        }
    }
    let out = apply_rules(&input, &Rules::new(1)).unwrap();
    let one = summarize(&out.rows, &Dimension::ALL, &Granularity::ALL);
    let mut b = SummaryBuilder::new(&Dimension::ALL, &Granularity::ALL);
    let mut streamed = Vec::new();
    for chunk in out.rows.chunks(2) {
        b.add(chunk);
        streamed.extend(b.flush_before(chunk[0].window.end));
    }
    streamed.extend(b.finish());
    let key = |s: &kb_analytics::CostSummary| {
        (s.granularity, s.bucket.start, s.dimension, s.name.clone())
    };
    streamed.sort_by_key(key);
    let mut one_sorted = one.clone();
    one_sorted.sort_by_key(key);
    assert_eq!(streamed, one_sorted);
    let series = series_from_summaries(&one, Granularity::Hour, Dimension::Namespace);
    assert_eq!(series.len(), 2);
    let web = series.values().next().unwrap();
    assert_eq!(web.values.len(), 50);
    let days = series_from_summaries(&one, Granularity::Day, Dimension::Cluster);
    assert_eq!(days.values().next().unwrap().values, vec![96.0, 96.0, 8.0]);
}

#[test]
fn optimisation_right_sizes_and_finds_idle_workloads() {
    let mut input = Vec::new();
    for h in 0..48 {
        // Requests 2 cores, uses 0.5 (p95 0.5 -> 0.6 recommended): price $1/core-hour.
        let mut a = row("c1", "web", "big", 2.0, 0.0);
        a.cpu_core_hours = 2.0;
        a.cpu_core_request_average = 2.0;
        a.cpu_core_usage_average = 0.5;
        a.ram_byte_hours = 0.0;
        a.window = crate::hour(T0 + h * HOUR);
        input.push(a);
        // Does nothing.
        let mut z = row("c1", "old", "zombie", 0.1, 0.0);
        z.cpu_core_usage_average = 0.001;
        z.cpu_core_request_average = 0.1;
        z.cpu_core_hours = 0.1;
        z.ram_byte_hours = 0.0;
        z.window = crate::hour(T0 + h * HOUR);
        input.push(z);
    }
    input.push(crate::idle("c1", "", 10.0, 0.0, 0.0));
    let advice = advise(&input, &OptimizeConfig::default());
    let big = advice
        .right_sizing
        .iter()
        .find(|r| r.controller == "big")
        .unwrap();
    assert!((big.cpu.recommended_request - 0.6).abs() < 1e-12);
    assert!((big.cpu.current_request - 2.0).abs() < 1e-12);
    // (2 - 0.6) cores × $1 × 730 h.
    assert!((big.monthly_savings - 1.4 * 730.0).abs() < 1e-6, "{big:?}");
    assert_eq!(advice.idle_workloads.len(), 1);
    assert_eq!(advice.idle_workloads[0].controller, "zombie");
    assert!((advice.idle_workloads[0].monthly_savings - 0.1 * 730.0).abs() < 1e-6);
    assert_eq!(advice.cluster_idle[0].idle_cost, 10.0);
    let savings = to_savings(&advice);
    assert!(
        savings
            .iter()
            .any(|s| s.kind == SavingsKind::AbandonedWorkload)
    );
    assert!(
        savings
            .iter()
            .any(|s| s.kind == SavingsKind::RequestSizing
                && s.detail.starts_with("cpu 2000m -> 600m"))
    );
}
