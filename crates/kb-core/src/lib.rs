//! The cost model of kubecost-bridge: pure data types and functions, no IO.
//!
//! Everything that crosses from Kubecost into the bridge is converted into these types by the
//! adapters (`kb-kubecost` for the HTTP API, later the remote_write receiver), and everything the
//! stores persist is made from them. The crate does no IO, reads no clock (time is always an
//! argument), has no randomness and no serde, so every function here is deterministic and can be
//! tested with plain values.
//!
//! - [`model`]: allocations, assets, budgets, predictions and savings recommendations.
//! - [`window`]: time windows, Kubecost's `window=` syntax, and the planner that decides which
//!   closed windows an extraction still has to fetch.
//! - [`cost`]: Kubecost's formulas (`totalCost`, efficiencies) and relative-error helpers.

pub mod cost;
pub mod model;
pub mod window;

pub use model::*;
pub use window::{Resolution, Window, WindowError};
