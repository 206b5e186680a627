//! Integration tests of kb-analytics: rule snapshots, property tests, analytics functions and an
//! evaluation on simulator data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod analytics;
mod props;
mod rules_snap;
mod sim;

use kb_analytics::AllocatedRow;
use kb_core::model::Allocation;
use kb_core::window::Window;

/// 2024-06-03T00:00:00Z, a Monday.
pub(crate) const T0: i64 = 1_717_372_800;

pub(crate) fn hour(start: i64) -> Window {
    Window {
        start,
        end: start + 3600,
    }
}

/// A one-hour workload row with CPU and RAM cost (and usage/request for efficiency).
pub(crate) fn row(cluster: &str, ns: &str, pod: &str, cpu: f64, ram: f64) -> Allocation {
    Allocation {
        name: format!("{cluster}/{ns}/{pod}"),
        cluster: cluster.to_string(),
        namespace: ns.to_string(),
        controller_kind: "deployment".to_string(),
        controller: pod.to_string(),
        pod: pod.to_string(),
        container: "app".to_string(),
        window: hour(T0),
        start: T0,
        end: T0 + 3600,
        minutes: 60.0,
        cpu_core_hours: 1.0,
        cpu_core_request_average: 1.0,
        cpu_core_usage_average: 0.5,
        cpu_cost: cpu,
        ram_byte_hours: 1.0,
        ram_byte_request_average: 1.0,
        ram_byte_usage_average: 0.25,
        ram_cost: ram,
        ..Allocation::default()
    }
}

pub(crate) fn idle(cluster: &str, node: &str, cpu: f64, ram: f64, gpu: f64) -> Allocation {
    let name = if node.is_empty() {
        format!("{cluster}/__idle__")
    } else {
        format!("{node}/__idle__")
    };
    Allocation {
        name,
        cluster: cluster.to_string(),
        node: node.to_string(),
        window: hour(T0),
        minutes: 60.0,
        cpu_cost: cpu,
        ram_cost: ram,
        gpu_cost: gpu,
        ..Allocation::default()
    }
}

/// Renders rows as a whitespace-normalised text table (one line per row).
pub(crate) fn table(rows: &[AllocatedRow]) -> String {
    let mut out = vec![
        "kind name namespace team owner product cost_center cpu memory gpu shared idle total"
            .to_string(),
    ];
    for r in rows {
        out.push(format!(
            "{} {} {} {} {} {} {} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4}",
            r.kind.as_str(),
            r.name,
            if r.namespace.is_empty() {
                "-"
            } else {
                &r.namespace
            },
            r.team,
            r.owner,
            r.product,
            r.cost_center,
            r.cpu_cost,
            r.memory_cost,
            r.gpu_cost,
            r.shared_cost,
            r.idle_cost,
            r.total_cost
        ));
    }
    out.join("\n")
}

/// Normalises a hand-written expected table: trims lines, collapses spaces, drops blank lines.
pub(crate) fn norm(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}
