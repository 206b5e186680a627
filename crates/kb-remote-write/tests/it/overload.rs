//! Overload: more load than the sink takes gets 429/503, and every acknowledged batch is in
//! the sink.

use crate::common::*;
use kb_remote_write::{DecodedBatch, OverloadStatus, ReceiverConfig, SampleSink, SinkError};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Records the id (sample value) of every batch, slowly.
#[derive(Default)]
struct SlowSink {
    seen: Mutex<HashSet<u64>>,
    writes: AtomicUsize,
}

impl SampleSink for SlowSink {
    fn write(&self, _cluster: &str, batch: &DecodedBatch) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_millis(20));
        let mut seen = self.seen.lock().unwrap();
        for s in batch.series() {
            for p in s.samples() {
                seen.insert(p.value as u64);
            }
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn one(id: u64) -> Vec<u8> {
    body(vec![series(
        &[("__name__", "load_test"), ("id", &id.to_string())],
        &[(NOW * 1000, id as f64)],
    )])
}

async fn flood(status: OverloadStatus, want: u16) {
    let sink = std::sync::Arc::new(SlowSink::default());
    let cfg = ReceiverConfig {
        sources: sources(),
        max_in_flight: 4,
        overload_status: status,
        ..ReceiverConfig::default()
    };
    let srv = Served::start(cfg, sink.clone()).await;
    let h = rw_headers(0);
    let mut tasks = Vec::new();
    for id in 0..200u64 {
        let base = srv.base.clone();
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let r = post(&base, "/api/v1/write", &as_refs(&h), one(id)).await;
            let retry_after = r.headers().contains_key("retry-after");
            (id, r.status().as_u16(), retry_after)
        }));
    }
    let mut acked = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (id, st, retry_after) = t.await.unwrap();
        match st {
            204 => acked.push(id),
            s if s == want => {
                assert!(retry_after, "overload answer has Retry-After");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused > 0, "the flood was refused in part");
    assert!(!acked.is_empty(), "some requests got through");
    let seen = sink.seen.lock().unwrap().clone();
    for id in &acked {
        assert!(seen.contains(id), "acknowledged batch {id} is in the sink");
    }
    // Bounded: the sink never saw more batches than were admitted, and admitted ones are
    // exactly the acknowledged ones (nothing was written but refused).
    assert_eq!(sink.writes.load(Ordering::SeqCst), acked.len());
    let stats = srv.receiver.as_ref().unwrap().stats();
    assert_eq!(stats.overloaded_requests.load(Ordering::Relaxed), refused);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_gets_429_and_acknowledged_batches_are_kept() {
    flood(OverloadStatus::TooManyRequests, 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_can_answer_503() {
    flood(OverloadStatus::ServiceUnavailable, 503).await;
}

/// On shutdown, queued requests answer 503 and are not acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_never_acknowledges_unwritten_batches() {
    let sink = std::sync::Arc::new(SlowSink::default());
    let cfg = ReceiverConfig {
        sources: sources(),
        max_in_flight: 8,
        ..ReceiverConfig::default()
    };
    let srv = Served::start(cfg, sink.clone()).await;
    let h = rw_headers(0);
    let mut tasks = Vec::new();
    for id in 0..8u64 {
        let base = srv.base.clone();
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            (
                id,
                post(&base, "/api/v1/write", &as_refs(&h), one(id))
                    .await
                    .status()
                    .as_u16(),
            )
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    srv.shutdown.trigger();
    let mut results = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            results.push(r);
        }
    }
    let seen = sink.seen.lock().unwrap().clone();
    for (id, st) in &results {
        assert!(*st == 204 || *st == 503, "status {st}");
        if *st == 204 {
            assert!(seen.contains(id));
        }
    }
    srv.stop().await;
}
