//! Allocation rules: what happens to idle cost, shared namespaces and labels, fixed overhead,
//! and how rows are attributed to team, owner, product and cost centre.
//!
//! [`apply_rules`] turns one or many allocation sets (Kubecost rows, any aggregation, any
//! window length) into [`AllocatedRow`]s. It works per `(cluster, window)` group, in this
//! order, following Kubecost's `AggregateBy` (see `kubecost-api.md` §1.7):
//!
//! 1. **Idle** ([`IdleRule`]): kept as its own `__idle__` row, or shared the way Kubecost's
//!    `shareIdle` weights it: idle CPU cost in proportion to each row's CPU cost, idle RAM by RAM
//!    cost, idle GPU by GPU cost (cost including reconciliation adjustments), over every non-idle
//!    row of the same cluster, or of the same node when the idle row names a node and the scope
//!    is [`IdleScope::Node`]. Idle of a resource no row uses (GPU idle without GPU workloads,
//!    idle of a node without rows) stays in an `__idle__` row, as in Kubecost.
//! 2. **Shared namespaces and labels** ([`SharedRule`]): rows matching are removed and their whole
//!    cost (including the idle they received) is spread over the remaining rows of the cluster
//!    (not idle, not unmounted, not shared), evenly per row or weighted by each row's own cost;
//!    the recipients record it as `shared_cost`.
//! 3. **Fixed overhead** ([`Overhead`]): `monthly_cost × window hours / 730` per matching cluster,
//!    spread the same ways into `shared_cost`.
//! 4. **Attribution** ([`MappingRule`]): team, owner, product and cost centre from labels,
//!    annotations, namespace labels or the namespace, first matching rule wins, else
//!    [`Rules::default_value`].
//!
//! **Conservation:** for every group, the output rows' `total_cost` sum to the input rows'
//! totals (recomputed from their parts with [`kb_core::cost::allocation_total`]; the reported
//! `total_cost` field is not read) plus the overhead added. Cost that has nowhere to go (shared
//! cost in a cluster with no recipient row) stays in a `__shared__` row rather than vanishing.
//!
//! **Determinism:** rows are processed in a canonical order (by their properties, then their
//! numbers), so the same multiset of input rows gives the same output, bit for bit, whatever
//! the order of the input. Kubecost sends sets sorted by name, which is checked in linear time
//! before sorting.
//!
//! **Bad data:** a row with a non-finite number in a cost or usage field is skipped and counted
//! in [`Allocated::skipped_non_finite`]; it never panics.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use kb_core::cost::allocation_total;
use kb_core::model::{Allocation, IDLE, UNMOUNTED};
use kb_core::window::Window;

use crate::calendar::HOURS_PER_MONTH;

/// Namespace, name and attribution of the row holding shared cost that had no recipient.
pub const SHARED: &str = "__shared__";

/// What to do with idle cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdleMode {
    /// Keep idle as its own `__idle__` row (Kubecost's default, `shareIdle=false`).
    Keep,
    /// Share idle over the workloads, per resource, weighted by cost (`shareIdle=true`).
    Share,
}

/// Over which rows shared idle is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdleScope {
    /// Over every non-idle row of the cluster.
    Cluster,
    /// Over the rows of the idle row's node (`idleByNode`); idle rows without a node fall back
    /// to the cluster.
    Node,
}

/// How a shared cost is split over recipient rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SplitMode {
    /// The same amount to every recipient row.
    Even,
    /// In proportion to each recipient's own cost (total minus shared cost); evenly when no
    /// recipient has a positive cost.
    #[default]
    Weighted,
}

/// The idle rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdleRule {
    pub mode: IdleMode,
    pub scope: IdleScope,
}

/// Namespaces and labels whose cost is shared over the other workloads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedRule {
    /// Shared namespaces, for example `kube-system`, `monitoring`.
    pub namespaces: Vec<String>,
    /// Shared label selectors `(key, value)`; a row matches when its pod labels have the pair.
    /// Keys match as written or Prometheus-sanitised (`app.kubernetes.io/name` matches
    /// `app_kubernetes_io_name`).
    pub labels: Vec<(String, String)>,
    pub split: SplitMode,
}

/// A fixed overhead in currency per month, added to every matching cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Overhead {
    pub name: String,
    /// Cost per month per cluster; a window of `h` hours gets `monthly_cost × h / 730`.
    pub monthly_cost: f64,
    /// Clusters it applies to; empty means every cluster.
    pub clusters: Vec<String>,
    pub split: SplitMode,
}

/// Which attribute a mapping rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Team,
    Owner,
    Product,
    CostCenter,
}

/// Where a mapping rule reads its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A pod label (key as written or Prometheus-sanitised).
    Label(String),
    /// A pod annotation.
    Annotation(String),
    /// A namespace label.
    NamespaceLabel(String),
    /// The namespace name.
    Namespace,
    /// The cluster name.
    Cluster,
}

/// One attribution rule: when `source` has a non-empty value (equal to `equals` when given),
/// set `target` to `value`, or to the source's value when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MappingRule {
    pub target: Target,
    pub source: Source,
    pub equals: Option<String>,
    pub value: Option<String>,
}

impl MappingRule {
    /// A rule copying the source's value into `target`.
    pub fn copy(target: Target, source: Source) -> MappingRule {
        MappingRule {
            target,
            source,
            equals: None,
            value: None,
        }
    }

    /// A rule setting `target` to `value` when `source` equals `equals`.
    pub fn when(target: Target, source: Source, equals: &str, value: &str) -> MappingRule {
        MappingRule {
            target,
            source,
            equals: Some(equals.to_string()),
            value: Some(value.to_string()),
        }
    }
}

/// The complete, versioned rule set. Plain data: the binary deserialises it from config.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Version stamped on every result computed with these rules (bump it when they change;
    /// [`Rules::content_hash`] detects an unbumped change).
    pub version: u32,
    pub idle: IdleRule,
    pub shared: SharedRule,
    pub overheads: Vec<Overhead>,
    /// Ordered: for each target, the first matching rule wins.
    pub mappings: Vec<MappingRule>,
    /// Attribution when no rule matches (`unallocated`).
    pub default_value: String,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::new(1)
    }
}

/// Why a rule set was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error("overhead {name:?}: monthly cost must be a finite number >= 0, got {value}")]
    Overhead { name: String, value: f64 },
    #[error("mapping rule {index}: key must not be empty")]
    EmptyKey { index: usize },
    #[error("default attribution must not be empty")]
    EmptyDefault,
}

impl Rules {
    /// Kubecost's defaults: idle kept per cluster, nothing shared, no overhead, no mapping,
    /// everything attributed to `unallocated`.
    pub fn new(version: u32) -> Rules {
        Rules {
            version,
            idle: IdleRule {
                mode: IdleMode::Keep,
                scope: IdleScope::Cluster,
            },
            shared: SharedRule::default(),
            overheads: Vec::new(),
            mappings: Vec::new(),
            default_value: "unallocated".to_string(),
        }
    }

    /// Checks the rules; [`apply_rules`] calls it first.
    pub fn validate(&self) -> Result<(), RulesError> {
        for o in &self.overheads {
            if !o.monthly_cost.is_finite() || o.monthly_cost < 0.0 {
                return Err(RulesError::Overhead {
                    name: o.name.clone(),
                    value: o.monthly_cost,
                });
            }
        }
        for (index, m) in self.mappings.iter().enumerate() {
            let key = match &m.source {
                Source::Label(k) | Source::Annotation(k) | Source::NamespaceLabel(k) => k,
                Source::Namespace | Source::Cluster => continue,
            };
            if key.is_empty() {
                return Err(RulesError::EmptyKey { index });
            }
        }
        if self.default_value.is_empty() {
            return Err(RulesError::EmptyDefault);
        }
        Ok(())
    }

    /// A stable 64-bit FNV-1a hash of the whole rule set (same rules, same hash, across runs
    /// and machines), to detect results computed under different rules.
    pub fn content_hash(&self) -> u64 {
        let text = format!("{self:?}");
        text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

/// What an output row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKind {
    /// A workload row (container, pod, ... as the input was aggregated), or a shared row kept
    /// because its cluster had no recipient.
    Workload,
    /// Idle cost kept as a row (or the part of it that could not be shared).
    Idle,
    /// Kubecost's `__unmounted__` row (PVs and load balancers no pod uses).
    Unmounted,
    /// Shared cost and overhead that had no recipient in the cluster.
    SharedResidual,
}

impl RowKind {
    /// Returns a stable name (`workload`, `idle`, `unmounted`, `shared`).
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Workload => "workload",
            RowKind::Idle => "idle",
            RowKind::Unmounted => "unmounted",
            RowKind::SharedResidual => "shared",
        }
    }
}

/// One row after the rules. Costs are in the input's currency for the row's window.
///
/// The resource columns (`cpu_cost` ... `external_cost`) are the row's own cost including
/// reconciliation adjustments and excluding idle; `idle_cost` is idle received (or, on an idle
/// row, the idle it holds; idle Kubecost already folded in, `cpuCostIdle` etc., is moved here
/// too); `shared_cost` is Kubecost's own `sharedCost` plus what the rules shared.
/// `total_cost` is the sum of all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatedRow {
    pub kind: RowKind,
    /// The input allocation's name (`__idle__`, `__shared__` for made rows).
    pub name: String,
    pub cluster: String,
    pub node: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    pub pod: String,
    pub container: String,
    pub team: String,
    pub owner: String,
    pub product: String,
    pub cost_center: String,
    pub window: Window,
    pub cpu_cost: f64,
    pub memory_cost: f64,
    pub gpu_cost: f64,
    pub network_cost: f64,
    /// Persistent volume cost.
    pub storage_cost: f64,
    pub load_balancer_cost: f64,
    pub external_cost: f64,
    pub shared_cost: f64,
    pub idle_cost: f64,
    pub total_cost: f64,
    /// CPU usage cost: average cores used × hours × the row's CPU price per core-hour.
    pub cpu_usage_cost: f64,
    /// CPU request cost: average cores requested × hours × price (= usage cost when nothing is
    /// requested but something is used, Kubecost's "efficiency 1" rule).
    pub cpu_request_cost: f64,
    pub ram_usage_cost: f64,
    pub ram_request_cost: f64,
}

impl AllocatedRow {
    /// Kubecost's totalEfficiency of the row: usage cost over request cost (0 without requests).
    pub fn efficiency(&self) -> f64 {
        efficiency_score(
            self.cpu_usage_cost + self.ram_usage_cost,
            self.cpu_request_cost + self.ram_request_cost,
        )
    }
}

/// Returns `usage_cost / request_cost`, or 0 when the request cost is not positive.
pub fn efficiency_score(usage_cost: f64, request_cost: f64) -> f64 {
    if request_cost > 0.0 && usage_cost.is_finite() {
        usage_cost / request_cost
    } else {
        0.0
    }
}

/// Totals of one `(cluster, window)` group, for reconciliation and conservation checks.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTotal {
    pub cluster: String,
    pub window: Window,
    /// Sum of the input rows' totals (from their parts).
    pub input_total: f64,
    /// Overhead the rules added.
    pub overhead: f64,
    /// Sum of the output rows' `total_cost` (equals `input_total + overhead` up to rounding).
    pub output_total: f64,
}

/// The result of [`apply_rules`].
#[derive(Debug, Clone, PartialEq)]
pub struct Allocated {
    /// Rules version the rows were computed with.
    pub rules_version: u32,
    /// Rows grouped by `(cluster, window)` in that order, each group in canonical order.
    pub rows: Vec<AllocatedRow>,
    pub groups: Vec<GroupTotal>,
    /// Input rows skipped because a number was NaN or infinite.
    pub skipped_non_finite: usize,
}

/// Applies `rules` to allocation rows of one or many windows and clusters (see the module
/// documentation for the steps and guarantees).
pub fn apply_rules(allocs: &[Allocation], rules: &Rules) -> Result<Allocated, RulesError> {
    rules.validate()?;
    let compiled = Compiled::new(rules);
    let mut groups: BTreeMap<(&str, Window), Vec<usize>> = BTreeMap::new();
    let mut skipped = 0;
    for (i, a) in allocs.iter().enumerate() {
        if !is_finite_row(a) {
            skipped += 1;
            continue;
        }
        groups
            .entry((a.cluster.as_str(), a.window))
            .or_default()
            .push(i);
    }
    let mut out = Allocated {
        rules_version: rules.version,
        rows: Vec::with_capacity(allocs.len()),
        groups: Vec::with_capacity(groups.len()),
        skipped_non_finite: skipped,
    };
    for ((cluster, window), mut idx) in groups {
        let cmp = |x: &usize, y: &usize| match (allocs.get(*x), allocs.get(*y)) {
            (Some(a), Some(b)) => canonical_cmp(a, b),
            _ => Ordering::Equal,
        };
        // Kubecost sends each set sorted by name (Go marshals maps in key order), so the
        // check usually saves the sort.
        if !idx.is_sorted_by(|x, y| cmp(x, y) != Ordering::Greater) {
            idx.sort_by(cmp);
        }
        let rows: Vec<&Allocation> = idx.iter().filter_map(|&i| allocs.get(i)).collect();
        let first = out.rows.len();
        let (input_total, overhead) = apply_group(cluster, window, &rows, &compiled, &mut out.rows);
        let output_total = out
            .rows
            .get(first..)
            .map_or(0.0, |r| r.iter().map(|r| r.total_cost).sum::<f64>());
        out.groups.push(GroupTotal {
            cluster: cluster.to_string(),
            window,
            input_total,
            overhead,
            output_total,
        });
    }
    Ok(out)
}

fn is_finite_row(a: &Allocation) -> bool {
    [
        a.minutes,
        a.cpu_core_request_average,
        a.cpu_core_usage_average,
        a.cpu_core_hours,
        a.cpu_cost,
        a.cpu_cost_adjustment,
        a.cpu_cost_idle,
        a.gpu_cost,
        a.gpu_cost_adjustment,
        a.gpu_cost_idle,
        a.ram_byte_request_average,
        a.ram_byte_usage_average,
        a.ram_byte_hours,
        a.ram_cost,
        a.ram_cost_adjustment,
        a.ram_cost_idle,
        a.pv_cost,
        a.pv_cost_adjustment,
        a.network_cost,
        a.network_cost_adjustment,
        a.load_balancer_cost,
        a.load_balancer_cost_adjustment,
        a.shared_cost,
        a.external_cost,
    ]
    .iter()
    .all(|v| v.is_finite())
}

/// Orders rows by their properties, then by their numbers, so processing is independent of the
/// input order.
fn canonical_cmp(a: &Allocation, b: &Allocation) -> Ordering {
    a.name
        .cmp(&b.name)
        .then_with(|| a.node.cmp(&b.node))
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.controller_kind.cmp(&b.controller_kind))
        .then_with(|| a.controller.cmp(&b.controller))
        .then_with(|| a.pod.cmp(&b.pod))
        .then_with(|| a.container.cmp(&b.container))
        .then_with(|| a.labels.cmp(&b.labels))
        .then_with(|| a.annotations.cmp(&b.annotations))
        .then_with(|| a.namespace_labels.cmp(&b.namespace_labels))
        .then_with(|| allocation_total(a).total_cmp(&allocation_total(b)))
        .then_with(|| a.cpu_cost.total_cmp(&b.cpu_cost))
        .then_with(|| a.ram_cost.total_cmp(&b.ram_cost))
        .then_with(|| a.gpu_cost.total_cmp(&b.gpu_cost))
        .then_with(|| a.minutes.total_cmp(&b.minutes))
        .then_with(|| {
            a.cpu_core_usage_average
                .total_cmp(&b.cpu_core_usage_average)
        })
        .then_with(|| {
            a.ram_byte_usage_average
                .total_cmp(&b.ram_byte_usage_average)
        })
        .then_with(|| {
            numbers(a)
                .iter()
                .zip(numbers(b).iter())
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

/// The remaining numbers of a row, for the last tie-break of [`canonical_cmp`] (rows equal in
/// every field compared are interchangeable: same inputs to every rule).
fn numbers(a: &Allocation) -> [f64; 18] {
    [
        a.pv_cost,
        a.network_cost,
        a.load_balancer_cost,
        a.shared_cost,
        a.external_cost,
        a.cpu_cost_adjustment,
        a.ram_cost_adjustment,
        a.gpu_cost_adjustment,
        a.pv_cost_adjustment,
        a.network_cost_adjustment,
        a.load_balancer_cost_adjustment,
        a.cpu_cost_idle,
        a.ram_cost_idle,
        a.gpu_cost_idle,
        a.cpu_core_request_average,
        a.ram_byte_request_average,
        a.cpu_core_hours,
        a.ram_byte_hours,
    ]
}

fn is_unmounted(a: &Allocation) -> bool {
    a.pod == UNMOUNTED || a.container == UNMOUNTED || a.name.contains(UNMOUNTED)
}

/// Returns the Prometheus-sanitised form of a label key (`[^a-zA-Z0-9_]` → `_`).
pub fn sanitize_key(k: &str) -> String {
    k.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str, sanitized: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key || k == sanitized)
        .map(|(_, v)| v.as_str())
}

/// Rules with label keys sanitised once per call.
struct Compiled<'r> {
    rules: &'r Rules,
    /// `(key, sanitised key, value)` of the shared label selectors.
    shared_labels: Vec<(&'r str, String, &'r str)>,
    /// Mapping rules with their sanitised keys, per target in order.
    mappings: Vec<(&'r MappingRule, String)>,
}

impl<'r> Compiled<'r> {
    fn new(rules: &'r Rules) -> Compiled<'r> {
        Compiled {
            rules,
            shared_labels: rules
                .shared
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), sanitize_key(k), v.as_str()))
                .collect(),
            mappings: rules
                .mappings
                .iter()
                .map(|m| {
                    let key = match &m.source {
                        Source::Label(k) | Source::Annotation(k) | Source::NamespaceLabel(k) => {
                            sanitize_key(k)
                        }
                        Source::Namespace | Source::Cluster => String::new(),
                    };
                    (m, key)
                })
                .collect(),
        }
    }

    fn is_shared(&self, a: &Allocation) -> bool {
        if self.rules.shared.namespaces.contains(&a.namespace) {
            return true;
        }
        self.shared_labels
            .iter()
            .any(|(k, sk, v)| lookup(&a.labels, k, sk) == Some(*v))
    }

    fn attribute(&self, a: &Allocation, target: Target) -> String {
        for (m, sk) in self.mappings.iter().filter(|(m, _)| m.target == target) {
            if let Some(v) = mapped(a, m, sk) {
                return v;
            }
        }
        self.rules.default_value.clone()
    }
}

/// The value rule `m` gives `a`, if it matches (`sk` is the rule's sanitised key).
fn mapped(a: &Allocation, m: &MappingRule, sk: &str) -> Option<String> {
    let found = match &m.source {
        Source::Label(k) => lookup(&a.labels, k, sk),
        Source::Annotation(k) => lookup(&a.annotations, k, sk),
        Source::NamespaceLabel(k) => lookup(&a.namespace_labels, k, sk),
        Source::Namespace => Some(a.namespace.as_str()),
        Source::Cluster => Some(a.cluster.as_str()),
    };
    let v = found.filter(|v| !v.is_empty())?;
    if m.equals.as_deref().is_some_and(|e| e != v) {
        return None;
    }
    Some(m.value.clone().unwrap_or_else(|| v.to_string()))
}

/// Per-row working values.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    cpu: f64,
    ram: f64,
    gpu: f64,
    net: f64,
    pv: f64,
    lb: f64,
    ext: f64,
    shared: f64,
    idle: f64,
    /// Idle pools of an idle row, per resource (cpu, ram, gpu).
    pool: [f64; 3],
    idle_row: bool,
    unmounted: bool,
    shared_row: bool,
}

impl Work {
    fn own(&self) -> f64 {
        self.cpu + self.ram + self.gpu + self.net + self.pv + self.lb + self.ext
    }
    fn total(&self) -> f64 {
        self.own() + self.shared + self.idle + self.pool.iter().sum::<f64>()
    }
}

fn work_of(a: &Allocation, rules: &Compiled<'_>) -> Work {
    let cpu = a.cpu_cost + a.cpu_cost_adjustment;
    let ram = a.ram_cost + a.ram_cost_adjustment;
    let gpu = a.gpu_cost + a.gpu_cost_adjustment;
    let mut w = Work {
        net: a.network_cost + a.network_cost_adjustment,
        pv: a.pv_cost + a.pv_cost_adjustment,
        lb: a.load_balancer_cost + a.load_balancer_cost_adjustment,
        ext: a.external_cost,
        shared: a.shared_cost,
        ..Work::default()
    };
    if a.is_idle() {
        w.idle_row = true;
        w.pool = [cpu, ram, gpu];
    } else {
        w.cpu = cpu - a.cpu_cost_idle;
        w.ram = ram - a.ram_cost_idle;
        w.gpu = gpu - a.gpu_cost_idle;
        w.idle = a.cpu_cost_idle + a.ram_cost_idle + a.gpu_cost_idle;
        w.unmounted = is_unmounted(a);
        w.shared_row = !w.unmounted && rules.is_shared(a);
    }
    w
}

/// Spreads `amount` over `targets` in proportion to `weight` (non-positive weights get
/// nothing); returns false, changing nothing, when no target has a positive weight.
fn spread(
    amount: f64,
    targets: &[usize],
    works: &mut [Work],
    weight: impl Fn(&Work) -> f64,
    mut add: impl FnMut(&mut Work, f64),
) -> bool {
    let total: f64 = targets
        .iter()
        .filter_map(|&j| works.get(j))
        .map(|w| weight(w).max(0.0))
        .sum();
    if !(total > 0.0 && total.is_finite()) {
        return false;
    }
    for &j in targets {
        if let Some(w) = works.get_mut(j) {
            let s = weight(w).max(0.0);
            if s > 0.0 {
                add(w, amount * s / total);
            }
        }
    }
    true
}

/// Spreads shared cost over `targets` by `mode`, weights fixed beforehand in `weights`.
fn spread_shared(
    amount: f64,
    mode: SplitMode,
    targets: &[usize],
    weights: &[f64],
    works: &mut [Work],
) -> bool {
    if targets.is_empty() {
        return false;
    }
    let total: f64 = targets
        .iter()
        .filter_map(|&j| weights.get(j))
        .map(|w| w.max(0.0))
        .sum();
    let weighted = mode == SplitMode::Weighted && total > 0.0 && total.is_finite();
    let n = targets.len() as f64;
    for &j in targets {
        let share = if weighted {
            amount * weights.get(j).copied().unwrap_or(0.0).max(0.0) / total
        } else {
            amount / n
        };
        if let Some(w) = works.get_mut(j) {
            w.shared += share;
        }
    }
    true
}

/// Applies the rules to one `(cluster, window)` group in canonical order; returns the input
/// total and the overhead added.
fn apply_group(
    cluster: &str,
    window: Window,
    rows: &[&Allocation],
    compiled: &Compiled<'_>,
    out: &mut Vec<AllocatedRow>,
) -> (f64, f64) {
    let rules = compiled.rules;
    let mut works: Vec<Work> = rows.iter().map(|a| work_of(a, compiled)).collect();
    let input_total: f64 = rows.iter().map(|a| allocation_total(a)).sum();

    // 1. Idle.
    if rules.idle.mode == IdleMode::Share {
        let all: Vec<usize> = (0..works.len())
            .filter(|&j| works.get(j).is_some_and(|w| !w.idle_row))
            .collect();
        let mut by_node: HashMap<&str, Vec<usize>> = HashMap::new();
        if rules.idle.scope == IdleScope::Node {
            for &j in &all {
                if let Some(a) = rows.get(j) {
                    by_node.entry(a.node.as_str()).or_default().push(j);
                }
            }
        }
        let empty = Vec::new();
        for i in 0..works.len() {
            let Some(w) = works.get(i).copied() else {
                continue;
            };
            if !w.idle_row {
                continue;
            }
            let node = rows.get(i).map_or("", |a| a.node.as_str());
            let targets = if rules.idle.scope == IdleScope::Node && !node.is_empty() {
                by_node.get(node).unwrap_or(&empty)
            } else {
                &all
            };
            for r in 0..3 {
                let amount = w.pool.get(r).copied().unwrap_or(0.0);
                if amount == 0.0 {
                    continue;
                }
                let moved = spread(
                    amount,
                    targets,
                    &mut works,
                    |t| match r {
                        0 => t.cpu,
                        1 => t.ram,
                        _ => t.gpu,
                    },
                    |t, s| t.idle += s,
                );
                if moved {
                    if let Some(p) = works.get_mut(i).and_then(|x| x.pool.get_mut(r)) {
                        *p = 0.0;
                    }
                }
            }
        }
    }

    // 2 and 3. Shared rows and overhead.
    let recipients: Vec<usize> = (0..works.len())
        .filter(|&j| {
            works
                .get(j)
                .is_some_and(|w| !w.idle_row && !w.unmounted && !w.shared_row)
        })
        .collect();
    let weights: Vec<f64> = works.iter().map(|w| w.own() + w.idle).collect();
    let mut residual = 0.0;
    let pool: f64 = works.iter().filter(|w| w.shared_row).map(Work::total).sum();
    let has_shared = works.iter().any(|w| w.shared_row);
    let shared_moved =
        has_shared && spread_shared(pool, rules.shared.split, &recipients, &weights, &mut works);
    let mut overhead_total = 0.0;
    for o in &rules.overheads {
        if !o.clusters.is_empty() && !o.clusters.iter().any(|c| c == cluster) {
            continue;
        }
        let amount = o.monthly_cost * window.hours() / HOURS_PER_MONTH;
        overhead_total += amount;
        if !spread_shared(amount, o.split, &recipients, &weights, &mut works) {
            residual += amount;
        }
    }

    // 4. Output rows.
    for (a, w) in rows.iter().zip(&works) {
        if w.shared_row && shared_moved {
            continue;
        }
        if w.idle_row {
            let idle = w.pool.iter().sum::<f64>();
            let rest = [w.net, w.pv, w.lb, w.ext, w.shared];
            if idle == 0.0 && rest.iter().all(|v| *v == 0.0) {
                continue;
            }
        }
        out.push(output_row(a, w, compiled));
    }
    if residual != 0.0 {
        out.push(residual_row(cluster, window, residual));
    }
    (input_total, overhead_total)
}

fn output_row(a: &Allocation, w: &Work, rules: &Compiled<'_>) -> AllocatedRow {
    let kind = if w.idle_row {
        RowKind::Idle
    } else if w.unmounted {
        RowKind::Unmounted
    } else {
        RowKind::Workload
    };
    let [team, owner, product, cost_center] = match kind {
        RowKind::Idle => [
            IDLE.to_string(),
            IDLE.to_string(),
            IDLE.to_string(),
            IDLE.to_string(),
        ],
        _ => [
            Target::Team,
            Target::Owner,
            Target::Product,
            Target::CostCenter,
        ]
        .map(|t| rules.attribute(a, t)),
    };
    let hours = a.minutes / 60.0;
    let (cpu_usage_cost, cpu_request_cost) = usage_request_cost(
        w.cpu,
        a.cpu_core_hours,
        a.cpu_core_usage_average * hours,
        a.cpu_core_request_average * hours,
    );
    let (ram_usage_cost, ram_request_cost) = usage_request_cost(
        w.ram,
        a.ram_byte_hours,
        a.ram_byte_usage_average * hours,
        a.ram_byte_request_average * hours,
    );
    let idle_cost = w.idle + w.pool.iter().sum::<f64>();
    let total_cost = w.own() + w.shared + idle_cost;
    AllocatedRow {
        kind,
        name: a.name.clone(),
        cluster: a.cluster.clone(),
        node: a.node.clone(),
        namespace: a.namespace.clone(),
        controller_kind: a.controller_kind.clone(),
        controller: a.controller.clone(),
        pod: a.pod.clone(),
        container: a.container.clone(),
        team,
        owner,
        product,
        cost_center,
        window: a.window,
        cpu_cost: w.cpu,
        memory_cost: w.ram,
        gpu_cost: w.gpu,
        network_cost: w.net,
        storage_cost: w.pv,
        load_balancer_cost: w.lb,
        external_cost: w.ext,
        shared_cost: w.shared,
        idle_cost,
        total_cost,
        cpu_usage_cost,
        cpu_request_cost,
        ram_usage_cost,
        ram_request_cost,
    }
}

/// Usage and request cost of one resource from its cost and allocated, used and requested
/// quantity-hours (the price is cost per allocated quantity-hour).
fn usage_request_cost(cost: f64, alloc_h: f64, used_h: f64, req_h: f64) -> (f64, f64) {
    if alloc_h.is_nan() || alloc_h <= 0.0 || cost == 0.0 {
        return (0.0, 0.0);
    }
    let price = cost / alloc_h;
    let usage = used_h.max(0.0) * price;
    let request = if req_h > 0.0 { req_h * price } else { usage };
    (usage, request)
}

fn residual_row(cluster: &str, window: Window, amount: f64) -> AllocatedRow {
    AllocatedRow {
        kind: RowKind::SharedResidual,
        name: SHARED.to_string(),
        cluster: cluster.to_string(),
        node: String::new(),
        namespace: SHARED.to_string(),
        controller_kind: String::new(),
        controller: String::new(),
        pod: String::new(),
        container: String::new(),
        team: SHARED.to_string(),
        owner: SHARED.to_string(),
        product: SHARED.to_string(),
        cost_center: SHARED.to_string(),
        window,
        cpu_cost: 0.0,
        memory_cost: 0.0,
        gpu_cost: 0.0,
        network_cost: 0.0,
        storage_cost: 0.0,
        load_balancer_cost: 0.0,
        external_cost: 0.0,
        shared_cost: amount,
        idle_cost: 0.0,
        total_cost: amount,
        cpu_usage_cost: 0.0,
        cpu_request_cost: 0.0,
        ram_usage_cost: 0.0,
        ram_request_cost: 0.0,
    }
}

/// Returns the attribution of `a` for `target` under the rules' mappings (first match wins),
/// or the default.
pub fn attribute(a: &Allocation, target: Target, rules: &Rules) -> String {
    Compiled::new(rules).attribute(a, target)
}
