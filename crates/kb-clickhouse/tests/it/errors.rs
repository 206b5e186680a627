//! Errors: a refused password, an unreachable server, use from inside an async runtime.

use std::time::Duration;

use kb_clickhouse::{ClickHouseConfig, ClickHouseStore, Secret};
use kb_pipeline::ports::{CostReader, CostStore};

use crate::server;

#[test]
fn a_bad_password_is_a_clear_permanent_error_without_the_secret() {
    let mut cfg = server::config("badpw");
    let secret = "not-the-password-8c1f77e2";
    cfg.password = Some(Secret::new(secret));
    let e = ClickHouseStore::open(&cfg).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(
        e.message
            .contains("authentication failed for user \"default\""),
        "{e}"
    );
    assert!(
        e.message.contains("http 401") || e.message.contains("http 403"),
        "{e}"
    );
    assert!(!shown.contains(secret), "the password leaked: {shown}");
    assert!(!e.retryable);
    assert!(!format!("{cfg:?}").contains(secret));
}

#[test]
fn an_unreachable_server_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = ClickHouseConfig::new(format!("http://127.0.0.1:{port}"));
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.request_timeout = Duration::from_secs(5);
    let e = ClickHouseStore::open(&cfg).unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(
        e.message
            .starts_with("clickhouse: create database: cannot reach the server"),
        "{e}"
    );
}

#[test]
fn credentials_in_the_url_are_refused() {
    let cfg = ClickHouseConfig::new("http://default:hunter2@127.0.0.1:1");
    let e = ClickHouseStore::open(&cfg).unwrap_err();
    assert!(!e.message.contains("hunter2"), "{e}");
    assert!(e.message.contains("must not contain credentials"), "{e}");
}

#[test]
fn the_store_works_from_inside_an_async_runtime() {
    let store = server::store("async");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let w = kb_conformance::hour_at(kb_conformance::DAY0, 0);
        let rows = kb_conformance::window_rows("async", w, 1.0);
        let stats =
            kb_conformance::put_window(&store, "async", w, kb_core::Resolution::Hour, &rows)
                .unwrap();
        assert_eq!(stats.rows, rows.len() as u64);
        assert_eq!(
            store.clusters().unwrap(),
            vec![("async".to_string(), w.end)]
        );
        // Dropping an uncommitted writer inside a runtime must not panic either.
        let mut writer = store
            .begin_allocations("async", w, kb_core::Resolution::Hour)
            .unwrap();
        writer.write(&rows).unwrap();
        drop(writer);
    });
    drop(rt);
}
