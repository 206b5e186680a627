//! Turns a blocking generator into a chunked HTTP body through a bounded channel, so big
//! responses are served in bounded memory, and applies the body faults (truncation, corruption).
//!
//! Invariants: at most `CAP` chunks of about `CHUNK` bytes wait in the channel; the generator
//! stops as soon as the client is gone; a truncated body ends with an error so hyper aborts the
//! connection instead of finishing the chunked encoding.

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;
const CAP: usize = 8;
/// Truncated bodies are buffered up to this size (then cut there).
const TRUNCATE_CAP: usize = 64 * 1024 * 1024;

/// What to do to the body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BodyFaults {
    pub truncate: bool,
    pub malformed: bool,
}

/// The generator's output: a reused buffer flushed into the channel.
pub(crate) struct Out {
    pub buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    faults: BodyFaults,
    gone: bool,
}

impl Out {
    /// Flushes when the buffer is big; returns false when the client is gone (stop generating).
    pub(crate) fn boundary(&mut self) -> bool {
        if self.gone {
            return false;
        }
        if self.faults.truncate {
            if self.buf.len() >= TRUNCATE_CAP {
                self.send_truncated(self.buf.len());
                return false;
            }
            return true;
        }
        if self.buf.len() >= CHUNK {
            self.flush();
        }
        !self.gone
    }

    fn corrupt(&mut self) {
        if self.faults.malformed {
            self.faults.malformed = false;
            // Corrupt at a structural position (just after a `,` that precedes a key), never
            // inside a string, where `{{oops` would still be valid JSON.
            let half = self.buf.len() / 2;
            let at = self.buf[half..]
                .windows(2)
                .position(|w| w == b",\"")
                .map_or(self.buf.len(), |p| half + p + 1);
            let tail = self.buf.split_off(at);
            self.buf.extend_from_slice(b"{{oops");
            self.buf.extend_from_slice(&tail);
        }
    }

    fn flush(&mut self) {
        self.corrupt();
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + 4096),
        ));
        if self.tx.blocking_send(Ok(chunk)).is_err() {
            self.gone = true;
        }
    }

    fn send_truncated(&mut self, len: usize) {
        let mut data = std::mem::take(&mut self.buf);
        data.truncate(len);
        // Errors here only mean the client left already.
        let sent = self.tx.blocking_send(Ok(Bytes::from(data)));
        let cut = self
            .tx
            .blocking_send(Err(std::io::Error::other("simulated truncation")));
        drop((sent, cut));
        self.gone = true;
    }

    /// Sends what is left (half of it, for a truncated body).
    pub(crate) fn finish(mut self) {
        if self.gone {
            return;
        }
        if self.faults.truncate {
            let half = self.buf.len() / 2;
            self.send_truncated(half);
            return;
        }
        self.flush();
    }
}

/// Runs `gen` on the blocking pool and returns the streaming body it writes.
pub(crate) fn body<F>(faults: BodyFaults, generate: F) -> Body
where
    F: FnOnce(&mut Out) + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CAP);
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            buf: Vec::with_capacity(CHUNK + 4096),
            tx,
            faults,
            gone: false,
        };
        generate(&mut out);
        out.finish();
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}
