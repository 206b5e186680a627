//! Allocation sets: container rows accumulated over a set window, filters, aggregation,
//! idle (`__idle__`) and unmounted (`__unmounted__`) rows, shareIdle, and the JSON writer of
//! Kubecost's allocation object.
//!
//! Invariants:
//! - Per cluster and set: Σ container cost + unmounted PV + idle (cpu, gpu, ram, plus any
//!   tenancy cost with no running container) == Σ asset cost of the same window.
//! - shareIdle moves idle per resource into rows in proportion to their cost of that resource
//!   over the whole cluster (unfiltered), so totals are unchanged; a resource with no allocated
//!   cost keeps its idle in an `__idle__` row.
//! - Unaggregated rows are written as they are generated (no per-set buffering).

use crate::fleet::{Cluster, Fleet, GIB, HOUR, NET_SPLIT, Piece};
use crate::json::{self, kf, ks};
use crate::stream::Out;
use kb_core::Window;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Sums of one allocation row over its pieces (hours are resource-hours).
#[derive(Debug, Clone, Default)]
pub(crate) struct Acc {
    pub has: bool,
    pub start: i64,
    pub end: i64,
    pub cpu_req: f64,
    pub cpu_use: f64,
    pub cpu_hours: f64,
    pub cpu_cost: f64,
    pub cpu_idle: f64,
    pub cpu_use_max: f64,
    pub gpu_req: f64,
    pub gpu_hours: f64,
    pub gpu_cost: f64,
    pub gpu_idle: f64,
    pub ram_req: f64,
    pub ram_use: f64,
    pub ram_hours: f64,
    pub ram_cost: f64,
    pub ram_idle: f64,
    pub ram_use_max: f64,
    pub tx: f64,
    pub rx: f64,
    pub net_cost: f64,
    pub net_zone: f64,
    pub net_region: f64,
    pub net_internet: f64,
    pub lb_cost: f64,
    pub pv_byte_hours: f64,
    pub pv_cost: f64,
    pub shared_cost: f64,
    /// (cluster, pv, byteHours, cost)
    pub pvs: Vec<(u32, u32, f64, f64)>,
    /// (cluster, lb, cost, hours)
    pub lbs: Vec<(u32, u32, f64, f64)>,
}

impl Acc {
    fn span(&mut self, s: i64, e: i64) {
        if self.has {
            self.start = self.start.min(s);
            self.end = self.end.max(e);
        } else {
            self.has = true;
            self.start = s;
            self.end = e;
        }
    }

    /// Kubecost's `totalCost` (adjustments are 0).
    pub(crate) fn total(&self) -> f64 {
        self.cpu_cost
            + self.gpu_cost
            + self.ram_cost
            + self.pv_cost
            + self.net_cost
            + self.lb_cost
            + self.shared_cost
    }

    pub(crate) fn merge(&mut self, o: &Acc) {
        if o.has {
            self.span(o.start, o.end);
        }
        self.cpu_req += o.cpu_req;
        self.cpu_use += o.cpu_use;
        self.cpu_hours += o.cpu_hours;
        self.cpu_cost += o.cpu_cost;
        self.cpu_idle += o.cpu_idle;
        self.cpu_use_max = self.cpu_use_max.max(o.cpu_use_max);
        self.gpu_req += o.gpu_req;
        self.gpu_hours += o.gpu_hours;
        self.gpu_cost += o.gpu_cost;
        self.gpu_idle += o.gpu_idle;
        self.ram_req += o.ram_req;
        self.ram_use += o.ram_use;
        self.ram_hours += o.ram_hours;
        self.ram_cost += o.ram_cost;
        self.ram_idle += o.ram_idle;
        self.ram_use_max = self.ram_use_max.max(o.ram_use_max);
        self.tx += o.tx;
        self.rx += o.rx;
        self.net_cost += o.net_cost;
        self.net_zone += o.net_zone;
        self.net_region += o.net_region;
        self.net_internet += o.net_internet;
        self.lb_cost += o.lb_cost;
        self.pv_byte_hours += o.pv_byte_hours;
        self.pv_cost += o.pv_cost;
        self.shared_cost += o.shared_cost;
        for p in &o.pvs {
            add_pv(&mut self.pvs, *p);
        }
        for l in &o.lbs {
            match self.lbs.iter_mut().find(|x| x.0 == l.0 && x.1 == l.1) {
                Some(x) => {
                    x.2 += l.2;
                    x.3 = x.3.max(l.3);
                }
                None => self.lbs.push(*l),
            }
        }
    }
}

fn add_pv(v: &mut Vec<(u32, u32, f64, f64)>, p: (u32, u32, f64, f64)) {
    match v.iter_mut().find(|x| x.0 == p.0 && x.1 == p.1) {
        Some(x) => {
            x.2 += p.2;
            x.3 += p.3;
        }
        None => v.push(p),
    }
}

/// Properties of a row; `None` = not reported (dropped by aggregation).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Props<'a> {
    pub cluster: Option<&'a str>,
    pub node: Option<&'a str>,
    pub container: Option<&'a str>,
    pub controller: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<Cow<'a, str>>,
    pub services: Option<Vec<&'a str>>,
    pub provider_id: Option<&'a str>,
    pub labels: Option<Vec<(&'a str, &'a str)>>,
    pub ns_labels: Option<Vec<(&'a str, &'a str)>>,
}

fn keep<T: PartialEq>(a: &mut Option<T>, b: &Option<T>) {
    if a != b {
        *a = None;
    }
}

fn keep_pairs<'a>(a: &mut Option<Vec<(&'a str, &'a str)>>, b: &Option<Vec<(&'a str, &'a str)>>) {
    match (a.as_mut(), b) {
        (Some(x), Some(y)) => x.retain(|p| y.contains(p)),
        _ => *a = None,
    }
}

impl<'a> Props<'a> {
    /// Keeps only what both rows share (Kubecost's aggregated properties).
    fn intersect(&mut self, o: &Props<'a>) {
        keep(&mut self.cluster, &o.cluster);
        keep(&mut self.node, &o.node);
        keep(&mut self.container, &o.container);
        keep(&mut self.controller, &o.controller);
        keep(&mut self.kind, &o.kind);
        keep(&mut self.namespace, &o.namespace);
        keep(&mut self.pod, &o.pod);
        keep(&mut self.services, &o.services);
        keep(&mut self.provider_id, &o.provider_id);
        keep_pairs(&mut self.labels, &o.labels);
        keep_pairs(&mut self.ns_labels, &o.ns_labels);
    }

    fn label(&self, k: &str) -> Option<&'a str> {
        self.labels
            .as_ref()
            .and_then(|l| l.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v))
    }
}

/// An `aggregate=` property.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AggProp {
    Cluster,
    Node,
    Namespace,
    ControllerKind,
    Controller,
    Pod,
    Container,
    Service,
    Label(String),
}

impl AggProp {
    pub(crate) fn parse(s: &str) -> Option<AggProp> {
        let s = s.trim();
        Some(match s {
            "cluster" => AggProp::Cluster,
            "node" => AggProp::Node,
            "namespace" => AggProp::Namespace,
            "controllerKind" => AggProp::ControllerKind,
            "controller" => AggProp::Controller,
            "pod" => AggProp::Pod,
            "container" => AggProp::Container,
            "service" => AggProp::Service,
            "team" | "department" | "environment" | "owner" | "product" => {
                AggProp::Label(if s == "environment" {
                    "env".into()
                } else {
                    s.into()
                })
            }
            _ => AggProp::Label(s.strip_prefix("label:")?.to_string()),
        })
    }
}

/// A filter field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    Cluster,
    Namespace,
    Node,
    ControllerKind,
    Controller,
    Pod,
    Container,
    Label(String),
}

/// One `field:"a","b"` (or `field!:...`) clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    pub field: Field,
    pub neg: bool,
    pub values: Vec<String>,
}

/// OR of AND groups of clauses. Empty = everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Filter {
    pub groups: Vec<Vec<Clause>>,
}

impl Filter {
    /// Parses Kubecost's v2 filter language (`:` and `!:` on the fields above; `+` AND, `|` OR).
    pub(crate) fn parse_v2(s: &str) -> Result<Filter, String> {
        let mut groups = Vec::new();
        for g in split_top(s, '|') {
            let g = g.trim().trim_start_matches('(').trim_end_matches(')');
            let mut clauses = Vec::new();
            for c in split_top(g, '+') {
                let c = c
                    .trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .trim();
                if c.is_empty() {
                    continue;
                }
                let (f, neg, vals) = if let Some((f, v)) = c.split_once("!:") {
                    (f, true, v)
                } else if let Some((f, v)) = c.split_once(':') {
                    (f, false, v)
                } else {
                    return Err(format!("bad request: unsupported filter clause {c:?}"));
                };
                let field = match f.trim() {
                    "cluster" => Field::Cluster,
                    "namespace" => Field::Namespace,
                    "node" => Field::Node,
                    "controllerKind" => Field::ControllerKind,
                    "controllerName" | "controller" => Field::Controller,
                    "pod" => Field::Pod,
                    "container" => Field::Container,
                    other => match other
                        .strip_prefix("label[")
                        .and_then(|r| r.strip_suffix(']'))
                    {
                        Some(l) => Field::Label(l.to_string()),
                        None => {
                            return Err(format!("bad request: unsupported filter field {other:?}"));
                        }
                    },
                };
                let values = split_top(vals, ',')
                    .into_iter()
                    .map(|v| v.trim().trim_matches('"').to_string())
                    .collect();
                clauses.push(Clause { field, neg, values });
            }
            groups.push(clauses);
        }
        Ok(Filter { groups })
    }

    /// Adds v1 filters (`filterClusters=a,b`) as an AND clause.
    pub(crate) fn and_v1(&mut self, field: Field, list: &str) {
        let values: Vec<String> = list
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return;
        }
        let c = Clause {
            field,
            neg: false,
            values,
        };
        if self.groups.is_empty() {
            self.groups.push(vec![c]);
        } else {
            for g in &mut self.groups {
                g.push(c.clone());
            }
        }
    }

    fn matches_with(&self, get: &dyn Fn(&Field) -> Option<Option<String>>) -> bool {
        if self.groups.is_empty() {
            return true;
        }
        self.groups.iter().any(|g| {
            g.iter().all(|c| match get(&c.field) {
                // Field unknown at this stage: cannot rule the row out.
                None => true,
                Some(v) => {
                    let hit = v.is_some_and(|v| c.values.contains(&v));
                    hit != c.neg
                }
            })
        })
    }

    /// Could rows of this cluster (and namespace, when given) match?
    pub(crate) fn possible(&self, cluster: &str, ns: Option<&str>) -> bool {
        self.matches_with(&|f| match f {
            Field::Cluster => Some(Some(cluster.to_string())),
            Field::Namespace => ns.map(|n| Some(n.to_string())),
            _ => None,
        })
    }

    fn matches(&self, p: &Props<'_>) -> bool {
        self.matches_with(&|f| {
            Some(match f {
                Field::Cluster => p.cluster.map(str::to_string),
                Field::Namespace => p.namespace.map(str::to_string),
                Field::Node => p.node.map(str::to_string),
                Field::ControllerKind => p.kind.map(str::to_string),
                Field::Controller => p.controller.map(str::to_string),
                Field::Pod => p.pod.as_ref().map(|s| s.to_string()),
                Field::Container => p.container.map(str::to_string),
                Field::Label(l) => p.label(l).map(str::to_string),
            })
        })
    }

    /// True when some clause looks below the cluster level.
    pub(crate) fn below_cluster(&self) -> bool {
        self.groups
            .iter()
            .flatten()
            .any(|c| c.field != Field::Cluster)
    }
}

/// Splits on `sep` outside double quotes and parentheses.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut q, mut depth, mut last) = (false, 0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '"' => q = !q,
            '(' if !q => depth += 1,
            ')' if !q => depth -= 1,
            c if c == sep && !q && depth == 0 => {
                out.push(s.get(last..i).unwrap_or(""));
                last = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(s.get(last..).unwrap_or(""));
    out
}

/// Options of one allocation query.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllocOpts {
    pub aggregate: Vec<AggProp>,
    pub idle: bool,
    pub share_idle: bool,
    pub split_idle: bool,
    pub filter: Filter,
    /// Write null for NaN-able fields (fault).
    pub nan: bool,
}

/// Per-cluster resource sums over a set.
#[derive(Debug, Clone, Copy, Default)]
struct Res {
    cpu: f64,
    ram: f64,
    gpu: f64,
    cpu_h: f64,
    ram_h: f64,
    gpu_h: f64,
}

/// Receives finished rows.
pub(crate) trait Sink<'a> {
    /// Returns false to stop generating.
    fn row(&mut self, key: Cow<'_, str>, props: Props<'a>, acc: Acc, raw: bool) -> bool;
}

/// The key of a row for an aggregation (`unmounted`: every non-cluster part is `__unmounted__`).
pub(crate) fn agg_key(aggs: &[AggProp], p: &Props<'_>, unmounted: bool) -> String {
    let mut k = String::new();
    for (i, a) in aggs.iter().enumerate() {
        if i > 0 {
            k.push('/');
        }
        let v: Option<Cow<'_, str>> = if unmounted && *a != AggProp::Cluster {
            Some(Cow::Borrowed("__unmounted__"))
        } else {
            match a {
                AggProp::Cluster => p.cluster.map(Cow::Borrowed),
                AggProp::Node => p.node.map(Cow::Borrowed),
                AggProp::Namespace => p.namespace.map(Cow::Borrowed),
                AggProp::ControllerKind => p.kind.map(Cow::Borrowed),
                AggProp::Controller => p.controller.map(Cow::Borrowed),
                AggProp::Pod => p.pod.as_deref().map(Cow::Borrowed),
                AggProp::Container => p.container.map(Cow::Borrowed),
                AggProp::Service => p
                    .services
                    .as_ref()
                    .and_then(|s| s.first().copied())
                    .map(Cow::Borrowed),
                AggProp::Label(l) => p.label(l).map(|v| Cow::Owned(format!("{l}={v}"))),
            }
        };
        k.push_str(
            v.as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("__unallocated__"),
        );
    }
    k
}

impl Fleet {
    /// Generates one set for every matching cluster: container rows (filtered, idle shared when
    /// asked), then unmounted rows; returns the idle rows (name, props, acc) for the caller.
    pub(crate) fn gen_set<'a>(
        &'a self,
        w: Window,
        o: &AllocOpts,
        sink: &mut dyn Sink<'a>,
    ) -> Option<Vec<(String, Props<'a>, Acc)>> {
        let mut idles = Vec::new();
        for (ci, cl) in self.clusters.iter().enumerate() {
            if !o.filter.possible(&cl.name, None) {
                continue;
            }
            let pieces = self.pieces(ci, w);
            let mut nodes = Res::default();
            for p in &pieces {
                let hrs = (p.b - p.a) as f64 / HOUR as f64;
                for n in &cl.nodes {
                    nodes.cpu += n.cores * hrs * n.cpu_price;
                    nodes.ram += n.ram_bytes * hrs / GIB * n.ram_price;
                    nodes.gpu += n.gpus * hrs * n.gpu_price;
                    nodes.cpu_h += n.cores * hrs;
                    nodes.ram_h += n.ram_bytes * hrs;
                    nodes.gpu_h += n.gpus * hrs;
                }
            }
            let below = o.filter.below_cluster();
            let full = if o.idle && (o.share_idle || below) {
                let mut r = Res::default();
                self.container_rows(ci, cl, &pieces, None, &mut |_, _, _, a: Acc| {
                    add_res(&mut r, &a);
                    true
                });
                Some(r)
            } else {
                None
            };
            let mut emitted = Res::default();
            let mut stop = false;
            let filter = &o.filter;
            self.container_rows(
                ci,
                cl,
                &pieces,
                Some(filter),
                &mut |pod, k, inst, mut a: Acc| {
                    let props = self.props(ci, cl, pod, k, inst);
                    if !filter.matches(&props) {
                        return true;
                    }
                    add_res(&mut emitted, &a);
                    if o.idle && o.share_idle {
                        if let Some(f) = &full {
                            share(&mut a, f, &nodes);
                        }
                    }
                    let key: Cow<'_, str> = if o.aggregate.is_empty() {
                        Cow::Owned(format!(
                            "{}/{}/{}/{}/{}",
                            cl.name,
                            props.node.unwrap_or(""),
                            props.namespace.unwrap_or(""),
                            props.pod.as_deref().unwrap_or(""),
                            props.container.unwrap_or("")
                        ))
                    } else {
                        Cow::Owned(agg_key(&o.aggregate, &props, false))
                    };
                    if sink.row(key, props, a, true) {
                        true
                    } else {
                        stop = true;
                        false
                    }
                },
            );
            if stop {
                return None;
            }
            // Unmounted PVs.
            for (pi, pv) in cl.pvs.iter().enumerate() {
                if pv.pod.is_some() {
                    continue;
                }
                let props = Props {
                    cluster: Some(&cl.name),
                    container: Some("__unmounted__"),
                    namespace: Some("__unmounted__"),
                    pod: Some(Cow::Borrowed("__unmounted__")),
                    ..Props::default()
                };
                if !o.filter.matches(&props) {
                    continue;
                }
                let mut a = Acc::default();
                for p in &pieces {
                    let secs = (p.b - p.a) as f64;
                    a.span(p.a, p.b);
                    let bh = pv.bytes * secs / HOUR as f64;
                    let c = pv.cost(secs);
                    a.pv_byte_hours += bh;
                    a.pv_cost += c;
                    add_pv(&mut a.pvs, (ci as u32, pi as u32, bh, c));
                }
                if !a.has {
                    continue;
                }
                let key = if o.aggregate.is_empty() {
                    format!("{}//__unmounted__/__unmounted__/__unmounted__", cl.name)
                } else {
                    agg_key(&o.aggregate, &props, true)
                };
                if !sink.row(Cow::Owned(key), props, a, true) {
                    return None;
                }
            }
            if !o.idle {
                continue;
            }
            let alloc = full.unwrap_or(emitted);
            let mut idle = Acc::default();
            let frac = |e: f64, f: f64| {
                if below {
                    if f != 0.0 { e / f } else { 0.0 }
                } else {
                    1.0
                }
            };
            let (fc, fr, fg) = (
                frac(emitted.cpu, alloc.cpu),
                frac(emitted.ram, alloc.ram),
                frac(emitted.gpu, alloc.gpu),
            );
            let shared_c = o.share_idle;
            if !(shared_c && alloc.cpu > 0.0) {
                idle.cpu_cost = (nodes.cpu - alloc.cpu) * fc;
                idle.cpu_hours = (nodes.cpu_h - alloc.cpu_h) * fc;
            }
            if !(shared_c && alloc.ram > 0.0) {
                idle.ram_cost = (nodes.ram - alloc.ram) * fr;
                idle.ram_hours = (nodes.ram_h - alloc.ram_h) * fr;
            }
            if !(shared_c && alloc.gpu > 0.0) {
                idle.gpu_cost = (nodes.gpu - alloc.gpu) * fg;
                idle.gpu_hours = (nodes.gpu_h - alloc.gpu_h) * fg;
            }
            // Tenancy cost of pieces where nothing ran has no row to go to but idle.
            if !below {
                idle.shared_cost = pieces
                    .iter()
                    .filter(|p| p.run_secs <= 0.0)
                    .map(|p| p.shared)
                    .sum();
            }
            if let (Some(f), Some(l)) = (pieces.first(), pieces.last()) {
                idle.span(f.a, l.b);
            }
            if !idle.has {
                continue;
            }
            let name = if o.split_idle {
                format!("{}/__idle__", cl.name)
            } else {
                "__idle__".to_string()
            };
            let props = Props {
                cluster: Some(&cl.name),
                ..Props::default()
            };
            idles.push((name, props, idle));
        }
        // Merge idle rows of the same name.
        let mut merged: Vec<(String, Props<'a>, Acc)> = Vec::new();
        for (n, p, a) in idles {
            match merged.iter_mut().find(|x| x.0 == n) {
                Some(x) => {
                    x.1.intersect(&p);
                    x.2.merge(&a);
                }
                None => merged.push((n, p, a)),
            }
        }
        Some(merged)
    }

    fn props<'a>(
        &'a self,
        _ci: usize,
        cl: &'a Cluster,
        pod: u32,
        k: usize,
        inst: i64,
    ) -> Props<'a> {
        let p = cl.pods.get(pod as usize);
        let ctrl = p.and_then(|p| cl.controllers.get(p.ctrl as usize));
        let node = p.and_then(|p| cl.nodes.get(p.node as usize));
        let ns = ctrl.and_then(|c| cl.namespaces.get(c.ns as usize));
        Props {
            cluster: Some(&cl.name),
            node: node.map(|n| n.name.as_str()),
            container: ctrl.and_then(|c| c.containers.get(k)).map(|c| c.name),
            controller: ctrl.map(|c| c.name.as_str()),
            kind: ctrl.map(|c| c.kind.as_str()),
            namespace: ns.map(|n| n.name.as_str()),
            pod: Some(Cow::Owned(self.pod_name(_ci, cl, pod, inst))),
            services: ctrl
                .filter(|c| !c.services.is_empty())
                .map(|c| c.services.iter().map(String::as_str).collect()),
            provider_id: node.map(|n| n.provider_id.as_str()),
            labels: ctrl.map(|c| {
                c.labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            }),
            ns_labels: ns.map(|n| {
                n.labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            }),
        }
    }

    /// Calls `f(pod, container, instance, acc)` for every container row of a cluster over the
    /// pieces, in pod order. Pods of namespaces the filter rules out are skipped.
    pub(crate) fn container_rows(
        &self,
        ci: usize,
        cl: &Cluster,
        pieces: &[Piece],
        filter: Option<&Filter>,
        f: &mut dyn FnMut(u32, usize, i64, Acc) -> bool,
    ) -> bool {
        let mut ns_ok: Vec<bool> = cl
            .namespaces
            .iter()
            .map(|n| filter.is_none_or(|fl| fl.possible(&cl.name, Some(&n.name))))
            .collect();
        if ns_ok.is_empty() {
            ns_ok.push(true);
        }
        for (pi, p) in cl.pods.iter().enumerate() {
            let pod = pi as u32;
            let Some(ctrl) = cl.controllers.get(p.ctrl as usize) else {
                continue;
            };
            if !ns_ok.get(ctrl.ns as usize).copied().unwrap_or(true) {
                continue;
            }
            let Some(node) = cl.nodes.get(p.node as usize) else {
                continue;
            };
            let nk = ctrl.containers.len();
            if nk == 0 {
                continue;
            }
            let mut accs: [Acc; 2] = Default::default();
            let mut cur: Option<i64> = None;
            for pc in pieces {
                let Some((ra, rb)) = self.run_in_hour(ci, cl, pod, pc.hour) else {
                    continue;
                };
                let s = (pc.hour + ra).max(pc.a);
                let e = (pc.hour + rb).min(pc.b);
                if e <= s {
                    continue;
                }
                let inst = self.instance(cl, pod, pc.hour);
                if let Some(c) = cur {
                    if c != inst {
                        for (k, a) in accs.iter_mut().enumerate().take(nk) {
                            if !f(pod, k, c, std::mem::take(a)) {
                                return false;
                            }
                        }
                    }
                }
                cur = Some(inst);
                let secs = (e - s) as f64;
                let hrs = secs / HOUR as f64;
                for (k, a) in accs.iter_mut().enumerate().take(nk) {
                    let sm = self.sample(ci, cl, pod, k, pc.hour);
                    a.span(s, e);
                    let ac = sm.alloc_cpu();
                    let ar = sm.alloc_ram();
                    a.cpu_req += sm.req_cpu * hrs;
                    a.cpu_use += sm.use_cpu * hrs;
                    a.cpu_hours += ac * hrs;
                    a.cpu_cost += ac * hrs * node.cpu_price;
                    a.cpu_use_max = a.cpu_use_max.max(sm.use_cpu);
                    a.ram_req += sm.req_ram * hrs;
                    a.ram_use += sm.use_ram * hrs;
                    a.ram_hours += ar * hrs;
                    a.ram_cost += ar * hrs / GIB * node.ram_price;
                    a.ram_use_max = a.ram_use_max.max(sm.use_ram);
                    a.gpu_req += sm.gpu * hrs;
                    a.gpu_hours += sm.gpu * hrs;
                    a.gpu_cost += sm.gpu * hrs * node.gpu_price;
                    let tx = sm.tx * hrs;
                    a.tx += tx;
                    a.rx += sm.rx * hrs;
                    let z = tx * NET_SPLIT[0] / GIB * cl.net_prices[0];
                    let r = tx * NET_SPLIT[1] / GIB * cl.net_prices[1];
                    let i = tx * NET_SPLIT[2] / GIB * cl.net_prices[2];
                    a.net_zone += z;
                    a.net_region += r;
                    a.net_internet += i;
                    a.net_cost += z + r + i;
                    if let Some(pv) = p.pv.and_then(|v| cl.pvs.get(v as usize).map(|x| (v, x))) {
                        let bh = pv.1.bytes * hrs / nk as f64;
                        let c = pv.1.cost(secs) / nk as f64;
                        a.pv_byte_hours += bh;
                        a.pv_cost += c;
                        add_pv(&mut a.pvs, (ci as u32, pv.0, bh, c));
                    }
                    if let Some(li) = ctrl.lb {
                        if let Some(lb) = cl.lbs.get(li as usize) {
                            let c = lb.price * hrs / f64::from(ctrl.pods.max(1)) / nk as f64;
                            a.lb_cost += c;
                            match a.lbs.first_mut() {
                                Some(x) => {
                                    x.2 += c;
                                    x.3 += hrs;
                                }
                                None => a.lbs.push((ci as u32, li, c, hrs)),
                            }
                        }
                    }
                    if pc.run_secs > 0.0 {
                        a.shared_cost += pc.shared * secs / pc.run_secs;
                    }
                }
            }
            if let Some(c) = cur {
                for (k, a) in accs.iter_mut().enumerate().take(nk) {
                    if !f(pod, k, c, std::mem::take(a)) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Sum of `totalCost` of every allocation row of a cluster (containers, unmounted, idle)
    /// over a window, as the API serves it with default options.
    pub fn allocation_total(&self, cluster: &str, window: Window) -> f64 {
        let mut o = AllocOpts {
            idle: true,
            ..AllocOpts::default()
        };
        o.filter.and_v1(Field::Cluster, cluster);
        let mut sum = SumSink(0.0);
        let idles = self.gen_set(window, &o, &mut sum).unwrap_or_default();
        sum.0 + idles.iter().map(|(_, _, a)| a.total()).sum::<f64>()
    }
}

struct SumSink(f64);

impl<'a> Sink<'a> for SumSink {
    fn row(&mut self, _key: Cow<'_, str>, _props: Props<'a>, acc: Acc, _raw: bool) -> bool {
        self.0 += acc.total();
        true
    }
}

fn add_res(r: &mut Res, a: &Acc) {
    r.cpu += a.cpu_cost;
    r.ram += a.ram_cost;
    r.gpu += a.gpu_cost;
    r.cpu_h += a.cpu_hours;
    r.ram_h += a.ram_hours;
    r.gpu_h += a.gpu_hours;
}

/// Adds this row's weighted share of the cluster's idle (Kubecost's shareIdle, weighted).
fn share(a: &mut Acc, full: &Res, nodes: &Res) {
    if full.cpu > 0.0 {
        let s = a.cpu_cost / full.cpu * (nodes.cpu - full.cpu);
        a.cpu_idle += s;
        a.cpu_cost += s;
    }
    if full.ram > 0.0 {
        let s = a.ram_cost / full.ram * (nodes.ram - full.ram);
        a.ram_idle += s;
        a.ram_cost += s;
    }
    if full.gpu > 0.0 {
        let s = a.gpu_cost / full.gpu * (nodes.gpu - full.gpu);
        a.gpu_idle += s;
        a.gpu_cost += s;
    }
}

/// Collects rows by aggregate key (sorted output, like Go's map marshalling).
pub(crate) struct AggSink<'a> {
    pub rows: BTreeMap<String, (Props<'a>, Acc)>,
}

impl<'a> Sink<'a> for AggSink<'a> {
    fn row(&mut self, key: Cow<'_, str>, props: Props<'a>, acc: Acc, _raw: bool) -> bool {
        match self.rows.get_mut(key.as_ref()) {
            Some((p, a)) => {
                p.intersect(&props);
                a.merge(&acc);
            }
            None => {
                self.rows.insert(key.into_owned(), (props, acc));
            }
        }
        true
    }
}

/// Writes rows straight into the body.
pub(crate) struct JsonSink<'a, 'o> {
    pub fleet: &'a Fleet,
    pub out: &'o mut Out,
    pub window: Window,
    pub first: bool,
    pub nan: bool,
}

impl<'a> Sink<'a> for JsonSink<'a, '_> {
    fn row(&mut self, key: Cow<'_, str>, props: Props<'a>, acc: Acc, raw: bool) -> bool {
        if !self.first {
            self.out.buf.push(b',');
        }
        self.first = false;
        write_alloc(
            &mut self.out.buf,
            self.fleet,
            &key,
            &props,
            self.window,
            &acc,
            raw,
            self.nan,
        );
        self.out.boundary()
    }
}

fn write_pairs(b: &mut Vec<u8>, k: &str, v: &Option<Vec<(&str, &str)>>) {
    if let Some(v) = v {
        json::key(b, k);
        json::str_map(b, v.iter().copied());
        b.push(b',');
    }
}

/// Writes one allocation object `"name":{...}` with Kubecost's field order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_alloc(
    b: &mut Vec<u8>,
    fleet: &Fleet,
    name: &str,
    p: &Props<'_>,
    w: Window,
    a: &Acc,
    raw: bool,
    nan: bool,
) {
    json::key(b, name);
    b.push(b'{');
    ks(b, "name", name);
    json::key(b, "properties");
    b.push(b'{');
    let opt = |b: &mut Vec<u8>, k: &str, v: Option<&str>| {
        if let Some(v) = v {
            ks(b, k, v);
        }
    };
    opt(b, "cluster", p.cluster);
    opt(b, "node", p.node);
    opt(b, "container", p.container);
    opt(b, "controller", p.controller);
    opt(b, "controllerKind", p.kind);
    opt(b, "namespace", p.namespace);
    opt(b, "pod", p.pod.as_deref());
    if let Some(s) = &p.services {
        json::key(b, "services");
        b.push(b'[');
        for (i, s) in s.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            json::string(b, s);
        }
        b.extend_from_slice(b"],");
    }
    opt(b, "providerID", p.provider_id);
    write_pairs(b, "labels", &p.labels);
    write_pairs(b, "namespaceLabels", &p.ns_labels);
    json::trim_comma(b);
    b.extend_from_slice(b"},");
    json::key(b, "window");
    b.push(b'{');
    ks(b, "start", &kb_core::window::format_rfc3339(w.start));
    ks(b, "end", &kb_core::window::format_rfc3339(w.end));
    json::trim_comma(b);
    b.extend_from_slice(b"},");
    let (s, e) = if a.has {
        (a.start, a.end)
    } else {
        (w.start, w.start)
    };
    ks(b, "start", &kb_core::window::format_rfc3339(s));
    ks(b, "end", &kb_core::window::format_rfc3339(e));
    let minutes = (e - s) as f64 / 60.0;
    let hours = minutes / 60.0;
    let per_h = |x: f64| if hours > 0.0 { x / hours } else { 0.0 };
    let n = |x: f64| if nan { f64::NAN } else { x };
    kf(b, "minutes", minutes);
    let cpu_req = per_h(a.cpu_req);
    let cpu_use = per_h(a.cpu_use);
    let ram_req = per_h(a.ram_req);
    let ram_use = per_h(a.ram_use);
    let eff = |u: f64, r: f64, c: f64| {
        if r > 0.0 {
            u / r
        } else if u == 0.0 || c == 0.0 {
            0.0
        } else {
            1.0
        }
    };
    let cpu_eff = eff(cpu_use, cpu_req, a.cpu_cost);
    let ram_eff = eff(ram_use, ram_req, a.ram_cost);
    let tot_w = a.cpu_cost + a.ram_cost;
    let tot_eff = if tot_w > 0.0 {
        (cpu_eff * a.cpu_cost + ram_eff * a.ram_cost) / tot_w
    } else {
        0.0
    };
    kf(b, "cpuCores", per_h(a.cpu_hours));
    kf(b, "cpuCoreRequestAverage", cpu_req);
    kf(b, "cpuCoreUsageAverage", n(cpu_use));
    kf(b, "cpuCoreHours", a.cpu_hours);
    kf(b, "cpuCost", a.cpu_cost);
    kf(b, "cpuCostAdjustment", 0.0);
    kf(b, "cpuCostIdle", a.cpu_idle);
    kf(b, "cpuEfficiency", n(cpu_eff));
    kf(b, "gpuCount", per_h(a.gpu_hours));
    kf(b, "gpuRequestAverage", per_h(a.gpu_req));
    kf(b, "gpuUsageAverage", n(0.0));
    kf(b, "gpuHours", a.gpu_hours);
    kf(b, "gpuCost", a.gpu_cost);
    kf(b, "gpuCostAdjustment", 0.0);
    kf(b, "gpuCostIdle", a.gpu_idle);
    kf(b, "gpuEfficiency", n(0.0));
    kf(b, "networkTransferBytes", a.tx);
    kf(b, "networkReceiveBytes", a.rx);
    kf(b, "networkCost", a.net_cost);
    kf(b, "networkCrossZoneCost", a.net_zone);
    kf(b, "networkCrossRegionCost", a.net_region);
    kf(b, "networkInternetCost", a.net_internet);
    kf(b, "networkCostAdjustment", 0.0);
    kf(b, "loadBalancerCost", a.lb_cost);
    kf(b, "loadBalancerCostAdjustment", 0.0);
    kf(b, "pvBytes", per_h(a.pv_byte_hours));
    kf(b, "pvByteHours", a.pv_byte_hours);
    kf(b, "pvCost", a.pv_cost);
    json::key(b, "pvs");
    if a.pvs.is_empty() {
        b.extend_from_slice(b"null,");
    } else {
        b.push(b'{');
        for (i, (ci, pi, bh, c)) in a.pvs.iter().enumerate() {
            let cl = fleet.clusters.get(*ci as usize);
            let pv = cl.and_then(|cl| cl.pvs.get(*pi as usize));
            if i > 0 {
                b.push(b',');
            }
            let key = format!(
                "cluster={}:name={}",
                cl.map(|c| c.name.as_str()).unwrap_or(""),
                pv.map(|p| p.name.as_str()).unwrap_or("")
            );
            json::key(b, &key);
            b.push(b'{');
            kf(b, "byteHours", *bh);
            kf(b, "cost", *c);
            ks(
                b,
                "providerID",
                pv.map(|p| p.provider_id.as_str()).unwrap_or(""),
            );
            json::trim_comma(b);
            b.push(b'}');
        }
        b.extend_from_slice(b"},");
    }
    kf(b, "pvCostAdjustment", 0.0);
    kf(b, "ramBytes", per_h(a.ram_hours));
    kf(b, "ramByteRequestAverage", ram_req);
    kf(b, "ramByteUsageAverage", n(ram_use));
    kf(b, "ramByteHours", a.ram_hours);
    kf(b, "ramCost", a.ram_cost);
    kf(b, "ramCostAdjustment", 0.0);
    kf(b, "ramCostIdle", a.ram_idle);
    kf(b, "ramEfficiency", n(ram_eff));
    kf(b, "externalCost", 0.0);
    kf(b, "sharedCost", a.shared_cost);
    kf(b, "totalCost", a.total());
    kf(b, "totalEfficiency", n(tot_eff));
    json::key(b, "rawAllocationOnly");
    if raw && !nan {
        b.push(b'{');
        kf(b, "cpuCoreUsageMax", a.cpu_use_max);
        kf(b, "ramByteUsageMax", a.ram_use_max);
        json::trim_comma(b);
        b.extend_from_slice(b"},");
    } else {
        b.extend_from_slice(b"null,");
    }
    b.extend_from_slice(b"\"proportionalAssetResourceCosts\":{},");
    json::key(b, "lbAllocations");
    if a.lbs.is_empty() {
        b.extend_from_slice(b"null,");
    } else {
        b.push(b'{');
        for (i, (ci, li, c, h)) in a.lbs.iter().enumerate() {
            let cl = fleet.clusters.get(*ci as usize);
            let lb = cl.and_then(|cl| cl.lbs.get(*li as usize));
            let ns = cl
                .zip(lb)
                .and_then(|(cl, lb)| cl.namespaces.get(lb.ns as usize))
                .map(|n| n.name.as_str())
                .unwrap_or("");
            let svc = format!("{}/{}", ns, lb.map(|l| l.service.as_str()).unwrap_or(""));
            if i > 0 {
                b.push(b',');
            }
            json::key(
                b,
                &format!("{}/{}", cl.map(|c| c.name.as_str()).unwrap_or(""), svc),
            );
            b.push(b'{');
            ks(b, "service", &svc);
            kf(b, "cost", *c);
            b.extend_from_slice(b"\"private\":false,");
            ks(b, "ip", lb.map(|l| l.ip.as_str()).unwrap_or(""));
            kf(b, "hours", *h);
            json::trim_comma(b);
            b.push(b'}');
        }
        b.extend_from_slice(b"},");
    }
    b.extend_from_slice(b"\"sharedCostBreakdown\":{}}");
}

/// Writes the `data` array of sets for a list of set windows (each already clipped to now).
pub(crate) fn write_sets(
    fleet: &Fleet,
    sets: &[(Window, Window)],
    o: &AllocOpts,
    out: &mut Out,
) -> bool {
    for (i, (set_w, data_w)) in sets.iter().enumerate() {
        if i > 0 {
            out.buf.push(b',');
        }
        out.buf.push(b'{');
        let idles;
        let mut first = true;
        if o.aggregate.is_empty() {
            let mut sink = JsonSink {
                fleet,
                out,
                window: *set_w,
                first: true,
                nan: o.nan,
            };
            idles = fleet.gen_set(*data_w, o, &mut sink);
            first = sink.first;
        } else {
            let mut sink = AggSink {
                rows: BTreeMap::new(),
            };
            idles = fleet.gen_set(*data_w, o, &mut sink);
            if idles.is_none() {
                return false;
            }
            for (k, (p, a)) in &sink.rows {
                if !first {
                    out.buf.push(b',');
                }
                first = false;
                write_alloc(&mut out.buf, fleet, k, p, *set_w, a, false, o.nan);
                if !out.boundary() {
                    return false;
                }
            }
        }
        let Some(idles) = idles else { return false };
        for (k, p, a) in &idles {
            if !first {
                out.buf.push(b',');
            }
            first = false;
            write_alloc(&mut out.buf, fleet, k, p, *set_w, a, false, o.nan);
        }
        out.buf.push(b'}');
        if !out.boundary() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    fn fleet(pods: usize) -> Fleet {
        Fleet::new(&SimConfig {
            clusters: 3,
            pods,
            seed: 42,
            ..SimConfig::default()
        })
    }

    #[test]
    fn conservation_holds_for_hour_day_and_partial_windows() {
        let f = fleet(120);
        let t0: i64 = 1_717_200_000 / 86_400 * 86_400; // a midnight
        for w in [
            Window {
                start: t0 + 3_600 * 5,
                end: t0 + 3_600 * 6,
            },
            Window {
                start: t0,
                end: t0 + 86_400,
            },
            Window {
                start: t0 + 3_600 * 9,
                end: t0 + 3_600 * 12,
            },
            Window {
                start: t0 + 1_234,
                end: t0 + 7_777,
            },
        ] {
            for c in f.cluster_names() {
                let a = f.allocation_total(&c, w);
                let s = f.asset_total(&c, w);
                assert!(a > 0.0);
                assert!(
                    kb_core::cost::relative_error(s, a) < 1e-9,
                    "{c} {w}: alloc {a} assets {s}"
                );
            }
        }
    }

    #[test]
    fn jobs_run_part_of_some_hours() {
        let f = fleet(300);
        let cl = &f.clusters[0];
        assert!(!cl.job_pods.is_empty());
        let mut partial = 0;
        for &p in &cl.job_pods {
            for h in 0..24 {
                if let Some((a, b)) =
                    f.run_in_hour(0, cl, p, 1_717_200_000 / 3600 * 3600 + h * 3600)
                {
                    assert!(a >= 0 && b <= 3600 && b > a);
                    if b - a < 3600 {
                        partial += 1;
                    }
                }
            }
        }
        assert!(partial > 0);
    }
}
