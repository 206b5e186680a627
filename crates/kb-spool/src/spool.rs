//! The spool: a bounded queue of records in segment files, acknowledged in order.
//!
//! Thread safety: every method takes `&self`; one internal mutex guards the files, so a
//! `Spool` is shared as `Arc<Spool>` between producers and the [`crate::Deliverer`]. An append
//! holds the mutex through its `fdatasync`, so appends are serialized (one writer at a time) and
//! `peek`/`ack` wait for an append in progress. [`Spool::depth`] reads atomics and never waits.
//!
//! One process per directory: the spool does not lock its folder (a file lock needs a newer
//! Rust than the workspace's minimum); two processes on one folder would corrupt it.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Seq, SpoolError};
use crate::format::{
    self, ACK_SLOT, ACK_SLOT_OFFSETS, MAX_PAYLOAD_BYTES, REC_HEADER, SEG_HEADER, SEG_MAGIC,
};

/// When the spool calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every append, ack and segment creation: a returned `append` survives power loss.
    Always,
    /// Never: a returned `append` survives a process crash (the data is in the page cache) but
    /// not power loss or a kernel crash. For tests, benchmarks, or data that can be re-fetched.
    Never,
}

/// What [`Spool::open`] does with a record that is corrupt in the middle of the spool (not a
/// torn tail, which is always truncated away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorruption {
    /// Refuse to open: [`SpoolError::Corrupt`] names the file and offset, and an operator
    /// decides (move the file aside, or reopen with `Quarantine`).
    Fail,
    /// Move the segment's bytes from the bad record to its end into `dead/` (the length of a
    /// bad record cannot be trusted, so the records after it in that segment go too), truncate
    /// the segment there, count it in [`RecoveryReport::quarantined`], and go on. Loses the
    /// records in the quarantined bytes (they stay in `dead/` for an operator).
    Quarantine,
}

/// How a spool is bounded and made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Upper bound on the bytes of all segment files (headers included). An append that would
    /// pass it fails with [`SpoolError::Full`]. Acknowledged records still count until their
    /// segment is deleted, so keep `segment_bytes` well below this (a quarter or less).
    pub max_bytes: u64,
    /// A segment is closed and a new one started when the next record would take it past this
    /// size (a record larger than this gets a segment of its own).
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub on_corruption: OnCorruption,
    /// How many dead-lettered records (and quarantined regions) `dead/` keeps; older ones are
    /// deleted.
    pub dead_keep: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
            on_corruption: OnCorruption::Fail,
            dead_keep: 100,
        }
    }
}

/// One spooled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: Seq,
    /// The caller's tag (for instance which table or endpoint the payload is for).
    pub kind: u16,
    pub payload: Vec<u8>,
}

/// What the spool holds that is not yet acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolDepth {
    /// Records appended and not yet acknowledged.
    pub records: u64,
    /// Their bytes on disk (record headers included).
    pub bytes: u64,
}

/// A region of a segment that [`OnCorruption::Quarantine`] moved to `dead/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The segment it came from.
    pub segment: PathBuf,
    /// Where the bad record started in it.
    pub offset: u64,
    /// Bytes moved.
    pub bytes: u64,
    pub reason: String,
    /// The file in `dead/` holding the bytes.
    pub dead_file: PathBuf,
}

/// What [`Spool::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files kept.
    pub segments: usize,
    /// Unacknowledged records found (they will be replayed).
    pub records: u64,
    /// Bytes of torn tail records (a crash mid-append) truncated away.
    pub torn_bytes: u64,
    /// Segments deleted because every record in them was already acknowledged.
    pub acked_segments_removed: usize,
    /// Corrupt regions moved aside (only with [`OnCorruption::Quarantine`]).
    pub quarantined: Vec<Quarantined>,
    /// Sequence numbers missing between segments, as `(first, last)` (only with
    /// `Quarantine`; with `Fail` a gap in unacknowledged records is an error).
    pub gaps: Vec<(Seq, Seq)>,
}

#[derive(Debug)]
struct Segment {
    base: Seq,
    path: PathBuf,
    /// File length: header plus whole records.
    len: u64,
    /// Records `base .. base + count`.
    count: u64,
}

impl Segment {
    fn end_seq(&self) -> Seq {
        self.base + self.count
    }
}

#[derive(Debug)]
struct Inner {
    segments: VecDeque<Segment>,
    /// Open for writing: the last segment.
    writer: Option<File>,
    /// Open for reading: `(base, file)` of a recently read segment.
    reader: Option<(Seq, File)>,
    /// Position of the oldest unacknowledged record in `segments[0]` (its end if none).
    head_off: u64,
    /// Its sequence number, or `next_seq` when nothing is unacknowledged.
    head_seq: Seq,
    next_seq: Seq,
    /// The last record `peek` returned, with its size, so `ack` need not read it again.
    peeked: Option<(Seq, u64)>,
    disk_bytes: u64,
    unacked_records: u64,
    unacked_bytes: u64,
    ack_file: File,
    ack_generation: u64,
    buf: Vec<u8>,
    poisoned: Option<String>,
}

/// A durable, bounded, in-order queue of opaque records in a folder. See the crate docs.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    dead_dir: PathBuf,
    ack_path: PathBuf,
    cfg: SpoolConfig,
    inner: Mutex<Inner>,
    /// Notified on every append (and by [`Spool::wake`]).
    appended: Condvar,
    depth_records: AtomicU64,
    depth_bytes: AtomicU64,
    disk_bytes: AtomicU64,
    recovery: RecoveryReport,
}

const ACK_FILE: &str = "ack";
const DEAD_DIR: &str = "dead";
const FIRST_SEQ: Seq = 1;

impl Spool {
    /// Opens the spool in `dir`, creating it (mode 0700) if needed, and recovers what a
    /// previous process left: a torn tail record is truncated away with a warning, segments
    /// whose records are all acknowledged are deleted, and corruption elsewhere is handled per
    /// [`SpoolConfig::on_corruption`]. Every record is read and its CRC checked.
    pub fn open(dir: impl AsRef<Path>, cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        validate(&cfg)?;
        let dir = dir.as_ref().to_path_buf();
        let dead_dir = dir.join(DEAD_DIR);
        for d in [&dir, &dead_dir] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|e| SpoolError::io("create folder", d, e))?;
        }
        let ack_path = dir.join(ACK_FILE);
        let mut report = RecoveryReport::default();

        let (ack_file, ack_head, ack_generation) = open_ack(&dir, &ack_path, &cfg)?;
        let ack_head = ack_head.max(FIRST_SEQ);

        // Segment files, oldest first.
        let mut bases = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| SpoolError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SpoolError::io("list", &dir, e))?;
            if let Some(base) = entry
                .file_name()
                .to_str()
                .and_then(format::parse_segment_name)
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut scanner = Scanner {
            cfg: &cfg,
            dead_dir: &dead_dir,
            ack_head,
            report: &mut report,
            buf: Vec::new(),
        };
        let mut segments: VecDeque<Segment> = VecDeque::new();
        let mut head_off = None;
        let mut unacked_records = 0;
        let mut unacked_bytes = 0;
        let mut prev_end: Option<Seq> = None;
        let mut prev_quarantined = false;
        let n = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let path = dir.join(format::segment_name(base));
            let is_last = i + 1 == n;
            if let Some(end) = prev_end {
                if base < end {
                    let reason = format!("base seq {base} overlaps the previous segment");
                    scanner.corrupt_region(&path, 0, &reason)?;
                    prev_quarantined = true;
                    continue;
                }
                if base > end && base > ack_head && !prev_quarantined {
                    let first = end.max(ack_head);
                    let reason = format!("records {first}..{} are missing", base - 1);
                    if cfg.on_corruption == OnCorruption::Fail {
                        return Err(SpoolError::corrupt(&path, 0, reason));
                    }
                    tracing::warn!(path = %path.display(), "spool gap: {reason}");
                }
                if base > end && base > ack_head {
                    scanner.report.gaps.push((end.max(ack_head), base - 1));
                }
            }
            let Some(scan) = scanner.scan(&path, base, is_last)? else {
                prev_quarantined = true;
                continue;
            };
            prev_quarantined = scan.quarantined;
            let seg = Segment {
                base,
                path,
                len: scan.len,
                count: scan.count,
            };
            prev_end = Some(seg.end_seq());
            if seg.end_seq() <= ack_head && !is_last {
                remove_acked(&seg.path);
                scanner.report.acked_segments_removed += 1;
                continue;
            }
            if head_off.is_none() {
                head_off = Some(scan.ack_off.unwrap_or(if base >= ack_head {
                    SEG_HEADER
                } else {
                    seg.len
                }));
            }
            unacked_records += scan.unacked_records;
            unacked_bytes += scan.unacked_bytes;
            segments.push_back(seg);
        }

        let next_seq = segments
            .back()
            .map_or(FIRST_SEQ, Segment::end_seq)
            .max(ack_head);
        let head_off = head_off.unwrap_or(SEG_HEADER);
        let head_seq = match segments.front() {
            Some(s) if s.base >= ack_head => s.base,
            Some(_) => ack_head,
            None => next_seq,
        };
        let writer = match segments.back() {
            Some(s) => Some(open_rw(&s.path)?),
            None => None,
        };
        let disk_bytes = segments.iter().map(|s| s.len).sum();
        report.segments = segments.len();
        report.records = unacked_records;
        if report.torn_bytes > 0 || !report.quarantined.is_empty() {
            tracing::warn!(
                dir = %dir.display(),
                torn_bytes = report.torn_bytes,
                quarantined = report.quarantined.len(),
                "spool recovered from a crash or corruption"
            );
        }
        let mut inner = Inner {
            segments,
            writer,
            reader: None,
            head_off,
            head_seq,
            next_seq,
            peeked: None,
            disk_bytes,
            unacked_records,
            unacked_bytes,
            ack_file,
            ack_generation,
            buf: Vec::new(),
            poisoned: None,
        };
        normalize_head(&mut inner);
        let spool = Spool {
            dir,
            dead_dir,
            ack_path,
            cfg,
            inner: Mutex::new(inner),
            appended: Condvar::new(),
            depth_records: AtomicU64::new(0),
            depth_bytes: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            recovery: report,
        };
        spool.publish(&spool.lock());
        Ok(spool)
    }

    /// Returns what [`Spool::open`] found and repaired.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Returns the spool's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the configuration the spool was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// Appends a record and returns its sequence number once it is durable (written, and
    /// `fdatasync`ed under [`FsyncPolicy::Always`]). Fails with [`SpoolError::Full`] when the
    /// segment files would pass `max_bytes`; a failed append leaves the spool as it was.
    pub fn append(&self, kind: u16, payload: &[u8]) -> Result<Seq, SpoolError> {
        let len = payload.len() as u64;
        let max_payload =
            MAX_PAYLOAD_BYTES.min(self.cfg.max_bytes.saturating_sub(SEG_HEADER + REC_HEADER));
        if len > max_payload {
            return Err(SpoolError::TooLarge {
                len,
                max: max_payload,
            });
        }
        let size = REC_HEADER + len;
        let mut g = self.lock();
        let inner = &mut *g;
        if let Some(why) = &inner.poisoned {
            return Err(SpoolError::Poisoned(why.clone()));
        }
        let seq = inner.next_seq;
        let roll = match inner.segments.back() {
            None => true,
            Some(s) => s.end_seq() != seq || (s.count > 0 && s.len + size > self.cfg.segment_bytes),
        };
        // A rolled-over last segment whose records are all acknowledged is deleted.
        let reclaim = match inner.segments.back() {
            Some(s) if roll && inner.segments.len() == 1 && inner.head_seq == seq => s.len,
            _ => 0,
        };
        let needed = size + if roll { SEG_HEADER } else { 0 };
        if inner.disk_bytes - reclaim + needed > self.cfg.max_bytes {
            return Err(SpoolError::Full {
                used: inner.disk_bytes,
                needed,
                max: self.cfg.max_bytes,
            });
        }
        if roll {
            self.roll(inner, seq, reclaim > 0)?;
        }
        format::encode_record(&mut inner.buf, seq, kind, payload);
        let (Some(seg), Some(file)) = (inner.segments.back_mut(), inner.writer.as_ref()) else {
            return Err(SpoolError::Poisoned("no active segment".into()));
        };
        let at = seg.len;
        let written = file
            .write_all_at(&inner.buf, at)
            .map_err(|e| SpoolError::io("write", &seg.path, e))
            .and_then(|()| match self.cfg.fsync {
                FsyncPolicy::Always => file
                    .sync_data()
                    .map_err(|e| SpoolError::io("fsync", &seg.path, e)),
                FsyncPolicy::Never => Ok(()),
            });
        if let Err(e) = written {
            // Take back whatever part of the record reached the file, so the next append does
            // not follow garbage.
            if let Err(t) = file.set_len(at) {
                inner.poisoned = Some(format!(
                    "truncating {} to {at} after a failed write: {t}",
                    seg.path.display()
                ));
            }
            return Err(e);
        }
        seg.len += size;
        seg.count += 1;
        inner.next_seq = seq + 1;
        inner.disk_bytes += size;
        inner.unacked_records += 1;
        inner.unacked_bytes += size;
        self.publish(inner);
        drop(g);
        self.appended.notify_all();
        Ok(seq)
    }

    /// Starts a new segment with base `seq`, deleting the current last one if `delete_last`.
    fn roll(&self, inner: &mut Inner, seq: Seq, delete_last: bool) -> Result<(), SpoolError> {
        let path = self.dir.join(format::segment_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| SpoolError::io("create", &path, e))?;
        let made = file
            .write_all_at(&format::segment_header(seq), 0)
            .map_err(|e| SpoolError::io("write", &path, e))
            .and_then(|()| self.sync_file(&file, &path))
            .and_then(|()| self.sync_dir());
        if let Err(e) = made {
            // Best effort: a leftover empty segment is harmless, recovery drops it.
            if let Err(r) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), "removing a half-made segment: {r}");
            }
            return Err(e);
        }
        if delete_last {
            if let Some(old) = inner.segments.pop_back() {
                inner.disk_bytes -= old.len;
                remove_acked(&old.path);
            }
        }
        if inner.segments.is_empty() {
            inner.head_off = SEG_HEADER;
            inner.head_seq = seq;
        }
        inner.segments.push_back(Segment {
            base: seq,
            path,
            len: SEG_HEADER,
            count: 0,
        });
        inner.disk_bytes += SEG_HEADER;
        inner.writer = Some(file);
        drop_stale_reader(inner);
        Ok(())
    }

    /// Returns the oldest unacknowledged record, without removing it. Its CRC is checked again
    /// (a record that went bad on disk since `open` is [`SpoolError::Corrupt`]).
    pub fn peek(&self) -> Result<Option<Record>, SpoolError> {
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.head_seq >= inner.next_seq {
            return Ok(None);
        }
        let (header, path) = read_rec_header(inner, 0, inner.head_off)?;
        let off = inner.head_off;
        if header.seq != inner.head_seq {
            return Err(SpoolError::corrupt(
                path,
                off,
                format!("record has seq {}, expected {}", header.seq, inner.head_seq),
            ));
        }
        let Some(seg) = inner.segments.front() else {
            return Ok(None);
        };
        if off + header.size() > seg.len {
            return Err(SpoolError::corrupt(
                path,
                off,
                format!("record of {} bytes runs past the segment end", header.len),
            ));
        }
        let mut payload = vec![0u8; header.len as usize];
        reader_for(inner, 0)?
            .read_exact_at(&mut payload, off + REC_HEADER)
            .map_err(|e| SpoolError::io("read", &path, e))?;
        let mut raw = [0u8; REC_HEADER as usize];
        raw[4..8].copy_from_slice(&header.len.to_le_bytes());
        raw[8..16].copy_from_slice(&header.seq.to_le_bytes());
        raw[16..18].copy_from_slice(&header.kind.to_le_bytes());
        if format::record_crc(&raw, &payload) != header.crc {
            return Err(SpoolError::corrupt(path, off, "crc mismatch"));
        }
        inner.peeked = Some((header.seq, header.size()));
        Ok(Some(Record {
            seq: header.seq,
            kind: header.kind,
            payload,
        }))
    }

    /// Acknowledges every record up to and including `seq` (acknowledging an already
    /// acknowledged record does nothing). Durable when it returns: the new head is written to
    /// the ack file (and `fdatasync`ed under [`FsyncPolicy::Always`]) before segments whose
    /// records are all acknowledged are deleted. A crash before `ack` returns replays the
    /// records: at-least-once.
    pub fn ack(&self, seq: Seq) -> Result<(), SpoolError> {
        let mut g = self.lock();
        let inner = &mut *g;
        if seq < inner.head_seq {
            return Ok(());
        }
        if seq >= inner.next_seq {
            return Err(SpoolError::AckBeyondEnd {
                seq,
                newest: inner.next_seq.checked_sub(1).filter(|s| *s >= FIRST_SEQ),
            });
        }
        // Walk forward from the head without changing anything yet.
        let mut idx = 0;
        let mut off = inner.head_off;
        let mut hseq = inner.head_seq;
        let mut records = 0;
        let mut bytes = 0;
        while hseq <= seq && hseq < inner.next_seq {
            let Some(seg) = inner.segments.get(idx) else {
                break;
            };
            let seg_len = seg.len;
            if off >= seg_len {
                idx += 1;
                off = SEG_HEADER;
                hseq = inner.segments.get(idx).map_or(inner.next_seq, |s| s.base);
                continue;
            }
            let size = match inner.peeked {
                Some((s, size)) if s == hseq => size,
                _ => {
                    let (h, path) = read_rec_header(inner, idx, off)?;
                    if h.seq != hseq {
                        return Err(SpoolError::corrupt(
                            path,
                            off,
                            format!("record has seq {}, expected {hseq}", h.seq),
                        ));
                    }
                    h.size()
                }
            };
            off += size;
            hseq += 1;
            records += 1;
            bytes += size;
            if off >= seg_len && idx + 1 < inner.segments.len() {
                idx += 1;
                off = SEG_HEADER;
                hseq = inner.segments.get(idx).map_or(inner.next_seq, |s| s.base);
            }
        }
        if hseq >= inner.next_seq {
            hseq = inner.next_seq;
        }
        self.write_ack(inner, hseq)?;
        for _ in 0..idx {
            if let Some(old) = inner.segments.pop_front() {
                inner.disk_bytes -= old.len;
                remove_acked(&old.path);
            }
        }
        inner.head_off = off;
        inner.head_seq = hseq;
        inner.peeked = None;
        inner.unacked_records -= records;
        inner.unacked_bytes -= bytes;
        normalize_head(inner);
        drop_stale_reader(inner);
        self.publish(inner);
        Ok(())
    }

    /// Returns what is not yet acknowledged (from atomics: never waits for the lock).
    pub fn depth(&self) -> SpoolDepth {
        SpoolDepth {
            records: self.depth_records.load(Ordering::Relaxed),
            bytes: self.depth_bytes.load(Ordering::Relaxed),
        }
    }

    /// Returns the bytes of all segment files, the quantity `max_bytes` bounds.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    /// Returns true when every appended record is acknowledged.
    pub fn is_empty(&self) -> bool {
        let g = self.lock();
        g.head_seq >= g.next_seq
    }

    /// Waits until a record is unacknowledged, `stop` is set, or `timeout` passes. Returns
    /// true if a record is there. Wakes on [`Spool::append`] and on [`Spool::wake`].
    pub fn wait_for_record(&self, stop: &AtomicBool, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            if g.head_seq < g.next_seq {
                return true;
            }
            if stop.load(Ordering::Acquire) {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .appended
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Wakes every [`Spool::wait_for_record`] (after setting a stop flag, say).
    pub fn wake(&self) {
        // Taking the lock orders this after a waiter's check of its flag, so no wakeup is lost.
        drop(self.lock());
        self.appended.notify_all();
    }

    /// Writes a record that could not be delivered into `dead/` with the error text, keeping
    /// the newest [`SpoolConfig::dead_keep`]. Returns the payload file's path.
    pub fn bury(
        &self,
        seq: Option<Seq>,
        kind: u16,
        payload: &[u8],
        error: &str,
    ) -> Result<PathBuf, SpoolError> {
        let seq_part = seq.map_or_else(|| "direct".to_string(), |s| format!("seq{s:020}"));
        let stem = format!("{:020}-{seq_part}-kind{kind}", unix_nanos());
        let note = format!(
            "seq: {}\nkind: {kind}\nbytes: {}\nerror: {error}\n",
            seq.map_or_else(|| "none (direct delivery)".to_string(), |s| s.to_string()),
            payload.len()
        );
        bury_files(&self.dead_dir, &stem, payload, &note, &self.cfg)
    }

    fn write_ack(&self, inner: &mut Inner, head: Seq) -> Result<(), SpoolError> {
        let generation = inner.ack_generation + 1;
        let slot = format::encode_ack_slot(head, generation);
        let at = ACK_SLOT_OFFSETS[(generation % 2) as usize];
        inner
            .ack_file
            .write_all_at(&slot, at)
            .map_err(|e| SpoolError::io("write", &self.ack_path, e))?;
        self.sync_file(&inner.ack_file, &self.ack_path)?;
        inner.ack_generation = generation;
        Ok(())
    }

    fn sync_file(&self, file: &File, path: &Path) -> Result<(), SpoolError> {
        match self.cfg.fsync {
            FsyncPolicy::Always => file
                .sync_data()
                .map_err(|e| SpoolError::io("fsync", path, e)),
            FsyncPolicy::Never => Ok(()),
        }
    }

    fn sync_dir(&self) -> Result<(), SpoolError> {
        sync_dir(&self.dir, self.cfg.fsync)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The spool never panics while holding the lock; a poisoned lock still holds
        // consistent state, so it is used as is.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, inner: &Inner) {
        self.depth_records
            .store(inner.unacked_records, Ordering::Relaxed);
        self.depth_bytes
            .store(inner.unacked_bytes, Ordering::Relaxed);
        self.disk_bytes.store(inner.disk_bytes, Ordering::Relaxed);
    }
}

fn validate(cfg: &SpoolConfig) -> Result<(), SpoolError> {
    if cfg.segment_bytes < 4096 {
        return Err(SpoolError::Config(format!(
            "segment_bytes is {}, at least 4096 needed",
            cfg.segment_bytes
        )));
    }
    if cfg.max_bytes < cfg.segment_bytes {
        return Err(SpoolError::Config(format!(
            "max_bytes ({}) is smaller than segment_bytes ({})",
            cfg.max_bytes, cfg.segment_bytes
        )));
    }
    Ok(())
}

/// Drops exhausted segments at the head (all but the last), so the head is inside
/// `segments[0]` whenever a record is unacknowledged.
fn normalize_head(inner: &mut Inner) {
    while inner.segments.len() > 1 {
        let Some(front) = inner.segments.front() else {
            break;
        };
        if inner.head_off < front.len {
            break;
        }
        if let Some(old) = inner.segments.pop_front() {
            inner.disk_bytes -= old.len;
            remove_acked(&old.path);
        }
        if let Some(next) = inner.segments.front() {
            inner.head_off = SEG_HEADER;
            inner.head_seq = next.base.max(inner.head_seq);
        }
    }
    if let Some(front) = inner.segments.front() {
        if inner.head_off >= front.len && inner.segments.len() == 1 {
            inner.head_seq = inner.next_seq;
        }
    }
}

fn reader_for(inner: &mut Inner, idx: usize) -> Result<&File, SpoolError> {
    let Some(seg) = inner.segments.get(idx) else {
        return Err(SpoolError::Poisoned(format!("no segment at index {idx}")));
    };
    let base = seg.base;
    let cached = matches!(&inner.reader, Some((b, _)) if *b == base);
    if !cached {
        let f = File::open(&seg.path).map_err(|e| SpoolError::io("open", &seg.path, e))?;
        inner.reader = Some((base, f));
    }
    match &inner.reader {
        Some((_, f)) => Ok(f),
        None => Err(SpoolError::Poisoned("reader vanished".into())),
    }
}

fn read_rec_header(
    inner: &mut Inner,
    idx: usize,
    off: u64,
) -> Result<(format::RecHeader, PathBuf), SpoolError> {
    let path = inner
        .segments
        .get(idx)
        .map(|s| s.path.clone())
        .unwrap_or_default();
    let mut raw = [0u8; REC_HEADER as usize];
    reader_for(inner, idx)?
        .read_exact_at(&mut raw, off)
        .map_err(|e| SpoolError::io("read", &path, e))?;
    let h = format::decode_rec_header(&raw);
    if u64::from(h.len) > MAX_PAYLOAD_BYTES {
        return Err(SpoolError::corrupt(
            path,
            off,
            format!("record length {} is over the maximum", h.len),
        ));
    }
    Ok((h, path))
}

/// Returns true if bytes `[from, to)` of the file are all zero.
fn all_zero(file: &File, path: &Path, from: u64, to: u64) -> Result<bool, SpoolError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let n = buf.len().min((to - at) as usize);
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, at)
            .map_err(|e| SpoolError::io("read", path, e))?;
        if chunk.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Closes the cached reader if its segment is no longer the head (so a deleted segment's
/// blocks are freed).
fn drop_stale_reader(inner: &mut Inner) {
    let head_base = inner.segments.front().map(|s| s.base);
    if matches!(&inner.reader, Some((b, _)) if Some(*b) != head_base) {
        inner.reader = None;
    }
}

fn open_rw(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| SpoolError::io("open", path, e))
}

/// Deletes a segment whose records are all acknowledged. The ack is already durable, so a
/// failure only costs disk space until the next open, which deletes it again.
fn remove_acked(path: &Path) {
    if let Err(e) = remove_file(path) {
        tracing::warn!("{e}; the next open deletes it");
    }
}

fn remove_file(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SpoolError::io("delete", path, e)),
    }
}

fn sync_dir(dir: &Path, fsync: FsyncPolicy) -> Result<(), SpoolError> {
    if fsync == FsyncPolicy::Never {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io("fsync", dir, e))
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Opens (or creates) the ack file; returns it with the acknowledged head and generation.
fn open_ack(dir: &Path, path: &Path, cfg: &SpoolConfig) -> Result<(File, Seq, u64), SpoolError> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| SpoolError::io("open", path, e))?;
    if !existed {
        sync_dir(dir, cfg.fsync)?;
        return Ok((file, 0, 0));
    }
    let mut best: Option<(Seq, u64)> = None;
    let mut any_bytes = false;
    for at in ACK_SLOT_OFFSETS {
        let mut slot = [0u8; ACK_SLOT];
        match file.read_exact_at(&mut slot, at) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                // A short file: read what there is, to tell "never written" from "garbage".
                let len = file
                    .metadata()
                    .map_err(|e| SpoolError::io("stat", path, e))?
                    .len();
                any_bytes |= len > at;
                continue;
            }
            Err(e) => return Err(SpoolError::io("read", path, e)),
        }
        any_bytes |= slot.iter().any(|b| *b != 0);
        if let Some((head, generation)) = format::decode_ack_slot(&slot) {
            if best.is_none_or(|(_, g)| generation > g) {
                best = Some((head, generation));
            }
        }
    }
    match best {
        Some((head, generation)) => Ok((file, head, generation)),
        None if !any_bytes => Ok((file, 0, 0)),
        None => match cfg.on_corruption {
            OnCorruption::Fail => Err(SpoolError::corrupt(path, 0, "no valid ack slot")),
            OnCorruption::Quarantine => {
                tracing::warn!(
                    path = %path.display(),
                    "ack file has no valid slot; replaying every spooled record"
                );
                Ok((file, 0, 0))
            }
        },
    }
}

/// What scanning one segment found.
struct Scan {
    len: u64,
    count: u64,
    /// Offset of the record whose seq is the acknowledged head, if in this segment.
    ack_off: Option<u64>,
    unacked_records: u64,
    unacked_bytes: u64,
    quarantined: bool,
}

struct Scanner<'a> {
    cfg: &'a SpoolConfig,
    dead_dir: &'a Path,
    ack_head: Seq,
    report: &'a mut RecoveryReport,
    buf: Vec<u8>,
}

enum Problem {
    /// The bad bytes reach the end of the last segment: a crash mid-append.
    Torn(String),
    Corrupt(String),
}

impl Scanner<'_> {
    /// Reads and checks every record of a segment, truncating a torn tail and handling
    /// corruption. `None` means the file held nothing usable and was removed.
    fn scan(&mut self, path: &Path, base: Seq, is_last: bool) -> Result<Option<Scan>, SpoolError> {
        let file = open_rw(path)?;
        let file_len = file
            .metadata()
            .map_err(|e| SpoolError::io("stat", path, e))?
            .len();
        if file_len < SEG_HEADER {
            if is_last {
                tracing::warn!(path = %path.display(), "removing a segment torn in its header");
                self.report.torn_bytes += file_len;
                remove_file(path)?;
                return Ok(None);
            }
            self.corrupt_region(path, 0, "segment is shorter than its header")?;
            return Ok(None);
        }
        let mut header = [0u8; SEG_HEADER as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| SpoolError::io("read", path, e))?;
        if &header[..8] != SEG_MAGIC || header[8..] != base.to_le_bytes() {
            self.corrupt_region(path, 0, "bad segment header")?;
            return Ok(None);
        }
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let mut skip = [0u8; SEG_HEADER as usize];
        reader
            .read_exact(&mut skip)
            .map_err(|e| SpoolError::io("read", path, e))?;
        let mut scan = Scan {
            len: SEG_HEADER,
            count: 0,
            ack_off: None,
            unacked_records: 0,
            unacked_bytes: 0,
            quarantined: false,
        };
        let problem = loop {
            let off = scan.len;
            if off == file_len {
                break None;
            }
            if file_len - off < REC_HEADER {
                break Some(Problem::Torn("record header cut short".into()));
            }
            let mut raw = [0u8; REC_HEADER as usize];
            reader
                .read_exact(&mut raw)
                .map_err(|e| SpoolError::io("read", path, e))?;
            let h = format::decode_rec_header(&raw);
            let len = u64::from(h.len);
            if len > MAX_PAYLOAD_BYTES {
                break Some(Problem::Corrupt(format!(
                    "record length {len} is over the maximum"
                )));
            }
            if off + h.size() > file_len {
                break Some(Problem::Torn(format!(
                    "record of {len} bytes runs past the end of the file"
                )));
            }
            self.buf.resize(h.len as usize, 0);
            reader
                .read_exact(&mut self.buf)
                .map_err(|e| SpoolError::io("read", path, e))?;
            if format::record_crc(&raw, &self.buf) != h.crc {
                if off + h.size() == file_len {
                    break Some(Problem::Torn("crc mismatch in the last record".into()));
                }
                break Some(Problem::Corrupt("crc mismatch".into()));
            }
            let expected = base + scan.count;
            if h.seq != expected {
                break Some(Problem::Corrupt(format!(
                    "record has seq {}, expected {expected}",
                    h.seq
                )));
            }
            if h.seq == self.ack_head {
                scan.ack_off = Some(off);
            }
            if h.seq >= self.ack_head {
                scan.unacked_records += 1;
                scan.unacked_bytes += h.size();
            }
            scan.len += h.size();
            scan.count += 1;
        };
        drop(reader);
        let problem = match problem {
            // A crash can leave a file longer than its data, the rest zeros: a torn tail too.
            Some(Problem::Corrupt(reason)) if is_last => {
                if all_zero(&file, path, scan.len, file_len)? {
                    Some(Problem::Torn(format!(
                        "{reason}, then zeros to the end of the file"
                    )))
                } else {
                    Some(Problem::Corrupt(reason))
                }
            }
            p => p,
        };
        match problem {
            None => {}
            Some(Problem::Torn(reason)) if is_last => {
                tracing::warn!(
                    path = %path.display(),
                    offset = scan.len,
                    "truncating a torn record (a crash mid-append): {reason}"
                );
                self.report.torn_bytes += file_len - scan.len;
                file.set_len(scan.len)
                    .map_err(|e| SpoolError::io("truncate", path, e))?;
                if self.cfg.fsync == FsyncPolicy::Always {
                    file.sync_all()
                        .map_err(|e| SpoolError::io("fsync", path, e))?;
                }
            }
            Some(Problem::Torn(reason) | Problem::Corrupt(reason)) => {
                self.quarantine_tail(&file, path, scan.len, file_len, &reason)?;
                scan.quarantined = true;
            }
        }
        Ok(Some(scan))
    }

    /// A whole file is bad: fail, or move it into `dead/`.
    fn corrupt_region(&mut self, path: &Path, offset: u64, reason: &str) -> Result<(), SpoolError> {
        if self.cfg.on_corruption == OnCorruption::Fail {
            return Err(SpoolError::corrupt(path, offset, reason));
        }
        let bytes = fs::read(path).map_err(|e| SpoolError::io("read", path, e))?;
        let dead_file = self.bury_region(path, offset, &bytes, reason)?;
        remove_file(path)?;
        self.report.quarantined.push(Quarantined {
            segment: path.to_path_buf(),
            offset,
            bytes: bytes.len() as u64,
            reason: reason.to_string(),
            dead_file,
        });
        Ok(())
    }

    /// Bytes `[offset, file_len)` are bad: fail, or move them into `dead/` and truncate.
    fn quarantine_tail(
        &mut self,
        file: &File,
        path: &Path,
        offset: u64,
        file_len: u64,
        reason: &str,
    ) -> Result<(), SpoolError> {
        if self.cfg.on_corruption == OnCorruption::Fail {
            return Err(SpoolError::corrupt(path, offset, reason));
        }
        let mut bytes = vec![0u8; (file_len - offset) as usize];
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| SpoolError::io("read", path, e))?;
        let dead_file = self.bury_region(path, offset, &bytes, reason)?;
        file.set_len(offset)
            .map_err(|e| SpoolError::io("truncate", path, e))?;
        if self.cfg.fsync == FsyncPolicy::Always {
            file.sync_all()
                .map_err(|e| SpoolError::io("fsync", path, e))?;
        }
        tracing::error!(
            path = %path.display(),
            offset,
            bytes = bytes.len(),
            dead_file = %dead_file.display(),
            "quarantined a corrupt spool region: {reason}"
        );
        self.report.quarantined.push(Quarantined {
            segment: path.to_path_buf(),
            offset,
            bytes: bytes.len() as u64,
            reason: reason.to_string(),
            dead_file: dead_file.clone(),
        });
        Ok(())
    }

    fn bury_region(
        &self,
        path: &Path,
        offset: u64,
        bytes: &[u8],
        reason: &str,
    ) -> Result<PathBuf, SpoolError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment");
        let stem = format!("{:020}-corrupt-{name}-at{offset}", unix_nanos());
        let note = format!(
            "segment: {}\noffset: {offset}\nbytes: {}\nerror: {reason}\n",
            path.display(),
            bytes.len()
        );
        bury_files(self.dead_dir, &stem, bytes, &note, self.cfg)
    }
}

/// Writes `<stem>.bin` and `<stem>.txt` into `dead_dir`, then deletes the oldest entries past
/// `cfg.dead_keep`.
fn bury_files(
    dead_dir: &Path,
    stem: &str,
    payload: &[u8],
    note: &str,
    cfg: &SpoolConfig,
) -> Result<PathBuf, SpoolError> {
    let bin = dead_dir.join(format!("{stem}.bin"));
    let txt = dead_dir.join(format!("{stem}.txt"));
    for (path, bytes) in [(&bin, payload), (&txt, note.as_bytes())] {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| SpoolError::io("create", path, e))?;
        f.write_all_at(bytes, 0)
            .map_err(|e| SpoolError::io("write", path, e))?;
        if cfg.fsync == FsyncPolicy::Always {
            f.sync_data()
                .map_err(|e| SpoolError::io("fsync", path, e))?;
        }
    }
    sync_dir(dead_dir, cfg.fsync)?;
    prune_dead(dead_dir, cfg.dead_keep)?;
    Ok(bin)
}

fn prune_dead(dead_dir: &Path, keep: usize) -> Result<(), SpoolError> {
    let mut stems: Vec<String> = Vec::new();
    let entries = fs::read_dir(dead_dir).map_err(|e| SpoolError::io("list", dead_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io("list", dead_dir, e))?;
        if let Some(stem) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".bin"))
        {
            stems.push(stem.to_string());
        }
    }
    if stems.len() <= keep {
        return Ok(());
    }
    stems.sort_unstable();
    let excess = stems.len() - keep;
    for stem in &stems[..excess] {
        remove_file(&dead_dir.join(format!("{stem}.bin")))?;
        remove_file(&dead_dir.join(format!("{stem}.txt")))?;
    }
    Ok(())
}
