//! Prometheus remote write 1.0: a snappy block-compressed protobuf `prometheus.WriteRequest`.
//!
//! Two decoders of the same bytes:
//! - [`decode_write_request`], the fast one the receiver uses: a hand-rolled protobuf walker
//!   (varints through `prost::encoding`) that validates each label as UTF-8 where it lies in the
//!   decompressed buffer and appends it to the batch's string arena; the decompression buffer is
//!   reused per thread. Exemplars, histograms and metadata are skipped.
//! - the `prost` messages [`WriteRequest`], [`TimeSeries`], [`Label`], [`ProtoSample`], used to
//!   build requests (tests, benchmark) and as the reference the walker is checked against.
//!
//! Invariant: no input makes the decoder panic or allocate more than the configured limits
//! allow: the snappy header's length is checked before the buffer grows.

use crate::batch::DecodedBatch;
use prost::bytes::Buf;
use std::cell::RefCell;

/// `prometheus.WriteRequest` (only the fields remote write 1.0 sends samples in).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<ProtoSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoSample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Limits applied while decoding one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest decompressed `WriteRequest` accepted (the snappy header is checked first).
    pub max_decompressed_bytes: usize,
    /// Most labels one series may have.
    pub max_labels_per_series: usize,
    /// Most bytes (names + values) one series' labels may have.
    pub max_label_bytes_per_series: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decompressed_bytes: 64 << 20,
            max_labels_per_series: 128,
            max_label_bytes_per_series: 16 << 10,
        }
    }
}

/// Why a request body could not be decoded. Every variant maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid snappy block: {0}")]
    Snappy(String),
    #[error("decompressed body of {len} bytes is above the limit of {max}")]
    DecompressedTooLarge { len: usize, max: usize },
    #[error("invalid protobuf: {0}")]
    Protobuf(&'static str),
    #[error("label is not valid utf-8")]
    Utf8,
    #[error("series has more than {max} labels")]
    TooManyLabels { max: usize },
    #[error("series labels are larger than {max} bytes")]
    LabelsTooLarge { max: usize },
    #[error("series has no labels")]
    NoLabels,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest scratch buffer kept per thread between requests.
const KEEP_SCRATCH: usize = 8 << 20;

/// Decompresses and decodes a remote write 1.0 body.
pub fn decode_write_request(
    body: &[u8],
    limits: &DecodeLimits,
) -> Result<DecodedBatch, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > limits.max_decompressed_bytes {
        return Err(DecodeError::DecompressedTooLarge {
            len,
            max: limits.max_decompressed_bytes,
        });
    }
    SCRATCH.with(|cell| {
        let mut guard = cell.try_borrow_mut();
        let mut fresh = Vec::new();
        let buf: &mut Vec<u8> = match guard.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut fresh,
        };
        buf.clear();
        buf.resize(len, 0);
        let out = snap::raw::Decoder::new()
            .decompress(body, buf)
            .map_err(|e| DecodeError::Snappy(e.to_string()))
            .and_then(|n| decode_proto(buf.get(..n).unwrap_or(&[]), limits));
        if buf.capacity() > KEEP_SCRATCH {
            *buf = Vec::new();
        }
        out
    })
}

/// Decodes an uncompressed `WriteRequest`.
pub fn decode_proto(mut buf: &[u8], limits: &DecodeLimits) -> Result<DecodedBatch, DecodeError> {
    // Kubecost-like series are ~150 bytes encoded; a fair first guess avoids regrowing.
    let mut batch = DecodedBatch::with_capacity(buf.len() / 160 + 1, buf.len() / 2);
    while !buf.is_empty() {
        let (field, wire) = key(&mut buf)?;
        if field == 1 && wire == WIRE_LEN {
            let ts = len_delimited(&mut buf)?;
            series(ts, &mut batch, limits)?;
        } else {
            skip(wire, &mut buf)?;
        }
    }
    Ok(batch)
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    prost::encoding::decode_varint(buf).map_err(|_| DecodeError::Protobuf("bad varint"))
}

fn key(buf: &mut &[u8]) -> Result<(u64, u8), DecodeError> {
    let k = varint(buf)?;
    let field = k >> 3;
    if field == 0 {
        return Err(DecodeError::Protobuf("field number 0"));
    }
    Ok((field, (k & 7) as u8))
}

fn len_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = varint(buf)?;
    let n = usize::try_from(n).map_err(|_| DecodeError::Protobuf("length overflow"))?;
    if n > buf.len() {
        return Err(DecodeError::Protobuf("truncated field"));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn skip(wire: u8, buf: &mut &[u8]) -> Result<(), DecodeError> {
    let n = match wire {
        WIRE_VARINT => {
            varint(buf)?;
            return Ok(());
        }
        WIRE_I64 => 8,
        WIRE_LEN => {
            len_delimited(buf)?;
            return Ok(());
        }
        WIRE_I32 => 4,
        _ => return Err(DecodeError::Protobuf("unsupported wire type")),
    };
    if buf.remaining() < n {
        return Err(DecodeError::Protobuf("truncated field"));
    }
    buf.advance(n);
    Ok(())
}

fn series(
    mut buf: &[u8],
    batch: &mut DecodedBatch,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    let mut s = batch.push_series();
    let mut label_bytes = 0usize;
    let mut labels = 0usize;
    while !buf.is_empty() {
        let (field, wire) = key(&mut buf)?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let l = len_delimited(&mut buf)?;
                let (name, value) = label(l)?;
                labels += 1;
                label_bytes += name.len() + value.len();
                if labels > limits.max_labels_per_series {
                    return Err(DecodeError::TooManyLabels {
                        max: limits.max_labels_per_series,
                    });
                }
                if label_bytes > limits.max_label_bytes_per_series {
                    return Err(DecodeError::LabelsTooLarge {
                        max: limits.max_label_bytes_per_series,
                    });
                }
                s.label(name, value);
            }
            (2, WIRE_LEN) => {
                let (ts, v) = sample(len_delimited(&mut buf)?)?;
                s.sample(ts, v);
            }
            _ => skip(wire, &mut buf)?,
        }
    }
    if labels == 0 {
        return Err(DecodeError::NoLabels);
    }
    s.finish();
    Ok(())
}

fn utf8(b: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| DecodeError::Utf8)
}

fn label(mut buf: &[u8]) -> Result<(&str, &str), DecodeError> {
    let mut name: &[u8] = &[];
    let mut value: &[u8] = &[];
    while !buf.is_empty() {
        let (field, wire) = key(&mut buf)?;
        match (field, wire) {
            (1, WIRE_LEN) => name = len_delimited(&mut buf)?,
            (2, WIRE_LEN) => value = len_delimited(&mut buf)?,
            _ => skip(wire, &mut buf)?,
        }
    }
    Ok((utf8(name)?, utf8(value)?))
}

fn sample(mut buf: &[u8]) -> Result<(i64, f64), DecodeError> {
    let mut ts = 0i64;
    let mut v = 0f64;
    while !buf.is_empty() {
        let (field, wire) = key(&mut buf)?;
        match (field, wire) {
            (1, WIRE_I64) => {
                if buf.remaining() < 8 {
                    return Err(DecodeError::Protobuf("truncated double"));
                }
                v = buf.get_f64_le();
            }
            // int64 is a two's complement varint.
            (2, WIRE_VARINT) => ts = varint(&mut buf)? as i64,
            _ => skip(wire, &mut buf)?,
        }
    }
    Ok((ts, v))
}

/// Encodes and snappy-compresses a request (tests, benchmark, clients).
pub fn encode_write_request(req: &WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(req);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        Label {
                            name: "__name__".into(),
                            value: "node_cpu_hourly_cost".into(),
                        },
                        Label {
                            name: "node".into(),
                            value: "n-1".into(),
                        },
                    ],
                    samples: vec![
                        ProtoSample {
                            value: 0.031,
                            timestamp: 1_700_000_000_000,
                        },
                        ProtoSample {
                            value: -2.5,
                            timestamp: -5,
                        },
                    ],
                },
                TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: "ünïcode".into(),
                    }],
                    samples: vec![],
                },
            ],
        }
    }

    #[test]
    fn walker_agrees_with_prost() {
        let body = encode_write_request(&req());
        let b = decode_write_request(&body, &DecodeLimits::default()).unwrap();
        let v: Vec<_> = b.series().collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name(), "node_cpu_hourly_cost");
        assert_eq!(v[0].label("node"), Some("n-1"));
        assert_eq!(v[0].samples()[0].value, 0.031);
        assert_eq!(v[0].samples()[0].timestamp_ms, 1_700_000_000_000);
        assert_eq!(v[0].samples()[1].timestamp_ms, -5);
        assert_eq!(v[1].name(), "ünïcode");
    }

    #[test]
    fn errors_never_panic() {
        let l = DecodeLimits::default();
        assert!(matches!(
            decode_write_request(b"garbage!", &l),
            Err(DecodeError::Snappy(_))
        ));
        // Every truncation of a valid body fails cleanly or decodes a prefix.
        let raw = prost::Message::encode_to_vec(&req());
        for i in 0..raw.len() {
            decode_proto(&raw[..i], &l).ok();
            let mut bad = raw.clone();
            bad[i] ^= 0xff;
            decode_proto(&bad, &l).ok();
        }
        let bad_utf8 = [0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
        assert_eq!(decode_proto(&bad_utf8, &l).unwrap_err(), DecodeError::Utf8);
        let tight = DecodeLimits {
            max_labels_per_series: 1,
            ..l
        };
        assert!(matches!(
            decode_proto(&raw, &tight),
            Err(DecodeError::TooManyLabels { .. })
        ));
        let tight = DecodeLimits {
            max_decompressed_bytes: 4,
            ..l
        };
        assert!(matches!(
            decode_write_request(&encode_write_request(&req()), &tight),
            Err(DecodeError::DecompressedTooLarge { .. })
        ));
    }
}
