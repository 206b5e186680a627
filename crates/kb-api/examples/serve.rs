//! Serves the API over a SQLite store, for the benchmark and schemathesis scripts.
//!
//! `cargo run --release -p kb-api --example serve -- DB [ADDR] [--audit PATH]`
//!
//! The bootstrap admin token comes from `KUBECOST_BRIDGE_ADMIN_TOKEN` (required). `--now UNIX`
//! fixes the clock (so `window=30d` covers generated data); `--cache-ttl SECS` sets the
//! response cache (default 60, 0 disables); `--audit PATH` appends the audit log to a file
//! (default: none).
#![allow(clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use kb_api::{ApiState, AuditSink, AuthConfig, Limits, Secret};
use kb_store::SqliteStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut db = None;
    let mut addr = "127.0.0.1:8080".to_string();
    let mut audit_path = None;
    let mut now: Option<i64> = None;
    let mut ttl = 60u64;
    let mut workers = 2usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--audit" => audit_path = args.next(),
            "--now" => now = args.next().and_then(|s| s.parse().ok()),
            "--cache-ttl" => ttl = args.next().and_then(|s| s.parse().ok()).unwrap_or(60),
            "--workers" => workers = args.next().and_then(|s| s.parse().ok()).unwrap_or(2),
            _ if db.is_none() => db = Some(a),
            _ => addr = a,
        }
    }
    let db = db.ok_or("usage: serve DB [ADDR] [--audit PATH] [--now UNIX] [--cache-ttl SECS]")?;
    let token = std::env::var("KUBECOST_BRIDGE_ADMIN_TOKEN")
        .map_err(|_| "set KUBECOST_BRIDGE_ADMIN_TOKEN")?;
    let store = Arc::new(SqliteStore::open(std::path::Path::new(&db))?);
    let audit = match audit_path {
        Some(p) => AuditSink::new(
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            10_000,
        )?,
        None => AuditSink::disabled(),
    };
    let clock: kb_api::Clock = match now {
        Some(t) => Arc::new(move || t),
        None => kb_api::system_clock(),
    };
    let auth = AuthConfig {
        bootstrap_admin: Some(Secret::new(token)),
        ..AuthConfig::default()
    };
    let state = ApiState::new(store.clone(), store, &auth, audit, clock)?.with_limits(Limits {
        cache_ttl: Duration::from_secs(ttl),
        ..Limits::default()
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(8)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("serving on http://{}", listener.local_addr()?);
        axum::serve(listener, kb_api::router(state))
            .with_graceful_shutdown(async {
                tokio::signal::ctrl_c().await.ok();
            })
            .await
    })?;
    Ok(())
}
