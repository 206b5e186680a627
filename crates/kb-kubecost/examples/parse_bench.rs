//! Benchmark of the allocation parsing hot path: generates a ~200 MB Kubecost-style allocation
//! document in memory (container-level rows with labels, 5-decimal numbers, some nulls) and
//! reports MB/s and rows/s for
//! 1. the framer alone (finding each allocation's bytes),
//! 2. the streaming path (framer + serde + conversion, fed in 64 KiB chunks, rows dropped per
//!    batch as the client does after sending them),
//! 3. `parse_allocation_document` on the whole document (rows kept in memory).
//!
//! Run: `cargo run --release -p kb-kubecost --example parse_bench [target MB]`.

// A benchmark reports on stdout; that is its purpose.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use kb_core::Window;
use kb_kubecost::convert::{AllocationCollector, SetWindows};
use kb_kubecost::stream::{Event, Framer};

fn row(out: &mut String, i: usize) {
    use std::fmt::Write;
    let ns = i % 40;
    let node = i % 300;
    let cpu = (i % 997) as f64 * 0.00137;
    let ram = (i % 389) as f64 * 0.00071;
    let pv = if i % 7 == 0 { 0.01644 } else { 0.0 };
    let total = cpu + ram + pv;
    let eff = if i % 11 == 0 {
        "null".to_string()
    } else {
        format!("{:.5}", (i % 100) as f64 / 100.0)
    };
    // Writing into a String cannot fail.
    write!(
        out,
        r#""prod-1/ip-10-0-{node}.ec2.internal/ns-{ns}/app-{i}-7d9f8c6b5-x2x4q/main":{{"name":"prod-1/ip-10-0-{node}.ec2.internal/ns-{ns}/app-{i}-7d9f8c6b5-x2x4q/main","properties":{{"cluster":"prod-1","node":"ip-10-0-{node}.ec2.internal","container":"main","controller":"app-{i}","controllerKind":"deployment","namespace":"ns-{ns}","pod":"app-{i}-7d9f8c6b5-x2x4q","services":["app-{i}"],"providerID":"i-0a1b2c3d4e5f{node:05}","labels":{{"app":"app-{i}","team":"team-{ns}","pod_template_hash":"7d9f8c6b5","app_kubernetes_io_name":"app-{i}","env":"prod"}},"namespaceLabels":{{"kubernetes_io_metadata_name":"ns-{ns}"}}}},"window":{{"start":"2024-03-04T00:00:00Z","end":"2024-03-05T00:00:00Z"}},"start":"2024-03-04T00:00:00Z","end":"2024-03-05T00:00:00Z","minutes":1440,"cpuCores":0.5,"cpuCoreRequestAverage":0.5,"cpuCoreUsageAverage":0.21345,"cpuCoreHours":12,"cpuCost":{cpu:.5},"cpuCostAdjustment":0,"cpuCostIdle":0,"cpuEfficiency":{eff},"gpuCount":0,"gpuHours":0,"gpuCost":0,"gpuCostAdjustment":0,"gpuCostIdle":0,"gpuEfficiency":0,"networkTransferBytes":1234567.5,"networkReceiveBytes":7654321.25,"networkCost":0,"networkCrossZoneCost":0,"networkCrossRegionCost":0,"networkInternetCost":0,"networkCostAdjustment":0,"loadBalancerCost":0,"loadBalancerCostAdjustment":0,"pvBytes":0,"pvByteHours":0,"pvCost":{pv},"pvs":null,"pvCostAdjustment":0,"ramBytes":1073741824,"ramByteRequestAverage":1073741824,"ramByteUsageAverage":402653184.12345,"ramByteHours":25769803776,"ramCost":{ram:.5},"ramCostAdjustment":0,"ramCostIdle":0,"ramEfficiency":0.375,"externalCost":0,"sharedCost":0,"totalCost":{total:.5},"totalEfficiency":0.2513,"rawAllocationOnly":{{"cpuCoreUsageMax":0.48,"ramByteUsageMax":512000000}},"lbAllocations":null}}"#
    )
    .ok();
}

fn generate(target_bytes: usize) -> (String, usize) {
    let mut doc = String::with_capacity(target_bytes + 4096);
    doc.push_str(r#"{"code":200,"status":"success","data":[{"#);
    let mut i = 0;
    while doc.len() < target_bytes {
        if i > 0 {
            doc.push(',');
        }
        row(&mut doc, i);
        i += 1;
    }
    doc.push_str("}]}");
    (doc, i)
}

fn report(what: &str, bytes: usize, rows: u64, secs: f64) {
    println!(
        "{what:<44} {:>8.1} MB/s {:>10.0} rows/s ({:.3} s)",
        bytes as f64 / 1e6 / secs,
        rows as f64 / secs,
        secs
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let (doc, n) = generate(mb * 1_000_000);
    let bytes = doc.as_bytes();
    let window = Window::new(1_709_510_400, 1_709_596_800)?;
    println!(
        "document: {:.1} MB, {n} allocations, {} bytes per allocation",
        bytes.len() as f64 / 1e6,
        bytes.len() / n.max(1)
    );

    for round in 0..2 {
        println!("round {}", round + 1);

        // 1. Framer alone.
        let t = Instant::now();
        let mut framer = Framer::default();
        let mut items = 0u64;
        let mut max_buffered = 0;
        for chunk in bytes.chunks(64 << 10) {
            framer.feed(chunk);
            max_buffered = max_buffered.max(framer.buffered());
            while let Some(ev) = framer.next_event()? {
                if let Event::Item { value, .. } = ev {
                    items += u64::from(!value.is_empty());
                }
            }
        }
        framer.finish()?;
        report(
            "framer only (64 KiB chunks)",
            bytes.len(),
            items,
            t.elapsed().as_secs_f64(),
        );
        println!("  framer buffer peak: {max_buffered} bytes");

        // 2. Streaming: framer + serde + conversion, batches dropped as they fill.
        let t = Instant::now();
        let mut framer = Framer::default();
        let mut c = AllocationCollector::new(SetWindows { window, step: None }, None, true);
        for chunk in bytes.chunks(64 << 10) {
            framer.feed(chunk);
            while let Some(ev) = framer.next_event()? {
                c.on_event(ev)?;
            }
            if c.batch.len() >= 1024 {
                drop(c.take_batch());
            }
        }
        framer.finish()?;
        report(
            "streaming framer+parse+convert (64 KiB)",
            bytes.len(),
            c.summary.rows,
            t.elapsed().as_secs_f64(),
        );

        // 3. Whole document.
        let t = Instant::now();
        let (rows, s) = kb_kubecost::parse_allocation_document(bytes, window)?;
        report(
            "parse_allocation_document (rows kept)",
            bytes.len(),
            s.rows,
            t.elapsed().as_secs_f64(),
        );
        if rows.len() != n {
            return Err(format!("parsed {} rows, generated {n}", rows.len()).into());
        }
    }
    Ok(())
}
