//! Integration tests of kb-remote-write over loopback HTTP: the bad-input matrix, overload and
//! shutdown, scraping the in-process simulator against its ground truth, and end to end with a
//! real Prometheus 2.42 started by `scripts/services/prometheus.sh`.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod bad_input;
mod common;
mod overload;
mod prometheus;
mod scrape_sim;
