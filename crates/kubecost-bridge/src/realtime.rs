//! The real-time path: remote_write and `/metrics` scrapes -> a durable spool -> the live cost
//! model -> `realtime` summaries of the open hour in the store.
//!
//! Durability: the receiver answers 2xx only after [`SpoolSink::write`] returned, and that
//! returns only once the batch is appended (and fsynced) to an on-disk spool (`kb-spool`). A
//! delivery thread then applies spooled batches, in order, to the live cost model
//! ([`kb_remote_write::LiveCosts`]) and acknowledges them. After a crash, unacknowledged
//! batches are applied again on start-up, so an accepted sample is never lost; the live model
//! ignores samples it has already seen (same series and timestamp), so a replay never counts
//! twice. A full spool makes the sink fail, and the receiver answers 503 (retried by
//! Prometheus) instead of accepting what it cannot keep.
//!
//! Every minute the open hour's estimate is written to the store as `source = realtime`
//! hourly summaries per cluster and namespace: the current cost rate ($/h) times one hour.
//! When Kubecost's window for that hour lands and is aggregated, the `api` summary hides it.
//! With InfluxDB configured, the same round writes the live rates as `live_costs` points
//! (per cluster and namespace, and the cluster's whole rate with an empty namespace).

use std::sync::Arc;
use std::time::Duration;

use kb_analytics::summary::CostTotals;
use kb_analytics::{CostSummary, Dimension, Granularity};
use kb_core::Window;
use kb_core::window::{HOUR, floor_to};
use kb_pipeline::insights::{InsightStore, Source};
use kb_pipeline::shutdown::Shutdown;
use kb_remote_write::{DecodedBatch, LiveCosts, SampleSink, SinkError};
use kb_spool::{Deliverer, DelivererConfig, Delivery, DeliveryError, Spool, SpoolConfig};
use kb_store::SqliteStore;

/// Spool record kind of an encoded sample batch.
const KIND_BATCH: u16 = 1;

/// Encodes a cluster's batch: `cluster`, then per series its labels and samples, every length
/// as a little-endian u32 and every number in its 8 raw bytes.
fn encode(cluster: &str, batch: &DecodedBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.heap_bytes() + cluster.len() + 16);
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    put_str(&mut out, cluster);
    out.extend_from_slice(&(batch.series_count() as u32).to_le_bytes());
    for s in batch.series() {
        let labels: Vec<(&str, &str)> = s.labels().collect();
        out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        for (k, v) in labels {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out.extend_from_slice(&(s.samples().len() as u32).to_le_bytes());
        for x in s.samples() {
            out.extend_from_slice(&x.timestamp_ms.to_le_bytes());
            out.extend_from_slice(&x.value.to_bits().to_le_bytes());
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<usize> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    }
    fn u64(&mut self) -> Option<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Decodes [`encode`]'s output; `None` for a record that is not one.
fn decode(bytes: &[u8]) -> Option<(String, DecodedBatch)> {
    let mut r = Reader(bytes);
    let cluster = r.str()?.to_string();
    let series = r.u32()?;
    let mut batch = DecodedBatch::with_capacity(series.min(1 << 20), bytes.len());
    for _ in 0..series {
        let mut b = batch.push_series();
        for _ in 0..r.u32()? {
            let (k, v) = (r.str()?, r.str()?);
            b.label(k, v);
        }
        for _ in 0..r.u32()? {
            let ts = r.u64()? as i64;
            b.sample(ts, f64::from_bits(r.u64()?));
        }
        b.finish();
    }
    r.0.is_empty().then_some((cluster, batch))
}

/// The receiver's and scrapers' sink: appends each batch durably to the spool.
pub(crate) struct SpoolSink {
    spool: Arc<Spool>,
}

impl SampleSink for SpoolSink {
    fn write(&self, cluster: &str, batch: &DecodedBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.spool
            .append(KIND_BATCH, &encode(cluster, batch))
            .map(|_| ())
            .map_err(|e| SinkError::new(format!("spool: {e}")))
    }
}

/// Applies spooled batches to the live model.
struct ApplyLive(Arc<LiveCosts>);

impl Delivery for ApplyLive {
    fn deliver(&self, kind: u16, payload: &[u8]) -> Result<(), DeliveryError> {
        if kind != KIND_BATCH {
            return Err(DeliveryError::permanent(format!(
                "unknown record kind {kind}"
            )));
        }
        let Some((cluster, batch)) = decode(payload) else {
            return Err(DeliveryError::permanent("undecodable sample batch"));
        };
        self.0
            .write(&cluster, &batch)
            .map_err(|e| DeliveryError::permanent(e.to_string()))
    }
}

/// The running real-time path.
pub(crate) struct Realtime {
    pub live: Arc<LiveCosts>,
    pub sink: Arc<SpoolSink>,
    deliverer: Deliverer,
}

impl Realtime {
    /// Opens the spool in `dir` (replaying what a previous run accepted but had not applied)
    /// and starts the delivery thread.
    pub(crate) fn start(dir: &std::path::Path, max_bytes: u64) -> anyhow::Result<Realtime> {
        let spool = Arc::new(Spool::open(
            dir,
            SpoolConfig {
                max_bytes,
                segment_bytes: (max_bytes / 8).max(1 << 20),
                ..SpoolConfig::default()
            },
        )?);
        let live = Arc::new(LiveCosts::new(kb_remote_write::LiveConfig::default()));
        let deliverer = Deliverer::start(
            spool.clone(),
            Arc::new(ApplyLive(live.clone())),
            DelivererConfig::default(),
        );
        Ok(Realtime {
            live,
            sink: Arc::new(SpoolSink { spool }),
            deliverer: deliverer?,
        })
    }

    /// Stops the delivery thread when `shutdown` fires.
    pub(crate) fn stop_on(&self, shutdown: Shutdown) {
        let handle = self.deliverer.stop_handle();
        tokio::spawn(async move {
            shutdown.wait().await;
            handle.stop();
        });
    }

    /// Spool depth and delivery counts, for logs and `/metrics`.
    pub(crate) fn stats(&self) -> kb_spool::DelivererStats {
        self.deliverer.stats()
    }
}

/// The open hour's estimate per cluster and namespace: the current rate times one hour.
pub(crate) fn open_hour_summaries(live: &LiveCosts, now: i64) -> Vec<(String, Vec<CostSummary>)> {
    let bucket = Window {
        start: floor_to(now, HOUR),
        end: floor_to(now, HOUR) + HOUR,
    };
    let mut out = Vec::new();
    for cluster in live.clusters() {
        let summary =
            |dimension, namespace: &str, name: &str, r: &kb_remote_write::state::CostRate| {
                CostSummary {
                    granularity: Granularity::Hour,
                    bucket,
                    dimension,
                    cluster: cluster.clone(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    totals: CostTotals {
                        total_cost: r.total(),
                        cpu_cost: r.cpu,
                        memory_cost: r.ram,
                        gpu_cost: r.gpu,
                        network_cost: r.network,
                        storage_cost: r.pv,
                        load_balancer_cost: r.load_balancer,
                        shared_cost: r.management,
                        rows: 1,
                        ..CostTotals::default()
                    },
                    efficiency_score: 0.0,
                }
            };
        let mut rows = Vec::new();
        if let Some(r) = live.cluster_rate(&cluster) {
            rows.push(summary(Dimension::Cluster, "", &cluster, &r.rate));
        }
        for ns in live.namespace_rates(&cluster) {
            rows.push(summary(
                Dimension::Namespace,
                &ns.namespace,
                &ns.namespace,
                &ns.rates.rate,
            ));
        }
        out.push((cluster, rows));
    }
    out
}

/// The live series as InfluxDB `live_costs` points at `ts` (unix seconds): one per cluster
/// and namespace, plus one per cluster with the empty namespace for the cluster's whole rate.
pub(crate) fn live_cost_lines(live: &LiveCosts, ts: i64) -> Vec<u8> {
    let rates = |r: &kb_remote_write::state::CostRate| kb_influx::LiveCostRates {
        cpu: r.cpu,
        memory: r.ram,
        gpu: r.gpu,
        storage: r.pv,
        network: r.network,
        load_balancer: r.load_balancer,
        total: r.total(),
    };
    let mut out = Vec::new();
    for cluster in live.clusters() {
        if let Some(r) = live.cluster_rate(&cluster) {
            out.extend(kb_influx::encode_live_cost(
                &cluster,
                "",
                ts,
                &rates(&r.rate),
            ));
        }
        for ns in live.namespace_rates(&cluster) {
            out.extend(kb_influx::encode_live_cost(
                &cluster,
                &ns.namespace,
                ts,
                &rates(&ns.rates.rate),
            ));
        }
    }
    out
}

/// Sends the live series to InfluxDB, opening the store on first use (and again after a
/// failure): a down InfluxDB loses only the points of the rounds it missed, since each round
/// carries the current rate.
fn send_live(
    influx: &Option<kb_influx::InfluxConfig>,
    open: &mut Option<kb_influx::InfluxStore>,
    lines: &[u8],
) -> Result<(), kb_pipeline::ports::StoreError> {
    let Some(cfg) = influx else {
        return Ok(());
    };
    if lines.is_empty() {
        return Ok(());
    }
    let store = match open.take() {
        Some(s) => s,
        None => kb_influx::InfluxStore::open(cfg)?,
    };
    store.client().send(lines)?;
    *open = Some(store);
    Ok(())
}

/// Writes the open hour's estimate every `every` until shutdown: `realtime` summaries in the
/// store, and, when InfluxDB is configured, the live cost rates as `live_costs` points.
pub(crate) async fn persist_loop(
    live: Arc<LiveCosts>,
    store: Arc<SqliteStore>,
    rules_version: u32,
    every: Duration,
    shutdown: Shutdown,
    influx: Option<kb_influx::InfluxConfig>,
) {
    let influx = Arc::new(influx);
    let opened: Arc<std::sync::Mutex<Option<kb_influx::InfluxStore>>> =
        Arc::new(std::sync::Mutex::new(None));
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let now = chrono::Utc::now().timestamp();
        let (live, store) = (live.clone(), store.clone());
        let (influx, opened) = (influx.clone(), opened.clone());
        let done = tokio::task::spawn_blocking(move || {
            let lines = live_cost_lines(&live, now);
            let mut slot = match opened.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if let Err(e) = send_live(&influx, &mut slot, &lines) {
                tracing::warn!(error = %e, "cannot write the live costs to influxdb");
            }
            drop(slot);
            let bucket = Window {
                start: floor_to(now, HOUR),
                end: floor_to(now, HOUR) + HOUR,
            };
            for (cluster, rows) in open_hour_summaries(&live, now) {
                store.put_summaries(
                    &cluster,
                    Granularity::Hour,
                    bucket,
                    Source::Realtime,
                    rules_version,
                    &rows,
                )?;
            }
            Ok::<_, kb_pipeline::ports::StoreError>(())
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot store real-time summaries"),
            Err(e) => tracing::warn!(error = %e, "real-time summary task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_the_spool_encoding() {
        let mut b = DecodedBatch::with_capacity(2, 64);
        let mut s = b.push_series();
        s.label("__name__", "node_cpu_hourly_cost");
        s.label("node", "n-1");
        s.sample(1_000, 0.031);
        s.sample(
            2_000,
            f64::from_bits(kb_remote_write::batch::STALE_NAN_BITS),
        );
        s.finish();
        let bytes = encode("c1", &b);
        let (cluster, back) = decode(&bytes).unwrap();
        assert_eq!(cluster, "c1");
        assert_eq!(encode("c1", &back), bytes);
        assert_eq!(back.sample_count(), 2);
        assert!(decode(&bytes[..bytes.len() - 1]).is_none(), "truncated");
        assert!(decode(b"\xff\xff\xff\xff").is_none(), "garbage");
    }
}
