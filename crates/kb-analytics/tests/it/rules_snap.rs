//! Readable snapshots of rule outcomes: small inputs, expected rows as text tables.

use crate::{T0, hour, idle, norm, row, table};
use kb_analytics::rules::{
    IdleMode, IdleScope, MappingRule, Overhead, RulesError, Source, SplitMode, Target,
};
use kb_analytics::summary::{Dimension, Granularity, summarize};
use kb_analytics::{Rules, apply_rules};

fn labelled() -> Vec<kb_core::model::Allocation> {
    let mut a = row("c1", "app", "a", 3.0, 1.0);
    a.labels = vec![("team".into(), "web".into())];
    let mut b = row("c1", "app", "b", 1.0, 3.0);
    b.annotations = vec![("owner".into(), "alice".into())];
    let k = row("c1", "kube-system", "k", 1.0, 1.0);
    vec![a, b, k, idle("c1", "", 2.0, 4.0, 0.0)]
}

fn mappings() -> Vec<MappingRule> {
    vec![
        MappingRule::copy(Target::Team, Source::Label("team".into())),
        MappingRule::copy(Target::Owner, Source::Annotation("owner".into())),
        MappingRule::when(Target::Product, Source::Namespace, "app", "shop"),
    ]
}

#[test]
fn idle_shared_namespace_and_overhead() {
    // Idle CPU 2 goes 3:1:1 by CPU cost, idle RAM 4 goes 1:3:1 by RAM cost; kube-system's
    // 3.2 (own 2 + idle 1.2) goes 6:6.8 by own+idle cost; the $730/month overhead is $1 for
    // the hour, split evenly.
    let rules = Rules {
        idle: kb_analytics::rules::IdleRule {
            mode: IdleMode::Share,
            scope: IdleScope::Cluster,
        },
        shared: kb_analytics::rules::SharedRule {
            namespaces: vec!["kube-system".into()],
            labels: vec![],
            split: SplitMode::Weighted,
        },
        overheads: vec![Overhead {
            name: "support".into(),
            monthly_cost: 730.0,
            clusters: vec![],
            split: SplitMode::Even,
        }],
        mappings: mappings(),
        ..Rules::new(7)
    };
    let out = apply_rules(&labelled(), &rules).unwrap();
    assert_eq!(out.rules_version, 7);
    let expected = "
        kind     name     namespace team        owner       product cost_center cpu    memory gpu    shared idle   total
        workload c1/app/a app       web         unallocated shop    unallocated 3.0000 1.0000 0.0000 2.0000 2.0000 8.0000
        workload c1/app/b app       unallocated alice       shop    unallocated 1.0000 3.0000 0.0000 2.2000 2.8000 9.0000
    ";
    assert_eq!(table(&out.rows), norm(expected));
    let g = &out.groups[0];
    assert_eq!((g.input_total, g.overhead), (16.0, 1.0));
    assert!((g.output_total - 17.0).abs() < 1e-12);
}

#[test]
fn idle_kept_and_shared_cost_even() {
    let rules = Rules {
        shared: kb_analytics::rules::SharedRule {
            namespaces: vec!["kube-system".into()],
            labels: vec![],
            split: SplitMode::Even,
        },
        mappings: mappings(),
        ..Rules::new(1)
    };
    let out = apply_rules(&labelled(), &rules).unwrap();
    let expected = "
        kind     name        namespace team        owner       product cost_center cpu    memory gpu    shared idle   total
        idle     c1/__idle__ -         __idle__    __idle__    __idle__ __idle__   0.0000 0.0000 0.0000 0.0000 6.0000 6.0000
        workload c1/app/a    app       web         unallocated shop    unallocated 3.0000 1.0000 0.0000 1.0000 0.0000 5.0000
        workload c1/app/b    app       unallocated alice       shop    unallocated 1.0000 3.0000 0.0000 1.0000 0.0000 5.0000
    ";
    assert_eq!(table(&out.rows), norm(expected));
}

#[test]
fn gpu_idle_without_gpu_workloads_stays_idle() {
    let rules = Rules {
        idle: kb_analytics::rules::IdleRule {
            mode: IdleMode::Share,
            scope: IdleScope::Cluster,
        },
        ..Rules::new(1)
    };
    let input = vec![
        row("c1", "ml", "x", 2.0, 0.0),
        idle("c1", "", 1.0, 0.0, 5.0),
    ];
    let out = apply_rules(&input, &rules).unwrap();
    let expected = "
        kind     name        namespace team        owner       product     cost_center cpu    memory gpu    shared idle   total
        idle     c1/__idle__ -         __idle__    __idle__    __idle__    __idle__    0.0000 0.0000 0.0000 0.0000 5.0000 5.0000
        workload c1/ml/x     ml        unallocated unallocated unallocated unallocated 2.0000 0.0000 0.0000 0.0000 1.0000 3.0000
    ";
    assert_eq!(table(&out.rows), norm(expected));
}

#[test]
fn idle_by_node_stays_on_its_node() {
    let mut p = row("c1", "a", "p", 1.0, 0.0);
    p.node = "n1".into();
    let mut q = row("c1", "a", "q", 3.0, 0.0);
    q.node = "n1".into();
    let mut r = row("c1", "b", "r", 2.0, 0.0);
    r.node = "n2".into();
    let input = vec![
        p,
        q,
        r,
        idle("c1", "n1", 2.0, 0.0, 0.0),
        idle("c1", "n2", 4.0, 0.0, 0.0),
    ];
    let mut rules = Rules::new(1);
    rules.idle.mode = IdleMode::Share;
    rules.idle.scope = IdleScope::Node;
    let by_node = apply_rules(&input, &rules).unwrap();
    let idle_of: Vec<f64> = by_node.rows.iter().map(|r| r.idle_cost).collect();
    assert_eq!(idle_of, vec![0.5, 1.5, 4.0]);
    rules.idle.scope = IdleScope::Cluster;
    let by_cluster = apply_rules(&input, &rules).unwrap();
    let idle_of: Vec<f64> = by_cluster
        .rows
        .iter()
        .map(|r| (r.idle_cost * 1e9).round() / 1e9)
        .collect();
    assert_eq!(idle_of, vec![1.0, 3.0, 2.0]);
}

#[test]
fn shared_cost_without_recipients_is_kept() {
    // Only a shared namespace in the cluster: its row stays, and the overhead lands in a
    // __shared__ row instead of vanishing.
    let rules = Rules {
        shared: kb_analytics::rules::SharedRule {
            namespaces: vec!["kube-system".into()],
            labels: vec![("tier".into(), "infra".into())],
            split: SplitMode::Weighted,
        },
        overheads: vec![Overhead {
            name: "licence".into(),
            monthly_cost: 1460.0,
            clusters: vec!["c2".into()],
            split: SplitMode::Weighted,
        }],
        ..Rules::new(1)
    };
    let input = vec![
        row("c2", "kube-system", "dns", 1.0, 1.0),
        row("c3", "web", "w", 1.0, 1.0),
    ];
    let out = apply_rules(&input, &rules).unwrap();
    let expected = "
        kind     name              namespace   team        owner       product     cost_center cpu    memory gpu    shared idle   total
        workload c2/kube-system/dns kube-system unallocated unallocated unallocated unallocated 1.0000 1.0000 0.0000 0.0000 0.0000 2.0000
        shared   __shared__        __shared__  __shared__  __shared__  __shared__  __shared__  0.0000 0.0000 0.0000 2.0000 0.0000 2.0000
        workload c3/web/w          web         unallocated unallocated unallocated unallocated 1.0000 1.0000 0.0000 0.0000 0.0000 2.0000
    ";
    assert_eq!(table(&out.rows), norm(expected));
}

#[test]
fn labels_match_sanitised_keys_and_first_rule_wins() {
    let mut a = row("c1", "payments", "a", 1.0, 0.0);
    a.labels = vec![("app_kubernetes_io_team".into(), "pay".into())];
    a.namespace_labels = vec![("cost_center".into(), "cc-42".into())];
    let rules = Rules {
        mappings: vec![
            MappingRule::copy(Target::Team, Source::Label("app.kubernetes.io/team".into())),
            MappingRule::when(Target::Team, Source::Namespace, "payments", "never"),
            MappingRule::copy(
                Target::CostCenter,
                Source::NamespaceLabel("cost_center".into()),
            ),
            MappingRule::when(Target::Owner, Source::Cluster, "c1", "sre"),
        ],
        default_value: "none".into(),
        ..Rules::new(1)
    };
    let out = apply_rules(&[a], &rules).unwrap();
    let r = &out.rows[0];
    assert_eq!(
        (
            r.team.as_str(),
            r.owner.as_str(),
            r.product.as_str(),
            r.cost_center.as_str()
        ),
        ("pay", "sre", "none", "cc-42")
    );
}

#[test]
fn bad_rules_and_bad_rows() {
    let mut rules = Rules::new(1);
    rules.overheads.push(Overhead {
        name: "x".into(),
        monthly_cost: f64::NAN,
        clusters: vec![],
        split: SplitMode::Even,
    });
    assert!(matches!(
        apply_rules(&[], &rules),
        Err(RulesError::Overhead { .. })
    ));
    let mut bad = row("c1", "a", "p", 1.0, 0.0);
    bad.cpu_cost = f64::INFINITY;
    let out = apply_rules(&[bad, row("c1", "a", "q", 1.0, 0.0)], &Rules::new(1)).unwrap();
    assert_eq!((out.rows.len(), out.skipped_non_finite), (1, 1));
    assert_ne!(Rules::new(1).content_hash(), Rules::new(2).content_hash());
    assert_eq!(Rules::new(1).content_hash(), Rules::new(1).content_hash());
}

#[test]
fn summaries_of_rule_outcomes() {
    // Two hours of the same rows; efficiency = usage cost / request cost.
    let mut input = labelled();
    let mut second = labelled();
    for a in &mut second {
        a.window = hour(T0 + 3600);
    }
    input.extend(second);
    let out = apply_rules(
        &input,
        &Rules {
            mappings: mappings(),
            ..Rules::new(1)
        },
    )
    .unwrap();
    let sums = summarize(
        &out.rows,
        &[Dimension::Namespace, Dimension::Team],
        &[Granularity::Hour, Granularity::Day, Granularity::Month],
    );
    let text: Vec<String> = sums
        .iter()
        .filter(|s| s.granularity != Granularity::Hour)
        .map(|s| {
            format!(
                "{} {} {} {} total={:.2} cpu={:.2} mem={:.2} idle={:.2} eff={:.4}",
                s.granularity.as_str(),
                kb_core::window::format_rfc3339(s.bucket.start),
                s.dimension.as_str(),
                s.name,
                s.totals.total_cost,
                s.totals.cpu_cost,
                s.totals.memory_cost,
                s.totals.idle_cost,
                s.efficiency_score
            )
        })
        .collect();
    // app: cpu usage 0.5 of request, ram 0.25: (0.5·4 + 0.25·4) / (4 + 4) per hour = 0.375.
    let expected = "
        1d 2024-06-03T00:00:00Z namespace __idle__ total=12.00 cpu=0.00 mem=0.00 idle=12.00 eff=0.0000
        1d 2024-06-03T00:00:00Z namespace app total=16.00 cpu=8.00 mem=8.00 idle=0.00 eff=0.3750
        1d 2024-06-03T00:00:00Z namespace kube-system total=4.00 cpu=2.00 mem=2.00 idle=0.00 eff=0.3750
        1d 2024-06-03T00:00:00Z team __idle__ total=12.00 cpu=0.00 mem=0.00 idle=12.00 eff=0.0000
        1d 2024-06-03T00:00:00Z team unallocated total=12.00 cpu=4.00 mem=8.00 idle=0.00 eff=0.3333
        1d 2024-06-03T00:00:00Z team web total=8.00 cpu=6.00 mem=2.00 idle=0.00 eff=0.4375
        1mo 2024-06-01T00:00:00Z namespace __idle__ total=12.00 cpu=0.00 mem=0.00 idle=12.00 eff=0.0000
        1mo 2024-06-01T00:00:00Z namespace app total=16.00 cpu=8.00 mem=8.00 idle=0.00 eff=0.3750
        1mo 2024-06-01T00:00:00Z namespace kube-system total=4.00 cpu=2.00 mem=2.00 idle=0.00 eff=0.3750
        1mo 2024-06-01T00:00:00Z team __idle__ total=12.00 cpu=0.00 mem=0.00 idle=12.00 eff=0.0000
        1mo 2024-06-01T00:00:00Z team unallocated total=12.00 cpu=4.00 mem=8.00 idle=0.00 eff=0.3333
        1mo 2024-06-01T00:00:00Z team web total=8.00 cpu=6.00 mem=2.00 idle=0.00 eff=0.4375
    ";
    assert_eq!(text.join("\n"), norm(expected));
    assert_eq!(
        sums.iter()
            .filter(|s| s.granularity == Granularity::Hour)
            .count(),
        2 * 6
    );
}
