//! The aggregator's results: summaries replace what they cover, api rows hide realtime rows,
//! anomalies and forecasts round-trip.

use kb_analytics::anomaly::{Anomaly, DetectorKind, Severity};
use kb_analytics::summary::CostTotals;
use kb_analytics::{CostSummary, Dimension, Granularity, SeriesKey};
use kb_core::Window;
use kb_pipeline::insights::{ForecastRow, InsightReader, InsightStore, Source, SummaryQuery};

use crate::common::{CLUSTER, DAY0, HOUR, hour, store};

fn summary(h: i64, ns: &str, total: f64) -> CostSummary {
    CostSummary {
        granularity: Granularity::Hour,
        bucket: hour(h),
        dimension: Dimension::Namespace,
        cluster: CLUSTER.into(),
        namespace: ns.into(),
        name: ns.into(),
        totals: CostTotals {
            total_cost: total,
            cpu_cost: total / 2.0,
            memory_cost: total / 4.0,
            idle_cost: 0.5,
            usage_cost: 1.0,
            request_cost: 2.0,
            rows: 3,
            ..CostTotals::default()
        },
        efficiency_score: 0.5,
    }
}

fn query(range: Window) -> SummaryQuery {
    SummaryQuery {
        cluster: Some(CLUSTER.into()),
        dimension: Dimension::Namespace,
        granularity: Granularity::Hour,
        range,
        namespace: None,
        name: None,
    }
}

fn day_range() -> Window {
    Window::new(DAY0, DAY0 + 24 * HOUR).unwrap()
}

#[test]
fn summaries_round_trip_and_a_rewrite_replaces_them() {
    let (_d, s) = store();
    let rows = vec![
        summary(0, "a", 4.0),
        summary(0, "b", 8.0),
        summary(1, "a", 2.0),
    ];
    assert_eq!(
        s.put_summaries(
            CLUSTER,
            Granularity::Hour,
            day_range(),
            Source::Api,
            1,
            &rows
        )
        .unwrap(),
        3
    );
    let got = s.summaries(&query(day_range())).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].summary, rows[0]);
    assert_eq!(got[0].source, Source::Api);
    assert_eq!(got[0].rules_version, 1);

    // Aggregating again with one namespace gone leaves only the new rows: nothing doubles.
    let again = vec![summary(0, "a", 5.0)];
    s.put_summaries(
        CLUSTER,
        Granularity::Hour,
        day_range(),
        Source::Api,
        2,
        &again,
    )
    .unwrap();
    let got = s.summaries(&query(day_range())).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].summary.totals.total_cost, 5.0);
    assert_eq!(got[0].rules_version, 2);

    // Filters: by name, and a range that excludes the bucket.
    let mut q = query(day_range());
    q.name = Some("zzz".into());
    assert!(s.summaries(&q).unwrap().is_empty());
    assert!(s.summaries(&query(hour(5))).unwrap().is_empty());
}

#[test]
fn an_api_row_hides_the_realtime_row_of_the_same_bucket() {
    let (_d, s) = store();
    let r = day_range();
    s.put_summaries(
        CLUSTER,
        Granularity::Hour,
        r,
        Source::Realtime,
        1,
        &[summary(0, "a", 1.0), summary(1, "a", 1.5)],
    )
    .unwrap();
    s.put_summaries(
        CLUSTER,
        Granularity::Hour,
        r,
        Source::Api,
        1,
        &[summary(0, "a", 3.0)],
    )
    .unwrap();
    let got = s.summaries(&query(r)).unwrap();
    let seen: Vec<(i64, Source, f64)> = got
        .iter()
        .map(|g| {
            (
                g.summary.bucket.start,
                g.source,
                g.summary.totals.total_cost,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (DAY0, Source::Api, 3.0),
            (DAY0 + HOUR, Source::Realtime, 1.5)
        ]
    );
    // Replacing realtime rows leaves the api rows alone.
    s.put_summaries(CLUSTER, Granularity::Hour, r, Source::Realtime, 1, &[])
        .unwrap();
    assert_eq!(s.summaries(&query(r)).unwrap().len(), 1);
}

#[test]
fn a_summary_outside_its_range_or_cluster_is_refused() {
    let (_d, s) = store();
    let err = s
        .put_summaries(
            CLUSTER,
            Granularity::Hour,
            hour(3),
            Source::Api,
            1,
            &[summary(0, "a", 1.0)],
        )
        .unwrap_err();
    assert!(!err.retryable);
    let err = s
        .put_summaries(
            "other",
            Granularity::Hour,
            day_range(),
            Source::Api,
            1,
            &[summary(0, "a", 1.0)],
        )
        .unwrap_err();
    assert!(err.message.contains("does not belong"), "{}", err.message);
    assert!(s.summaries(&query(day_range())).unwrap().is_empty());
}

#[test]
fn anomalies_and_forecasts_round_trip_and_replace() {
    let (_d, s) = store();
    let a = Anomaly {
        key: SeriesKey {
            dimension: Dimension::Namespace,
            cluster: CLUSTER.into(),
            namespace: "a".into(),
            name: "a".into(),
        },
        detector: DetectorKind::Seasonal,
        start: DAY0 + 2 * HOUR,
        end: DAY0 + 4 * HOUR,
        expected: 2.0,
        actual: 6.0,
        score: 9.5,
        severity: Severity::Warning,
    };
    s.put_anomalies(CLUSTER, day_range(), std::slice::from_ref(&a))
        .unwrap();
    s.put_anomalies(CLUSTER, day_range(), std::slice::from_ref(&a))
        .unwrap();
    assert_eq!(
        s.anomalies(Some(CLUSTER), day_range()).unwrap(),
        vec![a.clone()]
    );
    assert_eq!(
        s.anomalies(None, hour(3)).unwrap().len(),
        1,
        "overlapping range"
    );
    assert!(s.anomalies(Some(CLUSTER), hour(5)).unwrap().is_empty());

    let f = ForecastRow {
        cluster: CLUSTER.into(),
        dimension: Dimension::Cluster,
        namespace: String::new(),
        name: CLUSTER.into(),
        made_at: DAY0,
        horizon_days: 7,
        total: 100.0,
        lower: 90.0,
        upper: 110.0,
        kubecost: Some(104.0),
    };
    s.put_forecasts(CLUSTER, std::slice::from_ref(&f)).unwrap();
    s.put_forecasts(CLUSTER, std::slice::from_ref(&f)).unwrap();
    assert_eq!(s.forecasts(CLUSTER).unwrap(), vec![f]);
}
