//! Schema versions: a database made by migration 1 is migrated forward with its data, a newer
//! database is refused, and the file is private.

use kb_core::Resolution;
use kb_pipeline::ports::{CostStore, Endpoint};
use kb_store::SqliteStore;
use kb_store::schema::{MIGRATIONS, SCHEMA_VERSION};

use crate::common::*;

#[test]
fn a_version_1_database_is_migrated_forward_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        // The fixture: what a binary that knew only migration 1 wrote.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO sync_state VALUES ('{CLUSTER}', 'allocation', {s}, {e}, '1h', {e}, 9, 1.5, 0);
             INSERT INTO clusters (name) VALUES ('{CLUSTER}');",
            s = hour(0).start,
            e = hour(0).end,
        ))
        .unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'assets'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "migration 1 has no assets table");
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    const { assert!(SCHEMA_VERSION >= 2) };
    let cps = store.checkpoints(CLUSTER, Endpoint::Allocation).unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(
        (cps[0].window, cps[0].resolution, cps[0].rows),
        (hour(0), Resolution::Hour, 9)
    );
    // Tables of later migrations work, and the old cluster row is reused.
    store.put_budgets(CLUSTER, &[], 0).unwrap();
    put_window(
        &store,
        hour(1),
        Resolution::Hour,
        &window_rows(hour(1), 1.0),
    );
    assert_eq!(store.stats().unwrap().rows("clusters"), 1);
    drop(store);
    // Reopening an up-to-date database runs nothing.
    assert_eq!(
        SqliteStore::open(&path).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
}

#[test]
fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        err.message.contains("newer than this binary"),
        "{}",
        err.message
    );
    assert!(!err.retryable);
}

#[cfg(unix)]
#[test]
fn the_database_file_is_private_and_in_wal_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = store();
    put_window(
        &store,
        hour(0),
        Resolution::Hour,
        &window_rows(hour(0), 1.0),
    );
    let mode = std::fs::metadata(dir.path().join("kb.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let wal = dir.path().join("kb.db-wal");
    assert!(wal.exists(), "wal journal in use");
    assert_eq!(
        std::fs::metadata(&wal).unwrap().permissions().mode() & 0o077,
        0
    );
    let conn = rusqlite::Connection::open(dir.path().join("kb.db")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn opening_a_missing_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(&dir.path().join("missing/kb.db")).unwrap_err();
    assert!(
        err.message.starts_with("sqlite: create database file"),
        "{}",
        err.message
    );
}
