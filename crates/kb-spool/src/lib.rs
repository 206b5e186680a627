//! A durable, bounded on-disk spool of opaque records, and a worker that delivers them in
//! order to a backend that may be down.
//!
//! Store backends (ClickHouse, InfluxDB) encode batches to bytes (an HTTP body, tagged with a
//! caller-defined `kind` such as the table or endpoint). When the backend is down or slow,
//! those records go to the [`Spool`]; the [`Deliverer`] replays them in order once it
//! recovers. With idempotent writes in the backends, at-least-once delivery gives no loss and
//! no duplicates.
//!
//! # Guarantees
//!
//! - **Durable before acknowledged**: [`Spool::append`] returns only after the record is
//!   written (and `fdatasync`ed under [`FsyncPolicy::Always`]); [`Deliverer::write_through`]
//!   returns only once the record is in the backend, the spool, or `dead/`. Callers
//!   acknowledge upstream (an extractor checkpoint, a remote_write 2xx) only after that.
//! - **Bounded**: the segment files never pass [`SpoolConfig::max_bytes`]; a full spool
//!   refuses appends with [`SpoolError::Full`] (backpressure), it never drops records.
//!   `dead/` keeps at most [`SpoolConfig::dead_keep`] records.
//! - **In order**: records are peeked and delivered in append order; a record is never
//!   skipped because a later one could be delivered.
//! - **At-least-once**: acknowledged records are never replayed; a crash between a delivery
//!   and its [`Spool::ack`] replays that record (the only one in flight) after restart.
//! - **Crash recovery**: every record carries a length and a CRC-32. A torn tail (a crash
//!   mid-append) is truncated away with a warning; corruption elsewhere fails
//!   [`Spool::open`] with the file and offset, or is moved to `dead/`
//!   ([`OnCorruption`]). Nothing in here panics on a bad file.
//! - **Observable**: [`Spool::depth`] (records and bytes not yet acknowledged) and
//!   [`Deliverer::stats`].
//!
//! # On-disk layout
//!
//! ```text
//! <dir>/               mode 0700
//!   seg-<base seq>.log segments of records (format below)
//!   ack                the first unacknowledged seq, two alternating CRC'd slots
//!   dead/              <time>-seq<seq>-kind<kind>.bin (payload) and .txt (error text)
//! ```
//!
//! The byte format is in the `format` module's docs: a segment is a 16-byte header
//! (`KBSPSEG1`, base seq) and records of `crc32 | len u32 | seq u64 | kind u16 | payload`.

mod deliver;
mod error;
mod format;
mod spool;

pub use deliver::{
    Deliverer, DelivererConfig, DelivererStats, Delivery, DeliveryError, StopHandle, WriteOutcome,
};
pub use error::{Seq, SpoolError};
pub use format::MAX_PAYLOAD_BYTES;
pub use spool::{
    FsyncPolicy, OnCorruption, Quarantined, Record, RecoveryReport, Spool, SpoolConfig, SpoolDepth,
};
