//! [`LiveCosts`]: an in-memory [`SampleSink`] that keeps each cluster's live state and answers
//! cost-rate queries (see [`crate::state`] for the formulas and sample semantics).
//!
//! Durability: this sink is memory only. It confirms a batch once applied; that batch is then
//! visible to the queries at once, but a restart loses it (persisting lands with the store
//! work of the issue; the hourly extraction replaces these estimates anyway).

use crate::batch::DecodedBatch;
use crate::sink::{SampleSink, SinkError};
use crate::state::{
    ClusterState, ClusterSummary, ContainerRates, ControllerRates, LiveConfig, NamespaceRates,
    PodRates, Rates,
};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Live cost state of every cluster.
#[derive(Debug, Default)]
pub struct LiveCosts {
    cfg: LiveConfig,
    clusters: Mutex<HashMap<String, ClusterState>>,
}

impl LiveCosts {
    /// An empty state.
    pub fn new(cfg: LiveConfig) -> LiveCosts {
        LiveCosts {
            cfg,
            clusters: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ClusterState>> {
        // A panic while holding the lock cannot leave a half-applied sample worse than
        // dropping it; keep serving.
        self.clusters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with<T>(&self, cluster: &str, f: impl FnOnce(&ClusterState) -> T) -> Option<T> {
        self.lock().get(cluster).map(f)
    }

    /// Clusters with data.
    pub fn clusters(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Cost rate per namespace, sorted by namespace (empty for an unknown cluster).
    pub fn namespace_rates(&self, cluster: &str) -> Vec<NamespaceRates> {
        self.with(cluster, ClusterState::namespaces)
            .unwrap_or_default()
    }

    /// Cost rate per controller.
    pub fn controller_rates(&self, cluster: &str) -> Vec<ControllerRates> {
        self.with(cluster, ClusterState::controllers)
            .unwrap_or_default()
    }

    /// Cost rate per pod.
    pub fn pod_rates(&self, cluster: &str) -> Vec<PodRates> {
        self.with(cluster, ClusterState::pods).unwrap_or_default()
    }

    /// Cost rate per container.
    pub fn container_rates(&self, cluster: &str) -> Vec<ContainerRates> {
        self.with(cluster, ClusterState::containers)
            .unwrap_or_default()
    }

    /// The whole cluster (Σ namespaces + management fee).
    pub fn cluster_rate(&self, cluster: &str) -> Option<Rates> {
        self.with(cluster, ClusterState::total)
    }

    /// Derived cluster series and the newest sample time.
    pub fn cluster_summary(&self, cluster: &str) -> Option<ClusterSummary> {
        self.with(cluster, ClusterState::summary)
    }

    /// Newest sample time of a cluster (ms).
    pub fn newest_sample_ms(&self, cluster: &str) -> Option<i64> {
        self.with(cluster, ClusterState::newest_sample_ms).flatten()
    }
}

impl SampleSink for LiveCosts {
    fn write(&self, cluster: &str, batch: &DecodedBatch) -> Result<(), SinkError> {
        let mut g = self.lock();
        if !g.contains_key(cluster) {
            g.insert(cluster.to_string(), ClusterState::new(self.cfg));
        }
        if let Some(st) = g.get_mut(cluster) {
            st.apply(batch);
        }
        Ok(())
    }
}
