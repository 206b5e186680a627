//! ClickHouse's `RowBinary` format, both ways: the store inserts and reads every row in it, so
//! floats travel as their exact bits (no text parsing or rounding on either side).
//!
//! Encoding per type: `UInt8/32/64`, `Int64`, `Float64` little-endian; `DateTime` as `UInt32`
//! unix seconds; `String` as a LEB128 length then the bytes.

/// Appends a `UInt8`.
pub(crate) fn put_u8(b: &mut Vec<u8>, v: u8) {
    b.push(v);
}

/// Appends a `UInt32`.
pub(crate) fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `UInt64`.
pub(crate) fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Appends an `Int64`.
pub(crate) fn put_i64(b: &mut Vec<u8>, v: i64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `Float64`; a non-finite number is stored as 0 (the model's numbers are finite,
/// and the store keeps that promise even for a row that breaks it, as the SQLite store does).
pub(crate) fn put_f64(b: &mut Vec<u8>, v: f64) {
    let v = if v.is_finite() { v } else { 0.0 };
    b.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `String`.
pub(crate) fn put_str(b: &mut Vec<u8>, s: &str) {
    let mut n = s.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            b.push(byte);
            break;
        }
        b.push(byte | 0x80);
    }
    b.extend_from_slice(s.as_bytes());
}

/// Returns unix seconds as a `DateTime` value, or `None` outside `1970..2106`.
pub(crate) fn datetime(ts: i64) -> Option<u32> {
    u32::try_from(ts).ok()
}

/// Reads `RowBinary` values in order from a response body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A value could not be read (the body is shorter or not what the query promised).
#[derive(Debug)]
pub(crate) struct DecodeError(pub(crate) String);

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Returns true when every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "body ended at byte {} while reading {n} more",
                    self.buf.len()
                ))
            })?;
        let s = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            if shift > 63 {
                return Err(DecodeError("string length overflows".into()));
            }
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let n = usize::try_from(n).map_err(|_| DecodeError("string too long".into()))?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError("a string is not valid UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut b = Vec::new();
        put_u8(&mut b, 7);
        put_u32(&mut b, 1_700_000_000);
        put_u64(&mut b, u64::MAX - 1);
        put_i64(&mut b, -5);
        put_f64(&mut b, 0.1 + 0.2);
        put_f64(&mut b, f64::NAN);
        put_str(&mut b, "");
        let long = "é".repeat(200);
        put_str(&mut b, &long);
        let mut r = Reader::new(&b);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 1_700_000_000);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.f64().unwrap(), 0.1 + 0.2);
        assert_eq!(r.f64().unwrap(), 0.0);
        assert_eq!(r.string().unwrap(), "");
        assert_eq!(r.string().unwrap(), long);
        assert!(r.is_empty());
        assert!(r.u8().is_err());
    }

    #[test]
    fn string_length_is_leb128() {
        let mut b = Vec::new();
        put_str(&mut b, &"a".repeat(300));
        assert_eq!(&b[..2], &[0xac, 0x02]);
    }

    #[test]
    fn datetime_range() {
        assert_eq!(datetime(0), Some(0));
        assert_eq!(datetime(-1), None);
        assert_eq!(datetime(i64::from(u32::MAX) + 1), None);
    }
}
