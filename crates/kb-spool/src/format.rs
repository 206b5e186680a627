//! The on-disk format: segment files of length- and CRC-framed records, and the ack file.
//!
//! All integers are little-endian.
//!
//! Segment file `seg-<base seq, 20 digits>.log`:
//!
//! ```text
//! header  (16 bytes): magic "KBSPSEG1" | base seq u64
//! record  (18 + len): crc32 u32 | len u32 | seq u64 | kind u16 | payload [len]
//! ```
//!
//! The CRC-32 (IEEE, `crc32fast`) covers the 14 header bytes after it and the payload, so a
//! corrupt length, sequence number or kind is caught, not only a corrupt payload. Records in a
//! segment have consecutive sequence numbers starting at the base.
//!
//! Ack file `ack`: two 32-byte slots at offsets 0 and 512 (different disk sectors), written
//! alternately in place:
//!
//! ```text
//! slot (32 bytes): magic "KBSPACK1" | head seq u64 | generation u64 | crc32 u32 | zero u32
//! ```
//!
//! `head` is the first sequence number not yet acknowledged. The valid slot with the highest
//! generation wins; a write torn by a crash spoils at most the slot being written, and the other
//! slot still holds the previous head (so at most the records acked by that write replay).

use crate::error::Seq;

pub(crate) const SEG_MAGIC: &[u8; 8] = b"KBSPSEG1";
pub(crate) const SEG_HEADER: u64 = 16;
pub(crate) const REC_HEADER: u64 = 18;
pub(crate) const ACK_MAGIC: &[u8; 8] = b"KBSPACK1";
pub(crate) const ACK_SLOT: usize = 32;
pub(crate) const ACK_SLOT_OFFSETS: [u64; 2] = [0, 512];

/// The largest payload a record may carry (256 MiB); lengths above it are corruption.
pub const MAX_PAYLOAD_BYTES: u64 = 256 << 20;

pub(crate) fn segment_name(base: Seq) -> String {
    format!("seg-{base:020}.log")
}

/// Parses `seg-<digits>.log`.
pub(crate) fn parse_segment_name(name: &str) -> Option<Seq> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn segment_header(base: Seq) -> [u8; SEG_HEADER as usize] {
    let mut h = [0u8; SEG_HEADER as usize];
    h[..8].copy_from_slice(SEG_MAGIC);
    h[8..].copy_from_slice(&base.to_le_bytes());
    h
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecHeader {
    pub(crate) crc: u32,
    pub(crate) len: u32,
    pub(crate) seq: Seq,
    pub(crate) kind: u16,
}

impl RecHeader {
    pub(crate) fn size(&self) -> u64 {
        REC_HEADER + u64::from(self.len)
    }
}

pub(crate) fn decode_rec_header(b: &[u8; REC_HEADER as usize]) -> RecHeader {
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[8..16]);
    RecHeader {
        crc: u32_at(0),
        len: u32_at(4),
        seq: u64::from_le_bytes(seq),
        kind: u16::from_le_bytes([b[16], b[17]]),
    }
}

/// The CRC a record with this header tail and payload must carry.
pub(crate) fn record_crc(header: &[u8; REC_HEADER as usize], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[4..]);
    h.update(payload);
    h.finalize()
}

/// Encodes a record's header and payload into `out` (cleared first).
pub(crate) fn encode_record(out: &mut Vec<u8>, seq: Seq, kind: u16, payload: &[u8]) {
    out.clear();
    let mut header = [0u8; REC_HEADER as usize];
    // The caller checked the length against MAX_PAYLOAD_BYTES, which fits in u32.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..18].copy_from_slice(&kind.to_le_bytes());
    let crc = record_crc(&header, payload);
    header[..4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

pub(crate) fn encode_ack_slot(head: Seq, generation: u64) -> [u8; ACK_SLOT] {
    let mut s = [0u8; ACK_SLOT];
    s[..8].copy_from_slice(ACK_MAGIC);
    s[8..16].copy_from_slice(&head.to_le_bytes());
    s[16..24].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&s[..24]);
    s[24..28].copy_from_slice(&crc.to_le_bytes());
    s
}

/// Returns `(head, generation)` if the slot is valid.
pub(crate) fn decode_ack_slot(s: &[u8]) -> Option<(Seq, u64)> {
    if s.len() < ACK_SLOT || &s[..8] != ACK_MAGIC {
        return None;
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&s[24..28]);
    if crc32fast::hash(&s[..24]) != u32::from_le_bytes(crc) {
        return None;
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&s[8..16]);
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&s[16..24]);
    Some((u64::from_le_bytes(head), u64::from_le_bytes(generation)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_crc_covers_header() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, 7, b"hello");
        let mut h = [0u8; REC_HEADER as usize];
        h.copy_from_slice(&buf[..REC_HEADER as usize]);
        let d = decode_rec_header(&h);
        assert_eq!((d.len, d.seq, d.kind), (5, 42, 7));
        assert_eq!(d.crc, record_crc(&h, &buf[REC_HEADER as usize..]));
        h[16] ^= 1;
        assert_ne!(d.crc, record_crc(&h, &buf[REC_HEADER as usize..]));
    }

    #[test]
    fn names_and_ack_slots() {
        assert_eq!(parse_segment_name(&segment_name(12)), Some(12));
        assert_eq!(parse_segment_name("seg-.log"), None);
        assert_eq!(parse_segment_name("seg-1x.log"), None);
        let s = encode_ack_slot(9, 3);
        assert_eq!(decode_ack_slot(&s), Some((9, 3)));
        let mut bad = s;
        bad[9] ^= 1;
        assert_eq!(decode_ack_slot(&bad), None);
    }
}
