//! Integration tests of kb-ops: the `/metrics` page against the contract in
//! `deploy/prometheus/README.md`, the alerts' evaluation and state machine (with persistence
//! through the real SQLite store), and webhook delivery to a local HTTP receiver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod alerts;
mod common;
mod metrics;
mod notify;
