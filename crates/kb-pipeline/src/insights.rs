//! Ports for what the aggregator derives from stored allocations: cost summaries, anomalies,
//! forecasts and the bridge's own recommendations, plus read access to Kubecost's budgets, savings and predictions. The REST API
//! reads through [`InsightReader`]; the aggregator writes through [`InsightStore`].
//!
//! Semantics every backend keeps:
//! - Writes replace: [`InsightStore::put_summaries`] deletes the summaries of the cluster,
//!   granularity and source whose bucket starts inside the range, then inserts the new ones, in
//!   one transaction (or an equivalent idempotent scheme). Aggregating a range again never
//!   counts twice.
//! - A summary records its [`Source`]: Kubecost's API (authoritative for closed windows) or the
//!   real-time estimate (the open hour). Readers prefer `Api` rows and use `Realtime` rows only
//!   for buckets the API has not covered yet.
//! - Recommendations are replaced per cluster: [`InsightStore::put_recommendations`] swaps the
//!   cluster's whole [`RecommendationSet`] in one transaction, so a reader sees the previous
//!   run's list or the new one, never a mix, and running the aggregator again stores the same.

use kb_analytics::anomaly::{Anomaly, DetectorKind, Severity};
use kb_analytics::recommend::Recommendation;
use kb_analytics::{CostSummary, Dimension, Granularity};
use kb_core::{Budget, SavingsRecommendation, SpecCostPrediction, Window};

use crate::ports::StoreError;

/// Where a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Kubecost's allocation API (closed windows).
    Api,
    /// Real-time estimate from Prometheus metrics (the open hour).
    Realtime,
}

impl Source {
    /// The stored and serialised name: `api` or `realtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Realtime => "realtime",
        }
    }

    /// Parses [`Source::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "api" => Some(Source::Api),
            "realtime" => Some(Source::Realtime),
            _ => None,
        }
    }
}

/// A stored summary with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSummary {
    pub summary: CostSummary,
    pub source: Source,
    /// The allocation rules' version the summary was computed under.
    pub rules_version: u32,
}

/// A query over stored summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryQuery {
    /// Only this cluster, or every cluster.
    pub cluster: Option<String>,
    pub dimension: Dimension,
    pub granularity: Granularity,
    /// Summaries whose bucket starts inside `[range.start, range.end)`.
    pub range: Window,
    /// Only this namespace (namespace and controller dimensions).
    pub namespace: Option<String>,
    /// Only this name (the dimension's value).
    pub name: Option<String>,
}

/// One forecast total for a series over a horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRow {
    pub cluster: String,
    pub dimension: Dimension,
    /// Namespace for namespace-level series, empty for the cluster.
    pub namespace: String,
    pub name: String,
    /// Unix seconds when the forecast was made (the end of the history it used).
    pub made_at: i64,
    /// Horizon in days (7 or 30).
    pub horizon_days: u32,
    /// Predicted cost over `[made_at, made_at + horizon)`, with the interval's bounds.
    pub total: f64,
    pub lower: f64,
    pub upper: f64,
    /// Kubecost's own prediction for the same horizon, where it made one.
    pub kubecost: Option<f64>,
}

/// The bridge's recommendations for one cluster, as one aggregation run made them (Kubecost's
/// own are [`InsightReader::savings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendationSet {
    pub cluster: String,
    /// Unix seconds when the run made them.
    pub made_at: i64,
    /// The period of allocation rows they were computed from.
    pub observed: Window,
    /// What the cluster cost per 730-hour month over `observed`, idle included (the base of
    /// the savings' share).
    pub monthly_cost: f64,
    /// Largest saving first.
    pub items: Vec<Recommendation>,
}

/// Writes the aggregator's results.
pub trait InsightStore: Send + Sync {
    /// Replaces the `source` summaries of `cluster` at `granularity` whose bucket starts in
    /// `range` with `rows` (every row must be of that cluster and granularity and start in the
    /// range). Returns the rows written.
    fn put_summaries(
        &self,
        cluster: &str,
        granularity: Granularity,
        range: Window,
        source: Source,
        rules_version: u32,
        rows: &[CostSummary],
    ) -> Result<u64, StoreError>;

    /// Replaces the anomalies of `cluster` that start inside `range`.
    fn put_anomalies(
        &self,
        cluster: &str,
        range: Window,
        rows: &[Anomaly],
    ) -> Result<(), StoreError>;

    /// Replaces every stored forecast of `cluster`.
    fn put_forecasts(&self, cluster: &str, rows: &[ForecastRow]) -> Result<(), StoreError>;

    /// Replaces the bridge's recommendations of `set.cluster` with `set` (items of another
    /// cluster are an error).
    fn put_recommendations(&self, set: &RecommendationSet) -> Result<(), StoreError>;
}

/// Reads what the API serves besides raw allocation costs.
pub trait InsightReader: Send + Sync {
    /// Summaries matching the query, ordered by bucket start, then cluster, namespace, name.
    /// For each bucket and key, an `Api` row hides a `Realtime` row.
    fn summaries(&self, q: &SummaryQuery) -> Result<Vec<StoredSummary>, StoreError>;

    /// Anomalies of a cluster (or all clusters) overlapping `range`, newest first.
    fn anomalies(&self, cluster: Option<&str>, range: Window) -> Result<Vec<Anomaly>, StoreError>;

    /// The newest forecasts of a cluster.
    fn forecasts(&self, cluster: &str) -> Result<Vec<ForecastRow>, StoreError>;

    /// Kubecost's budgets that apply to a cluster.
    fn budgets(&self, cluster: &str) -> Result<Vec<Budget>, StoreError>;

    /// Kubecost's savings recommendations for a cluster.
    fn savings(&self, cluster: &str) -> Result<Vec<SavingsRecommendation>, StoreError>;

    /// Kubecost's spec-cost predictions for a cluster.
    fn predictions(&self, cluster: &str) -> Result<Vec<SpecCostPrediction>, StoreError>;

    /// The bridge's newest recommendations for a cluster, largest saving first; `None` before
    /// the aggregator made any.
    fn recommendations(&self, cluster: &str) -> Result<Option<RecommendationSet>, StoreError>;
}

/// Stable stored names of the analytics enums, shared by every backend.
pub mod names {
    use super::*;

    /// `cluster`, `namespace`, `controller`, `team`, `owner`, `product`, `cost_center`.
    pub fn dimension(d: Dimension) -> &'static str {
        match d {
            Dimension::Cluster => "cluster",
            Dimension::Namespace => "namespace",
            Dimension::Controller => "controller",
            Dimension::Team => "team",
            Dimension::Owner => "owner",
            Dimension::Product => "product",
            Dimension::CostCenter => "cost_center",
        }
    }

    /// Parses [`dimension`]'s output.
    pub fn parse_dimension(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| dimension(*d) == s)
    }

    /// `1h`, `1d`, `1mo` (the seed's `window_duration`).
    pub fn granularity(g: Granularity) -> &'static str {
        g.as_str()
    }

    /// Parses [`granularity`]'s output.
    pub fn parse_granularity(s: &str) -> Option<Granularity> {
        [Granularity::Hour, Granularity::Day, Granularity::Month]
            .into_iter()
            .find(|g| g.as_str() == s)
    }

    /// `info`, `warning`, `critical`.
    pub fn severity(s: Severity) -> &'static str {
        match s {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses [`severity`]'s output.
    pub fn parse_severity(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|v| severity(*v) == s)
    }

    /// `increase` (the seed's rule) or `seasonal`.
    pub fn detector(d: DetectorKind) -> &'static str {
        match d {
            DetectorKind::IncreaseRule => "increase",
            DetectorKind::Seasonal => "seasonal",
        }
    }

    /// Parses [`detector`]'s output.
    pub fn parse_detector(s: &str) -> Option<DetectorKind> {
        [DetectorKind::IncreaseRule, DetectorKind::Seasonal]
            .into_iter()
            .find(|v| detector(*v) == s)
    }
}

#[cfg(test)]
mod tests {
    use super::names::*;
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dimension::ALL {
            assert_eq!(parse_dimension(dimension(d)), Some(d));
        }
        for g in [Granularity::Hour, Granularity::Day, Granularity::Month] {
            assert_eq!(parse_granularity(granularity(g)), Some(g));
        }
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            assert_eq!(parse_severity(severity(s)), Some(s));
        }
        for d in [DetectorKind::IncreaseRule, DetectorKind::Seasonal] {
            assert_eq!(parse_detector(detector(d)), Some(d));
        }
        for s in [Source::Api, Source::Realtime] {
            assert_eq!(Source::parse(s.as_str()), Some(s));
        }
        assert_eq!(parse_dimension("pods"), None);
    }
}
