//! Integration tests of the ClickHouse store against a real `clickhouse-server`, started once
//! per test binary by `scripts/services/clickhouse.sh` on free ports with a temp dir (see
//! [`server`]). Set `KB_CLICKHOUSE_URL` to use a server that is already running instead.
//! Every test uses a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod errors;
mod server;
mod tls;
mod week;
