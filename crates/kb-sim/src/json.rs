//! A minimal JSON writer over a reused `Vec<u8>`: strings with escaping, floats in shortest
//! round-trip form (ryu), `null` for NaN/±Inf (as Kubecost writes them), integers via itoa.
//!
//! Invariant: every function appends well-formed JSON for its value; commas and keys are the
//! caller's business, so the writers stay allocation free.

/// Appends a JSON string literal.
pub(crate) fn string(b: &mut Vec<u8>, s: &str) {
    b.push(b'"');
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        b.extend_from_slice(bytes.get(last..i).unwrap_or(&[]));
        match esc {
            Some(e) => b.extend_from_slice(e),
            None => {
                const HEX: &[u8] = b"0123456789abcdef";
                b.extend_from_slice(b"\\u00");
                b.push(HEX.get(usize::from(c >> 4)).copied().unwrap_or(b'0'));
                b.push(HEX.get(usize::from(c & 15)).copied().unwrap_or(b'0'));
            }
        }
        last = i + 1;
    }
    b.extend_from_slice(bytes.get(last..).unwrap_or(&[]));
    b.push(b'"');
}

/// Appends a float, or `null` when it is not finite.
pub(crate) fn num(b: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let mut r = ryu::Buffer::new();
        b.extend_from_slice(r.format_finite(v).as_bytes());
    } else {
        b.extend_from_slice(b"null");
    }
}

/// Appends an integer.
pub(crate) fn int(b: &mut Vec<u8>, v: i64) {
    let mut r = itoa::Buffer::new();
    b.extend_from_slice(r.format(v).as_bytes());
}

/// Appends `"key":`.
pub(crate) fn key(b: &mut Vec<u8>, k: &str) {
    string(b, k);
    b.push(b':');
}

/// Appends `"key":<float>,`.
pub(crate) fn kf(b: &mut Vec<u8>, k: &str, v: f64) {
    key(b, k);
    num(b, v);
    b.push(b',');
}

/// Appends `"key":"<string>",`.
pub(crate) fn ks(b: &mut Vec<u8>, k: &str, v: &str) {
    key(b, k);
    string(b, v);
    b.push(b',');
}

/// Appends a `{"k":"v",...}` object of string pairs.
pub(crate) fn str_map<'a>(b: &mut Vec<u8>, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    b.push(b'{');
    let mut first = true;
    for (k, v) in pairs {
        if !first {
            b.push(b',');
        }
        first = false;
        key(b, k);
        string(b, v);
    }
    b.push(b'}');
}

/// Removes a trailing comma, if any (objects are written field by field with commas).
pub(crate) fn trim_comma(b: &mut Vec<u8>) {
    if b.last() == Some(&b',') {
        b.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json() {
        let mut b = Vec::new();
        b.push(b'[');
        string(&mut b, "a\"b\\c\n\u{1}é");
        b.push(b',');
        num(&mut b, 0.1 + 0.2);
        b.push(b',');
        num(&mut b, f64::NAN);
        b.push(b',');
        int(&mut b, -42);
        b.push(b']');
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v[0], "a\"b\\c\n\u{1}é");
        assert_eq!(v[1].as_f64().unwrap(), 0.1 + 0.2);
        assert!(v[2].is_null());
        assert_eq!(v[3], -42);
    }
}
