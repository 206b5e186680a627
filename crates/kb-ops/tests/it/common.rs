//! Shared fixtures: a manual clock, a local webhook receiver, captured logs.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use kb_ops::metrics::Clock;

/// 2023-11-14T00:00:00Z.
pub(crate) const T0: f64 = 1_699_920_000.0;

/// A clock tests move by hand (unix seconds).
#[derive(Clone)]
pub(crate) struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub(crate) fn new(t: f64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(t.to_bits())))
    }
    pub(crate) fn set(&self, t: f64) {
        self.0.store(t.to_bits(), Ordering::SeqCst);
    }
    pub(crate) fn advance(&self, secs: f64) {
        self.set(self.get() + secs);
    }
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::SeqCst))
    }
    pub(crate) fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || f64::from_bits(c.load(Ordering::SeqCst)))
    }
}

/// What the receiver got: `(path, body)` of every request, whatever it answered.
#[derive(Clone, Default)]
pub(crate) struct Received {
    pub(crate) requests: Arc<Mutex<Vec<(String, String)>>>,
    /// Requests to fail with 500 before answering 200.
    pub(crate) fail_first: Arc<AtomicU64>,
}

impl Received {
    pub(crate) fn all(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn hook(State(r): State<Received>, uri: Uri, body: Bytes) -> StatusCode {
    r.requests.lock().unwrap().push((
        uri.path().to_string(),
        String::from_utf8_lossy(&body).into_owned(),
    ));
    let left = r.fail_first.load(Ordering::SeqCst);
    if left > 0 {
        r.fail_first.store(left - 1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Serves a webhook receiver on 127.0.0.1; returns its base URL.
pub(crate) async fn receiver(fail_first: u64) -> (String, Received) {
    let r = Received::default();
    r.fail_first.store(fail_first, Ordering::SeqCst);
    let app = Router::new()
        .route("/{*rest}", post(hook))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    (format!("http://{addr}"), r)
}

/// Polls `f` every 10 ms for up to 10 s.
pub(crate) async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not met in 10 s");
}

/// A log sink for `tracing_subscriber`'s fmt layer.
#[derive(Clone, Default)]
pub(crate) struct Logs(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Captures this thread's logs (debug and above) until the guard drops.
pub(crate) fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let guard = tracing::subscriber::set_default(sub);
    (logs, guard)
}
