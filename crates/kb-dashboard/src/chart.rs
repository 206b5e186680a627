//! Inline SVG charts written by the server: stacked bars over time and sparklines.
//!
//! Geometry is computed by pure functions ([`stacked_layout`], [`nice_axis`],
//! [`sparkline_points`]) that the tests check value by value; the SVG writers only print it.
//! Charts carry `role="img"`, a `<title>` and a `<desc>`, and each bar segment a `<title>`
//! (the browser's own tooltip, no script), and the pages put the same numbers in a table.
//! Negative values (Kubecost's credits and adjustments) are drawn as 0; the tables show them.

use crate::html::{Money, esc};

/// Width and height of a stacked chart's view box (it scales to its container).
pub const WIDTH: f64 = 760.0;
pub const HEIGHT: f64 = 260.0;
/// Plot area margins inside the view box: left (axis labels), right, top, bottom (x labels).
pub const MARGIN: (f64, f64, f64, f64) = (72.0, 12.0, 12.0, 28.0);

/// The y axis: its top value and the step between ticks (both > 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub max: f64,
    pub step: f64,
}

/// A y axis with about four ticks at 1, 2, 2.5 or 5 × 10ⁿ that covers `max`.
pub fn nice_axis(max: f64) -> Axis {
    if !(max.is_finite() && max > 0.0) {
        return Axis {
            max: 1.0,
            step: 0.25,
        };
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|n| *n >= f - 1e-9)
        .unwrap_or(10.0);
    let step = nice * mag;
    let ticks = (max / step - 1e-9).ceil().max(1.0);
    Axis {
        max: ticks * step,
        step,
    }
}

/// One drawn segment of a stacked bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub bucket: usize,
    pub series: usize,
    pub value: f64,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// Lays out stacked bars: `values[bucket][series]`, bottom to top in series order, in the plot
/// area of a `WIDTH` × `HEIGHT` view box. Heights are `value / axis.max × plot height`.
pub fn stacked_layout(values: &[Vec<f64>]) -> (Axis, Vec<Segment>) {
    let (l, r, t, b) = MARGIN;
    let plot_w = WIDTH - l - r;
    let plot_h = HEIGHT - t - b;
    let top = values
        .iter()
        .map(|vs| vs.iter().map(|v| v.max(0.0)).sum::<f64>())
        .fold(0.0, f64::max);
    let axis = nice_axis(top);
    let n = values.len().max(1) as f64;
    let slot = plot_w / n;
    let gap = (slot * 0.2).min(6.0);
    let w = (slot - gap).max(0.5);
    let mut out = Vec::new();
    for (i, vs) in values.iter().enumerate() {
        let x = l + i as f64 * slot + gap / 2.0;
        let mut base = t + plot_h;
        for (s, v) in vs.iter().enumerate() {
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            let h = v / axis.max * plot_h;
            if h <= 0.0 {
                continue;
            }
            base -= h;
            out.push(Segment {
                bucket: i,
                series: s,
                value: v,
                x,
                y: base,
                w,
                h,
            });
        }
    }
    (axis, out)
}

/// One series of a stacked chart.
#[derive(Debug, Clone)]
pub struct SeriesDef {
    pub name: String,
    pub color: &'static str,
}

/// The colours of stacked series, in order (a colour-blind-aware palette).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// A stacked bar chart with axis, labels and legend, as an inline `<svg>` plus an HTML legend.
pub fn stacked_bars(
    id: &str,
    title: &str,
    labels: &[String],
    series: &[SeriesDef],
    values: &[Vec<f64>],
    money: &Money,
) -> String {
    let (axis, segs) = stacked_layout(values);
    let (l, r, t, b) = MARGIN;
    let plot_h = HEIGHT - t - b;
    let mut s = String::with_capacity(4096 + segs.len() * 160);
    let total: f64 = values.iter().flatten().map(|v| v.max(0.0)).sum();
    w!(
        s,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d" preserveAspectRatio="xMidYMid meet"><title id="{id}-t">{}</title><desc id="{id}-d">{} buckets, {} in all; the table below the chart lists every value.</desc>"#,
        esc(title),
        values.len(),
        esc(&money.fmt(total)),
    );
    // Grid lines and y labels.
    let mut v = 0.0;
    while v <= axis.max + axis.step * 1e-6 {
        let y = t + plot_h - v / axis.max * plot_h;
        w!(
            s,
            r##"<line x1="{l}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#d0d7de" stroke-width="1"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="axis">{}</text>"##,
            WIDTH - r,
            l - 6.0,
            y + 4.0,
            esc(&money.compact(v))
        );
        v += axis.step;
    }
    for g in &segs {
        let name = series.get(g.series).map_or("", |d| d.name.as_str());
        let color = series.get(g.series).map_or("#888888", |d| d.color);
        let label = labels.get(g.bucket).map_or("", String::as_str);
        w!(
            s,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{color}"><title>{} · {}: {}</title></rect>"#,
            g.x,
            g.y,
            g.w,
            g.h,
            esc(label),
            esc(name),
            esc(&money.fmt(g.value))
        );
    }
    // X labels: at most 8, evenly spaced.
    let n = labels.len();
    if n > 0 {
        let every = n.div_ceil(8).max(1);
        let slot = (WIDTH - l - r) / n as f64;
        for (i, lab) in labels.iter().enumerate().step_by(every) {
            let x = l + (i as f64 + 0.5) * slot;
            w!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text>"#,
                HEIGHT - 8.0,
                esc(lab)
            );
        }
    }
    w!(
        s,
        r##"<line x1="{l}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#57606a" stroke-width="1"/></svg>"##,
        WIDTH - r,
        t + plot_h,
        t + plot_h
    );
    s.push_str(r#"<ul class="legend" aria-label="Legend">"#);
    for d in series {
        w!(
            s,
            r#"<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="{}"/></svg>{}</li>"#,
            d.color,
            esc(&d.name)
        );
    }
    s.push_str("</ul>");
    s
}

/// Width and height of a sparkline.
pub const SPARK: (f64, f64) = (120.0, 28.0);

/// Points of a sparkline over `values`: x evenly spaced, y from the minimum (bottom) to the
/// maximum (top), 2 px inset; a flat series is drawn in the middle.
pub fn sparkline_points(values: &[f64]) -> Vec<(f64, f64)> {
    let (w, h) = SPARK;
    let vals: Vec<f64> = values
        .iter()
        .map(|v| if v.is_finite() { *v } else { 0.0 })
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let n = vals.len();
    vals.iter()
        .enumerate()
        .map(|(i, v)| {
            let x = if n > 1 {
                2.0 + (w - 4.0) * i as f64 / (n - 1) as f64
            } else {
                w / 2.0
            };
            let y = if hi > lo {
                2.0 + (h - 4.0) * (1.0 - (v - lo) / (hi - lo))
            } else {
                h / 2.0
            };
            (x, y)
        })
        .collect()
}

/// A sparkline with an accessible label (`label` says what it shows in words).
pub fn sparkline(values: &[f64], label: &str) -> String {
    let (w, h) = SPARK;
    let pts = sparkline_points(values);
    let mut p = String::new();
    for (x, y) in &pts {
        w!(p, "{x:.1},{y:.1} ");
    }
    format!(
        r##"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}"><polyline points="{}" fill="none" stroke="#4e79a7" stroke-width="1.5"/></svg>"##,
        esc(label),
        p.trim_end()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn axis_is_nice_and_covers_the_maximum() {
        assert_eq!(
            nice_axis(100.0),
            Axis {
                max: 100.0,
                step: 25.0
            }
        );
        let a = nice_axis(93.0);
        assert_eq!(a.step, 25.0);
        assert_eq!(a.max, 100.0);
        let a = nice_axis(1234.0);
        assert_eq!(a.step, 500.0);
        assert_eq!(a.max, 1500.0);
        let a = nice_axis(0.07);
        assert!((a.step - 0.02).abs() < 1e-12 && (a.max - 0.08).abs() < 1e-12);
        assert_eq!(nice_axis(0.0).max, 1.0);
        assert_eq!(nice_axis(f64::NAN).max, 1.0);
        for m in [0.3, 7.0, 49.9, 50.0, 51.0, 999.0, 12_345.0] {
            let a = nice_axis(m);
            assert!(a.max >= m && a.max <= m * 2.0 + a.step, "{m}: {a:?}");
        }
    }

    #[test]
    fn bar_heights_are_proportional_to_values_and_stack() {
        // Two buckets: [10, 30] and [20, 0]; the axis tops at 40.
        let (axis, segs) = stacked_layout(&[vec![10.0, 30.0], vec![20.0, 0.0]]);
        assert_eq!(axis.max, 40.0);
        let plot_h = HEIGHT - MARGIN.2 - MARGIN.3;
        let bottom = MARGIN.2 + plot_h;
        assert_eq!(segs.len(), 3, "a zero value draws nothing");
        let a = segs[0];
        let b = segs[1];
        let c = segs[2];
        assert_eq!((a.bucket, a.series), (0, 0));
        assert!((a.h - plot_h * 10.0 / 40.0).abs() < 1e-9);
        assert!(
            (a.y + a.h - bottom).abs() < 1e-9,
            "first segment sits on the axis"
        );
        assert!((b.h - plot_h * 30.0 / 40.0).abs() < 1e-9);
        assert!(
            (b.y + b.h - a.y).abs() < 1e-9,
            "second segment sits on the first"
        );
        assert!(
            (b.y - MARGIN.2).abs() < 1e-9,
            "the tallest bar reaches the top"
        );
        assert!((c.h - plot_h / 2.0).abs() < 1e-9);
        assert!(c.x > a.x + a.w, "buckets do not overlap");
        assert!(c.x + c.w <= WIDTH - MARGIN.1 + 1e-9);
    }

    #[test]
    fn negative_and_non_finite_values_draw_nothing() {
        let (_, segs) = stacked_layout(&[vec![-5.0, f64::NAN, 2.0]]);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].series, 2);
    }

    #[test]
    fn sparkline_spans_min_to_max() {
        let p = sparkline_points(&[1.0, 3.0, 2.0]);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (2.0, SPARK.1 - 2.0));
        assert_eq!(p[1], (SPARK.0 / 2.0, 2.0));
        assert_eq!(p[2], (SPARK.0 - 2.0, SPARK.1 / 2.0));
        let flat = sparkline_points(&[5.0, 5.0]);
        assert!(flat.iter().all(|(_, y)| *y == SPARK.1 / 2.0));
    }

    #[test]
    fn chart_escapes_labels() {
        let m = Money::new("USD");
        let svg = stacked_bars(
            "c",
            "<b>",
            &["<x>".to_string()],
            &[SeriesDef {
                name: "<script>".into(),
                color: PALETTE[0],
            }],
            &[vec![1.0]],
            &m,
        );
        assert!(!svg.contains("<script>") && !svg.contains("<x>") && !svg.contains("<b>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
