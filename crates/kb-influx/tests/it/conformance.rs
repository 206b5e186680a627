//! The store conformance suite (`kb-conformance`) against the real server: every check except
//! `small_tables`, which does not apply (the InfluxDB store keeps no budgets, savings or
//! predictions; the SQLite store does).

use kb_core::{Budget, SavingsRecommendation, SpecCostPrediction, Window};
use kb_influx::InfluxStore;
use kb_pipeline::ports::{Checkpoint, Endpoint, StoreError};

use crate::server;

struct View<'a>(&'a InfluxStore);

impl kb_conformance::Inspect for View<'_> {
    fn checkpoints(
        &self,
        cluster: &str,
        endpoint: Endpoint,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        self.0.checkpoints(cluster, endpoint)
    }
    fn budgets(&self, _cluster: &str) -> Result<Vec<Budget>, StoreError> {
        Ok(Vec::new())
    }
    fn savings(&self, _cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError> {
        Ok(Vec::new())
    }
    fn predictions(&self, _cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError> {
        Ok(Vec::new())
    }
    fn asset_total(&self, cluster: &str, window: Window) -> Result<f64, StoreError> {
        self.0.asset_total(cluster, window)
    }
}

#[test]
fn the_store_passes_the_conformance_suite() {
    let store = server::store("conformance");
    let view = View(&store);
    let checks = [
        (
            "window_roundtrip",
            kb_conformance::window_roundtrip(&store, &view),
        ),
        (
            "rewrite_replaces",
            kb_conformance::rewrite_replaces(&store, &view),
        ),
        (
            "uncommitted_writes_leave_nothing",
            kb_conformance::uncommitted_writes_leave_nothing(&store, &view),
        ),
        ("reconciliations", kb_conformance::reconciliations(&store)),
        (
            "cleanup_removes_old_rows",
            kb_conformance::cleanup_removes_old_rows(&store, &view),
        ),
    ];
    let failures: Vec<String> = checks
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
