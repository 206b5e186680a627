//! Reads behind the endpoints: the aggregator's summaries first, raw allocations where they are
//! missing.
//!
//! A range is cut into pieces at the coarsest granularity that tiles it (whole months, whole
//! days, then the leftover hours; see [`pieces`]). Each piece reads the summaries of its
//! granularity; every bucket of the piece that has no summary at all (the aggregator has not
//! reached it) is read at the next finer granularity, and hours that still have none are read
//! from the stored allocations through [`CostReader`] (hourly buckets). So an answer is never
//! silently empty when allocations exist, and a range the aggregator covered costs one indexed
//! summary read per piece. The answer's `source` says what was used: `summaries`,
//! `allocations`, `mixed` or `none` (no data at all).
//!
//! Summaries and allocations agree on totals for the same range (the aggregator conserves
//! cost); they differ in attribution when the rules share idle or shared namespaces, which only
//! summaries reflect.

use std::collections::{BTreeMap, BTreeSet};

use kb_analytics::summary::{Dimension, Granularity as AGran};
use kb_core::Window;
use kb_core::model::{IDLE, UNALLOCATED};
use kb_pipeline::insights::SummaryQuery;
use kb_pipeline::ports::{CostQuery, CostRow, Granularity as PGran, GroupBy};

use crate::ApiState;
use crate::error::ApiError;
use crate::model::{Costs, fin};

/// Sums of one group with what the efficiency score needs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Acc {
    pub c: Costs,
    /// Numerator and denominator of the efficiency score.
    pub eff_num: f64,
    pub eff_den: f64,
}

impl Acc {
    pub(crate) fn add(&mut self, o: &Acc) {
        let (a, b) = (&mut self.c, &o.c);
        a.total_cost += b.total_cost;
        a.cpu_cost += b.cpu_cost;
        a.memory_cost += b.memory_cost;
        a.gpu_cost += b.gpu_cost;
        a.network_cost += b.network_cost;
        a.storage_cost += b.storage_cost;
        a.load_balancer_cost += b.load_balancer_cost;
        a.shared_cost += b.shared_cost;
        a.external_cost += b.external_cost;
        a.idle_cost += b.idle_cost;
        self.eff_num += o.eff_num;
        self.eff_den += o.eff_den;
    }

    fn from_summary(t: &kb_analytics::summary::CostTotals) -> Acc {
        Acc {
            c: Costs {
                total_cost: t.total_cost,
                cpu_cost: t.cpu_cost,
                memory_cost: t.memory_cost,
                gpu_cost: t.gpu_cost,
                network_cost: t.network_cost,
                storage_cost: t.storage_cost,
                load_balancer_cost: t.load_balancer_cost,
                shared_cost: t.shared_cost,
                external_cost: t.external_cost,
                idle_cost: t.idle_cost,
                efficiency_score: 0.0,
            },
            eff_num: t.usage_cost,
            eff_den: t.request_cost,
        }
    }

    /// From a raw cost row. A group of idle rows only (Kubecost's `__idle__`) keeps its cost
    /// in `idle_cost` alone, as in the summaries, so resource breakdowns never count idle
    /// twice; callers group raw rows at least by namespace so idle rows form their own group.
    pub(crate) fn from_row(r: &CostRow) -> Acc {
        if idle_only(r) {
            return Acc {
                c: Costs {
                    total_cost: r.total_cost,
                    idle_cost: r.idle_cost,
                    ..Costs::default()
                },
                eff_num: 0.0,
                eff_den: 0.0,
            };
        }
        let w = (r.cpu_cost + r.memory_cost).max(0.0);
        Acc {
            c: Costs {
                total_cost: r.total_cost,
                cpu_cost: r.cpu_cost,
                memory_cost: r.memory_cost,
                gpu_cost: r.gpu_cost,
                network_cost: r.network_cost,
                storage_cost: r.storage_cost,
                load_balancer_cost: r.load_balancer_cost,
                shared_cost: r.shared_cost,
                external_cost: r.external_cost,
                idle_cost: r.idle_cost,
                efficiency_score: 0.0,
            },
            eff_num: fin(r.efficiency_score) * w,
            eff_den: w,
        }
    }

    /// The public cost fields; with `include_idle = false`, idle is taken out of the total.
    pub(crate) fn costs(&self, include_idle: bool) -> Costs {
        let mut c = self.c;
        if !include_idle {
            c.total_cost -= c.idle_cost;
            c.idle_cost = 0.0;
        }
        c.efficiency_score = if self.eff_den > 0.0 {
            self.eff_num / self.eff_den
        } else {
            0.0
        };
        Costs {
            total_cost: fin(c.total_cost),
            cpu_cost: fin(c.cpu_cost),
            memory_cost: fin(c.memory_cost),
            gpu_cost: fin(c.gpu_cost),
            network_cost: fin(c.network_cost),
            storage_cost: fin(c.storage_cost),
            load_balancer_cost: fin(c.load_balancer_cost),
            shared_cost: fin(c.shared_cost),
            external_cost: fin(c.external_cost),
            idle_cost: fin(c.idle_cost),
            efficiency_score: fin(c.efficiency_score),
        }
    }
}

/// Whether a raw cost row holds only idle rows.
pub(crate) fn idle_only(r: &CostRow) -> bool {
    r.idle_cost != 0.0 && r.idle_cost == r.total_cost && r.pod.is_empty()
}

/// Which sources an answer used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SourceUse {
    pub summaries: bool,
    pub allocations: bool,
}

impl SourceUse {
    pub(crate) fn merge(&mut self, o: SourceUse) {
        self.summaries |= o.summaries;
        self.allocations |= o.allocations;
    }

    pub(crate) fn as_str(self) -> &'static str {
        match (self.summaries, self.allocations) {
            (true, false) => "summaries",
            (false, true) => "allocations",
            (true, true) => "mixed",
            (false, false) => "none",
        }
    }
}

/// One group in one bucket.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub bucket: i64,
    pub namespace: String,
    pub name: String,
    pub acc: Acc,
}

/// Cuts an hour-aligned range into `(granularity, piece)`s: leading hours up to a day
/// boundary, leading days up to a month boundary, whole months, trailing days, trailing hours.
pub(crate) fn pieces(r: Window) -> Vec<(AGran, Window)> {
    let mut out = Vec::new();
    let mut push = |g: AGran, s: i64, e: i64| {
        if s < e {
            out.push((g, Window { start: s, end: e }));
        }
    };
    let day = |t: i64| AGran::Day.bucket(t);
    // First whole day and end of the last whole day.
    let d0 = {
        let b = day(r.start);
        if b.start == r.start { b.start } else { b.end }
    };
    let d1 = day(r.end).start;
    if d0 >= d1 {
        push(AGran::Hour, r.start, r.end);
        return out;
    }
    push(AGran::Hour, r.start, d0);
    let month = |t: i64| AGran::Month.bucket(t);
    let m0 = {
        let b = month(d0);
        if b.start == d0 { b.start } else { b.end }
    };
    let m1 = month(d1).start;
    if m0 < m1 {
        push(AGran::Day, d0, m0);
        push(AGran::Month, m0, m1);
        push(AGran::Day, m1, d1);
    } else {
        push(AGran::Day, d0, d1);
    }
    push(AGran::Hour, d1, r.end);
    out
}

fn finer(g: AGran) -> Option<AGran> {
    match g {
        AGran::Month => Some(AGran::Day),
        AGran::Day => Some(AGran::Hour),
        AGran::Hour => None,
    }
}

fn group_by(d: Dimension) -> Option<GroupBy> {
    match d {
        // By namespace, so the idle rows form a group of their own (see `Acc::from_row`).
        Dimension::Cluster => Some(GroupBy::Namespace),
        Dimension::Namespace => Some(GroupBy::Namespace),
        Dimension::Controller => Some(GroupBy::Controller),
        _ => None,
    }
}

/// The summary-style key of a raw cost row in dimension `d`.
fn row_key(d: Dimension, r: &CostRow) -> (String, String) {
    let ns = if !r.namespace.is_empty() {
        r.namespace.clone()
    } else if idle_only(r) {
        IDLE.to_string()
    } else {
        UNALLOCATED.to_string()
    };
    match d {
        Dimension::Cluster => (String::new(), r.cluster.clone()),
        Dimension::Namespace => (ns.clone(), ns),
        _ => {
            let name = if r.controller_kind.is_empty() {
                r.controller.clone()
            } else {
                format!("{}/{}", r.controller_kind, r.controller)
            };
            (ns, name)
        }
    }
}

/// Reads dimension `d` of `cluster` over `piece` (aligned to `g`), summaries first, finer
/// summaries then allocations for the buckets without any.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch(
    st: &ApiState,
    cluster: &str,
    d: Dimension,
    g: AGran,
    piece: Window,
    namespace: Option<&str>,
    used: &mut SourceUse,
    out: &mut Vec<Item>,
) -> Result<(), ApiError> {
    let rows = st.insights.summaries(&SummaryQuery {
        cluster: Some(cluster.to_string()),
        dimension: d,
        granularity: g,
        range: piece,
        namespace: namespace.map(str::to_string),
        name: None,
    })?;
    let mut covered = BTreeSet::new();
    for s in rows {
        let s = s.summary;
        covered.insert(s.bucket.start);
        out.push(Item {
            bucket: s.bucket.start,
            namespace: s.namespace,
            name: s.name,
            acc: Acc::from_summary(&s.totals),
        });
        used.summaries = true;
    }
    // Contiguous runs of buckets without any summary.
    let mut runs: Vec<Window> = Vec::new();
    let mut t = piece.start;
    while t < piece.end {
        let b = g.bucket(t);
        if b.end <= t {
            break;
        }
        if !covered.contains(&b.start) {
            let e = b.end.min(piece.end);
            match runs.last_mut() {
                Some(last) if last.end == b.start.max(piece.start) => last.end = e,
                _ => runs.push(Window {
                    start: b.start.max(piece.start),
                    end: e,
                }),
            }
        }
        t = b.end;
    }
    for run in runs {
        match finer(g) {
            Some(f) => fetch(st, cluster, d, f, run, namespace, used, out)?,
            None => {
                let Some(gb) = group_by(d) else {
                    continue;
                };
                let rows = st.costs.costs(&CostQuery {
                    cluster: Some(cluster.to_string()),
                    namespace: namespace.map(str::to_string),
                    range: run,
                    granularity: Some(PGran::Hour),
                    group_by: gb,
                    include_idle: true,
                })?;
                for r in &rows {
                    let (namespace, name) = row_key(d, r);
                    out.push(Item {
                        bucket: r.bucket_start,
                        namespace,
                        name,
                        acc: Acc::from_row(r),
                    });
                    used.allocations = true;
                }
            }
        }
    }
    Ok(())
}

/// Totals per `(namespace, name)`.
pub(crate) type Groups = BTreeMap<(String, String), Acc>;

/// Totals per `(namespace, name)` of dimension `d` over `range`.
pub(crate) fn grouped(
    st: &ApiState,
    cluster: &str,
    d: Dimension,
    range: Window,
    namespace: Option<&str>,
) -> Result<(Groups, SourceUse), ApiError> {
    let mut used = SourceUse::default();
    let mut items = Vec::new();
    for (g, piece) in pieces(range) {
        fetch(st, cluster, d, g, piece, namespace, &mut used, &mut items)?;
    }
    let mut out = Groups::new();
    for it in items {
        out.entry((it.namespace, it.name)).or_default().add(&it.acc);
    }
    Ok((out, used))
}

/// The cluster's total over `range`.
pub(crate) fn cluster_total(
    st: &ApiState,
    cluster: &str,
    range: Window,
) -> Result<(Acc, SourceUse), ApiError> {
    let (g, used) = grouped(st, cluster, Dimension::Cluster, range, None)?;
    let mut acc = Acc::default();
    for a in g.values() {
        acc.add(a);
    }
    Ok((acc, used))
}

/// The cluster's cost series at `g` over `range`: one point per bucket overlapping the range,
/// clipped to it, so the points add up to the range's total.
pub(crate) fn series(
    st: &ApiState,
    cluster: &str,
    g: AGran,
    range: Window,
) -> Result<(Vec<(Window, Acc)>, SourceUse), ApiError> {
    let mut used = SourceUse::default();
    let mut points: BTreeMap<i64, (Window, Acc)> = BTreeMap::new();
    let first = g.bucket(range.start);
    let inner_start = if first.start == range.start {
        first.start
    } else {
        first.end
    };
    let inner_end = g.bucket(range.end).start;
    if inner_start < inner_end {
        let mut items = Vec::new();
        fetch(
            st,
            cluster,
            Dimension::Cluster,
            g,
            Window {
                start: inner_start,
                end: inner_end,
            },
            None,
            &mut used,
            &mut items,
        )?;
        let mut t = inner_start;
        while t < inner_end {
            let b = g.bucket(t);
            if b.end <= t {
                break;
            }
            points.insert(b.start, (b, Acc::default()));
            t = b.end;
        }
        for it in items {
            let b = g.bucket(it.bucket);
            points
                .entry(b.start)
                .or_insert((b, Acc::default()))
                .1
                .add(&it.acc);
        }
    }
    let partials = if inner_start < inner_end {
        vec![
            Window {
                start: range.start,
                end: inner_start,
            },
            Window {
                start: inner_end,
                end: range.end,
            },
        ]
    } else {
        vec![range]
    };
    for p in partials {
        if p.start >= p.end {
            continue;
        }
        let (acc, u) = cluster_total(st, cluster, p)?;
        used.merge(u);
        points.insert(p.start, (p, acc));
    }
    Ok((points.into_values().collect(), used))
}

/// Number of buckets of `g` overlapping `range` (an upper bound for months).
pub(crate) fn bucket_count(g: AGran, range: Window) -> i64 {
    let secs = range.end - range.start;
    match g {
        AGran::Hour => secs / 3_600 + 2,
        AGran::Day => secs / 86_400 + 2,
        AGran::Month => secs / (28 * 86_400) + 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_core::window::{DAY, HOUR};

    #[test]
    fn pieces_tile_the_range() {
        // 2024-05-30T05:00Z .. 2024-08-02T03:00Z
        let s = 1_717_045_200;
        let e = 1_722_567_600;
        let p = pieces(Window { start: s, end: e });
        let grans: Vec<AGran> = p.iter().map(|x| x.0).collect();
        assert_eq!(
            grans,
            vec![
                AGran::Hour,
                AGran::Day,
                AGran::Month,
                AGran::Day,
                AGran::Hour
            ]
        );
        let mut t = s;
        for (g, w) in &p {
            assert_eq!(w.start, t);
            assert_eq!(g.bucket(w.start).start, w.start);
            t = w.end;
        }
        assert_eq!(t, e);
        let p = pieces(Window {
            start: s,
            end: s + 3 * HOUR,
        });
        assert_eq!(p.len(), 1);
        let d = s - s % DAY;
        let p = pieces(Window {
            start: d,
            end: d + 3 * DAY,
        });
        assert_eq!(
            p,
            vec![(
                AGran::Day,
                Window {
                    start: d,
                    end: d + 3 * DAY
                }
            )]
        );
    }
}
