//! Benchmark of remote_write ingestion, side by side with Prometheus 2.42's own receiver.
//!
//! Builds realistic remote write 1.0 requests (Kubecost-like series: container allocations,
//! requests, usage counters, working sets, node prices; ~2,000 series × SAMPLES samples per
//! request, labels as Kubecost and cAdvisor send them), then in one run:
//! 1. decodes them in one thread, without HTTP (the decoder alone);
//! 2. POSTs them over loopback HTTP to this crate's receiver (Basic auth, `Cloud-Account-Id`,
//!    sink = `LiveCosts`, so "processed" means decoded and applied to the live cost state
//!    before the 204);
//! 3. POSTs the same bytes to Prometheus 2.42 started by `scripts/services/prometheus.sh` with
//!    `PROMETHEUS_RECEIVER=1` (`--web.enable-remote-write-receiver`, appends to its TSDB head
//!    before its 204).
//!
//! Both HTTP runs use CONNS connections; each connection sends its own series (so no sample is
//! out of order for Prometheus) one request after another. Rates are samples per second over
//! the wall time of all requests. The client runs in this process on the same 2 cores.
//!
//! Run: `cargo run --release -p kb-remote-write --example rw_bench [requests_per_conn]`
//! (env CONNS, default 4; SAMPLES per series, default 5; SERIES per request, default 2000).

// A benchmark reports on stdout, and fails loudly: that is its purpose.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use kb_remote_write::proto::{
    Label, ProtoSample, TimeSeries, WriteRequest, decode_write_request, encode_write_request,
};
use kb_remote_write::{
    DecodeLimits, LiveCosts, Receiver, ReceiverConfig, SampleSink, Secret, Source,
    auth::basic_auth_header,
};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn label(n: &str, v: &str) -> Label {
    Label {
        name: n.to_string(),
        value: v.to_string(),
    }
}

/// The series of one connection: `n` Kubecost-like series with sorted labels.
fn series_set(conn: usize, n: usize) -> Vec<Vec<Label>> {
    let mut out = Vec::with_capacity(n);
    let nodes = 40;
    for node in 0..nodes {
        let nn = format!("ip-10-{conn}-{node}-7.ec2.internal");
        for m in ["node_cpu_hourly_cost", "node_ram_hourly_cost"] {
            out.push(vec![
                label("__name__", m),
                label("arch", "amd64"),
                label("cluster_id", "cluster-1"),
                label("instance", &nn),
                label("instance_type", "m5.2xlarge"),
                label("job", "kubecost"),
                label("node", &nn),
                label(
                    "provider_id",
                    &format!("aws:///us-east-1a/i-0{conn}{node:07x}"),
                ),
                label("region", "us-east-1"),
            ]);
        }
    }
    let families = [
        "container_cpu_allocation",
        "container_memory_allocation_bytes",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "kube_pod_container_resource_requests",
    ];
    let mut c = 0;
    while out.len() < n {
        let ns = format!("team-{}", c % 23);
        let pod = format!("api-{conn}-{:x}-{c}", c * 7919);
        let node = format!("ip-10-{conn}-{}-7.ec2.internal", c % nodes);
        for f in families {
            if out.len() >= n {
                break;
            }
            let mut l = vec![
                label("__name__", f),
                label("cluster_id", "cluster-1"),
                label("container", if c % 3 == 0 { "istio-proxy" } else { "app" }),
                label("instance", &node),
                label("job", "kubecost"),
                label("namespace", &ns),
                label("node", &node),
                label("pod", &pod),
            ];
            if f == "kube_pod_container_resource_requests" {
                l.push(label("resource", "cpu"));
                l.push(label("unit", "core"));
            }
            out.push(l);
        }
        c += 1;
    }
    out
}

/// Request `r` of connection `conn`: every series with SAMPLES samples, 100 ms apart.
fn request(labels: &[Vec<Label>], r: usize, samples: usize, base_ms: i64) -> Vec<u8> {
    let ts: Vec<TimeSeries> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| TimeSeries {
            labels: l.clone(),
            samples: (0..samples)
                .map(|j| {
                    let k = (r * samples + j) as i64;
                    ProtoSample {
                        value: if l[0].value.ends_with("_total") {
                            k as f64 * 0.25
                        } else {
                            0.031 + (i % 97) as f64 * 0.01
                        },
                        timestamp: base_ms + k * 100,
                    }
                })
                .collect(),
        })
        .collect();
    encode_write_request(&WriteRequest { timeseries: ts })
}

async fn drive(
    url: &str,
    headers: &[(&str, String)],
    streams: &[Vec<Vec<u8>>],
) -> (Duration, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(streams.len())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in streams {
        let s = s.clone();
        let client = client.clone();
        let url = url.to_string();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut bad = 0;
            for body in s {
                let mut rq = client.post(&url);
                for (k, v) in &headers {
                    rq = rq.header(k, v);
                }
                let resp = rq.body(body).send().await.unwrap();
                if resp.status().as_u16() != 204 {
                    if bad == 0 {
                        let st = resp.status();
                        println!(
                            "  non-204: {st} {}",
                            resp.text().await.unwrap_or_default().trim()
                        );
                    }
                    bad += 1;
                }
            }
            bad
        }));
    }
    let mut bad = 0;
    for t in tasks {
        bad += t.await.unwrap();
    }
    (start.elapsed(), bad)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    let per_conn: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let conns = env_usize("CONNS", 4);
    let samples = env_usize("SAMPLES", 5);
    let n_series = env_usize("SERIES", 2000);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Start a little in the past so the whole run stays near "now" for Prometheus's head.
    let base_ms = now_ms - (per_conn * samples) as i64 * 100 - 60_000;
    let streams: Vec<Vec<Vec<u8>>> = (0..conns)
        .map(|c| {
            let set = series_set(c, n_series);
            (0..per_conn)
                .map(|r| request(&set, r, samples, base_ms))
                .collect()
        })
        .collect();
    let total_samples = conns * per_conn * n_series * samples;
    let bytes: usize = streams.iter().flatten().map(Vec::len).sum();
    println!(
        "payload: {conns} connections × {per_conn} requests × {n_series} series × {samples} samples = {total_samples} samples, {:.1} MB snappy ({:.0} KB/request)",
        bytes as f64 / 1e6,
        bytes as f64 / (conns * per_conn) as f64 / 1e3
    );

    // 1. Decoder alone.
    let limits = DecodeLimits::default();
    let t = Instant::now();
    let mut n = 0;
    for b in streams.iter().flatten() {
        n += decode_write_request(b, &limits).unwrap().sample_count();
    }
    let dt = t.elapsed();
    assert_eq!(n, total_samples);
    println!(
        "decode only (1 thread): {:>12.0} samples/s",
        n as f64 / dt.as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // 2. This receiver.
        let live = Arc::new(LiveCosts::default());
        let src = Source {
            cloud_account_id: "ds-1".into(),
            cluster: "cluster-1".into(),
            username: "collector".into(),
            password: Secret::new("bench-password"),
        };
        let headers = vec![
            ("Content-Encoding", "snappy".to_string()),
            ("Content-Type", "application/x-protobuf".to_string()),
            ("X-Prometheus-Remote-Write-Version", "0.1.0".to_string()),
            ("Cloud-Account-Id", src.cloud_account_id.clone()),
            ("Authorization", basic_auth_header(&src.username, &src.password)),
        ];
        let cfg = ReceiverConfig {
            sources: vec![src],
            max_in_flight: 64,
            ..ReceiverConfig::default()
        };
        let shutdown = kb_pipeline::shutdown::Shutdown::new();
        let receiver =
            Receiver::start(cfg, live.clone() as Arc<dyn SampleSink>, shutdown.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/storage/api/v2/write", listener.local_addr().unwrap());
        let app = receiver.router();
        let s2 = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s2.wait().await })
                .await
                .unwrap();
        });
        // Warm up with one stream's first request, then measure.
        let warm = vec![vec![streams[0][0].clone()]];
        drive(&url, &headers, &warm).await;
        let (ours_dt, ours_bad) = drive(&url, &headers, &streams).await;
        let ours = total_samples as f64 / ours_dt.as_secs_f64();
        let ns = live.namespace_rates("cluster-1").len();
        println!(
            "kb-remote-write receiver: {ours:>12.0} samples/s ({:.2} s, {ours_bad} non-204, {ns} namespaces live)",
            ours_dt.as_secs_f64()
        );
        shutdown.trigger();
        server.await.unwrap();
        receiver.join().await;

        // 3. Prometheus 2.42's receiver.
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/services/prometheus.sh");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("kb-rw-bench-prom-{port}"));
        let env = [
            ("PROMETHEUS_PORT", port.to_string()),
            ("PROMETHEUS_DIR", dir.display().to_string()),
            ("PROMETHEUS_RECEIVER", "1".to_string()),
            ("PROMETHEUS_SCRAPE_INTERVAL", "60s".to_string()),
        ];
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        if !out.status.success() {
            panic!(
                "could not start Prometheus 2.42 with scripts/services/prometheus.sh:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let prom = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let purl = format!("{prom}/api/v1/write");
        let pwarm_labels = series_set(99, 100);
        let pwarm = vec![vec![request(&pwarm_labels, 0, samples, base_ms)]];
        drive(&purl, &headers, &pwarm).await;
        let (p_dt, p_bad) = drive(&purl, &headers, &streams).await;
        let theirs = total_samples as f64 / p_dt.as_secs_f64();
        let version = Command::new("prometheus")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
            .unwrap_or_default();
        println!(
            "Prometheus receiver:      {theirs:>12.0} samples/s ({:.2} s, {p_bad} non-204) [{version}]",
            p_dt.as_secs_f64()
        );
        println!("ratio: {:.2}x", ours / theirs);
        Command::new("bash")
            .arg(&script)
            .arg("clean")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .ok();
    });
}
