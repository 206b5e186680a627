//! The shared store conformance suite (`kb-conformance`) on the SQLite store.

use kb_conformance::Inspect;
use kb_core::{Budget, SavingsRecommendation, SpecCostPrediction, Window};
use kb_pipeline::ports::{Checkpoint, Endpoint, StoreError};
use kb_store::SqliteStore;

struct SqliteInspect<'a>(&'a SqliteStore);

impl Inspect for SqliteInspect<'_> {
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
fn sqlite_store_passes_the_conformance_suite() {
    let (_dir, store) = crate::common::store();
    if let Err(e) = kb_conformance::run_all(&store, &SqliteInspect(&store)) {
        panic!("conformance failures:\n{e}");
    }
}

#[test]
fn sqlite_store_passes_the_insight_suite() {
    let (_dir, store) = crate::common::store();
    if let Err(e) = kb_conformance::insights::insights_roundtrip(&store) {
        panic!("insight conformance failures:\n{e}");
    }
}
