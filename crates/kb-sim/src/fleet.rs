//! The deterministic fleet model: the static inventory built once from a [`SimConfig`], and the
//! per-hour quantities computed lazily from `(seed, entity ids, hour)`.
//!
//! Invariants:
//! - Every random quantity is `splitmix64(seed, salt, ids..., hour)`, never a stateful RNG, so a
//!   value does not depend on which query asked first.
//! - Non-job pods run every second of every hour; a job pod runs one interval inside some hours
//!   (and is a new pod each hour it runs). Deployment pods get a new name each UTC day.
//! - PVs are only on statefulset pods (plus one unmounted PV per cluster), load balancers only
//!   on deployments, GPUs only on GPU deployments, each alone on a 1-GPU node. These placements
//!   are what make allocations and assets conserve exactly (see the crate docs).
//! - Every cluster has at least one node, so the tenancy cost always has a place to go.

use crate::{SimConfig, Spike};
use kb_core::Window;

/// Seconds in an hour.
pub(crate) const HOUR: i64 = 3_600;
/// Bytes in a GiB (Kubecost prices RAM and disks per GiB-hour).
pub(crate) const GIB: f64 = 1_073_741_824.0;
/// Fraction of a node's requests capacity the packer fills before opening a new node.
const TARGET_FILL: f64 = 0.7;

// Salts that keep the hash streams of different quantities apart.
const S_CTRL: u64 = 1;
const S_NODE: u64 = 2;
const S_CPU: u64 = 3;
const S_RAM: u64 = 4;
const S_NET: u64 = 5;
const S_JOB: u64 = 6;
const S_PV: u64 = 7;
const S_NAME: u64 = 8;
const S_CONT: u64 = 9;

/// splitmix64's finaliser.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a seed and a list of ids into one 64-bit value.
pub(crate) fn hash(seed: u64, parts: &[u64]) -> u64 {
    let mut h = mix(seed);
    for p in parts {
        h = mix(h ^ *p);
    }
    h
}

/// Maps a hash to `[0, 1)`.
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// Index `< n` from a hash (`n > 0`).
fn pick(x: u64, n: usize) -> usize {
    (x % (n.max(1) as u64)) as usize
}

const ALNUM: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Kubernetes-style random suffix of `len` characters.
fn suffix(mut x: u64, len: usize) -> String {
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        let i = pick(x, ALNUM.len());
        s.push(char::from(ALNUM.get(i).copied().unwrap_or(b'x')));
        x = mix(x);
    }
    s
}

/// Cloud provider of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
}

impl Provider {
    /// Kubecost's provider name (`AWS`, `GCP`, `Azure`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Gcp => "GCP",
            Provider::Azure => "Azure",
        }
    }

    /// The managed Kubernetes service (`provisioner_name` of the management fee metric).
    pub fn provisioner(self) -> &'static str {
        match self {
            Provider::Aws => "EKS",
            Provider::Gcp => "GKE",
            Provider::Azure => "AKS",
        }
    }
}

/// Kubernetes controller kind, reported lower-case as Kubecost does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
}

impl Kind {
    /// Kubecost's `controllerKind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::Job => "job",
        }
    }

    /// The Kubernetes owner kind (`kube_pod_owner`).
    pub fn owner_kind(self) -> &'static str {
        match self {
            Kind::Deployment => "ReplicaSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
        }
    }
}

/// An instance type: capacity and on-demand price split Kubecost style.
#[derive(Debug, Clone, Copy)]
struct NodeType {
    name: &'static str,
    cores: f64,
    gib: f64,
    gpus: f64,
}

const GPU_TYPE: usize = 3;

fn node_types(p: Provider) -> [NodeType; 4] {
    let n = |name, cores, gib, gpus| NodeType {
        name,
        cores,
        gib,
        gpus,
    };
    match p {
        Provider::Aws => [
            n("m5.xlarge", 4.0, 16.0, 0.0),
            n("m5.2xlarge", 8.0, 32.0, 0.0),
            n("r5.large", 2.0, 16.0, 0.0),
            n("g4dn.2xlarge", 8.0, 32.0, 1.0),
        ],
        Provider::Gcp => [
            n("n2-standard-4", 4.0, 16.0, 0.0),
            n("n2-standard-8", 8.0, 32.0, 0.0),
            n("n2-highmem-2", 2.0, 16.0, 0.0),
            n("n1-standard-8-t4", 8.0, 30.0, 1.0),
        ],
        Provider::Azure => [
            n("Standard_D4s_v5", 4.0, 16.0, 0.0),
            n("Standard_D8s_v5", 8.0, 32.0, 0.0),
            n("Standard_E2s_v5", 2.0, 16.0, 0.0),
            n("Standard_NC4as_T4_v3", 4.0, 28.0, 1.0),
        ],
    }
}

/// One node.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub provider_id: String,
    pub instance_type: &'static str,
    pub zone: String,
    pub spot: bool,
    pub cores: f64,
    pub ram_bytes: f64,
    pub gpus: f64,
    /// $ per vCPU-hour.
    pub cpu_price: f64,
    /// $ per GiB-hour of RAM.
    pub ram_price: f64,
    /// $ per GPU-hour.
    pub gpu_price: f64,
    /// Root disk size in bytes (a Disk asset, shared as tenancy cost).
    pub disk_bytes: f64,
    /// Root disk $ per GiB-hour.
    pub disk_price: f64,
    pub disk_provider_id: String,
    /// Node labels (Prometheus-sanitised keys, without the `label_` prefix).
    pub labels: Vec<(String, String)>,
}

impl Node {
    /// $ per hour of the node's compute (cpu + ram + gpu).
    pub fn hourly_cost(&self) -> f64 {
        self.cores * self.cpu_price
            + self.ram_bytes / GIB * self.ram_price
            + self.gpus * self.gpu_price
    }
}

/// One namespace.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

/// Container template shared by every pod of a controller.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: &'static str,
    /// Requested cores.
    pub cpu: f64,
    /// Requested bytes.
    pub ram: f64,
    /// Requested GPUs.
    pub gpu: f64,
    /// Mean usage over request, cpu.
    pub cpu_eff: f64,
    /// Mean usage over request, ram.
    pub ram_eff: f64,
    /// Mean transmitted bytes per hour.
    pub net_base: f64,
}

/// One controller (deployment, statefulset, daemonset, job).
#[derive(Debug, Clone)]
pub struct Controller {
    pub name: String,
    pub kind: Kind,
    pub ns: u32,
    /// Number of pod slots.
    pub pods: u32,
    pub containers: Vec<Container>,
    /// Load balancer serving this controller's pods.
    pub lb: Option<u32>,
    /// Services selecting the pods (sorted).
    pub services: Vec<String>,
    pub labels: Vec<(String, String)>,
    /// Random part of the statefulset/daemonset pod names.
    tag: u64,
}

/// One pod slot: a stable place in the fleet whose name may change (daily rollouts, job runs).
#[derive(Debug, Clone, Copy)]
pub struct Pod {
    pub ctrl: u32,
    pub ordinal: u32,
    pub node: u32,
    pub pv: Option<u32>,
}

/// A persistent volume.
#[derive(Debug, Clone)]
pub struct Pv {
    pub name: String,
    pub provider_id: String,
    pub claim: String,
    pub ns: u32,
    pub bytes: f64,
    /// $ per GiB-hour.
    pub price: f64,
    /// The pod mounting it; `None` = unmounted.
    pub pod: Option<u32>,
    pub storage_class: &'static str,
}

impl Pv {
    /// Cost of the PV over `secs` seconds.
    pub fn cost(&self, secs: f64) -> f64 {
        self.bytes * secs / HOUR as f64 / GIB * self.price
    }
}

/// A load balancer.
#[derive(Debug, Clone)]
pub struct Lb {
    pub service: String,
    pub ns: u32,
    pub ctrl: u32,
    pub ip: String,
    /// $ per hour.
    pub price: f64,
}

/// One cluster of the fleet.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub provider: Provider,
    pub region: String,
    pub account: String,
    pub project: String,
    /// Management fee, $ per hour.
    pub mgmt_price: f64,
    /// $ per GiB of cross-zone, cross-region and internet egress.
    pub net_prices: [f64; 3],
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
    pub controllers: Vec<Controller>,
    pub pods: Vec<Pod>,
    pub pvs: Vec<Pv>,
    pub lbs: Vec<Lb>,
    /// Pod indices of job pods (the only ones that run part of an hour).
    pub job_pods: Vec<u32>,
    /// Number of containers of non-job pods (all run full hours).
    pub steady_containers: u64,
    /// Pod indices per namespace.
    pub ns_pods: Vec<Vec<u32>>,
    /// Spike factor per namespace and the start it applies from.
    ns_spikes: Vec<Vec<(f64, i64)>>,
}

/// The simulated fleet: static inventory plus the seed of every per-hour quantity.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub(crate) seed: u64,
    pub(crate) clusters: Vec<Cluster>,
}

/// One container's values for one hour (rates: cores, bytes, GPUs, bytes per hour).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    pub req_cpu: f64,
    pub use_cpu: f64,
    pub req_ram: f64,
    pub use_ram: f64,
    pub gpu: f64,
    pub tx: f64,
    pub rx: f64,
}

impl Sample {
    /// Allocated cores: max(request, usage), as Kubecost allocates.
    pub(crate) fn alloc_cpu(&self) -> f64 {
        self.req_cpu.max(self.use_cpu)
    }
    /// Allocated bytes: max(request, usage).
    pub(crate) fn alloc_ram(&self) -> f64 {
        self.req_ram.max(self.use_ram)
    }
}

/// Share of transmitted bytes that crosses zones, regions, and goes to the internet.
pub(crate) const NET_SPLIT: [f64; 3] = [0.3, 0.05, 0.1];

const NS_WORDS: &[&str] = &[
    "payments",
    "checkout",
    "search",
    "ingest",
    "analytics",
    "frontend",
    "identity",
    "billing",
    "catalog",
    "orders",
    "shipping",
    "reporting",
    "ml-platform",
    "data",
    "notifications",
];
const APP_WORDS: &[&str] = &[
    "api",
    "web",
    "worker",
    "gateway",
    "cache",
    "db",
    "queue",
    "scheduler",
    "indexer",
    "auth",
    "router",
    "exporter",
    "collector",
    "batch",
    "stream",
];
const MAIN_CONTAINERS: &[&str] = &["app", "server", "main", "worker", "api"];
const SIDECARS: &[&str] = &["istio-proxy", "log-shipper", "envoy", "metrics-agent"];
const TEAMS: &[&str] = &["platform", "growth", "data", "core", "security"];
const ENVS: &[&str] = &["prod", "staging", "dev"];
const CPU_REQ: &[f64] = &[0.05, 0.1, 0.25, 0.25, 0.5, 0.5, 1.0, 2.0];
const RAM_REQ_MIB: &[f64] = &[64.0, 128.0, 256.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

fn sanitize(k: &str) -> String {
    k.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Fleet {
    /// Builds the static fleet for a configuration (deterministic for the seed).
    pub fn new(cfg: &SimConfig) -> Fleet {
        let clusters = (0..cfg.clusters)
            .map(|ci| build_cluster(cfg.seed, ci, cfg.pods, &cfg.spikes))
            .collect();
        Fleet {
            seed: cfg.seed,
            clusters,
        }
    }

    /// Cluster names, `cluster-1`, `cluster-2`, ...
    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.name.clone()).collect()
    }

    /// The clusters (static inventory).
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub(crate) fn cluster_index(&self, name: &str) -> Option<usize> {
        self.clusters.iter().position(|c| c.name == name)
    }

    /// Spike factor of a namespace for the hour starting at `hour`.
    fn spike(&self, cl: &Cluster, ns: u32, hour: i64) -> f64 {
        let mut f = 1.0;
        if let Some(list) = cl.ns_spikes.get(ns as usize) {
            for (factor, start) in list {
                if hour >= *start {
                    f *= factor;
                }
            }
        }
        f
    }

    /// One container's rates for the hour starting at `hour` (unix seconds, hour aligned).
    pub(crate) fn sample(&self, ci: usize, cl: &Cluster, pod: u32, k: usize, hour: i64) -> Sample {
        let Some(p) = cl.pods.get(pod as usize) else {
            return Sample::default();
        };
        let Some(ctrl) = cl.controllers.get(p.ctrl as usize) else {
            return Sample::default();
        };
        let Some(c) = ctrl.containers.get(k) else {
            return Sample::default();
        };
        let factor = self.spike(cl, ctrl.ns, hour);
        let hour_idx = hour.div_euclid(HOUR);
        let hod = hour_idx.rem_euclid(24) as f64;
        // Working-day bump peaking at 13:00 UTC, 0.5 at night.
        let x = (hod - 13.0) / 6.0;
        let daily = 0.5 + 0.5 * (1.0 - x * x).max(0.0);
        // 1970-01-01 was a Thursday: day 3 and 2 after it are Sunday and Saturday.
        let dow = hour_idx.div_euclid(24).rem_euclid(7);
        let weekly = if dow == 2 || dow == 3 { 0.6 } else { 1.0 };
        let ids = [ci as u64, u64::from(pod), k as u64, hour_idx as u64];
        let n_cpu = 0.85 + 0.3 * unit(hash(self.seed, &[S_CPU, ids[0], ids[1], ids[2], ids[3]]));
        let n_ram = 0.95 + 0.1 * unit(hash(self.seed, &[S_RAM, ids[0], ids[1], ids[2], ids[3]]));
        let n_net = 0.5 + unit(hash(self.seed, &[S_NET, ids[0], ids[1], ids[2], ids[3]]));
        let tx = c.net_base * daily * weekly * n_net * factor;
        Sample {
            req_cpu: c.cpu * factor,
            use_cpu: c.cpu * c.cpu_eff * daily * weekly * n_cpu * factor,
            req_ram: c.ram * factor,
            // Memory barely follows load: working sets stay resident.
            use_ram: c.ram * c.ram_eff * (0.85 + 0.15 * daily) * n_ram * factor,
            gpu: c.gpu * factor,
            tx,
            rx: tx * 1.7,
        }
    }

    /// Seconds `[from, to)` inside the hour when the pod runs, relative to the hour start.
    pub(crate) fn run_in_hour(
        &self,
        ci: usize,
        cl: &Cluster,
        pod: u32,
        hour: i64,
    ) -> Option<(i64, i64)> {
        let p = cl.pods.get(pod as usize)?;
        let kind = cl.controllers.get(p.ctrl as usize)?.kind;
        if kind != Kind::Job {
            return Some((0, HOUR));
        }
        let h = hash(
            self.seed,
            &[
                S_JOB,
                ci as u64,
                u64::from(pod),
                hour.div_euclid(HOUR) as u64,
            ],
        );
        if unit(h) >= 0.6 {
            return None;
        }
        let start_min = (mix(h) % 30) as i64;
        let max_len = 60 - start_min - 5;
        let len = 5 + (mix(h ^ 1) % (max_len as u64 + 1)) as i64;
        Some((start_min * 60, (start_min + len) * 60))
    }

    /// Identity of the pod running in a slot at `hour`: rows of different instances are
    /// different pods (day for deployments, hour for jobs).
    pub(crate) fn instance(&self, cl: &Cluster, pod: u32, hour: i64) -> i64 {
        let kind = cl
            .pods
            .get(pod as usize)
            .and_then(|p| cl.controllers.get(p.ctrl as usize))
            .map(|c| c.kind);
        match kind {
            Some(Kind::Deployment) => hour.div_euclid(86_400),
            Some(Kind::Job) => hour.div_euclid(HOUR),
            _ => 0,
        }
    }

    /// The pod's name for an instance (see [`Fleet::instance`]).
    pub(crate) fn pod_name(&self, ci: usize, cl: &Cluster, pod: u32, inst: i64) -> String {
        let Some(p) = cl.pods.get(pod as usize) else {
            return String::new();
        };
        let Some(ctrl) = cl.controllers.get(p.ctrl as usize) else {
            return String::new();
        };
        match ctrl.kind {
            Kind::Deployment => {
                let rs = suffix(
                    hash(
                        self.seed,
                        &[S_NAME, ci as u64, u64::from(p.ctrl), inst as u64],
                    ),
                    10,
                );
                let tail = suffix(
                    hash(
                        self.seed,
                        &[S_NAME, ci as u64, u64::from(pod), inst as u64, 1],
                    ),
                    3,
                );
                format!("{}-{}-{}{}", ctrl.name, rs, tail, base36(p.ordinal))
            }
            Kind::StatefulSet => format!("{}-{}", ctrl.name, p.ordinal),
            Kind::DaemonSet => {
                format!("{}-{}{}", ctrl.name, suffix(ctrl.tag, 3), base36(p.ordinal))
            }
            Kind::Job => format!("{}-{}-{}", ctrl.name, inst, base36(p.ordinal)),
        }
    }
}

fn base36(mut n: u32) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(D.get((n % 36) as usize).copied().unwrap_or(b'0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn hex(x: u64, len: usize) -> String {
    let s = format!("{:016x}{:016x}", x, mix(x));
    s.get(..len.min(32)).unwrap_or("").to_string()
}

fn uuid(x: u64) -> String {
    let s = hex(x, 32);
    format!(
        "{}-{}-{}-{}-{}",
        s.get(0..8).unwrap_or(""),
        s.get(8..12).unwrap_or(""),
        s.get(12..16).unwrap_or(""),
        s.get(16..20).unwrap_or(""),
        s.get(20..32).unwrap_or("")
    )
}

struct NodePacker {
    cur: Option<(u32, f64, f64)>,
}

#[allow(clippy::too_many_lines)]
fn build_cluster(seed: u64, ci: usize, n_pods: usize, spikes: &[Spike]) -> Cluster {
    let provider = [Provider::Aws, Provider::Gcp, Provider::Azure][ci % 3];
    let name = format!("cluster-{}", ci + 1);
    let cid = ci as u64;
    let (region, zones, cpu_price, ram_price, gpu_price, disk_price, mgmt, class) = match provider {
        Provider::Aws => {
            let r = if ci % 2 == 0 {
                "us-east-1"
            } else {
                "us-west-2"
            };
            let z = ["a", "b", "c"].map(|s| format!("{r}{s}"));
            (
                r.to_string(),
                z,
                0.031611,
                0.004237,
                0.526,
                0.08 / 730.0,
                0.10,
                "gp3",
            )
        }
        Provider::Gcp => {
            let r = "us-central1";
            let z = ["a", "b", "c"].map(|s| format!("{r}-{s}"));
            (
                r.to_string(),
                z,
                0.031611 * 0.95,
                0.004237 * 0.95,
                0.35,
                0.04 / 730.0,
                0.10,
                "standard-rwo",
            )
        }
        Provider::Azure => {
            let r = "eastus";
            let z = ["1", "2", "3"].map(|s| format!("{r}-{s}"));
            (
                r.to_string(),
                z,
                0.031611 * 1.05,
                0.004237 * 1.05,
                0.526,
                0.05 / 730.0,
                0.10,
                "managed-csi",
            )
        }
    };
    let account = format!(
        "{:012}",
        hash(seed, &[S_NODE, cid, 999]) % 1_000_000_000_000
    );
    let project = format!("sim-project-{}", ci + 1);
    let types = node_types(provider);

    // Namespaces.
    let n_ns = (n_pods / 10).max(5);
    let mut namespaces = Vec::with_capacity(n_ns);
    for i in 0..n_ns {
        let nm = match i {
            0 => "kube-system".to_string(),
            1 => "monitoring".to_string(),
            _ => {
                let w = NS_WORDS
                    .get((i - 2) % NS_WORDS.len())
                    .copied()
                    .unwrap_or("ns");
                if i - 2 < NS_WORDS.len() {
                    w.to_string()
                } else {
                    format!("{w}-{}", (i - 2) / NS_WORDS.len())
                }
            }
        };
        let team = TEAMS
            .get(pick(hash(seed, &[S_CTRL, cid, i as u64, 7]), TEAMS.len()))
            .copied()
            .unwrap_or("core");
        let labels = vec![
            ("kubernetes_io_metadata_name".to_string(), nm.clone()),
            ("team".to_string(), team.to_string()),
        ];
        namespaces.push(Namespace { name: nm, labels });
    }

    // Controllers and pod slots.
    let mut controllers: Vec<Controller> = Vec::new();
    let mut pods: Vec<Pod> = Vec::with_capacity(n_pods);
    let mut pvs: Vec<Pv> = Vec::new();
    let mut lbs: Vec<Lb> = Vec::new();
    let mut slot = 0usize;
    while slot < n_pods {
        let idx = controllers.len() as u64;
        let h = hash(seed, &[S_CTRL, cid, idx]);
        let ns = if (idx as usize) < n_ns {
            idx as usize
        } else {
            pick(h, n_ns)
        };
        let u = unit(mix(h ^ 3));
        let gpu = idx % 37 == 7;
        let kind = if gpu || u < 0.6 {
            Kind::Deployment
        } else if u < 0.75 {
            Kind::StatefulSet
        } else if u < 0.85 {
            Kind::DaemonSet
        } else {
            Kind::Job
        };
        let size = if gpu {
            1
        } else {
            let s = mix(h ^ 5);
            match kind {
                Kind::Deployment => 1 + s % 6,
                Kind::StatefulSet => 1 + s % 3,
                Kind::DaemonSet => 1 + s % 4,
                Kind::Job => 1 + s % 2,
            }
        } as usize;
        let size = size.min(n_pods - slot);
        let word = APP_WORDS
            .get(pick(mix(h ^ 7), APP_WORDS.len()))
            .copied()
            .unwrap_or("app");
        let cname = format!("{word}-{idx}");
        let n_cont = if unit(mix(h ^ 11)) < 0.3 { 2 } else { 1 };
        let mut containers = Vec::with_capacity(n_cont);
        for k in 0..n_cont {
            let hc = hash(seed, &[S_CONT, cid, idx, k as u64]);
            let name = if k == 0 {
                MAIN_CONTAINERS
                    .get(pick(hc, MAIN_CONTAINERS.len()))
                    .copied()
                    .unwrap_or("app")
            } else {
                SIDECARS
                    .get(pick(hc, SIDECARS.len()))
                    .copied()
                    .unwrap_or("sidecar")
            };
            let (cpu, ram) = if k == 0 {
                (
                    CPU_REQ
                        .get(pick(mix(hc ^ 1), CPU_REQ.len()))
                        .copied()
                        .unwrap_or(0.1),
                    RAM_REQ_MIB
                        .get(pick(mix(hc ^ 2), RAM_REQ_MIB.len()))
                        .copied()
                        .unwrap_or(128.0)
                        * 1_048_576.0,
                )
            } else {
                (0.05, 64.0 * 1_048_576.0)
            };
            containers.push(Container {
                name,
                cpu,
                ram,
                gpu: if gpu && k == 0 { 1.0 } else { 0.0 },
                cpu_eff: 0.1 + 1.3 * unit(mix(hc ^ 3)),
                ram_eff: 0.3 + 0.9 * unit(mix(hc ^ 4)),
                net_base: 1e6 + 5e8 * unit(mix(hc ^ 5)).powi(3),
            });
        }
        let team = TEAMS
            .get(pick(mix(h ^ 13), TEAMS.len()))
            .copied()
            .unwrap_or("core");
        let env = ENVS
            .get(pick(mix(h ^ 17), ENVS.len()))
            .copied()
            .unwrap_or("prod");
        let labels = vec![
            ("app".to_string(), cname.clone()),
            ("env".to_string(), env.to_string()),
            ("team".to_string(), team.to_string()),
        ];
        let mut services = Vec::new();
        let mut lb = None;
        if matches!(kind, Kind::Deployment | Kind::StatefulSet) {
            services.push(cname.clone());
        }
        if kind == Kind::Deployment && unit(mix(h ^ 19)) < 0.2 {
            let li = lbs.len() as u32;
            let svc = format!("{cname}-lb");
            lbs.push(Lb {
                service: svc.clone(),
                ns: ns as u32,
                ctrl: idx as u32,
                ip: format!("34.{}.{}.{}", 10 + ci % 200, li / 250, 1 + li % 250),
                price: 0.025,
            });
            services.push(svc);
            lb = Some(li);
        }
        services.sort();
        let ctrl_i = idx as u32;
        for o in 0..size {
            let pod_i = pods.len() as u32;
            let mut pv = None;
            if kind == Kind::StatefulSet {
                let hp = hash(seed, &[S_PV, cid, u64::from(pod_i)]);
                let pv_name = format!("pvc-{}", uuid(hp));
                let provider_id = match provider {
                    Provider::Aws => format!("vol-0{}", hex(mix(hp), 16)),
                    Provider::Gcp => format!("gke-{name}-{}", pv_name),
                    Provider::Azure => pv_name.clone(),
                };
                pv = Some(pvs.len() as u32);
                pvs.push(Pv {
                    name: pv_name,
                    provider_id,
                    claim: format!("data-{cname}-{o}"),
                    ns: ns as u32,
                    bytes: (10 + mix(hp ^ 1) % 190) as f64 * GIB,
                    price: 0.10 / 730.0,
                    pod: Some(pod_i),
                    storage_class: class,
                });
            }
            pods.push(Pod {
                ctrl: ctrl_i,
                ordinal: o as u32,
                node: 0,
                pv,
            });
        }
        controllers.push(Controller {
            name: cname,
            kind,
            ns: ns as u32,
            pods: size as u32,
            containers,
            lb,
            services,
            labels,
            tag: mix(h ^ 23),
        });
        slot += size;
    }
    // One unmounted PV per cluster.
    {
        let hp = hash(seed, &[S_PV, cid, u64::MAX]);
        let pv_name = format!("pvc-{}", uuid(hp));
        pvs.push(Pv {
            provider_id: pv_name.clone(),
            name: pv_name,
            claim: "orphaned-data-0".to_string(),
            ns: 1.min(n_ns as u32 - 1),
            bytes: 50.0 * GIB,
            price: 0.10 / 730.0,
            pod: None,
            storage_class: class,
        });
    }

    // Nodes: pack pods by request at TARGET_FILL; GPU pods get a GPU node each.
    let mut nodes: Vec<Node> = Vec::new();
    let new_node = |t: usize, nodes: &mut Vec<Node>| -> u32 {
        let n = nodes.len() as u32;
        let hn = hash(seed, &[S_NODE, cid, u64::from(n)]);
        let ty = types.get(t).copied().unwrap_or(types[0]);
        let zone = zones.get(pick(hn, 3)).cloned().unwrap_or_default();
        let spot = t != GPU_TYPE && unit(mix(hn ^ 1)) < 0.3;
        let disc = if spot { 0.3 } else { 1.0 };
        let (nm, pid) = match provider {
            Provider::Aws => {
                let nm = format!(
                    "ip-10-{}-{}-{}.{}.compute.internal",
                    ci % 250,
                    n / 250,
                    1 + n % 250,
                    region
                );
                (nm, format!("i-0{}", hex(mix(hn ^ 2), 16)))
            }
            Provider::Gcp => {
                let nm = format!("gke-{name}-pool-{t}-{}-{}", hex(mix(hn ^ 2), 8), base36(n));
                let pid = format!("gce://{project}/{zone}/{nm}");
                (nm, pid)
            }
            Provider::Azure => {
                let nm = format!("aks-pool{t}-{:08}-vmss{:06}", mix(hn ^ 2) % 100_000_000, n);
                let pid = format!(
                    "azure:///subscriptions/{account}/resourceGroups/{name}-rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool{t}/virtualMachines/{n}"
                );
                (nm, pid)
            }
        };
        let labels = vec![
            ("kubernetes_io_arch".to_string(), "amd64".to_string()),
            ("kubernetes_io_hostname".to_string(), nm.clone()),
            ("kubernetes_io_os".to_string(), "linux".to_string()),
            (
                "node_kubernetes_io_instance_type".to_string(),
                ty.name.to_string(),
            ),
            (sanitize("topology.kubernetes.io/region"), region.clone()),
            (sanitize("topology.kubernetes.io/zone"), zone.clone()),
        ];
        nodes.push(Node {
            provider_id: pid,
            instance_type: ty.name,
            zone,
            spot,
            cores: ty.cores,
            ram_bytes: ty.gib * GIB,
            gpus: ty.gpus,
            cpu_price: cpu_price * disc,
            ram_price: ram_price * disc,
            gpu_price: gpu_price * disc,
            disk_bytes: if t == GPU_TYPE { 200.0 } else { 100.0 } * GIB,
            disk_price,
            disk_provider_id: format!("vol-0{}", hex(mix(hn ^ 3), 16)),
            labels,
            name: nm,
        });
        n
    };
    let mut packer = NodePacker { cur: None };
    for pi in 0..pods.len() {
        let Some(p) = pods.get(pi).copied() else {
            continue;
        };
        let Some(ctrl) = controllers.get(p.ctrl as usize) else {
            continue;
        };
        let cpu: f64 = ctrl.containers.iter().map(|c| c.cpu).sum();
        let ram: f64 = ctrl.containers.iter().map(|c| c.ram).sum();
        let is_gpu = ctrl.containers.iter().any(|c| c.gpu > 0.0);
        let node = if is_gpu {
            new_node(GPU_TYPE, &mut nodes)
        } else {
            let fits = |n: u32, used_c: f64, used_r: f64, nodes: &Vec<Node>| {
                nodes.get(n as usize).is_some_and(|nd| {
                    used_c + cpu <= TARGET_FILL * nd.cores
                        && used_r + ram <= TARGET_FILL * nd.ram_bytes
                })
            };
            match packer.cur {
                Some((n, uc, ur)) if fits(n, uc, ur, &nodes) => {
                    packer.cur = Some((n, uc + cpu, ur + ram));
                    n
                }
                _ => {
                    let u = unit(hash(seed, &[S_NODE, cid, nodes.len() as u64, 5]));
                    let t = if u < 0.5 {
                        0
                    } else if u < 0.8 {
                        1
                    } else {
                        2
                    };
                    let t = if cpu > TARGET_FILL * types[t].cores
                        || ram > TARGET_FILL * types[t].gib * GIB
                    {
                        1
                    } else {
                        t
                    };
                    let n = new_node(t, &mut nodes);
                    packer.cur = Some((n, cpu, ram));
                    n
                }
            }
        };
        if let Some(p) = pods.get_mut(pi) {
            p.node = node;
        }
    }
    if nodes.is_empty() {
        new_node(0, &mut nodes);
    }

    let mut job_pods = Vec::new();
    let mut steady = 0u64;
    let mut ns_pods = vec![Vec::new(); n_ns];
    for (pi, p) in pods.iter().enumerate() {
        if let Some(ctrl) = controllers.get(p.ctrl as usize) {
            if ctrl.kind == Kind::Job {
                job_pods.push(pi as u32);
            } else {
                steady += ctrl.containers.len() as u64;
            }
            if let Some(v) = ns_pods.get_mut(ctrl.ns as usize) {
                v.push(pi as u32);
            }
        }
    }
    let ns_spikes = namespaces
        .iter()
        .map(|ns| {
            spikes
                .iter()
                .filter(|s| s.namespace == ns.name)
                .map(|s| (s.factor, s.start))
                .collect()
        })
        .collect();
    Cluster {
        name,
        provider,
        region,
        account,
        project,
        mgmt_price: mgmt,
        net_prices: [0.01, 0.02, 0.12],
        nodes,
        namespaces,
        controllers,
        pods,
        pvs,
        lbs,
        job_pods,
        steady_containers: steady,
        ns_pods,
        ns_spikes,
    }
}

/// One hour-piece of a window: `[a, b)` inside the hour starting at `hour`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Piece {
    pub hour: i64,
    pub a: i64,
    pub b: i64,
    /// Tenancy cost (management fee + node root disks) of the piece, $.
    pub shared: f64,
    /// Container-seconds running in the piece (denominator of the tenancy share).
    pub run_secs: f64,
}

/// Splits a window into hour pieces `[max(start, h), min(end, h + 1h))`.
pub(crate) fn hour_pieces(w: Window) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    let mut h = w.start.div_euclid(HOUR) * HOUR;
    while h < w.end {
        let a = w.start.max(h);
        let b = w.end.min(h + HOUR);
        if b > a {
            out.push((h, a, b));
        }
        h += HOUR;
    }
    out
}

impl Cluster {
    /// Tenancy cost per hour: the management fee plus every node's root disk.
    pub(crate) fn tenancy_rate(&self) -> f64 {
        self.mgmt_price
            + self
                .nodes
                .iter()
                .map(|n| n.disk_bytes / GIB * n.disk_price)
                .sum::<f64>()
    }

    /// Pod's container templates.
    pub(crate) fn containers(&self, pod: &Pod) -> &[Container] {
        self.controllers
            .get(pod.ctrl as usize)
            .map(|c| c.containers.as_slice())
            .unwrap_or(&[])
    }
}

impl Fleet {
    /// The hour pieces of `w` for a cluster with their tenancy cost and running container-seconds.
    pub(crate) fn pieces(&self, ci: usize, w: Window) -> Vec<Piece> {
        let Some(cl) = self.clusters.get(ci) else {
            return Vec::new();
        };
        let rate = cl.tenancy_rate();
        hour_pieces(w)
            .into_iter()
            .map(|(hour, a, b)| {
                let mut run = cl.steady_containers as f64 * (b - a) as f64;
                for &pi in &cl.job_pods {
                    if let Some((ra, rb)) = self.run_in_hour(ci, cl, pi, hour) {
                        let s = (hour + ra).max(a);
                        let e = (hour + rb).min(b);
                        if e > s {
                            let n = cl
                                .pods
                                .get(pi as usize)
                                .map(|p| cl.containers(p).len())
                                .unwrap_or(0);
                            run += (e - s) as f64 * n as f64;
                        }
                    }
                }
                Piece {
                    hour,
                    a,
                    b,
                    shared: rate * (b - a) as f64 / HOUR as f64,
                    run_secs: run,
                }
            })
            .collect()
    }
}
