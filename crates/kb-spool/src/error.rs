//! The spool's errors. Every error about a file names the file, and corruption names the offset.

use std::path::PathBuf;

/// A record's sequence number: assigned by [`crate::Spool::append`], strictly increasing, never
/// reused (it survives restarts through the segment files and the ack file).
pub type Seq = u64;

/// What went wrong in the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Appending would take the spool's files past `max_bytes`: apply backpressure (stop
    /// acknowledging upstream) and try again once the deliverer has drained some records.
    #[error("spool is full: {used} of {max} bytes used, {needed} more needed")]
    Full {
        /// Bytes the segment files use now.
        used: u64,
        /// Bytes the append would add.
        needed: u64,
        /// The configured bound.
        max: u64,
    },
    /// The record can never fit: larger than `max_bytes` (less a segment header) or than
    /// [`crate::MAX_PAYLOAD_BYTES`].
    #[error("record of {len} bytes is larger than the spool accepts ({max} bytes)")]
    TooLarge {
        /// The payload's length.
        len: u64,
        /// The largest payload accepted.
        max: u64,
    },
    /// A file operation failed.
    #[error("spool {op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file holds bytes that are not what the spool wrote.
    #[error("spool file {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The segment or ack file.
        path: PathBuf,
        /// Byte offset of the bad record or header in that file.
        offset: u64,
        /// What is wrong, lowercase.
        reason: String,
    },
    /// `ack` named a sequence number that was never appended.
    #[error("cannot ack seq {seq}: the newest record is {newest:?}")]
    AckBeyondEnd {
        /// The sequence number asked for.
        seq: Seq,
        /// The newest appended sequence number, if any.
        newest: Option<Seq>,
    },
    /// The configuration cannot work.
    #[error("invalid spool config: {0}")]
    Config(String),
    /// A failed write could not be rolled back, so the active segment may end in garbage:
    /// the spool refuses further appends until it is reopened (which truncates the torn tail).
    #[error("spool is unusable after a failed rollback; reopen it: {0}")]
    Poisoned(String),
}

impl SpoolError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SpoolError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        SpoolError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
