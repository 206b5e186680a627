//! A parser for the Prometheus text exposition format 0.0.4 (what Kubecost's `/metrics`
//! serves) into a [`DecodedBatch`].
//!
//! Accepted: `# HELP`/`# TYPE`/other comments (skipped), blank lines, `name{l="v",...} value
//! [timestamp_ms]` with spaces or tabs, a trailing comma in the label set, label value escapes
//! `\\`, `\"`, `\n`, values `NaN`, `+Inf`, `-Inf`, `Inf` and any float, CRLF line ends.
//! A sample without a timestamp gets `default_ts_ms` (the scrape time). Like Prometheus, one bad
//! line fails the whole page: nothing of it is kept.

use crate::batch::DecodedBatch;
use crate::proto::DecodeLimits;

/// Why a page could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: &'static str },
    #[error("line {line}: series has more than {max} labels")]
    TooManyLabels { line: usize, max: usize },
    #[error("line {line}: series labels are larger than {max} bytes")]
    LabelsTooLarge { line: usize, max: usize },
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn name(&mut self, colon: bool) -> Option<&'a str> {
        let start = self.pos;
        match self.peek() {
            Some(c) if is_name_start(c) && (colon || c != b':') => self.pos += 1,
            _ => return None,
        }
        while let Some(c) = self.peek() {
            if is_name_char(c) && (colon || c != b':') {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.s.get(start..self.pos)
    }

    /// A quoted label value; escapes are resolved into `scratch` when present.
    fn value<'s>(&mut self, scratch: &'s mut String) -> Option<ValueRef<'a, 's>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        let bytes = self.s.as_bytes();
        let mut escaped = false;
        loop {
            match bytes.get(self.pos)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                b'\n' => return None,
                _ => self.pos += 1,
            }
        }
        let raw = self.s.get(start..self.pos)?;
        self.pos += 1;
        if !escaped {
            return Some(ValueRef::Borrowed(raw));
        }
        scratch.clear();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next()? {
                    'n' => scratch.push('\n'),
                    '\\' => scratch.push('\\'),
                    '"' => scratch.push('"'),
                    other => {
                        scratch.push('\\');
                        scratch.push(other);
                    }
                }
            } else {
                scratch.push(c);
            }
        }
        Some(ValueRef::Owned(scratch))
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' {
                break;
            }
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }
}

enum ValueRef<'a, 's> {
    Borrowed(&'a str),
    Owned(&'s str),
}

impl ValueRef<'_, '_> {
    fn as_str(&self) -> &str {
        match self {
            ValueRef::Borrowed(s) | ValueRef::Owned(s) => s,
        }
    }
}

fn parse_value(t: &str) -> Option<f64> {
    match t {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => t.parse::<f64>().ok(),
    }
}

/// Parses a whole page.
pub fn parse_exposition(
    text: &str,
    default_ts_ms: i64,
    limits: &DecodeLimits,
) -> Result<DecodedBatch, ParseError> {
    let mut batch = DecodedBatch::with_capacity(text.len() / 120 + 1, text.len() / 2);
    let mut scratch = String::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = l.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let syntax = |what| ParseError::Syntax { line, what };
        let mut c = Cursor { s: trimmed, pos: 0 };
        let name = c.name(true).ok_or(syntax("expected a metric name"))?;
        let mut s = batch.push_series();
        s.label("__name__", name);
        let mut label_bytes = "__name__".len() + name.len();
        c.skip_ws();
        if c.peek() == Some(b'{') {
            c.pos += 1;
            loop {
                c.skip_ws();
                if c.peek() == Some(b'}') {
                    c.pos += 1;
                    break;
                }
                let k = c.name(false).ok_or(syntax("expected a label name"))?;
                c.skip_ws();
                if c.peek() != Some(b'=') {
                    return Err(syntax("expected '='"));
                }
                c.pos += 1;
                c.skip_ws();
                let v = c.value(&mut scratch).ok_or(syntax("bad label value"))?;
                label_bytes += k.len() + v.as_str().len();
                s.label(k, v.as_str());
                if s.label_count() > limits.max_labels_per_series {
                    return Err(ParseError::TooManyLabels {
                        line,
                        max: limits.max_labels_per_series,
                    });
                }
                if label_bytes > limits.max_label_bytes_per_series {
                    return Err(ParseError::LabelsTooLarge {
                        line,
                        max: limits.max_label_bytes_per_series,
                    });
                }
                c.skip_ws();
                match c.peek() {
                    Some(b',') => c.pos += 1,
                    Some(b'}') => {
                        c.pos += 1;
                        break;
                    }
                    _ => return Err(syntax("expected ',' or '}'")),
                }
            }
        }
        c.skip_ws();
        let v = parse_value(c.token()).ok_or(syntax("bad value"))?;
        c.skip_ws();
        let ts_tok = c.token();
        let ts = if ts_tok.is_empty() {
            default_ts_ms
        } else {
            ts_tok.parse::<i64>().map_err(|_| syntax("bad timestamp"))?
        };
        c.skip_ws();
        if c.peek().is_some() {
            return Err(syntax("unexpected text after the sample"));
        }
        s.sample(ts, v);
        s.finish();
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubecost_lines() {
        let page = "# HELP x y\n# TYPE x gauge\nnode_cpu_hourly_cost{node=\"n1\",instance_type=\"m5\"} 0.031\r\n\
                    up 1 1700000000000\nweird{a=\"q\\\"u\\\\o\\nte\",} NaN\n\n  spaced\t{ b = \"1\" }\t+Inf\n";
        let b = parse_exposition(page, 42, &DecodeLimits::default()).unwrap();
        let v: Vec<_> = b.series().collect();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].name(), "node_cpu_hourly_cost");
        assert_eq!(v[0].label("node"), Some("n1"));
        assert_eq!(v[0].samples()[0].timestamp_ms, 42);
        assert_eq!(v[1].samples()[0].timestamp_ms, 1_700_000_000_000);
        assert_eq!(v[2].label("a"), Some("q\"u\\o\nte"));
        assert!(v[2].samples()[0].value.is_nan());
        assert_eq!(v[3].label("b"), Some("1"));
        assert_eq!(v[3].samples()[0].value, f64::INFINITY);
    }

    #[test]
    fn rejects_bad_lines() {
        let l = DecodeLimits::default();
        for bad in [
            "x{a=\"1\" 1",
            "x{a=1} 1",
            "{a=\"1\"} 1",
            "x one",
            "x 1 2 3",
            "x{a=\"1\"}",
            "x 1 1.5",
            "x{a=\"unterminated} 1",
        ] {
            assert!(parse_exposition(bad, 0, &l).is_err(), "{bad}");
        }
        let tight = DecodeLimits {
            max_labels_per_series: 2,
            ..l
        };
        assert!(matches!(
            parse_exposition("x{a=\"1\",b=\"2\"} 1", 0, &tight),
            Err(ParseError::TooManyLabels { .. })
        ));
    }
}
