//! Hourly, daily and monthly rollups of [`AllocatedRow`]s per cluster, namespace, controller
//! (workload) and attribution (team, owner, product, cost centre), with the seed's
//! `cost_summaries` fields plus GPU, load balancer, shared and idle cost.
//!
//! [`SummaryBuilder`] is streaming: feed it rows window by window ([`SummaryBuilder::add`]) and
//! take the buckets that can no longer change ([`SummaryBuilder::flush_before`]), so memory
//! holds only open buckets. [`summarize`] is the one-shot form.
//!
//! A row counts in the bucket containing its window's start (buckets are UTC hours, UTC days,
//! UTC calendar months). A row whose window is longer than a granularity's bucket (a daily row
//! for hourly summaries) is left out of that granularity rather than put in one hour.
//!
//! `efficiency_score` is Kubecost's totalEfficiency of the group: the sum of CPU and RAM usage
//! cost over the sum of CPU and RAM request cost (0 when nothing is requested); see
//! [`AllocatedRow::cpu_usage_cost`].

use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};

use kb_core::model::{IDLE, UNALLOCATED, UNMOUNTED};
use kb_core::window::{DAY, HOUR, Window};

use crate::calendar::{month_start, next_month_start};
use crate::rules::{AllocatedRow, RowKind, SHARED, efficiency_score};

/// A fast, deterministic hasher for the aggregation maps (FxHash's rotate-multiply; the keys
/// are our own strings, so resistance to crafted collisions is not needed).
#[derive(Debug, Clone, Copy, Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // Multiplication only carries entropy upwards; fold it back into the low bits the
        // table indexes with.
        let x = self.0;
        (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (x >> 32)
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Summary bucket length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    Hour,
    Day,
    /// UTC calendar month.
    Month,
}

impl Granularity {
    /// Every granularity.
    pub const ALL: [Granularity; 3] = [Granularity::Hour, Granularity::Day, Granularity::Month];

    /// Returns the `window_duration` name stored for it (`1h`, `1d`, `1mo`).
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "1h",
            Granularity::Day => "1d",
            Granularity::Month => "1mo",
        }
    }

    /// Returns the bucket `[start, end)` containing `ts`.
    pub fn bucket(self, ts: i64) -> Window {
        match self {
            Granularity::Hour => {
                let s = ts.div_euclid(HOUR) * HOUR;
                Window {
                    start: s,
                    end: s + HOUR,
                }
            }
            Granularity::Day => {
                let s = ts.div_euclid(DAY) * DAY;
                Window {
                    start: s,
                    end: s + DAY,
                }
            }
            Granularity::Month => Window {
                start: month_start(ts),
                end: next_month_start(ts),
            },
        }
    }

    fn accepts(self, w: Window) -> bool {
        match self {
            Granularity::Hour => w.seconds() <= HOUR,
            Granularity::Day => w.seconds() <= DAY,
            Granularity::Month => true,
        }
    }
}

/// What a summary groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Cluster,
    Namespace,
    /// Workload: `controller_kind/controller` within its namespace.
    Controller,
    Team,
    Owner,
    Product,
    CostCenter,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 7] = [
        Dimension::Cluster,
        Dimension::Namespace,
        Dimension::Controller,
        Dimension::Team,
        Dimension::Owner,
        Dimension::Product,
        Dimension::CostCenter,
    ];

    /// Returns a stable name (`cluster`, `namespace`, `controller`, `team`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Cluster => "cluster",
            Dimension::Namespace => "namespace",
            Dimension::Controller => "controller",
            Dimension::Team => "team",
            Dimension::Owner => "owner",
            Dimension::Product => "product",
            Dimension::CostCenter => "cost_center",
        }
    }
}

/// Sums of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostTotals {
    pub total_cost: f64,
    pub cpu_cost: f64,
    pub memory_cost: f64,
    pub gpu_cost: f64,
    pub network_cost: f64,
    pub storage_cost: f64,
    pub load_balancer_cost: f64,
    pub external_cost: f64,
    pub shared_cost: f64,
    pub idle_cost: f64,
    /// CPU + RAM usage cost (numerator of the efficiency score).
    pub usage_cost: f64,
    /// CPU + RAM request cost (denominator of the efficiency score).
    pub request_cost: f64,
    /// Rows summed.
    pub rows: u64,
}

impl CostTotals {
    fn add_row(&mut self, r: &AllocatedRow) {
        self.total_cost += r.total_cost;
        self.cpu_cost += r.cpu_cost;
        self.memory_cost += r.memory_cost;
        self.gpu_cost += r.gpu_cost;
        self.network_cost += r.network_cost;
        self.storage_cost += r.storage_cost;
        self.load_balancer_cost += r.load_balancer_cost;
        self.external_cost += r.external_cost;
        self.shared_cost += r.shared_cost;
        self.idle_cost += r.idle_cost;
        self.usage_cost += r.cpu_usage_cost + r.ram_usage_cost;
        self.request_cost += r.cpu_request_cost + r.ram_request_cost;
        self.rows += 1;
    }

    /// Adds another group's sums.
    pub fn merge(&mut self, o: &CostTotals) {
        self.total_cost += o.total_cost;
        self.cpu_cost += o.cpu_cost;
        self.memory_cost += o.memory_cost;
        self.gpu_cost += o.gpu_cost;
        self.network_cost += o.network_cost;
        self.storage_cost += o.storage_cost;
        self.load_balancer_cost += o.load_balancer_cost;
        self.external_cost += o.external_cost;
        self.shared_cost += o.shared_cost;
        self.idle_cost += o.idle_cost;
        self.usage_cost += o.usage_cost;
        self.request_cost += o.request_cost;
        self.rows += o.rows;
    }

    /// Kubecost's totalEfficiency of the group.
    pub fn efficiency_score(&self) -> f64 {
        efficiency_score(self.usage_cost, self.request_cost)
    }
}

/// One row of `cost_summaries`.
#[derive(Debug, Clone, PartialEq)]
pub struct CostSummary {
    pub granularity: Granularity,
    /// The bucket `[start, end)`; `timestamp` in the seed's schema is `bucket.start`.
    pub bucket: Window,
    pub dimension: Dimension,
    pub cluster: String,
    /// Namespace for the namespace and controller dimensions, empty otherwise.
    pub namespace: String,
    /// The group's value: cluster, namespace, `kind/controller`, team, ... Rows without the
    /// property get `__idle__`, `__unmounted__`, `__shared__` or `__unallocated__`.
    pub name: String,
    pub totals: CostTotals,
    /// `totals.efficiency_score()`.
    pub efficiency_score: f64,
}

/// Borrowed grouping key of one row in one dimension: cluster, namespace, kind, name.
#[derive(Debug, Clone, Copy, Hash, PartialOrd, Ord)]
struct LocalKey<'a> {
    d: Dimension,
    w: Window,
    s: [&'a str; 4],
}

impl PartialEq for LocalKey<'_> {
    fn eq(&self, o: &Self) -> bool {
        // Most keys have empty parts; skip the byte comparison for them.
        self.d == o.d
            && self.w == o.w
            && self
                .s
                .iter()
                .zip(&o.s)
                .all(|(a, b)| a.len() == b.len() && (a.is_empty() || a.as_bytes() == b.as_bytes()))
    }
}

impl Eq for LocalKey<'_> {}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct GroupKey {
    dimension: Dimension,
    cluster: String,
    namespace: String,
    name: String,
}

/// Streaming summary aggregator (see the module documentation).
#[derive(Debug, Clone)]
pub struct SummaryBuilder {
    dimensions: Vec<Dimension>,
    granularities: Vec<Granularity>,
    /// Per granularity: bucket start → (bucket, groups).
    open: BTreeMap<(Granularity, i64), (Window, HashMap<GroupKey, CostTotals>)>,
}

fn special(r: &AllocatedRow) -> &'static str {
    match r.kind {
        RowKind::Idle => IDLE,
        RowKind::Unmounted => UNMOUNTED,
        RowKind::SharedResidual => SHARED,
        RowKind::Workload => UNALLOCATED,
    }
}

fn or_special<'a>(v: &'a str, r: &AllocatedRow) -> &'a str {
    if v.is_empty() || r.kind == RowKind::Idle {
        special(r)
    } else {
        v
    }
}

impl SummaryBuilder {
    /// A builder for the given dimensions and granularities.
    pub fn new(dimensions: &[Dimension], granularities: &[Granularity]) -> SummaryBuilder {
        SummaryBuilder {
            dimensions: dimensions.to_vec(),
            granularities: granularities.to_vec(),
            open: BTreeMap::new(),
        }
    }

    /// Adds rows (any windows, any order).
    pub fn add(&mut self, rows: &[AllocatedRow]) {
        // Group by borrowed keys first: one hash update per row and dimension without
        // allocating, then one owned key per group and granularity.
        let mut local: HashMap<LocalKey<'_>, CostTotals> = HashMap::default();
        local.reserve(rows.len().min(1 << 16));
        for r in rows {
            let c = r.cluster.as_str();
            for &d in &self.dimensions {
                let s = match d {
                    Dimension::Cluster => [c, "", "", ""],
                    Dimension::Namespace => [c, or_special(&r.namespace, r), "", ""],
                    Dimension::Controller => [
                        c,
                        or_special(&r.namespace, r),
                        r.controller_kind.as_str(),
                        or_special(&r.controller, r),
                    ],
                    Dimension::Team => [c, "", "", r.team.as_str()],
                    Dimension::Owner => [c, "", "", r.owner.as_str()],
                    Dimension::Product => [c, "", "", r.product.as_str()],
                    Dimension::CostCenter => [c, "", "", r.cost_center.as_str()],
                };
                let key = LocalKey { d, w: r.window, s };
                local.entry(key).or_default().add_row(r);
            }
        }
        // Sorted, so sums over several windows are added in the same order every run.
        let mut local: Vec<_> = local.into_iter().collect();
        local.sort_by(|a, b| a.0.cmp(&b.0));
        for (
            LocalKey {
                d,
                w,
                s: [cluster, ns, kind, name],
            },
            t,
        ) in local
        {
            let (namespace, name) = match d {
                Dimension::Cluster => (String::new(), cluster.to_string()),
                Dimension::Namespace => (ns.to_string(), ns.to_string()),
                Dimension::Controller if kind.is_empty() => (ns.to_string(), name.to_string()),
                Dimension::Controller => (ns.to_string(), format!("{kind}/{name}")),
                _ => (String::new(), name.to_string()),
            };
            let key = GroupKey {
                dimension: d,
                cluster: cluster.to_string(),
                namespace,
                name,
            };
            for &g in &self.granularities {
                if !g.accepts(w) {
                    continue;
                }
                let b = g.bucket(w.start);
                let (_, groups) = self
                    .open
                    .entry((g, b.start))
                    .or_insert_with(|| (b, HashMap::default()));
                match groups.get_mut(&key) {
                    Some(acc) => acc.merge(&t),
                    None => {
                        groups.insert(key.clone(), t);
                    }
                }
            }
        }
    }

    /// Removes and returns every bucket that ends at or before `ts` (rows of later windows can
    /// no longer change them), sorted by granularity, bucket, dimension, cluster, name.
    ///
    /// Feed windows in time order: a row added later for a flushed bucket starts a new,
    /// partial bucket (the caller would then have to merge or recompute it).
    pub fn flush_before(&mut self, ts: i64) -> Vec<CostSummary> {
        let done: Vec<(Granularity, i64)> = self
            .open
            .iter()
            .filter(|(_, (b, _))| b.end <= ts)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in done {
            if let Some((bucket, groups)) = self.open.remove(&k) {
                emit(k.0, bucket, groups, &mut out);
            }
        }
        out
    }

    /// Returns every bucket, open or not.
    pub fn finish(self) -> Vec<CostSummary> {
        let mut out = Vec::new();
        for ((g, _), (bucket, groups)) in self.open {
            emit(g, bucket, groups, &mut out);
        }
        out
    }

    /// Number of open groups (for memory accounting).
    pub fn open_groups(&self) -> usize {
        self.open.values().map(|(_, g)| g.len()).sum()
    }
}

fn emit(
    g: Granularity,
    bucket: Window,
    groups: HashMap<GroupKey, CostTotals>,
    out: &mut Vec<CostSummary>,
) {
    let mut v: Vec<(GroupKey, CostTotals)> = groups.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(v.into_iter().map(|(k, t)| CostSummary {
        granularity: g,
        bucket,
        dimension: k.dimension,
        cluster: k.cluster,
        namespace: k.namespace,
        name: k.name,
        efficiency_score: t.efficiency_score(),
        totals: t,
    }));
}

/// Summarises `rows` in one go (see [`SummaryBuilder`]).
pub fn summarize(
    rows: &[AllocatedRow],
    dimensions: &[Dimension],
    granularities: &[Granularity],
) -> Vec<CostSummary> {
    let mut b = SummaryBuilder::new(dimensions, granularities);
    b.add(rows);
    b.finish()
}
