//! Optimisation advice from allocation usage against requests: container right-sizing, idle
//! (abandoned) workloads, and each cluster's idle share, each with an estimated monthly saving.
//!
//! Right-sizing, per container of a workload (`cluster, namespace, controller kind, controller,
//! container`): the recommended request is the `quantile` (p95) of the per-row average usage
//! times `1 + headroom`, at least `min_cpu_cores` / `min_ram_bytes`. The saving uses Kubecost's
//! allocation rule (a container is charged for `max(request, usage)`): the allocated
//! quantity-hours observed, minus `Σ max(recommended, usage) × hours`, at the rows' own price
//! per quantity-hour, scaled to a 730-hour month over the observed period. Advice is given
//! when the request changes by at least `min_change` (relative); an increase (usage above
//! request) is advice with a negative saving.
//!
//! Idle workloads, per controller: average CPU usage below `idle_cpu_cores` and network
//! traffic below `idle_network_bytes_per_hour`; the saving is the workload's whole cost rate.
//!
//! Rows with a non-finite number, idle and unmounted rows are ignored.

use std::collections::BTreeMap;

use kb_core::model::{Allocation, SavingsKind, SavingsRecommendation, UNMOUNTED};

use crate::calendar::HOURS_PER_MONTH;

/// Settings of the advice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizeConfig {
    /// Usage quantile the request should cover (0.95).
    pub quantile: f64,
    /// Extra above the quantile (0.2 = 20%).
    pub headroom: f64,
    pub min_cpu_cores: f64,
    pub min_ram_bytes: f64,
    /// Smallest relative request change worth advising.
    pub min_change: f64,
    /// Smallest |monthly saving| worth advising.
    pub min_monthly_savings: f64,
    pub idle_cpu_cores: f64,
    pub idle_network_bytes_per_hour: f64,
    /// Observed hours a workload needs before any advice.
    pub min_hours: f64,
}

impl Default for OptimizeConfig {
    fn default() -> Self {
        OptimizeConfig {
            quantile: 0.95,
            headroom: 0.2,
            min_cpu_cores: 0.01,
            min_ram_bytes: 32.0 * 1024.0 * 1024.0,
            min_change: 0.1,
            min_monthly_savings: 0.01,
            idle_cpu_cores: 0.005,
            idle_network_bytes_per_hour: 1024.0 * 1024.0,
            min_hours: 24.0,
        }
    }
}

/// Advice for one resource of one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceAdvice {
    /// Average request while running (cores or bytes).
    pub current_request: f64,
    /// The usage quantile.
    pub usage_quantile: f64,
    pub recommended_request: f64,
    /// Positive: saved; negative: the change costs more (an increase).
    pub monthly_savings: f64,
}

/// Right-sizing advice for one container of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct RightSizing {
    pub cluster: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    pub container: String,
    /// Rows (container-windows) observed.
    pub samples: usize,
    pub cpu: ResourceAdvice,
    pub ram: ResourceAdvice,
    /// Saving of the resources whose change passes the thresholds.
    pub monthly_savings: f64,
    /// The container's CPU and RAM cost per 730-hour month over the observed period.
    pub monthly_cost: f64,
}

/// A workload that does (almost) nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleWorkload {
    pub cluster: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    pub cpu_usage_cores: f64,
    pub network_bytes_per_hour: f64,
    /// Its whole cost per 730-hour month.
    pub monthly_savings: f64,
}

/// A cluster's idle share.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterIdle {
    pub cluster: String,
    pub idle_cost: f64,
    pub total_cost: f64,
    /// `idle_cost / total_cost`.
    pub idle_share: f64,
    /// Idle cost per 730-hour month over the observed period.
    pub monthly_idle_cost: f64,
}

/// All advice, each list sorted by saving (largest first), then key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advice {
    pub right_sizing: Vec<RightSizing>,
    pub idle_workloads: Vec<IdleWorkload>,
    pub cluster_idle: Vec<ClusterIdle>,
    /// Workload cost per month over the observed period (idle excluded).
    pub monthly_cost: f64,
    /// Right-sizing savings (positive ones) plus idle workloads, without double counting a
    /// workload that is both.
    pub monthly_savings: f64,
}

#[derive(Debug, Default)]
struct Res {
    samples: Vec<(f64, f64)>, // (usage rate, hours)
    req_h: f64,
    alloc_h: f64,
    cost: f64,
}

impl Res {
    fn add(&mut self, usage: f64, req: f64, alloc_h: f64, cost: f64, hours: f64) {
        self.samples.push((usage.max(0.0), hours));
        self.req_h += req.max(0.0) * hours;
        self.alloc_h += alloc_h.max(0.0);
        self.cost += cost;
    }

    fn advise(
        &mut self,
        hours: f64,
        span_h: f64,
        min: f64,
        cfg: &OptimizeConfig,
    ) -> Option<ResourceAdvice> {
        if hours <= 0.0 || span_h <= 0.0 || self.samples.is_empty() {
            return None;
        }
        self.samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let rank = ((cfg.quantile.clamp(0.0, 1.0) * self.samples.len() as f64).ceil() as usize)
            .clamp(1, self.samples.len());
        let q = self.samples.get(rank - 1).map_or(0.0, |s| s.0);
        let rec = (q * (1.0 + cfg.headroom.max(0.0))).max(min);
        let current = self.req_h / hours;
        let price = if self.alloc_h > 0.0 {
            self.cost / self.alloc_h
        } else {
            0.0
        };
        let after_h: f64 = self.samples.iter().map(|(u, h)| u.max(rec) * h).sum();
        let saving = (self.alloc_h - after_h) * price * HOURS_PER_MONTH / span_h;
        Some(ResourceAdvice {
            current_request: current,
            usage_quantile: q,
            recommended_request: rec,
            monthly_savings: saving,
        })
    }
}

#[derive(Debug, Default)]
struct ContainerAcc {
    cpu: Res,
    ram: Res,
    hours: f64,
}

#[derive(Debug, Default)]
struct WorkloadAcc {
    hours: f64,
    cpu_core_h_used: f64,
    net_bytes: f64,
    cost: f64,
}

fn finite_row(a: &Allocation) -> bool {
    [
        a.minutes,
        a.cpu_core_usage_average,
        a.cpu_core_request_average,
        a.cpu_core_hours,
        a.cpu_cost,
        a.ram_byte_usage_average,
        a.ram_byte_request_average,
        a.ram_byte_hours,
        a.ram_cost,
        a.network_transfer_bytes,
        a.network_receive_bytes,
    ]
    .iter()
    .all(|v| v.is_finite())
        && kb_core::cost::allocation_total(a).is_finite()
}

type WKey<'a> = (&'a str, &'a str, &'a str, &'a str);

/// Computes the advice from allocation rows of any number of windows (container rows give
/// per-container right-sizing; coarser rows give coarser advice).
pub fn advise(allocs: &[Allocation], cfg: &OptimizeConfig) -> Advice {
    let mut containers: BTreeMap<(WKey<'_>, &str), ContainerAcc> = BTreeMap::new();
    let mut workloads: BTreeMap<WKey<'_>, WorkloadAcc> = BTreeMap::new();
    let mut clusters: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for a in allocs.iter().filter(|a| finite_row(a)) {
        lo = lo.min(a.window.start);
        hi = hi.max(a.window.end);
        let total = kb_core::cost::allocation_total(a);
        let c = clusters.entry(a.cluster.as_str()).or_default();
        c.1 += total;
        if a.is_idle() {
            c.0 += total;
            continue;
        }
        if a.pod == UNMOUNTED || a.container == UNMOUNTED {
            continue;
        }
        let hours = a.minutes / 60.0;
        let wk = (
            a.cluster.as_str(),
            a.namespace.as_str(),
            a.controller_kind.as_str(),
            a.controller.as_str(),
        );
        let w = workloads.entry(wk).or_default();
        w.hours += hours;
        w.cpu_core_h_used += a.cpu_core_usage_average * hours;
        w.net_bytes += a.network_transfer_bytes + a.network_receive_bytes;
        w.cost += total;
        if hours <= 0.0 {
            continue;
        }
        let ca = containers.entry((wk, a.container.as_str())).or_default();
        ca.hours += hours;
        ca.cpu.add(
            a.cpu_core_usage_average,
            a.cpu_core_request_average,
            a.cpu_core_hours,
            a.cpu_cost + a.cpu_cost_adjustment - a.cpu_cost_idle,
            hours,
        );
        ca.ram.add(
            a.ram_byte_usage_average,
            a.ram_byte_request_average,
            a.ram_byte_hours,
            a.ram_cost + a.ram_cost_adjustment - a.ram_cost_idle,
            hours,
        );
    }
    let span_h = if hi > lo {
        (hi - lo) as f64 / 3600.0
    } else {
        0.0
    };
    let mut advice = Advice::default();
    if span_h <= 0.0 {
        return advice;
    }
    let mut idle_keys = std::collections::BTreeSet::new();
    for (k, w) in &workloads {
        advice.monthly_cost += w.cost * HOURS_PER_MONTH / span_h;
        if w.hours < cfg.min_hours || k.3.is_empty() {
            continue;
        }
        let cpu = w.cpu_core_h_used / w.hours;
        let net = w.net_bytes / w.hours;
        if cpu < cfg.idle_cpu_cores && net < cfg.idle_network_bytes_per_hour {
            idle_keys.insert(*k);
            advice.idle_workloads.push(IdleWorkload {
                cluster: k.0.to_string(),
                namespace: k.1.to_string(),
                controller_kind: k.2.to_string(),
                controller: k.3.to_string(),
                cpu_usage_cores: cpu,
                network_bytes_per_hour: net,
                monthly_savings: w.cost * HOURS_PER_MONTH / span_h,
            });
        }
    }
    for ((k, container), mut c) in containers {
        if c.hours < cfg.min_hours {
            continue;
        }
        let samples = c.cpu.samples.len();
        let monthly_cost = (c.cpu.cost + c.ram.cost) * HOURS_PER_MONTH / span_h;
        let (Some(cpu), Some(ram)) = (
            c.cpu.advise(c.hours, span_h, cfg.min_cpu_cores, cfg),
            c.ram.advise(c.hours, span_h, cfg.min_ram_bytes, cfg),
        ) else {
            continue;
        };
        let worth = |r: &ResourceAdvice| {
            let base = r.current_request.max(f64::MIN_POSITIVE);
            (r.recommended_request - r.current_request).abs() / base >= cfg.min_change
                && r.monthly_savings.abs() >= cfg.min_monthly_savings
        };
        let saving = [cpu, ram]
            .iter()
            .filter(|r| worth(r))
            .map(|r| r.monthly_savings)
            .sum::<f64>();
        if !worth(&cpu) && !worth(&ram) {
            continue;
        }
        if saving > 0.0 && !idle_keys.contains(&k) {
            advice.monthly_savings += saving;
        }
        advice.right_sizing.push(RightSizing {
            cluster: k.0.to_string(),
            namespace: k.1.to_string(),
            controller_kind: k.2.to_string(),
            controller: k.3.to_string(),
            container: container.to_string(),
            samples,
            cpu,
            ram,
            monthly_savings: saving,
            monthly_cost,
        });
    }
    advice.monthly_savings += advice
        .idle_workloads
        .iter()
        .map(|w| w.monthly_savings)
        .sum::<f64>();
    for (cluster, (idle, total)) in clusters {
        advice.cluster_idle.push(ClusterIdle {
            cluster: cluster.to_string(),
            idle_cost: idle,
            total_cost: total,
            idle_share: if total > 0.0 { idle / total } else { 0.0 },
            monthly_idle_cost: idle * HOURS_PER_MONTH / span_h,
        });
    }
    advice
        .right_sizing
        .sort_by(|a, b| b.monthly_savings.total_cmp(&a.monthly_savings));
    advice
        .idle_workloads
        .sort_by(|a, b| b.monthly_savings.total_cmp(&a.monthly_savings));
    advice
}

fn fmt_cores(c: f64) -> String {
    format!("{:.0}m", c * 1000.0)
}

fn fmt_bytes(b: f64) -> String {
    format!("{:.0}Mi", b / (1024.0 * 1024.0))
}

/// Converts advice into Kubecost-shaped savings recommendations (the store's `savings` table).
pub fn to_savings(advice: &Advice) -> Vec<SavingsRecommendation> {
    let mut out: Vec<SavingsRecommendation> = advice
        .right_sizing
        .iter()
        .map(|r| SavingsRecommendation {
            kind: SavingsKind::RequestSizing,
            cluster: r.cluster.clone(),
            namespace: r.namespace.clone(),
            controller_kind: r.controller_kind.clone(),
            controller: r.controller.clone(),
            target: r.container.clone(),
            monthly_savings: r.monthly_savings,
            detail: format!(
                "cpu {} -> {}, ram {} -> {}",
                fmt_cores(r.cpu.current_request),
                fmt_cores(r.cpu.recommended_request),
                fmt_bytes(r.ram.current_request),
                fmt_bytes(r.ram.recommended_request)
            ),
        })
        .collect();
    out.extend(advice.idle_workloads.iter().map(|w| SavingsRecommendation {
        kind: SavingsKind::AbandonedWorkload,
        cluster: w.cluster.clone(),
        namespace: w.namespace.clone(),
        controller_kind: w.controller_kind.clone(),
        controller: w.controller.clone(),
        target: String::new(),
        monthly_savings: w.monthly_savings,
        detail: format!(
            "cpu {} used, {:.0} B/h network",
            fmt_cores(w.cpu_usage_cores),
            w.network_bytes_per_hour
        ),
    }));
    out
}
