//! Integration tests of kb-kubecost: the project's own fixtures, the real Kubecost/OpenCost
//! samples (when `KUBECOST_BRIDGE_REAL_FIXTURES` is set), and the HTTP client against small
//! axum servers on 127.0.0.1.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod fixtures;
mod http;
mod real;
