//! The aggregator's results: summaries replace what they cover, api rows hide realtime rows,
//! anomalies and forecasts round-trip, the bridge's recommendations are replaced per cluster.

use kb_analytics::anomaly::{Anomaly, DetectorKind, Severity};
use kb_analytics::recommend::{Recommendation, RecommendationKind};
use kb_analytics::summary::CostTotals;
use kb_analytics::{CostSummary, Dimension, Granularity, SeriesKey};
use kb_core::Window;
use kb_pipeline::insights::{
    ForecastRow, InsightReader, InsightStore, RecommendationSet, Source, SummaryQuery,
};

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

fn rec(kind: RecommendationKind, controller: &str, saving: f64) -> Recommendation {
    Recommendation {
        kind,
        cluster: CLUSTER.into(),
        namespace: "shop".into(),
        controller_kind: "deployment".into(),
        controller: controller.into(),
        target: "app".into(),
        description: format!("{controller}: do less"),
        current_monthly_cost: 100.0,
        monthly_savings: saving,
    }
}

fn rec_set(made_at: i64, items: Vec<Recommendation>) -> RecommendationSet {
    RecommendationSet {
        cluster: CLUSTER.into(),
        made_at,
        observed: day_range(),
        monthly_cost: 1000.0,
        items,
    }
}

#[test]
fn recommendations_are_replaced_per_cluster_and_storing_twice_keeps_one_copy() {
    let (_d, s) = store();
    assert_eq!(
        s.recommendations(CLUSTER).unwrap(),
        None,
        "none before a run"
    );
    let first = rec_set(
        DAY0,
        vec![
            rec(RecommendationKind::SpotCandidate, "web", 40.0),
            rec(RecommendationKind::RequestSizing, "api", 12.5),
            rec(RecommendationKind::NodePoolSizing, "", 90.0),
        ],
    );
    s.put_recommendations(&first).unwrap();
    s.put_recommendations(&first).unwrap();
    let got = s.recommendations(CLUSTER).unwrap().unwrap();
    assert_eq!(
        got.items.len(),
        3,
        "idempotent: the same run stored twice is one list"
    );
    let savings: Vec<f64> = got.items.iter().map(|r| r.monthly_savings).collect();
    assert_eq!(savings, [90.0, 40.0, 12.5], "largest saving first");
    assert_eq!(got.made_at, DAY0);
    assert_eq!(got.observed, day_range());
    assert_eq!(got.monthly_cost, 1000.0);
    assert_eq!(got.items[1], first.items[0]);
    assert_eq!(s.stats().unwrap().rows("recommendations"), 3);

    // A later run replaces the whole list, even with fewer items.
    let second = rec_set(
        DAY0 + HOUR,
        vec![rec(RecommendationKind::AbandonedWorkload, "ghost", 7.0)],
    );
    s.put_recommendations(&second).unwrap();
    assert_eq!(s.recommendations(CLUSTER).unwrap(), Some(second));
    assert_eq!(s.stats().unwrap().rows("recommendations"), 1);
    // Another cluster's list is its own.
    let mut other = rec_set(DAY0, vec![]);
    other.cluster = "other".into();
    s.put_recommendations(&other).unwrap();
    assert_eq!(s.recommendations(CLUSTER).unwrap().unwrap().items.len(), 1);
    assert_eq!(s.recommendations("other").unwrap().unwrap().items, vec![]);
    assert_eq!(s.recommendations("nowhere").unwrap(), None);
}

#[test]
fn a_recommendation_of_another_cluster_is_refused_and_changes_nothing() {
    let (_d, s) = store();
    let good = rec_set(
        DAY0,
        vec![rec(RecommendationKind::SpotCandidate, "web", 40.0)],
    );
    s.put_recommendations(&good).unwrap();
    let mut stray = rec(RecommendationKind::SpotCandidate, "web", 1.0);
    stray.cluster = "other".into();
    let err = s
        .put_recommendations(&rec_set(DAY0 + 1, vec![stray]))
        .unwrap_err();
    assert!(err.to_string().contains("other"), "{err}");
    assert_eq!(s.recommendations(CLUSTER).unwrap(), Some(good));
}
