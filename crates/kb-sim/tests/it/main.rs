//! Integration tests of the simulator over real HTTP (127.0.0.1:0): ground truth, Kubecost's
//! shapes (against the real samples when `KUBECOST_BRIDGE_REAL_FIXTURES` is set), query
//! semantics, faults and `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod faults;
mod metrics;
mod semantics;
mod shapes;
