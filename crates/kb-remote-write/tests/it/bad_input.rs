//! Bad input gets the right status, never a panic, and nothing of it is stored.

use crate::common::*;
use kb_remote_write::{DecodeLimits, OverloadStatus, ReceiverConfig};
use std::sync::atomic::Ordering;

fn cfg() -> ReceiverConfig {
    ReceiverConfig {
        sources: sources(),
        max_body_bytes: 64 << 10,
        decode: DecodeLimits {
            max_decompressed_bytes: 256 << 10,
            max_labels_per_series: 16,
            max_label_bytes_per_series: 1024,
        },
        max_in_flight: 8,
        overload_status: OverloadStatus::TooManyRequests,
        ..ReceiverConfig::default()
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_store_nothing() {
    let sink = live();
    let srv = Served::start(cfg(), sink.clone()).await;
    let t = NOW * 1000;
    let h = rw_headers(0);
    let good = as_refs(&h);
    let without = |name: &str| -> Vec<(&'static str, &str)> {
        good.iter().copied().filter(|(k, _)| *k != name).collect()
    };
    let with = |name: &'static str, v: &'static str| -> Vec<(&'static str, &str)> {
        let mut x = without(name);
        x.push((name, v));
        x
    };
    let many_labels: Vec<(String, String)> = (0..40)
        .map(|i| (format!("l{i:02}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = std::iter::once(("__name__", "x"))
        .chain(many_labels.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .collect();
    let long = "v".repeat(2000);
    let raw_bad_utf8 = vec![0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x04, 0xff, 0xfe, 0xfd, 0xfc];
    // A snappy header that promises 100 MiB (decompression bomb).
    let bomb = vec![0x80, 0x80, 0x80, 0x32, 0x00, 0x00];
    let other = rw_headers(1);
    let mut foreign = as_refs(&other);
    // ds-2's id with ds-1's credentials.
    foreign.retain(|(k, _)| *k != "Authorization");
    foreign.push(("Authorization", h[4].1.as_str()));

    type Case<'a> = (&'a str, Vec<(&'static str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case<'_>> = vec![
        (
            "garbage body",
            good.clone(),
            b"this is not snappy at all".to_vec(),
            400,
        ),
        ("empty body", good.clone(), Vec::new(), 400),
        (
            "bad snappy",
            good.clone(),
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0xff],
            400,
        ),
        ("snappy bomb", good.clone(), bomb, 400),
        (
            "bad protobuf",
            good.clone(),
            snappy(b"\x0a\xff\xff\xff\xff\x0f\x01"),
            400,
        ),
        ("wire type 7", good.clone(), snappy(b"\x0f\x01\x02"), 400),
        ("invalid utf-8", good.clone(), snappy(&raw_bad_utf8), 400),
        (
            "huge label set",
            good.clone(),
            body(vec![series(&many, &[(t, 1.0)])]),
            400,
        ),
        (
            "huge label value",
            good.clone(),
            body(vec![series(
                &[("__name__", "x"), ("a", &long)],
                &[(t, 1.0)],
            )]),
            400,
        ),
        ("oversized body", good.clone(), vec![0u8; 100 << 10], 413),
        (
            "wrong password",
            with("Authorization", "Basic Y29sbGVjdG9yOm5vcGU="),
            valid_body(t),
            401,
        ),
        (
            "not basic",
            with("Authorization", "Bearer abc"),
            valid_body(t),
            401,
        ),
        (
            "no credentials",
            without("Authorization"),
            valid_body(t),
            401,
        ),
        (
            "missing account id",
            without("Cloud-Account-Id"),
            valid_body(t),
            400,
        ),
        (
            "empty account id",
            with("Cloud-Account-Id", " "),
            valid_body(t),
            400,
        ),
        (
            "unknown account id",
            with("Cloud-Account-Id", "ds-9"),
            valid_body(t),
            401,
        ),
        ("foreign account id", foreign, valid_body(t), 401),
        ("gzip", with("Content-Encoding", "gzip"), valid_body(t), 415),
        (
            "json",
            with("Content-Type", "application/json"),
            valid_body(t),
            415,
        ),
        (
            "remote write 2.0",
            with(
                "Content-Type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            ),
            valid_body(t),
            415,
        ),
        (
            "version 2",
            with("X-Prometheus-Remote-Write-Version", "2.0.0"),
            valid_body(t),
            415,
        ),
    ];
    for (what, headers, b, want) in cases {
        for path in ["/storage/api/v2/write", "/api/v1/write"] {
            let r = post(&srv.base, path, &headers, b.clone()).await;
            assert_eq!(r.status().as_u16(), want, "{what} on {path}");
            if want == 401 {
                assert!(r.headers().contains_key("www-authenticate"), "{what}");
                let text = r.text().await.unwrap();
                assert!(!text.contains("ds-"), "{what} leaks: {text}");
            }
        }
    }
    // A chunked body (no Content-Length) that grows past the limit.
    assert_eq!(
        chunked_oversized(&srv.base, &good).await,
        413,
        "chunked oversized body"
    );
    assert!(
        sink.clusters().is_empty(),
        "nothing from a rejected request is stored"
    );
    let stats = srv.receiver.as_ref().unwrap().stats();
    assert_eq!(stats.accepted_requests.load(Ordering::Relaxed), 0);

    // A good request is accepted and stored under the source's cluster.
    let r = post(&srv.base, "/storage/api/v2/write", &good, valid_body(t)).await;
    assert_eq!(r.status().as_u16(), 204);
    // Lenient headers: no Content-Type/Encoding/version, lower-case scheme.
    let lower = format!("basic {}", &h[4].1["Basic ".len()..]);
    let r = post(
        &srv.base,
        "/api/v1/write",
        &[("Cloud-Account-Id", "ds-1"), ("Authorization", &lower)],
        valid_body(t + 1000),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    // The source id may ride in the URL instead of the header (Debian's Prometheus 2.42 drops
    // custom headers); the credentials still have to match.
    let no_id = without("Cloud-Account-Id");
    let r = post(
        &srv.base,
        "/api/v1/write?cloud_account_id=ds-1",
        &no_id,
        valid_body(t + 2000),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    let r = post(
        &srv.base,
        "/api/v1/write?cloud_account_id=ds-2",
        &no_id,
        valid_body(t + 3000),
    )
    .await;
    assert_eq!(r.status().as_u16(), 401);
    let r = post(
        &srv.base,
        "/api/v1/write?cloud_account_id=ds-2",
        &good,
        valid_body(t + 3000),
    )
    .await;
    assert_eq!(r.status().as_u16(), 400, "header and parameter disagree");
    assert_eq!(sink.clusters(), vec!["cluster-1".to_string()]);
    let ns = sink.namespace_rates("cluster-1");
    assert_eq!(ns.len(), 1);
    assert!((ns[0].rates.rate.cpu - 0.08).abs() < 1e-12);
    srv.stop().await;
}

#[tokio::test]
async fn a_source_only_writes_its_own_cluster() {
    let sink = live();
    let srv = Served::start(cfg(), sink.clone()).await;
    // ds-2 (cluster-2) sends series that claim cluster-1.
    let h = rw_headers(1);
    let r = post(
        &srv.base,
        "/api/v1/write",
        &as_refs(&h),
        valid_body(NOW * 1000),
    )
    .await;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(sink.clusters(), vec!["cluster-2".to_string()]);
    assert!(sink.namespace_rates("cluster-1").is_empty());
    srv.stop().await;
}

/// Sends 72 KiB (just over the 64 KiB limit, so it all fits in socket buffers) as `Transfer-Encoding: chunked` over a raw socket; returns the status.
async fn chunked_oversized(base: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head =
        format!("POST /api/v1/write HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 8 << 10];
    for _ in 0..9 {
        let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
        c.extend_from_slice(&chunk);
        c.extend_from_slice(b"\r\n");
        // The server may answer and close before we are done.
        if s.write_all(&c).await.is_err() {
            break;
        }
    }
    s.write_all(b"0\r\n\r\n").await.ok();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Keeps every observed answer.
#[derive(Default)]
struct Observed(std::sync::Mutex<Vec<(Option<String>, kb_remote_write::RequestOutcome, u64)>>);

impl kb_remote_write::RequestObserver for Observed {
    fn observe(
        &self,
        source: Option<&str>,
        outcome: kb_remote_write::RequestOutcome,
        samples: u64,
    ) {
        self.0
            .lock()
            .unwrap()
            .push((source.map(str::to_string), outcome, samples));
    }
}

/// A sink that fails every batch from cluster-2 (the receiver answers 503).
struct FailsForCluster2(std::sync::Arc<kb_remote_write::LiveCosts>);

impl kb_remote_write::SampleSink for FailsForCluster2 {
    fn write(
        &self,
        cluster: &str,
        batch: &kb_remote_write::DecodedBatch,
    ) -> Result<(), kb_remote_write::SinkError> {
        if cluster == "cluster-2" {
            return Err(kb_remote_write::SinkError::new("disk full"));
        }
        self.0.write(cluster, batch)
    }
}

#[tokio::test]
async fn every_answer_is_reported_to_the_observer_by_outcome() {
    use kb_remote_write::RequestOutcome as O;
    let observed = std::sync::Arc::new(Observed::default());
    let shutdown = kb_pipeline::shutdown::Shutdown::new();
    let receiver = kb_remote_write::Receiver::start_observed(
        cfg(),
        std::sync::Arc::new(FailsForCluster2(live())),
        shutdown.clone(),
        Some(observed.clone()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = receiver.router();
    let sd = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { sd.wait().await })
            .await
            .unwrap();
    });
    let t = NOW * 1000;
    let h = rw_headers(0);
    let good = as_refs(&h);
    let mut wrong = good.clone();
    wrong.retain(|(k, _)| *k != "Authorization");
    wrong.push(("Authorization", "Basic Y29sbGVjdG9yOndyb25n"));
    let h2 = rw_headers(1);
    let path = "/api/v1/write";
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case<'_>> = vec![
        (good.clone(), valid_body(t), 204),
        (wrong, valid_body(t), 401),
        (good.clone(), vec![0u8; 70 << 10], 413),
        (good.clone(), b"not snappy".to_vec(), 400),
        (as_refs(&h2), valid_body(t), 503),
    ];
    for (headers, body, want) in cases {
        let r = post(&base, path, &headers, body).await;
        assert_eq!(r.status().as_u16(), want);
    }
    let got = observed.0.lock().unwrap().clone();
    let c1 = Some("cluster-1".to_string());
    assert_eq!(
        got,
        vec![
            (c1.clone(), O::Accepted, 2),
            (None, O::Unauthorized, 0),
            (c1.clone(), O::TooLarge, 0),
            (c1, O::Rejected, 0),
            (Some("cluster-2".to_string()), O::Error, 2),
        ]
    );
    assert_eq!(
        O::of(axum::http::StatusCode::TOO_MANY_REQUESTS, true),
        O::Overloaded
    );
    assert_eq!(
        O::of(axum::http::StatusCode::SERVICE_UNAVAILABLE, true),
        O::Overloaded
    );
    assert_eq!(
        O::of(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, false),
        O::Rejected
    );
    shutdown.trigger();
    server.await.unwrap();
    receiver.join().await;
}
