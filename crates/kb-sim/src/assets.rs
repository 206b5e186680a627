//! Asset sets (`/model/assets`): Node, Disk (node root disks and PVs), LoadBalancer,
//! ClusterManagement and Network assets per cluster, aggregation by properties, and the JSON
//! writer of Kubecost's asset objects.
//!
//! Invariants: asset costs use the same per-piece formulas as the allocation side, so the
//! asset total of a cluster and window equals its allocation total (see the crate docs);
//! Network is the sum of the containers' `networkCost` over the window.

use crate::alloc::Acc;
use crate::fleet::{Fleet, GIB, HOUR, hash, unit};
use crate::json::{self, kf, ks};
use crate::stream::Out;
use kb_core::Window;
use std::collections::BTreeMap;

/// One asset (or an aggregate of several).
#[derive(Debug, Clone, Default)]
pub(crate) struct AssetRow<'a> {
    /// `Node`, `Disk`, ...; `None` for a mix of types (Kubecost's `Any`, no `type` key).
    pub ty: Option<&'static str>,
    pub category: Option<&'static str>,
    pub provider: Option<&'a str>,
    pub account: Option<&'a str>,
    pub project: Option<&'a str>,
    pub cluster: Option<&'a str>,
    pub name: Option<&'a str>,
    pub provider_id: Option<&'a str>,
    pub labels: Vec<(&'a str, &'a str)>,
    pub start: i64,
    pub end: i64,
    pub node_type: Option<&'a str>,
    pub cpu_cores: f64,
    pub ram_bytes: f64,
    pub cpu_core_hours: f64,
    pub ram_byte_hours: f64,
    pub gpu_hours: f64,
    pub gpu_count: f64,
    pub preemptible: f64,
    pub cpu_cost: f64,
    pub ram_cost: f64,
    pub gpu_cost: f64,
    pub bytes: f64,
    pub byte_hours: f64,
    pub byte_hours_used: f64,
    pub cost: f64,
    pub ip: Option<&'a str>,
    pub storage_class: &'a str,
    pub volume_name: &'a str,
    pub claim_name: &'a str,
    pub claim_namespace: &'a str,
    pub breakdown: [f64; 4],
}

impl<'a> AssetRow<'a> {
    pub(crate) fn total(&self) -> f64 {
        if self.ty == Some("Node") {
            self.cpu_cost + self.ram_cost + self.gpu_cost
        } else {
            self.cost
        }
    }

    fn merge(&mut self, o: &AssetRow<'a>) {
        fn keep<T: PartialEq + Copy>(a: &mut Option<T>, b: Option<T>) {
            if *a != b {
                *a = None;
            }
        }
        if self.ty != o.ty {
            // Mixed types: an `Any` asset with the total as plain cost.
            let t = self.total() + o.total();
            self.ty = None;
            self.cost = t;
            self.cpu_cost = 0.0;
            self.ram_cost = 0.0;
            self.gpu_cost = 0.0;
        } else if self.ty == Some("Node") {
            self.cpu_cost += o.cpu_cost;
            self.ram_cost += o.ram_cost;
            self.gpu_cost += o.gpu_cost;
        } else {
            self.cost += o.cost;
        }
        keep(&mut self.category, o.category);
        keep(&mut self.provider, o.provider);
        keep(&mut self.account, o.account);
        keep(&mut self.project, o.project);
        keep(&mut self.cluster, o.cluster);
        keep(&mut self.name, o.name);
        keep(&mut self.provider_id, o.provider_id);
        keep(&mut self.node_type, o.node_type);
        keep(&mut self.ip, o.ip);
        self.labels.retain(|p| o.labels.contains(p));
        self.start = self.start.min(o.start);
        self.end = self.end.max(o.end);
        self.cpu_cores += o.cpu_cores;
        self.ram_bytes += o.ram_bytes;
        self.cpu_core_hours += o.cpu_core_hours;
        self.ram_byte_hours += o.ram_byte_hours;
        self.gpu_hours += o.gpu_hours;
        self.gpu_count += o.gpu_count;
        self.preemptible = self.preemptible.max(o.preemptible);
        self.bytes += o.bytes;
        self.byte_hours += o.byte_hours;
        self.byte_hours_used += o.byte_hours_used;
        if self.storage_class != o.storage_class {
            self.storage_class = "";
        }
        self.volume_name = "";
        self.claim_name = "";
        self.claim_namespace = "";
    }
}

/// Options of one assets query.
#[derive(Debug, Clone, Default)]
pub(crate) struct AssetOpts {
    /// Aggregate properties: `type`, `cluster`, `provider`, `account`, `project`, `providerid`,
    /// `category`, `service`.
    pub aggregate: Vec<String>,
    /// Clusters to keep (empty = all).
    pub clusters: Vec<String>,
    /// Types to keep, lower case (empty = all).
    pub types: Vec<String>,
}

impl Fleet {
    /// Every asset of the matching clusters over a (clipped) window.
    pub(crate) fn asset_rows(&self, w: Window, o: &AssetOpts) -> Vec<AssetRow<'_>> {
        let mut out = Vec::new();
        let type_ok =
            |t: &str| o.types.is_empty() || o.types.iter().any(|x| x.eq_ignore_ascii_case(t));
        for (ci, cl) in self.clusters.iter().enumerate() {
            if !o.clusters.is_empty() && !o.clusters.contains(&cl.name) {
                continue;
            }
            let pieces = self.pieces(ci, w);
            let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
                continue;
            };
            let (s, e) = (first.a, last.b);
            let secs = (e - s) as f64;
            let hrs = secs / HOUR as f64;
            let base = AssetRow {
                provider: Some(cl.provider.as_str()),
                account: (!cl.account.is_empty()).then_some(cl.account.as_str()),
                project: Some(cl.project.as_str()),
                cluster: Some(cl.name.as_str()),
                start: s,
                end: e,
                ..AssetRow::default()
            };
            if type_ok("Node") || type_ok("Disk") {
                for (ni, n) in cl.nodes.iter().enumerate() {
                    if type_ok("Node") {
                        let u = unit(hash(self.seed, &[77, ci as u64, ni as u64]));
                        let user = 0.2 + 0.5 * u;
                        // Per piece, like the allocation side's idle computation.
                        let mut r = AssetRow {
                            ty: Some("Node"),
                            category: Some("Compute"),
                            name: Some(n.name.as_str()),
                            provider_id: Some(n.provider_id.as_str()),
                            labels: n
                                .labels
                                .iter()
                                .map(|(k, v)| (k.as_str(), v.as_str()))
                                .collect(),
                            node_type: Some(n.instance_type),
                            cpu_cores: n.cores,
                            ram_bytes: n.ram_bytes,
                            gpu_count: n.gpus,
                            preemptible: if n.spot { 1.0 } else { 0.0 },
                            breakdown: [1.0 - user - 0.05, 0.01, 0.04, user],
                            ..base.clone()
                        };
                        for p in &pieces {
                            let h = (p.b - p.a) as f64 / HOUR as f64;
                            r.cpu_cost += n.cores * h * n.cpu_price;
                            r.ram_cost += n.ram_bytes * h / GIB * n.ram_price;
                            r.gpu_cost += n.gpus * h * n.gpu_price;
                        }
                        r.cpu_core_hours = n.cores * hrs;
                        r.ram_byte_hours = n.ram_bytes * hrs;
                        r.gpu_hours = n.gpus * hrs;
                        out.push(r);
                    }
                    if type_ok("Disk") {
                        out.push(AssetRow {
                            ty: Some("Disk"),
                            category: Some("Storage"),
                            name: Some(n.name.as_str()),
                            provider_id: Some(n.disk_provider_id.as_str()),
                            bytes: n.disk_bytes,
                            byte_hours: n.disk_bytes * hrs,
                            byte_hours_used: n.disk_bytes * hrs * 0.35,
                            cost: n.disk_bytes / GIB * n.disk_price * hrs,
                            breakdown: [0.65, 0.0, 0.35, 0.0],
                            ..base.clone()
                        });
                    }
                }
            }
            if type_ok("Disk") {
                for pv in &cl.pvs {
                    let ns = cl
                        .namespaces
                        .get(pv.ns as usize)
                        .map(|n| n.name.as_str())
                        .unwrap_or("");
                    out.push(AssetRow {
                        ty: Some("Disk"),
                        category: Some("Storage"),
                        name: Some(pv.name.as_str()),
                        provider_id: Some(pv.provider_id.as_str()),
                        bytes: pv.bytes,
                        byte_hours: pv.bytes * hrs,
                        byte_hours_used: pv.bytes * hrs * 0.5,
                        cost: pieces.iter().map(|p| pv.cost((p.b - p.a) as f64)).sum(),
                        storage_class: pv.storage_class,
                        volume_name: pv.name.as_str(),
                        claim_name: pv.claim.as_str(),
                        claim_namespace: ns,
                        breakdown: [0.5, 0.0, 0.0, 0.5],
                        ..base.clone()
                    });
                }
            }
            if type_ok("LoadBalancer") {
                for lb in &cl.lbs {
                    out.push(AssetRow {
                        ty: Some("LoadBalancer"),
                        category: Some("Network"),
                        name: Some(lb.service.as_str()),
                        provider_id: Some(lb.ip.as_str()),
                        ip: Some(lb.ip.as_str()),
                        cost: lb.price * hrs,
                        ..base.clone()
                    });
                }
            }
            if type_ok("ClusterManagement") {
                out.push(AssetRow {
                    ty: Some("ClusterManagement"),
                    category: Some("Management"),
                    cost: cl.mgmt_price * hrs,
                    ..base.clone()
                });
            }
            if type_ok("Network") {
                let mut net = 0.0;
                self.container_rows(ci, cl, &pieces, None, &mut |_, _, _, a: Acc| {
                    net += a.net_cost;
                    true
                });
                out.push(AssetRow {
                    ty: Some("Network"),
                    category: Some("Network"),
                    cost: net,
                    ..base.clone()
                });
            }
        }
        out
    }

    /// Sum of asset `totalCost` (Node, Disk, LoadBalancer, ClusterManagement, Network) of a
    /// cluster over a window.
    pub fn asset_total(&self, cluster: &str, window: Window) -> f64 {
        let o = AssetOpts {
            clusters: vec![cluster.to_string()],
            ..AssetOpts::default()
        };
        self.asset_rows(window, &o)
            .iter()
            .map(AssetRow::total)
            .sum()
    }
}

fn asset_key(r: &AssetRow<'_>, aggs: &[String]) -> String {
    let u = |v: Option<&str>| {
        v.filter(|s| !s.is_empty())
            .unwrap_or("__undefined__")
            .to_string()
    };
    let part = |a: &str| -> String {
        match a {
            "type" => u(r.ty),
            "cluster" => u(r.cluster),
            "provider" => u(r.provider),
            "account" => u(r.account),
            "project" => u(r.project),
            "providerid" | "providerID" => u(r.provider_id),
            "category" => u(r.category),
            "service" => "Kubernetes".to_string(),
            "name" => u(r.name),
            _ => "__undefined__".to_string(),
        }
    };
    if aggs.is_empty() {
        // provider/account/project/category/cluster/type/service/providerID/name
        [
            u(r.provider),
            u(r.account),
            u(r.project),
            u(r.category),
            u(r.cluster),
            u(r.ty),
            "Kubernetes".to_string(),
            u(r.provider_id),
            u(r.name),
        ]
        .join("/")
    } else {
        aggs.iter().map(|a| part(a)).collect::<Vec<_>>().join("/")
    }
}

/// Writes the `data` array of asset sets.
pub(crate) fn write_asset_sets(
    fleet: &Fleet,
    sets: &[(Window, Window)],
    o: &AssetOpts,
    out: &mut Out,
) -> bool {
    for (i, (set_w, data_w)) in sets.iter().enumerate() {
        if i > 0 {
            out.buf.push(b',');
        }
        out.buf.push(b'{');
        let rows = fleet.asset_rows(*data_w, o);
        let mut map: BTreeMap<String, AssetRow<'_>> = BTreeMap::new();
        let mut plain = Vec::new();
        if o.aggregate.is_empty() {
            plain = rows.into_iter().map(|r| (asset_key(&r, &[]), r)).collect();
        } else {
            for r in rows {
                let k = asset_key(&r, &o.aggregate);
                match map.get_mut(&k) {
                    Some(x) => x.merge(&r),
                    None => {
                        map.insert(k, r);
                    }
                }
            }
        }
        let mut first = true;
        for (k, r) in plain.iter().map(|(k, r)| (k, r)).chain(map.iter()) {
            if !first {
                out.buf.push(b',');
            }
            first = false;
            write_asset(&mut out.buf, k, r, *set_w);
            if !out.boundary() {
                return false;
            }
        }
        out.buf.push(b'}');
    }
    true
}

fn breakdown(b: &mut Vec<u8>, k: &str, v: [f64; 4]) {
    json::key(b, k);
    b.push(b'{');
    kf(b, "idle", v[0]);
    kf(b, "other", v[1]);
    kf(b, "system", v[2]);
    kf(b, "user", v[3]);
    json::trim_comma(b);
    b.extend_from_slice(b"},");
}

/// Writes `"key":{asset}` in Kubecost's field order for the asset's type.
pub(crate) fn write_asset(b: &mut Vec<u8>, key: &str, r: &AssetRow<'_>, w: Window) {
    json::key(b, key);
    b.push(b'{');
    if let Some(t) = r.ty {
        ks(b, "type", t);
    }
    json::key(b, "properties");
    b.push(b'{');
    let opt = |b: &mut Vec<u8>, k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ks(b, k, v);
        }
    };
    opt(b, "category", r.category);
    opt(b, "provider", r.provider);
    opt(b, "account", r.account);
    opt(b, "project", r.project);
    ks(b, "service", "Kubernetes");
    opt(b, "cluster", r.cluster);
    opt(b, "name", r.name);
    opt(b, "providerID", r.provider_id);
    json::trim_comma(b);
    b.extend_from_slice(b"},");
    json::key(b, "labels");
    json::str_map(b, r.labels.iter().copied());
    b.push(b',');
    json::key(b, "window");
    b.push(b'{');
    ks(b, "start", &kb_core::window::format_rfc3339(w.start));
    ks(b, "end", &kb_core::window::format_rfc3339(w.end));
    json::trim_comma(b);
    b.extend_from_slice(b"},");
    ks(b, "start", &kb_core::window::format_rfc3339(r.start));
    ks(b, "end", &kb_core::window::format_rfc3339(r.end));
    kf(b, "minutes", (r.end - r.start) as f64 / 60.0);
    match r.ty {
        Some("Node") => {
            ks(b, "nodeType", r.node_type.unwrap_or(""));
            kf(b, "cpuCores", r.cpu_cores);
            kf(b, "ramBytes", r.ram_bytes);
            kf(b, "cpuCoreHours", r.cpu_core_hours);
            kf(b, "ramByteHours", r.ram_byte_hours);
            kf(b, "GPUHours", r.gpu_hours);
            breakdown(b, "cpuBreakdown", r.breakdown);
            breakdown(b, "ramBreakdown", r.breakdown);
            kf(b, "preemptible", r.preemptible);
            kf(b, "discount", 0.0);
            kf(b, "cpuCost", r.cpu_cost);
            kf(b, "gpuCost", r.gpu_cost);
            kf(b, "gpuCount", r.gpu_count);
            kf(b, "ramCost", r.ram_cost);
            kf(b, "adjustment", 0.0);
            kf(b, "totalCost", r.total());
        }
        Some("Disk") => {
            kf(b, "byteHours", r.byte_hours);
            kf(b, "bytes", r.bytes);
            kf(b, "byteHoursUsed", r.byte_hours_used);
            b.extend_from_slice(b"\"byteUsageMax\":null,");
            breakdown(b, "breakdown", r.breakdown);
            kf(b, "adjustment", 0.0);
            kf(b, "totalCost", r.total());
            ks(b, "storageClass", r.storage_class);
            ks(b, "volumeName", r.volume_name);
            ks(b, "claimName", r.claim_name);
            ks(b, "claimNamespace", r.claim_namespace);
        }
        Some("LoadBalancer") => {
            kf(b, "adjustment", 0.0);
            kf(b, "totalCost", r.total());
            b.extend_from_slice(b"\"private\":false,");
            ks(b, "ip", r.ip.unwrap_or(""));
        }
        Some("ClusterManagement") => {
            kf(b, "totalCost", r.total());
        }
        _ => {
            kf(b, "adjustment", 0.0);
            kf(b, "totalCost", r.total());
        }
    }
    json::trim_comma(b);
    b.push(b'}');
}
