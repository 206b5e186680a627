//! The ports between the extractor and the stores: the traits a store backend implements.
//!
//! **API boundary**: a new backend (ClickHouse, InfluxDB) implements [`CostStore`] and
//! [`CostReader`] and passes the same conformance tests as the embedded SQLite store.
//!
//! Write contract: a window's rows and its checkpoint are committed together
//! ([`WindowWriter::commit`]), and writing a window replaces every row the store already holds
//! for that cluster inside the window, so extracting a window again never counts anything twice.
//! Dropping a writer without committing leaves the store as it was.

use kb_core::{
    Allocation, Asset, Budget, Resolution, SavingsRecommendation, SpecCostPrediction, Window,
};

use crate::retry::{RetryHint, Retryable};

/// An error from a store, with whether retrying may help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// What failed, lowercase, without secrets.
    pub message: String,
    /// Whether the same write may succeed later (a locked or unreachable store).
    pub retryable: bool,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// Makes a permanent error with a message.
    pub fn permanent(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            retryable: false,
            source: None,
        }
    }
}

impl Retryable for StoreError {
    fn retry_hint(&self) -> RetryHint {
        if self.retryable {
            RetryHint::Retry { after: None }
        } else {
            RetryHint::Permanent
        }
    }
}

/// The Kubecost data kinds the extractor syncs, each with its own checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Allocation,
    Assets,
    Budgets,
    Predictions,
    Savings,
}

impl Endpoint {
    /// Returns the stable name stored and logged for this endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Allocation => "allocation",
            Endpoint::Assets => "assets",
            Endpoint::Budgets => "budgets",
            Endpoint::Predictions => "predictions",
            Endpoint::Savings => "savings",
        }
    }
}

/// What the extractor knows about a window when it commits it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The bridge's name for the cluster (from config).
    pub cluster: String,
    pub endpoint: Endpoint,
    pub window: Window,
    pub resolution: Resolution,
    /// Unix seconds of the commit.
    pub synced_at: i64,
    /// Rows Kubecost sent for the window.
    pub rows: u64,
    /// Sum of `totalCost` over the rows Kubecost sent.
    pub response_total_cost: f64,
    /// Numeric fields Kubecost sent as `null` (NaN), stored as 0.
    pub null_fields: u64,
}

impl Checkpoint {
    /// Why this checkpoint does not belong to the write it is committed with (another
    /// cluster, endpoint or window), or `None` when it does. Every store checks this before
    /// it commits, so a checkpoint can never mark data it was not written with.
    pub fn mismatch(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        window: Option<Window>,
    ) -> Option<String> {
        if self.cluster != cluster {
            return Some(format!(
                "checkpoint cluster {:?} does not match the window's cluster {cluster:?}",
                self.cluster
            ));
        }
        if self.endpoint != endpoint {
            return Some(format!(
                "checkpoint endpoint {} does not match {}",
                self.endpoint.as_str(),
                endpoint.as_str()
            ));
        }
        match window {
            Some(w) if self.window != w => Some(format!(
                "checkpoint window {} does not match the window written {w}",
                self.window
            )),
            _ => None,
        }
    }
}

/// What a store holds for a committed window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub rows: u64,
    pub total_cost: f64,
}

/// The outcome of comparing a window's stored total with Kubecost's own total for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    pub cluster: String,
    pub endpoint: Endpoint,
    pub window: Window,
    /// Kubecost's total for the window (its cluster-level aggregate).
    pub expected: f64,
    /// The store's total for the window after the commit.
    pub stored: f64,
    /// `|stored − expected| / max(|expected|, |stored|)`.
    pub relative_error: f64,
    pub checked_at: i64,
}

/// Writes the allocation rows of one window; see the module docs for the contract.
pub trait WindowWriter: Send {
    /// Adds rows to the window (the rows' own windows lie inside it).
    fn write(&mut self, rows: &[Allocation]) -> Result<(), StoreError>;

    /// Replaces the cluster's rows inside the window with the rows written, records the
    /// checkpoint, and commits both atomically. Returns what the store now holds for the window.
    fn commit(self: Box<Self>, checkpoint: &Checkpoint) -> Result<WindowStats, StoreError>;
}

/// A store that the extractor writes into.
pub trait CostStore: Send + Sync {
    /// Starts writing allocation rows for `cluster` over `window`.
    fn begin_allocations(
        &self,
        cluster: &str,
        window: Window,
        resolution: Resolution,
    ) -> Result<Box<dyn WindowWriter>, StoreError>;

    /// Replaces the cluster's assets inside the window and records the checkpoint, atomically.
    fn put_assets(
        &self,
        assets: &[Asset],
        checkpoint: &Checkpoint,
    ) -> Result<WindowStats, StoreError>;

    /// Replaces the cluster's budgets with these (Kubecost's list is always complete).
    fn put_budgets(
        &self,
        cluster: &str,
        budgets: &[Budget],
        fetched_at: i64,
    ) -> Result<(), StoreError>;

    /// Replaces the cluster's savings recommendations with these.
    fn put_savings(
        &self,
        cluster: &str,
        recommendations: &[SavingsRecommendation],
        fetched_at: i64,
    ) -> Result<(), StoreError>;

    /// Replaces the cluster's spec-cost predictions with these.
    fn put_predictions(
        &self,
        cluster: &str,
        predictions: &[SpecCostPrediction],
        fetched_at: i64,
    ) -> Result<(), StoreError>;

    /// Returns the windows already committed for the cluster and endpoint that end after `since`.
    fn synced_windows(
        &self,
        cluster: &str,
        endpoint: Endpoint,
        since: i64,
    ) -> Result<Vec<(Window, Resolution)>, StoreError>;

    /// Records a reconciliation result (one row per cluster, endpoint and window; a newer check
    /// of the same window replaces the older).
    fn record_reconciliation(&self, r: &Reconciliation) -> Result<(), StoreError>;

    /// Deletes pod-level allocation and asset rows whose window ended before `before` (unix
    /// seconds); returns how many rows went. Checkpoints, budgets and summaries stay.
    fn cleanup(&self, before: i64) -> Result<u64, StoreError>;
}

/// The grain of a cost query's time buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

/// What a cost query groups by. Each level keeps the levels above it (a controller row names
/// its cluster and namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Cluster,
    Namespace,
    Controller,
    Pod,
}

/// A query over stored allocations.
#[derive(Debug, Clone, PartialEq)]
pub struct CostQuery {
    /// Only this cluster, or every cluster.
    pub cluster: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// `[start, end)`: rows whose window starts inside it.
    pub range: Window,
    /// Time buckets, or `None` for one row per group over the whole range.
    pub granularity: Option<Granularity>,
    pub group_by: GroupBy,
    /// Whether the idle rows (`__idle__`) are included.
    pub include_idle: bool,
}

/// One row of a cost query: a group in a time bucket, with the seed's cost field names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostRow {
    /// Unix seconds of the bucket start (the range start when there is no granularity).
    pub bucket_start: i64,
    pub cluster: String,
    /// Empty above namespace grain.
    pub namespace: String,
    /// Empty above controller grain.
    pub controller_kind: String,
    pub controller: String,
    /// Empty above pod grain.
    pub pod: String,
    pub cpu_cost: f64,
    pub memory_cost: f64,
    pub gpu_cost: f64,
    /// PV cost plus its adjustment.
    pub storage_cost: f64,
    pub network_cost: f64,
    pub load_balancer_cost: f64,
    pub shared_cost: f64,
    pub external_cost: f64,
    /// Cost of the idle rows in the group (0 unless `include_idle` and the group holds them).
    pub idle_cost: f64,
    pub total_cost: f64,
    /// Cost-weighted `totalEfficiency` of the group's non-idle rows.
    pub efficiency_score: f64,
    /// Allocation rows summed into this one.
    pub rows: u64,
}

/// The labels one pod carried, as last stored within a range: what the API's team and label
/// filters match (the cost rows themselves carry no labels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodLabels {
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    pub pod: String,
    /// Pod labels, sorted by key.
    pub labels: kb_core::model::Labels,
    /// Pod annotations, sorted by key.
    pub annotations: kb_core::model::Labels,
    /// Namespace labels, sorted by key.
    pub namespace_labels: kb_core::model::Labels,
}

/// Reads costs back out of a store: the port the REST API serves.
pub trait CostReader: Send + Sync {
    /// Answers a cost query, ordered by bucket, then cluster, namespace, controller and pod.
    fn costs(&self, q: &CostQuery) -> Result<Vec<CostRow>, StoreError>;

    /// Returns the clusters the store holds data for, with the end of their newest synced
    /// allocation window (unix seconds).
    fn clusters(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Returns the recorded reconciliations for a cluster whose window starts inside `range`.
    fn reconciliations(
        &self,
        cluster: &str,
        range: Window,
    ) -> Result<Vec<Reconciliation>, StoreError>;

    /// Returns, for each pod of `cluster` (and `namespace` when given) with an allocation
    /// window starting inside `range`, the labels of its newest such allocation; ordered by
    /// namespace, controller, pod. Idle rows are not pods and are left out.
    fn pod_labels(
        &self,
        cluster: &str,
        namespace: Option<&str>,
        range: Window,
    ) -> Result<Vec<PodLabels>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_of_another_cluster_endpoint_or_window_is_named() {
        let w = Window {
            start: 0,
            end: 3600,
        };
        let cp = Checkpoint {
            cluster: "a".into(),
            endpoint: Endpoint::Allocation,
            window: w,
            resolution: Resolution::Hour,
            synced_at: 0,
            rows: 1,
            response_total_cost: 1.0,
            null_fields: 0,
        };
        assert_eq!(cp.mismatch("a", Endpoint::Allocation, Some(w)), None);
        assert_eq!(cp.mismatch("a", Endpoint::Allocation, None), None);
        assert!(
            cp.mismatch("b", Endpoint::Allocation, Some(w))
                .unwrap()
                .contains("cluster")
        );
        assert!(
            cp.mismatch("a", Endpoint::Assets, Some(w))
                .unwrap()
                .contains("endpoint")
        );
        let other = Window {
            start: 3600,
            end: 7200,
        };
        assert!(
            cp.mismatch("a", Endpoint::Allocation, Some(other))
                .unwrap()
                .contains("window")
        );
    }
}
