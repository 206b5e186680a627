//! The conformance checks of the insight ports ([`InsightStore`], [`InsightReader`]) and the
//! cross-backend check that two stores holding the same data answer the API's reads alike.
//!
//! - [`insights_roundtrip`]: summaries read back per dimension, granularity and filter; a
//!   rewrite (also an empty one) replaces what its range held; an `api` summary hides a
//!   `realtime` one of the same key; anomalies and forecasts are replaced and read back; the
//!   bridge's recommendations read back largest saving first, a new run replaces the
//!   cluster's, a run with no items still reads back, and no run reads as `None`.
//! - [`fill`]: writes the same allocation windows, summaries, anomalies, forecasts, the
//!   bridge's recommendations, budgets, savings and predictions into a store, so
//!   [`same_answers`] can compare two backends.
//! - [`same_answers`]: totals per window for every grouping and granularity (1e-9 relative),
//!   clusters with their freshness, summaries, anomalies, forecasts, recommendations and the
//!   small lists.

use kb_analytics::anomaly::{Anomaly, DetectorKind, Severity};
use kb_analytics::recommend::{Recommendation, RecommendationKind};
use kb_analytics::summary::CostTotals;
use kb_analytics::{CostSummary, Dimension, Granularity as G, SeriesKey};
use kb_core::{Resolution, Window};
use kb_pipeline::insights::{
    ForecastRow, InsightReader, InsightStore, RecommendationSet, Source, StoredSummary,
    SummaryQuery,
};
use kb_pipeline::ports::{CostQuery, CostReader, CostStore, Granularity, GroupBy};

use crate::{
    Check, DAY, HOUR, budget, close, compare_costs, ensure, hour_at, prediction, put_window,
    saving, store_err, window_rows,
};

/// 2023-12-04T00:00:00Z: the insight checks' base day (a Monday inside one month).
pub const INSIGHT_DAY0: i64 = 1_701_648_000;

/// A summary with distinct amounts derived from `seed`.
pub fn summary(
    cluster: &str,
    g: G,
    bucket: Window,
    dimension: Dimension,
    namespace: &str,
    name: &str,
    seed: f64,
) -> CostSummary {
    let totals = CostTotals {
        total_cost: seed * 10.0,
        cpu_cost: seed * 4.0,
        memory_cost: seed * 3.0,
        gpu_cost: seed * 0.5,
        network_cost: seed * 0.25,
        storage_cost: seed * 1.25,
        load_balancer_cost: seed * 0.125,
        external_cost: seed * 0.0625,
        shared_cost: seed * 0.5,
        idle_cost: seed * 0.3,
        usage_cost: seed * 2.0,
        request_cost: seed * 7.0,
        rows: (seed as u64) + 1,
    };
    CostSummary {
        granularity: g,
        bucket,
        dimension,
        cluster: cluster.into(),
        namespace: namespace.into(),
        name: name.into(),
        efficiency_score: totals.efficiency_score(),
        totals,
    }
}

/// The hourly namespace summaries of one day: hour × {alpha, beta}.
pub fn day_of_summaries(cluster: &str, day: i64, scale: f64) -> Vec<CostSummary> {
    let mut out = Vec::new();
    for h in 0..24 {
        for (i, ns) in ["alpha", "beta"].iter().enumerate() {
            out.push(summary(
                cluster,
                G::Hour,
                hour_at(day, h),
                Dimension::Namespace,
                ns,
                ns,
                scale * (1.0 + h as f64 + 0.5 * i as f64),
            ));
        }
    }
    out
}

/// An anomaly of a namespace's hourly series.
pub fn anomaly(cluster: &str, ns: &str, start: i64, score: f64) -> Anomaly {
    Anomaly {
        key: SeriesKey {
            dimension: Dimension::Namespace,
            cluster: cluster.into(),
            namespace: ns.into(),
            name: ns.into(),
        },
        detector: DetectorKind::IncreaseRule,
        start,
        end: start + HOUR,
        expected: 1.5,
        actual: 1.5 * (1.0 + score),
        score,
        severity: if score > 1.0 {
            Severity::Critical
        } else {
            Severity::Warning
        },
    }
}

/// A forecast of a namespace's daily series.
pub fn forecast(cluster: &str, ns: &str, horizon_days: u32, total: f64) -> ForecastRow {
    ForecastRow {
        cluster: cluster.into(),
        dimension: Dimension::Namespace,
        namespace: ns.into(),
        name: ns.into(),
        made_at: INSIGHT_DAY0 + 7 * DAY,
        horizon_days,
        total,
        lower: total * 0.8,
        upper: total * 1.2,
        kubecost: (horizon_days == 7).then_some(total * 1.01),
    }
}

/// One of the bridge's recommendations for a controller of namespace `ns`.
pub fn recommendation(
    cluster: &str,
    kind: RecommendationKind,
    ns: &str,
    monthly_savings: f64,
) -> Recommendation {
    Recommendation {
        kind,
        cluster: cluster.into(),
        namespace: ns.into(),
        controller_kind: "deployment".into(),
        controller: format!("{ns}-api"),
        target: if kind == RecommendationKind::RequestSizing {
            "server".into()
        } else {
            String::new()
        },
        description: format!(
            "{} of {ns}: \"saves\" {monthly_savings:.2}/month",
            kind.as_str()
        ),
        current_monthly_cost: monthly_savings * 2.5,
        monthly_savings,
    }
}

/// A run's recommendations, made at the end of `observed`.
pub fn recommendation_set(
    cluster: &str,
    observed: Window,
    monthly_cost: f64,
    items: Vec<Recommendation>,
) -> RecommendationSet {
    RecommendationSet {
        cluster: cluster.into(),
        made_at: observed.end + 120,
        observed,
        monthly_cost,
        items,
    }
}

/// The recommendations part of [`insights_roundtrip`].
fn recommendations_roundtrip<S: InsightStore + InsightReader>(store: &S) -> Check {
    let (c1, c2) = ("ins-rec-1", "ins-rec-2");
    let got = store
        .recommendations(c1)
        .map_err(store_err("read recommendations"))?;
    ensure(got.is_none(), || {
        format!("no run yet must read as None: {got:?}")
    })?;
    let week = Window::new(INSIGHT_DAY0, INSIGHT_DAY0 + 7 * DAY).unwrap();
    // Put out of order: read back largest saving first (ties in the order put).
    let first = recommendation_set(
        c1,
        week,
        1234.5,
        vec![
            recommendation(c1, RecommendationKind::RequestSizing, "alpha", 12.25),
            recommendation(c1, RecommendationKind::NodePoolSizing, "", 410.0),
            recommendation(c1, RecommendationKind::SpotCandidate, "beta", 12.25),
            recommendation(c1, RecommendationKind::AbandonedWorkload, "old", 55.5),
            // A negative saving: advice that asks for more.
            recommendation(c1, RecommendationKind::RequestSizing, "gamma", -3.0),
        ],
    );
    let mut sorted = first.clone();
    sorted
        .items
        .sort_by(|a, b| b.monthly_savings.total_cmp(&a.monthly_savings));
    // Stored twice: still one copy.
    for _ in 0..2 {
        store
            .put_recommendations(&first)
            .map_err(store_err("put recommendations"))?;
    }
    let got = store
        .recommendations(c1)
        .map_err(store_err("read recommendations"))?;
    ensure(got.as_ref() == Some(&sorted), || {
        format!(
            "recommendations:
 got {got:?}
want {sorted:?}"
        )
    })?;
    // Another cluster's run is its own.
    let other = recommendation_set(
        c2,
        week,
        99.0,
        vec![recommendation(
            c2,
            RecommendationKind::SpotCandidate,
            "web",
            7.0,
        )],
    );
    store
        .put_recommendations(&other)
        .map_err(store_err("put recommendations"))?;
    // A newer run replaces the whole list, window and monthly cost included.
    let later = Window::new(week.start + DAY, week.end + DAY).unwrap();
    let second = recommendation_set(
        c1,
        later,
        1100.0,
        vec![recommendation(
            c1,
            RecommendationKind::AbandonedWorkload,
            "old",
            60.0,
        )],
    );
    store
        .put_recommendations(&second)
        .map_err(store_err("replace recommendations"))?;
    let got = store
        .recommendations(c1)
        .map_err(store_err("read recommendations"))?;
    ensure(got.as_ref() == Some(&second), || {
        format!(
            "replaced recommendations:
 got {got:?}
want {second:?}"
        )
    })?;
    let got = store
        .recommendations(c2)
        .map_err(store_err("read recommendations"))?;
    ensure(got.as_ref() == Some(&other), || {
        format!(
            "the other cluster's recommendations:
 got {got:?}
want {other:?}"
        )
    })?;
    // A run with nothing to recommend is still a run: its time, window and cost read back.
    let empty = recommendation_set(c1, later, 1000.0, Vec::new());
    store
        .put_recommendations(&empty)
        .map_err(store_err("put an empty run"))?;
    let got = store
        .recommendations(c1)
        .map_err(store_err("read recommendations"))?;
    ensure(got.as_ref() == Some(&empty), || {
        format!(
            "empty run:
 got {got:?}
want {empty:?}"
        )
    })?;
    // An item of another cluster is refused and changes nothing.
    let mixed = recommendation_set(
        c1,
        later,
        5.0,
        vec![recommendation(
            c2,
            RecommendationKind::SpotCandidate,
            "web",
            1.0,
        )],
    );
    ensure(store.put_recommendations(&mixed).is_err(), || {
        "an item of another cluster must be refused".into()
    })?;
    let got = store
        .recommendations(c1)
        .map_err(store_err("read recommendations"))?;
    ensure(got.as_ref() == Some(&empty), || {
        format!(
            "after a refused run:
 got {got:?}
want {empty:?}"
        )
    })?;
    let got = store
        .recommendations("ins-nope")
        .map_err(store_err("read recommendations"))?;
    ensure(got.is_none(), || {
        format!("an unknown cluster's recommendations: {got:?}")
    })
}

fn namespace_query(cluster: &str, g: G, range: Window) -> SummaryQuery {
    SummaryQuery {
        cluster: Some(cluster.into()),
        dimension: Dimension::Namespace,
        granularity: g,
        range,
        namespace: None,
        name: None,
    }
}

/// Compares summaries: same keys, sources and rules versions in the same order, amounts
/// within tolerance.
pub fn compare_summaries(what: &str, got: &[StoredSummary], want: &[StoredSummary]) -> Check {
    let key = |s: &StoredSummary| {
        (
            s.summary.bucket,
            s.summary.cluster.clone(),
            s.summary.dimension,
            s.summary.namespace.clone(),
            s.summary.name.clone(),
            s.source,
            s.rules_version,
            s.summary.totals.rows,
        )
    };
    ensure(got.len() == want.len(), || {
        format!(
            "{what}: {} summaries, expected {}\n got: {:?}\nwant: {:?}",
            got.len(),
            want.len(),
            got.iter().map(key).collect::<Vec<_>>(),
            want.iter().map(key).collect::<Vec<_>>()
        )
    })?;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        ensure(key(g) == key(w), || {
            format!("{what}: summary {i} is {:?}, expected {:?}", key(g), key(w))
        })?;
        let amounts = |s: &StoredSummary| {
            let t = &s.summary.totals;
            [
                t.total_cost,
                t.cpu_cost,
                t.memory_cost,
                t.gpu_cost,
                t.network_cost,
                t.storage_cost,
                t.load_balancer_cost,
                t.external_cost,
                t.shared_cost,
                t.idle_cost,
                t.usage_cost,
                t.request_cost,
                s.summary.efficiency_score,
            ]
        };
        for (j, (a, b)) in amounts(g).into_iter().zip(amounts(w)).enumerate() {
            ensure(close(a, b), || {
                format!(
                    "{what}: summary {i} {:?} amount {j} is {a}, expected {b}",
                    key(g)
                )
            })?;
        }
    }
    Ok(())
}

fn stored(rows: &[CostSummary], source: Source, rules_version: u32) -> Vec<StoredSummary> {
    rows.iter()
        .map(|s| StoredSummary {
            summary: s.clone(),
            source,
            rules_version,
        })
        .collect()
}

/// The insight ports' contract on one store (cluster names `ins-*`, days from
/// [`INSIGHT_DAY0`]).
pub fn insights_roundtrip<S: InsightStore + InsightReader>(store: &S) -> Check {
    let c = "ins-a";
    let day = Window::new(INSIGHT_DAY0, INSIGHT_DAY0 + DAY).unwrap();
    let hourly = day_of_summaries(c, day.start, 1.0);
    let n = store
        .put_summaries(c, G::Hour, day, Source::Api, 3, &hourly)
        .map_err(store_err("put summaries"))?;
    ensure(n == hourly.len() as u64, || {
        format!("put_summaries returned {n}, expected {}", hourly.len())
    })?;
    let got = store
        .summaries(&namespace_query(c, G::Hour, day))
        .map_err(store_err("read summaries"))?;
    compare_summaries("hourly summaries", &got, &stored(&hourly, Source::Api, 3))?;

    // Filters: a namespace, a name, a sub-range, another dimension, another cluster.
    let mut q = namespace_query(c, G::Hour, hour_at(day.start, 5));
    q.namespace = Some("beta".into());
    let got = store.summaries(&q).map_err(store_err("read summaries"))?;
    let want: Vec<CostSummary> = hourly
        .iter()
        .filter(|s| s.namespace == "beta" && s.bucket == hour_at(day.start, 5))
        .cloned()
        .collect();
    compare_summaries("namespace filter", &got, &stored(&want, Source::Api, 3))?;
    let mut q = namespace_query(c, G::Hour, day);
    q.name = Some("alpha".into());
    let got = store.summaries(&q).map_err(store_err("read summaries"))?;
    ensure(got.len() == 24, || {
        format!("name filter: {} rows, expected 24", got.len())
    })?;
    let mut q = namespace_query(c, G::Hour, day);
    q.dimension = Dimension::Team;
    ensure(
        store
            .summaries(&q)
            .map_err(store_err("read summaries"))?
            .is_empty(),
        || "another dimension returned rows".into(),
    )?;
    let mut q = namespace_query("ins-nope", G::Hour, day);
    q.cluster = Some("ins-nope".into());
    ensure(
        store
            .summaries(&q)
            .map_err(store_err("read summaries"))?
            .is_empty(),
        || "another cluster returned rows".into(),
    )?;

    // Realtime rows: hidden where an api row of the same key exists, shown elsewhere.
    let next = Window::new(day.end, day.end + HOUR).unwrap();
    let rt_hour5 = summary(
        c,
        G::Hour,
        hour_at(day.start, 5),
        Dimension::Namespace,
        "alpha",
        "alpha",
        99.0,
    );
    let rt_next = summary(
        c,
        G::Hour,
        next,
        Dimension::Namespace,
        "alpha",
        "alpha",
        42.0,
    );
    store
        .put_summaries(
            c,
            G::Hour,
            hour_at(day.start, 5),
            Source::Realtime,
            3,
            std::slice::from_ref(&rt_hour5),
        )
        .map_err(store_err("put realtime"))?;
    store
        .put_summaries(
            c,
            G::Hour,
            next,
            Source::Realtime,
            3,
            std::slice::from_ref(&rt_next),
        )
        .map_err(store_err("put realtime"))?;
    let both = Window::new(day.start, next.end).unwrap();
    let got = store
        .summaries(&namespace_query(c, G::Hour, both))
        .map_err(store_err("read summaries"))?;
    let mut want = stored(&hourly, Source::Api, 3);
    want.extend(stored(&[rt_next], Source::Realtime, 3));
    compare_summaries("realtime hidden by api", &got, &want)?;

    // A rewrite replaces: fewer rows, other amounts, another rules version.
    let fewer: Vec<CostSummary> = day_of_summaries(c, day.start, 2.0)
        .into_iter()
        .filter(|s| s.namespace == "alpha")
        .collect();
    store
        .put_summaries(c, G::Hour, day, Source::Api, 4, &fewer)
        .map_err(store_err("rewrite summaries"))?;
    let got = store
        .summaries(&namespace_query(c, G::Hour, day))
        .map_err(store_err("read summaries"))?;
    // Hour 5's beta has no api row any more, and no realtime one either: only alpha shows.
    compare_summaries("rewrite", &got, &stored(&fewer, Source::Api, 4))?;
    // Daily and monthly summaries are kept apart from hourly ones.
    let daily = vec![summary(
        c,
        G::Day,
        day,
        Dimension::Namespace,
        "alpha",
        "alpha",
        5.0,
    )];
    store
        .put_summaries(c, G::Day, day, Source::Api, 4, &daily)
        .map_err(store_err("put daily"))?;
    let month = G::Month.bucket(day.start);
    let monthly = vec![summary(
        c,
        G::Month,
        month,
        Dimension::Namespace,
        "alpha",
        "alpha",
        50.0,
    )];
    store
        .put_summaries(c, G::Month, month, Source::Api, 4, &monthly)
        .map_err(store_err("put monthly"))?;
    let got = store
        .summaries(&namespace_query(c, G::Day, day))
        .map_err(store_err("read daily"))?;
    compare_summaries("daily", &got, &stored(&daily, Source::Api, 4))?;
    let got = store
        .summaries(&namespace_query(c, G::Month, month))
        .map_err(store_err("read monthly"))?;
    compare_summaries("monthly", &got, &stored(&monthly, Source::Api, 4))?;
    let got = store
        .summaries(&namespace_query(c, G::Hour, day))
        .map_err(store_err("read summaries"))?;
    ensure(got.len() == 24, || {
        format!("hourly rows after daily writes: {}", got.len())
    })?;
    // An empty rewrite empties the range, and only the range.
    let half = Window::new(day.start, day.start + 12 * HOUR).unwrap();
    store
        .put_summaries(c, G::Hour, half, Source::Api, 4, &[])
        .map_err(store_err("empty rewrite"))?;
    let got = store
        .summaries(&namespace_query(c, G::Hour, day))
        .map_err(store_err("read summaries"))?;
    // Hour 5's realtime row shows again: no api row hides it any more.
    let mut want = stored(&[rt_hour5], Source::Realtime, 3);
    let rest: Vec<CostSummary> = fewer
        .iter()
        .filter(|s| s.bucket.start >= half.end)
        .cloned()
        .collect();
    want.extend(stored(&rest, Source::Api, 4));
    compare_summaries("empty rewrite", &got, &want)?;
    // Rows outside the range are refused.
    ensure(
        store
            .put_summaries(c, G::Hour, half, Source::Api, 4, &fewer)
            .is_err(),
        || "summaries outside the range were accepted".into(),
    )?;

    // Anomalies: replaced per range, read by overlap, newest first.
    let c2 = "ins-b";
    let a: Vec<Anomaly> = (0..6)
        .map(|h| anomaly(c2, "alpha", day.start + h * 4 * HOUR, 0.5 + h as f64))
        .collect();
    store
        .put_anomalies(c2, day, &a)
        .map_err(store_err("put anomalies"))?;
    let got = store
        .anomalies(Some(c2), day)
        .map_err(store_err("read anomalies"))?;
    let mut want = a.clone();
    want.reverse();
    ensure(got == want, || {
        format!("anomalies:\n got {got:?}\nwant {want:?}")
    })?;
    let first_half = Window::new(day.start, day.start + 12 * HOUR).unwrap();
    let replacement = vec![anomaly(c2, "beta", day.start + HOUR, 3.0)];
    store
        .put_anomalies(c2, first_half, &replacement)
        .map_err(store_err("replace anomalies"))?;
    let got = store
        .anomalies(Some(c2), day)
        .map_err(store_err("read anomalies"))?;
    let mut want: Vec<Anomaly> = a
        .iter()
        .filter(|x| x.start >= first_half.end)
        .cloned()
        .collect();
    want.extend(replacement.clone());
    want.sort_by_key(|x| std::cmp::Reverse(x.start));
    ensure(got == want, || {
        format!("replaced anomalies:\n got {got:?}\nwant {want:?}")
    })?;
    // Overlap: an anomaly ending inside the range counts; other clusters do not.
    let got = store
        .anomalies(
            Some(c2),
            Window::new(day.start + 2 * HOUR, day.start + 3 * HOUR).unwrap(),
        )
        .map_err(store_err("read anomalies"))?;
    ensure(got.is_empty(), || format!("no overlap expected: {got:?}"))?;
    let got = store
        .anomalies(
            Some(c2),
            Window::new(day.start + HOUR, day.start + 2 * HOUR).unwrap(),
        )
        .map_err(store_err("read anomalies"))?;
    ensure(got == replacement, || format!("overlap: {got:?}"))?;
    let all = store
        .anomalies(None, day)
        .map_err(store_err("read anomalies"))?;
    ensure(all.iter().all(|x| x.key.cluster == c2), || {
        format!("unexpected clusters: {all:?}")
    })?;

    // Forecasts: the newest list replaces the older.
    let f1 = vec![
        forecast(c2, "alpha", 7, 100.0),
        forecast(c2, "alpha", 30, 400.0),
    ];
    store
        .put_forecasts(c2, &f1)
        .map_err(store_err("put forecasts"))?;
    let got = store.forecasts(c2).map_err(store_err("read forecasts"))?;
    ensure(got == f1, || format!("forecasts: {got:?}"))?;
    let f2 = vec![forecast(c2, "beta", 7, 7.0)];
    store
        .put_forecasts(c2, &f2)
        .map_err(store_err("replace forecasts"))?;
    let got = store.forecasts(c2).map_err(store_err("read forecasts"))?;
    ensure(got == f2, || format!("replaced forecasts: {got:?}"))?;
    ensure(
        store
            .forecasts("ins-nope")
            .map_err(store_err("read forecasts"))?
            .is_empty(),
        || "forecasts of an unknown cluster".into(),
    )?;
    recommendations_roundtrip(store)
}

/// The clusters [`fill`] writes.
pub const FILL_CLUSTERS: [&str; 2] = ["same-1", "same-2"];

/// The range [`fill`] writes: two days of hours from [`INSIGHT_DAY0`].
pub fn fill_range() -> Window {
    Window::new(INSIGHT_DAY0, INSIGHT_DAY0 + 2 * DAY).unwrap()
}

/// Writes the same data into any store: hourly allocation windows (one re-extracted, so a
/// double count would show), summaries of every granularity from both sources, anomalies,
/// forecasts, the bridge's recommendations (an empty run for the second cluster), budgets,
/// savings and predictions.
pub fn fill<S: CostStore + InsightStore>(store: &S) -> Check {
    let range = fill_range();
    for (ci, c) in FILL_CLUSTERS.iter().enumerate() {
        for (hi, h) in range.split(HOUR).into_iter().enumerate() {
            let scale = 1.0 + ci as f64 + hi as f64 / 7.0;
            put_window(store, c, h, Resolution::Hour, &window_rows(c, h, scale))?;
        }
        // Extracted again with other amounts: only the newer counts.
        let h = hour_at(range.start, 3);
        put_window(store, c, h, Resolution::Hour, &window_rows(c, h, 9.5))?;
        for d in range.split(DAY) {
            let rows = day_of_summaries(c, d.start, 1.0 + ci as f64);
            store
                .put_summaries(c, G::Hour, d, Source::Api, 1, &rows)
                .map_err(store_err("put summaries"))?;
            let daily = vec![summary(
                c,
                G::Day,
                d,
                Dimension::Namespace,
                "alpha",
                "alpha",
                3.0,
            )];
            store
                .put_summaries(c, G::Day, d, Source::Api, 1, &daily)
                .map_err(store_err("put daily"))?;
        }
        let open = Window::new(range.end, range.end + HOUR).unwrap();
        let rt = vec![summary(
            c,
            G::Hour,
            open,
            Dimension::Namespace,
            "alpha",
            "alpha",
            0.75,
        )];
        store
            .put_summaries(c, G::Hour, open, Source::Realtime, 1, &rt)
            .map_err(store_err("put realtime"))?;
        let month = G::Month.bucket(range.start);
        let monthly = vec![summary(
            c,
            G::Month,
            month,
            Dimension::Team,
            "",
            "payments",
            30.0,
        )];
        store
            .put_summaries(c, G::Month, month, Source::Api, 1, &monthly)
            .map_err(store_err("put monthly"))?;
        let anomalies = vec![
            anomaly(c, "alpha", range.start + 5 * HOUR, 0.7),
            anomaly(c, "beta", range.start + 30 * HOUR, 2.5),
        ];
        store
            .put_anomalies(c, range, &anomalies)
            .map_err(store_err("put anomalies"))?;
        store
            .put_forecasts(
                c,
                &[
                    forecast(c, "alpha", 7, 70.0),
                    forecast(c, "alpha", 30, 300.0),
                ],
            )
            .map_err(store_err("put forecasts"))?;
        let items = if ci == 0 {
            vec![
                recommendation(c, RecommendationKind::RequestSizing, "alpha", 8.5),
                recommendation(c, RecommendationKind::NodePoolSizing, "", 140.0),
                recommendation(c, RecommendationKind::SpotCandidate, "beta", 8.5),
            ]
        } else {
            Vec::new()
        };
        store
            .put_recommendations(&recommendation_set(
                c,
                range,
                720.0 * (1.0 + ci as f64),
                items,
            ))
            .map_err(store_err("put recommendations"))?;
        store
            .put_budgets(c, &[budget("b1", 100.0), budget("b2", 250.0)], range.end)
            .map_err(store_err("put budgets"))?;
        store
            .put_savings(
                c,
                &[
                    saving(c, kb_core::SavingsKind::RequestSizing, "api", 12.0),
                    saving(c, kb_core::SavingsKind::AbandonedWorkload, "old", 30.0),
                ],
                range.end,
            )
            .map_err(store_err("put savings"))?;
        store
            .put_predictions(c, &[prediction("alpha", 1.5)], range.end)
            .map_err(store_err("put predictions"))?;
    }
    Ok(())
}

/// Checks that two readers holding the same data give the same answers to every read the API
/// makes: cost totals per window (every grouping, granularity and idle choice, per cluster and
/// for all), clusters and freshness, summaries of every dimension and granularity, anomalies,
/// forecasts, the bridge's recommendations, budgets, savings and predictions.
pub fn same_answers<A, B>(a: &A, b: &B, clusters: &[&str], range: Window) -> Check
where
    A: CostReader + InsightReader,
    B: CostReader + InsightReader,
{
    let ca = a.clusters().map_err(store_err("clusters (a)"))?;
    let cb = b.clusters().map_err(store_err("clusters (b)"))?;
    ensure(ca == cb, || format!("clusters differ: {ca:?} vs {cb:?}"))?;
    let mut scopes: Vec<Option<&str>> = clusters.iter().map(|c| Some(*c)).collect();
    scopes.push(None);
    for cluster in &scopes {
        for granularity in [
            None,
            Some(Granularity::Hour),
            Some(Granularity::Day),
            Some(Granularity::Month),
        ] {
            for group_by in [
                GroupBy::Cluster,
                GroupBy::Namespace,
                GroupBy::Controller,
                GroupBy::Pod,
            ] {
                for include_idle in [true, false] {
                    let q = CostQuery {
                        cluster: cluster.map(str::to_string),
                        namespace: None,
                        range,
                        granularity,
                        group_by,
                        include_idle,
                    };
                    let ra = a.costs(&q).map_err(store_err("costs (a)"))?;
                    let rb = b.costs(&q).map_err(store_err("costs (b)"))?;
                    ensure(!ra.is_empty(), || format!("no rows for {q:?}"))?;
                    compare_costs(&format!("costs {q:?}"), &rb, &ra)?;
                }
            }
        }
        // The open hour after the range (realtime summaries) and a wider range too.
        let wide = Window::new(range.start - 31 * DAY, range.end + 31 * DAY).unwrap();
        for g in G::ALL {
            for dimension in Dimension::ALL {
                let q = SummaryQuery {
                    cluster: cluster.map(str::to_string),
                    dimension,
                    granularity: g,
                    range: wide,
                    namespace: None,
                    name: None,
                };
                let sa = a.summaries(&q).map_err(store_err("summaries (a)"))?;
                let sb = b.summaries(&q).map_err(store_err("summaries (b)"))?;
                compare_summaries(&format!("summaries {q:?}"), &sb, &sa)?;
            }
        }
        let aa = a
            .anomalies(*cluster, wide)
            .map_err(store_err("anomalies (a)"))?;
        let ab = b
            .anomalies(*cluster, wide)
            .map_err(store_err("anomalies (b)"))?;
        ensure(!aa.is_empty() && aa == ab, || {
            format!("anomalies differ:\n{aa:?}\n{ab:?}")
        })?;
    }
    for c in clusters {
        let (fa, fb) = (
            a.forecasts(c).map_err(store_err("forecasts (a)"))?,
            b.forecasts(c).map_err(store_err("forecasts (b)"))?,
        );
        ensure(!fa.is_empty() && fa == fb, || {
            format!("{c}: forecasts differ:\n{fa:?}\n{fb:?}")
        })?;
        let (ra, rb) = (
            a.recommendations(c)
                .map_err(store_err("recommendations (a)"))?,
            b.recommendations(c)
                .map_err(store_err("recommendations (b)"))?,
        );
        ensure(ra.is_some() && ra == rb, || {
            format!("{c}: recommendations differ:\n{ra:?}\n{rb:?}")
        })?;
        let (ba, bb) = (
            a.budgets(c).map_err(store_err("budgets (a)"))?,
            b.budgets(c).map_err(store_err("budgets (b)"))?,
        );
        ensure(!ba.is_empty() && ba == bb, || {
            format!("{c}: budgets differ:\n{ba:?}\n{bb:?}")
        })?;
        let (sa, sb) = (
            a.savings(c).map_err(store_err("savings (a)"))?,
            b.savings(c).map_err(store_err("savings (b)"))?,
        );
        ensure(!sa.is_empty() && sa == sb, || {
            format!("{c}: savings differ:\n{sa:?}\n{sb:?}")
        })?;
        let (pa, pb) = (
            a.predictions(c).map_err(store_err("predictions (a)"))?,
            b.predictions(c).map_err(store_err("predictions (b)"))?,
        );
        ensure(!pa.is_empty() && pa == pb, || {
            format!("{c}: predictions differ:\n{pa:?}\n{pb:?}")
        })?;
    }
    Ok(())
}
