//! The three pages: overview, cluster, namespace. Each reads what it shows through the API
//! (concurrently where the reads are independent) and renders one HTML string.

use tokio::task::JoinSet;

use crate::api::{
    Alerts, Budgets, Cluster, Clusters, Costs, Failure, Forecasts, Namespaces, Optimization,
    Recommendation, Workloads,
};
use crate::chart::{self, PALETTE, SeriesDef};
use crate::html::{self, Crumb, Money, age, esc, pct, qs, seg};
use crate::{Dash, PageQuery};

/// Rows per page of the namespace table.
pub(crate) const PAGE_ROWS: usize = 50;
/// Namespaces drawn on their own in the by-namespace chart (the rest is "other").
const TOP_NAMESPACES: usize = 7;
/// Namespaces read per bucket for the by-namespace chart: a top namespace of the range that is
/// not among a bucket's largest this many is counted in that bucket's "other".
const BUCKET_NAMESPACES: &str = "200";
/// Most buckets the by-namespace chart reads (the picker's ranges have at most 31).
const MAX_BUCKETS: usize = 62;

fn cluster_path(c: &str) -> String {
    format!("/api/v1/costs/kubernetes/{}", seg(c))
}

fn cluster_href(c: &str, window: &str) -> String {
    format!("/clusters/{}{}", seg(c), qs(&[("window", window)]))
}

fn namespace_href(c: &str, ns: &str, window: &str) -> String {
    format!(
        "/clusters/{}/namespaces/{}{}",
        seg(c),
        seg(ns),
        qs(&[("window", window)])
    )
}

fn overview_href(window: &str) -> String {
    format!("/{}", qs(&[("window", window)]))
}

/// A short label of a bucket's start for the chart's x axis.
fn bucket_label(start: &str, granularity: &str) -> String {
    let Some(ts) = kb_core::window::parse_rfc3339(start) else {
        return start.to_string();
    };
    let Some(t) = chrono::DateTime::from_timestamp(ts, 0) else {
        return start.to_string();
    };
    match granularity {
        "hour" => t.format("%b %-d %H:00").to_string(),
        "month" => t.format("%b %Y").to_string(),
        _ => t.format("%b %-d").to_string(),
    }
}

/// `2024-06-01 00:00 – 2024-06-08 00:00 UTC`.
fn range_text(r: &crate::api::Range) -> String {
    let f = |s: &str| {
        kb_core::window::parse_rfc3339(s)
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or_else(|| s.to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    format!("{} – {} UTC", f(&r.start), f(&r.end))
}

fn kpi(s: &mut String, label: &str, value_html: &str) {
    w!(
        s,
        r#"<div><dt>{}</dt><dd>{value_html}</dd></div>"#,
        esc(label)
    );
}

fn freshness(secs: Option<i64>) -> String {
    match secs {
        None => r#"<span class="badge stale">never synced</span>"#.to_string(),
        Some(s) if s > html::STALE_SECS => {
            format!(r#"<span class="badge stale">stale</span> {}"#, esc(&age(s)))
        }
        Some(s) => esc(&age(s)),
    }
}

// ---------------------------------------------------------------------------------------------
// Overview.

pub(crate) async fn overview(
    d: &Dash,
    key: Option<&str>,
    q: &PageQuery,
) -> Result<String, Failure> {
    let w = q.window.as_str();
    let list: Clusters = d
        .api
        .get(key, "/api/v1/costs/kubernetes", &[("window", w)])
        .await?;
    let mut set = JoinSet::new();
    for (i, c) in list.clusters.iter().enumerate() {
        let api = d.api.clone();
        let key = key.map(str::to_string);
        let name = c.cluster.clone();
        let w = w.to_string();
        set.spawn(async move {
            let path = cluster_path(&name);
            let (detail, alerts) = tokio::join!(
                api.get::<Cluster>(key.as_deref(), &path, &[("window", &w)]),
                api.get::<Alerts>(key.as_deref(), &format!("{path}/alerts"), &[]),
            );
            (i, detail, alerts)
        });
    }
    let mut details: Vec<Option<(Cluster, Alerts)>> = vec![None; list.clusters.len()];
    while let Some(r) = set.join_next().await {
        let Ok((i, detail, alerts)) = r else {
            return Err(Failure {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message: "a read task failed".to_string(),
                retry_after: None,
            });
        };
        if let Some(slot) = details.get_mut(i) {
            *slot = Some((detail?, alerts?));
        }
    }
    let m = &d.money;
    let total: f64 = list.clusters.iter().map(|c| c.costs.total_cost).sum();
    let open: usize = details.iter().flatten().map(|(_, a)| a.open()).sum();
    let prev: f64 = details
        .iter()
        .flatten()
        .map(|(c, _)| c.trend.previous_total_cost)
        .sum();
    let mut s = String::with_capacity(16 * 1024);
    w!(
        s,
        r#"<div class="head"><h1>All clusters</h1>{}</div><p class="range-text">{} · {}</p>"#,
        html::range_picker("/", w, &[]),
        esc(html::range_label(w)),
        esc(&range_text(&list.window))
    );
    s.push_str(r#"<dl class="kpis">"#);
    kpi(
        &mut s,
        "Total cost",
        &format!(
            r#"<span id="fleet-total" data-value="{total}">{}</span>"#,
            esc(&m.fmt(total))
        ),
    );
    let rel = (prev > 0.0).then(|| (total - prev) / prev);
    kpi(
        &mut s,
        "vs previous period",
        &html::trend(rel, total - prev, m),
    );
    kpi(&mut s, "Clusters", &list.clusters.len().to_string());
    kpi(
        &mut s,
        "Open alerts",
        &format!(
            r#"<span class="{}">{open}</span>"#,
            if open > 0 { "alert" } else { "" }
        ),
    );
    s.push_str("</dl>");
    s.push_str(r#"<section aria-labelledby="h-clusters"><h2 id="h-clusters">Clusters</h2>"#);
    if list.clusters.is_empty() {
        s.push_str("<p>No cluster this key may see has data yet.</p></section>");
        return Ok(html::page("Overview", &[], key.is_some(), &s));
    }
    s.push_str(r#"<div class="table-wrap"><table class="data" id="clusters"><caption class="sr">Cost per cluster over the range</caption><thead><tr><th scope="col">Cluster</th><th scope="col" class="num">Total</th><th scope="col">vs previous period</th><th scope="col">Trend</th><th scope="col" class="num">Efficiency</th><th scope="col">Freshness</th><th scope="col" class="num">Open alerts</th></tr></thead><tbody>"#);
    for (c, det) in list.clusters.iter().zip(&details) {
        let (trend, spark, open) = match det {
            Some((cd, al)) => {
                let vals: Vec<f64> = cd.series.iter().map(|p| p.costs.total_cost).collect();
                let label = format!(
                    "cost per {} of {}: from {} to {}",
                    cd.granularity,
                    c.cluster,
                    m.fmt(vals.first().copied().unwrap_or(0.0)),
                    m.fmt(vals.last().copied().unwrap_or(0.0))
                );
                (
                    html::trend(cd.trend.relative_change, cd.trend.change, m),
                    chart::sparkline(&vals, &label),
                    al.open(),
                )
            }
            None => (String::new(), String::new(), 0),
        };
        w!(
            s,
            r#"<tr data-cluster="{cl}"><th scope="row"><a href="{href}">{cl}</a></th><td class="num total" data-value="{v}">{tot}</td><td>{trend}</td><td>{spark}</td><td class="num">{eff}</td><td>{fresh}</td><td class="num">{open}</td></tr>"#,
            cl = esc(&c.cluster),
            href = esc(&cluster_href(&c.cluster, w)),
            v = c.costs.total_cost,
            tot = esc(&m.fmt(c.costs.total_cost)),
            eff = esc(&pct(c.costs.efficiency_score)),
            fresh = freshness(c.freshness_seconds),
        );
    }
    s.push_str("</tbody></table></div></section>");
    Ok(html::page("Overview", &[], key.is_some(), &s))
}

// ---------------------------------------------------------------------------------------------
// Cluster.

pub(crate) async fn cluster(
    d: &Dash,
    key: Option<&str>,
    cluster: &str,
    q: &PageQuery,
) -> Result<String, Failure> {
    let w = q.window.as_str();
    let path = cluster_path(cluster);
    let filtering = !q.q.is_empty();
    let offset = ((q.page - 1) * PAGE_ROWS).to_string();
    let limit = PAGE_ROWS.to_string();
    let mut ns_params: Vec<(&str, &str)> = vec![
        ("window", w),
        ("sort", q.sort.as_str()),
        ("order", q.order.as_str()),
    ];
    if filtering {
        ns_params.push(("limit", "100000"));
    } else {
        ns_params.push(("limit", &limit));
        ns_params.push(("offset", &offset));
    }
    let ns_path = format!("{path}/namespaces");
    let (detail, namespaces, opt, budgets, forecasts, alerts) = tokio::join!(
        d.api.get::<Cluster>(key, &path, &[("window", w)]),
        d.api.get::<Namespaces>(key, &ns_path, &ns_params),
        d.api
            .get::<Optimization>(key, &format!("{path}/optimization"), &[]),
        d.api.get::<Budgets>(key, &format!("{path}/budgets"), &[]),
        d.api.get::<Forecasts>(
            key,
            &format!("{path}/forecast"),
            &[("dimension", "cluster")]
        ),
        d.api.get::<Alerts>(key, &format!("{path}/alerts"), &[]),
    );
    let (detail, namespaces, opt, budgets, forecasts, alerts) =
        (detail?, namespaces?, opt?, budgets?, forecasts?, alerts?);
    let by_ns = q.by == "namespace";
    let ns_chart = if by_ns {
        Some(namespace_series(d, key, &ns_path, &detail).await?)
    } else {
        None
    };
    let m = &d.money;
    let t = &detail.totals;
    let mut s = String::with_capacity(64 * 1024);
    let keep: Vec<(&str, &str)> = vec![("by", if by_ns { "namespace" } else { "" })];
    let base = format!("/clusters/{}", seg(cluster));
    w!(
        s,
        r#"<div class="head"><h1>{}</h1>{}</div><p class="range-text">{} · {}</p>"#,
        esc(cluster),
        html::range_picker(&base, w, &keep),
        esc(html::range_label(w)),
        esc(&range_text(&detail.window))
    );
    // Key figures.
    s.push_str(r#"<dl class="kpis">"#);
    kpi(
        &mut s,
        "Total cost",
        &format!(
            r#"<span id="cluster-total" data-value="{}">{}</span>"#,
            t.total_cost,
            esc(&m.fmt(t.total_cost))
        ),
    );
    kpi(
        &mut s,
        "vs previous period",
        &html::trend(detail.trend.relative_change, detail.trend.change, m),
    );
    kpi(&mut s, "Efficiency", &esc(&pct(t.efficiency_score)));
    kpi(&mut s, "Idle cost", &esc(&m.fmt(t.idle_cost)));
    kpi(
        &mut s,
        "Potential savings / month",
        &format!(
            r##"<a href="#h-savings">{}</a>"##,
            esc(&m.fmt(opt.total_estimated_monthly_savings))
        ),
    );
    let f30 = forecasts.forecasts.iter().find(|f| f.horizon_days == 30);
    kpi(
        &mut s,
        "Forecast, next 30 d",
        &f30.map_or_else(|| "–".to_string(), |f| esc(&m.fmt(f.total))),
    );
    kpi(&mut s, "Open alerts", &alerts.open().to_string());
    s.push_str("</dl>");

    // Cost over time.
    let labels: Vec<String> = detail
        .series
        .iter()
        .map(|p| bucket_label(&p.start, &detail.granularity))
        .collect();
    let href_by = |by: &str| {
        format!(
            "{base}{}#h-time",
            qs(&[
                ("window", w),
                ("by", if by == "namespace" { by } else { "" })
            ])
        )
    };
    w!(
        s,
        r#"<section aria-labelledby="h-time"><div class="head"><h2 id="h-time">Cost over time, per {}</h2><nav class="toggle" aria-label="Stack the chart by"><ul><li><a href="{}"{}>By resource</a></li><li><a href="{}"{}>By namespace</a></li></ul></nav></div>"#,
        esc(&detail.granularity),
        esc(&href_by("resource")),
        if by_ns { "" } else { r#" aria-current="page""# },
        esc(&href_by("namespace")),
        if by_ns { r#" aria-current="page""# } else { "" },
    );
    let (series, values) = match &ns_chart {
        Some((names, vals)) => (
            names
                .iter()
                .enumerate()
                .map(|(i, n)| SeriesDef {
                    name: n.clone(),
                    color: PALETTE.get(i).copied().unwrap_or("#bab0ac"),
                })
                .collect::<Vec<_>>(),
            vals.clone(),
        ),
        None => {
            // Only the resources that cost something in the range.
            let sums = t.by_resource();
            let used: Vec<usize> = (0..Costs::RESOURCES.len())
                .filter(|i| sums.get(*i).is_some_and(|v| *v != 0.0))
                .collect();
            (
                used.iter()
                    .map(|i| SeriesDef {
                        name: resource_name(Costs::RESOURCES.get(*i).copied().unwrap_or("")),
                        color: PALETTE.get(*i).copied().unwrap_or("#bab0ac"),
                    })
                    .collect(),
                detail
                    .series
                    .iter()
                    .map(|p| {
                        let r = p.costs.by_resource();
                        used.iter()
                            .map(|i| r.get(*i).copied().unwrap_or(0.0))
                            .collect()
                    })
                    .collect(),
            )
        }
    };
    let title = format!(
        "Cost of {cluster} per {}, stacked by {}",
        detail.granularity,
        if by_ns { "namespace" } else { "resource" }
    );
    s.push_str(&chart::stacked_bars(
        "time", &title, &labels, &series, &values, m,
    ));
    // The same numbers as a table.
    s.push_str(r#"<details class="data-table"><summary>Chart data as a table</summary><div class="table-wrap"><table class="data"><thead><tr><th scope="col">Period</th>"#);
    for d in &series {
        w!(s, r#"<th scope="col" class="num">{}</th>"#, esc(&d.name));
    }
    s.push_str(r#"<th scope="col" class="num">Total</th></tr></thead><tbody>"#);
    for (lab, vals) in labels.iter().zip(&values) {
        w!(s, r#"<tr><th scope="row">{}</th>"#, esc(lab));
        for v in vals {
            w!(s, r#"<td class="num">{}</td>"#, esc(&m.fmt(*v)));
        }
        w!(
            s,
            r#"<td class="num">{}</td></tr>"#,
            esc(&m.fmt(vals.iter().sum()))
        );
    }
    s.push_str("</tbody></table></div></details></section>");

    namespace_table(&mut s, cluster, q, &namespaces, m);
    recommendations(&mut s, cluster, w, &opt, m, None);
    anomalies(&mut s, &detail, m);
    budgets_section(&mut s, &budgets, m);
    forecast_section(&mut s, &forecasts, m);

    let crumbs: Vec<Crumb> = vec![
        ("Overview".to_string(), Some(overview_href(w))),
        (cluster.to_string(), None),
    ];
    Ok(html::page(cluster, &crumbs, key.is_some(), &s))
}

fn resource_name(r: &str) -> String {
    match r {
        "cpu" => "CPU",
        "memory" => "Memory",
        "gpu" => "GPU",
        "storage" => "Storage",
        "network" => "Network",
        "load_balancer" => "Load balancer",
        "shared" => "Shared",
        "external" => "External",
        "idle" => "Idle",
        other => other,
    }
    .to_string()
}

/// The by-namespace chart: the range's largest namespaces and "other", per bucket of the
/// cluster's series (one namespaces read per bucket, concurrently).
async fn namespace_series(
    d: &Dash,
    key: Option<&str>,
    ns_path: &str,
    detail: &Cluster,
) -> Result<(Vec<String>, Vec<Vec<f64>>), Failure> {
    let top: Namespaces = d
        .api
        .get(
            key,
            ns_path,
            &[
                ("start", detail.window.start.as_str()),
                ("end", detail.window.end.as_str()),
                ("sort", "total_cost"),
                ("order", "desc"),
                ("limit", &TOP_NAMESPACES.to_string()),
            ],
        )
        .await?;
    let names: Vec<String> = top.namespaces.iter().map(|n| n.namespace.clone()).collect();
    let mut set = JoinSet::new();
    for (i, p) in detail.series.iter().take(MAX_BUCKETS).enumerate() {
        let api = d.api.clone();
        let key = key.map(str::to_string);
        let path = ns_path.to_string();
        let (start, end) = (p.start.clone(), p.end.clone());
        set.spawn(async move {
            let r = api
                .get::<Namespaces>(
                    key.as_deref(),
                    &path,
                    &[
                        ("start", start.as_str()),
                        ("end", end.as_str()),
                        ("sort", "total_cost"),
                        ("order", "desc"),
                        ("limit", BUCKET_NAMESPACES),
                    ],
                )
                .await;
            (i, r)
        });
    }
    let n = detail.series.len().min(MAX_BUCKETS);
    let mut values = vec![vec![0.0; names.len() + 1]; n];
    while let Some(r) = set.join_next().await {
        let Ok((i, r)) = r else {
            continue;
        };
        let b = r?;
        let Some(row) = values.get_mut(i) else {
            continue;
        };
        let mut named = 0.0;
        for ns in &b.namespaces {
            if let Some(j) = names.iter().position(|n| *n == ns.namespace) {
                if let Some(v) = row.get_mut(j) {
                    *v = ns.total_cost;
                    named += ns.total_cost;
                }
            }
        }
        if let Some(other) = row.last_mut() {
            *other = (b.total_cost - named).max(0.0);
        }
    }
    let mut series = names;
    series.push("other".to_string());
    Ok((series, values))
}

fn namespace_table(s: &mut String, cluster: &str, q: &PageQuery, ns: &Namespaces, m: &Money) {
    let w = q.window.as_str();
    let base = format!("/clusters/{}", seg(cluster));
    let needle = q.q.to_lowercase();
    let (rows, count): (Vec<&crate::api::NamespaceRow>, usize) = if q.q.is_empty() {
        (ns.namespaces.iter().collect(), ns.count as usize)
    } else {
        let all: Vec<_> = ns
            .namespaces
            .iter()
            .filter(|r| r.namespace.to_lowercase().contains(&needle))
            .collect();
        let n = all.len();
        (
            all.into_iter()
                .skip((q.page - 1) * PAGE_ROWS)
                .take(PAGE_ROWS)
                .collect(),
            n,
        )
    };
    let by = if q.by == "namespace" { "namespace" } else { "" };
    w!(
        s,
        r#"<section aria-labelledby="h-ns"><h2 id="h-ns">Namespaces</h2><form class="filter" method="get" action="{}#h-ns" role="search"><label for="q">Filter namespaces</label><input id="q" name="q" type="search" value="{}" placeholder="name contains"><input type="hidden" name="window" value="{}"><input type="hidden" name="sort" value="{}"><input type="hidden" name="order" value="{}">"#,
        esc(&base),
        esc(&q.q),
        esc(w),
        esc(&q.sort),
        esc(&q.order),
    );
    if !by.is_empty() {
        w!(s, r#"<input type="hidden" name="by" value="{by}">"#);
    }
    s.push_str(r#"<button type="submit">Filter</button>"#);
    if !q.q.is_empty() {
        w!(
            s,
            r##"<a href="{}#h-ns">Clear filter</a>"##,
            esc(&format!(
                "{base}{}",
                qs(&[
                    ("window", w),
                    ("sort", &q.sort),
                    ("order", &q.order),
                    ("by", by)
                ])
            ))
        );
    }
    s.push_str("</form>");
    let first = if count == 0 {
        0
    } else {
        (q.page - 1) * PAGE_ROWS + 1
    };
    let last = ((q.page - 1) * PAGE_ROWS + rows.len()).min(count);
    w!(
        s,
        r#"<p class="count" id="ns-count" aria-live="polite">{}{first}–{last} of {count} namespaces, {} in all</p>"#,
        if q.q.is_empty() {
            String::new()
        } else {
            format!("Matching “{}”: ", esc(&q.q))
        },
        esc(&m.fmt(ns.total_cost)),
    );
    let cols: [(&str, &str, bool); 10] = [
        ("name", "Namespace", false),
        ("total_cost", "Total", true),
        ("", "Share", true),
        ("cpu_cost", "CPU", true),
        ("gpu_cost", "GPU", true),
        ("memory_cost", "Memory", true),
        ("storage_cost", "Storage", true),
        ("network_cost", "Network", true),
        ("idle_cost", "Idle", true),
        ("efficiency_score", "Efficiency", true),
    ];
    s.push_str(r#"<div class="table-wrap"><table class="data" id="namespaces"><caption class="sr">Namespaces of the cluster; column headers sort the table</caption><thead><tr>"#);
    for (key, label, num) in cols {
        let cls = if num { r#" class="num""# } else { "" };
        if key.is_empty() {
            w!(s, r#"<th scope="col"{cls}>{label}</th>"#);
            continue;
        }
        let current = q.sort == key;
        let next_order = if current {
            if q.order == "asc" { "desc" } else { "asc" }
        } else if key == "name" {
            "asc"
        } else {
            "desc"
        };
        let aria = if current {
            if q.order == "asc" {
                r#" aria-sort="ascending""#
            } else {
                r#" aria-sort="descending""#
            }
        } else {
            ""
        };
        let mark = match (current, q.order.as_str()) {
            (true, "asc") => r#" <span aria-hidden="true">▲</span>"#,
            (true, _) => r#" <span aria-hidden="true">▼</span>"#,
            _ => "",
        };
        let href = format!(
            "{base}{}#h-ns",
            qs(&[
                ("window", w),
                ("sort", key),
                ("order", next_order),
                ("q", &q.q),
                ("by", by)
            ])
        );
        w!(
            s,
            r#"<th scope="col"{cls}{aria}><a href="{}">{label}{mark}</a></th>"#,
            esc(&href)
        );
    }
    s.push_str("</tr></thead><tbody>");
    for r in &rows {
        let name = if r.namespace == "__idle__" {
            format!(r#"<span class="pseudo">{}</span>"#, esc(&r.namespace))
        } else {
            format!(
                r#"<a href="{}">{}</a>"#,
                esc(&namespace_href(cluster, &r.namespace, w)),
                esc(&r.namespace)
            )
        };
        w!(
            s,
            r#"<tr data-namespace="{}"><th scope="row">{name}</th><td class="num" data-value="{}">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(&r.namespace),
            r.total_cost,
            esc(&m.fmt(r.total_cost)),
            esc(&pct(r.share)),
            esc(&m.fmt(r.cpu_cost)),
            esc(&m.fmt(r.gpu_cost)),
            esc(&m.fmt(r.memory_cost)),
            esc(&m.fmt(r.storage_cost)),
            esc(&m.fmt(r.network_cost)),
            esc(&m.fmt(r.idle_cost)),
            esc(&pct(r.efficiency_score)),
        );
    }
    if rows.is_empty() {
        s.push_str(r#"<tr><td colspan="10">No namespace matches.</td></tr>"#);
    }
    s.push_str("</tbody></table></div>");
    let pages = count.div_ceil(PAGE_ROWS).max(1);
    if pages > 1 {
        s.push_str(r#"<nav class="pager" aria-label="Namespace pages"><ul>"#);
        let link = |p: usize| {
            let ps = p.to_string();
            format!(
                "{base}{}#h-ns",
                qs(&[
                    ("window", w),
                    ("sort", &q.sort),
                    ("order", &q.order),
                    ("q", &q.q),
                    ("by", by),
                    ("page", if p > 1 { &ps } else { "" })
                ])
            )
        };
        if q.page > 1 {
            w!(
                s,
                r#"<li><a href="{}" rel="prev">Previous</a></li>"#,
                esc(&link(q.page - 1))
            );
        }
        w!(s, "<li>Page {} of {pages}</li>", q.page.min(pages));
        if q.page < pages {
            w!(
                s,
                r#"<li><a href="{}" rel="next">Next</a></li>"#,
                esc(&link(q.page + 1))
            );
        }
        s.push_str("</ul></nav>");
    }
    s.push_str("</section>");
}

fn kind_name(k: &str) -> &str {
    match k {
        "request_sizing" => "Right-size requests",
        "cluster_sizing" => "Resize the cluster",
        "abandoned_workload" => "Abandoned workload",
        "node_pool_sizing" => "Resize a node pool",
        "spot_candidate" => "Run on spot nodes",
        other => other,
    }
}

/// Recommendations with their savings (all of the cluster, or one namespace's).
fn recommendations(
    s: &mut String,
    cluster: &str,
    w: &str,
    opt: &Optimization,
    m: &Money,
    only_ns: Option<&str>,
) {
    let recs: Vec<&Recommendation> = opt
        .recommendations
        .iter()
        .filter(|r| only_ns.is_none_or(|n| r.namespace == n))
        .collect();
    let total: f64 = recs.iter().map(|r| r.estimated_monthly_savings).sum();
    w!(
        s,
        r#"<section aria-labelledby="h-savings"><h2 id="h-savings">Optimisation</h2><p class="lead">{} recommendation{}, <strong id="savings-total">{}</strong> a month in estimated savings.</p>"#,
        recs.len(),
        if recs.len() == 1 { "" } else { "s" },
        esc(&m.fmt(total))
    );
    if recs.is_empty() {
        s.push_str("</section>");
        return;
    }
    s.push_str(r#"<div class="table-wrap"><table class="data"><thead><tr><th scope="col">Recommendation</th><th scope="col">Source</th><th scope="col">Namespace</th><th scope="col">Workload</th><th scope="col">Detail</th><th scope="col" class="num">Savings / month</th></tr></thead><tbody>"#);
    const SHOWN: usize = 25;
    for r in recs.iter().take(SHOWN) {
        let ns = if r.namespace.is_empty() || only_ns.is_some() {
            esc(&r.namespace)
        } else {
            format!(
                r#"<a href="{}">{}</a>"#,
                esc(&namespace_href(cluster, &r.namespace, w)),
                esc(&r.namespace)
            )
        };
        let workload = [
            r.controller_kind.as_str(),
            r.controller.as_str(),
            r.target.as_str(),
        ]
        .iter()
        .filter(|x| !x.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" / ");
        w!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td>{ns}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
            esc(kind_name(&r.kind)),
            esc(if r.source == "bridge" {
                "bridge"
            } else {
                "Kubecost"
            }),
            esc(&workload),
            esc(&r.description),
            esc(&m.fmt(r.estimated_monthly_savings))
        );
    }
    s.push_str("</tbody></table></div>");
    if recs.len() > SHOWN {
        w!(
            s,
            r#"<p class="more">{} more, largest savings shown first (the API's <code>/optimization</code> lists all).</p>"#,
            recs.len() - SHOWN
        );
    }
    s.push_str("</section>");
}

fn anomalies(s: &mut String, detail: &Cluster, m: &Money) {
    s.push_str(r#"<section aria-labelledby="h-anomalies"><h2 id="h-anomalies">Anomalies</h2>"#);
    if detail.anomalies.is_empty() {
        s.push_str("<p>No cost anomaly detected in this range.</p></section>");
        return;
    }
    s.push_str(r#"<div class="table-wrap"><table class="data"><thead><tr><th scope="col">When (UTC)</th><th scope="col">Severity</th><th scope="col">What</th><th scope="col">Detector</th><th scope="col" class="num">Expected</th><th scope="col" class="num">Actual</th></tr></thead><tbody>"#);
    const SHOWN: usize = 20;
    for a in detail.anomalies.iter().take(SHOWN) {
        let what = if a.namespace.is_empty() || a.namespace == a.name {
            format!("{} {}", a.dimension, a.name)
        } else {
            format!("{} {}/{}", a.dimension, a.namespace, a.name)
        };
        let when = range_text(&crate::api::Range {
            start: a.start.clone(),
            end: a.end.clone(),
        });
        w!(
            s,
            r#"<tr><td>{}</td><td><span class="badge {}">{}</span></td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(when.trim_end_matches(" UTC")),
            esc(&a.severity),
            esc(&a.severity),
            esc(&what),
            esc(&a.detector),
            esc(&m.fmt(a.expected)),
            esc(&m.fmt(a.actual)),
        );
    }
    s.push_str("</tbody></table></div>");
    if detail.anomalies.len() > SHOWN {
        w!(
            s,
            r#"<p class="more">{} more (newest shown first).</p>"#,
            detail.anomalies.len() - SHOWN
        );
    }
    s.push_str("</section>");
}

fn budgets_section(s: &mut String, b: &Budgets, m: &Money) {
    s.push_str(r#"<section aria-labelledby="h-budgets"><h2 id="h-budgets">Budgets</h2>"#);
    if b.budgets.is_empty() {
        s.push_str("<p>No budget (Kubecost's, or <code>budgets:</code> in the bridge's config) applies to this cluster.</p></section>");
        return;
    }
    s.push_str(r#"<div class="table-wrap"><table class="data"><thead><tr><th scope="col">Budget</th><th scope="col">Scope</th><th scope="col">Interval</th><th scope="col" class="num">Spent</th><th scope="col" class="num">Limit</th><th scope="col">Used</th><th scope="col" class="num">Projected overrun</th></tr></thead><tbody>"#);
    for x in &b.budgets {
        let scope = x
            .scope
            .iter()
            .map(|sc| format!("{}: {}", sc.category, sc.values.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        let used = match x.utilization {
            Some(u) => format!(
                r#"<meter min="0" max="1" low="0.8" high="1" optimum="0" value="{}">{}</meter> <span class="{}">{}</span>"#,
                u.clamp(0.0, 1.0),
                esc(&pct(u)),
                if u >= 1.0 { "alert" } else { "" },
                esc(&pct(u))
            ),
            None => "–".to_string(),
        };
        w!(
            s,
            r#"<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{used}</td><td class="num">{}</td></tr>"#,
            esc(&if x.source == "bridge" {
                format!("{} (config)", x.name)
            } else {
                x.name.clone()
            }),
            esc(&scope),
            esc(&x.interval),
            esc(&m.fmt(x.current_spend)),
            esc(&m.fmt(x.spend_limit)),
            x.projected_overrun
                .map_or_else(|| "–".to_string(), |o| esc(&m.fmt(o))),
        );
    }
    s.push_str("</tbody></table></div></section>");
}

fn forecast_section(s: &mut String, f: &Forecasts, m: &Money) {
    s.push_str(r#"<section aria-labelledby="h-forecast"><h2 id="h-forecast">Forecast</h2>"#);
    // The newest forecast per horizon.
    let mut shown: Vec<&crate::api::Forecast> = Vec::new();
    for x in f.forecasts.iter().filter(|x| x.dimension == "cluster") {
        match shown.iter().position(|y| y.horizon_days == x.horizon_days) {
            Some(i) => {
                if shown.get(i).is_some_and(|y| y.made_at < x.made_at) {
                    if let Some(slot) = shown.get_mut(i) {
                        *slot = x;
                    }
                }
            }
            None => shown.push(x),
        }
    }
    shown.sort_by_key(|x| x.horizon_days);
    if shown.is_empty() {
        s.push_str(
            "<p>No forecast yet (the aggregator makes them from a week of history).</p></section>",
        );
        return;
    }
    s.push_str(r#"<div class="table-wrap"><table class="data"><thead><tr><th scope="col">Horizon</th><th scope="col" class="num">Forecast</th><th scope="col">Likely range</th><th scope="col" class="num">Kubecost's spec-cost prediction (per month)</th><th scope="col">Made at (UTC)</th></tr></thead><tbody>"#);
    for x in shown {
        let made = kb_core::window::parse_rfc3339(&x.made_at)
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or_else(
                || x.made_at.clone(),
                |t| t.format("%Y-%m-%d %H:%M").to_string(),
            );
        w!(
            s,
            r#"<tr><th scope="row">next {} days</th><td class="num">{}</td><td>{} – {}</td><td class="num">{}</td><td>{}</td></tr>"#,
            x.horizon_days,
            esc(&m.fmt(x.total)),
            esc(&m.fmt(x.lower)),
            esc(&m.fmt(x.upper)),
            x.kubecost_prediction.as_ref().map_or_else(
                || "–".to_string(),
                |k| esc(&format!(
                    "{} ({}{})",
                    m.fmt(k.monthly_cost),
                    if k.monthly_change >= 0.0 { "+" } else { "−" },
                    m.fmt(k.monthly_change.abs())
                ))
            ),
            esc(&made)
        );
    }
    s.push_str("</tbody></table></div></section>");
}

// ---------------------------------------------------------------------------------------------
// Namespace.

pub(crate) async fn namespace(
    d: &Dash,
    key: Option<&str>,
    cluster: &str,
    namespace: &str,
    q: &PageQuery,
) -> Result<String, Failure> {
    let w = q.window.as_str();
    let path = cluster_path(cluster);
    let (wl, opt) = tokio::join!(
        d.api.get::<Workloads>(
            key,
            &format!("{path}/workloads"),
            &[
                ("window", w),
                ("namespace", namespace),
                ("pods", "true"),
                ("limit", "1000")
            ],
        ),
        d.api
            .get::<Optimization>(key, &format!("{path}/optimization"), &[]),
    );
    let (wl, opt) = (wl?, opt?);
    let m = &d.money;
    let pods: usize = wl.workloads.iter().map(|x| x.pods.len()).sum();
    let base = format!("/clusters/{}/namespaces/{}", seg(cluster), seg(namespace));
    let mut s = String::with_capacity(32 * 1024);
    w!(
        s,
        r#"<div class="head"><h1><span class="sub">Namespace</span> {}</h1>{}</div><p class="range-text">{} · cluster <a href="{}">{}</a></p>"#,
        esc(namespace),
        html::range_picker(&base, w, &[]),
        esc(html::range_label(w)),
        esc(&cluster_href(cluster, w)),
        esc(cluster)
    );
    s.push_str(r#"<dl class="kpis">"#);
    kpi(
        &mut s,
        "Total cost",
        &format!(
            r#"<span id="namespace-total" data-value="{}">{}</span>"#,
            wl.total_cost,
            esc(&m.fmt(wl.total_cost))
        ),
    );
    kpi(&mut s, "Workloads", &wl.count.to_string());
    kpi(&mut s, "Pods", &pods.to_string());
    s.push_str("</dl>");
    s.push_str(r#"<section aria-labelledby="h-workloads"><h2 id="h-workloads">Workloads</h2>"#);
    if wl.workloads.is_empty() {
        s.push_str("<p>No workload of this namespace ran in this range.</p>");
    } else {
        s.push_str(r#"<div class="table-wrap"><table class="data" id="workloads"><caption class="sr">Workloads of the namespace, largest first; each lists its pods</caption><thead><tr><th scope="col">Workload</th><th scope="col">Kind</th><th scope="col" class="num">Total</th><th scope="col" class="num">CPU</th><th scope="col" class="num">GPU</th><th scope="col" class="num">Memory</th><th scope="col" class="num">Storage</th><th scope="col" class="num">Network</th><th scope="col" class="num">Efficiency</th><th scope="col">Pods</th></tr></thead><tbody>"#);
        for x in &wl.workloads {
            let name = if x.controller.is_empty() {
                "(no controller)"
            } else {
                x.controller.as_str()
            };
            let mut pods_html = format!(
                r#"<details><summary>{} pod{}</summary><ul class="pods">"#,
                x.pods.len(),
                if x.pods.len() == 1 { "" } else { "s" }
            );
            for p in &x.pods {
                w!(
                    pods_html,
                    r#"<li><span class="pod">{}</span> <span class="num">{}</span></li>"#,
                    esc(&p.pod),
                    esc(&m.fmt(p.costs.total_cost))
                );
            }
            pods_html.push_str("</ul></details>");
            w!(
                s,
                r#"<tr data-workload="{}"><th scope="row">{}</th><td>{}</td><td class="num" data-value="{}">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{pods_html}</td></tr>"#,
                esc(&x.controller),
                esc(name),
                esc(&x.controller_kind),
                x.costs.total_cost,
                esc(&m.fmt(x.costs.total_cost)),
                esc(&m.fmt(x.costs.cpu_cost)),
                esc(&m.fmt(x.costs.gpu_cost)),
                esc(&m.fmt(x.costs.memory_cost)),
                esc(&m.fmt(x.costs.storage_cost)),
                esc(&m.fmt(x.costs.network_cost)),
                esc(&pct(x.costs.efficiency_score)),
            );
        }
        s.push_str("</tbody></table></div>");
        if wl.count as usize > wl.workloads.len() {
            w!(
                s,
                r#"<p class="more">The {} largest of {} workloads.</p>"#,
                wl.workloads.len(),
                wl.count
            );
        }
    }
    s.push_str("</section>");
    recommendations(&mut s, cluster, w, &opt, m, Some(namespace));
    let crumbs: Vec<Crumb> = vec![
        ("Overview".to_string(), Some(overview_href(w))),
        (cluster.to_string(), Some(cluster_href(cluster, w))),
        (namespace.to_string(), None),
    ];
    Ok(html::page(namespace, &crumbs, key.is_some(), &s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_labels() {
        assert_eq!(bucket_label("2024-06-03T13:00:00Z", "hour"), "Jun 3 13:00");
        assert_eq!(bucket_label("2024-06-03T00:00:00Z", "day"), "Jun 3");
        assert_eq!(bucket_label("2024-06-01T00:00:00Z", "month"), "Jun 2024");
        assert_eq!(bucket_label("garbage", "day"), "garbage");
    }

    #[test]
    fn every_recommendation_kind_has_a_readable_name() {
        for k in [
            "request_sizing",
            "cluster_sizing",
            "abandoned_workload",
            "node_pool_sizing",
            "spot_candidate",
        ] {
            assert_ne!(kind_name(k), k, "{k} shows its raw name");
        }
    }

    #[test]
    fn paths_encode_names() {
        assert_eq!(
            namespace_href("c 1", "<script>", "7d"),
            "/clusters/c%201/namespaces/%3Cscript%3E?window=7d"
        );
    }
}
