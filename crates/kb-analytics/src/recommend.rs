//! The bridge's own recommendations, one list per cluster: container right-sizing and
//! abandoned workloads (from [`crate::optimize::advise`]), node-pool sizing and spot
//! candidates. Each names its target, says what it costs now and what it would save per
//! 730-hour month, in the currency of the input.
//!
//! Node-pool sizing, per pool (a pool label such as `cloud_google_com_gke_nodepool` or
//! `eks_amazonaws_com_nodegroup` on the node assets, otherwise instance type plus spot or
//! on-demand): the allocated CPU and RAM of the pool's pods per window (Kubecost's
//! `max(request, usage)`), its `quantile` (p95) over the observed windows, and the nodes of the
//! pool's average size that hold it at `node_target_utilization`; when that is at least one
//! node fewer than the pool averages, the saving is the removed nodes at the pool's average
//! node cost. It frees the capacity idle today; right-sizing frees the over-requested part of
//! what is allocated, so the two add up.
//!
//! Spot candidates, per workload: a Deployment or ReplicaSet (never a StatefulSet, DaemonSet
//! or Job) with no persistent volume, running at least `spot_min_replicas` pods in the median
//! window, not abandoned, with compute on on-demand nodes (assets with `preemptible = 0`). The
//! saving is `spot_discount` of that on-demand compute cost after its right-sizing saving (so
//! the two never count the same money twice).
//!
//! Rows with a non-finite number are ignored, like in [`crate::optimize`].

use std::collections::{BTreeMap, BTreeSet};

use kb_core::model::{Allocation, Asset, AssetType, UNMOUNTED};

use crate::calendar::HOURS_PER_MONTH;
use crate::optimize::{Advice, OptimizeConfig, advise};

/// Settings of the recommendations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecommendConfig {
    /// Right-sizing and idle-workload settings (the quantile is also the node pools').
    pub optimize: OptimizeConfig,
    /// Allocated share of a node's CPU and RAM a resized pool should run at (0.8).
    pub node_target_utilization: f64,
    /// A pool keeps at least this many nodes.
    pub min_nodes: u32,
    /// Price cut of spot over on-demand capacity (0.6 = 60% cheaper).
    pub spot_discount: f64,
    /// Replicas (pods in the median window) a workload needs to be a spot candidate.
    pub spot_min_replicas: u32,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig {
            optimize: OptimizeConfig::default(),
            node_target_utilization: 0.8,
            min_nodes: 1,
            spot_discount: 0.6,
            spot_min_replicas: 2,
        }
    }
}

/// What a recommendation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecommendationKind {
    /// A container's CPU and RAM requests.
    RequestSizing,
    /// A workload that does (almost) nothing.
    AbandonedWorkload,
    /// Fewer nodes in a node pool.
    NodePoolSizing,
    /// A stateless, replicated workload that could run on spot nodes.
    SpotCandidate,
}

impl RecommendationKind {
    pub const ALL: [RecommendationKind; 4] = [
        RecommendationKind::RequestSizing,
        RecommendationKind::AbandonedWorkload,
        RecommendationKind::NodePoolSizing,
        RecommendationKind::SpotCandidate,
    ];

    /// The stored and served name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecommendationKind::RequestSizing => "request_sizing",
            RecommendationKind::AbandonedWorkload => "abandoned_workload",
            RecommendationKind::NodePoolSizing => "node_pool_sizing",
            RecommendationKind::SpotCandidate => "spot_candidate",
        }
    }

    /// Parses [`RecommendationKind::as_str`]'s output.
    pub fn parse(s: &str) -> Option<RecommendationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub kind: RecommendationKind,
    pub cluster: String,
    /// Empty for a node pool.
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    /// The container (request sizing), the node pool (node-pool sizing), else empty.
    pub target: String,
    /// What to change, with the figures behind it.
    pub description: String,
    /// What the target costs per month now.
    pub current_monthly_cost: f64,
    /// Estimated saving per month (negative: an increase the advice asks for).
    pub monthly_savings: f64,
}

/// A node pool's sizing.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePoolAdvice {
    pub cluster: String,
    pub pool: String,
    /// Average nodes over the observed period.
    pub nodes: f64,
    pub node_cpu_cores: f64,
    pub node_ram_bytes: f64,
    /// Allocated CPU and RAM at the quantile, as a share of the pool's average capacity.
    pub cpu_allocation: f64,
    pub ram_allocation: f64,
    /// Nodes that hold the quantile at the target utilisation.
    pub recommended_nodes: u32,
    pub monthly_cost: f64,
    pub monthly_savings: f64,
}

/// A workload that could run on spot nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotCandidate {
    pub cluster: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    /// Pods in the median window.
    pub replicas: u32,
    /// Compute cost on on-demand nodes per month.
    pub monthly_on_demand_cost: f64,
    pub monthly_savings: f64,
}

/// Every recommendation for the clusters of the input, largest saving first (then kind and
/// target), with the figures to judge them by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recommendations {
    pub items: Vec<Recommendation>,
    /// Per cluster: everything its allocation rows cost (idle included) per month.
    pub monthly_cost: BTreeMap<String, f64>,
    /// The right-sizing and idle advice the list was built from.
    pub advice: Advice,
    pub node_pools: Vec<NodePoolAdvice>,
    pub spot: Vec<SpotCandidate>,
}

impl Recommendations {
    /// The cluster's total saving (increases net off).
    pub fn monthly_savings(&self, cluster: &str) -> f64 {
        self.items
            .iter()
            .filter(|r| r.cluster == cluster)
            .map(|r| r.monthly_savings)
            .sum()
    }
}

/// Labels naming a node's pool, most specific first (Kubecost may prefix them `label_`).
const POOL_LABELS: &[&str] = &[
    "cloud_google_com_gke_nodepool",
    "eks_amazonaws_com_nodegroup",
    "karpenter_sh_nodepool",
    "kubernetes_azure_com_agentpool",
    "agentpool",
    "node_pool",
    "nodepool",
];

/// The pool a node asset belongs to.
pub fn node_pool(node: &Asset) -> String {
    for key in POOL_LABELS {
        let found = node
            .labels
            .iter()
            .find(|(k, _)| k == key || k.strip_prefix("label_").is_some_and(|rest| rest == *key));
        if let Some((_, v)) = found.filter(|(_, v)| !v.is_empty()) {
            return v.clone();
        }
    }
    let ty = if node.node_type.is_empty() {
        node.labels
            .iter()
            .find(|(k, _)| k.trim_start_matches("label_") == "node_kubernetes_io_instance_type")
            .map_or("unknown", |(_, v)| v.as_str())
    } else {
        node.node_type.as_str()
    };
    let class = if node.preemptible > 0.0 {
        "spot"
    } else {
        "on-demand"
    };
    format!("{ty} {class}")
}

#[derive(Debug, Default)]
struct PoolAcc {
    names: BTreeSet<String>,
    node_hours: f64,
    core_hours: f64,
    byte_hours: f64,
    cost: f64,
    lo: i64,
    hi: i64,
}

fn finite_asset(a: &Asset) -> bool {
    [a.minutes, a.cpu_core_hours, a.ram_byte_hours, a.total_cost]
        .iter()
        .all(|v| v.is_finite())
}

fn finite_alloc(a: &Allocation) -> bool {
    [
        a.minutes,
        a.cpu_core_hours,
        a.ram_byte_hours,
        a.cpu_cost,
        a.cpu_cost_adjustment,
        a.ram_cost,
        a.ram_cost_adjustment,
        a.gpu_cost,
        a.gpu_cost_adjustment,
        a.pv_cost,
        a.pv_bytes,
    ]
    .iter()
    .all(|v| v.is_finite())
        && kb_core::cost::allocation_total(a).is_finite()
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values.get(rank - 1).copied().unwrap_or(0.0)
}

fn gib(b: f64) -> f64 {
    b / (1024.0 * 1024.0 * 1024.0)
}

/// Node-pool sizing from the pods' allocation rows and the node assets of the same period.
pub fn node_pools(
    allocs: &[Allocation],
    nodes: &[Asset],
    cfg: &RecommendConfig,
) -> Vec<NodePoolAdvice> {
    let mut pools: BTreeMap<(&str, String), PoolAcc> = BTreeMap::new();
    let mut pool_of: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for n in nodes
        .iter()
        .filter(|n| n.asset_type == AssetType::Node && finite_asset(n) && n.minutes > 0.0)
    {
        let pool = node_pool(n);
        pool_of.insert((n.cluster.as_str(), n.name.as_str()), pool.clone());
        let p = pools
            .entry((n.cluster.as_str(), pool))
            .or_insert_with(|| PoolAcc {
                lo: i64::MAX,
                hi: i64::MIN,
                ..PoolAcc::default()
            });
        p.names.insert(n.name.clone());
        p.node_hours += n.minutes / 60.0;
        p.core_hours += n.cpu_core_hours;
        p.byte_hours += n.ram_byte_hours;
        p.cost += n.total_cost;
        p.lo = p.lo.min(n.window.start);
        p.hi = p.hi.max(n.window.end);
    }
    // Allocated cores and bytes per pool and window, and every window each cluster has.
    let mut used: BTreeMap<(&str, &str, i64), (f64, f64)> = BTreeMap::new();
    let mut windows: BTreeMap<&str, BTreeSet<(i64, i64)>> = BTreeMap::new();
    for a in allocs.iter().filter(|a| finite_alloc(a)) {
        let w = (a.window.start, a.window.end);
        windows.entry(a.cluster.as_str()).or_default().insert(w);
        if a.is_idle() || a.window.end <= a.window.start {
            continue;
        }
        let Some(pool) = pool_of.get(&(a.cluster.as_str(), a.node.as_str())) else {
            continue;
        };
        let hours = (a.window.end - a.window.start) as f64 / 3600.0;
        let e = used
            .entry((a.cluster.as_str(), pool.as_str(), a.window.start))
            .or_default();
        e.0 += a.cpu_core_hours.max(0.0) / hours;
        e.1 += a.ram_byte_hours.max(0.0) / hours;
    }
    let target = cfg.node_target_utilization.clamp(0.05, 1.0);
    let mut out = Vec::new();
    for ((cluster, pool), p) in pools {
        let span_h = (p.hi - p.lo) as f64 / 3600.0;
        if span_h <= 0.0 || p.node_hours <= 0.0 || p.node_hours < cfg.optimize.min_hours {
            continue;
        }
        let Some(ws) = windows.get(cluster) else {
            continue;
        };
        let (mut cpu, mut ram): (Vec<f64>, Vec<f64>) = ws
            .iter()
            .map(|(s, _)| {
                used.get(&(cluster, pool.as_str(), *s))
                    .copied()
                    .unwrap_or((0.0, 0.0))
            })
            .unzip();
        let q_cpu = quantile(&mut cpu, cfg.optimize.quantile);
        let q_ram = quantile(&mut ram, cfg.optimize.quantile);
        let nodes_avg = p.node_hours / span_h;
        let node_cores = p.core_hours / p.node_hours;
        let node_ram = p.byte_hours / p.node_hours;
        let need = |q: f64, per_node: f64| {
            if per_node > 0.0 {
                (q / (per_node * target)).ceil()
            } else {
                0.0
            }
        };
        let recommended = need(q_cpu, node_cores)
            .max(need(q_ram, node_ram))
            .max(f64::from(cfg.min_nodes));
        let monthly_cost = p.cost * HOURS_PER_MONTH / span_h;
        let removable = nodes_avg - recommended;
        let monthly_savings = if removable >= 1.0 {
            removable * monthly_cost / nodes_avg
        } else {
            0.0
        };
        let share = |q: f64, cap: f64| if cap > 0.0 { q / cap } else { 0.0 };
        out.push(NodePoolAdvice {
            cluster: cluster.to_string(),
            pool,
            nodes: nodes_avg,
            node_cpu_cores: node_cores,
            node_ram_bytes: node_ram,
            cpu_allocation: share(q_cpu, node_cores * nodes_avg),
            ram_allocation: share(q_ram, node_ram * nodes_avg),
            recommended_nodes: recommended.min(f64::from(u32::MAX)) as u32,
            monthly_cost,
            monthly_savings,
        });
    }
    out
}

#[derive(Debug, Default)]
struct SpotAcc {
    stateful: bool,
    on_demand_cost: f64,
    known_cost: f64,
    pods: BTreeMap<i64, BTreeSet<String>>,
}

fn is_replicated_kind(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("deployment") || kind.eq_ignore_ascii_case("replicaset")
}

fn compute_cost(a: &Allocation) -> f64 {
    a.cpu_cost
        + a.cpu_cost_adjustment
        + a.ram_cost
        + a.ram_cost_adjustment
        + a.gpu_cost
        + a.gpu_cost_adjustment
}

/// Spot candidates; `advice` gives the right-sizing savings to deduct and the abandoned
/// workloads to leave out.
pub fn spot_candidates(
    allocs: &[Allocation],
    nodes: &[Asset],
    advice: &Advice,
    cfg: &RecommendConfig,
) -> Vec<SpotCandidate> {
    let spot: BTreeMap<(&str, &str), bool> = nodes
        .iter()
        .filter(|n| n.asset_type == AssetType::Node)
        .map(|n| ((n.cluster.as_str(), n.name.as_str()), n.preemptible > 0.0))
        .collect();
    let mut spans: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut acc: BTreeMap<(&str, &str, &str, &str), SpotAcc> = BTreeMap::new();
    for a in allocs.iter().filter(|a| finite_alloc(a)) {
        let s = spans
            .entry(a.cluster.as_str())
            .or_insert((i64::MAX, i64::MIN));
        s.0 = s.0.min(a.window.start);
        s.1 = s.1.max(a.window.end);
        if a.is_idle() || a.pod == UNMOUNTED || a.controller.is_empty() {
            continue;
        }
        let key = (
            a.cluster.as_str(),
            a.namespace.as_str(),
            a.controller_kind.as_str(),
            a.controller.as_str(),
        );
        if !is_replicated_kind(key.2) {
            continue;
        }
        let w = acc.entry(key).or_default();
        if a.pv_bytes > 0.0 || a.pv_cost != 0.0 {
            w.stateful = true;
        }
        w.pods
            .entry(a.window.start)
            .or_default()
            .insert(a.pod.clone());
        let c = compute_cost(a);
        match spot.get(&(a.cluster.as_str(), a.node.as_str())) {
            Some(false) => {
                w.on_demand_cost += c;
                w.known_cost += c;
            }
            Some(true) => w.known_cost += c,
            None => {}
        }
    }
    let abandoned: BTreeSet<(&str, &str, &str, &str)> = advice
        .idle_workloads
        .iter()
        .map(|w| {
            (
                w.cluster.as_str(),
                w.namespace.as_str(),
                w.controller_kind.as_str(),
                w.controller.as_str(),
            )
        })
        .collect();
    let mut sizing: BTreeMap<(&str, &str, &str, &str), (f64, f64)> = BTreeMap::new();
    for r in &advice.right_sizing {
        let e = sizing
            .entry((
                r.cluster.as_str(),
                r.namespace.as_str(),
                r.controller_kind.as_str(),
                r.controller.as_str(),
            ))
            .or_default();
        e.0 += r.monthly_savings.max(0.0);
        e.1 += r.monthly_cost;
    }
    let discount = cfg.spot_discount.clamp(0.0, 1.0);
    let mut out = Vec::new();
    for (k, w) in acc {
        if w.stateful || abandoned.contains(&k) || w.on_demand_cost <= 0.0 {
            continue;
        }
        let Some(&(lo, hi)) = spans.get(k.0) else {
            continue;
        };
        let span_h = (hi - lo) as f64 / 3600.0;
        if span_h <= 0.0 {
            continue;
        }
        let mut counts: Vec<f64> = w.pods.values().map(|p| p.len() as f64).collect();
        let replicas = quantile(&mut counts, 0.5) as u32;
        if replicas < cfg.spot_min_replicas {
            continue;
        }
        let on_demand = w.on_demand_cost * HOURS_PER_MONTH / span_h;
        // The right-sizing saving falls on the on-demand part in proportion.
        let share = if w.known_cost > 0.0 {
            w.on_demand_cost / w.known_cost
        } else {
            0.0
        };
        let sized = sizing.get(&k).map_or(0.0, |s| s.0);
        let base = (on_demand - sized * share).max(0.0);
        let saving = discount * base;
        if saving < cfg.optimize.min_monthly_savings {
            continue;
        }
        out.push(SpotCandidate {
            cluster: k.0.to_string(),
            namespace: k.1.to_string(),
            controller_kind: k.2.to_string(),
            controller: k.3.to_string(),
            replicas,
            monthly_on_demand_cost: on_demand,
            monthly_savings: saving,
        });
    }
    out
}

fn cores(c: f64) -> String {
    format!("{:.0}m", c * 1000.0)
}

fn mib(b: f64) -> String {
    format!("{:.0}Mi", b / (1024.0 * 1024.0))
}

/// Every recommendation from the allocation rows and node assets of an observed period.
pub fn recommend(allocs: &[Allocation], nodes: &[Asset], cfg: &RecommendConfig) -> Recommendations {
    let advice = advise(allocs, &cfg.optimize);
    let pools = node_pools(allocs, nodes, cfg);
    let spot = spot_candidates(allocs, nodes, &advice, cfg);
    let mut monthly_cost = BTreeMap::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for a in allocs.iter().filter(|a| finite_alloc(a)) {
        lo = lo.min(a.window.start);
        hi = hi.max(a.window.end);
    }
    let span_h = if hi > lo {
        (hi - lo) as f64 / 3600.0
    } else {
        0.0
    };
    for c in &advice.cluster_idle {
        if span_h > 0.0 {
            monthly_cost.insert(c.cluster.clone(), c.total_cost * HOURS_PER_MONTH / span_h);
        }
    }
    let abandoned: BTreeSet<(&str, &str, &str, &str)> = advice
        .idle_workloads
        .iter()
        .map(|w| {
            (
                w.cluster.as_str(),
                w.namespace.as_str(),
                w.controller_kind.as_str(),
                w.controller.as_str(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for r in &advice.right_sizing {
        let k = (
            r.cluster.as_str(),
            r.namespace.as_str(),
            r.controller_kind.as_str(),
            r.controller.as_str(),
        );
        if abandoned.contains(&k) {
            continue; // the abandoned-workload advice covers its whole cost
        }
        items.push(Recommendation {
            kind: RecommendationKind::RequestSizing,
            cluster: r.cluster.clone(),
            namespace: r.namespace.clone(),
            controller_kind: r.controller_kind.clone(),
            controller: r.controller.clone(),
            target: r.container.clone(),
            description: format!(
                "requests cpu {} -> {}, ram {} -> {} (p{:.0} usage {} cpu, {} ram, plus {:.0}% headroom)",
                cores(r.cpu.current_request),
                cores(r.cpu.recommended_request),
                mib(r.ram.current_request),
                mib(r.ram.recommended_request),
                cfg.optimize.quantile * 100.0,
                cores(r.cpu.usage_quantile),
                mib(r.ram.usage_quantile),
                cfg.optimize.headroom * 100.0
            ),
            current_monthly_cost: r.monthly_cost,
            monthly_savings: r.monthly_savings,
        });
    }
    for w in &advice.idle_workloads {
        items.push(Recommendation {
            kind: RecommendationKind::AbandonedWorkload,
            cluster: w.cluster.clone(),
            namespace: w.namespace.clone(),
            controller_kind: w.controller_kind.clone(),
            controller: w.controller.clone(),
            target: String::new(),
            description: format!(
                "uses {} cpu and {:.0} B/h of network on average: remove it or scale it to zero",
                cores(w.cpu_usage_cores),
                w.network_bytes_per_hour
            ),
            current_monthly_cost: w.monthly_savings,
            monthly_savings: w.monthly_savings,
        });
    }
    for p in pools.iter().filter(|p| p.monthly_savings > 0.0) {
        items.push(Recommendation {
            kind: RecommendationKind::NodePoolSizing,
            cluster: p.cluster.clone(),
            namespace: String::new(),
            controller_kind: String::new(),
            controller: String::new(),
            target: p.pool.clone(),
            description: format!(
                "{:.1} nodes of {:.1} cores / {:.1} GiB with p{:.0} allocation {:.0}% cpu, {:.0}% ram: \
                 {} nodes keep it under {:.0}%",
                p.nodes,
                p.node_cpu_cores,
                gib(p.node_ram_bytes),
                cfg.optimize.quantile * 100.0,
                p.cpu_allocation * 100.0,
                p.ram_allocation * 100.0,
                p.recommended_nodes,
                cfg.node_target_utilization * 100.0
            ),
            current_monthly_cost: p.monthly_cost,
            monthly_savings: p.monthly_savings,
        });
    }
    for s in &spot {
        items.push(Recommendation {
            kind: RecommendationKind::SpotCandidate,
            cluster: s.cluster.clone(),
            namespace: s.namespace.clone(),
            controller_kind: s.controller_kind.clone(),
            controller: s.controller.clone(),
            target: String::new(),
            description: format!(
                "stateless {} with {} replicas on on-demand nodes: run it on spot ({:.0}% cheaper)",
                s.controller_kind,
                s.replicas,
                cfg.spot_discount * 100.0
            ),
            current_monthly_cost: s.monthly_on_demand_cost,
            monthly_savings: s.monthly_savings,
        });
    }
    items.sort_by(|a, b| {
        b.monthly_savings
            .total_cmp(&a.monthly_savings)
            .then(a.kind.cmp(&b.kind))
            .then_with(|| {
                (&a.cluster, &a.namespace, &a.controller, &a.target).cmp(&(
                    &b.cluster,
                    &b.namespace,
                    &b.controller,
                    &b.target,
                ))
            })
    });
    Recommendations {
        items,
        monthly_cost,
        advice,
        node_pools: pools,
        spot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_core::window::{HOUR, Window};

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    /// A node asset of one day: `cores` cores, `gib` GiB, costing `per_hour`.
    fn node(
        name: &str,
        pool_label: Option<&str>,
        spot: bool,
        cores: f64,
        gib: f64,
        per_hour: f64,
    ) -> Asset {
        Asset {
            asset_type: AssetType::Node,
            cluster: "c".into(),
            name: name.into(),
            node_type: "m5.xlarge".into(),
            labels: pool_label
                .map(|p| {
                    vec![(
                        "label_eks_amazonaws_com_nodegroup".to_string(),
                        p.to_string(),
                    )]
                })
                .unwrap_or_default(),
            window: Window {
                start: 0,
                end: 24 * HOUR,
            },
            minutes: 24.0 * 60.0,
            cpu_cores: cores,
            ram_bytes: gib * GIB,
            cpu_core_hours: cores * 24.0,
            ram_byte_hours: gib * GIB * 24.0,
            preemptible: if spot { 1.0 } else { 0.0 },
            total_cost: per_hour * 24.0,
            ..Asset::default()
        }
    }

    /// One pod-hour of a container: allocated `cpu` cores and `gib` GiB (request = usage),
    /// costing `cost`.
    #[allow(clippy::too_many_arguments)]
    fn pod_hour(
        hour: i64,
        kind: &str,
        ctrl: &str,
        pod: &str,
        node: &str,
        cpu: f64,
        gib: f64,
        cost: f64,
    ) -> Allocation {
        Allocation {
            name: format!("c/{node}/ns/{pod}/app"),
            cluster: "c".into(),
            node: node.into(),
            namespace: "ns".into(),
            controller_kind: kind.into(),
            controller: ctrl.into(),
            pod: pod.into(),
            container: "app".into(),
            window: Window {
                start: hour * HOUR,
                end: (hour + 1) * HOUR,
            },
            minutes: 60.0,
            cpu_core_request_average: cpu,
            cpu_core_usage_average: cpu,
            cpu_core_hours: cpu,
            cpu_cost: cost / 2.0,
            ram_byte_request_average: gib * GIB,
            ram_byte_usage_average: gib * GIB,
            ram_byte_hours: gib * GIB,
            ram_cost: cost / 2.0,
            network_transfer_bytes: 1e9,
            total_cost: cost,
            ..Allocation::default()
        }
    }

    #[test]
    fn pool_names_come_from_pool_labels_else_instance_type_and_capacity_class() {
        assert_eq!(
            node_pool(&node("a", Some("workers"), false, 4.0, 16.0, 0.2)),
            "workers"
        );
        assert_eq!(
            node_pool(&node("a", None, false, 4.0, 16.0, 0.2)),
            "m5.xlarge on-demand"
        );
        assert_eq!(
            node_pool(&node("a", None, true, 4.0, 16.0, 0.2)),
            "m5.xlarge spot"
        );
    }

    #[test]
    fn a_pool_of_four_nodes_a_quarter_allocated_needs_two() {
        // Four 4-core / 16 GiB nodes at $0.20 an hour; the pods allocate 4 cores and 8 GiB
        // every hour of the day: 25% of the CPU. At an 80% target, 4 / 3.2 -> 2 nodes.
        let nodes: Vec<Asset> = (0..4)
            .map(|i| node(&format!("n{i}"), Some("workers"), false, 4.0, 16.0, 0.2))
            .collect();
        let rows: Vec<Allocation> = (0..24)
            .flat_map(|h| {
                (0..4).map(move |i| {
                    pod_hour(
                        h,
                        "deployment",
                        "api",
                        &format!("api-{i}"),
                        &format!("n{i}"),
                        1.0,
                        2.0,
                        0.05,
                    )
                })
            })
            .collect();
        let pools = node_pools(&rows, &nodes, &RecommendConfig::default());
        assert_eq!(pools.len(), 1);
        let p = &pools[0];
        assert_eq!(p.pool, "workers");
        assert!((p.nodes - 4.0).abs() < 1e-9);
        assert!(
            (p.cpu_allocation - 0.25).abs() < 1e-9,
            "{}",
            p.cpu_allocation
        );
        assert!((p.ram_allocation - 0.125).abs() < 1e-9);
        assert_eq!(p.recommended_nodes, 2);
        // 4 nodes × $0.20 × 730 h = $584 a month; removing 2 saves half.
        assert!((p.monthly_cost - 584.0).abs() < 1e-6, "{}", p.monthly_cost);
        assert!(
            (p.monthly_savings - 292.0).abs() < 1e-6,
            "{}",
            p.monthly_savings
        );
    }

    #[test]
    fn a_full_pool_or_one_at_its_minimum_gets_no_saving() {
        // Two nodes allocated at 75%: 2 × 4 × 0.75 = 6 cores; 6 / 3.2 -> 2 nodes, no change.
        let nodes: Vec<Asset> = (0..2)
            .map(|i| node(&format!("n{i}"), None, false, 4.0, 16.0, 0.2))
            .collect();
        let rows: Vec<Allocation> = (0..24)
            .flat_map(|h| {
                (0..2).map(move |i| {
                    pod_hour(
                        h,
                        "deployment",
                        "api",
                        &format!("api-{i}"),
                        &format!("n{i}"),
                        3.0,
                        2.0,
                        0.1,
                    )
                })
            })
            .collect();
        let pools = node_pools(&rows, &nodes, &RecommendConfig::default());
        assert_eq!(pools[0].recommended_nodes, 2);
        assert_eq!(pools[0].monthly_savings, 0.0);
        // One node with almost nothing on it stays: the pool keeps `min_nodes`.
        let one = vec![node("n0", None, false, 4.0, 16.0, 0.2)];
        let rows: Vec<Allocation> = (0..24)
            .map(|h| pod_hour(h, "deployment", "api", "api-0", "n0", 0.1, 0.1, 0.01))
            .collect();
        let pools = node_pools(&rows, &one, &RecommendConfig::default());
        assert_eq!(pools[0].recommended_nodes, 1);
        assert_eq!(pools[0].monthly_savings, 0.0);
    }

    #[test]
    fn the_pool_is_sized_for_its_peak_hour_not_its_average() {
        // Four nodes; 2 hours of the day the pods allocate 12 cores (75%), else 2 cores.
        // The p95 of 24 hours is the 23rd smallest value: a peak hour, so 12 / 3.2 -> 4 nodes.
        let nodes: Vec<Asset> = (0..4)
            .map(|i| node(&format!("n{i}"), None, false, 4.0, 16.0, 0.2))
            .collect();
        let rows: Vec<Allocation> = (0..24)
            .flat_map(|h| {
                let cpu = if h >= 22 { 3.0 } else { 0.5 };
                (0..4).map(move |i| {
                    pod_hour(
                        h,
                        "deployment",
                        "api",
                        &format!("api-{i}"),
                        &format!("n{i}"),
                        cpu,
                        1.0,
                        0.05,
                    )
                })
            })
            .collect();
        let pools = node_pools(&rows, &nodes, &RecommendConfig::default());
        assert_eq!(pools[0].recommended_nodes, 4);
        assert_eq!(pools[0].monthly_savings, 0.0);
    }

    /// Two nodes, one on-demand and one spot, and a day of pods of several controllers.
    fn spot_fleet() -> (Vec<Asset>, Vec<Allocation>) {
        let nodes = vec![
            node("od", None, false, 8.0, 32.0, 0.4),
            node("sp", None, true, 8.0, 32.0, 0.12),
        ];
        let mut rows = Vec::new();
        for h in 0..24 {
            // A 3-replica deployment on the on-demand node: $0.10 an hour per pod.
            for i in 0..3 {
                rows.push(pod_hour(
                    h,
                    "deployment",
                    "web",
                    &format!("web-{i}"),
                    "od",
                    0.5,
                    1.0,
                    0.1,
                ));
            }
            // A single-replica deployment: not enough replicas.
            rows.push(pod_hour(
                h,
                "deployment",
                "solo",
                "solo-0",
                "od",
                0.5,
                1.0,
                0.1,
            ));
            // A statefulset and a daemonset with 3 pods each: never spot candidates.
            for i in 0..3 {
                rows.push(pod_hour(
                    h,
                    "statefulset",
                    "db",
                    &format!("db-{i}"),
                    "od",
                    0.5,
                    1.0,
                    0.1,
                ));
                rows.push(pod_hour(
                    h,
                    "daemonset",
                    "agent",
                    &format!("agent-{i}"),
                    "od",
                    0.5,
                    1.0,
                    0.1,
                ));
            }
            // A deployment already on spot.
            for i in 0..2 {
                rows.push(pod_hour(
                    h,
                    "deployment",
                    "batch",
                    &format!("batch-{i}"),
                    "sp",
                    0.5,
                    1.0,
                    0.03,
                ));
            }
            // A 2-replica deployment with a persistent volume: stateful in practice.
            for i in 0..2 {
                let mut r = pod_hour(
                    h,
                    "deployment",
                    "files",
                    &format!("files-{i}"),
                    "od",
                    0.5,
                    1.0,
                    0.1,
                );
                r.pv_bytes = 10.0 * GIB;
                r.pv_cost = 0.01;
                rows.push(r);
            }
        }
        (nodes, rows)
    }

    #[test]
    fn only_replicated_stateless_workloads_on_on_demand_nodes_are_spot_candidates() {
        let (nodes, rows) = spot_fleet();
        let cfg = RecommendConfig::default();
        let advice = advise(&rows, &cfg.optimize);
        let found = spot_candidates(&rows, &nodes, &advice, &cfg);
        let names: Vec<&str> = found.iter().map(|s| s.controller.as_str()).collect();
        assert_eq!(names, ["web"]);
        let web = &found[0];
        assert_eq!(web.replicas, 3);
        // 3 pods × $0.10 × 730 h = $219 on demand; at 60% off that saves $131.40.
        assert!((web.monthly_on_demand_cost - 219.0).abs() < 1e-6);
        assert!(
            (web.monthly_savings - 131.4).abs() < 1e-6,
            "{}",
            web.monthly_savings
        );
    }

    #[test]
    fn the_spot_saving_is_taken_after_right_sizing_and_follows_the_discount() {
        let (nodes, mut rows) = spot_fleet();
        // web uses a tenth of its CPU request: right-sizing saves part of its cost first.
        for r in rows.iter_mut().filter(|r| r.controller == "web") {
            r.cpu_core_usage_average = 0.05;
        }
        let cfg = RecommendConfig {
            spot_discount: 0.7,
            ..RecommendConfig::default()
        };
        let advice = advise(&rows, &cfg.optimize);
        let sized: f64 = advice
            .right_sizing
            .iter()
            .filter(|r| r.controller == "web")
            .map(|r| r.monthly_savings)
            .sum();
        assert!(sized > 0.0);
        let found = spot_candidates(&rows, &nodes, &advice, &cfg);
        let web = found.iter().find(|s| s.controller == "web").unwrap();
        assert!((web.monthly_savings - 0.7 * (219.0 - sized)).abs() < 1e-6);
    }

    #[test]
    fn recommend_lists_every_kind_once_without_double_counting_abandoned_workloads() {
        let (mut nodes, mut rows) = spot_fleet();
        nodes.push(node("od2", None, false, 8.0, 32.0, 0.4));
        nodes.push(node("od3", None, false, 8.0, 32.0, 0.4));
        // An abandoned 2-replica deployment: no CPU used, no traffic. It is advised away whole,
        // not also right-sized or moved to spot.
        for h in 0..24 {
            for i in 0..2 {
                let mut r = pod_hour(
                    h,
                    "deployment",
                    "ghost",
                    &format!("ghost-{i}"),
                    "od",
                    0.5,
                    1.0,
                    0.1,
                );
                r.cpu_core_usage_average = 0.0;
                r.network_transfer_bytes = 0.0;
                rows.push(r);
            }
        }
        let out = recommend(&rows, &nodes, &RecommendConfig::default());
        let of =
            |k: RecommendationKind| out.items.iter().filter(|r| r.kind == k).collect::<Vec<_>>();
        let ghost: Vec<_> = out
            .items
            .iter()
            .filter(|r| r.controller == "ghost")
            .collect();
        assert_eq!(ghost.len(), 1, "{ghost:?}");
        assert_eq!(ghost[0].kind, RecommendationKind::AbandonedWorkload);
        assert!((ghost[0].monthly_savings - 146.0).abs() < 1e-6);
        assert_eq!(of(RecommendationKind::SpotCandidate).len(), 1);
        let pools = of(RecommendationKind::NodePoolSizing);
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].target, "m5.xlarge on-demand");
        assert!(
            pools[0].description.contains("3.0 nodes"),
            "{}",
            pools[0].description
        );
        let total: f64 = out.items.iter().map(|r| r.monthly_savings).sum();
        assert!((out.monthly_savings("c") - total).abs() < 1e-9);
        // Largest saving first.
        assert!(
            out.items
                .windows(2)
                .all(|w| w[0].monthly_savings >= w[1].monthly_savings)
        );
        // The cluster's month: every row's cost per hour × 730.
        let per_hour: f64 = rows
            .iter()
            .map(kb_core::cost::allocation_total)
            .sum::<f64>()
            / 24.0;
        assert!((out.monthly_cost["c"] - per_hour * 730.0).abs() < 1e-6);
    }

    #[test]
    fn kinds_round_trip() {
        for k in RecommendationKind::ALL {
            assert_eq!(RecommendationKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(RecommendationKind::parse("cluster_sizing"), None);
    }
}
