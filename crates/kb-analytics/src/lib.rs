//! `kb-analytics`: the pure analytics core of the cost aggregator. No IO, no async, no clock
//! (time is always an argument), no randomness, no serde; it never panics on data.
//!
//! The pipeline the binary wires:
//!
//! ```text
//! [Allocation] ──rules::apply_rules──> [AllocatedRow] ──summary::SummaryBuilder──> [CostSummary]
//!                                                                     │
//!                         series::series_from_summaries ──> Series per (dimension, cluster, name)
//!                                   │              │                │
//!                           trends::*     anomaly::detect_*   forecast::forecast*
//! [Allocation] ──optimize::advise──> Advice          budget::budget_status(spend, run rate)
//! ```
//!
//! - [`rules`]: idle sharing, shared namespaces/labels, fixed overhead, attribution to team,
//!   owner, product and cost centre; conserves cost per cluster and window.
//! - [`summary`]: hourly, daily and monthly rollups (the seed's `cost_summaries`).
//! - [`series`]: regular time series of cost.
//! - [`trends`]: period-over-period change, moving averages, month to date and projection.
//! - [`anomaly`]: the seed's increase rule and a seasonal median/MAD detector.
//! - [`forecast`]: a robust seasonal forecast with intervals, and MAPE on a holdout.
//! - [`budget`]: budget periods, utilisation and projected overrun.
//! - [`optimize`]: right-sizing, idle workloads and cluster idle share with monthly savings.
//! - [`recommend`]: the bridge's recommendation list: right-sizing, abandoned workloads,
//!   node-pool sizing and spot candidates, each with its current cost and monthly saving.
//! - [`calendar`]: UTC month and week arithmetic.
//!
//! Money is `f64` in the currency of the input; Kubecost's month is 730 hours.

pub mod anomaly;
pub mod budget;
pub mod calendar;
pub mod forecast;
pub mod optimize;
pub mod recommend;
pub mod rules;
pub mod series;
pub mod summary;
pub mod trends;

pub use rules::{Allocated, AllocatedRow, Rules, apply_rules};
pub use series::{Series, SeriesKey};
pub use summary::{CostSummary, Dimension, Granularity, SummaryBuilder};
