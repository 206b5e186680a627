//! HTML helpers: escaping, money and time formatting, links, and the page frame.
//!
//! Every value that comes from data or from the request goes through [`esc`] (text and
//! attribute values alike) or, inside URLs, through [`seg`] / [`qs`] first.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (a cluster or namespace name).
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A query string (`?a=1&b=2`, or empty) from pairs, skipping empty values.
pub fn qs(pairs: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if !v.is_empty() {
            ser.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("?{}", ser.finish())
    } else {
        String::new()
    }
}

/// Money in the currency the API reports (ISO 4217 code).
#[derive(Debug, Clone)]
pub struct Money {
    prefix: &'static str,
    suffix: String,
}

impl Money {
    /// A formatter for `code`: a symbol for the common currencies, else the code after the
    /// amount.
    pub fn new(code: &str) -> Money {
        let prefix = match code {
            "USD" => "$",
            "EUR" => "€",
            "GBP" => "£",
            "JPY" => "¥",
            "INR" => "₹",
            _ => "",
        };
        Money {
            prefix,
            suffix: if prefix.is_empty() {
                format!(" {code}")
            } else {
                String::new()
            },
        }
    }

    /// `$1,234.57` (two decimals, thousands grouped; `-$3.00` for credits).
    pub fn fmt(&self, v: f64) -> String {
        let v = if v.is_finite() { v } else { 0.0 };
        let cents = (v.abs() * 100.0).round();
        let whole = (cents / 100.0).trunc();
        let frac = (cents - whole * 100.0) as u64;
        let sign = if v < 0.0 && cents > 0.0 { "-" } else { "" };
        format!(
            "{sign}{}{}.{frac:02}{}",
            self.prefix,
            group(whole),
            self.suffix
        )
    }

    /// A short form for axis labels: `$950`, `$1.2k`, `$3.4M`.
    pub fn compact(&self, v: f64) -> String {
        let a = v.abs();
        let body = if a >= 1e6 {
            format!("{:.1}M", v / 1e6)
        } else if a >= 1e4 {
            format!("{:.0}k", v / 1e3)
        } else if a >= 1e3 {
            format!("{:.1}k", v / 1e3)
        } else if a >= 10.0 || a == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        };
        format!("{}{body}{}", self.prefix, self.suffix)
    }
}

fn group(whole: f64) -> String {
    let digits = format!("{whole:.0}");
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    let n = digits.len();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12.3%` from a ratio.
pub fn pct(r: f64) -> String {
    if r.is_finite() {
        format!("{:.1}%", r * 100.0)
    } else {
        "–".to_string()
    }
}

/// How long ago, in words: `just now`, `14 min ago`, `3 h ago`, `2 d ago`.
pub fn age(secs: i64) -> String {
    match secs {
        s if s < 60 => "just now".to_string(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// Freshness past which a cluster is marked stale (the seed's stale-data alert is 3 h).
pub const STALE_SECS: i64 = 3 * 3600;

/// The trend against the previous period, in words and arrow (cost going up is flagged).
pub fn trend(relative: Option<f64>, change: f64, money: &Money) -> String {
    match relative {
        Some(r) if r.is_finite() => {
            let (cls, word, arrow) = if r > 0.005 {
                ("up", "up", "▲")
            } else if r < -0.005 {
                ("down", "down", "▼")
            } else {
                ("flat", "flat", "▬")
            };
            format!(
                r#"<span class="trend {cls}"><span aria-hidden="true">{arrow}</span> {word} {} ({}{})</span>"#,
                pct(r.abs()),
                if change >= 0.0 { "+" } else { "" },
                esc(&money.fmt(change))
            )
        }
        _ => r#"<span class="trend none">no previous data</span>"#.to_string(),
    }
}

/// The time ranges of the picker: the dashboard's value, the API's `window`, the label.
pub const RANGES: [(&str, &str); 5] = [
    ("24h", "24 h"),
    ("7d", "7 d"),
    ("30d", "30 d"),
    ("month", "This month"),
    ("lastmonth", "Last month"),
];

/// The default range.
pub const DEFAULT_RANGE: &str = "7d";

/// The picker's label of a range (`7 d`).
pub fn range_label(w: &str) -> &'static str {
    RANGES
        .iter()
        .find(|(v, _)| *v == w)
        .map_or("7 d", |(_, l)| l)
}

/// The range picker as links to `base` with `window` set and `keep` preserved.
pub fn range_picker(base: &str, current: &str, keep: &[(&str, &str)]) -> String {
    let mut s = String::from(r#"<nav class="range" aria-label="Time range"><ul>"#);
    for (v, label) in RANGES {
        let mut pairs: Vec<(&str, &str)> = vec![("window", v)];
        pairs.extend_from_slice(keep);
        let cur = if v == current {
            r#" aria-current="page""#
        } else {
            ""
        };
        w!(
            s,
            r#"<li><a href="{}{}"{cur}>{label}</a></li>"#,
            esc(base),
            esc(&qs(&pairs))
        );
    }
    s.push_str("</ul></nav>");
    s
}

/// One breadcrumb: label and link (`None` for the current page).
pub type Crumb = (String, Option<String>);

/// The whole page: head, header with breadcrumbs and sign-out, the main content.
pub fn page(title: &str, crumbs: &[Crumb], signed_in: bool, main: &str) -> String {
    let mut s = String::with_capacity(main.len() + 2048);
    w!(
        s,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · kubecost-bridge</title><link rel="stylesheet" href="/assets/dashboard.css"></head><body><a class="skip" href="#main">Skip to content</a><header class="top"><a class="brand" href="/">kubecost-bridge</a>"##,
        esc(title)
    );
    if !crumbs.is_empty() {
        s.push_str(r#"<nav class="crumbs" aria-label="Breadcrumb"><ol>"#);
        for (label, href) in crumbs {
            match href {
                Some(h) => {
                    w!(s, r#"<li><a href="{}">{}</a></li>"#, esc(h), esc(label));
                }
                None => {
                    w!(s, r#"<li aria-current="page">{}</li>"#, esc(label));
                }
            }
        }
        s.push_str("</ol></nav>");
    }
    if signed_in {
        s.push_str(r#"<form class="logout" method="post" action="/logout"><button type="submit">Sign out</button></form>"#);
    }
    w!(
        s,
        r#"</header><main id="main" tabindex="-1">{main}</main></body></html>"#
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert('x&"y')</script>"#),
            "&lt;script&gt;alert(&#39;x&amp;&quot;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn money() {
        let usd = Money::new("USD");
        assert_eq!(usd.fmt(1234.567), "$1,234.57");
        assert_eq!(usd.fmt(0.0), "$0.00");
        assert_eq!(usd.fmt(-3.0), "-$3.00");
        assert_eq!(usd.fmt(-0.001), "$0.00");
        assert_eq!(usd.fmt(1_000_000.0), "$1,000,000.00");
        assert_eq!(usd.fmt(999.999), "$1,000.00");
        assert_eq!(usd.fmt(f64::NAN), "$0.00");
        assert_eq!(Money::new("CHF").fmt(12.5), "12.50 CHF");
        assert_eq!(usd.compact(1500.0), "$1.5k");
        assert_eq!(usd.compact(25_000.0), "$25k");
        assert_eq!(usd.compact(2.5), "$2.50");
        assert_eq!(usd.compact(0.0), "$0");
    }

    #[test]
    fn urls() {
        assert_eq!(seg("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(seg("kube-system_1.x~"), "kube-system_1.x~");
        assert_eq!(
            qs(&[("window", "7d"), ("q", "a&b"), ("x", "")]),
            "?window=7d&q=a%26b"
        );
        assert_eq!(qs(&[("q", "")]), "");
    }

    #[test]
    fn ages() {
        assert_eq!(age(5), "just now");
        assert_eq!(age(600), "10 min ago");
        assert_eq!(age(7200), "2 h ago");
        assert_eq!(age(3 * 86_400), "3 d ago");
    }
}
