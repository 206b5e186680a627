//! InfluxDB line protocol: escaping, the store's measurements, and [`LineBatch`], a request
//! body under construction. Encoding is separate from sending, so a durable spool can keep
//! encoded bodies as opaque bytes and replay them with [`crate::InfluxClient::send`].
//!
//! Rules (InfluxDB 1.x line protocol, also accepted by 2.x and 3.x):
//! - Timestamps are unix **seconds**; bodies are sent with `precision=s`. Every timestamp the
//!   bridge writes is a window boundary, which is a whole second, and the lines are shorter.
//! - Money and every other measured quantity is a **float** field, written with Rust's
//!   shortest round-trip form (`1.0`, `0.1`, `1e-7`, `-0.0`): a float never carries the `i`
//!   suffix, so a field can never flip to integer and cause a type conflict. Counts and unix
//!   times in the bridge's own bookkeeping measurements are integers (`42i`), always.
//! - A non-finite float (NaN, ±Inf) cannot be written in line protocol: the field is left out
//!   of the point and counted in [`LineBatch::skipped_fields`]; a point left without any field
//!   is dropped. (`kb-core` values are finite, so this is a guard, not a path.)
//! - Measurement names escape `,` and space; tag keys, tag values and field keys escape `,`,
//!   `=` and space with a backslash. Line protocol cannot carry newlines in tags, and a
//!   backslash in front of an escaped character cannot be read back faithfully, so newlines,
//!   carriage returns and tabs become a space and backslashes become `/` ([`normalize_tag`];
//!   queries apply the same rule to their literals). Kubernetes names contain none of them.
//! - A tag with an empty value is left out (line protocol forbids empty tag values); InfluxQL
//!   matches a missing tag with `= ''`. Tags are written sorted by key, as InfluxDB stores them.
//! - String field values escape `"` and `\`; newlines become a space.

use std::borrow::Cow;
use std::io::Write as _;

use kb_core::{Allocation, Asset, AssetType, Window};
use kb_pipeline::ports::{Checkpoint, Reconciliation};

/// Pod-level allocations: one point per allocation row Kubecost sent.
pub const ALLOCATIONS: &str = "cost_allocations";
/// Assets: one point per asset Kubecost sent.
pub const ASSETS: &str = "asset_costs";
/// Real-time cost rates per cluster and namespace.
pub const LIVE_COSTS: &str = "live_costs";
/// The store's checkpoints: one point per committed window.
pub const SYNC: &str = "kubecost_bridge_sync";
/// Reconciliation results: one point per window.
pub const RECONCILIATIONS: &str = "kubecost_bridge_reconciliation";

/// Bytes per GiB, for the `*_gb` fields of assets.
const GIB: f64 = 1_073_741_824.0;

/// Returns `s` as it is stored in a tag: newlines, carriage returns and tabs become a space,
/// backslashes become `/`.
pub fn normalize_tag(s: &str) -> Cow<'_, str> {
    if s.bytes()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
    {
        Cow::Owned(
            s.chars()
                .map(|c| match c {
                    '\\' => '/',
                    '\n' | '\r' | '\t' => ' ',
                    c => c,
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Writes a measurement name: `,` and space escaped.
fn put_measurement(buf: &mut Vec<u8>, s: &str) {
    put_escaped(buf, s, b", ");
}

/// Writes a tag key, tag value or field key: `,`, `=` and space escaped.
fn put_key(buf: &mut Vec<u8>, s: &str) {
    put_escaped(buf, s, b",= ");
}

fn put_escaped(buf: &mut Vec<u8>, s: &str, special: &[u8]) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.push(b'/'),
            b'\n' | b'\r' | b'\t' => buf.extend_from_slice(b"\\ "),
            b if special.contains(&b) => {
                buf.push(b'\\');
                buf.push(b);
            }
            b => buf.push(b),
        }
    }
}

/// Writes a float in its shortest round-trip form (`1.0`, `1e-7`): never an integer.
fn put_f64(buf: &mut Vec<u8>, v: f64) {
    write!(buf, "{v:?}").unwrap_or_default();
}

fn put_i64(buf: &mut Vec<u8>, v: i64) {
    write!(buf, "{v}").unwrap_or_default();
}

/// Formats a duration in seconds as `1h`, `1d`, `15m` or `90s` (the `window_duration` tag).
pub fn duration_tag(secs: i64) -> String {
    if secs > 0 && secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs > 0 && secs % 3_600 == 0 {
        format!("{}h", secs / 3_600)
    } else if secs > 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// One point being written into a buffer.
struct Point<'a> {
    buf: &'a mut Vec<u8>,
    skipped: &'a mut u64,
    /// Where the point's line starts (to take it back when it has no field).
    mark: usize,
    fields: usize,
}

impl<'a> Point<'a> {
    fn new(buf: &'a mut Vec<u8>, skipped: &'a mut u64, measurement: &str) -> Point<'a> {
        let mark = buf.len();
        put_measurement(buf, measurement);
        Point {
            buf,
            skipped,
            mark,
            fields: 0,
        }
    }

    /// Adds a tag; an empty value leaves the tag out. Call in key order, before any field.
    fn tag(&mut self, key: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.buf.push(b',');
            put_key(self.buf, key);
            self.buf.push(b'=');
            put_key(self.buf, value);
        }
        self
    }

    fn field_start(&mut self, key: &str) {
        self.buf.push(if self.fields == 0 { b' ' } else { b',' });
        put_key(self.buf, key);
        self.buf.push(b'=');
        self.fields += 1;
    }

    /// Adds a float field; a non-finite value is skipped and counted.
    fn f(&mut self, key: &str, v: f64) -> &mut Self {
        if v.is_finite() {
            self.field_start(key);
            put_f64(self.buf, v);
        } else {
            *self.skipped += 1;
        }
        self
    }

    /// Adds an integer field (`42i`).
    fn i(&mut self, key: &str, v: i64) -> &mut Self {
        self.field_start(key);
        put_i64(self.buf, v);
        self.buf.push(b'i');
        self
    }

    /// Adds a string field.
    fn s(&mut self, key: &str, v: &str) -> &mut Self {
        self.field_start(key);
        self.buf.push(b'"');
        for &b in v.as_bytes() {
            match b {
                b'"' | b'\\' => {
                    self.buf.push(b'\\');
                    self.buf.push(b);
                }
                b'\n' | b'\r' => self.buf.push(b' '),
                b => self.buf.push(b),
            }
        }
        self.buf.push(b'"');
        self
    }

    /// Ends the line with its timestamp (unix seconds). Returns false (and takes the line
    /// back) when the point has no field.
    fn finish(&mut self, ts: i64) -> bool {
        if self.fields == 0 {
            self.buf.truncate(self.mark);
            return false;
        }
        self.buf.push(b' ');
        put_i64(self.buf, ts);
        self.buf.push(b'\n');
        true
    }
}

/// A label's value from the pod labels, else the namespace labels (`owner`, `team`).
fn label<'a>(a: &'a Allocation, key: &str) -> &'a str {
    let find = |labels: &'a [(String, String)]| {
        labels
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .and_then(|i| labels.get(i))
            .map(|(_, v)| v.as_str())
    };
    find(&a.labels)
        .or_else(|| find(&a.namespace_labels))
        .unwrap_or("")
}

/// The `resource_type` tag of an allocation: `idle`, `unmounted` or `workload`.
pub fn resource_type(a: &Allocation) -> &'static str {
    if a.is_idle() {
        "idle"
    } else if a.pod == kb_core::UNMOUNTED || a.name.contains(kb_core::UNMOUNTED) {
        "unmounted"
    } else {
        "workload"
    }
}

/// Real-time cost rates of a cluster or namespace, in currency per hour.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveCostRates {
    pub cpu: f64,
    pub memory: f64,
    pub gpu: f64,
    pub storage: f64,
    pub network: f64,
    pub load_balancer: f64,
    /// The whole rate (the parts plus anything not split out, such as a management fee).
    pub total: f64,
}

/// A request body under construction: newline-terminated line-protocol points.
#[derive(Debug, Clone, Default)]
pub struct LineBatch {
    buf: Vec<u8>,
    lines: usize,
    skipped: u64,
    /// Where the last point written starts.
    last: usize,
}

impl LineBatch {
    /// An empty batch.
    pub fn new() -> LineBatch {
        LineBatch::default()
    }

    /// An empty batch with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> LineBatch {
        LineBatch {
            buf: Vec::with_capacity(bytes),
            ..LineBatch::default()
        }
    }

    /// Points in the batch.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// True when the batch holds no point.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Fields left out because their value was not finite.
    pub fn skipped_fields(&self) -> u64 {
        self.skipped
    }

    /// The encoded lines.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The encoded lines, consuming the batch.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.lines = 0;
        self.skipped = 0;
        self.last = 0;
    }

    fn count(&mut self, mark: usize, written: bool) {
        if written {
            self.lines += 1;
            self.last = mark;
        }
    }

    /// A 64-bit hash of the last point's identity (measurement, tag set and timestamp), or
    /// `None` when no point was written: two points with the same identity overwrite each
    /// other in InfluxDB.
    pub(crate) fn last_identity(&self) -> Option<u64> {
        use std::hash::{Hash as _, Hasher as _};
        if self.lines == 0 {
            return None;
        }
        let line = self.buf.get(self.last..)?;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        // The series key ends at the first space not escaped by a backslash (backslashes in
        // names become `/`, so every backslash is an escape).
        let mut end = line.len();
        let mut i = 0;
        while i < line.len() {
            match line[i] {
                b'\\' => i += 2,
                b' ' => {
                    end = i;
                    break;
                }
                _ => i += 1,
            }
        }
        let ts = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        line.get(..end).hash(&mut h);
        ts.hash(&mut h);
        Some(h.finish())
    }

    /// Adds one `cost_allocations` point for an allocation of the bridge's cluster `cluster`.
    ///
    /// Tags: `allocation` (Kubecost's key of the row, unique in its set), `cluster`,
    /// `container`, `controller`, `controller_kind`, `namespace`, `node`, `owner` and `team`
    /// (pod label, else namespace label), `pod`, `resource_type` (`workload`, `idle`,
    /// `unmounted`), `window_duration` (`1h`, `1d`). Timestamp: the start of the row's own
    /// window. Fields (floats): `cpu_cost`, `memory_cost`, `gpu_cost`, `storage_cost`,
    /// `network_cost`, `load_balancer_cost` (each with its adjustment), `shared_cost`,
    /// `external_cost`, `total_cost`, `efficiency` (`totalEfficiency`), `efficiency_weight`
    /// (CPU plus RAM cost, at least 0) and `weighted_efficiency` (their product, so a
    /// cost-weighted efficiency is `sum(weighted_efficiency) / sum(efficiency_weight)`),
    /// `cpu_core_hours`, `ram_byte_hours`, `gpu_hours`, `pv_byte_hours`, `minutes`.
    pub fn push_allocation(&mut self, cluster: &str, a: &Allocation) {
        let dur = duration_tag(a.window.seconds());
        let cpu = a.cpu_cost + a.cpu_cost_adjustment;
        let ram = a.ram_cost + a.ram_cost_adjustment;
        let weight = if a.is_idle() {
            0.0
        } else {
            (cpu + ram).max(0.0)
        };
        let mark = self.buf.len();
        let written = Point::new(&mut self.buf, &mut self.skipped, ALLOCATIONS)
            .tag("allocation", &a.name)
            .tag("cluster", cluster)
            .tag("container", &a.container)
            .tag("controller", &a.controller)
            .tag("controller_kind", &a.controller_kind)
            .tag("namespace", &a.namespace)
            .tag("node", &a.node)
            .tag("owner", label(a, "owner"))
            .tag("pod", &a.pod)
            .tag("resource_type", resource_type(a))
            .tag("team", label(a, "team"))
            .tag("window_duration", &dur)
            .f("cpu_cost", cpu)
            .f("memory_cost", ram)
            .f("gpu_cost", a.gpu_cost + a.gpu_cost_adjustment)
            .f("storage_cost", a.pv_cost + a.pv_cost_adjustment)
            .f("network_cost", a.network_cost + a.network_cost_adjustment)
            .f(
                "load_balancer_cost",
                a.load_balancer_cost + a.load_balancer_cost_adjustment,
            )
            .f("shared_cost", a.shared_cost)
            .f("external_cost", a.external_cost)
            .f("total_cost", a.total_cost)
            .f("efficiency", a.total_efficiency)
            .f("efficiency_weight", weight)
            .f("weighted_efficiency", a.total_efficiency * weight)
            .f("cpu_core_hours", a.cpu_core_hours)
            .f("ram_byte_hours", a.ram_byte_hours)
            .f("gpu_hours", a.gpu_hours)
            .f("pv_byte_hours", a.pv_byte_hours)
            .f("minutes", a.minutes)
            .finish(a.window.start);
        self.count(mark, written);
    }

    /// Adds one `asset_costs` point for an asset of the bridge's cluster `cluster`.
    ///
    /// Tags: `asset` (Kubecost's key, unique in its set), `asset_name`, `asset_type` (`Node`,
    /// `Disk`, ...), `cluster`, `instance_type` (nodes: the instance type), `node_type` (nodes:
    /// `spot` or `on_demand`), `storage_class` (disks), `window_duration`, `zone`. Timestamp:
    /// the start of the asset's window. Fields (floats): `cpu_cores`, `memory_gb`, `storage_gb`
    /// (GiB, 2^30 bytes), `gpu_count`, `cpu_cost`, `memory_cost`, `gpu_cost`, `adjustment`,
    /// `total_cost`, `minutes`.
    pub fn push_asset(&mut self, cluster: &str, a: &Asset) {
        let dur = duration_tag(a.window.seconds());
        let node = a.asset_type == AssetType::Node;
        let node_type = match (node, a.preemptible > 0.0) {
            (false, _) => "",
            (true, true) => "spot",
            (true, false) => "on_demand",
        };
        let instance_type = if node { a.node_type.as_str() } else { "" };
        let storage_class = if a.asset_type == AssetType::Disk {
            a.node_type.as_str()
        } else {
            ""
        };
        let mark = self.buf.len();
        let written = Point::new(&mut self.buf, &mut self.skipped, ASSETS)
            .tag("asset", &a.key)
            .tag("asset_name", &a.name)
            .tag("asset_type", a.asset_type.as_str())
            .tag("cluster", cluster)
            .tag("instance_type", instance_type)
            .tag("node_type", node_type)
            .tag("storage_class", storage_class)
            .tag("window_duration", &dur)
            .tag("zone", &a.zone)
            .f("cpu_cores", a.cpu_cores)
            .f("memory_gb", a.ram_bytes / GIB)
            .f("storage_gb", a.bytes / GIB)
            .f("gpu_count", a.gpu_count)
            .f("cpu_cost", a.cpu_cost)
            .f("memory_cost", a.ram_cost)
            .f("gpu_cost", a.gpu_cost)
            .f("adjustment", a.adjustment)
            .f("total_cost", a.total_cost)
            .f("minutes", a.minutes)
            .finish(a.window.start);
        self.count(mark, written);
    }

    /// Adds one `live_costs` point: tags `cluster` and `namespace` (left out for a
    /// cluster-level rate), timestamp `ts` (unix seconds), float fields `cpu_rate`,
    /// `memory_rate`, `gpu_rate`, `storage_rate`, `network_rate`, `load_balancer_rate`,
    /// `total_rate` in currency per hour. Writing the same cluster, namespace and `ts` again
    /// overwrites the point.
    pub fn push_live_cost(&mut self, cluster: &str, namespace: &str, ts: i64, r: &LiveCostRates) {
        let mark = self.buf.len();
        let written = Point::new(&mut self.buf, &mut self.skipped, LIVE_COSTS)
            .tag("cluster", cluster)
            .tag("namespace", namespace)
            .f("cpu_rate", r.cpu)
            .f("memory_rate", r.memory)
            .f("gpu_rate", r.gpu)
            .f("storage_rate", r.storage)
            .f("network_rate", r.network)
            .f("load_balancer_rate", r.load_balancer)
            .f("total_rate", r.total)
            .finish(ts);
        self.count(mark, written);
    }

    /// Adds the checkpoint point of a committed window: tags `cluster`, `endpoint`; timestamp
    /// the window start; fields `window_end`, `synced_at`, `rows`, `null_fields` (integers),
    /// `resolution` and `state` (`committed`) (strings), `response_total_cost` (float).
    pub(crate) fn push_checkpoint(&mut self, c: &Checkpoint) {
        let mark = self.buf.len();
        let written = Point::new(&mut self.buf, &mut self.skipped, SYNC)
            .tag("cluster", &c.cluster)
            .tag("endpoint", c.endpoint.as_str())
            .i("window_end", c.window.end)
            .s("resolution", c.resolution.as_str())
            .i("synced_at", c.synced_at)
            .i("rows", i64::try_from(c.rows).unwrap_or(i64::MAX))
            .i(
                "null_fields",
                i64::try_from(c.null_fields).unwrap_or(i64::MAX),
            )
            .f("response_total_cost", c.response_total_cost)
            .s("state", "committed")
            .finish(c.window.start);
        self.count(mark, written);
    }

    /// Adds the marker a commit writes before it sends a window's rows: the checkpoint's
    /// point with `window_end`, `resolution` and `state = "pending"` only. The checkpoint
    /// written after the rows overwrites it with `state = "committed"`.
    pub(crate) fn push_pending(&mut self, c: &Checkpoint) {
        let mark = self.buf.len();
        let written = Point::new(&mut self.buf, &mut self.skipped, SYNC)
            .tag("cluster", &c.cluster)
            .tag("endpoint", c.endpoint.as_str())
            .i("window_end", c.window.end)
            .s("resolution", c.resolution.as_str())
            .s("state", "pending")
            .finish(c.window.start);
        self.count(mark, written);
    }

    /// Adds a reconciliation point: tags `cluster`, `endpoint`; timestamp the window start;
    /// fields `window_end`, `checked_at` (integers), `expected`, `stored`, `relative_error`.
    pub(crate) fn push_reconciliation(&mut self, r: &Reconciliation) {
        let mark = self.buf.len();
        let written = Point::new(&mut self.buf, &mut self.skipped, RECONCILIATIONS)
            .tag("cluster", &r.cluster)
            .tag("endpoint", r.endpoint.as_str())
            .i("window_end", r.window.end)
            .i("checked_at", r.checked_at)
            .f("expected", r.expected)
            .f("stored", r.stored)
            .f("relative_error", r.relative_error)
            .finish(r.window.start);
        self.count(mark, written);
    }
}

/// Encodes allocation rows of the bridge's cluster `cluster` as `cost_allocations` lines
/// (see [`LineBatch::push_allocation`]).
pub fn encode_allocations(cluster: &str, rows: &[Allocation]) -> Vec<u8> {
    let mut b = LineBatch::with_capacity(rows.len() * 640);
    for a in rows {
        b.push_allocation(cluster, a);
    }
    b.into_bytes()
}

/// Encodes assets of the bridge's cluster `cluster` as `asset_costs` lines (see
/// [`LineBatch::push_asset`]).
pub fn encode_assets(cluster: &str, assets: &[Asset]) -> Vec<u8> {
    let mut b = LineBatch::with_capacity(assets.len() * 400);
    for a in assets {
        b.push_asset(cluster, a);
    }
    b.into_bytes()
}

/// Encodes one `live_costs` line (see [`LineBatch::push_live_cost`]).
pub fn encode_live_cost(cluster: &str, namespace: &str, ts: i64, rates: &LiveCostRates) -> Vec<u8> {
    let mut b = LineBatch::with_capacity(256);
    b.push_live_cost(cluster, namespace, ts, rates);
    b.into_bytes()
}

/// Quotes a string as an InfluxQL string literal (`'...'`, `\` and `'` escaped), after the
/// tag normalisation, so it matches the stored tag value.
pub(crate) fn ql_str(s: &str) -> String {
    let s = normalize_tag(s);
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Quotes an InfluxQL identifier (`"..."`, `\` and `"` escaped).
pub(crate) fn ql_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The InfluxQL time condition for `[start, end)`.
pub(crate) fn ql_time(w: Window) -> String {
    format!("time >= {}s AND time < {}s", w.start, w.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_core::Resolution;
    use kb_pipeline::ports::Endpoint;

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn escaping_follows_the_line_protocol() {
        let mut buf = Vec::new();
        let mut skipped = 0;
        Point::new(&mut buf, &mut skipped, "m s,x=y")
            .tag("k ey", "v,a=l ue")
            .tag("empty", "")
            .tag("nl", "a\nb\\c")
            .f("f=1", 1.0)
            .s("s", "say \"hi\" \\ \n")
            .finish(7);
        assert_eq!(
            text(&buf),
            "m\\ s\\,x=y,k\\ ey=v\\,a\\=l\\ ue,nl=a\\ b/c f\\=1=1.0,s=\"say \\\"hi\\\" \\\\  \" 7\n"
        );
    }

    #[test]
    fn floats_never_look_like_integers() {
        let mut buf = Vec::new();
        let mut skipped = 0;
        Point::new(&mut buf, &mut skipped, "m")
            .f("a", 1.0)
            .f("b", 0.1)
            .f("c", -0.0)
            .f("d", 1e-7)
            .f("e", 1.5e300)
            .f("nan", f64::NAN)
            .f("inf", f64::INFINITY)
            .i("n", 3)
            .finish(1_700_000_000);
        assert_eq!(
            text(&buf),
            "m a=1.0,b=0.1,c=-0.0,d=1e-7,e=1.5e300,n=3i 1700000000\n"
        );
        assert_eq!(skipped, 2);
        for v in [
            0.1 + 0.2,
            1.0 / 3.0,
            123_456.789_012_345_67,
            f64::MIN_POSITIVE,
        ] {
            let s = format!("{v:?}");
            assert!(!s.ends_with('i'));
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn a_point_without_fields_is_dropped() {
        let mut b = LineBatch::new();
        b.push_live_cost(
            "c",
            "ns",
            10,
            &LiveCostRates {
                cpu: f64::NAN,
                memory: f64::NAN,
                gpu: f64::NAN,
                storage: f64::NAN,
                network: f64::NAN,
                load_balancer: f64::NAN,
                total: f64::NAN,
            },
        );
        assert!(b.is_empty());
        assert!(b.as_bytes().is_empty());
        assert_eq!(b.skipped_fields(), 7);
        b.push_live_cost(
            "c",
            "",
            10,
            &LiveCostRates {
                total: 2.5,
                ..LiveCostRates::default()
            },
        );
        assert_eq!(b.lines(), 1);
        assert_eq!(
            text(b.as_bytes()),
            "live_costs,cluster=c cpu_rate=0.0,memory_rate=0.0,gpu_rate=0.0,storage_rate=0.0,\
             network_rate=0.0,load_balancer_rate=0.0,total_rate=2.5 10\n"
        );
        let rates = LiveCostRates {
            total: 2.5,
            ..LiveCostRates::default()
        };
        assert_eq!(encode_live_cost("c", "", 10, &rates), b.as_bytes());
    }

    fn allocation() -> Allocation {
        Allocation {
            name: "c1/node-1/shop/deployment/api/api-0/app".into(),
            cluster: "kubecost-c1".into(),
            node: "node-1".into(),
            namespace: "shop".into(),
            controller_kind: "deployment".into(),
            controller: "api".into(),
            pod: "api-0".into(),
            container: "app".into(),
            labels: vec![
                ("app".into(), "api".into()),
                ("team".into(), "payments".into()),
            ],
            namespace_labels: vec![("owner".into(), "alice".into())],
            window: Window::new(3_600, 7_200).unwrap(),
            cpu_cost: 1.0,
            cpu_cost_adjustment: -0.25,
            ram_cost: 0.5,
            total_cost: 1.25,
            total_efficiency: 0.5,
            minutes: 60.0,
            ..Allocation::default()
        }
    }

    #[test]
    fn allocations_have_the_documented_tags_and_float_fields() {
        let lines = encode_allocations("prod one", &[allocation()]);
        let s = text(&lines);
        assert!(
            s.starts_with(
                "cost_allocations,allocation=c1/node-1/shop/deployment/api/api-0/app,\
                 cluster=prod\\ one,container=app,controller=api,controller_kind=deployment,\
                 namespace=shop,node=node-1,owner=alice,pod=api-0,resource_type=workload,\
                 team=payments,window_duration=1h cpu_cost=0.75,memory_cost=0.5,gpu_cost=0.0,"
            ),
            "{s}"
        );
        assert!(s.contains(",total_cost=1.25,efficiency=0.5,efficiency_weight=1.25,"));
        assert!(s.ends_with(" 3600\n"));
        let fields = s.split(' ').nth(2).unwrap();
        for f in fields.split(',') {
            let v = f.split('=').nth(1).unwrap();
            assert!(v.parse::<f64>().is_ok() && !v.ends_with('i'), "{f} in {s}");
        }
        let mut idle = allocation();
        idle.name = "c1/__idle__".into();
        let s = String::from_utf8(encode_allocations("c", &[idle])).unwrap();
        assert!(s.contains("resource_type=idle"), "{s}");
        assert!(s.contains("efficiency_weight=0.0"), "{s}");
    }

    #[test]
    fn assets_map_types_to_tags() {
        let node = Asset {
            key: "c1/node-1".into(),
            asset_type: AssetType::Node,
            window: Window::new(0, 86_400).unwrap(),
            name: "node-1".into(),
            node_type: "m5.large".into(),
            zone: "eu-west-1a".into(),
            preemptible: 1.0,
            ram_bytes: GIB * 8.0,
            total_cost: 2.0,
            ..Asset::default()
        };
        let s = String::from_utf8(encode_assets("c", &[node])).unwrap();
        assert!(
            s.starts_with(
                "asset_costs,asset=c1/node-1,asset_name=node-1,asset_type=Node,cluster=c,\
                 instance_type=m5.large,node_type=spot,window_duration=1d,zone=eu-west-1a \
                 cpu_cores=0.0,memory_gb=8.0,"
            ),
            "{s}"
        );
        let disk = Asset {
            key: "d".into(),
            asset_type: AssetType::Disk,
            window: Window::new(0, 3_600).unwrap(),
            node_type: "gp3".into(),
            ..Asset::default()
        };
        let s = String::from_utf8(encode_assets("c", &[disk])).unwrap();
        assert!(s.contains(",storage_class=gp3,window_duration=1h "), "{s}");
        assert!(!s.contains("instance_type"), "{s}");
    }

    #[test]
    fn bookkeeping_points() {
        let mut b = LineBatch::new();
        b.push_checkpoint(&Checkpoint {
            cluster: "c".into(),
            endpoint: Endpoint::Allocation,
            window: Window::new(0, 3_600).unwrap(),
            resolution: Resolution::Hour,
            synced_at: 3_700,
            rows: 3,
            response_total_cost: 2.0,
            null_fields: 0,
        });
        assert_eq!(
            text(b.as_bytes()),
            "kubecost_bridge_sync,cluster=c,endpoint=allocation window_end=3600i,\
             resolution=\"1h\",synced_at=3700i,rows=3i,null_fields=0i,response_total_cost=2.0,\
             state=\"committed\" 0\n"
        );
    }

    #[test]
    fn durations_and_literals() {
        assert_eq!(duration_tag(3_600), "1h");
        assert_eq!(duration_tag(86_400), "1d");
        assert_eq!(duration_tag(900), "15m");
        assert_eq!(duration_tag(90), "90s");
        assert_eq!(ql_str("it's a\\b"), "'it\\'s a/b'");
        assert_eq!(ql_ident("we\"ird"), "\"we\\\"ird\"");
        assert_eq!(
            ql_time(Window::new(1, 2).unwrap()),
            "time >= 1s AND time < 2s"
        );
    }
}
