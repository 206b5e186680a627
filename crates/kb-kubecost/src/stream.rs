//! A push framer for Kubecost set-range documents: feed the body chunk by chunk, get each
//! `data[i].{name}` value back as the exact byte slice it occupies, without parsing it.
//!
//! Accepted document shapes (Kubecost 1.x/2.x, OpenCost):
//! - an envelope object `{"code":200,"status":"success","data":[ {set}, null, ... ], ...}`
//!   with its members in any order, `data` an array of sets, a single set object (OpenCost
//!   assets) or `null`, and any other member (`message`, `warning`, unknown ones) skipped;
//! - a bare array of sets `[ {set}, ... ]` (the `data` array without its envelope).
//!
//! Each set is an object `name -> value`; every value is yielded as [`Event::Item`] with the
//! raw bytes of its key (quotes included, escapes untouched) and of its value. The caller parses
//! the value with `serde_json::from_slice`, so strings without escapes can be borrowed.
//!
//! Invariants:
//! - Memory: the framer keeps only the unfinished tail of the input (from the start of the
//!   item being framed), so memory is bounded by the largest single item plus one chunk; an item
//!   (or a key, or an envelope member) longer than `max_value_bytes` is an error, not an OOM.
//! - Every byte is looked at once by the framer: scanning a value resumes where the previous
//!   chunk stopped. Inside items only `"`, `\` and the item's own opener/closer matter (JSON
//!   braces and brackets are each balanced on their own); long strings are skipped with `memchr`.
//! - The structure outside items (envelope, data array, sets, commas, colons) is checked
//!   strictly; the inside of items is left to serde, and small envelope members are validated
//!   with serde too. No input makes the framer panic: every index is checked.
//! - Errors carry the absolute byte offset of the offending byte.

use memchr::memchr2;
use serde::Deserialize;

use crate::error::Error;

/// Default largest item (one allocation object with its key) the framer accepts.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 << 20;

/// What the framer found. Slices borrow the framer's buffer until the next [`Framer::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A set (an object in the data array, or `data` itself when it is an object) starts.
    SetStart {
        /// Index of the set in the data array (null sets count).
        set: usize,
    },
    /// A `null` element of the data array (Kubecost's answer for a window without data).
    NullSet {
        /// Index of the set in the data array.
        set: usize,
    },
    /// One member of a set.
    Item {
        /// Index of the set the item belongs to.
        set: usize,
        /// The raw JSON string of the name, quotes included.
        key: &'a [u8],
        /// The raw JSON value.
        value: &'a [u8],
        /// Absolute offset of the first byte of `value` in the document.
        offset: u64,
    },
    /// The set that started last ended.
    SetEnd {
        /// Index of the set in the data array.
        set: usize,
    },
}

/// The members of the envelope that say whether Kubecost succeeded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// `code`, when present and numeric.
    pub code: Option<i64>,
    /// `status` (`success`, `error`, or empty).
    pub status: Option<String>,
    /// `message`.
    pub message: Option<String>,
    /// `warning`.
    pub warning: Option<String>,
    /// Whether a `data` member (or a bare top-level array) was seen.
    pub has_data: bool,
}

impl Envelope {
    /// Returns `(code, message)` when the envelope reports an error: a `code` outside 2xx, or
    /// `status: "error"` (reported as code 500 when there is no code).
    pub fn error(&self) -> Option<(i64, String)> {
        let failed_code = self.code.filter(|c| !(200..=299).contains(c));
        let failed_status = self.status.as_deref() == Some("error");
        if failed_code.is_none() && !failed_status {
            return None;
        }
        let code = failed_code.unwrap_or(500);
        let message = self
            .message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "no message".to_string());
        Some((code, message))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Start,
    EnvKeyOrEnd,
    EnvKeyRequired,
    EnvKey,
    EnvColon,
    EnvValueStart,
    EnvValue,
    EnvAfterValue,
    DataValue,
    DataArrayFirst,
    DataElem,
    DataAfterElem,
    SetKeyOrEnd,
    SetKeyRequired,
    SetKey,
    SetColon,
    ItemValueStart,
    ItemValue,
    SetAfterItem,
    Done,
}

impl St {
    fn describe(self) -> &'static str {
        match self {
            St::Start => "before the document started",
            St::EnvKeyOrEnd | St::EnvKeyRequired | St::EnvKey | St::EnvColon => {
                "inside the response envelope"
            }
            St::EnvValueStart | St::EnvValue | St::EnvAfterValue => {
                "inside a member of the response envelope"
            }
            St::DataValue | St::DataArrayFirst | St::DataElem | St::DataAfterElem => {
                "inside the data array"
            }
            St::SetKeyOrEnd | St::SetKeyRequired | St::SetKey | St::SetColon => "inside a set",
            St::ItemValueStart | St::ItemValue | St::SetAfterItem => "inside an allocation",
            St::Done => "after the document",
        }
    }
}

/// Which envelope member is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Data,
    Code,
    Status,
    Message,
    Warning,
    Other,
}

/// The kind of value a [`Scan`] frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An object or array: count this opener and closer outside strings.
    Composite { open: u8, close: u8 },
    /// A string: ends at the first unescaped quote.
    Str,
    /// A number or literal: ends at the first delimiter.
    Scalar,
}

/// A resumable scan of one JSON value: `start` is where it began in the buffer.
#[derive(Debug, Clone, Copy)]
struct Scan {
    start: usize,
    kind: Kind,
    depth: u32,
    in_str: bool,
}

impl Scan {
    /// Starts a scan at `buf[pos]` (which must exist), consuming the first byte.
    fn begin(buf: &[u8], pos: &mut usize) -> Option<Scan> {
        let start = *pos;
        let c = *buf.get(start)?;
        let (kind, depth, in_str) = match c {
            b'{' => (
                Kind::Composite {
                    open: b'{',
                    close: b'}',
                },
                1,
                false,
            ),
            b'[' => (
                Kind::Composite {
                    open: b'[',
                    close: b']',
                },
                1,
                false,
            ),
            b'"' => (Kind::Str, 0, true),
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => (Kind::Scalar, 0, false),
            _ => return None,
        };
        *pos = start + 1;
        Some(Scan {
            start,
            kind,
            depth,
            in_str,
        })
    }

    /// Advances through `buf` from `*pos`; returns true when the value ended (at `*pos`).
    fn run(&mut self, buf: &[u8], pos: &mut usize) -> bool {
        let mut p = *pos;
        let done = match self.kind {
            Kind::Scalar => loop {
                match buf.get(p) {
                    None => break false,
                    Some(b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r') => break true,
                    Some(_) => p += 1,
                }
            },
            Kind::Str => skip_string(buf, &mut p),
            Kind::Composite { open, close } => 'scan: loop {
                if self.in_str {
                    if skip_string(buf, &mut p) {
                        self.in_str = false;
                    } else {
                        break false;
                    }
                }
                // Tokens are short in Kubecost's JSON (`"cpuCost":0.1,`), so a plain byte loop
                // beats a SIMD search whose setup cost is paid per token.
                while let Some(&c) = buf.get(p) {
                    p += 1;
                    if c == b'"' {
                        self.in_str = true;
                        continue 'scan;
                    } else if c == open {
                        self.depth = self.depth.saturating_add(1);
                    } else if c == close {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            break 'scan true;
                        }
                    }
                }
                break false;
            },
        };
        *pos = p;
        done
    }
}

/// Skips string content from `*pos` (just after the opening quote or inside the string);
/// returns true with `*pos` after the closing quote, or false with `*pos` where to resume.
///
/// Most strings are short keys, checked byte by byte; past 32 bytes `memchr` takes over, so
/// long label values and names are skipped with SIMD.
fn skip_string(buf: &[u8], pos: &mut usize) -> bool {
    let mut p = *pos;
    let short_end = p.saturating_add(32).min(buf.len());
    while p < short_end {
        match buf.get(p) {
            Some(b'"') => {
                *pos = p + 1;
                return true;
            }
            Some(b'\\') => {
                if p + 1 >= buf.len() {
                    // The escaped byte has not arrived: resume at the backslash.
                    *pos = p;
                    return false;
                }
                p += 2;
            }
            Some(_) => p += 1,
            None => break,
        }
    }
    loop {
        let rest = buf.get(p..).unwrap_or(&[]);
        match memchr2(b'"', b'\\', rest) {
            None => {
                *pos = buf.len();
                return false;
            }
            Some(i) => {
                let j = p + i;
                if rest[i] == b'\\' {
                    if j + 1 >= buf.len() {
                        *pos = j;
                        return false;
                    }
                    p = j + 2;
                } else {
                    *pos = j + 1;
                    return true;
                }
            }
        }
    }
}

/// What the state machine found, as buffer indices (so no borrow is held while it runs).
enum Found {
    SetStart(usize),
    NullSet(usize),
    Item {
        set: usize,
        key: (usize, usize),
        value: (usize, usize),
    },
    SetEnd(usize),
}

/// The push framer. See the module documentation.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Next unread byte of `buf`.
    pos: usize,
    /// Absolute offset of `buf[0]` in the document.
    base: u64,
    st: St,
    bare: bool,
    single_set: bool,
    set: usize,
    member: Member,
    key: (usize, usize),
    scan: Scan,
    max_value: usize,
    envelope: Envelope,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(DEFAULT_MAX_VALUE_BYTES)
    }
}

impl Framer {
    /// Makes a framer that refuses items larger than `max_value_bytes`.
    pub fn new(max_value_bytes: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            pos: 0,
            base: 0,
            st: St::Start,
            bare: false,
            single_set: false,
            set: 0,
            member: Member::Other,
            key: (0, 0),
            scan: Scan {
                start: 0,
                kind: Kind::Scalar,
                depth: 0,
                in_str: false,
            },
            max_value: max_value_bytes.max(1),
            envelope: Envelope::default(),
        }
    }

    /// Appends a chunk of the body, first dropping what earlier events no longer need.
    /// Slices of earlier events are invalid afterwards (the borrow checker enforces it).
    pub fn feed(&mut self, chunk: &[u8]) {
        let keep = self.retain_from().min(self.buf.len());
        if keep > 0 {
            self.buf.drain(..keep);
            self.pos -= keep.min(self.pos);
            self.key.0 = self.key.0.saturating_sub(keep);
            self.key.1 = self.key.1.saturating_sub(keep);
            self.scan.start = self.scan.start.saturating_sub(keep);
            self.base += keep as u64;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes currently buffered (the unfinished tail plus the unread part of the last chunk).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns what the envelope said so far.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Absolute offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Returns true once the document has ended (only whitespace may follow).
    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// Returns the next event, or `None` when more input is needed (or the document ended).
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, Error> {
        let found = match self.step()? {
            None => return Ok(None),
            Some(f) => f,
        };
        Ok(Some(match found {
            Found::SetStart(set) => Event::SetStart { set },
            Found::NullSet(set) => Event::NullSet { set },
            Found::SetEnd(set) => Event::SetEnd { set },
            Found::Item { set, key, value } => Event::Item {
                set,
                key: self.buf.get(key.0..key.1).unwrap_or(&[]),
                value: self.buf.get(value.0..value.1).unwrap_or(&[]),
                offset: self.base + value.0 as u64,
            },
        }))
    }

    /// Checks, after the last chunk was fed and [`Framer::next_event`] returned `None`, that the
    /// document ended properly; if not the body was cut short ([`Error::Truncated`]).
    pub fn finish(&self) -> Result<(), Error> {
        match self.st {
            St::Done => Ok(()),
            St::Start if self.buf.iter().all(|b| b.is_ascii_whitespace()) => Err(Error::truncated(
                "the response body is empty",
                self.offset(),
            )),
            st => Err(Error::truncated(
                format!("the document ended {}", st.describe()),
                self.base + self.buf.len() as u64,
            )),
        }
    }

    fn retain_from(&self) -> usize {
        match self.st {
            St::SetColon | St::ItemValueStart | St::ItemValue => self.key.0,
            St::EnvKey | St::SetKey | St::EnvValue => self.scan.start,
            _ => self.pos,
        }
    }

    fn err_at(&self, what: impl Into<String>) -> Error {
        Error::malformed(what, self.offset())
    }

    fn unexpected(&self, expected: &str) -> Error {
        let found = match self.buf.get(self.pos) {
            Some(c) if c.is_ascii_graphic() => format!("'{}'", *c as char),
            Some(c) => format!("byte 0x{c:02x}"),
            None => "the end".to_string(),
        };
        self.err_at(format!("expected {expected}, found {found}"))
    }

    /// Skips whitespace and returns the next byte without consuming it.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.buf.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                return Some(c);
            }
        }
        None
    }

    /// Consumes `null` at `pos`; `Ok(false)` when more input is needed.
    fn take_null(&mut self) -> Result<bool, Error> {
        let avail = self.buf.len() - self.pos.min(self.buf.len());
        let want = b"null";
        let n = avail.min(want.len());
        if self.buf.get(self.pos..self.pos + n) != Some(&want[..n]) {
            return Err(self.unexpected("an object, an array or null"));
        }
        if n < want.len() {
            return Ok(false);
        }
        self.pos += want.len();
        Ok(true)
    }

    /// Refuses a value (or key) that already spans more than `max_value` bytes up to `pos`.
    fn check_size(&self, from: usize, what: &str) -> Result<(), Error> {
        if self.pos.saturating_sub(from) > self.max_value {
            return Err(Error::too_large(
                format!("{what} at byte {}", self.base + from as u64),
                self.max_value as u64,
            ));
        }
        Ok(())
    }

    fn not_json(&self) -> Error {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let line = rest.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let snippet = String::from_utf8_lossy(&line[..line.len().min(200)]);
        self.err_at(format!("the response is not json: {:?}", snippet.trim()))
    }

    /// Begins a scan at `pos`; errors on a byte that cannot start a JSON value.
    fn begin_scan(&mut self) -> Result<(), Error> {
        match Scan::begin(&self.buf, &mut self.pos) {
            Some(s) => {
                self.scan = s;
                Ok(())
            }
            None => Err(self.unexpected("a json value")),
        }
    }

    fn after_set(&mut self) {
        self.set += 1;
        self.st = if self.single_set {
            St::EnvAfterValue
        } else {
            St::DataAfterElem
        };
    }

    fn end_of_data(&mut self) {
        self.st = if self.bare {
            St::Done
        } else {
            St::EnvAfterValue
        };
    }

    /// Runs the state machine until it finds something or needs input.
    fn step(&mut self) -> Result<Option<Found>, Error> {
        loop {
            match self.st {
                St::Start => match self.peek() {
                    None => return Ok(None),
                    Some(b'{') => {
                        self.pos += 1;
                        self.st = St::EnvKeyOrEnd;
                    }
                    Some(b'[') => {
                        self.pos += 1;
                        self.bare = true;
                        self.envelope.has_data = true;
                        self.st = St::DataArrayFirst;
                    }
                    Some(_) => return Err(self.not_json()),
                },
                St::EnvKeyOrEnd | St::EnvKeyRequired => match self.peek() {
                    None => return Ok(None),
                    Some(b'"') => {
                        self.begin_scan()?;
                        self.st = St::EnvKey;
                    }
                    Some(b'}') if self.st == St::EnvKeyOrEnd => {
                        self.pos += 1;
                        self.st = St::Done;
                    }
                    Some(_) => return Err(self.unexpected("a member name of the envelope")),
                },
                St::EnvKey => {
                    if !self.scan.run(&self.buf, &mut self.pos) {
                        self.check_size(self.scan.start, "an envelope member name")?;
                        return Ok(None);
                    }
                    let name = self
                        .buf
                        .get(self.scan.start + 1..self.pos - 1)
                        .unwrap_or(&[]);
                    self.member = match name {
                        b"data" => Member::Data,
                        b"code" => Member::Code,
                        b"status" => Member::Status,
                        b"message" => Member::Message,
                        b"warning" => Member::Warning,
                        _ => Member::Other,
                    };
                    self.st = St::EnvColon;
                }
                St::EnvColon | St::SetColon => match self.peek() {
                    None => return Ok(None),
                    Some(b':') => {
                        self.pos += 1;
                        self.st = if self.st == St::EnvColon {
                            St::EnvValueStart
                        } else {
                            St::ItemValueStart
                        };
                    }
                    Some(_) => return Err(self.unexpected("':'")),
                },
                St::EnvValueStart => match self.peek() {
                    None => return Ok(None),
                    Some(_) if self.member == Member::Data => {
                        self.envelope.has_data = true;
                        self.st = St::DataValue;
                    }
                    Some(_) => {
                        self.begin_scan()?;
                        self.st = St::EnvValue;
                    }
                },
                St::EnvValue => {
                    if !self.scan.run(&self.buf, &mut self.pos) {
                        self.check_size(self.scan.start, "an envelope member")?;
                        return Ok(None);
                    }
                    self.record_member()?;
                    self.st = St::EnvAfterValue;
                }
                St::EnvAfterValue => match self.peek() {
                    None => return Ok(None),
                    Some(b',') => {
                        self.pos += 1;
                        self.st = St::EnvKeyRequired;
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        self.st = St::Done;
                    }
                    Some(_) => return Err(self.unexpected("',' or '}' in the envelope")),
                },
                St::DataValue => match self.peek() {
                    None => return Ok(None),
                    Some(b'[') => {
                        self.pos += 1;
                        self.st = St::DataArrayFirst;
                    }
                    Some(b'{') => {
                        self.pos += 1;
                        self.single_set = true;
                        self.st = St::SetKeyOrEnd;
                        return Ok(Some(Found::SetStart(self.set)));
                    }
                    Some(b'n') => {
                        if !self.take_null()? {
                            return Ok(None);
                        }
                        self.st = St::EnvAfterValue;
                    }
                    Some(_) => return Err(self.unexpected("an array, an object or null as data")),
                },
                St::DataArrayFirst => match self.peek() {
                    None => return Ok(None),
                    Some(b']') => {
                        self.pos += 1;
                        self.end_of_data();
                    }
                    Some(_) => self.st = St::DataElem,
                },
                St::DataElem => match self.peek() {
                    None => return Ok(None),
                    Some(b'{') => {
                        self.pos += 1;
                        self.st = St::SetKeyOrEnd;
                        return Ok(Some(Found::SetStart(self.set)));
                    }
                    Some(b'n') => {
                        if !self.take_null()? {
                            return Ok(None);
                        }
                        let set = self.set;
                        self.set += 1;
                        self.st = St::DataAfterElem;
                        return Ok(Some(Found::NullSet(set)));
                    }
                    Some(_) => return Err(self.unexpected("a set (an object) or null")),
                },
                St::DataAfterElem => match self.peek() {
                    None => return Ok(None),
                    Some(b',') => {
                        self.pos += 1;
                        self.st = St::DataElem;
                    }
                    Some(b']') => {
                        self.pos += 1;
                        self.end_of_data();
                    }
                    Some(_) => return Err(self.unexpected("',' or ']' after a set")),
                },
                St::SetKeyOrEnd | St::SetKeyRequired => match self.peek() {
                    None => return Ok(None),
                    Some(b'"') => {
                        self.begin_scan()?;
                        self.st = St::SetKey;
                    }
                    Some(b'}') if self.st == St::SetKeyOrEnd => {
                        self.pos += 1;
                        let set = self.set;
                        self.after_set();
                        return Ok(Some(Found::SetEnd(set)));
                    }
                    Some(_) => return Err(self.unexpected("an allocation name")),
                },
                St::SetKey => {
                    if !self.scan.run(&self.buf, &mut self.pos) {
                        self.check_size(self.scan.start, "an allocation name")?;
                        return Ok(None);
                    }
                    self.key = (self.scan.start, self.pos);
                    self.st = St::SetColon;
                }
                St::ItemValueStart => match self.peek() {
                    None => return Ok(None),
                    Some(_) => {
                        self.begin_scan()?;
                        self.st = St::ItemValue;
                    }
                },
                St::ItemValue => {
                    if !self.scan.run(&self.buf, &mut self.pos) {
                        self.check_size(self.key.0, "an allocation")?;
                        return Ok(None);
                    }
                    self.check_size(self.key.0, "an allocation")?;
                    self.st = St::SetAfterItem;
                    return Ok(Some(Found::Item {
                        set: self.set,
                        key: self.key,
                        value: (self.scan.start, self.pos),
                    }));
                }
                St::SetAfterItem => match self.peek() {
                    None => return Ok(None),
                    Some(b',') => {
                        self.pos += 1;
                        self.st = St::SetKeyRequired;
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        let set = self.set;
                        self.after_set();
                        return Ok(Some(Found::SetEnd(set)));
                    }
                    Some(_) => return Err(self.unexpected("',' or '}' after an allocation")),
                },
                St::Done => {
                    return match self.peek() {
                        None => Ok(None),
                        Some(_) => {
                            Err(self.err_at("unexpected data after the end of the document"))
                        }
                    };
                }
            }
        }
    }

    /// Validates a finished envelope member and keeps the ones that report errors.
    fn record_member(&mut self) -> Result<(), Error> {
        let raw = self.buf.get(self.scan.start..self.pos).unwrap_or(&[]);
        let offset = self.base + self.scan.start as u64;
        let bad = |e: serde_json::Error| Error::malformed(format!("envelope member: {e}"), offset);
        match self.member {
            Member::Code => {
                let v: serde_json::Value = serde_json::from_slice(raw).map_err(bad)?;
                self.envelope.code = match v {
                    serde_json::Value::Number(n) => n.as_i64().or_else(|| {
                        n.as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                            .map(|f| f as i64)
                    }),
                    serde_json::Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
            }
            Member::Status | Member::Message | Member::Warning => {
                let v: Option<serde_json::Value> = serde_json::from_slice(raw).map_err(bad)?;
                let text = match v {
                    Some(serde_json::Value::String(s)) => Some(s),
                    Some(serde_json::Value::Null) | None => None,
                    Some(other) => Some(other.to_string()),
                };
                match self.member {
                    Member::Status => self.envelope.status = text,
                    Member::Message => self.envelope.message = text,
                    _ => self.envelope.warning = text,
                }
            }
            Member::Data | Member::Other => {
                serde::de::IgnoredAny::deserialize(&mut serde_json::Deserializer::from_slice(raw))
                    .map_err(bad)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of an event, for comparing event sequences.
    #[derive(Debug, Clone, PartialEq)]
    enum Ev {
        Start(usize),
        Null(usize),
        Item(usize, String, String),
        End(usize),
    }

    fn own(e: Event<'_>) -> Ev {
        match e {
            Event::SetStart { set } => Ev::Start(set),
            Event::NullSet { set } => Ev::Null(set),
            Event::SetEnd { set } => Ev::End(set),
            Event::Item {
                set, key, value, ..
            } => Ev::Item(
                set,
                String::from_utf8(key.to_vec()).unwrap(),
                String::from_utf8(value.to_vec()).unwrap(),
            ),
        }
    }

    /// Frames `doc` fed in chunks of `size` bytes.
    fn frame_chunked(doc: &[u8], size: usize) -> Result<(Vec<Ev>, Envelope), Error> {
        let mut f = Framer::new(1 << 20);
        let mut out = Vec::new();
        for chunk in doc.chunks(size.max(1)) {
            f.feed(chunk);
            while let Some(e) = f.next_event()? {
                out.push(own(e));
            }
        }
        f.finish()?;
        Ok((out, f.envelope().clone()))
    }

    /// Frames `doc` split at every boundary (two chunks), and one byte at a time, and checks all
    /// agree with the single-chunk result.
    fn frame_all_ways(doc: &str) -> Result<(Vec<Ev>, Envelope), Error> {
        let whole = frame_chunked(doc.as_bytes(), doc.len());
        for split in 1..doc.len() {
            let mut f = Framer::new(1 << 20);
            let mut out = Vec::new();
            let mut r = Ok(());
            for chunk in [&doc.as_bytes()[..split], &doc.as_bytes()[split..]] {
                f.feed(chunk);
                loop {
                    match f.next_event() {
                        Ok(Some(e)) => out.push(own(e)),
                        Ok(None) => break,
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                }
                if r.is_err() {
                    break;
                }
            }
            let r = r
                .and_then(|_| f.finish())
                .map(|_| (out, f.envelope().clone()));
            assert_eq!(
                format!("{r:?}"),
                format!("{whole:?}"),
                "split at {split} differs"
            );
        }
        let bytewise = frame_chunked(doc.as_bytes(), 1);
        assert_eq!(
            format!("{bytewise:?}"),
            format!("{whole:?}"),
            "bytewise differs"
        );
        whole
    }

    fn item(set: usize, key: &str, value: &str) -> Ev {
        Ev::Item(set, key.to_string(), value.to_string())
    }

    #[test]
    fn frames_items_across_every_chunk_boundary() {
        let doc = r#" {"code": 200, "status":"success", "data": [ {"a/b": {"name":"a/b","x":{"y":[1,{"z":2}]},"s":"}{]["},
            "c\"d": {"name":"c\"d \\","u":"\u00e9\u007d"} }, null, {} ] , "warning": "w"} "#;
        let (events, env) = frame_all_ways(doc).unwrap();
        assert_eq!(
            events,
            vec![
                Ev::Start(0),
                item(
                    0,
                    r#""a/b""#,
                    r#"{"name":"a/b","x":{"y":[1,{"z":2}]},"s":"}{]["}"#
                ),
                item(0, r#""c\"d""#, r#"{"name":"c\"d \\","u":"\u00e9\u007d"}"#),
                Ev::End(0),
                Ev::Null(1),
                Ev::Start(2),
                Ev::End(2),
            ]
        );
        assert_eq!(env.code, Some(200));
        assert_eq!(env.status.as_deref(), Some("success"));
        assert_eq!(env.warning.as_deref(), Some("w"));
        assert!(env.error().is_none());
    }

    #[test]
    fn frames_the_bare_array_form() {
        let (events, env) = frame_all_ways(r#"[{"x":{"k":[]}},{"y":1}]"#).unwrap();
        assert_eq!(
            events,
            vec![
                Ev::Start(0),
                item(0, r#""x""#, r#"{"k":[]}"#),
                Ev::End(0),
                Ev::Start(1),
                item(1, r#""y""#, "1"),
                Ev::End(1),
            ]
        );
        assert!(env.has_data);
        assert_eq!(env.code, None);
    }

    #[test]
    fn data_may_come_before_code_or_be_an_object_or_null() {
        let (events, env) =
            frame_all_ways(r#"{"data":[{"a":{}}],"message":"m","code":500,"status":"error"}"#)
                .unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(env.error(), Some((500, "m".to_string())));

        let (events, _) = frame_all_ways(r#"{"code":200,"data":{"n1":{"t":1}}}"#).unwrap();
        assert_eq!(
            events,
            vec![Ev::Start(0), item(0, r#""n1""#, r#"{"t":1}"#), Ev::End(0)]
        );

        let (events, env) =
            frame_all_ways(r#"{"code":400,"status":"","data":null,"message":"Error: bad"}"#)
                .unwrap();
        assert!(events.is_empty());
        assert_eq!(env.error(), Some((400, "Error: bad".to_string())));

        let (events, _) = frame_all_ways(r#"{"code":200,"data":[null]}"#).unwrap();
        assert_eq!(events, vec![Ev::Null(0)]);

        let (events, env) = frame_all_ways(r#"{"data":[],"extra":{"nested":[{}]}}"#).unwrap();
        assert!(events.is_empty());
        assert!(env.has_data);
    }

    #[test]
    fn truncated_documents_are_truncated_at_every_cut() {
        let doc = r#"{"code":200,"data":[{"a":{"s":"x\"y","n":[1,2]},"b":{}},null]}"#;
        assert!(frame_chunked(doc.as_bytes(), 7).is_ok());
        for cut in 0..doc.len() {
            let r = frame_chunked(&doc.as_bytes()[..cut], 3);
            assert!(
                matches!(r, Err(Error::Truncated { .. })),
                "cut at {cut}: {r:?}"
            );
        }
    }

    #[test]
    fn malformed_documents_are_malformed_with_offsets() {
        let cases: &[(&str, u64)] = &[
            (r#"{"data":[{"a":{}} {"b":{}}]}"#, 18),
            (r#"{"data":[{"a" {}}]}"#, 14),
            (r#"{"data":[1]}"#, 9),
            (r#"{"data":[{a:{}}]}"#, 10),
            (r#"{"code":20x0,"data":[]}"#, 8),
            (r#"{"data":[]} trailing"#, 12),
            (r#"[] []"#, 3),
            (r#"{"data":nul}"#, 8),
            ("Invalid 'window' parameter: illegal window: x\n", 0),
            (r#"{"data":[{"a":@}]}"#, 14),
            (r#"{"data":[],}"#, 11),
        ];
        for (doc, at) in cases {
            for size in [1, 4, doc.len()] {
                match frame_chunked(doc.as_bytes(), size) {
                    Err(Error::Malformed {
                        byte_offset, what, ..
                    }) => {
                        assert_eq!(byte_offset, *at, "{doc}: {what}");
                    }
                    other => panic!("{doc} (chunks of {size}): expected malformed, got {other:?}"),
                }
            }
        }
        let r = frame_chunked(b"Invalid 'window' parameter: x", 100);
        assert!(format!("{r:?}").contains("not json"), "{r:?}");
    }

    #[test]
    fn empty_body_is_truncated() {
        assert!(matches!(
            frame_chunked(b"", 1),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            frame_chunked(b"  \n", 1),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn oversized_items_are_refused_and_memory_stays_bounded() {
        let mut f = Framer::new(1000);
        f.feed(br#"{"data":[{"big":{"s":""#);
        assert!(f.next_event().unwrap().is_some()); // SetStart
        let mut err = None;
        for _ in 0..100 {
            f.feed(&[b'x'; 100]);
            if let Err(e) = f.next_event() {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(Error::TooLarge { .. })), "{err:?}");

        // A whole document in one chunk is fine: the limit is per item.
        let mut f = Framer::new(100);
        let mut doc = String::from(r#"{"data":[{"#);
        for i in 0..1000 {
            doc.push_str(&format!(r#""k{i}":{{"v":{i}}},"#));
        }
        doc.push_str(r#""last":{}}]}"#);
        f.feed(doc.as_bytes());
        let mut n = 0;
        while let Some(e) = f.next_event().unwrap() {
            n += usize::from(matches!(e, Event::Item { .. }));
        }
        f.finish().unwrap();
        assert_eq!(n, 1001);

        // Many small items: the buffer holds only the unfinished tail.
        let mut f = Framer::new(1000);
        f.feed(br#"{"data":[{"#);
        let mut max = 0;
        for i in 0..10_000 {
            let item = format!(r#""k{i}":{{"v":{i}}},"#);
            f.feed(item.as_bytes());
            while f.next_event().unwrap().is_some() {}
            max = max.max(f.buffered());
        }
        assert!(max < 100, "buffer grew to {max}");
    }
}
