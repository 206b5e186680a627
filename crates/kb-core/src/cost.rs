//! Kubecost's cost formulas, as OpenCost implements them (`core/pkg/opencost/allocation.go`,
//! `asset.go`), and the relative error used for reconciliation.
//!
//! The bridge stores what Kubecost reports; these functions recompute it, for fixture checks,
//! for the simulator's ground truth, and to flag rows whose `totalCost` does not match its parts.

use crate::model::{Allocation, Asset, AssetType};

/// Returns `totalCost` from an allocation's parts:
/// the sum of every resource cost plus its adjustment, plus shared and external cost.
/// The network breakdown (`networkCrossZoneCost`, ...) is part of `networkCost`, not added again.
pub fn allocation_total(a: &Allocation) -> f64 {
    (a.cpu_cost + a.cpu_cost_adjustment)
        + (a.gpu_cost + a.gpu_cost_adjustment)
        + (a.ram_cost + a.ram_cost_adjustment)
        + (a.pv_cost + a.pv_cost_adjustment)
        + (a.network_cost + a.network_cost_adjustment)
        + (a.load_balancer_cost + a.load_balancer_cost_adjustment)
        + a.shared_cost
        + a.external_cost
}

/// Efficiencies of one allocation, as Kubecost computes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Efficiency {
    pub cpu: f64,
    pub ram: f64,
    pub total: f64,
}

/// Returns CPU, RAM and total efficiency (usage over request, weighted by cost).
///
/// With no request, efficiency is 1 when there is usage and cost, else 0. The total weights CPU
/// and RAM efficiency by their cost including adjustments; it is 0 when that cost is not positive.
pub fn efficiency(a: &Allocation) -> Efficiency {
    let cpu_total = a.cpu_cost + a.cpu_cost_adjustment;
    let ram_total = a.ram_cost + a.ram_cost_adjustment;
    let cpu = resource_efficiency(
        a.cpu_core_usage_average,
        a.cpu_core_request_average,
        cpu_total,
    );
    let ram = resource_efficiency(
        a.ram_byte_usage_average,
        a.ram_byte_request_average,
        ram_total,
    );
    let weight = cpu_total + ram_total;
    let total = if weight > 0.0 {
        (cpu * cpu_total + ram * ram_total) / weight
    } else {
        0.0
    };
    Efficiency { cpu, ram, total }
}

fn resource_efficiency(usage: f64, request: f64, cost: f64) -> f64 {
    if request > 0.0 {
        usage / request
    } else if usage == 0.0 || cost == 0.0 {
        0.0
    } else {
        1.0
    }
}

/// Returns an asset's `totalCost` from its parts, per type.
///
/// Nodes: `(cpuCost + ramCost) × (1 − discount) + gpuCost + adjustment`; cloud items add their
/// credit; every other type is `cost + adjustment`.
pub fn asset_total(a: &Asset) -> f64 {
    match a.asset_type {
        AssetType::Node => {
            (a.cpu_cost + a.ram_cost) * (1.0 - a.discount) + a.gpu_cost + a.adjustment
        }
        AssetType::Cloud => a.cost + a.adjustment + a.credit,
        AssetType::Shared => a.cost,
        _ => a.cost + a.adjustment,
    }
}

/// Returns `|actual − expected| / max(|expected|, |actual|)`, or 0 when both are 0.
///
/// Symmetric and bounded by 1 for same-sign values, so it reads as "how far apart" whichever
/// side is larger.
pub fn relative_error(expected: f64, actual: f64) -> f64 {
    let scale = expected.abs().max(actual.abs());
    if scale == 0.0 {
        0.0
    } else {
        (actual - expected).abs() / scale
    }
}

/// Returns true when `a` and `b` agree to `tolerance` relative, or both are within `abs_floor`
/// of each other (for sums of Kubecost's 5-decimal rounded values).
pub fn approx_eq(a: f64, b: f64, tolerance: f64, abs_floor: f64) -> bool {
    (a - b).abs() <= abs_floor || relative_error(a, b) <= tolerance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_adds_adjustments_and_shared_but_not_network_breakdown() {
        let a = Allocation {
            cpu_cost: 1.0,
            cpu_cost_adjustment: -0.25,
            ram_cost: 0.5,
            pv_cost: 0.125,
            network_cost: 0.0625,
            network_internet_cost: 0.0625,
            load_balancer_cost: 0.03125,
            shared_cost: 0.5,
            external_cost: 0.25,
            gpu_cost: 2.0,
            ..Allocation::default()
        };
        assert_eq!(
            allocation_total(&a),
            0.75 + 2.0 + 0.5 + 0.125 + 0.0625 + 0.03125 + 0.5 + 0.25
        );
    }

    #[test]
    fn efficiency_follows_kubecost() {
        let a = Allocation {
            cpu_core_request_average: 2.0,
            cpu_core_usage_average: 1.0,
            cpu_cost: 3.0,
            ram_byte_request_average: 0.0,
            ram_byte_usage_average: 10.0,
            ram_cost: 1.0,
            ..Allocation::default()
        };
        let e = efficiency(&a);
        assert_eq!(e.cpu, 0.5);
        assert_eq!(
            e.ram, 1.0,
            "usage without a request counts as fully efficient"
        );
        assert_eq!(e.total, (0.5 * 3.0 + 1.0) / 4.0);
        assert_eq!(efficiency(&Allocation::default()).total, 0.0);
    }

    #[test]
    fn node_total_applies_discount_before_gpu_and_adjustment() {
        let n = Asset {
            asset_type: AssetType::Node,
            cpu_cost: 10.0,
            ram_cost: 6.0,
            discount: 0.25,
            gpu_cost: 1.0,
            adjustment: -2.0,
            ..Asset::default()
        };
        assert_eq!(asset_total(&n), 12.0 + 1.0 - 2.0);
    }

    #[test]
    fn relative_error_is_symmetric() {
        assert_eq!(relative_error(0.0, 0.0), 0.0);
        assert_eq!(relative_error(100.0, 99.0), 0.01);
        assert_eq!(relative_error(99.0, 100.0), 0.01);
        assert!(approx_eq(1.0, 1.0 + 1e-12, 1e-9, 0.0));
        assert!(!approx_eq(1.0, 1.1, 1e-9, 0.0));
    }
}
