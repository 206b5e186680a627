//! Conversion from the wire types to `kb_core` records, and the collectors that turn framer
//! events into batches of allocations or lists of assets.
//!
//! Invariants: every number in the output is finite (a wire `null` becomes 0 and is counted in
//! `null_fields`); labels and annotations are sorted by key (then value, so the order is total)
//! and services sorted; a row's window is its own `window` when Kubecost sent a parseable one,
//! else the window of its set as the query defines it; `start`/`end` fall back to that window.

use std::borrow::Cow;

use kb_core::window::parse_rfc3339;
use kb_core::{
    Allocation, Asset, AssetType, Budget, Labels, MonthlyCost, SavingsKind, SavingsRecommendation,
    SpecCostPrediction, Window,
};

use crate::error::Error;
use crate::stream::Event;
use crate::wire::{
    Pairs, Str, StrList, WireAbandoned, WireAllocProps, WireAllocation, WireAsset, WireAssetProps,
    WireBudget, WireClusterSizing, WireMonthlyCost, WireQuantities, WireRequestSizing,
    WireSpecCost, WireWindow,
};

/// Counts of one allocation stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamSummary {
    /// Non-null allocation sets seen.
    pub sets: u64,
    /// `null` elements of the data array (Kubecost's answer for a window without data).
    pub null_sets: u64,
    /// Allocations converted and sent (after the client-side cluster filter).
    pub rows: u64,
    /// Placeholder entries skipped (`"...etc": {}`, `null` values).
    pub skipped: u64,
    /// Sum of the reported `totalCost` over the rows sent.
    pub total_cost: f64,
    /// Numeric fields sent as `null` (NaN or ±Inf on Kubecost's side), read as 0.
    pub null_fields: u64,
    /// Rows dropped by the client-side cluster filter (OpenCost, which has no server filter).
    pub filtered: u64,
}

fn text(s: &Option<Str<'_>>) -> String {
    s.as_ref()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

/// Overwrites `dst` with `s`, keeping its capacity.
fn set_text(dst: &mut String, s: &Option<Str<'_>>) {
    dst.clear();
    if let Some(s) = s {
        dst.push_str(s.as_str());
    }
}

/// Sorts label pairs by key then value, after merging an alias map into them.
fn labels(main: &Pairs<'_>, alias: &Pairs<'_>) -> Labels {
    let mut out: Labels = Vec::with_capacity(main.0.len() + alias.0.len());
    labels_into(&mut out, main, alias);
    out
}

/// [`labels`] into `out`, reusing its pairs' strings.
fn labels_into(out: &mut Labels, main: &Pairs<'_>, alias: &Pairs<'_>) {
    let mut n = 0;
    for (k, v) in main.0.iter().chain(alias.0.iter()) {
        match out.get_mut(n) {
            Some((ok, ov)) => {
                ok.clear();
                ok.push_str(k.as_str());
                ov.clear();
                ov.push_str(v.as_str());
            }
            None => out.push((k.as_str().to_string(), v.as_str().to_string())),
        }
        n += 1;
    }
    out.truncate(n);
    if n > 1 {
        out.sort_unstable();
        out.dedup_by(|a, b| a.0 == b.0);
    }
}

/// Merges a service list with its alias, sorted and deduplicated, into `out`, reusing its
/// strings.
fn string_list_into(out: &mut Vec<String>, main: &StrList<'_>, alias: &StrList<'_>) {
    let mut n = 0;
    for s in main.0.iter().chain(alias.0.iter()) {
        match out.get_mut(n) {
            Some(o) => {
                o.clear();
                o.push_str(s.as_str());
            }
            None => out.push(s.as_str().to_string()),
        }
        n += 1;
    }
    out.truncate(n);
    if n > 1 {
        out.sort_unstable();
        out.dedup();
    }
}

/// Parses an RFC3339 bound; `null`, `"null"`, empty or garbage are `None`.
fn instant(s: &Option<Str<'_>>) -> Option<i64> {
    let s = s.as_ref()?.as_str();
    if s.is_empty() || s == "null" {
        return None;
    }
    parse_rfc3339(s)
}

fn window_of(w: &Option<WireWindow<'_>>, default: Window) -> Window {
    let Some(w) = w else { return default };
    match (instant(&w.start), instant(&w.end)) {
        (Some(start), Some(end)) if end > start => Window { start, end },
        _ => default,
    }
}

/// Converts one wire allocation. `name` is its key in the set; `window` the set's window.
pub fn allocation(name: &str, w: &WireAllocation<'_>, window: Window) -> Allocation {
    let mut a = Allocation::default();
    allocation_into(&mut a, name, w, window);
    a
}

/// [`allocation`] into an existing row, overwriting every field and reusing its strings and
/// vectors (the import path recycles rows the writer is done with, so a row costs no
/// allocation once the pool is warm).
pub fn allocation_into(
    a: &mut Allocation,
    key_name: &str,
    w: &WireAllocation<'_>,
    set_window: Window,
) {
    // Destructured without `..`, so a field added to `Allocation` fails to compile here
    // instead of keeping a recycled row's old value.
    let Allocation {
        name: row_name,
        cluster,
        node,
        namespace,
        controller_kind,
        controller,
        pod,
        container,
        provider_id,
        labels,
        annotations,
        namespace_labels,
        services,
        window: row_window,
        start,
        end,
        minutes,
        cpu_cores,
        cpu_core_request_average,
        cpu_core_usage_average,
        cpu_core_hours,
        cpu_cost,
        cpu_cost_adjustment,
        cpu_cost_idle,
        cpu_efficiency,
        gpu_count,
        gpu_hours,
        gpu_cost,
        gpu_cost_adjustment,
        gpu_cost_idle,
        gpu_efficiency,
        ram_bytes,
        ram_byte_request_average,
        ram_byte_usage_average,
        ram_byte_hours,
        ram_cost,
        ram_cost_adjustment,
        ram_cost_idle,
        ram_efficiency,
        pv_bytes,
        pv_byte_hours,
        pv_cost,
        pv_cost_adjustment,
        network_transfer_bytes,
        network_receive_bytes,
        network_cost,
        network_cross_zone_cost,
        network_cross_region_cost,
        network_internet_cost,
        network_cost_adjustment,
        load_balancer_cost,
        load_balancer_cost_adjustment,
        shared_cost,
        external_cost,
        total_cost,
        total_efficiency,
        null_fields,
    } = a;
    let mut n = 0u32;
    let no_props = WireAllocProps::default();
    let p = w.properties.as_ref().unwrap_or(&no_props);
    let window = window_of(&w.window, set_window);
    if key_name.is_empty() {
        set_text(row_name, &w.name);
    } else {
        row_name.clear();
        row_name.push_str(key_name);
    }
    set_text(cluster, &p.cluster);
    set_text(node, &p.node);
    set_text(namespace, &p.namespace);
    set_text(controller_kind, &p.controller_kind);
    set_text(controller, &p.controller);
    set_text(pod, &p.pod);
    set_text(container, &p.container);
    set_text(provider_id, &p.provider_id);
    labels_into(labels, &p.labels, &p.label);
    labels_into(annotations, &p.annotations, &p.annotation);
    labels_into(namespace_labels, &p.namespace_labels, &Pairs::default());
    string_list_into(services, &p.services, &p.service);
    *row_window = window;
    *start = instant(&w.start).unwrap_or(window.start);
    *end = instant(&w.end).unwrap_or(window.end);
    *minutes = w.minutes.take(&mut n);
    *cpu_cores = w.cpu_cores.take(&mut n);
    *cpu_core_request_average = w.cpu_core_request_average.take(&mut n);
    *cpu_core_usage_average = w.cpu_core_usage_average.take(&mut n);
    *cpu_core_hours = w.cpu_core_hours.take(&mut n);
    *cpu_cost = w.cpu_cost.take(&mut n);
    *cpu_cost_adjustment = w.cpu_cost_adjustment.take(&mut n);
    *cpu_cost_idle = w.cpu_cost_idle.take(&mut n);
    *cpu_efficiency = w.cpu_efficiency.take(&mut n);
    *gpu_count = w.gpu_count.take(&mut n);
    *gpu_hours = w.gpu_hours.take(&mut n);
    *gpu_cost = w.gpu_cost.take(&mut n);
    *gpu_cost_adjustment = w.gpu_cost_adjustment.take(&mut n);
    *gpu_cost_idle = w.gpu_cost_idle.take(&mut n);
    *gpu_efficiency = w.gpu_efficiency.take(&mut n);
    *ram_bytes = w.ram_bytes.take(&mut n);
    *ram_byte_request_average = w.ram_byte_request_average.take(&mut n);
    *ram_byte_usage_average = w.ram_byte_usage_average.take(&mut n);
    *ram_byte_hours = w.ram_byte_hours.take(&mut n);
    *ram_cost = w.ram_cost.take(&mut n);
    *ram_cost_adjustment = w.ram_cost_adjustment.take(&mut n);
    *ram_cost_idle = w.ram_cost_idle.take(&mut n);
    *ram_efficiency = w.ram_efficiency.take(&mut n);
    *pv_bytes = w.pv_bytes.take(&mut n);
    *pv_byte_hours = w.pv_byte_hours.take(&mut n);
    *pv_cost = w.pv_cost.take(&mut n);
    *pv_cost_adjustment = w.pv_cost_adjustment.take(&mut n);
    *network_transfer_bytes = w.network_transfer_bytes.take(&mut n);
    *network_receive_bytes = w.network_receive_bytes.take(&mut n);
    *network_cost = w.network_cost.take(&mut n);
    *network_cross_zone_cost = w.network_cross_zone_cost.take(&mut n);
    *network_cross_region_cost = w.network_cross_region_cost.take(&mut n);
    *network_internet_cost = w.network_internet_cost.take(&mut n);
    *network_cost_adjustment = w.network_cost_adjustment.take(&mut n);
    *load_balancer_cost = w.load_balancer_cost.take(&mut n);
    *load_balancer_cost_adjustment = w.load_balancer_cost_adjustment.take(&mut n);
    *shared_cost = w.shared_cost.take(&mut n);
    *external_cost = w.external_cost.take(&mut n);
    *total_cost = w.total_cost.take(&mut n);
    *total_efficiency = w.total_efficiency.take(&mut n);
    *null_fields = n;
}

/// Converts one wire asset. `key` is its key in the set; `window` the set's window.
pub fn asset(key: &str, w: &WireAsset<'_>, window: Window) -> Asset {
    let mut n = 0u32;
    let no_props = WireAssetProps::default();
    let p = w.properties.as_ref().unwrap_or(&no_props);
    let window = window_of(&w.window, window);
    let asset_type = w
        .asset_type
        .as_ref()
        .and_then(|t| AssetType::parse(t.as_str()))
        .unwrap_or(AssetType::Any);
    let labels = labels(&w.labels, &Pairs::default());
    let zone = [
        "label_topology_kubernetes_io_zone",
        "topology_kubernetes_io_zone",
        "label_failure_domain_beta_kubernetes_io_zone",
        "failure_domain_beta_kubernetes_io_zone",
    ]
    .iter()
    .find_map(|k| {
        labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap_or_default();
    let gpu_hours = match w.gpu_hours_caps {
        crate::wire::Num::Absent => w.gpu_hours.take(&mut n),
        caps => caps.take(&mut n),
    };
    let total_cost = w.total_cost.take(&mut n);
    let adjustment = w.adjustment.take(&mut n);
    let credit = w.credit.take(&mut n);
    // Kubecost writes no `cost` for most types; their totalCost is cost + adjustment (+ credit),
    // so the undiscounted cost is what remains of the total.
    let cost = match (asset_type, w.cost) {
        (AssetType::Node, _) => w.cost.take(&mut n),
        (_, c @ (crate::wire::Num::Value(_) | crate::wire::Num::Null)) => c.take(&mut n),
        (AssetType::Cloud, _) => total_cost - adjustment - credit,
        (AssetType::Shared, _) => total_cost,
        _ => total_cost - adjustment,
    };
    let node_type = match asset_type {
        AssetType::Disk => text(&w.storage_class),
        _ => text(&w.node_type),
    };
    Asset {
        key: key.to_string(),
        asset_type,
        window,
        start: instant(&w.start).unwrap_or(window.start),
        end: instant(&w.end).unwrap_or(window.end),
        minutes: w.minutes.take(&mut n),
        cluster: text(&p.cluster),
        name: text(&p.name),
        provider: text(&p.provider),
        provider_id: text(&p.provider_id),
        account: text(&p.account),
        project: text(&p.project),
        service: text(&p.service),
        category: text(&p.category),
        labels,
        node_type,
        zone,
        cpu_cores: w.cpu_cores.take(&mut n),
        ram_bytes: w.ram_bytes.take(&mut n),
        cpu_core_hours: w.cpu_core_hours.take(&mut n),
        ram_byte_hours: w.ram_byte_hours.take(&mut n),
        gpu_hours,
        gpu_count: w.gpu_count.take(&mut n),
        cpu_cost: w.cpu_cost.take(&mut n),
        ram_cost: w.ram_cost.take(&mut n),
        gpu_cost: w.gpu_cost.take(&mut n),
        preemptible: w.preemptible.take(&mut n),
        discount: w.discount.take(&mut n),
        bytes: w.bytes.take(&mut n),
        byte_hours: w.byte_hours.take(&mut n),
        cost,
        adjustment,
        credit,
        total_cost,
        null_fields: n,
    }
}

/// Decodes a raw JSON string (quotes included) of a set key.
fn decode_key(raw: &[u8], offset: u64) -> Result<Cow<'_, str>, Error> {
    let s: Str<'_> = serde_json::from_slice(raw)
        .map_err(|e| Error::malformed(format!("allocation name: {e}"), offset))?;
    Ok(s.0)
}

/// Returns true for a placeholder value: `{}` (Kubecost docs' `"...etc": {}`) or `null`,
/// whitespace allowed. Does not allocate: it runs once per row.
fn is_placeholder(value: &[u8]) -> bool {
    let mut significant = value.iter().filter(|b| !b.is_ascii_whitespace());
    let mut first = [0u8; 5];
    let mut n = 0;
    for (slot, b) in first.iter_mut().zip(significant.by_ref()) {
        *slot = *b;
        n += 1;
    }
    matches!(&first[..n], b"{}" | b"null")
}

/// The window a set covers when its rows carry none: the `set`-th step of the query window, or
/// the whole query window.
#[derive(Debug, Clone, Copy)]
pub struct SetWindows {
    /// The queried window.
    pub window: Window,
    /// Step in seconds, when the query asked for one set per step.
    pub step: Option<i64>,
}

impl SetWindows {
    /// Returns the window of set number `set`.
    pub fn of(&self, set: usize) -> Window {
        match self.step {
            Some(step) if step > 0 => {
                let start = self
                    .window
                    .start
                    .saturating_add(step.saturating_mul(set as i64));
                if start >= self.window.end {
                    return self.window;
                }
                Window {
                    start,
                    end: start.saturating_add(step).min(self.window.end),
                }
            }
            _ => self.window,
        }
    }
}

/// Turns framer events into allocations: parses, filters, counts and batches them.
#[derive(Debug)]
pub struct AllocationCollector {
    windows: SetWindows,
    filter_cluster: Option<String>,
    keep_rows: bool,
    /// Rows converted since the last [`AllocationCollector::take_batch`].
    pub batch: Vec<Allocation>,
    /// Counts so far.
    pub summary: StreamSummary,
    /// Rows handed back by [`AllocationCollector::recycle`], overwritten by the next rows.
    pool: Vec<Allocation>,
    /// An emptied batch vector to collect the next batch in.
    spare: Option<Vec<Allocation>>,
}

/// The most recycled rows a collector keeps (about 2 batches).
const MAX_POOL_ROWS: usize = 2048;

impl AllocationCollector {
    /// Makes a collector. `filter_cluster` drops rows of other clusters (client-side filter);
    /// with `keep_rows` false rows are only counted (for totals).
    pub fn new(windows: SetWindows, filter_cluster: Option<String>, keep_rows: bool) -> Self {
        AllocationCollector {
            windows,
            filter_cluster,
            keep_rows,
            batch: Vec::new(),
            summary: StreamSummary::default(),
            pool: Vec::new(),
            spare: None,
        }
    }

    /// Hands back a batch the consumer is done with: its rows (strings, label vectors) are
    /// overwritten by the next rows instead of being freed and allocated again. Rows beyond a
    /// small pool are dropped here.
    pub fn recycle(&mut self, mut rows: Vec<Allocation>) {
        let room = MAX_POOL_ROWS.saturating_sub(self.pool.len());
        if rows.len() > room {
            rows.truncate(room);
        }
        self.pool.append(&mut rows);
        if self.spare.is_none() {
            self.spare = Some(rows);
        }
    }

    /// Handles one framer event.
    pub fn on_event(&mut self, ev: Event<'_>) -> Result<(), Error> {
        match ev {
            Event::SetStart { .. } => self.summary.sets += 1,
            Event::NullSet { .. } => self.summary.null_sets += 1,
            Event::SetEnd { .. } => {}
            Event::Item {
                set,
                key,
                value,
                offset,
            } => {
                if is_placeholder(value) {
                    self.summary.skipped += 1;
                    return Ok(());
                }
                // Validating UTF-8 once for the whole object lets serde borrow every string
                // without checking each one again (from_str instead of from_slice).
                let text = std::str::from_utf8(value).map_err(|e| {
                    Error::malformed(
                        format!("allocation {}: {e}", String::from_utf8_lossy(key)),
                        offset + e.valid_up_to() as u64,
                    )
                })?;
                // The fast path reads the common shape; anything else goes to serde, which gives
                // the same value or the error.
                let w: WireAllocation<'_> = match crate::wire::scan_allocation(text) {
                    Some(w) => w,
                    None => serde_json::from_str(text).map_err(|e| {
                        Error::malformed(
                            format!("allocation {}: {e}", String::from_utf8_lossy(key)),
                            offset,
                        )
                    })?,
                };
                if let Some(want) = &self.filter_cluster {
                    let cluster = w
                        .properties
                        .as_ref()
                        .and_then(|p| p.cluster.as_ref())
                        .map(|c| c.as_str())
                        .unwrap_or("");
                    if cluster != want {
                        self.summary.filtered += 1;
                        return Ok(());
                    }
                }
                let name = decode_key(key, offset)?;
                let mut a = self.pool.pop().unwrap_or_default();
                allocation_into(&mut a, &name, &w, self.windows.of(set));
                self.summary.rows += 1;
                self.summary.total_cost += a.total_cost;
                self.summary.null_fields += u64::from(a.null_fields);
                if self.keep_rows {
                    self.batch.push(a);
                } else if self.pool.len() < MAX_POOL_ROWS {
                    self.pool.push(a);
                }
            }
        }
        Ok(())
    }

    /// Takes the rows collected so far.
    pub fn take_batch(&mut self) -> Vec<Allocation> {
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(self.batch.len()));
        std::mem::replace(&mut self.batch, next)
    }
}

/// Turns framer events into assets.
#[derive(Debug)]
pub struct AssetCollector {
    windows: SetWindows,
    filter_cluster: Option<String>,
    /// Assets converted so far.
    pub assets: Vec<Asset>,
}

impl AssetCollector {
    /// Makes a collector; `filter_cluster` drops assets of other clusters.
    pub fn new(windows: SetWindows, filter_cluster: Option<String>) -> Self {
        AssetCollector {
            windows,
            filter_cluster,
            assets: Vec::new(),
        }
    }

    /// Handles one framer event.
    pub fn on_event(&mut self, ev: Event<'_>) -> Result<(), Error> {
        if let Event::Item {
            set,
            key,
            value,
            offset,
        } = ev
        {
            if is_placeholder(value) {
                return Ok(());
            }
            let w: WireAsset<'_> = serde_json::from_slice(value).map_err(|e| {
                Error::malformed(
                    format!("asset {}: {e}", String::from_utf8_lossy(key)),
                    offset,
                )
            })?;
            let key = decode_key(key, offset)?;
            let a = asset(&key, &w, self.windows.of(set));
            if let Some(want) = &self.filter_cluster {
                // Assets without a cluster (cloud items) are kept: they cannot be attributed.
                if !a.cluster.is_empty() && &a.cluster != want {
                    return Ok(());
                }
            }
            self.assets.push(a);
        }
        Ok(())
    }
}

fn owned_window(w: &Option<crate::wire::WireOwnedWindow>) -> Window {
    let Some(w) = w else {
        return Window::default();
    };
    let parse = |s: &Option<String>| {
        s.as_deref()
            .filter(|s| !s.is_empty() && *s != "null")
            .and_then(parse_rfc3339)
    };
    match (parse(&w.start), parse(&w.end)) {
        (Some(start), Some(end)) => Window { start, end },
        _ => Window::default(),
    }
}

/// Converts a budget; values become sorted `(category, names)` pairs.
pub fn budget(w: &WireBudget) -> Budget {
    let mut sink = 0u32;
    let mut values: Vec<(String, Vec<String>)> = Vec::new();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    match &w.values {
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                values.push((k.clone(), strings(v)));
            }
        }
        Some(v @ (serde_json::Value::Array(_) | serde_json::Value::String(_))) => {
            values.push((w.property.clone().unwrap_or_default(), strings(v)));
        }
        _ => {}
    }
    values.sort();
    let spend_limit = match w.spend_limit {
        crate::wire::Num::Absent => w.amount.take(&mut sink),
        s => s.take(&mut sink),
    };
    let id = match &w.id {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let interval_day = w.interval_day.take(&mut sink);
    Budget {
        id,
        name: w.name.clone().unwrap_or_default(),
        budget_type: w.budget_type.clone().unwrap_or_default(),
        values,
        interval: w.interval.clone().unwrap_or_default(),
        interval_day: if interval_day.is_finite() && interval_day > 0.0 {
            interval_day.min(f64::from(u32::MAX)) as u32
        } else {
            0
        },
        spend_limit,
        current_spend: w.current_spend.take(&mut sink),
        window: owned_window(&w.window),
    }
}

fn quantity(v: &Option<serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => "?".to_string(),
    }
}

/// Converts a request-sizing recommendation; savings are CPU plus memory.
pub fn request_sizing(w: &WireRequestSizing) -> SavingsRecommendation {
    let mut sink = 0u32;
    let savings = w.monthly_savings.clone().unwrap_or_default();
    let now = w.latest_known_request.clone().unwrap_or_default();
    let rec: WireQuantities = w.recommended_request.clone().unwrap_or_default();
    SavingsRecommendation {
        kind: SavingsKind::RequestSizing,
        cluster: w.cluster_id.clone().unwrap_or_default(),
        namespace: w.namespace.clone().unwrap_or_default(),
        controller_kind: w.controller_kind.clone().unwrap_or_default(),
        controller: w.controller_name.clone().unwrap_or_default(),
        target: w.container_name.clone().unwrap_or_default(),
        monthly_savings: savings.cpu.take(&mut sink) + savings.memory.take(&mut sink),
        detail: format!(
            "cpu {} -> {}, memory {} -> {}",
            quantity(&now.cpu),
            quantity(&rec.cpu),
            quantity(&now.memory),
            quantity(&rec.memory)
        ),
    }
}

/// Converts the cluster-sizing answer: per cluster, the option that saves the most.
pub fn cluster_sizing(
    data: &std::collections::BTreeMap<String, Option<WireClusterSizing>>,
) -> Vec<SavingsRecommendation> {
    let mut out = Vec::new();
    for (cluster, sizing) in data {
        let Some(recs) = sizing.as_ref().and_then(|s| s.recommendations.as_ref()) else {
            continue;
        };
        let best = recs
            .iter()
            .filter_map(|(name, o)| o.as_ref().map(|o| (name, o)))
            .filter_map(|(name, o)| o.monthly_savings.get().map(|s| (name, o, s)))
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((name, option, savings)) = best else {
            continue;
        };
        let pools: Vec<String> = option
            .pools
            .iter()
            .flatten()
            .map(|p| {
                let t = p
                    .node_type
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_else(|| "?".to_string());
                format!("{}x {t}", p.count.get().unwrap_or(0.0))
            })
            .collect();
        out.push(SavingsRecommendation {
            kind: SavingsKind::ClusterSizing,
            cluster: cluster.clone(),
            namespace: String::new(),
            controller_kind: String::new(),
            controller: String::new(),
            target: String::new(),
            monthly_savings: savings,
            detail: format!(
                "{name}: {} nodes ({}), {:.2}/month",
                option.node_count.get().unwrap_or(0.0),
                pools.join(", "),
                option.total_monthly_cost.get().unwrap_or(0.0)
            ),
        });
    }
    out
}

/// Converts an abandoned-workload item.
pub fn abandoned(w: &WireAbandoned) -> SavingsRecommendation {
    let mut sink = 0u32;
    let owner = w.owners.as_ref().and_then(|o| o.first());
    let cluster = w
        .cluster_name
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| w.cluster_id.clone())
        .unwrap_or_default();
    SavingsRecommendation {
        kind: SavingsKind::AbandonedWorkload,
        cluster,
        namespace: w.namespace.clone().unwrap_or_default(),
        controller_kind: owner.and_then(|o| o.kind.clone()).unwrap_or_default(),
        controller: owner.and_then(|o| o.name.clone()).unwrap_or_default(),
        target: w.pod.clone().unwrap_or_default(),
        monthly_savings: w.monthly_savings.take(&mut sink),
        detail: format!(
            "ingress {:.2} B/s, egress {:.2} B/s on node {}",
            w.ingress_bytes_per_second.take(&mut sink),
            w.egress_bytes_per_second.take(&mut sink),
            w.node.as_deref().unwrap_or("?")
        ),
    }
}

fn monthly(w: &Option<WireMonthlyCost>) -> MonthlyCost {
    let mut sink = 0u32;
    let w = w.clone().unwrap_or_default();
    MonthlyCost {
        total_monthly_rate: w.total_monthly_rate.take(&mut sink),
        cpu_monthly_rate: w.cpu_monthly_rate.take(&mut sink),
        ram_monthly_rate: w.ram_monthly_rate.take(&mut sink),
        gpu_monthly_rate: w.gpu_monthly_rate.take(&mut sink),
        monthly_cpu_core_hours: w.monthly_cpu_core_hours.take(&mut sink),
        monthly_ram_byte_hours: w.monthly_ram_byte_hours.take(&mut sink),
        monthly_gpu_hours: w.monthly_gpu_hours.take(&mut sink),
    }
}

/// Converts a spec-cost prediction.
pub fn spec_cost(w: &WireSpecCost) -> SpecCostPrediction {
    SpecCostPrediction {
        namespace: w.namespace.clone().unwrap_or_default(),
        controller_kind: w.controller_kind.clone().unwrap_or_default(),
        controller_name: w.controller_name.clone().unwrap_or_default(),
        cost_before: monthly(&w.cost_before),
        cost_after: monthly(&w.cost_after),
        cost_change: monthly(&w.cost_change),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_row_is_overwritten_entirely() {
        let window = Window {
            start: 1_700_000_400,
            end: 1_700_004_000,
        };
        let big: WireAllocation<'_> = serde_json::from_str(
            r#"{"name":"x","properties":{"cluster":"c1","node":"n","pod":"p","services":["s2","s1","s3"],
               "labels":{"b":"2","a":"1","c":"3"},"annotations":{"k":"v"},"namespaceLabels":{"t":"u"}},
               "cpuCost":null,"totalCost":5}"#,
        )
        .unwrap();
        let small: WireAllocation<'_> = serde_json::from_str(
            r#"{"properties":{"cluster":"c2","label":{"z":"9"},"services":["s"]},"ramCost":1.5}"#,
        )
        .unwrap();
        let mut row = allocation("big", &big, window);
        allocation_into(&mut row, "", &small, window);
        assert_eq!(row, allocation("", &small, window));
        allocation_into(&mut row, "big", &big, window);
        assert_eq!(row, allocation("big", &big, window));
        assert_eq!(row.null_fields, 1);
    }

    #[test]
    fn labels_merge_aliases_sorted() {
        let w: WireAllocation<'_> = serde_json::from_slice(
            br#"{"properties":{"labels":{"z":"1","a":"2"},"label":{"m":"3"},"service":["s2","s1"]}}"#,
        )
        .unwrap();
        let a = allocation("x", &w, Window { start: 0, end: 10 });
        assert_eq!(
            a.labels,
            vec![
                ("a".to_string(), "2".to_string()),
                ("m".to_string(), "3".to_string()),
                ("z".to_string(), "1".to_string())
            ]
        );
        assert_eq!(a.services, vec!["s1".to_string(), "s2".to_string()]);
        assert_eq!(a.window, Window { start: 0, end: 10 });
        assert_eq!((a.start, a.end), (0, 10));
    }

    #[test]
    fn null_window_strings_fall_back_to_the_set_window() {
        let w: WireAllocation<'_> = serde_json::from_slice(
            br#"{"window":{"start":"null","end":"null"},"start":"2024-01-01T01:00:00Z","properties":null}"#,
        )
        .unwrap();
        let a = allocation(
            "x",
            &w,
            Window {
                start: 0,
                end: 86400 * 30,
            },
        );
        assert_eq!(
            a.window,
            Window {
                start: 0,
                end: 86400 * 30
            }
        );
        assert_eq!(a.start, 1_704_070_800);
        assert_eq!(a.end, 86400 * 30);
    }

    #[test]
    fn set_windows_follow_the_step() {
        let sw = SetWindows {
            window: Window { start: 0, end: 250 },
            step: Some(100),
        };
        assert_eq!(sw.of(0), Window { start: 0, end: 100 });
        assert_eq!(
            sw.of(2),
            Window {
                start: 200,
                end: 250
            }
        );
        assert_eq!(sw.of(7), Window { start: 0, end: 250 });
    }

    #[test]
    fn placeholders_are_recognised() {
        assert!(is_placeholder(b"{}"));
        assert!(is_placeholder(b"{ \n }"));
        assert!(is_placeholder(b"null"));
        assert!(!is_placeholder(b"{\"a\":1}"));
    }
}
