//! SQL text helpers and the cost query behind [`kb_pipeline::ports::CostReader::costs`].
//!
//! Values are bound on the client side (18.16 has no query parameters): strings through
//! [`lit`], numbers formatted from Rust integers. Column aliases never equal a column name,
//! because a ClickHouse alias is visible in the whole query (`'' AS namespace` would change
//! what `WHERE namespace = ...` means).

use kb_pipeline::ports::{CostQuery, CostRow, Granularity, GroupBy};

use crate::rowbinary::{DecodeError, Reader};
use crate::rows::slot_of;
use crate::schema::Layout;

/// Quotes a string literal: `'...'` with `\` and `'` escaped.
pub(crate) fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `toDateTime(ts)` with `ts` clamped to the `DateTime` range.
pub(crate) fn dt(ts: i64) -> String {
    format!("toDateTime({})", ts.clamp(0, i64::from(u32::MAX)))
}

/// The visibility rule: `(cluster, slot, version) IN (owners of the slots)`, limited to the
/// slots in `[from, to)` and to one cluster when given (see the crate docs).
pub(crate) fn visible(
    layout: &Layout,
    endpoint: &str,
    cluster: Option<&str>,
    from: i64,
    to: i64,
) -> String {
    format!(
        "(cluster, slot, version) {} (SELECT cluster, slot, argMax(row_version, commit_version) \
         FROM {} WHERE endpoint = {}{} AND slot >= {} AND slot < {} GROUP BY cluster, slot)",
        layout.in_op(),
        layout.table("sync_state"),
        lit(endpoint),
        cluster
            .map(|c| format!(" AND cluster = {}", lit(c)))
            .unwrap_or_default(),
        slot_of(from),
        to,
    )
}

/// The weight of a row's efficiency: its CPU + RAM cost with adjustments, at least 0.
pub(crate) const EFFICIENCY_WEIGHT: &str =
    "greatest(cpu_cost + cpu_cost_adjustment + memory_cost + ram_cost_adjustment, 0.)";

/// Builds the cost query.
pub(crate) fn costs_sql(layout: &Layout, q: &CostQuery) -> String {
    let bucket = match q.granularity {
        None => format!("toInt64({})", q.range.start),
        Some(Granularity::Hour) => "intDiv(toInt64(toUInt32(window_start)), 3600) * 3600".into(),
        Some(Granularity::Day) => "intDiv(toInt64(toUInt32(window_start)), 86400) * 86400".into(),
        // Turned into the month's first second by `month_start` after the query.
        Some(Granularity::Month) => "toInt64(toYYYYMM(window_start))".into(),
    };
    let (ns, ctrl, pod) = match q.group_by {
        GroupBy::Cluster => (false, false, false),
        GroupBy::Namespace => (true, false, false),
        GroupBy::Controller => (true, true, false),
        GroupBy::Pod => (true, true, true),
    };
    let pick = |on: bool, col: &str| {
        if on {
            col.to_string()
        } else {
            "''".to_string()
        }
    };
    let mut filters = vec![
        format!("window_start >= {}", dt(q.range.start)),
        format!("window_start < {}", dt(q.range.end)),
    ];
    if let Some(c) = &q.cluster {
        filters.push(format!("cluster = {}", lit(c)));
    }
    if let Some(n) = &q.namespace {
        filters.push(format!("namespace = {}", lit(n)));
    }
    if !q.include_idle {
        filters.push("is_idle = 0".into());
    }
    filters.push(visible(
        layout,
        "allocation",
        q.cluster.as_deref(),
        q.range.start,
        q.range.end,
    ));
    let w = EFFICIENCY_WEIGHT;
    format!(
        "SELECT {bucket} AS b_, toString(cluster) AS cl_, {ns} AS ns_, {kind} AS ck_, \
         {ctrl} AS ct_, {pod} AS pd_, \
         sum(cpu_cost + cpu_cost_adjustment), sum(memory_cost + ram_cost_adjustment), \
         sum(gpu_cost + gpu_cost_adjustment), sum(storage_cost + pv_cost_adjustment), \
         sum(network_cost + network_cost_adjustment), \
         sum(load_balancer_cost + load_balancer_cost_adjustment), sum(shared_cost), \
         sum(external_cost), sumIf(total_cost, is_idle != 0), sum(total_cost), \
         sumIf(efficiency_score * {w}, is_idle = 0), sumIf({w}, is_idle = 0), count() \
         FROM {table} WHERE {filters} \
         GROUP BY b_, cl_, ns_, ck_, ct_, pd_ \
         ORDER BY b_, cl_, ns_, ct_, ck_, pd_ FORMAT RowBinary",
        ns = pick(ns, "namespace"),
        kind = pick(ctrl, "controller_kind"),
        ctrl = pick(ctrl, "controller"),
        pod = pick(pod, "pod"),
        table = layout.table("allocations"),
        filters = filters.join(" AND "),
    )
}

/// Decodes the rows of [`costs_sql`].
pub(crate) fn decode_costs(body: &[u8], q: &CostQuery) -> Result<Vec<CostRow>, DecodeError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    while !r.is_empty() {
        let bucket = r.i64()?;
        let bucket_start = match q.granularity {
            Some(Granularity::Month) => month_start(bucket)
                .ok_or_else(|| DecodeError(format!("bad month bucket {bucket}")))?,
            _ => bucket,
        };
        let mut row = CostRow {
            bucket_start,
            cluster: r.string()?,
            namespace: r.string()?,
            controller_kind: r.string()?,
            controller: r.string()?,
            pod: r.string()?,
            ..CostRow::default()
        };
        row.cpu_cost = r.f64()?;
        row.memory_cost = r.f64()?;
        row.gpu_cost = r.f64()?;
        row.storage_cost = r.f64()?;
        row.network_cost = r.f64()?;
        row.load_balancer_cost = r.f64()?;
        row.shared_cost = r.f64()?;
        row.external_cost = r.f64()?;
        row.idle_cost = r.f64()?;
        row.total_cost = r.f64()?;
        let num = r.f64()?;
        let den = r.f64()?;
        row.efficiency_score = if den > 0.0 { num / den } else { 0.0 };
        row.rows = r.u64()?;
        out.push(row);
    }
    Ok(out)
}

/// Unix seconds of the first instant of month `yyyymm` (UTC).
pub(crate) fn month_start(yyyymm: i64) -> Option<i64> {
    let (y, m) = (yyyymm / 100, yyyymm % 100);
    if !(1..=12).contains(&m) {
        return None;
    }
    Some(days_from_civil(y, m, 1) * 86_400)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_core::Window;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(lit("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(lit(""), "''");
        assert_eq!(dt(-5), "toDateTime(0)");
        assert_eq!(dt(i64::MAX), "toDateTime(4294967295)");
    }

    #[test]
    fn months() {
        assert_eq!(month_start(197001), Some(0));
        assert_eq!(month_start(202311), Some(1_698_796_800));
        assert_eq!(month_start(202403), Some(1_709_251_200));
        assert_eq!(month_start(202413), None);
    }

    #[test]
    fn cost_sql_filters_and_groups() {
        let layout = Layout {
            database: "db".into(),
            cluster: None,
        };
        let q = CostQuery {
            cluster: Some("c'1".into()),
            namespace: Some("ns".into()),
            range: Window {
                start: 3600,
                end: 7200,
            },
            granularity: Some(Granularity::Hour),
            group_by: GroupBy::Namespace,
            include_idle: false,
        };
        let sql = costs_sql(&layout, &q);
        assert!(sql.contains("cluster = 'c\\'1'"));
        assert!(sql.contains("namespace = 'ns'"));
        assert!(sql.contains("is_idle = 0"));
        assert!(sql.contains("namespace AS ns_, '' AS ck_"));
        assert!(sql.contains(
            "(cluster, slot, version) IN (SELECT cluster, slot, argMax(row_version, commit_version) \
             FROM `db`.sync_state WHERE endpoint = 'allocation' AND cluster = 'c\\'1' AND slot >= 3600 AND slot < 7200"
        ));
        assert!(sql.ends_with("FORMAT RowBinary"));
    }
}
