//! Serves the API and the dashboard over a SQLite store, for the dashboard benchmark.
//!
//! `cargo run --release -p kb-dashboard --example dashboard_serve -- DB [ADDR] [--now UNIX]
//! [--cache-ttl SECS] [--workers N]`
//!
//! The bootstrap admin token comes from `KUBECOST_BRIDGE_ADMIN_TOKEN` (required). `--now`
//! fixes the clock so the picker's ranges cover generated data. The audit log is off.
#![allow(clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use kb_api::{ApiState, AuditSink, AuthConfig, Limits, Secret};
use kb_store::SqliteStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut db = None;
    let mut addr = "127.0.0.1:8080".to_string();
    let mut now: Option<i64> = None;
    let mut ttl = 60u64;
    let mut workers = 2usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--now" => now = args.next().and_then(|s| s.parse().ok()),
            "--cache-ttl" => ttl = args.next().and_then(|s| s.parse().ok()).unwrap_or(60),
            "--workers" => workers = args.next().and_then(|s| s.parse().ok()).unwrap_or(2),
            _ if db.is_none() => db = Some(a),
            _ => addr = a,
        }
    }
    let db = db.ok_or("usage: dashboard_serve DB [ADDR] [--now UNIX] [--cache-ttl SECS]")?;
    let token = std::env::var("KUBECOST_BRIDGE_ADMIN_TOKEN")
        .map_err(|_| "set KUBECOST_BRIDGE_ADMIN_TOKEN")?;
    let store = Arc::new(SqliteStore::open(std::path::Path::new(&db))?);
    let clock: kb_api::Clock = match now {
        Some(t) => Arc::new(move || t),
        None => kb_api::system_clock(),
    };
    let auth = AuthConfig {
        bootstrap_admin: Some(Secret::new(token)),
        ..AuthConfig::default()
    };
    let state = ApiState::new(store.clone(), store, &auth, AuditSink::disabled(), clock)?
        .with_limits(Limits {
            cache_ttl: Duration::from_secs(ttl),
            ..Limits::default()
        });
    let app = kb_api::router(state.clone()).merge(kb_dashboard::router(
        state,
        kb_dashboard::Options::default(),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(8)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("serving on http://{}", listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                tokio::signal::ctrl_c().await.ok();
            })
            .await
    })?;
    Ok(())
}
