//! The shared store conformance suite (`kb-conformance`) on the ClickHouse store.

use kb_clickhouse::ClickHouseStore;
use kb_conformance::Inspect;
use kb_core::{Budget, SavingsRecommendation, SpecCostPrediction, Window};
use kb_pipeline::ports::{Checkpoint, CostStore, Endpoint, StoreError};

use crate::server;

pub(crate) struct ChInspect<'a>(pub(crate) &'a ClickHouseStore);

impl Inspect for ChInspect<'_> {
    fn checkpoints(
        &self,
        cluster: &str,
        endpoint: Endpoint,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        self.0.checkpoints(cluster, endpoint)
    }

    fn budgets(&self, cluster: &str) -> Result<Vec<Budget>, StoreError> {
        self.0.budgets(cluster)
    }

    fn savings(&self, cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError> {
        self.0.savings(cluster)
    }

    fn predictions(&self, cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError> {
        self.0.predictions(cluster)
    }

    fn asset_total(&self, cluster: &str, window: Window) -> Result<f64, StoreError> {
        self.0.asset_total(cluster, window)
    }
}

#[test]
fn clickhouse_store_passes_the_conformance_suite() {
    // Small batches: writers send rows before they commit, so the checks of dropped and
    // failed writers see rows on the server that must stay invisible.
    let mut cfg = server::config("conformance");
    cfg.batch_rows = 4;
    let store = ClickHouseStore::open(&cfg).unwrap();
    if let Err(e) = kb_conformance::run_all(&store, &ChInspect(&store)) {
        panic!("conformance failures:\n{e}");
    }
}

#[test]
fn opening_again_keeps_the_schema_and_the_data() {
    let cfg = server::config("reopen");
    let store = ClickHouseStore::open(&cfg).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        kb_clickhouse::SCHEMA_VERSION
    );
    kb_conformance::window_roundtrip(&store, &ChInspect(&store)).unwrap();
    drop(store);
    let again = ClickHouseStore::open(&cfg).unwrap();
    assert_eq!(
        again.schema_version().unwrap(),
        kb_clickhouse::SCHEMA_VERSION
    );
    let versions = server::raw(&format!(
        "SELECT count() FROM `{}`.schema_version",
        cfg.database
    ));
    assert_eq!(
        versions.trim(),
        kb_clickhouse::SCHEMA_VERSION.to_string(),
        "each migration ran once"
    );
    let cps = again
        .checkpoints("conf-roundtrip", Endpoint::Allocation)
        .unwrap();
    assert_eq!(cps.len(), 3);
    // The reopened store's writes still replace the first store's.
    let w = kb_conformance::hour_at(kb_conformance::DAY0, 0);
    let rows = kb_conformance::window_rows("conf-roundtrip", w, 9.0);
    kb_conformance::put_window(
        &again,
        "conf-roundtrip",
        w,
        kb_core::Resolution::Hour,
        &rows,
    )
    .unwrap();
    let stats = again.window_total("conf-roundtrip", w).unwrap();
    assert_eq!(stats.rows, rows.len() as u64);
    assert!(kb_conformance::close(
        stats.total_cost,
        kb_conformance::sum_total(&rows)
    ));
}

#[test]
fn a_crash_before_the_checkpoint_leaves_rows_no_query_counts() {
    let mut cfg = server::config("crash");
    cfg.batch_rows = 4;
    let db = cfg.database.clone();
    let store = ClickHouseStore::open(&cfg).unwrap();
    let c = "crash";
    let w = kb_conformance::hour_at(kb_conformance::DAY0, 0);
    let v1 = kb_conformance::window_rows(c, w, 1.0);
    kb_conformance::put_window(&store, c, w, kb_core::Resolution::Hour, &v1).unwrap();
    // A rewrite whose process dies after sending rows: no commit, and no drop either.
    let mut writer = store
        .begin_allocations(c, w, kb_core::Resolution::Hour)
        .unwrap();
    writer
        .write(&kb_conformance::window_rows(c, w, 3.0))
        .unwrap();
    writer
        .write(&kb_conformance::window_rows(c, w, 3.0))
        .unwrap();
    std::mem::forget(writer);
    let stored: u64 = server::raw(&format!("SELECT count() FROM `{db}`.allocations"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        stored > v1.len() as u64,
        "the crashed write's rows reached the server"
    );
    let stats = store.window_total(c, w).unwrap();
    assert_eq!(stats.rows, v1.len() as u64);
    assert!(kb_conformance::close(
        stats.total_cost,
        kb_conformance::sum_total(&v1)
    ));
    assert_eq!(
        store
            .synced_windows(c, Endpoint::Allocation, 0)
            .unwrap()
            .len(),
        1
    );
    let visible = server::raw(&format!("SELECT count() FROM `{db}`.allocations_current"));
    assert_eq!(visible.trim(), v1.len().to_string());
}

#[test]
fn clickhouse_store_keeps_the_insight_contract() {
    let mut cfg = server::config("insights");
    cfg.batch_rows = 7;
    let store = ClickHouseStore::open(&cfg).unwrap();
    if let Err(e) = kb_conformance::insights::insights_roundtrip(&store) {
        panic!("insight conformance failures:\n{e}");
    }
}

#[test]
fn sqlite_and_clickhouse_readers_give_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = kb_store::SqliteStore::open(&dir.path().join("kb.db")).unwrap();
    // The SQLite store keeps the insight contract too: the suite is the same for both.
    kb_conformance::insights::insights_roundtrip(&sqlite).unwrap();
    let sqlite = kb_store::SqliteStore::open(&dir.path().join("same.db")).unwrap();
    let ch = server::store("same");
    kb_conformance::insights::fill(&sqlite).unwrap();
    kb_conformance::insights::fill(&ch).unwrap();
    let clusters = kb_conformance::insights::FILL_CLUSTERS;
    if let Err(e) = kb_conformance::insights::same_answers(
        &sqlite,
        &ch,
        &clusters,
        kb_conformance::insights::fill_range(),
    ) {
        panic!("sqlite and clickhouse differ:\n{e}");
    }
}

#[test]
fn a_version_1_database_is_migrated_to_the_insight_and_recommendation_tables() {
    let cfg = server::config("migrate");
    let db = cfg.database.clone();
    // What a build of schema version 1 left: the database, its tables and one version row.
    let store = ClickHouseStore::open(&cfg).unwrap();
    let w = kb_conformance::hour_at(kb_conformance::DAY0, 0);
    let rows = kb_conformance::window_rows("mig", w, 1.0);
    kb_conformance::put_window(&store, "mig", w, kb_core::Resolution::Hour, &rows).unwrap();
    drop(store);
    for t in [
        "summaries",
        "anomalies",
        "forecasts",
        "insight_commits",
        "mirror_marks",
        "recommendations",
    ] {
        server::raw(&format!("DROP TABLE `{db}`.{t}"));
    }
    server::raw(&format!(
        "ALTER TABLE `{db}`.schema_version DELETE WHERE version > 1"
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server::raw(&format!("SELECT count() FROM `{db}`.schema_version")).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "mutation never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let store = ClickHouseStore::open(&cfg).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        kb_clickhouse::SCHEMA_VERSION
    );
    assert_eq!(kb_clickhouse::SCHEMA_VERSION, 3);
    assert_eq!(
        store.window_total("mig", w).unwrap().rows,
        rows.len() as u64
    );
    kb_conformance::insights::insights_roundtrip(&store).unwrap();
}

/// The storage figures `/metrics` exports: the database's active parts, as `system.parts`
/// counts them, grow when windows are written; disks come from `system.disks` where the server
/// has it (not 18.16), each with used at most total.
#[test]
fn storage_usage_counts_the_databases_parts() {
    let cfg = server::config("storage");
    let store = ClickHouseStore::open(&cfg).unwrap();
    let before = store.storage_usage().unwrap();
    kb_conformance::window_roundtrip(&store, &ChInspect(&store)).unwrap();
    let after = store.storage_usage().unwrap();
    assert!(
        after.parts_bytes > before.parts_bytes,
        "{before:?} -> {after:?}"
    );
    let direct: u64 = server::raw(&format!(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = '{}'",
        cfg.database
    ))
    .trim()
    .parse()
    .unwrap();
    assert_eq!(after.parts_bytes, direct);
    let has_disks = server::raw(
        "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'disks'",
    );
    assert_eq!(after.disks.is_empty(), has_disks.trim() == "0", "{after:?}");
    assert!(after.disks.iter().all(|(_, used, total)| used <= total));
}
