//! The aggregator end to end: backfill extracts and aggregates; summaries conserve the stored
//! allocation totals at every grain and dimension; aggregating again changes nothing; an
//! injected spike becomes a stored anomaly.

use kb_analytics::{Dimension, Granularity};
use kb_core::Window;
use kb_core::window::{DAY, HOUR};
use kb_pipeline::insights::{InsightReader, Source, StoredSummary, SummaryQuery};

use crate::{FAST, Sim, bin, past_range, rfc, run_ok, sim_config, write_config};

fn summaries(
    store: &kb_store::SqliteStore,
    cluster: &str,
    dimension: Dimension,
    granularity: Granularity,
    range: Window,
) -> Vec<StoredSummary> {
    store
        .summaries(&SummaryQuery {
            cluster: Some(cluster.into()),
            dimension,
            granularity,
            range,
            namespace: None,
            name: None,
        })
        .unwrap()
}

fn total(rows: &[StoredSummary]) -> f64 {
    rows.iter().map(|s| s.summary.totals.total_cost).sum()
}

fn close(a: f64, b: f64) -> bool {
    kb_core::cost::relative_error(a, b) <= 1e-9
}

#[test]
fn backfill_aggregates_and_summaries_conserve_the_stored_costs() {
    let sim = Sim::start(sim_config(2, 25));
    let dir = tempfile::tempdir().unwrap();
    let clusters = ["cluster-1", "cluster-2"];
    let cfg = write_config(dir.path(), &sim, &clusters, FAST);
    let range = past_range(48);
    let args = [
        "--from".to_string(),
        rfc(range.start),
        "--to".to_string(),
        rfc(range.end),
    ];
    let out = run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args(&args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("aggregated 4 day(s)"), "{stdout}");

    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let mut before = Vec::new();
    for c in clusters {
        for day in range.split(DAY) {
            let stored = store.window_total(c, day).unwrap().total_cost;
            assert!(stored > 0.0);
            for d in Dimension::ALL {
                let daily = summaries(&store, c, d, Granularity::Day, day);
                assert!(
                    daily
                        .iter()
                        .all(|s| s.source == Source::Api && s.rules_version == 1)
                );
                assert!(
                    close(total(&daily), stored),
                    "{c} {day} {d:?} daily: {} vs {stored}",
                    total(&daily)
                );
                let hourly = summaries(&store, c, d, Granularity::Hour, day);
                assert!(close(total(&hourly), stored), "{c} {day} {d:?} hourly");
            }
            let ns = summaries(&store, c, Dimension::Namespace, Granularity::Day, day);
            assert!(ns.iter().any(|s| s.summary.name == "kube-system"));
            assert!(
                ns.iter().any(|s| s.summary.name == "__idle__"),
                "idle kept as its own row"
            );
            assert!(
                ns.iter()
                    .all(|s| (0.0..=1.0).contains(&s.summary.efficiency_score)
                        || s.summary.name == "__idle__")
            );
        }
        // Each month's summary is the sum of its days.
        let month = Granularity::Month.bucket(range.start);
        let days_in_month = summaries(&store, c, Dimension::Cluster, Granularity::Day, month);
        let monthly = summaries(&store, c, Dimension::Cluster, Granularity::Month, month);
        assert_eq!(monthly.len(), 1);
        assert!(close(total(&monthly), total(&days_in_month)));
        before.push(summaries(
            &store,
            c,
            Dimension::Controller,
            Granularity::Hour,
            range,
        ));
        before.push(summaries(
            &store,
            c,
            Dimension::Team,
            Granularity::Day,
            range,
        ));
    }
    drop(store);

    // Aggregating the same range again (the command to recompute history) changes nothing.
    let out = run_ok(bin().args(["aggregate", "--config"]).arg(&cfg).args(&args));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rules version 1"));
    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let mut after = Vec::new();
    for c in clusters {
        after.push(summaries(
            &store,
            c,
            Dimension::Controller,
            Granularity::Hour,
            range,
        ));
        after.push(summaries(
            &store,
            c,
            Dimension::Team,
            Granularity::Day,
            range,
        ));
    }
    assert_eq!(before, after);
}

#[test]
fn a_cost_spike_is_stored_as_an_anomaly_of_its_namespace() {
    let mut cfg = sim_config(1, 30);
    let range = past_range(48);
    let spike_at = range.start + 30 * HOUR;
    cfg.spikes.push(kb_sim::Spike {
        namespace: "monitoring".into(),
        factor: 4.0,
        start: spike_at,
    });
    let sim = Sim::start(cfg);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &sim, &["cluster-1"], FAST);
    run_ok(bin().args(["backfill", "--config"]).arg(&cfg).args([
        "--from",
        &rfc(range.start),
        "--to",
        &rfc(range.end),
    ]));
    let store = kb_store::SqliteStore::open(&dir.path().join("bridge.db")).unwrap();
    let anomalies = store.anomalies(Some("cluster-1"), range).unwrap();
    let hit = anomalies
        .iter()
        .find(|a| a.key.dimension == Dimension::Namespace && a.key.name == "monitoring");
    let hit = hit.unwrap_or_else(|| panic!("no anomaly for monitoring: {anomalies:#?}"));
    assert_eq!(hit.start, spike_at, "{hit:?}");
    assert!(hit.actual > hit.expected * 1.5, "{hit:?}");
    // Nothing before the spike is flagged.
    assert!(
        anomalies.iter().all(|a| a.start >= spike_at),
        "{anomalies:#?}"
    );
}
