//! Column lists of the tables the store inserts into, each column with its ClickHouse type and
//! the function that writes its `RowBinary` value. The DDL ([`crate::schema`]) and the inserts
//! both come from these lists, so the two cannot disagree about order or types.

use kb_core::{Allocation, Asset, Budget, SavingsRecommendation, SpecCostPrediction, Window};

use crate::rowbinary::{put_f64, put_i64, put_str, put_u8, put_u32, put_u64};

/// One column: name, ClickHouse type, and its encoder for a row `T` written with context `C`.
pub(crate) struct Col<C, T> {
    pub(crate) name: &'static str,
    pub(crate) ty: &'static str,
    pub(crate) put: fn(&C, &T, &mut Vec<u8>),
}

/// Returns `name type, ...` for a CREATE TABLE.
pub(crate) fn column_ddl<C, T>(cols: &[Col<C, T>]) -> Vec<(&'static str, &'static str)> {
    cols.iter().map(|c| (c.name, c.ty)).collect()
}

/// Returns `name, name, ...` for an INSERT column list.
pub(crate) fn column_list<C, T>(cols: &[Col<C, T>]) -> String {
    cols.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// Appends one row.
pub(crate) fn encode<C, T>(cols: &[Col<C, T>], ctx: &C, row: &T, out: &mut Vec<u8>) {
    for c in cols {
        (c.put)(ctx, row, out);
    }
}

/// What every fact row of one write shares.
pub(crate) struct WriteCtx {
    /// The bridge's cluster name.
    pub(crate) cluster: String,
    /// The write's version (see the crate docs).
    pub(crate) version: u64,
    /// The window being written: rows with an unset window get it.
    pub(crate) window: Window,
    pub(crate) resolution: &'static str,
}

impl WriteCtx {
    fn window_of(&self, w: Window) -> Window {
        if w == Window::default() {
            self.window
        } else {
            w
        }
    }
}

/// Start of the hour a timestamp falls in: the slot the visibility rule keys rows by.
pub(crate) fn slot_of(ts: i64) -> i64 {
    ts.div_euclid(3600) * 3600
}

pub(crate) fn put_dt(b: &mut Vec<u8>, ts: i64) {
    // Callers check the range first (`check_window`); clamp all the same.
    put_u32(b, u32::try_from(ts.max(0)).unwrap_or(u32::MAX));
}

/// Writes labels as a JSON object `{"k":"v",...}` (keys in the model's sorted order).
pub(crate) fn labels_json(labels: &[(String, String)]) -> String {
    let mut s = String::with_capacity(2 + labels.len() * 24);
    s.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(&mut s, k);
        s.push(':');
        json_string(&mut s, v);
    }
    s.push('}');
    s
}

/// Writes strings as a JSON array.
pub(crate) fn strings_json(items: &[String]) -> String {
    let mut s = String::with_capacity(2 + items.len() * 16);
    s.push('[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(&mut s, v);
    }
    s.push(']');
    s
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for ch in v.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

macro_rules! f64_col {
    ($ctx:ty, $row:ty, $name:literal, $($field:ident).+) => {
        Col::<$ctx, $row> {
            name: $name,
            ty: "Float64",
            put: |_, r, b| put_f64(b, r.$($field).+),
        }
    };
}

macro_rules! str_col {
    ($ctx:ty, $row:ty, $name:literal, $($field:ident).+) => {
        Col::<$ctx, $row> {
            name: $name,
            ty: "String",
            put: |_, r, b| put_str(b, &r.$($field).+),
        }
    };
}

/// `allocations`: one row per allocation Kubecost sent, every field of [`Allocation`].
/// Cost column names follow the seed (`memory_cost`, `storage_cost`, `efficiency_score`) and
/// the SQLite store.
pub(crate) static ALLOCATION_COLS: &[Col<WriteCtx, Allocation>] = &[
    Col {
        name: "cluster",
        ty: "String",
        put: |c, _, b| put_str(b, &c.cluster),
    },
    Col {
        name: "version",
        ty: "UInt64",
        put: |c, _, b| put_u64(b, c.version),
    },
    Col {
        name: "slot",
        ty: "Int64",
        put: |c, r, b| put_i64(b, slot_of(c.window_of(r.window).start)),
    },
    Col {
        name: "window_start",
        ty: "DateTime('UTC')",
        put: |c, r, b| put_dt(b, c.window_of(r.window).start),
    },
    Col {
        name: "window_end",
        ty: "DateTime('UTC')",
        put: |c, r, b| put_dt(b, c.window_of(r.window).end),
    },
    Col {
        name: "resolution",
        ty: "String",
        put: |c, _, b| put_str(b, c.resolution),
    },
    str_col!(WriteCtx, Allocation, "name", name),
    str_col!(WriteCtx, Allocation, "source_cluster", cluster),
    str_col!(WriteCtx, Allocation, "node", node),
    str_col!(WriteCtx, Allocation, "namespace", namespace),
    str_col!(WriteCtx, Allocation, "controller_kind", controller_kind),
    str_col!(WriteCtx, Allocation, "controller", controller),
    str_col!(WriteCtx, Allocation, "pod", pod),
    str_col!(WriteCtx, Allocation, "container", container),
    str_col!(WriteCtx, Allocation, "provider_id", provider_id),
    Col {
        name: "labels",
        ty: "String",
        put: |_, r, b| put_str(b, &labels_json(&r.labels)),
    },
    Col {
        name: "annotations",
        ty: "String",
        put: |_, r, b| put_str(b, &labels_json(&r.annotations)),
    },
    Col {
        name: "namespace_labels",
        ty: "String",
        put: |_, r, b| put_str(b, &labels_json(&r.namespace_labels)),
    },
    Col {
        name: "services",
        ty: "String",
        put: |_, r, b| put_str(b, &strings_json(&r.services)),
    },
    Col {
        name: "is_idle",
        ty: "UInt8",
        put: |_, r, b| put_u8(b, u8::from(r.is_idle())),
    },
    Col {
        name: "run_start",
        ty: "Int64",
        put: |_, r, b| put_i64(b, r.start),
    },
    Col {
        name: "run_end",
        ty: "Int64",
        put: |_, r, b| put_i64(b, r.end),
    },
    Col {
        name: "null_fields",
        ty: "UInt32",
        put: |_, r, b| put_u32(b, r.null_fields),
    },
    f64_col!(WriteCtx, Allocation, "minutes", minutes),
    f64_col!(WriteCtx, Allocation, "cpu_cores", cpu_cores),
    f64_col!(
        WriteCtx,
        Allocation,
        "cpu_core_request_average",
        cpu_core_request_average
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "cpu_core_usage_average",
        cpu_core_usage_average
    ),
    f64_col!(WriteCtx, Allocation, "cpu_core_hours", cpu_core_hours),
    f64_col!(WriteCtx, Allocation, "cpu_cost", cpu_cost),
    f64_col!(
        WriteCtx,
        Allocation,
        "cpu_cost_adjustment",
        cpu_cost_adjustment
    ),
    f64_col!(WriteCtx, Allocation, "cpu_cost_idle", cpu_cost_idle),
    f64_col!(WriteCtx, Allocation, "cpu_efficiency", cpu_efficiency),
    f64_col!(WriteCtx, Allocation, "gpu_count", gpu_count),
    f64_col!(WriteCtx, Allocation, "gpu_hours", gpu_hours),
    f64_col!(WriteCtx, Allocation, "gpu_cost", gpu_cost),
    f64_col!(
        WriteCtx,
        Allocation,
        "gpu_cost_adjustment",
        gpu_cost_adjustment
    ),
    f64_col!(WriteCtx, Allocation, "gpu_cost_idle", gpu_cost_idle),
    f64_col!(WriteCtx, Allocation, "gpu_efficiency", gpu_efficiency),
    f64_col!(WriteCtx, Allocation, "ram_bytes", ram_bytes),
    f64_col!(
        WriteCtx,
        Allocation,
        "ram_byte_request_average",
        ram_byte_request_average
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "ram_byte_usage_average",
        ram_byte_usage_average
    ),
    f64_col!(WriteCtx, Allocation, "ram_byte_hours", ram_byte_hours),
    f64_col!(WriteCtx, Allocation, "memory_cost", ram_cost),
    f64_col!(
        WriteCtx,
        Allocation,
        "ram_cost_adjustment",
        ram_cost_adjustment
    ),
    f64_col!(WriteCtx, Allocation, "ram_cost_idle", ram_cost_idle),
    f64_col!(WriteCtx, Allocation, "ram_efficiency", ram_efficiency),
    f64_col!(WriteCtx, Allocation, "pv_bytes", pv_bytes),
    f64_col!(WriteCtx, Allocation, "pv_byte_hours", pv_byte_hours),
    f64_col!(WriteCtx, Allocation, "storage_cost", pv_cost),
    f64_col!(
        WriteCtx,
        Allocation,
        "pv_cost_adjustment",
        pv_cost_adjustment
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "network_transfer_bytes",
        network_transfer_bytes
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "network_receive_bytes",
        network_receive_bytes
    ),
    f64_col!(WriteCtx, Allocation, "network_cost", network_cost),
    f64_col!(
        WriteCtx,
        Allocation,
        "network_cross_zone_cost",
        network_cross_zone_cost
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "network_cross_region_cost",
        network_cross_region_cost
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "network_internet_cost",
        network_internet_cost
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "network_cost_adjustment",
        network_cost_adjustment
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "load_balancer_cost",
        load_balancer_cost
    ),
    f64_col!(
        WriteCtx,
        Allocation,
        "load_balancer_cost_adjustment",
        load_balancer_cost_adjustment
    ),
    f64_col!(WriteCtx, Allocation, "shared_cost", shared_cost),
    f64_col!(WriteCtx, Allocation, "external_cost", external_cost),
    f64_col!(WriteCtx, Allocation, "total_cost", total_cost),
    f64_col!(WriteCtx, Allocation, "efficiency_score", total_efficiency),
];

/// `assets`: every field of [`Asset`] under Kubecost's names.
pub(crate) static ASSET_COLS: &[Col<WriteCtx, Asset>] = &[
    Col {
        name: "cluster",
        ty: "String",
        put: |c, _, b| put_str(b, &c.cluster),
    },
    Col {
        name: "version",
        ty: "UInt64",
        put: |c, _, b| put_u64(b, c.version),
    },
    Col {
        name: "slot",
        ty: "Int64",
        put: |c, r, b| put_i64(b, slot_of(c.window_of(r.window).start)),
    },
    Col {
        name: "window_start",
        ty: "DateTime('UTC')",
        put: |c, r, b| put_dt(b, c.window_of(r.window).start),
    },
    Col {
        name: "window_end",
        ty: "DateTime('UTC')",
        put: |c, r, b| put_dt(b, c.window_of(r.window).end),
    },
    str_col!(WriteCtx, Asset, "asset_key", key),
    Col {
        name: "asset_type",
        ty: "String",
        put: |_, r, b| put_str(b, r.asset_type.as_str()),
    },
    str_col!(WriteCtx, Asset, "source_cluster", cluster),
    str_col!(WriteCtx, Asset, "name", name),
    str_col!(WriteCtx, Asset, "provider", provider),
    str_col!(WriteCtx, Asset, "provider_id", provider_id),
    str_col!(WriteCtx, Asset, "account", account),
    str_col!(WriteCtx, Asset, "project", project),
    str_col!(WriteCtx, Asset, "service", service),
    str_col!(WriteCtx, Asset, "category", category),
    Col {
        name: "labels",
        ty: "String",
        put: |_, r, b| put_str(b, &labels_json(&r.labels)),
    },
    str_col!(WriteCtx, Asset, "node_type", node_type),
    str_col!(WriteCtx, Asset, "zone", zone),
    Col {
        name: "run_start",
        ty: "Int64",
        put: |_, r, b| put_i64(b, r.start),
    },
    Col {
        name: "run_end",
        ty: "Int64",
        put: |_, r, b| put_i64(b, r.end),
    },
    Col {
        name: "null_fields",
        ty: "UInt32",
        put: |_, r, b| put_u32(b, r.null_fields),
    },
    f64_col!(WriteCtx, Asset, "minutes", minutes),
    f64_col!(WriteCtx, Asset, "cpu_cores", cpu_cores),
    f64_col!(WriteCtx, Asset, "ram_bytes", ram_bytes),
    f64_col!(WriteCtx, Asset, "cpu_core_hours", cpu_core_hours),
    f64_col!(WriteCtx, Asset, "ram_byte_hours", ram_byte_hours),
    f64_col!(WriteCtx, Asset, "gpu_hours", gpu_hours),
    f64_col!(WriteCtx, Asset, "gpu_count", gpu_count),
    f64_col!(WriteCtx, Asset, "cpu_cost", cpu_cost),
    f64_col!(WriteCtx, Asset, "ram_cost", ram_cost),
    f64_col!(WriteCtx, Asset, "gpu_cost", gpu_cost),
    f64_col!(WriteCtx, Asset, "preemptible", preemptible),
    f64_col!(WriteCtx, Asset, "discount", discount),
    f64_col!(WriteCtx, Asset, "bytes", bytes),
    f64_col!(WriteCtx, Asset, "byte_hours", byte_hours),
    f64_col!(WriteCtx, Asset, "cost", cost),
    f64_col!(WriteCtx, Asset, "adjustment", adjustment),
    f64_col!(WriteCtx, Asset, "credit", credit),
    f64_col!(WriteCtx, Asset, "total_cost", total_cost),
];

/// What the rows of a replaced list (budgets, savings, predictions) share, plus the position
/// of the row being written (kept to read the list back in order).
pub(crate) struct ListCtx {
    pub(crate) cluster: String,
    pub(crate) version: u64,
    pub(crate) fetched_at: i64,
    pub(crate) seq: u32,
}

/// The columns every replaced list starts with: cluster, version, seq, fetched_at.
pub(crate) fn list_head<T>() -> [Col<ListCtx, T>; 4] {
    [
        Col {
            name: "cluster",
            ty: "String",
            put: |c, _, b| put_str(b, &c.cluster),
        },
        Col {
            name: "version",
            ty: "UInt64",
            put: |c, _, b| put_u64(b, c.version),
        },
        Col {
            name: "seq",
            ty: "UInt32",
            put: |c, _, b| put_u32(b, c.seq),
        },
        Col {
            name: "fetched_at",
            ty: "Int64",
            put: |c, _, b| put_i64(b, c.fetched_at),
        },
    ]
}

/// Writes budget values as `[[category, [values...]], ...]` (the SQLite store's format).
pub(crate) fn budget_values_json(values: &[(String, Vec<String>)]) -> String {
    let mut s = String::from("[");
    for (i, (k, v)) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('[');
        json_string(&mut s, k);
        s.push(',');
        s.push_str(&strings_json(v));
        s.push(']');
    }
    s.push(']');
    s
}

type BudgetItem = Budget;
type SavingsItem = SavingsRecommendation;
type PredictionItem = SpecCostPrediction;

/// Columns of `budgets`.
pub(crate) fn budget_cols() -> Vec<Col<ListCtx, BudgetItem>> {
    let mut cols: Vec<Col<ListCtx, BudgetItem>> = list_head::<BudgetItem>().into_iter().collect();
    cols.extend([
        str_col!(ListCtx, BudgetItem, "budget_id", id),
        str_col!(ListCtx, BudgetItem, "name", name),
        str_col!(ListCtx, BudgetItem, "budget_type", budget_type),
        Col::<ListCtx, BudgetItem> {
            name: "values_json",
            ty: "String",
            put: |_, r, b| put_str(b, &budget_values_json(&r.values)),
        },
        str_col!(ListCtx, BudgetItem, "budget_interval", interval),
        Col::<ListCtx, BudgetItem> {
            name: "interval_day",
            ty: "UInt32",
            put: |_, r, b| put_u32(b, r.interval_day),
        },
        f64_col!(ListCtx, BudgetItem, "spend_limit", spend_limit),
        f64_col!(ListCtx, BudgetItem, "current_spend", current_spend),
        Col::<ListCtx, BudgetItem> {
            name: "window_start",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.window.start),
        },
        Col::<ListCtx, BudgetItem> {
            name: "window_end",
            ty: "Int64",
            put: |_, r, b| put_i64(b, r.window.end),
        },
    ]);
    cols
}

/// Columns of `savings`.
pub(crate) fn savings_cols() -> Vec<Col<ListCtx, SavingsItem>> {
    let mut cols: Vec<Col<ListCtx, SavingsItem>> = list_head::<SavingsItem>().into_iter().collect();
    cols.extend([
        Col::<ListCtx, SavingsItem> {
            name: "kind",
            ty: "String",
            put: |_, r, b| put_str(b, r.kind.as_str()),
        },
        str_col!(ListCtx, SavingsItem, "source_cluster", cluster),
        str_col!(ListCtx, SavingsItem, "namespace", namespace),
        str_col!(ListCtx, SavingsItem, "controller_kind", controller_kind),
        str_col!(ListCtx, SavingsItem, "controller", controller),
        str_col!(ListCtx, SavingsItem, "target", target),
        f64_col!(ListCtx, SavingsItem, "monthly_savings", monthly_savings),
        str_col!(ListCtx, SavingsItem, "detail", detail),
    ]);
    cols
}

/// The monthly-cost fields of a prediction, in column order.
pub(crate) const MONTHLY_FIELDS: [&str; 7] = [
    "total_monthly_rate",
    "cpu_monthly_rate",
    "ram_monthly_rate",
    "gpu_monthly_rate",
    "monthly_cpu_core_hours",
    "monthly_ram_byte_hours",
    "monthly_gpu_hours",
];

/// Returns the monthly-cost fields in [`MONTHLY_FIELDS`] order.
pub(crate) fn monthly_values(m: &kb_core::MonthlyCost) -> [f64; 7] {
    [
        m.total_monthly_rate,
        m.cpu_monthly_rate,
        m.ram_monthly_rate,
        m.gpu_monthly_rate,
        m.monthly_cpu_core_hours,
        m.monthly_ram_byte_hours,
        m.monthly_gpu_hours,
    ]
}

/// Names of the 21 cost columns of `predictions` (`before_*`, `after_*`, `change_*`).
pub(crate) fn prediction_cost_columns() -> Vec<String> {
    ["before", "after", "change"]
        .iter()
        .flat_map(|p| MONTHLY_FIELDS.iter().map(move |f| format!("{p}_{f}")))
        .collect()
}

/// Columns of `predictions` except the 21 costs, which [`encode_prediction`] appends.
pub(crate) fn prediction_head_cols() -> Vec<Col<ListCtx, PredictionItem>> {
    let mut cols: Vec<Col<ListCtx, PredictionItem>> =
        list_head::<PredictionItem>().into_iter().collect();
    cols.extend([
        str_col!(ListCtx, PredictionItem, "namespace", namespace),
        str_col!(ListCtx, PredictionItem, "controller_kind", controller_kind),
        str_col!(ListCtx, PredictionItem, "controller_name", controller_name),
    ]);
    cols
}

/// Appends one prediction row: the head columns, then the 21 costs.
pub(crate) fn encode_prediction(ctx: &ListCtx, item: &PredictionItem, out: &mut Vec<u8>) {
    encode(&prediction_head_cols(), ctx, item, out);
    for m in [&item.cost_before, &item.cost_after, &item.cost_change] {
        for v in monthly_values(m) {
            put_f64(out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers_escape() {
        let l = vec![
            ("app".to_string(), "a\"b".to_string()),
            ("x".to_string(), "\u{1f}\\".to_string()),
        ];
        let s = labels_json(&l);
        assert_eq!(s, r#"{"app":"a\"b","x":"\u001f\\"}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["x"], "\u{1f}\\");
        assert_eq!(strings_json(&[]), "[]");
        assert_eq!(
            budget_values_json(&[("namespace".into(), vec!["a".into()])]),
            r#"[["namespace",["a"]]]"#
        );
    }

    #[test]
    fn allocation_row_has_every_column() {
        let ctx = WriteCtx {
            cluster: "c".into(),
            version: 1,
            window: Window {
                start: 0,
                end: 3600,
            },
            resolution: "1h",
        };
        let mut out = Vec::new();
        encode(ALLOCATION_COLS, &ctx, &Allocation::default(), &mut out);
        let floats = ALLOCATION_COLS.iter().filter(|c| c.ty == "Float64").count();
        // Every cost and quantity of the model is a column.
        assert_eq!(floats, 40);
        let mut names: Vec<&str> = ALLOCATION_COLS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALLOCATION_COLS.len(), "duplicate column");
        assert_eq!(slot_of(7199), 3600);
        assert_eq!(slot_of(-1), -3600);
    }
}
