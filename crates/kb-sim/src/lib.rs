//! `kb-sim`: a deterministic, Kubecost-compatible simulator of a Kubernetes fleet, served over
//! Kubecost's HTTP API and a Prometheus `/metrics` page, so the extractor can be tested end to
//! end over real HTTP against a known ground truth.
//!
//! # Design
//!
//! - [`fleet`]: the model. The *static* fleet (clusters, nodes, namespaces, controllers, pod
//!   slots, PVs, load balancers) is built once from [`SimConfig`]. Every *per-hour* quantity
//!   (usage, job run times, network bytes) is a pure function of `(seed, entity ids, hour)`
//!   through splitmix64, so values never depend on query order and the same seed always gives
//!   the same bytes. History is unbounded backwards: every hour has data.
//! - `alloc`: allocation sets (`/model/allocation`, `/allocation`, `/allocation/compute`):
//!   container rows are generated pod by pod, aggregated when asked, and written as JSON.
//! - `assets`: asset sets (`/model/assets`).
//! - `json`: a hand-written JSON writer over a reused `Vec<u8>` (ryu/itoa, no value trees).
//! - `stream`: the bounded channel that turns a blocking generator into a chunked HTTP body,
//!   so a 1 GiB response is served in bounded memory.
//! - `faults`: deterministic fault injection (errors, latency, hangs, truncation, corruption,
//!   nulls, `data:[null]`).
//! - `metrics`: the Prometheus text page for one instant.
//! - `extra`: budgets, savings (request sizing, cluster sizing, abandoned workloads), speccost.
//! - `server`: the axum router and [`serve`].
//!
//! # Conservation (the invariant every test leans on)
//!
//! For any window and cluster, the sum of allocation `totalCost` (containers, `__idle__` and
//! `__unmounted__` rows) equals the sum of asset `totalCost` (Node + Disk + LoadBalancer +
//! ClusterManagement + Network) up to float rounding (far below 1e-9 relative), because:
//! node cpu/gpu/ram cost = allocated cost + idle; every PV is either on a running statefulset
//! pod or the unmounted row; every load balancer's cost is split over its deployment's pods
//! (which always run); cluster management and node root disks are shared over the running
//! containers in proportion to running seconds (`sharedCost`); network asset = the sum of the
//! containers' `networkCost`. Adjustments are 0 and discounts 0.
//!
//! # Faithful vs simplified
//!
//! Faithful: endpoint paths, envelopes, field names and order, `pvs`/`lbAllocations` maps,
//! `__idle__`/`__unmounted__`/`__unallocated__` names, shareIdle weighting (per resource, by
//! cost, PV/network/LB not idle-shared), `totalCost` formula, NaN written as `null`, plain-text
//! 400 for a bad `window`, `data:[null]` for an empty answer (as a fault), the Prometheus metric
//! names and labels.
//!
//! Simplified: floats are written in full precision (shortest round-trip) while real Kubecost
//! rounds allocation floats to 5 decimals and asset floats to 6; map keys come in generation
//! order (Go sorts them), except aggregated sets which are sorted by key; `sharedCostBreakdown`
//! and `proportionalAssetResourceCosts` are always `{}`; daemonsets do not run one pod per node
//! (their pods are packed like the others); controller of a job pod is the job name (no
//! cronjob); idle is per cluster, merged into one `__idle__` row unless `splitIdle=true` (then
//! `<cluster>/__idle__`); the unmounted PV row takes `__unmounted__` for every aggregate
//! property except `cluster`; paging, `shareNamespaces`, `shareLabels`, `shareCost`,
//! `idleByNode`, reconciliation and `format=csv` are not implemented (ignored). A spike applies
//! to hours that start at or after its START.

mod alloc;
mod assets;
mod extra;
mod faults;
pub mod fleet;
mod json;
mod metrics;
mod server;
mod stream;

pub use fleet::Fleet;
pub use server::{Clock, router, router_with_clock, serve, serve_with_clock};

use std::str::FromStr;

/// Everything that defines a simulated fleet and how the server misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of clusters (`cluster-1` ... `cluster-N`).
    pub clusters: usize,
    /// Pod slots per cluster.
    pub pods: usize,
    /// Seed of every random quantity.
    pub seed: u64,
    /// Fault injection rates (default: none).
    pub faults: Faults,
    /// Namespace request spikes.
    pub spikes: Vec<Spike>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            clusters: 2,
            pods: 50,
            seed: 1,
            faults: Faults::default(),
            spikes: Vec::new(),
        }
    }
}

/// Fractions of requests (0..=1) that get each fault, plus a fixed latency.
///
/// Faults apply to `/model/allocation`, `/allocation`, `/allocation/compute` and
/// `/model/assets`, never to `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// HTTP 500 with Kubecost's error envelope.
    pub fail_rate: f64,
    /// Delay added to every response, in milliseconds.
    pub latency_ms: u64,
    /// Hang without answering (about an hour, or until shutdown).
    pub timeout_rate: f64,
    /// Send about half the body, then abort the connection.
    pub truncate_rate: f64,
    /// Corrupt the JSON in the middle of the body (`{{oops`), but complete the response.
    pub malformed_rate: f64,
    /// Write `null` where Kubecost writes null for NaN (efficiencies, usage averages,
    /// `rawAllocationOnly`), never in cost fields.
    pub nan_rate: f64,
    /// Answer `{"code":200,"data":[null]}`.
    pub null_data_rate: f64,
}

/// From `start` on, the pods of `namespace` request (and use) `factor` × their resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    /// Namespace the spike applies to (in every cluster).
    pub namespace: String,
    /// Multiplier of requests and usage.
    pub factor: f64,
    /// Unix seconds; applies to hours starting at or after this instant.
    pub start: i64,
}

/// Why a `--spike` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpikeError {
    #[error("spike must be NAMESPACE:FACTOR:START, got {0:?}")]
    Shape(String),
    #[error("spike factor must be a finite number >= 0, got {0:?}")]
    Factor(String),
    #[error("spike start must be RFC3339 or unix seconds, got {0:?}")]
    Start(String),
}

impl FromStr for Spike {
    type Err = SpikeError;

    /// Parses `NAMESPACE:FACTOR:START` where START is RFC3339 (which contains colons) or unix
    /// seconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, rest) = s
            .split_once(':')
            .ok_or_else(|| SpikeError::Shape(s.to_string()))?;
        let (factor, start) = rest
            .split_once(':')
            .ok_or_else(|| SpikeError::Shape(s.to_string()))?;
        if namespace.is_empty() {
            return Err(SpikeError::Shape(s.to_string()));
        }
        let factor_v: f64 = factor
            .trim()
            .parse()
            .map_err(|_| SpikeError::Factor(factor.to_string()))?;
        if !factor_v.is_finite() || factor_v < 0.0 {
            return Err(SpikeError::Factor(factor.to_string()));
        }
        let start_v = kb_core::window::parse_instant(start)
            .ok_or_else(|| SpikeError::Start(start.to_string()))?;
        Ok(Spike {
            namespace: namespace.to_string(),
            factor: factor_v,
            start: start_v,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spike_parses_rfc3339_and_unix() {
        let s: Spike = "payments:3.5:2024-01-02T03:00:00Z".parse().unwrap();
        assert_eq!(s.namespace, "payments");
        assert_eq!(s.factor, 3.5);
        assert_eq!(s.start, 1_704_164_400);
        let s: Spike = "kube-system:2:1704164400".parse().unwrap();
        assert_eq!(s.start, 1_704_164_400);
        assert!("x".parse::<Spike>().is_err());
        assert!("x:y:1".parse::<Spike>().is_err());
        assert!("x:2:never".parse::<Spike>().is_err());
        assert!("x:-1:1".parse::<Spike>().is_err());
    }
}
