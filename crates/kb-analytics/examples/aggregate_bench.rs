//! Benchmark of the aggregation hot path: 30 days × 20k pods of hourly allocation rows
//! (≈ 14.4M rows), streamed window by window through `apply_rules` (idle shared per cluster,
//! two shared namespaces, a fixed overhead, team/owner/product mapping) and the streaming
//! `SummaryBuilder` (7 dimensions × hour/day/month), flushing closed buckets after every
//! window, so memory holds one window of rows plus the open day and month buckets.
//!
//! The dataset is cheap to make: 20k template rows are built once and only their window and
//! numbers change per hour (no string allocation in the generator).
//!
//! Run: `cargo run --release -p kb-analytics --example aggregate_bench [days] [pods]`, and
//! `/usr/bin/time -v` around the binary for the peak RSS.

// A benchmark reports on stdout; that is its purpose.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use kb_analytics::rules::{
    IdleMode, IdleRule, IdleScope, MappingRule, Overhead, SharedRule, Source, SplitMode, Target,
};
use kb_analytics::summary::{Dimension, Granularity, SummaryBuilder};
use kb_analytics::{Rules, apply_rules};
use kb_core::model::Allocation;
use kb_core::window::{HOUR, Window};

const CLUSTERS: usize = 4;
const NAMESPACES: usize = 40;
/// 2024-06-01T00:00:00Z.
const START: i64 = 1_717_200_000;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

fn templates(pods: usize) -> Vec<Allocation> {
    let mut v = Vec::with_capacity(pods + CLUSTERS);
    for i in 0..pods {
        let c = i % CLUSTERS;
        let ns = (i / CLUSTERS) % NAMESPACES;
        let ns_name = match ns {
            0 => "kube-system".to_string(),
            1 => "monitoring".to_string(),
            n => format!("ns-{n}"),
        };
        let ctrl = format!("app-{}", i / (CLUSTERS * NAMESPACES * 3));
        let pod = format!("{ctrl}-{i:x}");
        v.push(Allocation {
            name: format!("cluster-{c}/node-{}/{ns_name}/{pod}/app", i % 500),
            cluster: format!("cluster-{c}"),
            node: format!("node-{}", i % 500),
            namespace: ns_name,
            controller_kind: "deployment".to_string(),
            controller: ctrl,
            pod,
            container: "app".to_string(),
            labels: vec![
                ("app".to_string(), format!("app-{}", i % 300)),
                ("team".to_string(), format!("team-{}", ns % 12)),
            ],
            annotations: vec![("owner".to_string(), format!("owner-{}", ns % 7))],
            namespace_labels: vec![("product".to_string(), format!("product-{}", ns % 5))],
            minutes: 60.0,
            ..Allocation::default()
        });
    }
    for c in 0..CLUSTERS {
        v.push(Allocation {
            name: format!("cluster-{c}/__idle__"),
            cluster: format!("cluster-{c}"),
            minutes: 60.0,
            ..Allocation::default()
        });
    }
    // Kubecost's sets come sorted by allocation name (Go marshals maps in key order).
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn fill(rows: &mut [Allocation], w: Window, h: u64) {
    for (i, a) in rows.iter_mut().enumerate() {
        let k = (i as u64) << 20 | h;
        a.window = w;
        a.start = w.start;
        a.end = w.end;
        if a.is_idle() {
            a.cpu_cost = 50.0 + 10.0 * unit(k);
            a.ram_cost = 20.0 + 5.0 * unit(k ^ 1);
            continue;
        }
        let req = 0.1 + (i % 8) as f64 * 0.25;
        let used = req * (0.2 + 1.0 * unit(k ^ 2));
        a.cpu_core_request_average = req;
        a.cpu_core_usage_average = used;
        a.cpu_core_hours = req.max(used);
        a.cpu_cost = a.cpu_core_hours * 0.031;
        let ram_req = (1u64 << (27 + i % 5)) as f64;
        let ram_used = ram_req * (0.3 + 0.8 * unit(k ^ 3));
        a.ram_byte_request_average = ram_req;
        a.ram_byte_usage_average = ram_used;
        a.ram_byte_hours = ram_req.max(ram_used);
        a.ram_cost = a.ram_byte_hours / 1_073_741_824.0 * 0.004;
        a.network_cost = 0.001 * unit(k ^ 4);
        a.pv_cost = if i % 7 == 0 { 0.0137 } else { 0.0 };
        a.shared_cost = 0.0005;
    }
}

fn rules() -> Rules {
    Rules {
        version: 1,
        idle: IdleRule {
            mode: IdleMode::Share,
            scope: IdleScope::Cluster,
        },
        shared: SharedRule {
            namespaces: vec!["kube-system".to_string(), "monitoring".to_string()],
            labels: Vec::new(),
            split: SplitMode::Weighted,
        },
        overheads: vec![Overhead {
            name: "support".to_string(),
            monthly_cost: 5000.0,
            clusters: Vec::new(),
            split: SplitMode::Even,
        }],
        mappings: vec![
            MappingRule::copy(Target::Team, Source::Label("team".to_string())),
            MappingRule::copy(Target::Owner, Source::Annotation("owner".to_string())),
            MappingRule::copy(
                Target::Product,
                Source::NamespaceLabel("product".to_string()),
            ),
            MappingRule::when(Target::CostCenter, Source::Namespace, "ns-2", "cc-2"),
        ],
        default_value: "unallocated".to_string(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let days: i64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let pods: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let rules = rules();
    let mut rows = templates(pods);
    let mut builder = SummaryBuilder::new(&Dimension::ALL, &Granularity::ALL);
    let (mut n_rows, mut n_out, mut n_sums, mut max_open) = (0usize, 0usize, 0usize, 0usize);
    let (mut input_total, mut output_total) = (0.0, 0.0);
    let (mut t_gen, mut t_rules, mut t_sum) = (0.0, 0.0, 0.0);
    let started = Instant::now();
    for h in 0..days * 24 {
        let w = Window {
            start: START + h * HOUR,
            end: START + (h + 1) * HOUR,
        };
        let t = Instant::now();
        fill(&mut rows, w, h as u64);
        t_gen += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let out = match apply_rules(&rows, &rules) {
            Ok(o) => o,
            Err(e) => {
                println!("rules refused: {e}");
                return;
            }
        };
        t_rules += t.elapsed().as_secs_f64();
        let t = Instant::now();
        builder.add(&out.rows);
        max_open = max_open.max(builder.open_groups());
        n_sums += builder.flush_before(w.end).len();
        t_sum += t.elapsed().as_secs_f64();
        n_rows += rows.len();
        n_out += out.rows.len();
        for g in &out.groups {
            input_total += g.input_total + g.overhead;
            output_total += g.output_total;
        }
    }
    n_sums += builder.finish().len();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{days} days x {pods} pods hourly: {n_rows} input rows -> {n_out} allocated rows -> {n_sums} summaries"
    );
    println!(
        "total {secs:.2} s, {:.0} rows/s (generation {t_gen:.2} s, rules {t_rules:.2} s = {:.0} rows/s, summaries {t_sum:.2} s = {:.0} rows/s)",
        n_rows as f64 / secs,
        n_rows as f64 / t_rules,
        n_out as f64 / t_sum
    );
    println!(
        "max open summary groups {max_open}; conservation: input+overhead {input_total:.6}, output {output_total:.6}, rel err {:.2e}",
        (output_total - input_total).abs() / input_total.abs().max(1e-12)
    );
}
