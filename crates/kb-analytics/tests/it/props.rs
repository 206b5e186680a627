//! Property tests: conservation, determinism and independence from input order.

use std::collections::BTreeMap;

use crate::{T0, hour};
use kb_analytics::rules::{
    IdleMode, IdleRule, IdleScope, MappingRule, Overhead, SharedRule, Source, SplitMode, Target,
};
use kb_analytics::summary::{Dimension, Granularity, summarize};
use kb_analytics::{Rules, apply_rules};
use kb_core::cost::allocation_total;
use kb_core::model::Allocation;
use proptest::prelude::*;

const NAMESPACES: &[&str] = &["web", "api", "kube-system", "monitoring", "batch"];

fn cost() -> impl Strategy<Value = f64> {
    prop_oneof![3 => 0.0..50.0f64, 1 => Just(0.0)]
}

fn alloc() -> impl Strategy<Value = Allocation> {
    (
        (
            0usize..2,
            0usize..2,
            0usize..2,
            0usize..NAMESPACES.len(),
            0u32..4,
        ),
        (cost(), cost(), cost(), cost(), cost(), cost()),
        (
            -2.0..2.0f64,
            0.0..1.0f64,
            any::<bool>(),
            any::<bool>(),
            0usize..3,
        ),
    )
        .prop_map(
            |(
                (c, w, n, ns, pod),
                (cpu, ram, gpu, pv, net, shared),
                (adj, idle_part, is_idle, team, lbl),
            )| {
                let cluster = format!("c{c}");
                let node = format!("n{n}");
                let window = hour(T0 + w as i64 * 3600);
                if is_idle && pod == 0 {
                    return Allocation {
                        name: format!("{node}/__idle__"),
                        cluster,
                        node,
                        window,
                        minutes: 60.0,
                        cpu_cost: cpu - 10.0,
                        ram_cost: ram,
                        gpu_cost: gpu,
                        ..Allocation::default()
                    };
                }
                let ns = NAMESPACES[ns].to_string();
                let mut labels = Vec::new();
                if team {
                    labels.push(("team".to_string(), format!("t{pod}")));
                }
                if lbl == 1 {
                    labels.push(("tier".to_string(), "infra".to_string()));
                }
                Allocation {
                    name: format!("{cluster}/{node}/{ns}/p{pod}"),
                    cluster,
                    node,
                    namespace: ns,
                    controller_kind: "deployment".into(),
                    controller: format!("d{pod}"),
                    pod: format!("p{pod}"),
                    container: "app".into(),
                    labels,
                    window,
                    minutes: 60.0,
                    cpu_core_hours: 1.0,
                    cpu_core_request_average: 1.0,
                    cpu_core_usage_average: 0.3,
                    cpu_cost: cpu,
                    cpu_cost_adjustment: adj,
                    cpu_cost_idle: cpu * idle_part * 0.1,
                    ram_byte_hours: 2.0,
                    ram_byte_usage_average: 1.0,
                    ram_cost: ram,
                    gpu_cost: gpu * 0.1,
                    pv_cost: pv,
                    network_cost: net,
                    shared_cost: shared * 0.1,
                    ..Allocation::default()
                }
            },
        )
}

fn split() -> impl Strategy<Value = SplitMode> {
    prop_oneof![Just(SplitMode::Even), Just(SplitMode::Weighted)]
}

fn rules() -> impl Strategy<Value = Rules> {
    (
        any::<bool>(),
        any::<bool>(),
        split(),
        split(),
        0.0..5000.0f64,
        0usize..3,
        any::<bool>(),
    )
        .prop_map(
            |(share, by_node, ss, os, monthly, n_shared, with_label)| Rules {
                version: 3,
                idle: IdleRule {
                    mode: if share {
                        IdleMode::Share
                    } else {
                        IdleMode::Keep
                    },
                    scope: if by_node {
                        IdleScope::Node
                    } else {
                        IdleScope::Cluster
                    },
                },
                shared: SharedRule {
                    namespaces: NAMESPACES[2..2 + n_shared]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    labels: if with_label {
                        vec![("tier".into(), "infra".into())]
                    } else {
                        vec![]
                    },
                    split: ss,
                },
                overheads: vec![Overhead {
                    name: "o".into(),
                    monthly_cost: monthly,
                    clusters: vec!["c1".into()],
                    split: os,
                }],
                mappings: vec![MappingRule::copy(
                    Target::Team,
                    Source::Label("team".into()),
                )],
                default_value: "unallocated".into(),
            },
        )
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * scale.max(1e-9)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn rules_conserve_cost_per_cluster_and_window(
        input in proptest::collection::vec(alloc(), 0..40),
        rules in rules(),
    ) {
        let out = apply_rules(&input, &rules).unwrap();
        let mut expected: BTreeMap<(String, i64), (f64, f64)> = BTreeMap::new();
        for a in &input {
            let e = expected.entry((a.cluster.clone(), a.window.start)).or_default();
            e.0 += allocation_total(a);
            e.1 += allocation_total(a).abs();
        }
        for ((c, w), (_, scale)) in expected.iter_mut() {
            if c == "c1" {
                *scale += rules.overheads[0].monthly_cost / 730.0;
                let _ = w;
            }
        }
        let mut got: BTreeMap<(String, i64), f64> = BTreeMap::new();
        for r in &out.rows {
            *got.entry((r.cluster.clone(), r.window.start)).or_default() += r.total_cost;
            // Each row's total is the sum of its columns.
            let parts = r.cpu_cost + r.memory_cost + r.gpu_cost + r.network_cost + r.storage_cost
                + r.load_balancer_cost + r.external_cost + r.shared_cost + r.idle_cost;
            prop_assert!(close(parts, r.total_cost, r.total_cost.abs() + 1.0));
        }
        for ((c, w), (total, scale)) in &expected {
            let overhead = if c == "c1" { rules.overheads[0].monthly_cost / 730.0 } else { 0.0 };
            let g = got.get(&(c.clone(), *w)).copied().unwrap_or(0.0);
            prop_assert!(close(g, total + overhead, *scale), "{c} {w}: {g} vs {}", total + overhead);
        }
        for g in &out.groups {
            prop_assert!(close(g.output_total, g.input_total + g.overhead, g.input_total.abs() + g.overhead + 1.0));
        }
        // Summaries keep the same totals per cluster and hour.
        let sums = summarize(&out.rows, &[Dimension::Cluster, Dimension::Team], &[Granularity::Hour]);
        for s in sums.iter().filter(|s| s.dimension == Dimension::Cluster) {
            let g = got.get(&(s.cluster.clone(), s.bucket.start)).copied().unwrap_or(0.0);
            prop_assert!(close(s.totals.total_cost, g, g.abs() + 1.0));
        }
        let team_total: f64 = sums.iter().filter(|s| s.dimension == Dimension::Team).map(|s| s.totals.total_cost).sum();
        let all: f64 = got.values().sum();
        prop_assert!(close(team_total, all, all.abs() + 1.0));
    }

    #[test]
    fn rules_are_deterministic_and_order_independent(
        (input, shuffled) in proptest::collection::vec(alloc(), 0..30)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        rules in rules(),
    ) {
        let a = apply_rules(&input, &rules).unwrap();
        let b = apply_rules(&input, &rules).unwrap();
        prop_assert_eq!(&a, &b);
        let c = apply_rules(&shuffled, &rules).unwrap();
        prop_assert_eq!(&a, &c);
        let dims = Dimension::ALL;
        prop_assert_eq!(
            summarize(&a.rows, &dims, &Granularity::ALL),
            summarize(&c.rows, &dims, &Granularity::ALL)
        );
    }
}
