//! The Kubecost / OpenCost adapter: an HTTP client and a streaming, zero-copy parser for
//! allocation responses.
//!
//! - [`client`]: [`Client`] for one Kubecost instance (allocations streamed in batches over a
//!   channel, assets, budgets, savings, spec-cost predictions), with auth, TLS, timeouts,
//!   bounded concurrency and errors that say whether retrying may help.
//! - [`stream`]: the push framer that finds each allocation object in a body fed chunk by chunk
//!   and yields its exact bytes, with bounded memory whatever the body size.
//! - [`wire`]: serde types of the JSON, borrowing strings from the input.
//! - [`convert`]: wire types to `kb_core` records, and the collectors that batch them.
//! - [`parse_allocation_document`], [`parse_assets_document`]: the same parsing on a whole
//!   document in memory, for fixtures and benchmarks.
//!
//! Compatibility (see the project's `kubecost-api.md`): Kubecost 1.x/2.x and OpenCost, with or
//! without the `{code,status,message,data}` envelope, `data:[null]`, `"...etc": {}`
//! placeholders, `null` numbers (NaN/Inf), singular `label`/`annotation`/`service` keys,
//! `"null"` window strings and unknown fields.

pub mod client;
pub mod convert;
pub mod error;
pub mod stream;
pub mod wire;

use kb_core::{Allocation, Asset, Window};

pub use client::{AllocationQuery, AssetQuery, Auth, Client, ClientConfig, Flavor, Secret};
pub use convert::StreamSummary;
pub use error::Error;

use convert::{AllocationCollector, AssetCollector, SetWindows};
use stream::{DEFAULT_MAX_VALUE_BYTES, Framer};

/// Checks the end of a framed document: properly closed, no error envelope, has data.
fn finish_document(framer: &Framer) -> Result<(), Error> {
    framer.finish()?;
    if let Some((code, message)) = framer.envelope().error() {
        return Err(Error::Api {
            endpoint: error::DOCUMENT.to_string(),
            code,
            message,
        });
    }
    if !framer.envelope().has_data {
        return Err(Error::malformed("the response has no data member", 0));
    }
    Ok(())
}

/// Parses a whole allocation response (any supported shape) into allocations and counts.
/// Rows without a parseable window get `default_window`.
pub fn parse_allocation_document(
    bytes: &[u8],
    default_window: Window,
) -> Result<(Vec<Allocation>, StreamSummary), Error> {
    let mut framer = Framer::new(DEFAULT_MAX_VALUE_BYTES);
    let mut collector = AllocationCollector::new(
        SetWindows {
            window: default_window,
            step: None,
        },
        None,
        true,
    );
    framer.feed(bytes);
    while let Some(ev) = framer.next_event()? {
        collector.on_event(ev)?;
    }
    finish_document(&framer)?;
    Ok((collector.take_batch(), collector.summary))
}

/// Streams a recorded allocation response (any supported shape) from `reader` with the same
/// bounded memory as the HTTP path: the file is read in chunks, and rows are handed to `sink` in
/// batches of about [`client::BATCH_ROWS`]. `sink` returns `false` when its receiver is gone,
/// which stops the read with [`Error::ReceiverDropped`]. Rows without a parseable window get
/// `default_window`. Used by `kubecost-bridge import` and the extraction benchmark.
pub fn read_allocations<R: std::io::Read>(
    reader: R,
    default_window: Window,
    filter_cluster: Option<String>,
    sink: impl FnMut(Vec<Allocation>) -> bool,
) -> Result<StreamSummary, Error> {
    read_allocations_recycling(reader, default_window, filter_cluster, sink, || None)
}

/// [`read_allocations`], taking back batches the consumer is done with: `recycled` is polled
/// once per chunk read and returns such batches (until `None`); their rows are overwritten by
/// the next rows instead of being freed by the consumer and allocated again here.
pub fn read_allocations_recycling<R: std::io::Read>(
    mut reader: R,
    default_window: Window,
    filter_cluster: Option<String>,
    mut sink: impl FnMut(Vec<Allocation>) -> bool,
    mut recycled: impl FnMut() -> Option<Vec<Allocation>>,
) -> Result<StreamSummary, Error> {
    const CHUNK: usize = 256 << 10;
    let mut framer = Framer::new(DEFAULT_MAX_VALUE_BYTES);
    let mut collector = AllocationCollector::new(
        SetWindows {
            window: default_window,
            step: None,
        },
        filter_cluster,
        true,
    );
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Truncated {
                    endpoint: error::DOCUMENT.to_string(),
                    what: format!("read failed: {e}"),
                    byte_offset: framer.offset() + framer.buffered() as u64,
                });
            }
        };
        while let Some(rows) = recycled() {
            collector.recycle(rows);
        }
        framer.feed(buf.get(..n).unwrap_or_default());
        while let Some(ev) = framer.next_event()? {
            collector.on_event(ev)?;
            if collector.batch.len() >= client::BATCH_ROWS && !sink(collector.take_batch()) {
                return Err(Error::ReceiverDropped {
                    endpoint: error::DOCUMENT.to_string(),
                });
            }
        }
    }
    finish_document(&framer)?;
    if !collector.batch.is_empty() && !sink(collector.take_batch()) {
        return Err(Error::ReceiverDropped {
            endpoint: error::DOCUMENT.to_string(),
        });
    }
    Ok(collector.summary)
}

/// Parses a whole asset response (Kubecost's array of sets or OpenCost's single set).
pub fn parse_assets_document(bytes: &[u8], default_window: Window) -> Result<Vec<Asset>, Error> {
    let mut framer = Framer::new(DEFAULT_MAX_VALUE_BYTES);
    let mut collector = AssetCollector::new(
        SetWindows {
            window: default_window,
            step: None,
        },
        None,
    );
    framer.feed(bytes);
    while let Some(ev) = framer.next_event()? {
        collector.on_event(ev)?;
    }
    finish_document(&framer)?;
    Ok(collector.assets)
}

/// Parses a whole budgets response (`/model/budgets`).
pub fn parse_budgets_document(bytes: &[u8]) -> Result<Vec<kb_core::Budget>, Error> {
    let items: Option<Vec<Option<wire::WireBudget>>> = client::parse_enveloped(bytes)?;
    Ok(items
        .unwrap_or_default()
        .iter()
        .flatten()
        .map(convert::budget)
        .collect())
}

/// Parses a whole request-sizing response (`/model/savings/requestSizingV2`).
pub fn parse_request_sizing_document(
    bytes: &[u8],
) -> Result<Vec<kb_core::SavingsRecommendation>, Error> {
    let items: Option<Vec<Option<wire::WireRequestSizing>>> = client::parse_enveloped(bytes)?;
    Ok(items
        .unwrap_or_default()
        .iter()
        .flatten()
        .map(convert::request_sizing)
        .collect())
}

/// Parses a whole cluster-sizing response (`/model/savings/clusterSizingETL`).
pub fn parse_cluster_sizing_document(
    bytes: &[u8],
) -> Result<Vec<kb_core::SavingsRecommendation>, Error> {
    let data: Option<std::collections::BTreeMap<String, Option<wire::WireClusterSizing>>> =
        client::parse_enveloped(bytes)?;
    Ok(convert::cluster_sizing(&data.unwrap_or_default()))
}

/// Parses a whole abandoned-workloads response (`/model/savings/abandonedWorkloads`).
pub fn parse_abandoned_document(
    bytes: &[u8],
) -> Result<Vec<kb_core::SavingsRecommendation>, Error> {
    let items: Option<Vec<Option<wire::WireAbandoned>>> = client::parse_enveloped(bytes)?;
    Ok(items
        .unwrap_or_default()
        .iter()
        .flatten()
        .map(convert::abandoned)
        .collect())
}

/// Parses a whole spec-cost prediction response (`/model/prediction/speccost`).
pub fn parse_spec_cost_document(bytes: &[u8]) -> Result<Vec<kb_core::SpecCostPrediction>, Error> {
    let items: Option<Vec<Option<wire::WireSpecCost>>> = client::parse_enveloped(bytes)?;
    Ok(items
        .unwrap_or_default()
        .iter()
        .flatten()
        .map(convert::spec_cost)
        .collect())
}
