//! Integration tests of the SQLite store: the write contract of the pipeline's ports
//! (idempotence, atomic commit, rollback on drop), the cost queries, migrations, file
//! permissions, and the small tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod alerts;
mod common;
mod concurrency;
mod conformance;
mod idempotence;
mod insights;
mod migrations;
mod roundtrip;
mod tables;
