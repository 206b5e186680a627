//! `/metrics`: Prometheus text exposition of the fleet at one instant (`?time=UNIX`, default
//! now; `?cluster=NAME` to keep one cluster), with Kubecost's metric names and labels plus a
//! `cluster_id` label (what a multi-cluster Prometheus adds).
//!
//! Invariants: each family's series are written together under one `# HELP`/`# TYPE` header;
//! values agree with the allocation API for the same hour: `container_cpu_allocation` ×
//! `node_cpu_hourly_cost` × 1h is the container's `cpuCost` in that hourly set (full-hour
//! pods), and the usage counter grows by the hour's usage × 3600 over the hour.

use crate::fleet::{Cluster, Fleet, HOUR, Kind};
use crate::json;
use crate::server::{AppState, param, streaming};
use crate::stream::{self, BodyFaults, Out};
use axum::extract::{Query, State};
use axum::response::Response;
use std::sync::Arc;

/// Appends a label value with Prometheus escaping.
fn esc(b: &mut Vec<u8>, s: &str) {
    for c in s.bytes() {
        match c {
            b'\\' => b.extend_from_slice(b"\\\\"),
            b'"' => b.extend_from_slice(b"\\\""),
            b'\n' => b.extend_from_slice(b"\\n"),
            _ => b.push(c),
        }
    }
}

/// Appends one series line.
fn line(b: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], v: f64) {
    b.extend_from_slice(name.as_bytes());
    if !labels.is_empty() {
        b.push(b'{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(b"=\"");
            esc(b, val);
            b.push(b'"');
        }
        b.push(b'}');
    }
    b.push(b' ');
    if v.is_finite() {
        json::num(b, v);
    } else {
        b.extend_from_slice(b"NaN");
    }
    b.push(b'\n');
}

fn header(b: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    b.extend_from_slice(format!("# HELP {name} {help}\n# TYPE {name} {kind}\n").as_bytes());
}

async fn gen_handler(st: Arc<AppState>, q: Vec<(String, String)>) -> Response {
    let t = param(&q, "time")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| st.now());
    let only = param(&q, "cluster").map(str::to_string);
    let fleet = st.fleet.clone();
    let body = stream::body(BodyFaults::default(), move |out| {
        write_metrics(&fleet, t, only.as_deref(), out);
    });
    let mut r = streaming(body);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `GET /metrics`.
pub(crate) async fn handler(
    State(st): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    gen_handler(st, q).await
}

/// Pods and containers running at `t`: `(pod, instance)`.
fn running(f: &Fleet, ci: usize, cl: &Cluster, t: i64) -> Vec<(u32, i64)> {
    let h = t.div_euclid(HOUR) * HOUR;
    (0..cl.pods.len() as u32)
        .filter(|&p| {
            f.run_in_hour(ci, cl, p, h)
                .is_some_and(|(a, b)| t - h >= a && t - h < b)
        })
        .map(|p| (p, f.instance(cl, p, h)))
        .collect()
}

/// The cumulative cpu seconds of a container at `t` since its pod started (day start for
/// long-running pods, run start for job pods).
fn cpu_counter(f: &Fleet, ci: usize, cl: &Cluster, pod: u32, k: usize, t: i64) -> f64 {
    let h = t.div_euclid(HOUR) * HOUR;
    let kind = cl
        .pods
        .get(pod as usize)
        .and_then(|p| cl.controllers.get(p.ctrl as usize))
        .map(|c| c.kind);
    if kind == Some(Kind::Job) {
        let start = f
            .run_in_hour(ci, cl, pod, h)
            .map(|(a, _)| h + a)
            .unwrap_or(h);
        return f.sample(ci, cl, pod, k, h).use_cpu * (t - start).max(0) as f64;
    }
    let mut total = 0.0;
    let mut hh = t.div_euclid(86_400) * 86_400;
    while hh < h {
        total += f.sample(ci, cl, pod, k, hh).use_cpu * HOUR as f64;
        hh += HOUR;
    }
    total + f.sample(ci, cl, pod, k, h).use_cpu * (t - h) as f64
}

#[allow(clippy::too_many_lines)]
pub(crate) fn write_metrics(f: &Fleet, t: i64, only: Option<&str>, out: &mut Out) {
    let h = t.div_euclid(HOUR) * HOUR;
    let clusters: Vec<(usize, &Cluster)> = f
        .clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| only.is_none_or(|o| o == c.name))
        .collect();
    let runs: Vec<Vec<(u32, i64)>> = clusters
        .iter()
        .map(|(ci, cl)| running(f, *ci, cl, t))
        .collect();

    header(
        &mut out.buf,
        "kubecost_cluster_info",
        "gauge",
        "Kubecost cluster info",
    );
    for (_, cl) in &clusters {
        line(
            &mut out.buf,
            "kubecost_cluster_info",
            &[
                ("account", &cl.account),
                ("cluster_id", &cl.name),
                ("id", &cl.name),
                ("name", &cl.name),
                ("project", &cl.project),
                ("provider", cl.provider.as_str()),
                ("provisioner", cl.provider.provisioner()),
                ("region", &cl.region),
            ],
            1.0,
        );
    }
    // Node families.
    type NodeVal = fn(&crate::fleet::Node) -> f64;
    let node_families: [(&str, &str, NodeVal); 8] = [
        (
            "node_cpu_hourly_cost",
            "node_cpu_hourly_cost hourly cost for each cpu on this node",
            |n| n.cpu_price,
        ),
        (
            "node_ram_hourly_cost",
            "node_ram_hourly_cost hourly cost for each gb of ram on this node",
            |n| n.ram_price,
        ),
        (
            "node_gpu_hourly_cost",
            "node_gpu_hourly_cost hourly cost for each gpu on this node",
            |n| n.gpu_price,
        ),
        (
            "node_gpu_count",
            "node_gpu_count count of gpu on this node",
            |n| n.gpus,
        ),
        (
            "node_total_hourly_cost",
            "node_total_hourly_cost Total node cost per hour",
            |n| n.hourly_cost(),
        ),
        (
            "kubecost_node_is_spot",
            "kubecost_node_is_spot Cloud provider info about node preemptibility",
            |n| {
                if n.spot { 1.0 } else { 0.0 }
            },
        ),
        (
            "kube_node_status_capacity_cpu_cores",
            "kube_node_status_capacity_cpu_cores node capacity cpu cores",
            |n| n.cores,
        ),
        (
            "kube_node_status_capacity_memory_bytes",
            "kube_node_status_capacity_memory_bytes node capacity memory bytes",
            |n| n.ram_bytes,
        ),
    ];
    for (name, help, val) in node_families {
        header(&mut out.buf, name, "gauge", help);
        for (_, cl) in &clusters {
            for n in &cl.nodes {
                let labels: Vec<(&str, &str)> = if name.starts_with("kube_node") {
                    vec![("cluster_id", &cl.name), ("node", &n.name)]
                } else {
                    vec![
                        ("arch", "amd64"),
                        ("cluster_id", &cl.name),
                        ("instance", &n.name),
                        ("instance_type", n.instance_type),
                        ("node", &n.name),
                        ("provider_id", &n.provider_id),
                        ("region", &cl.region),
                    ]
                };
                line(&mut out.buf, name, &labels, val(n));
            }
        }
        out.boundary();
    }
    header(
        &mut out.buf,
        "kube_node_labels",
        "gauge",
        "all labels for each node prefixed with label_",
    );
    for (_, cl) in &clusters {
        for n in &cl.nodes {
            let keys: Vec<String> = n.labels.iter().map(|(k, _)| format!("label_{k}")).collect();
            let mut labels: Vec<(&str, &str)> = vec![("cluster_id", &cl.name), ("node", &n.name)];
            for (k, (_, v)) in keys.iter().zip(&n.labels) {
                labels.push((k, v));
            }
            line(&mut out.buf, "kube_node_labels", &labels, 1.0);
        }
    }
    header(
        &mut out.buf,
        "kube_namespace_labels",
        "gauge",
        "namespace labels",
    );
    for (_, cl) in &clusters {
        for ns in &cl.namespaces {
            let keys: Vec<String> = ns
                .labels
                .iter()
                .map(|(k, _)| format!("label_{k}"))
                .collect();
            let mut labels: Vec<(&str, &str)> = vec![("cluster_id", &cl.name)];
            for (k, (_, v)) in keys.iter().zip(&ns.labels) {
                labels.push((k, v));
            }
            labels.push(("namespace", &ns.name));
            line(&mut out.buf, "kube_namespace_labels", &labels, 1.0);
        }
    }
    header(
        &mut out.buf,
        "pv_hourly_cost",
        "gauge",
        "pv_hourly_cost Cost per GB per hour on a persistent disk",
    );
    for (_, cl) in &clusters {
        for pv in &cl.pvs {
            line(
                &mut out.buf,
                "pv_hourly_cost",
                &[
                    ("cluster_id", &cl.name),
                    ("persistentvolume", &pv.name),
                    ("provider_id", &pv.provider_id),
                    ("volumename", &pv.name),
                ],
                pv.price,
            );
        }
    }
    header(
        &mut out.buf,
        "kubecost_cluster_management_cost",
        "gauge",
        "kubecost_cluster_management_cost Hourly cost paid as a cluster management fee.",
    );
    for (_, cl) in &clusters {
        line(
            &mut out.buf,
            "kubecost_cluster_management_cost",
            &[
                ("cluster_id", &cl.name),
                ("provisioner_name", cl.provider.provisioner()),
            ],
            cl.mgmt_price,
        );
    }
    for (i, (name, help)) in [
        (
            "kubecost_network_zone_egress_cost",
            "Total cost per GB egress across zones",
        ),
        (
            "kubecost_network_region_egress_cost",
            "Total cost per GB egress across regions",
        ),
        (
            "kubecost_network_internet_egress_cost",
            "Total cost per GB of internet egress.",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        header(&mut out.buf, name, "gauge", &format!("{name} {help}"));
        for (_, cl) in &clusters {
            line(
                &mut out.buf,
                name,
                &[("cluster_id", &cl.name)],
                cl.net_prices.get(i).copied().unwrap_or(0.0),
            );
        }
    }
    header(
        &mut out.buf,
        "kubecost_load_balancer_cost",
        "gauge",
        "kubecost_load_balancer_cost Hourly cost of load balancer",
    );
    for (_, cl) in &clusters {
        for lb in &cl.lbs {
            let ns = cl
                .namespaces
                .get(lb.ns as usize)
                .map(|n| n.name.as_str())
                .unwrap_or("");
            line(
                &mut out.buf,
                "kubecost_load_balancer_cost",
                &[
                    ("cluster_id", &cl.name),
                    ("ingress_ip", &lb.ip),
                    ("namespace", ns),
                    ("service_name", &lb.service),
                ],
                lb.price,
            );
        }
    }
    // Pod and container families, one pass each over the running pods.
    let pod_names: Vec<Vec<String>> = clusters
        .iter()
        .zip(&runs)
        .map(|((ci, cl), r)| {
            r.iter()
                .map(|(p, inst)| f.pod_name(*ci, cl, *p, *inst))
                .collect()
        })
        .collect();
    let families: [(&str, &str, &str); 9] = [
        (
            "kube_pod_labels",
            "gauge",
            "all labels for each pod prefixed with label_",
        ),
        (
            "kube_pod_owner",
            "gauge",
            "Information about the Pod's owner",
        ),
        (
            "pod_pvc_allocation",
            "gauge",
            "pod_pvc_allocation Bytes used by a PVC attached to a pod",
        ),
        (
            "container_cpu_allocation",
            "gauge",
            "container_cpu_allocation Percent of a single CPU used in a minute",
        ),
        (
            "container_memory_allocation_bytes",
            "gauge",
            "container_memory_allocation_bytes Bytes of RAM used",
        ),
        (
            "container_gpu_allocation",
            "gauge",
            "container_gpu_allocation GPU used",
        ),
        (
            "kube_pod_container_resource_requests",
            "gauge",
            "The number of requested resource by a container",
        ),
        (
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed in seconds",
        ),
        (
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set in bytes",
        ),
    ];
    for (fam, kind, help) in families {
        header(&mut out.buf, fam, kind, help);
        for (((ci, cl), run), names) in clusters.iter().zip(&runs).zip(&pod_names) {
            for ((pod, _), pname) in run.iter().zip(names) {
                let Some(p) = cl.pods.get(*pod as usize) else {
                    continue;
                };
                let Some(ctrl) = cl.controllers.get(p.ctrl as usize) else {
                    continue;
                };
                let Some(node) = cl.nodes.get(p.node as usize) else {
                    continue;
                };
                let ns = cl
                    .namespaces
                    .get(ctrl.ns as usize)
                    .map(|n| n.name.as_str())
                    .unwrap_or("");
                let c = cl.name.as_str();
                match fam {
                    "kube_pod_labels" => {
                        let keys: Vec<String> = ctrl
                            .labels
                            .iter()
                            .map(|(k, _)| format!("label_{k}"))
                            .collect();
                        let mut l: Vec<(&str, &str)> = vec![("cluster_id", c)];
                        for (k, (_, v)) in keys.iter().zip(&ctrl.labels) {
                            l.push((k, v));
                        }
                        l.push(("namespace", ns));
                        l.push(("pod", pname));
                        line(&mut out.buf, fam, &l, 1.0);
                    }
                    "kube_pod_owner" => {
                        let owner = if ctrl.kind == Kind::Deployment {
                            // The ReplicaSet name is the pod name without its last segment.
                            pname.rsplit_once('-').map(|(a, _)| a).unwrap_or(pname)
                        } else {
                            ctrl.name.as_str()
                        };
                        line(
                            &mut out.buf,
                            fam,
                            &[
                                ("cluster_id", c),
                                ("namespace", ns),
                                ("owner_is_controller", "true"),
                                ("owner_kind", ctrl.kind.owner_kind()),
                                ("owner_name", owner),
                                ("pod", pname),
                            ],
                            1.0,
                        );
                    }
                    "pod_pvc_allocation" => {
                        if let Some(pv) = p.pv.and_then(|v| cl.pvs.get(v as usize)) {
                            line(
                                &mut out.buf,
                                fam,
                                &[
                                    ("cluster_id", c),
                                    ("namespace", ns),
                                    ("persistentvolume", &pv.name),
                                    ("persistentvolumeclaim", &pv.claim),
                                    ("pod", pname),
                                ],
                                pv.bytes,
                            );
                        }
                    }
                    _ => {
                        for (k, cont) in ctrl.containers.iter().enumerate() {
                            let sm = f.sample(*ci, cl, *pod, k, h);
                            let base = [
                                ("cluster_id", c),
                                ("container", cont.name),
                                ("instance", node.name.as_str()),
                                ("namespace", ns),
                                ("node", node.name.as_str()),
                                ("pod", pname.as_str()),
                            ];
                            match fam {
                                "container_cpu_allocation" => {
                                    line(&mut out.buf, fam, &base, sm.alloc_cpu())
                                }
                                "container_memory_allocation_bytes" => {
                                    line(&mut out.buf, fam, &base, sm.alloc_ram())
                                }
                                "container_gpu_allocation" => {
                                    if sm.gpu > 0.0 {
                                        line(&mut out.buf, fam, &base, sm.gpu);
                                    }
                                }
                                "kube_pod_container_resource_requests" => {
                                    for (res, unit, v) in [
                                        ("cpu", "core", sm.req_cpu),
                                        ("memory", "byte", sm.req_ram),
                                    ] {
                                        line(
                                            &mut out.buf,
                                            fam,
                                            &[
                                                ("cluster_id", c),
                                                ("container", cont.name),
                                                ("namespace", ns),
                                                ("node", node.name.as_str()),
                                                ("pod", pname.as_str()),
                                                ("resource", res),
                                                ("unit", unit),
                                            ],
                                            v,
                                        );
                                    }
                                }
                                "container_cpu_usage_seconds_total" => {
                                    line(
                                        &mut out.buf,
                                        fam,
                                        &base,
                                        cpu_counter(f, *ci, cl, *pod, k, t),
                                    );
                                }
                                _ => line(&mut out.buf, fam, &base, sm.use_ram),
                            }
                        }
                    }
                }
                if !out.boundary() {
                    return;
                }
            }
        }
    }
}
