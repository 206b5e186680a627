//! The project's own fixtures in `testdata/`: each parses, and totals check out.

use std::path::PathBuf;

use kb_core::cost::{allocation_total, approx_eq, asset_total};
use kb_core::{AssetType, SavingsKind, Window};
use kb_kubecost::{Error, parse_allocation_document, parse_assets_document};

fn read(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const W: Window = Window {
    start: 1_709_510_400, // 2024-03-04T00:00:00Z
    end: 1_709_683_200,
};

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn kubecost_2x_allocations_parse_with_idle_unmounted_and_nulls() {
    let (rows, s) =
        parse_allocation_document(&read("allocation_kubecost-2x_container_step-1d.json"), W)
            .unwrap();
    assert_eq!((s.sets, s.null_sets, s.rows, s.skipped), (2, 0, 5, 0));
    assert_eq!(s.null_fields, 12);
    assert_eq!(rows.len(), 5);
    for a in &rows {
        assert!(
            approx_eq(allocation_total(a), a.total_cost, 1e-9, 1e-5),
            "{}: parts {} vs totalCost {}",
            a.name,
            allocation_total(a),
            a.total_cost
        );
    }
    let sum: f64 = rows.iter().map(|a| a.total_cost).sum();
    assert!((sum - s.total_cost).abs() < 1e-9);
    assert!((sum - 18.84358).abs() < 1e-6, "{sum}");

    let web = &rows[0];
    assert_eq!(web.cluster, "prod-1");
    assert_eq!(web.controller_kind, "deployment");
    assert_eq!(
        web.labels,
        labels(&[
            ("app", "web"),
            ("pod_template_hash", "7d9f8c6b5"),
            ("team", "checkout")
        ])
    );
    assert_eq!(
        web.annotations,
        labels(&[
            ("kubernetes_io_psp", "restricted"),
            ("prometheus_io_scrape", "true")
        ])
    );
    assert_eq!(web.services, vec!["web-internal", "web-public"]);
    assert_eq!(web.namespace_labels.len(), 2);
    assert_eq!(web.null_fields, 1);
    assert_eq!(
        web.window,
        Window::new(1_709_510_400, 1_709_596_800).unwrap()
    );

    let worker = &rows[1];
    assert_eq!(worker.start, 1_709_510_400 + 6 * 3600);
    assert_eq!(worker.gpu_cost, 9.18);
    assert_eq!(worker.network_transfer_bytes, 0.0, "null reads as 0");

    let idle = &rows[2];
    assert!(idle.is_idle());
    assert!(idle.ram_cost < 0.0, "negative idle is kept");
    let unmounted = &rows[3];
    assert_eq!(unmounted.pod, kb_core::UNMOUNTED);
    assert!(!unmounted.is_idle());

    let day2 = &rows[4];
    assert_eq!(
        day2.window,
        Window::new(1_709_596_800, 1_709_683_200).unwrap()
    );
    assert_eq!(day2.null_fields, 7);
    assert_eq!(day2.cpu_cost_adjustment, 0.0);
}

#[test]
fn opencost_allocations_parse_with_data_before_code() {
    let (rows, s) =
        parse_allocation_document(&read("allocation_opencost_namespace_include-idle.json"), W)
            .unwrap();
    assert_eq!((s.sets, s.rows, s.null_fields), (1, 4, 0));
    for a in &rows {
        assert!(
            approx_eq(allocation_total(a), a.total_cost, 1e-9, 1e-5),
            "{}",
            a.name
        );
        assert_eq!(a.cluster, "gke-eu");
        // The rows' own window (10:15 to 10:15) wins over the query window.
        assert_eq!(a.window.start % 86_400, 10 * 3600 + 15 * 60);
    }
    assert!((s.total_cost - 4.6403).abs() < 1e-6);
    assert_eq!(rows.iter().filter(|a| a.is_idle()).count(), 1);
    assert_eq!(rows[1].controller_kind, "statefulset");
}

#[test]
fn kubecost_17x_singular_keys_are_aliases() {
    let (rows, s) = parse_allocation_document(
        &read("allocation_kubecost-1.7x_singular-label-keys.json"),
        W,
    )
    .unwrap();
    assert_eq!(s.rows, 2);
    let api = &rows[0];
    assert_eq!(api.labels, labels(&[("app", "api"), ("tier", "backend")]));
    assert_eq!(api.annotations, labels(&[("owner", "team-a")]));
    assert_eq!(api.services, vec!["api"]);
    assert!(api.cpu_cost_adjustment == 0.0 && api.cpu_cost_adjustment.is_sign_positive());
    for a in &rows {
        assert!(
            approx_eq(allocation_total(a), a.total_cost, 1e-9, 1e-5),
            "{}",
            a.name
        );
    }
    // "null" window strings fall back to the query window.
    assert_eq!(rows[1].window, W);
    assert_eq!(rows[1].start, W.start);
    assert!((s.total_cost - 6.758557).abs() < 1e-6);
}

#[test]
fn a_null_set_is_counted_not_an_error() {
    let (rows, s) = parse_allocation_document(
        &read("allocation_kubecost-2.4_empty-window_null-set.json"),
        W,
    )
    .unwrap();
    assert!(rows.is_empty());
    assert_eq!((s.sets, s.null_sets), (0, 1));
}

#[test]
fn assets_parse_and_totals_follow_the_type_formulas() {
    let assets =
        parse_assets_document(&read("assets_kubecost_unaggregated_accumulate.json"), W).unwrap();
    assert_eq!(assets.len(), 7);
    for a in &assets {
        assert!(
            approx_eq(asset_total(a), a.total_cost, 1e-9, 1e-6),
            "{}: {} vs {}",
            a.key,
            asset_total(a),
            a.total_cost
        );
    }
    let node = &assets[0];
    assert_eq!(node.asset_type, AssetType::Node);
    assert_eq!(node.gpu_hours, 24.0);
    assert_eq!(node.zone, "eu-west-1a");
    assert_eq!(node.node_type, "m5.xlarge");
    assert_eq!(node.name, "ip-10-0-1-17.eu-west-1.compute.internal");
    assert_eq!(node.discount, 0.2);
    assert_eq!(assets[1].null_fields, 1, "GPUHours: null");
    assert_eq!(assets[1].preemptible, 1.0);
    let disk = &assets[2];
    assert_eq!(disk.asset_type, AssetType::Disk);
    assert_eq!(disk.node_type, "gp3");
    assert_eq!(disk.bytes, 10_737_418_240.0);
    let types: Vec<AssetType> = assets.iter().map(|a| a.asset_type).collect();
    assert_eq!(
        types,
        vec![
            AssetType::Node,
            AssetType::Node,
            AssetType::Disk,
            AssetType::LoadBalancer,
            AssetType::ClusterManagement,
            AssetType::Network,
            AssetType::Cloud
        ]
    );
    let cloud = &assets[6];
    assert_eq!(cloud.credit, -0.1);
    assert!((cloud.cost - 1.0).abs() < 1e-9);
    assert_eq!(assets[5].window, W, "\"null\" window strings fall back");
}

#[test]
fn budgets_parse() {
    let b = kb_kubecost::parse_budgets_document(&read("budgets_kubecost-2x.json")).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].name, "shop monthly");
    assert_eq!(
        b[0].values,
        vec![
            ("cluster".to_string(), vec!["prod-1".to_string()]),
            (
                "namespace".to_string(),
                vec!["shop".to_string(), "checkout".to_string()]
            ),
        ]
    );
    assert_eq!((b[0].spend_limit, b[0].current_spend), (500.0, 123.45));
    assert_eq!(b[0].interval_day, 1);
    assert_eq!(
        b[0].window,
        Window::new(1_709_251_200, 1_711_929_600).unwrap()
    );
    assert_eq!(b[1].current_spend, 0.0);
    assert_eq!(b[1].window, Window::default());
}

#[test]
fn request_sizing_sums_cpu_and_memory_savings() {
    let r = kb_kubecost::parse_request_sizing_document(&read(
        "savings_request-sizing-v2_bare-array.json",
    ))
    .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].kind, SavingsKind::RequestSizing);
    assert_eq!(r[0].monthly_savings, 15.75);
    assert_eq!(r[0].detail, "cpu 500m -> 120m, memory 1Gi -> 300Mi");
    assert_eq!(
        (
            r[0].cluster.as_str(),
            r[0].controller.as_str(),
            r[0].target.as_str()
        ),
        ("prod-1", "web", "web")
    );
    assert_eq!(r[1].monthly_savings, -20.0);
}

#[test]
fn cluster_sizing_picks_the_option_that_saves_most() {
    let r = kb_kubecost::parse_cluster_sizing_document(&read("savings_cluster-sizing-etl.json"))
        .unwrap();
    assert_eq!(r.len(), 1, "a cluster without recommendations is skipped");
    assert_eq!(r[0].cluster, "prod-1");
    assert_eq!(r[0].monthly_savings, 259.68);
    assert!(r[0].detail.starts_with("multi: 3 nodes"), "{}", r[0].detail);
}

#[test]
fn abandoned_workloads_parse() {
    let r =
        kb_kubecost::parse_abandoned_document(&read("savings_abandoned-workloads.json")).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].kind, SavingsKind::AbandonedWorkload);
    assert_eq!(r[0].target, "legacy-report-5b7c9-abcde");
    assert_eq!(r[0].controller, "legacy-report");
    assert_eq!(r[0].monthly_savings, 9.87);
    assert_eq!(r[1].cluster, "prod-1", "falls back to clusterId");
    assert_eq!(r[1].monthly_savings, 0.0);
}

#[test]
fn spec_cost_change_is_after_minus_before() {
    let p = kb_kubecost::parse_spec_cost_document(&read("prediction_speccost_bare-array.json"))
        .unwrap();
    assert_eq!(p.len(), 1);
    let p = &p[0];
    assert_eq!(p.controller_name, "web");
    assert_eq!(
        p.cost_change.total_monthly_rate,
        p.cost_after.total_monthly_rate - p.cost_before.total_monthly_rate
    );
}

#[test]
fn error_envelopes_and_plain_text_are_errors() {
    let e = parse_allocation_document(
        br#"{"code":500,"status":"error","data":null,"message":"Error: boom"}"#,
        W,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Api { code: 500, .. }), "{e:?}");
    assert!(e.to_string().contains("Error: boom"));
    let e =
        parse_allocation_document(b"Invalid 'window' parameter: illegal window: x", W).unwrap_err();
    assert!(
        matches!(e, Error::Malformed { byte_offset: 0, .. }),
        "{e:?}"
    );
    let e = parse_allocation_document(br#"{"code":200,"data":[{"a":{"cpuCost":"#, W).unwrap_err();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    let e =
        parse_allocation_document(br#"{"code":200,"data":[{"a":{"cpuCost":1,}}]}"#, W).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Malformed {
                byte_offset: 25,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn mutated_documents_never_panic() {
    // Deterministic pseudo-random mutations (xorshift): flip, delete or duplicate bytes, and cut
    // the document; every outcome must be a value or an error, and cut documents never succeed
    // with more rows than the whole one.
    let doc = read("allocation_kubecost-2x_container_step-1d.json");
    let (whole, _) = parse_allocation_document(&doc, W).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut d = doc.clone();
        for _ in 0..(next() % 4 + 1) {
            if d.is_empty() {
                break;
            }
            let i = (next() as usize) % d.len();
            match next() % 4 {
                0 => d[i] = (next() & 0xff) as u8,
                1 => {
                    d.remove(i);
                }
                2 => d.insert(i, b"{}[]\",:\\n0"[(next() % 10) as usize]),
                _ => d.truncate(i),
            }
        }
        if let Ok((rows, _)) = parse_allocation_document(&d, W) {
            assert!(rows.len() <= whole.len() + 1);
        }
    }
}
