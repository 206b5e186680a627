//! The live state of one cluster and the cost arithmetic (pure: no IO, no clock; time is the
//! samples' own timestamps).
//!
//! # What is kept
//!
//! The newest point of each series that matters, keyed by Kubecost's labels:
//! node prices (`node_{cpu,ram,gpu}_hourly_cost`, `node_total_hourly_cost`, by `node`), node
//! capacity (`kube_node_status_capacity_{cpu_cores,memory_bytes}`), per container
//! (`namespace`, `pod`, `container`; node from `node`, else `instance`):
//! `container_{cpu,memory,gpu}_allocation[_bytes]`, `kube_pod_container_resource_requests`
//! (`resource="cpu"|"memory"`), `container_memory_working_set_bytes`, and the counters
//! `container_cpu_usage_seconds_total` and `container_network_transmit_bytes_total` (cAdvisor's
//! pod-cgroup rows, `container=""` or `"POD"`, are skipped so nothing counts twice), per pod
//! `pod_pvc_allocation` (by `persistentvolume`) and `kube_pod_owner`, `pv_hourly_cost` (by
//! `persistentvolume`, else `volumename`), `kubecost_load_balancer_cost` (by `namespace`,
//! `service_name`), `kubecost_cluster_management_cost` and the three
//! `kubecost_network_*_egress_cost` prices.
//!
//! # Sample semantics
//!
//! - Out-of-order and duplicate samples (timestamp not newer than the kept point) are ignored,
//!   so a batch written twice changes nothing.
//! - Prometheus's staleness marker deletes the point (a pod that ended stops costing at once).
//! - A point older than `stale_after` (default 5 min, Prometheus's lookback) behind the
//!   cluster's newest sample is ignored by queries and later evicted.
//! - Counters: rate = Δvalue/Δt between the two newest points; a decrease is a reset (the
//!   rate is then value/Δt, as Prometheus's `rate` does).
//!
//! # Formulas ($/h)
//!
//! - container cpu = `container_cpu_allocation` × `node_cpu_hourly_cost` of its node;
//!   ram = `container_memory_allocation_bytes` / 2^30 × `node_ram_hourly_cost`;
//!   gpu = `container_gpu_allocation` × `node_gpu_hourly_cost`.
//! - pod pv = Σ over its claims `pod_pvc_allocation` / 2^30 × `pv_hourly_cost` of the volume.
//! - namespace load balancer = Σ `kubecost_load_balancer_cost` with that `namespace`.
//! - cluster = Σ namespaces + `kubecost_cluster_management_cost`.
//! - A node without a price series uses [`DefaultPrices`] and the rows it feeds are flagged
//!   `default_priced`; one missing price never fails a batch. Same for a PV without price.
//! - Accumulated cost: each time a container's `container_cpu_allocation` (a pod's
//!   `pod_pvc_allocation`, a load balancer's, the management fee) gets a newer point, the
//!   rate held until then is multiplied by the time since the previous point (capped at
//!   `stale_after`) and added to the container, its namespace, controller and cluster.
//! - Controller (from `kube_pod_owner`): a `ReplicaSet` owner `name-<hash>` is the deployment
//!   `name`; other kinds are taken as they are (lower-cased); pods without an owner series
//!   have none.
//!
//! # The seed's derived series
//!
//! - `kubecost_cluster_cpu_usage` = Σ over containers of the rate of
//!   `container_cpu_usage_seconds_total` (cores).
//! - `kubecost_cluster_memory_usage` = Σ `container_memory_working_set_bytes` (bytes).
//! - `kubecost_network_usage` = Σ rate of `container_network_transmit_bytes_total` (bytes/s).
//! - `kubecost_storage_usage` = Σ `pod_pvc_allocation` of running pods (bytes claimed).
//!
//! Network egress cost rates need per-pod egress bytes by destination
//! (`kubecost_pod_network_egress_bytes_total` from Kubecost's network-costs daemonset), which
//! is not handled yet: `network` rates are 0 and the egress prices are only kept.

use crate::batch::{DecodedBatch, Sample, Series};
use std::collections::HashMap;

const GIB: f64 = 1_073_741_824.0;
const MS_PER_HOUR: f64 = 3_600_000.0;

/// Prices used for a node or volume without a price series ($/h per core, GiB, GPU, GiB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DefaultPrices {
    /// $/core-hour.
    pub cpu: f64,
    /// $/GiB-hour of RAM.
    pub ram: f64,
    /// $/GPU-hour.
    pub gpu: f64,
    /// $/GiB-hour of persistent volume.
    pub storage: f64,
}

impl Default for DefaultPrices {
    /// Kubecost's default on-prem pricing (`default.json`): CPU 0.031611, RAM 0.004237,
    /// GPU 0.95, storage 0.00005479 per GiB-hour.
    fn default() -> Self {
        DefaultPrices {
            cpu: 0.031_611,
            ram: 0.004_237,
            gpu: 0.95,
            storage: 0.000_054_79,
        }
    }
}

/// Settings of the live state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveConfig {
    /// Fallback prices.
    pub default_prices: DefaultPrices,
    /// A point this far behind the cluster's newest sample no longer counts (ms).
    pub stale_after_ms: i64,
    /// Most containers + pods + nodes + volumes kept per cluster; new ones above are dropped.
    pub max_entries_per_cluster: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            default_prices: DefaultPrices::default(),
            stale_after_ms: 5 * 60_000,
            max_entries_per_cluster: 1_000_000,
        }
    }
}

/// Cost rates in $/h, by resource.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostRate {
    /// CPU.
    pub cpu: f64,
    /// RAM.
    pub ram: f64,
    /// GPU.
    pub gpu: f64,
    /// Persistent volumes.
    pub pv: f64,
    /// Load balancers.
    pub load_balancer: f64,
    /// Network egress (0 until egress bytes are handled, see the module docs).
    pub network: f64,
    /// Cluster management fee (cluster level only).
    pub management: f64,
}

impl CostRate {
    /// Sum of all parts.
    pub fn total(&self) -> f64 {
        self.cpu
            + self.ram
            + self.gpu
            + self.pv
            + self.load_balancer
            + self.network
            + self.management
    }

    fn add(&mut self, o: &CostRate) {
        self.cpu += o.cpu;
        self.ram += o.ram;
        self.gpu += o.gpu;
        self.pv += o.pv;
        self.load_balancer += o.load_balancer;
        self.network += o.network;
        self.management += o.management;
    }
}

/// Usage and requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Cores used (rate of `container_cpu_usage_seconds_total`).
    pub cpu_cores: f64,
    /// Cores requested.
    pub cpu_request_cores: f64,
    /// Working set bytes.
    pub memory_bytes: f64,
    /// Requested bytes.
    pub memory_request_bytes: f64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.cpu_cores += o.cpu_cores;
        self.cpu_request_cores += o.cpu_request_cores;
        self.memory_bytes += o.memory_bytes;
        self.memory_request_bytes += o.memory_request_bytes;
    }

    /// CPU usage / request (None without a request).
    pub fn cpu_efficiency(&self) -> Option<f64> {
        (self.cpu_request_cores > 0.0).then(|| self.cpu_cores / self.cpu_request_cores)
    }

    /// Memory usage / request (None without a request).
    pub fn memory_efficiency(&self) -> Option<f64> {
        (self.memory_request_bytes > 0.0).then(|| self.memory_bytes / self.memory_request_bytes)
    }
}

/// One aggregate's live view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Current cost rate.
    pub rate: CostRate,
    /// Cost accumulated since the receiver started ($).
    pub accumulated: f64,
    /// Usage and requests.
    pub usage: Usage,
    /// Some price came from [`DefaultPrices`].
    pub default_priced: bool,
}

impl Rates {
    fn add(&mut self, o: &Rates) {
        self.rate.add(&o.rate);
        self.accumulated += o.accumulated;
        self.usage.add(&o.usage);
        self.default_priced |= o.default_priced;
    }

    /// Cost-weighted efficiency over CPU and RAM: (usage cost) / (request cost), as Kubecost's
    /// `totalEfficiency`, with this aggregate's prices implied by its rates.
    pub fn total_efficiency(&self) -> Option<f64> {
        let u = &self.usage;
        let cpu_price = (u.cpu_request_cores > 0.0).then(|| self.rate.cpu / u.cpu_request_cores);
        let ram_price =
            (u.memory_request_bytes > 0.0).then(|| self.rate.ram / u.memory_request_bytes);
        let req = self.rate.cpu + self.rate.ram;
        if req <= 0.0 {
            return None;
        }
        let used =
            u.cpu_cores * cpu_price.unwrap_or(0.0) + u.memory_bytes * ram_price.unwrap_or(0.0);
        Some(used / req)
    }
}

/// The cluster-level derived series (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClusterSummary {
    /// `kubecost_cluster_cpu_usage`: cores used.
    pub cpu_usage_cores: f64,
    /// Σ `kube_node_status_capacity_cpu_cores`.
    pub cpu_capacity_cores: f64,
    /// `kubecost_cluster_memory_usage`: working set bytes.
    pub memory_usage_bytes: f64,
    /// Σ `kube_node_status_capacity_memory_bytes`.
    pub memory_capacity_bytes: f64,
    /// `kubecost_network_usage`: transmitted bytes per second.
    pub network_bytes_per_second: f64,
    /// `kubecost_storage_usage`: bytes claimed by running pods' PVCs.
    pub storage_bytes: f64,
    /// Σ `node_total_hourly_cost` ($/h).
    pub node_cost_rate: f64,
    /// Newest sample time (ms).
    pub newest_sample_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    v: f64,
    ts: i64,
}

impl Point {
    const NONE: Point = Point {
        v: f64::NAN,
        ts: i64::MIN,
    };

    /// Applies a sample; returns the previous point if the sample was newer.
    fn apply(&mut self, s: &Sample) -> Option<Point> {
        if s.timestamp_ms <= self.ts {
            return None;
        }
        let prev = *self;
        self.ts = s.timestamp_ms;
        self.v = if s.is_stale_marker() {
            f64::NAN
        } else {
            s.value
        };
        Some(prev)
    }

    fn get(&self, newest: i64, stale: i64) -> Option<f64> {
        (self.v.is_finite() && self.ts >= newest.saturating_sub(stale)).then_some(self.v)
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    last: Point,
    rate: Point,
}

impl Counter {
    const NONE: Counter = Counter {
        last: Point::NONE,
        rate: Point::NONE,
    };

    fn apply(&mut self, s: &Sample) {
        let Some(prev) = self.last.apply(s) else {
            return;
        };
        let cur = self.last;
        if !cur.v.is_finite() {
            self.rate = Point {
                v: f64::NAN,
                ts: cur.ts,
            };
            return;
        }
        if prev.v.is_finite() {
            let dt = (cur.ts - prev.ts) as f64 / 1000.0;
            let inc = if cur.v >= prev.v {
                cur.v - prev.v
            } else {
                cur.v
            };
            self.rate = Point {
                v: inc / dt,
                ts: cur.ts,
            };
        }
    }
}

#[derive(Debug, Clone)]
struct NodeState {
    cpu: Point,
    ram: Point,
    gpu: Point,
    total: Point,
    cap_cpu: Point,
    cap_mem: Point,
}

impl Default for NodeState {
    fn default() -> Self {
        NodeState {
            cpu: Point::NONE,
            ram: Point::NONE,
            gpu: Point::NONE,
            total: Point::NONE,
            cap_cpu: Point::NONE,
            cap_mem: Point::NONE,
        }
    }
}

#[derive(Debug, Clone)]
struct ContainerState {
    node: String,
    cpu_alloc: Point,
    ram_alloc: Point,
    gpu_alloc: Point,
    cpu_req: Point,
    ram_req: Point,
    working_set: Point,
    cpu_usage: Counter,
    net_tx: Counter,
    accumulated: f64,
}

impl Default for ContainerState {
    fn default() -> Self {
        ContainerState {
            node: String::new(),
            cpu_alloc: Point::NONE,
            ram_alloc: Point::NONE,
            gpu_alloc: Point::NONE,
            cpu_req: Point::NONE,
            ram_req: Point::NONE,
            working_set: Point::NONE,
            cpu_usage: Counter::NONE,
            net_tx: Counter::NONE,
            accumulated: 0.0,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct PodState {
    owner: Option<(String, String)>,
    owner_ts: i64,
    /// persistentvolume -> bytes claimed.
    pvcs: HashMap<String, Point>,
    accumulated: f64,
}

/// Everything known about one cluster.
#[derive(Debug, Clone)]
pub struct ClusterState {
    cfg: LiveConfig,
    newest: i64,
    nodes: HashMap<String, NodeState>,
    /// Key `namespace \0 pod \0 container`.
    containers: HashMap<String, ContainerState>,
    /// Key `namespace \0 pod`.
    pods: HashMap<String, PodState>,
    pv_prices: HashMap<String, Point>,
    /// Key `namespace \0 service`.
    lbs: HashMap<String, (Point, f64)>,
    mgmt: Point,
    mgmt_accumulated: f64,
    net_prices: [Point; 3],
    /// Accumulated cost per namespace and per `namespace \0 kind \0 controller` (survive
    /// eviction of the containers that earned them).
    ns_accumulated: HashMap<String, f64>,
    ctrl_accumulated: HashMap<String, f64>,
    dropped_entries: u64,
    last_evict: i64,
    key: String,
}

/// Labels this module reads, collected in one pass over a series.
#[derive(Default)]
struct L<'a> {
    name: &'a str,
    namespace: &'a str,
    pod: &'a str,
    container: &'a str,
    node: &'a str,
    instance: &'a str,
    resource: &'a str,
    pv: &'a str,
    volumename: &'a str,
    service: &'a str,
    owner_kind: &'a str,
    owner_name: &'a str,
}

impl<'a> L<'a> {
    fn of(s: &Series<'a>) -> L<'a> {
        let mut l = L::default();
        for (k, v) in s.labels() {
            match k {
                "__name__" => l.name = v,
                "namespace" => l.namespace = v,
                "pod" => l.pod = v,
                "pod_name" if l.pod.is_empty() => l.pod = v,
                "container" => l.container = v,
                "container_name" if l.container.is_empty() => l.container = v,
                "node" => l.node = v,
                "instance" => l.instance = v,
                "resource" => l.resource = v,
                "persistentvolume" => l.pv = v,
                "volumename" => l.volumename = v,
                "service_name" => l.service = v,
                "owner_kind" => l.owner_kind = v,
                "owner_name" => l.owner_name = v,
                _ => {}
            }
        }
        l
    }
}

/// Which metric a series is, for dispatch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Metric {
    NodeCpu,
    NodeRam,
    NodeGpu,
    NodeTotal,
    NodeCapCpu,
    NodeCapMem,
    CpuAlloc,
    RamAlloc,
    GpuAlloc,
    Requests,
    WorkingSet,
    CpuUsage,
    NetTx,
    PodPvc,
    PodOwner,
    PvPrice,
    Lb,
    Mgmt,
    NetPrice(usize),
}

fn metric(name: &str) -> Option<Metric> {
    Some(match name {
        "node_cpu_hourly_cost" => Metric::NodeCpu,
        "node_ram_hourly_cost" => Metric::NodeRam,
        "node_gpu_hourly_cost" => Metric::NodeGpu,
        "node_total_hourly_cost" => Metric::NodeTotal,
        "kube_node_status_capacity_cpu_cores" => Metric::NodeCapCpu,
        "kube_node_status_capacity_memory_bytes" => Metric::NodeCapMem,
        "container_cpu_allocation" => Metric::CpuAlloc,
        "container_memory_allocation_bytes" => Metric::RamAlloc,
        "container_gpu_allocation" => Metric::GpuAlloc,
        "kube_pod_container_resource_requests" => Metric::Requests,
        "container_memory_working_set_bytes" => Metric::WorkingSet,
        "container_cpu_usage_seconds_total" => Metric::CpuUsage,
        "container_network_transmit_bytes_total" => Metric::NetTx,
        "pod_pvc_allocation" => Metric::PodPvc,
        "kube_pod_owner" => Metric::PodOwner,
        "pv_hourly_cost" => Metric::PvPrice,
        "kubecost_load_balancer_cost" => Metric::Lb,
        "kubecost_cluster_management_cost" => Metric::Mgmt,
        "kubecost_network_zone_egress_cost" => Metric::NetPrice(0),
        "kubecost_network_region_egress_cost" => Metric::NetPrice(1),
        "kubecost_network_internet_egress_cost" => Metric::NetPrice(2),
        _ => return None,
    })
}

fn is_container_metric(m: Metric) -> bool {
    matches!(
        m,
        Metric::CpuAlloc
            | Metric::RamAlloc
            | Metric::GpuAlloc
            | Metric::Requests
            | Metric::WorkingSet
            | Metric::CpuUsage
            | Metric::NetTx
    )
}

fn set_key(key: &mut String, parts: &[&str]) {
    key.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            key.push('\0');
        }
        key.push_str(p);
    }
}

/// The controller of a pod owner: a ReplicaSet `name-hash` belongs to deployment `name`.
pub fn controller_of(owner_kind: &str, owner_name: &str) -> (String, String) {
    if owner_kind.eq_ignore_ascii_case("ReplicaSet") {
        let name = owner_name
            .rsplit_once('-')
            .map_or(owner_name, |(a, _)| a)
            .to_string();
        return ("deployment".to_string(), name);
    }
    (owner_kind.to_ascii_lowercase(), owner_name.to_string())
}

/// One container's live view.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRates {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// Node.
    pub node: String,
    /// Rates and usage.
    pub rates: Rates,
}

/// One pod's live view (containers plus its volumes).
#[derive(Debug, Clone, PartialEq)]
pub struct PodRates {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// `(kind, name)` of its controller, if known.
    pub controller: Option<(String, String)>,
    /// Rates and usage.
    pub rates: Rates,
}

/// One controller's live view.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerRates {
    /// Namespace.
    pub namespace: String,
    /// Kind (`deployment`, `statefulset`, `daemonset`, `job`, ...).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Rates and usage.
    pub rates: Rates,
}

/// One namespace's live view.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRates {
    /// Namespace.
    pub namespace: String,
    /// Rates and usage.
    pub rates: Rates,
}

impl ClusterState {
    /// An empty cluster.
    pub fn new(cfg: LiveConfig) -> ClusterState {
        ClusterState {
            cfg,
            newest: i64::MIN,
            nodes: HashMap::new(),
            containers: HashMap::new(),
            pods: HashMap::new(),
            pv_prices: HashMap::new(),
            lbs: HashMap::new(),
            mgmt: Point::NONE,
            mgmt_accumulated: 0.0,
            net_prices: [Point::NONE; 3],
            ns_accumulated: HashMap::new(),
            ctrl_accumulated: HashMap::new(),
            dropped_entries: 0,
            last_evict: i64::MIN,
            key: String::new(),
        }
    }

    /// Newest sample time seen (ms), if any.
    pub fn newest_sample_ms(&self) -> Option<i64> {
        (self.newest != i64::MIN).then_some(self.newest)
    }

    /// New entries refused because the cluster was full.
    pub fn dropped_entries(&self) -> u64 {
        self.dropped_entries
    }

    fn entries(&self) -> usize {
        self.nodes.len()
            + self.containers.len()
            + self.pods.len()
            + self.pv_prices.len()
            + self.lbs.len()
    }

    /// Applies a batch. Never fails: series it does not know are skipped.
    pub fn apply(&mut self, batch: &DecodedBatch) {
        // Newest first, so staleness is judged against this batch too.
        for s in batch.series() {
            for p in s.samples() {
                if !p.is_stale_marker() {
                    self.newest = self.newest.max(p.timestamp_ms);
                }
            }
        }
        for s in batch.series() {
            let Some(m) = metric(s.name()) else { continue };
            let l = L::of(&s);
            if is_container_metric(m) {
                self.apply_container(m, &l, s.samples());
                continue;
            }
            for sample in s.samples() {
                self.apply_sample(m, &l, sample);
            }
        }
        if self.newest.saturating_sub(self.last_evict) >= 60_000 {
            self.last_evict = self.newest;
            self.evict_stale();
        }
    }

    fn full(&mut self) -> bool {
        if self.entries() >= self.cfg.max_entries_per_cluster {
            self.dropped_entries += 1;
            return true;
        }
        false
    }

    fn node_mut(&mut self, node: &str) -> Option<&mut NodeState> {
        if node.is_empty() {
            return None;
        }
        if !self.nodes.contains_key(node) {
            if self.full() {
                return None;
            }
            self.nodes.insert(node.to_string(), NodeState::default());
        }
        self.nodes.get_mut(node)
    }

    fn apply_sample(&mut self, m: Metric, l: &L<'_>, s: &Sample) {
        match m {
            Metric::NodeCpu
            | Metric::NodeRam
            | Metric::NodeGpu
            | Metric::NodeTotal
            | Metric::NodeCapCpu
            | Metric::NodeCapMem => {
                let node = if l.node.is_empty() {
                    l.instance
                } else {
                    l.node
                };
                if let Some(n) = self.node_mut(node) {
                    let p = match m {
                        Metric::NodeCpu => &mut n.cpu,
                        Metric::NodeRam => &mut n.ram,
                        Metric::NodeGpu => &mut n.gpu,
                        Metric::NodeTotal => &mut n.total,
                        Metric::NodeCapCpu => &mut n.cap_cpu,
                        _ => &mut n.cap_mem,
                    };
                    p.apply(s);
                }
            }
            Metric::CpuAlloc
            | Metric::RamAlloc
            | Metric::GpuAlloc
            | Metric::Requests
            | Metric::WorkingSet
            | Metric::CpuUsage
            | Metric::NetTx => {
                self.apply_container(m, l, std::slice::from_ref(s));
            }
            Metric::PodPvc => self.apply_pvc(l, s),
            Metric::PodOwner => {
                if l.namespace.is_empty() || l.pod.is_empty() || s.is_stale_marker() {
                    return;
                }
                let mut key = std::mem::take(&mut self.key);
                set_key(&mut key, &[l.namespace, l.pod]);
                if let Some(p) = self.pod_mut(&key) {
                    if s.timestamp_ms >= p.owner_ts && s.value > 0.0 {
                        p.owner_ts = s.timestamp_ms;
                        if p.owner.is_none() {
                            p.owner = Some(controller_of(l.owner_kind, l.owner_name));
                        }
                    }
                }
                self.key = key;
            }
            Metric::PvPrice => {
                let pv = if l.pv.is_empty() { l.volumename } else { l.pv };
                if pv.is_empty() {
                    return;
                }
                if !self.pv_prices.contains_key(pv) {
                    if self.full() {
                        return;
                    }
                    self.pv_prices.insert(pv.to_string(), Point::NONE);
                }
                if let Some(p) = self.pv_prices.get_mut(pv) {
                    p.apply(s);
                }
            }
            Metric::Lb => {
                let mut key = std::mem::take(&mut self.key);
                set_key(&mut key, &[l.namespace, l.service]);
                if !self.lbs.contains_key(key.as_str()) && !self.full() {
                    self.lbs.insert(key.clone(), (Point::NONE, 0.0));
                }
                let stale = self.cfg.stale_after_ms;
                if let Some((p, acc)) = self.lbs.get_mut(key.as_str()) {
                    if let Some(prev) = p.apply(s) {
                        let d = integrate(&prev, p.ts, stale);
                        *acc += d;
                        *self
                            .ns_accumulated
                            .entry(l.namespace.to_string())
                            .or_default() += d;
                    }
                }
                self.key = key;
            }
            Metric::Mgmt => {
                if let Some(prev) = self.mgmt.apply(s) {
                    self.mgmt_accumulated +=
                        integrate(&prev, self.mgmt.ts, self.cfg.stale_after_ms);
                }
            }
            Metric::NetPrice(i) => {
                if let Some(p) = self.net_prices.get_mut(i) {
                    p.apply(s);
                }
            }
        }
    }

    fn pod_mut(&mut self, key: &str) -> Option<&mut PodState> {
        if !self.pods.contains_key(key) {
            if self.full() {
                return None;
            }
            self.pods.insert(key.to_string(), PodState::default());
        }
        self.pods.get_mut(key)
    }

    fn apply_pvc(&mut self, l: &L<'_>, s: &Sample) {
        if l.namespace.is_empty() || l.pod.is_empty() || l.pv.is_empty() {
            return;
        }
        let stale = self.cfg.stale_after_ms;
        let price = self.pv_price(l.pv).0;
        let mut key = std::mem::take(&mut self.key);
        set_key(&mut key, &[l.namespace, l.pod]);
        let mut earned = 0.0;
        let mut owner = None;
        if let Some(p) = self.pod_mut(&key) {
            let point = p.pvcs.entry(l.pv.to_string()).or_insert(Point::NONE);
            if let Some(prev) = point.apply(s) {
                earned = integrate(&prev, point.ts, stale) / GIB * price;
                p.accumulated += earned;
                owner = p.owner.clone();
            }
        }
        self.key = key;
        if earned > 0.0 {
            self.credit(l.namespace, owner.as_ref(), earned);
        }
    }

    fn credit(&mut self, ns: &str, owner: Option<&(String, String)>, d: f64) {
        *self.ns_accumulated.entry(ns.to_string()).or_default() += d;
        if let Some((kind, name)) = owner {
            let mut key = std::mem::take(&mut self.key);
            set_key(&mut key, &[ns, kind, name]);
            match self.ctrl_accumulated.get_mut(key.as_str()) {
                Some(v) => *v += d,
                None => {
                    self.ctrl_accumulated.insert(key.clone(), d);
                }
            }
            self.key = key;
        }
    }

    fn pv_price(&self, pv: &str) -> (f64, bool) {
        match self
            .pv_prices
            .get(pv)
            .and_then(|p| p.get(self.newest, self.cfg.stale_after_ms))
        {
            Some(v) => (v, false),
            None => (self.cfg.default_prices.storage, true),
        }
    }

    fn container_rate(&self, c: &ContainerState, newest: i64) -> (CostRate, bool) {
        container_rate(&self.nodes, &self.cfg, newest, c)
    }

    /// Applies the samples of one container series (one key lookup for all its samples).
    fn apply_container(&mut self, m: Metric, l: &L<'_>, samples: &[Sample]) {
        if l.namespace.is_empty()
            || l.pod.is_empty()
            || l.container.is_empty()
            || l.container == "POD"
        {
            return;
        }
        let resource = l.resource;
        if m == Metric::Requests && !matches!(resource, "cpu" | "memory") {
            return;
        }
        let mut key = std::mem::take(&mut self.key);
        set_key(&mut key, &[l.namespace, l.pod, l.container]);
        if !self.containers.contains_key(key.as_str()) {
            if samples.iter().all(Sample::is_stale_marker) || self.full() {
                self.key = key;
                return;
            }
            self.containers
                .insert(key.clone(), ContainerState::default());
        }
        let node = if l.node.is_empty() {
            l.instance
        } else {
            l.node
        };
        let mut earned = 0.0;
        let (nodes, cfg) = (&self.nodes, &self.cfg);
        if let Some(c) = self.containers.get_mut(key.as_str()) {
            if !node.is_empty() && c.node != node {
                c.node = node.to_string();
            }
            for s in samples {
                match m {
                    Metric::CpuAlloc => {
                        // Integrate the rate held until now before taking the new point.
                        let before = container_rate(nodes, cfg, c.cpu_alloc.ts, c).0.total();
                        if let Some(prev) = c.cpu_alloc.apply(s) {
                            if prev.v.is_finite() {
                                let dt = (c.cpu_alloc.ts - prev.ts).min(cfg.stale_after_ms);
                                let e = before * dt as f64 / MS_PER_HOUR;
                                c.accumulated += e;
                                earned += e;
                            }
                        }
                    }
                    Metric::RamAlloc => {
                        c.ram_alloc.apply(s);
                    }
                    Metric::GpuAlloc => {
                        c.gpu_alloc.apply(s);
                    }
                    Metric::Requests => {
                        if resource == "cpu" {
                            c.cpu_req.apply(s);
                        } else {
                            c.ram_req.apply(s);
                        }
                    }
                    Metric::WorkingSet => {
                        c.working_set.apply(s);
                    }
                    Metric::CpuUsage => c.cpu_usage.apply(s),
                    _ => c.net_tx.apply(s),
                }
            }
        }
        self.key = key;
        if earned > 0.0 {
            let mut pk = String::new();
            set_key(&mut pk, &[l.namespace, l.pod]);
            let owner = self.pods.get(pk.as_str()).and_then(|p| p.owner.clone());
            self.credit(l.namespace, owner.as_ref(), earned);
        }
    }

    /// Drops points and entries older than `stale_after` behind the newest sample.
    pub fn evict_stale(&mut self) {
        let (newest, stale) = (self.newest, self.cfg.stale_after_ms);
        let live = |p: &Point| p.get(newest, stale).is_some();
        self.containers.retain(|_, c| {
            live(&c.cpu_alloc)
                || live(&c.ram_alloc)
                || live(&c.gpu_alloc)
                || live(&c.cpu_req)
                || live(&c.ram_req)
                || live(&c.working_set)
                || live(&c.cpu_usage.last)
                || live(&c.net_tx.last)
        });
        self.pods.retain(|_, p| {
            p.pvcs.retain(|_, v| live(v));
            !p.pvcs.is_empty() || p.owner_ts >= newest.saturating_sub(stale)
        });
        self.nodes.retain(|_, n| {
            live(&n.cpu)
                || live(&n.ram)
                || live(&n.gpu)
                || live(&n.total)
                || live(&n.cap_cpu)
                || live(&n.cap_mem)
        });
        self.pv_prices.retain(|_, p| live(p));
        self.lbs.retain(|_, (p, _)| live(p));
    }

    /// Live view of every container.
    pub fn containers(&self) -> Vec<ContainerRates> {
        let (newest, stale) = (self.newest, self.cfg.stale_after_ms);
        let mut out = Vec::with_capacity(self.containers.len());
        for (k, c) in &self.containers {
            let mut parts = k.split('\0');
            let (Some(ns), Some(pod), Some(cont)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (rate, default_priced) = self.container_rate(c, newest);
            let g = |p: &Point| p.get(newest, stale).unwrap_or(0.0);
            let usage = Usage {
                cpu_cores: c.cpu_usage.rate.get(newest, stale).unwrap_or(0.0),
                cpu_request_cores: g(&c.cpu_req),
                memory_bytes: g(&c.working_set),
                memory_request_bytes: g(&c.ram_req),
            };
            out.push(ContainerRates {
                namespace: ns.to_string(),
                pod: pod.to_string(),
                container: cont.to_string(),
                node: c.node.clone(),
                rates: Rates {
                    rate,
                    accumulated: c.accumulated,
                    usage,
                    default_priced,
                },
            });
        }
        out
    }

    /// Live view of every pod (containers plus PVs).
    pub fn pods(&self) -> Vec<PodRates> {
        let (newest, stale) = (self.newest, self.cfg.stale_after_ms);
        let mut by_pod: HashMap<(String, String), Rates> = HashMap::new();
        for c in self.containers() {
            by_pod
                .entry((c.namespace, c.pod))
                .or_default()
                .add(&c.rates);
        }
        for (k, p) in &self.pods {
            let Some((ns, pod)) = k.split_once('\0') else {
                continue;
            };
            let mut pv = 0.0;
            let mut defaulted = false;
            for (name, point) in &p.pvcs {
                if let Some(bytes) = point.get(newest, stale) {
                    let (price, d) = self.pv_price(name);
                    pv += bytes / GIB * price;
                    defaulted |= d;
                }
            }
            let has_pvc = pv > 0.0 || p.accumulated > 0.0;
            if has_pvc || by_pod.contains_key(&(ns.to_string(), pod.to_string())) {
                let r = by_pod.entry((ns.to_string(), pod.to_string())).or_default();
                r.rate.pv += pv;
                r.accumulated += p.accumulated;
                r.default_priced |= defaulted;
            }
        }
        by_pod
            .into_iter()
            .map(|((namespace, pod), rates)| {
                let controller = self
                    .pods
                    .get(format!("{namespace}\0{pod}").as_str())
                    .and_then(|p| p.owner.clone());
                PodRates {
                    namespace,
                    pod,
                    controller,
                    rates,
                }
            })
            .collect()
    }

    /// Live view per controller (pods without a known owner are left out).
    pub fn controllers(&self) -> Vec<ControllerRates> {
        let mut m: HashMap<(String, String, String), Rates> = HashMap::new();
        for p in self.pods() {
            if let Some((kind, name)) = p.controller {
                let mut r = p.rates;
                r.accumulated = 0.0;
                m.entry((p.namespace, kind, name)).or_default().add(&r);
            }
        }
        for (k, acc) in &self.ctrl_accumulated {
            let mut parts = k.split('\0');
            if let (Some(ns), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) {
                m.entry((ns.to_string(), kind.to_string(), name.to_string()))
                    .or_default()
                    .accumulated += acc;
            }
        }
        m.into_iter()
            .map(|((namespace, kind, name), rates)| ControllerRates {
                namespace,
                kind,
                name,
                rates,
            })
            .collect()
    }

    /// Live view per namespace, sorted by name.
    pub fn namespaces(&self) -> Vec<NamespaceRates> {
        let newest = self.newest;
        let stale = self.cfg.stale_after_ms;
        let mut m: HashMap<String, Rates> = HashMap::new();
        for p in self.pods() {
            let mut r = p.rates;
            r.accumulated = 0.0;
            m.entry(p.namespace).or_default().add(&r);
        }
        for (k, (p, _)) in &self.lbs {
            if let Some(v) = p.get(newest, stale) {
                let ns = k.split('\0').next().unwrap_or("");
                m.entry(ns.to_string()).or_default().rate.load_balancer += v;
            }
        }
        for (ns, acc) in &self.ns_accumulated {
            m.entry(ns.clone()).or_default().accumulated += acc;
        }
        let mut v: Vec<NamespaceRates> = m
            .into_iter()
            .map(|(namespace, rates)| NamespaceRates { namespace, rates })
            .collect();
        v.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        v
    }

    /// The whole cluster: Σ namespaces plus the management fee.
    pub fn total(&self) -> Rates {
        let mut r = Rates::default();
        for n in self.namespaces() {
            r.add(&n.rates);
        }
        r.rate.management = self
            .mgmt
            .get(self.newest, self.cfg.stale_after_ms)
            .unwrap_or(0.0);
        r.accumulated += self.mgmt_accumulated;
        r
    }

    /// The derived cluster series (see the module docs).
    pub fn summary(&self) -> ClusterSummary {
        let (newest, stale) = (self.newest, self.cfg.stale_after_ms);
        let mut s = ClusterSummary {
            newest_sample_ms: self.newest_sample_ms().unwrap_or(0),
            ..ClusterSummary::default()
        };
        for c in self.containers.values() {
            s.cpu_usage_cores += c.cpu_usage.rate.get(newest, stale).unwrap_or(0.0);
            s.memory_usage_bytes += c.working_set.get(newest, stale).unwrap_or(0.0);
            s.network_bytes_per_second += c.net_tx.rate.get(newest, stale).unwrap_or(0.0);
        }
        for n in self.nodes.values() {
            s.cpu_capacity_cores += n.cap_cpu.get(newest, stale).unwrap_or(0.0);
            s.memory_capacity_bytes += n.cap_mem.get(newest, stale).unwrap_or(0.0);
            s.node_cost_rate += n.total.get(newest, stale).unwrap_or(0.0);
        }
        for p in self.pods.values() {
            for v in p.pvcs.values() {
                s.storage_bytes += v.get(newest, stale).unwrap_or(0.0);
            }
        }
        s
    }

    /// The three egress prices ($/GiB: zone, region, internet), if known.
    pub fn network_prices(&self) -> [Option<f64>; 3] {
        let (newest, stale) = (self.newest, self.cfg.stale_after_ms);
        self.net_prices.map(|p| p.get(newest, stale))
    }
}

/// ($/core-h, $/GiB-h, $/GPU-h) of a node and whether a default was used.
fn node_prices(
    nodes: &HashMap<String, NodeState>,
    cfg: &LiveConfig,
    newest: i64,
    node: &str,
) -> ([f64; 3], bool) {
    let stale = cfg.stale_after_ms;
    let d = &cfg.default_prices;
    let n = nodes.get(node);
    let get = |f: fn(&NodeState) -> &Point| n.and_then(|n| f(n).get(newest, stale));
    let cpu = get(|n| &n.cpu);
    let ram = get(|n| &n.ram);
    let gpu = get(|n| &n.gpu);
    let defaulted = cpu.is_none() || ram.is_none();
    (
        [
            cpu.unwrap_or(d.cpu),
            ram.unwrap_or(d.ram),
            gpu.unwrap_or(d.gpu),
        ],
        defaulted,
    )
}

/// A container's cost rate with its node's prices (staleness judged against `newest`).
fn container_rate(
    nodes: &HashMap<String, NodeState>,
    cfg: &LiveConfig,
    newest: i64,
    c: &ContainerState,
) -> (CostRate, bool) {
    let stale = cfg.stale_after_ms;
    let (p, defaulted) = node_prices(nodes, cfg, newest, &c.node);
    let cpu = c.cpu_alloc.get(newest, stale).unwrap_or(0.0);
    let ram = c.ram_alloc.get(newest, stale).unwrap_or(0.0);
    let gpu = c.gpu_alloc.get(newest, stale).unwrap_or(0.0);
    let any = cpu > 0.0 || ram > 0.0 || gpu > 0.0;
    (
        CostRate {
            cpu: cpu * p[0],
            ram: ram / GIB * p[1],
            gpu: gpu * p[2],
            ..CostRate::default()
        },
        defaulted && any,
    )
}

/// Cost of holding `prev`'s value (a $/h rate, or bytes for volumes) from `prev.ts` to `now`,
/// with the gap capped at `stale` (ms).
fn integrate(prev: &Point, now: i64, stale: i64) -> f64 {
    if !prev.v.is_finite() || prev.ts == i64::MIN {
        return 0.0;
    }
    let dt = (now - prev.ts).clamp(0, stale);
    prev.v * dt as f64 / MS_PER_HOUR
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::STALE_NAN_BITS;

    type Spec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

    fn batch(series: &[Spec<'_>]) -> DecodedBatch {
        let mut b = DecodedBatch::default();
        for (labels, samples) in series {
            let mut s = b.push_series();
            for (k, v) in *labels {
                s.label(k, v);
            }
            for (t, v) in *samples {
                s.sample(*t, *v);
            }
            s.finish();
        }
        b
    }

    const C: &[(&str, &str)] = &[
        ("__name__", "container_cpu_allocation"),
        ("container", "app"),
        ("namespace", "ns"),
        ("node", "n1"),
        ("pod", "web-5d8f7c9b4-x2x2q"),
    ];
    const PRICE: &[(&str, &str)] = &[("__name__", "node_cpu_hourly_cost"), ("node", "n1")];
    const RAM_PRICE: &[(&str, &str)] = &[("__name__", "node_ram_hourly_cost"), ("node", "n1")];
    const USAGE: &[(&str, &str)] = &[
        ("__name__", "container_cpu_usage_seconds_total"),
        ("container", "app"),
        ("namespace", "ns"),
        ("pod", "web-5d8f7c9b4-x2x2q"),
    ];

    #[test]
    fn rates_accumulate_and_ignore_old_or_duplicate_samples() {
        let mut st = ClusterState::new(LiveConfig::default());
        st.apply(&batch(&[
            (PRICE, &[(0, 0.05)]),
            (RAM_PRICE, &[(0, 0.01)]),
            (C, &[(0, 2.0), (60_000, 2.0)]),
        ]));
        let ns = st.namespaces();
        assert_eq!(ns.len(), 1);
        assert!((ns[0].rates.rate.cpu - 0.1).abs() < 1e-12);
        assert!((ns[0].rates.accumulated - 0.1 / 60.0).abs() < 1e-12);
        // Duplicate and out-of-order samples change nothing.
        st.apply(&batch(&[(C, &[(60_000, 9.0), (30_000, 9.0)])]));
        assert!((st.namespaces()[0].rates.rate.cpu - 0.1).abs() < 1e-12);
        assert!((st.namespaces()[0].rates.accumulated - 0.1 / 60.0).abs() < 1e-12);
        assert!(!st.namespaces()[0].rates.default_priced);
        // Staleness marker: the container stops costing.
        st.apply(&batch(&[(C, &[(90_000, f64::from_bits(STALE_NAN_BITS))])]));
        assert_eq!(st.namespaces()[0].rates.rate.cpu, 0.0);
    }

    #[test]
    fn counters_handle_resets() {
        let mut st = ClusterState::new(LiveConfig::default());
        st.apply(&batch(&[(USAGE, &[(0, 100.0), (10_000, 105.0)])]));
        assert!((st.summary().cpu_usage_cores - 0.5).abs() < 1e-12);
        st.apply(&batch(&[(USAGE, &[(20_000, 3.0)])]));
        assert!((st.summary().cpu_usage_cores - 0.3).abs() < 1e-12);
    }

    #[test]
    fn missing_prices_fall_back_and_flag() {
        let mut st = ClusterState::new(LiveConfig::default());
        st.apply(&batch(&[(C, &[(0, 1.0)])]));
        let r = &st.namespaces()[0].rates;
        assert!(r.default_priced);
        assert!((r.rate.cpu - DefaultPrices::default().cpu).abs() < 1e-12);
    }

    #[test]
    fn old_points_go_stale() {
        let mut st = ClusterState::new(LiveConfig::default());
        st.apply(&batch(&[(PRICE, &[(0, 0.05)]), (C, &[(0, 2.0)])]));
        st.apply(&batch(&[(PRICE, &[(10 * 60_000, 0.05)])]));
        assert!(st.namespaces().iter().all(|n| n.rates.rate.cpu == 0.0));
        assert!(st.containers().is_empty(), "evicted");
    }

    #[test]
    fn controllers_from_owners() {
        assert_eq!(
            controller_of("ReplicaSet", "web-5d8f7c9b4"),
            ("deployment".to_string(), "web".to_string())
        );
        assert_eq!(
            controller_of("StatefulSet", "db"),
            ("statefulset".to_string(), "db".to_string())
        );
    }
}
