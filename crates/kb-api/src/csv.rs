//! Minimal RFC 4180 CSV writing (CRLF line ends, fields quoted when needed).

/// Appends one field, quoted when it holds a comma, quote, CR or LF or starts or ends with a
/// space.
pub(crate) fn field(out: &mut String, s: &str) {
    let needs = s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        || s.starts_with(' ')
        || s.ends_with(' ');
    if needs {
        out.push('"');
        for ch in s.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Appends one record.
pub(crate) fn record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f.as_ref());
    }
    out.push_str("\r\n");
}

/// Formats a number so it reads back exactly (shortest round-trip form).
pub(crate) fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "0".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_when_needed() {
        let mut s = String::new();
        record(&mut s, &["a", "b,c", "d\"e", " f", ""]);
        assert_eq!(s, "a,\"b,c\",\"d\"\"e\",\" f\",\r\n");
        assert_eq!(num(0.1 + 0.2).parse::<f64>().unwrap(), 0.1 + 0.2);
        assert_eq!(num(f64::NAN), "0");
    }
}
