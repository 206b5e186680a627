//! Errors from the real server: partial writes and field type conflicts are surfaced with the
//! server's message, an unknown database is a permanent error, and wrong credentials with auth
//! enabled give a clear error that never shows the password.

use kb_conformance::{DAY0, checkpoint, hour_at, window_rows};
use kb_core::Resolution;
use kb_influx::{InfluxApi, InfluxClient, InfluxConfig, InfluxStore, Secret};
use kb_pipeline::ports::CostStore;

use crate::server;

#[test]
fn partial_writes_and_type_conflicts_are_errors_with_the_server_message() {
    let store = server::store("conflict");
    let client = store.client();
    // `total_cost` exists as a float once a window was written...
    let c = "conflict";
    let w = hour_at(DAY0, 0);
    let rows = window_rows(c, w, 1.0);
    let mut writer = store.begin_allocations(c, w, Resolution::Hour).unwrap();
    writer.write(&rows).unwrap();
    writer
        .commit(&checkpoint(c, w, Resolution::Hour, &rows))
        .unwrap();
    // ... so an integer for it is a field type conflict, refused with the server's words.
    let e = client
        .send(b"cost_allocations,cluster=conflict total_cost=1i 1699920000\n")
        .unwrap_err();
    assert!(!e.retryable, "{e}");
    assert!(e.message.contains("write refused (http 400)"), "{e}");
    assert!(e.message.contains("partial write"), "{e}");
    assert!(e.message.contains("field type conflict"), "{e}");

    // An unparsable line among good ones: the error names the line; the store stays usable.
    let e = client
        .send(b"cost_allocations,cluster=x total_cost=1.0 1699920000\nnot a line\n")
        .unwrap_err();
    assert!(e.message.contains("unable to parse"), "{e}");
    assert!(!e.retryable);

    // An InfluxQL error is an error too.
    let e = client.query("SELEC nothing").unwrap_err();
    assert!(e.message.contains("query failed"), "{e}");
}

#[test]
fn a_missing_database_is_created_or_reported() {
    // Not created (create_database off): InfluxDB's 404 is a permanent error.
    let mut cfg = server::config("missing");
    cfg.create_database = false;
    let db = cfg.target().to_string();
    let client = InfluxClient::new(&cfg).unwrap();
    let e = client.send(b"m a=1.0 1\n").unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("http 404"), "{e}");
    assert!(e.message.contains("database not found"), "{e}");
    // Created at open, and creating it again is harmless.
    cfg.create_database = true;
    InfluxStore::open(&cfg).unwrap();
    InfluxStore::open(&cfg).unwrap();
    client.send(b"m a=1.0 1\n").unwrap();
    let v = server::raw_query(&db, "SELECT count(a) FROM m");
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], 1, "{v}");
}

fn auth_config(user: &str, password: &str) -> InfluxConfig {
    let mut cfg = InfluxConfig::v1(server::auth_url());
    cfg.api = InfluxApi::V1 {
        database: server::database("auth"),
        retention_policy: None,
        username: Some(user.to_string()),
        password: Some(Secret::new(password)),
    };
    cfg
}

#[test]
fn wrong_credentials_give_a_clear_error_without_the_secret() {
    // The right credentials work (basic auth), and gzip bodies are accepted with auth too.
    let good = auth_config(server::ADMIN, server::ADMIN_PASSWORD);
    let store = InfluxStore::open(&good).unwrap();
    let c = "auth";
    let w = hour_at(DAY0, 0);
    let rows = window_rows(c, w, 1.0);
    let mut writer = store.begin_allocations(c, w, Resolution::Hour).unwrap();
    writer.write(&rows).unwrap();
    writer
        .commit(&checkpoint(c, w, Resolution::Hour, &rows))
        .unwrap();
    assert_eq!(store.window_total(c, w).unwrap().rows, rows.len() as u64);

    // A wrong password: open fails with a permanent authentication error.
    let wrong = "Wr0ng-pa55word-XYZ";
    let bad = auth_config(server::ADMIN, wrong);
    let e = InfluxStore::open(&bad).unwrap_err();
    let shown = format!("{e} {e:?} {bad:?}");
    assert!(!e.retryable);
    assert!(
        e.message
            .contains("authentication failed for user \"kbadmin\""),
        "{e}"
    );
    assert!(e.message.contains("http 401"), "{e}");
    assert!(!shown.contains(wrong), "{shown}");
    assert!(!shown.contains(server::ADMIN_PASSWORD), "{shown}");

    // Writes with the wrong password, and without any credentials, fail the same way.
    let mut cfg = good.clone();
    cfg.api = match cfg.api {
        InfluxApi::V1 { database, .. } => InfluxApi::V1 {
            database,
            retention_policy: None,
            username: Some(server::ADMIN.into()),
            password: Some(Secret::new(wrong)),
        },
        other => other,
    };
    let e = InfluxClient::new(&cfg)
        .unwrap()
        .send(b"m a=1.0 1\n")
        .unwrap_err();
    assert!(e.message.contains("authentication failed"), "{e}");
    assert!(!format!("{e:?}").contains(wrong));
    let mut anon = cfg.clone();
    anon.api = match anon.api {
        InfluxApi::V1 { database, .. } => InfluxApi::V1 {
            database,
            retention_policy: None,
            username: None,
            password: None,
        },
        other => other,
    };
    let e = InfluxClient::new(&anon)
        .unwrap()
        .send(b"m a=1.0 1\n")
        .unwrap_err();
    assert!(
        e.message
            .contains("authentication failed for anonymous access"),
        "{e}"
    );
    assert!(!e.retryable);
}
