//! Mapping of SQLite errors to the pipeline's [`StoreError`].
//!
//! Invariants: `SQLITE_BUSY` and `SQLITE_LOCKED` (another connection holds the write lock
//! longer than the busy timeout) are retryable; every other error is permanent. Messages are
//! lowercase, name the operation that failed, and never contain row values or paths' secrets
//! (SQLite's own messages name tables and constraints, not data).

pub use kb_pipeline::ports::StoreError;
use rusqlite::ErrorCode;

/// Returns true when SQLite refused because another connection holds a lock.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Converts a rusqlite error into a [`StoreError`] whose message says what failed.
pub(crate) fn to_store_error(op: &str, e: rusqlite::Error) -> StoreError {
    StoreError {
        message: format!("sqlite: {op}: {e}"),
        retryable: is_busy(&e),
        source: Some(Box::new(e)),
    }
}

/// Returns a closure for `map_err` that names the operation.
pub(crate) fn db_err(op: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| to_store_error(op, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_retryable_and_others_are_not() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let e = to_store_error("insert allocation row", busy);
        assert!(e.retryable);
        assert!(e.message.starts_with("sqlite: insert allocation row: "));
        let locked = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_LOCKED),
            None,
        );
        assert!(to_store_error("x", locked).retryable);
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(!to_store_error("x", constraint).retryable);
        assert!(!to_store_error("x", rusqlite::Error::QueryReturnedNoRows).retryable);
    }
}
