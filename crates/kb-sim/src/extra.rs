//! Small endpoints: budgets, savings (request sizing, cluster sizing, abandoned workloads),
//! spec cost prediction and the allocation topline. Their answers are small, so they are built
//! with `serde_json::json!` (the big endpoints never build value trees).
//!
//! Invariant: every number comes from the fleet model (requests, prices, usage expectations),
//! so the answers are deterministic for a seed and consistent with the allocation API.

use crate::alloc::{AllocOpts, Field};
use crate::fleet::{Cluster, Fleet, GIB, HOUR, Kind};
use crate::server::{AppState, envelope, param, window_param};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kb_core::Window;
use serde_json::{Value, json};
use std::sync::Arc;

type St = State<Arc<AppState>>;
type Params = Query<Vec<(String, String)>>;

const MONTH_HOURS: f64 = 730.0;

fn to_response(v: &Value) -> Response {
    envelope(&serde_json::to_vec(v).unwrap_or_default())
}

fn bare(v: &Value) -> Response {
    crate::server::json_response(StatusCode::OK, serde_json::to_vec(v).unwrap_or_default())
}

async fn blocking<F>(f: F) -> Response
where
    F: FnOnce() -> Response + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
    }
}

/// Cost of the rows of a cluster (optionally one namespace, then without idle) over a window.
fn spend(fleet: &Fleet, cluster: &str, ns: Option<&str>, w: Window) -> f64 {
    match ns {
        None => fleet.allocation_total(cluster, w),
        Some(ns) => {
            let mut o = AllocOpts::default();
            o.filter.and_v1(Field::Cluster, cluster);
            o.filter.and_v1(Field::Namespace, ns);
            let mut sink = crate::alloc::AggSink {
                rows: Default::default(),
            };
            let _idle = fleet.gen_set(w, &o, &mut sink);
            sink.rows.values().map(|(_, a)| a.total()).sum()
        }
    }
}

fn hourly_capacity_cost(cl: &Cluster) -> f64 {
    cl.nodes.iter().map(|n| n.hourly_cost()).sum::<f64>() + cl.tenancy_rate()
}

/// `GET /model/budgets`: a weekly budget per cluster and a monthly one for `kube-system`.
pub(crate) async fn budgets(State(st): St) -> Response {
    let now = st.now();
    blocking(move || {
        let fleet = &st.fleet;
        let day = now.div_euclid(86_400) * 86_400;
        // 1970-01-01 was a Thursday (day 4 counting from Sunday).
        let dow = (now.div_euclid(86_400) + 4).rem_euclid(7);
        let week = Window {
            start: day - dow * 86_400,
            end: day - dow * 86_400 + 7 * 86_400,
        };
        let month = kb_core::window::parse_kubecost_window("month", now)
            .map(|w| Window {
                start: w.start,
                end: w.start + 31 * 86_400,
            })
            .unwrap_or(week);
        let hour_now = now.div_euclid(HOUR) * HOUR;
        let mut out = Vec::new();
        for (i, cl) in fleet.clusters.iter().enumerate() {
            for (id, kind, interval, day_n, w, ns) in [
                (
                    format!("budget-{}-weekly", cl.name),
                    "cluster",
                    "weekly",
                    0,
                    week,
                    None,
                ),
                (
                    format!("budget-{}-kube-system", cl.name),
                    "namespace",
                    "monthly",
                    1,
                    month,
                    Some("kube-system"),
                ),
            ] {
                let data = Window {
                    start: w.start,
                    end: hour_now.max(w.start + 1),
                };
                let current = spend(fleet, &cl.name, ns, data);
                let hours = (w.end - w.start) as f64 / HOUR as f64;
                let limit = match ns {
                    None => (hourly_capacity_cost(cl) * hours * 0.9).round(),
                    Some(_) => (current * hours / ((data.end - data.start) as f64 / HOUR as f64)
                        * 1.2)
                        .round()
                        .max(1.0),
                };
                let values = match ns {
                    None => json!({ "cluster": [cl.name] }),
                    Some(n) => json!({ "cluster": [cl.name], "namespace": [n] }),
                };
                out.push(json!({
                    "name": format!("{} {} budget", cl.name, ns.unwrap_or(kind)),
                    "type": "allocations",
                    "id": id,
                    "values": values,
                    "kind": "soft",
                    "interval": interval,
                    "intervalDay": day_n,
                    "spendLimit": limit,
                    "actions": [{
                        "amount": limit * 0.8,
                        "percentage": 80,
                        "slackWebhooks": [],
                        "msTeamsWebhooks": [],
                        "emails": [format!("team-{}@example.com", i + 1)],
                        "lastFired": "0001-01-01T00:00:00Z",
                    }],
                    "window": {
                        "start": kb_core::window::format_rfc3339(w.start),
                        "end": kb_core::window::format_rfc3339(w.end),
                    },
                    "currentSpend": current,
                }));
            }
        }
        to_response(&Value::Array(out))
    })
    .await
}

fn cpu_q(cores: f64) -> String {
    format!("{}m", (cores * 1000.0).round().max(1.0) as i64)
}

fn mem_q(bytes: f64) -> String {
    format!("{}Mi", (bytes / 1_048_576.0).round().max(1.0) as i64)
}

/// Average node prices of a cluster ($/core-h, $/GiB-h).
fn avg_prices(cl: &Cluster) -> (f64, f64) {
    let n = cl.nodes.len().max(1) as f64;
    (
        cl.nodes.iter().map(|x| x.cpu_price).sum::<f64>() / n,
        cl.nodes.iter().map(|x| x.ram_price).sum::<f64>() / n,
    )
}

/// `GET /model/savings/requestSizingV2`: a bare array, one entry per controller container.
pub(crate) async fn request_sizing(State(st): St, Query(q): Params) -> Response {
    let target_cpu: f64 = param(&q, "targetCPUUtilization")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.7);
    let target_ram: f64 = param(&q, "targetRAMUtilization")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.7);
    let fleet = st.fleet.clone();
    let mut out = Vec::new();
    for cl in &fleet.clusters {
        let (cp, rp) = avg_prices(cl);
        for ctrl in &cl.controllers {
            let ns = cl
                .namespaces
                .get(ctrl.ns as usize)
                .map(|n| n.name.as_str())
                .unwrap_or("");
            for c in &ctrl.containers {
                // Expected usage: efficiency × the mean of the daily/weekly pattern (~0.7).
                let use_cpu = c.cpu * c.cpu_eff * 0.7;
                let use_ram = c.ram * c.ram_eff * 0.93;
                let rec_cpu = (use_cpu / target_cpu.max(0.01)).max(0.01);
                let rec_ram = (use_ram / target_ram.max(0.01)).max(20.0 * 1_048_576.0);
                let sav_cpu = (c.cpu - rec_cpu) * cp * MONTH_HOURS * f64::from(ctrl.pods);
                let sav_ram = (c.ram - rec_ram) / GIB * rp * MONTH_HOURS * f64::from(ctrl.pods);
                let eff_cpu = use_cpu / c.cpu;
                let eff_ram = use_ram / c.ram;
                let wc = c.cpu * cp;
                let wr = c.ram / GIB * rp;
                out.push(json!({
                    "clusterID": cl.name,
                    "namespace": ns,
                    "controllerKind": ctrl.kind.as_str(),
                    "controllerName": ctrl.name,
                    "containerName": c.name,
                    "recommendedRequest": { "cpu": cpu_q(rec_cpu), "memory": mem_q(rec_ram) },
                    "monthlySavings": { "cpu": sav_cpu, "memory": sav_ram },
                    "latestKnownRequest": { "cpu": cpu_q(c.cpu), "memory": mem_q(c.ram) },
                    "currentEfficiency": {
                        "cpu": eff_cpu,
                        "memory": eff_ram,
                        "total": (eff_cpu * wc + eff_ram * wr) / (wc + wr),
                    },
                }));
            }
        }
    }
    bare(&Value::Array(out))
}

/// `GET /model/savings/clusterSizingETL`: the fixture's shape per cluster.
pub(crate) async fn cluster_sizing(State(st): St, Query(q): Params) -> Response {
    let target: f64 = param(&q, "targetUtilization")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.8);
    let fleet = st.fleet.clone();
    let mut data = serde_json::Map::new();
    for cl in &fleet.clusters {
        let (cp, rp) = avg_prices(cl);
        let mut req_cpu = 0.0;
        let mut req_ram = 0.0;
        let mut ds_cpu = 0.0;
        let mut ds_ram = 0.0;
        let (mut ds_count, mut non_ds) = (0u64, 0u64);
        let (mut max_cpu, mut max_ram) = (0.0f64, 0.0f64);
        for p in &cl.pods {
            let cs = cl.containers(p);
            let c: f64 = cs.iter().map(|c| c.cpu).sum();
            let r: f64 = cs.iter().map(|c| c.ram).sum::<f64>() / GIB;
            let kind = cl.controllers.get(p.ctrl as usize).map(|c| c.kind);
            if kind == Some(Kind::DaemonSet) {
                ds_cpu += c;
                ds_ram += r;
                ds_count += 1;
            } else {
                non_ds += 1;
            }
            req_cpu += c;
            req_ram += r;
            max_cpu = max_cpu.max(c);
            max_ram = max_ram.max(r);
        }
        let (vcpus, ramgb) = (8.0, 32.0);
        let count = ((req_cpu / target / vcpus).max(req_ram / target / ramgb))
            .ceil()
            .max(3.0);
        let hourly = vcpus * cp + ramgb * rp;
        let total_monthly = hourly * MONTH_HOURS * count;
        let current_monthly = cl.nodes.iter().map(|n| n.hourly_cost()).sum::<f64>() * MONTH_HOURS;
        let pool = json!({
            "type": {
                "provider": cl.provider.as_str(),
                "name": "standard-8",
                "vCPUs": vcpus,
                "RAMGB": ramgb,
                "hourlyPrice": hourly,
                "spotHourlyPrice": hourly * 0.3,
                "sharedCore": false,
                "architecture": "x86",
                "region": cl.region,
                "pricePerRAMByteHr": rp / GIB,
                "pricePerCPUCoreHr": cp,
                "spotPricePerRAMByteHr": rp * 0.3 / GIB,
                "spotPricePerCPUCoreHr": cp * 0.3,
            },
            "count": count,
            "totalMonthlyCost": total_monthly,
            "totalRAMGB": ramgb * count,
            "totalVCPUs": vcpus * count,
        });
        let rec = json!({
            "pools": [pool],
            "nodeCount": count,
            "monthlySavings": current_monthly - total_monthly,
            "totalMonthlyCost": total_monthly,
            "requiredRAMGB": req_ram,
            "totalRAMGB": ramgb * count,
            "utilizationRAMGB": req_ram / (ramgb * count),
            "requiredVCPUs": req_cpu,
            "totalVCPUs": vcpus * count,
            "utilizationVCPUs": req_cpu / (vcpus * count),
        });
        let mut by_type: Vec<(&str, f64, f64, u64)> = Vec::new();
        for n in &cl.nodes {
            match by_type.iter_mut().find(|x| x.0 == n.instance_type) {
                Some(x) => x.3 += 1,
                None => by_type.push((n.instance_type, n.cores, n.ram_bytes / GIB, 1)),
            }
        }
        let nodes: Vec<Value> = by_type
            .iter()
            .map(|(name, c, r, k)| {
                json!({"name": name, "provider": cl.provider.as_str(), "architecture": "x86", "count": k, "RAMGB": r, "vCPUs": c})
            })
            .collect();
        data.insert(
            cl.name.clone(),
            json!({
                "recommendations": { "multi": rec.clone(), "single": rec },
                "parameters": {
                    "clusterId": cl.name,
                    "clusterName": "",
                    "staticVCPUs": req_cpu - ds_cpu,
                    "staticRAMGB": req_ram - ds_ram,
                    "nonDaemonSetPodCount": non_ds,
                    "daemonSetVCPUs": ds_cpu,
                    "daemonSetRAMGB": ds_ram,
                    "daemonSetCount": ds_count,
                    "maxPodVCPUs": max_cpu,
                    "maxPodRAMGB": max_ram,
                },
                "preferences": {
                    "minNodeCount": 3,
                    "strategies": null,
                    "targetUtilization": target,
                    "allowSharedCore": false,
                    "architecture": "",
                },
                "currentClusterInfo": {
                    "monthlyRate": current_monthly,
                    "nodes": nodes,
                    "totalCounts": {
                        "totalNodeCount": cl.nodes.len(),
                        "totalRAMGB": cl.nodes.iter().map(|n| n.ram_bytes / GIB).sum::<f64>(),
                        "totalVCPUs": cl.nodes.iter().map(|n| n.cores).sum::<f64>(),
                    },
                },
            }),
        );
    }
    to_response(&Value::Object(data))
}

/// `GET /model/savings/abandonedWorkloads`: pods with almost no traffic.
pub(crate) async fn abandoned(State(st): St) -> Response {
    let now = st.now();
    let fleet = st.fleet.clone();
    let h = now.div_euclid(HOUR) * HOUR;
    let mut out = Vec::new();
    for (ci, cl) in fleet.clusters.iter().enumerate() {
        let (cp, rp) = avg_prices(cl);
        for (pi, p) in cl.pods.iter().enumerate() {
            let Some(ctrl) = cl.controllers.get(p.ctrl as usize) else {
                continue;
            };
            if ctrl.kind == Kind::Job || ctrl.containers.iter().any(|c| c.net_base > 3e6) {
                continue;
            }
            let pod = pi as u32;
            let net: f64 = ctrl.containers.iter().map(|c| c.net_base).sum::<f64>() / HOUR as f64;
            let cpu: f64 = ctrl.containers.iter().map(|c| c.cpu).sum();
            let ram: f64 = ctrl.containers.iter().map(|c| c.ram).sum();
            let use_cpu: f64 = (0..ctrl.containers.len())
                .map(|k| fleet.sample(ci, cl, pod, k, h).use_cpu)
                .sum();
            let use_ram: f64 = (0..ctrl.containers.len())
                .map(|k| fleet.sample(ci, cl, pod, k, h).use_ram)
                .sum();
            let ns = cl
                .namespaces
                .get(ctrl.ns as usize)
                .map(|n| n.name.as_str())
                .unwrap_or("");
            let node = cl
                .nodes
                .get(p.node as usize)
                .map(|n| n.name.as_str())
                .unwrap_or("");
            out.push(json!({
                "pod": fleet.pod_name(ci, cl, pod, fleet.instance(cl, pod, h)),
                "namespace": ns,
                "node": node,
                "clusterId": cl.name,
                "clusterName": cl.name,
                "owners": [{ "name": ctrl.name, "kind": ctrl.kind.as_str() }],
                "ingressBytesPerSecond": net * 1.7,
                "egressBytesPerSecond": net,
                "allocation": { "cpuCores": cpu.max(use_cpu), "ramBytes": ram.max(use_ram) },
                "requests": { "cpuCores": cpu, "ramBytes": ram },
                "usage": { "cpuCores": use_cpu, "ramBytes": use_ram },
                "monthlySavings": (cpu * cp + ram / GIB * rp) * MONTH_HOURS,
            }));
        }
    }
    bare(&Value::Array(out))
}

/// Parses a Kubernetes cpu quantity (`100m`, `0.5`, `2`).
fn parse_cpu(s: &str) -> Option<f64> {
    let s = s.trim().trim_matches('"').trim_matches('\'');
    match s.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok().map(|v| v / 1000.0),
        None => s.parse().ok(),
    }
}

/// Parses a Kubernetes memory quantity (`128Mi`, `1Gi`, `500M`, bytes).
fn parse_mem(s: &str) -> Option<f64> {
    let s = s.trim().trim_matches('"').trim_matches('\'');
    for (suf, mul) in [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", GIB),
        ("Ti", GIB * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ] {
        if let Some(n) = s.strip_suffix(suf) {
            return n.parse::<f64>().ok().map(|v| v * mul);
        }
    }
    s.parse().ok()
}

#[derive(Debug, Default)]
struct Workload {
    kind: String,
    name: String,
    namespace: String,
    replicas: f64,
    cpu: f64,
    ram: f64,
}

/// A tolerant line scan of YAML or pretty JSON manifests: kind, metadata name/namespace,
/// replicas and the `requests` cpu/memory of each container.
fn scan(body: &str) -> Vec<Workload> {
    let mut out: Vec<Workload> = Vec::new();
    let mut in_requests = false;
    for raw in body.lines() {
        let l = raw.trim().trim_end_matches(',').trim_start_matches("- ");
        let Some((k, v)) = l.split_once(':') else {
            if l.starts_with("---") {
                in_requests = false;
            }
            continue;
        };
        let k = k.trim().trim_matches('"');
        let v = v.trim().trim_matches('"').trim_end_matches('{').trim();
        match k {
            "kind"
                if matches!(
                    v,
                    "Deployment" | "StatefulSet" | "DaemonSet" | "Pod" | "Job"
                ) =>
            {
                out.push(Workload {
                    kind: v.to_lowercase(),
                    replicas: 1.0,
                    ..Workload::default()
                });
                in_requests = false;
            }
            "name" => {
                if let Some(w) = out.last_mut().filter(|w| w.name.is_empty()) {
                    w.name = v.to_string();
                }
            }
            "namespace" => {
                if let Some(w) = out.last_mut().filter(|w| w.namespace.is_empty()) {
                    w.namespace = v.to_string();
                }
            }
            "replicas" => {
                if let (Some(w), Ok(r)) = (out.last_mut(), v.parse::<f64>()) {
                    w.replicas = r;
                }
            }
            "requests" => in_requests = true,
            "limits" => in_requests = false,
            "cpu" if in_requests => {
                if let (Some(w), Some(c)) = (out.last_mut(), parse_cpu(v)) {
                    w.cpu += c;
                }
            }
            "memory" if in_requests => {
                if let (Some(w), Some(m)) = (out.last_mut(), parse_mem(v)) {
                    w.ram += m;
                    in_requests = false;
                }
            }
            _ => {}
        }
    }
    out
}

/// `POST /model/prediction/speccost`: monthly cost of the workloads in the body at the
/// cluster's average prices (before = the same controller in the fleet, if any).
pub(crate) async fn speccost(State(st): St, Query(q): Params, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let fleet = st.fleet.clone();
    let cluster = param(&q, "clusterID")
        .and_then(|c| fleet.cluster_index(c))
        .unwrap_or(0);
    let Some(cl) = fleet.clusters.get(cluster) else {
        return to_response(&json!([]));
    };
    let default_ns = param(&q, "defaultNamespace").unwrap_or("default");
    let (cp, rp) = avg_prices(cl);
    let cost = |cpu: f64, ram: f64| {
        let ch = cpu * MONTH_HOURS;
        let rbh = ram * MONTH_HOURS;
        json!({
            "totalMonthlyRate": ch * cp + rbh / GIB * rp,
            "cpuMonthlyRate": ch * cp,
            "ramMonthlyRate": rbh / GIB * rp,
            "gpuMonthlyRate": 0,
            "monthlyCPUCoreHours": ch,
            "monthlyRAMByteHours": rbh,
            "monthlyGPUHours": 0,
        })
    };
    let mut out = Vec::new();
    for w in scan(&text) {
        let ns = if w.namespace.is_empty() {
            default_ns
        } else {
            w.namespace.as_str()
        };
        let before = cl
            .controllers
            .iter()
            .find(|c| {
                c.name == w.name
                    && cl
                        .namespaces
                        .get(c.ns as usize)
                        .is_some_and(|n| n.name == ns)
            })
            .map(|c| {
                let cpu: f64 = c.containers.iter().map(|x| x.cpu).sum();
                let ram: f64 = c.containers.iter().map(|x| x.ram).sum();
                (cpu * f64::from(c.pods), ram * f64::from(c.pods))
            })
            .unwrap_or((0.0, 0.0));
        let after = (w.cpu * w.replicas, w.ram * w.replicas);
        out.push(json!({
            "namespace": ns,
            "controllerKind": w.kind,
            "controllerName": w.name,
            "costBefore": cost(before.0, before.1),
            "costAfter": cost(after.0, after.1),
            "costChange": cost(after.0 - before.0, after.1 - before.1),
        }));
    }
    to_response(&Value::Array(out))
}

/// `GET /model/allocation/summary/topline`: totals over the window.
pub(crate) async fn topline(State(st): St, Query(q): Params) -> Response {
    let w = match window_param(&st, &q) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = st.now();
    blocking(move || {
        let data = Window {
            start: w.start,
            end: w.end.min(now).max(w.start + 1),
        };
        let total: f64 = st
            .fleet
            .clusters
            .iter()
            .map(|c| st.fleet.allocation_total(&c.name, data))
            .sum();
        to_response(&json!({
            "numResults": st.fleet.clusters.len(),
            "combined": {
                "allocations": { "total": { "name": "total", "totalCost": total } },
                "window": {
                    "start": kb_core::window::format_rfc3339(w.start),
                    "end": kb_core::window::format_rfc3339(w.end),
                },
            },
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_yaml_and_json_requests() {
        let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: app\n        resources:\n          requests:\n            cpu: 250m\n            memory: 512Mi\n";
        let w = scan(yaml);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].name, "web");
        assert_eq!(w[0].namespace, "shop");
        assert_eq!(w[0].replicas, 3.0);
        assert_eq!(w[0].cpu, 0.25);
        assert_eq!(w[0].ram, 512.0 * 1_048_576.0);
        let js = "{\n \"kind\": \"Deployment\",\n \"metadata\": {\n  \"name\": \"api\"\n },\n \"spec\": {\n  \"replicas\": 2,\n  \"template\": {\"spec\": {\"containers\": [\n   {\"name\": \"x\", \"resources\": {\n    \"requests\": {\n     \"cpu\": \"1\",\n     \"memory\": \"1Gi\"\n    }\n   }}\n  ]}}\n }\n}";
        let w = scan(js);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].cpu, 1.0);
        assert_eq!(w[0].ram, GIB);
    }
}
