//! The delivery worker: in-order, exactly-once delivery over flaky backends, dead letters,
//! crash replay of the in-flight record, write-through ordering and prompt wake-ups and stops.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kb_spool::{
    Deliverer, DelivererConfig, Delivery, DeliveryError, Spool, SpoolConfig, WriteOutcome,
};

use crate::{cfg, dead_files, open, payload};

fn fast() -> DelivererConfig {
    DelivererConfig {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

type Hook = Box<dyn Fn(u64) + Send + Sync>;

/// A backend that records what it took, fails the first `fail_first` calls, refuses kind 9
/// permanently, can be switched down, and runs a hook after taking a record.
#[derive(Default)]
struct Backend {
    got: Mutex<Vec<(u16, Vec<u8>)>>,
    calls: AtomicU64,
    fail_first: u64,
    down: std::sync::atomic::AtomicBool,
    after_take: Option<Hook>,
}

impl Delivery for Backend {
    fn deliver(&self, kind: u16, payload: &[u8]) -> Result<(), DeliveryError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first || self.down.load(Ordering::SeqCst) {
            return Err(DeliveryError::retryable("connection refused"));
        }
        if kind == 9 {
            return Err(DeliveryError::permanent("table does not exist"));
        }
        let mut got = self.got.lock().unwrap();
        got.push((kind, payload.to_vec()));
        let taken = got.len() as u64;
        drop(got);
        if let Some(h) = &self.after_take {
            h(taken);
        }
        Ok(())
    }
}

impl Backend {
    fn got(&self) -> Vec<(u16, Vec<u8>)> {
        self.got.lock().unwrap().clone()
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn flaky_backend_gets_everything_exactly_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(tmp.path()));
    let backend = Arc::new(Backend {
        fail_first: 7,
        ..Backend::default()
    });
    let want: Vec<(u16, Vec<u8>)> = (0..60).map(|i| ((i % 5) as u16, payload(i, 300))).collect();
    // Half before the worker starts, half while it runs.
    for (k, p) in &want[..30] {
        spool.append(*k, p).unwrap();
    }
    let d = Deliverer::start(spool.clone(), backend.clone(), fast()).unwrap();
    for (k, p) in &want[30..] {
        spool.append(*k, p).unwrap();
    }
    wait_until("drained", || d.stats().depth.records == 0);
    let stats = d.shutdown();
    assert_eq!(backend.got(), want);
    assert_eq!(stats.delivered, 60);
    assert_eq!(stats.retries, 7);
    assert_eq!(stats.dead, 0);
    assert!(spool.is_empty());
}

#[test]
fn permanent_failure_goes_to_dead_and_delivery_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Arc::new(
        Spool::open(
            tmp.path(),
            SpoolConfig {
                dead_keep: 3,
                ..cfg()
            },
        )
        .unwrap(),
    );
    let backend = Arc::new(Backend::default());
    spool.append(1, b"a").unwrap();
    let bad = spool.append(9, b"refused").unwrap();
    spool.append(1, b"c").unwrap();
    let d = Deliverer::start(spool.clone(), backend.clone(), fast()).unwrap();
    wait_until("drained", || d.stats().depth.records == 0);
    assert_eq!(backend.got(), vec![(1, b"a".to_vec()), (1, b"c".to_vec())]);
    assert_eq!(d.stats().dead, 1);
    let bins = dead_files(tmp.path(), "bin");
    assert_eq!(bins.len(), 1);
    assert_eq!(std::fs::read(&bins[0]).unwrap(), b"refused");
    let note = std::fs::read_to_string(bins[0].with_extension("txt")).unwrap();
    assert!(note.contains("table does not exist"), "{note}");
    assert!(note.contains(&format!("seq: {bad}")), "{note}");
    // dead/ is bounded: the newest `dead_keep` stay.
    for i in 0..5u8 {
        spool.append(9, &[i]).unwrap();
    }
    wait_until("drained", || d.stats().dead == 6);
    let bins = dead_files(tmp.path(), "bin");
    assert_eq!(bins.len(), 3);
    assert_eq!(dead_files(tmp.path(), "txt").len(), 3);
    assert_eq!(std::fs::read(&bins[2]).unwrap(), [4u8]);
}

#[test]
fn crash_between_delivery_and_ack_repeats_only_the_in_flight_record() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let image = tmp.path().join("crash-image");
    let n = 25u64;
    let crash_at = 11u64;
    {
        let spool = Arc::new(open(&live));
        for i in 0..n {
            spool.append(1, &payload(i, 2000)).unwrap();
        }
        // When the backend takes record `crash_at`, copy the spool's files as they are at that
        // moment: what a kill -9 would leave (the record delivered, its ack not yet written).
        let (src, dst) = (live.clone(), image.clone());
        let backend = Arc::new(Backend {
            after_take: Some(Box::new(move |taken| {
                if taken == crash_at {
                    copy_dir(&src, &dst);
                }
            })),
            ..Backend::default()
        });
        let d = Deliverer::start(spool.clone(), backend.clone(), fast()).unwrap();
        wait_until("crash image", || backend.got().len() as u64 >= crash_at);
        d.shutdown();
    }
    // Restart from the crash image: the first run delivered records 0..crash_at.
    let spool = Arc::new(open(&image));
    assert_eq!(spool.depth().records, n - crash_at + 1);
    let backend = Arc::new(Backend::default());
    let d = Deliverer::start(spool.clone(), backend.clone(), fast()).unwrap();
    wait_until("drained", || d.stats().depth.records == 0);
    d.shutdown();
    let second: Vec<Vec<u8>> = backend.got().into_iter().map(|(_, p)| p).collect();
    let want: Vec<Vec<u8>> = (crash_at - 1..n).map(|i| payload(i, 2000)).collect();
    assert_eq!(
        second, want,
        "replay starts at the in-flight record, in order"
    );
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.join("dead")).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn write_through_is_direct_when_empty_and_keeps_order_when_down() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(tmp.path()));
    let backend = Arc::new(Backend::default());
    let d = Deliverer::start(spool.clone(), backend.clone(), fast()).unwrap();
    assert_eq!(d.write_through(1, b"r0").unwrap(), WriteOutcome::Delivered);
    assert_eq!(
        spool.disk_bytes(),
        0,
        "the fast path writes nothing to disk"
    );
    backend.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        d.write_through(1, b"r1").unwrap(),
        WriteOutcome::Spooled(_)
    ));
    assert!(matches!(
        d.write_through(1, b"r2").unwrap(),
        WriteOutcome::Spooled(_)
    ));
    backend.down.store(false, Ordering::SeqCst);
    // Even with the backend up, a non-empty spool means append: r3 must follow r1 and r2.
    let mut outcomes = Vec::new();
    for i in 3..40 {
        outcomes.push(d.write_through(1, format!("r{i}").as_bytes()).unwrap());
    }
    wait_until("drained", || spool.is_empty());
    assert_eq!(d.write_through(9, b"bad").unwrap(), WriteOutcome::Dead);
    let stats = d.shutdown();
    let got: Vec<String> = backend
        .got()
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect();
    let want: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    assert_eq!(got, want);
    assert_eq!(stats.direct + stats.delivered, 40);
    assert!(stats.direct >= 1 && stats.delivered >= 2, "{stats:?}");
    assert_eq!(stats.dead, 1);
}

#[test]
fn write_through_from_many_threads_never_loses_or_repeats() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(tmp.path()));
    let backend = Arc::new(Backend {
        fail_first: 20,
        ..Backend::default()
    });
    let d = Arc::new(Deliverer::start(spool.clone(), backend.clone(), fast()).unwrap());
    let threads: Vec<_> = (0..4u16)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let mut p = t.to_le_bytes().to_vec();
                    p.extend_from_slice(&i.to_le_bytes());
                    d.write_through(t, &p).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wait_until("drained", || spool.is_empty());
    let got = backend.got();
    assert_eq!(got.len(), 200);
    // Each producer's records arrive in its own order.
    for t in 0..4u16 {
        let mine: Vec<u32> = got
            .iter()
            .filter(|(k, _)| *k == t)
            .map(|(_, p)| u32::from_le_bytes([p[2], p[3], p[4], p[5]]))
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>(), "producer {t}");
    }
}

#[test]
fn worker_wakes_on_append_and_stops_promptly_while_backing_off() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(tmp.path()));
    let backend = Arc::new(Backend::default());
    let d = Deliverer::start(spool.clone(), backend.clone(), DelivererConfig::default()).unwrap();
    std::thread::sleep(Duration::from_millis(50)); // the worker is idle now
    let t = Instant::now();
    spool.append(1, b"x").unwrap();
    wait_until("delivered", || backend.got().len() == 1);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "woken by the append, not a poll"
    );
    d.shutdown();

    // A backend that is down, and long backoffs: shutdown does not wait them out.
    let backend = Arc::new(Backend::default());
    backend.down.store(true, Ordering::SeqCst);
    let d = Deliverer::start(
        spool.clone(),
        backend.clone(),
        DelivererConfig {
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
        },
    )
    .unwrap();
    spool.append(1, b"y").unwrap();
    wait_until("a retry", || d.stats().retries >= 1);
    let stop = d.stop_handle();
    let t = Instant::now();
    stop.stop();
    let stats = d.shutdown();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(
        stats.depth.records, 1,
        "the record stays spooled for the next start"
    );
}
