//! A small in-process response cache with single flight.
//!
//! Keyed by the endpoint, the cluster and the canonical query (with `window` shorthands already
//! resolved to absolute times, so `30d` moves on by itself every hour) and the cache
//! generation. An entry lives `ttl`; [`ResponseCache::invalidate`] (called by the binary after
//! the extractor or aggregator commits) starts a new generation so no stale answer is served.
//! Concurrent misses of one key compute once: the others wait for the first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OnceCell;

/// A rendered answer.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub content_type: &'static str,
    pub rows: u64,
    /// The body gzip-compressed, for clients that accept it (bodies of 1 KiB or more).
    pub gzip: Option<Bytes>,
}

impl Rendered {
    /// Adds the gzip form of a body of at least 1 KiB (fast level: answers are compressed
    /// once per cache fill and served many times).
    pub fn with_gzip(mut self) -> Rendered {
        use std::io::Write;
        if self.body.len() >= 1024 {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(self.body.len() / 4),
                flate2::Compression::fast(),
            );
            if enc.write_all(&self.body).is_ok() {
                if let Ok(v) = enc.finish() {
                    self.gzip = Some(Bytes::from(v));
                }
            }
        }
        self
    }
}

struct Slot {
    created: Instant,
    cell: Arc<OnceCell<Rendered>>,
}

/// The response cache (see the module docs).
pub struct ResponseCache {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    generation: AtomicU64,
    map: Mutex<HashMap<String, Slot>>,
}

fn slot_bytes(s: &Slot) -> usize {
    s.cell
        .get()
        .map_or(0, |r| r.body.len() + r.gzip.as_ref().map_or(0, |g| g.len()))
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// A cache of at most `max_entries` answers and about `max_bytes` of bodies, each kept
    /// `ttl` (`ttl = 0` disables it). When full, expired answers go first, then all.
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> ResponseCache {
        ResponseCache {
            ttl,
            max_entries: max_entries.max(1),
            max_bytes,
            generation: AtomicU64::new(0),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every answer (call after new data is committed).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Returns the cached answer of `key` or computes it with `f` (once for concurrent
    /// callers). The bool is true when the answer came from the cache.
    pub async fn get_or_compute<F, Fut, E>(&self, key: &str, f: F) -> Result<(Rendered, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Rendered, E>>,
    {
        if self.ttl.is_zero() {
            return f().await.map(|r| (r, false));
        }
        let key = format!("{}|{key}", self.generation.load(Ordering::Relaxed));
        let now = Instant::now();
        let cell = {
            let mut map = self.lock();
            let fresh = map
                .get(&key)
                .filter(|s| now.duration_since(s.created) < self.ttl)
                .map(|s| s.cell.clone());
            match fresh {
                Some(c) => c,
                None => {
                    let full = |m: &HashMap<String, Slot>| {
                        m.len() >= self.max_entries
                            || m.values().map(slot_bytes).sum::<usize>() > self.max_bytes
                    };
                    if map.len() >= self.max_entries || map.len() % 64 == 63 {
                        let ttl = self.ttl;
                        map.retain(|_, s| now.duration_since(s.created) < ttl);
                    }
                    if full(&map) {
                        map.clear();
                    }
                    let c = Arc::new(OnceCell::new());
                    map.insert(
                        key.clone(),
                        Slot {
                            created: now,
                            cell: c.clone(),
                        },
                    );
                    c
                }
            }
        };
        if let Some(r) = cell.get() {
            return Ok((r.clone(), true));
        }
        let mut computed = false;
        let r = cell
            .get_or_try_init(|| {
                computed = true;
                f()
            })
            .await?;
        Ok((r.clone(), !computed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &'static str) -> Rendered {
        Rendered {
            body: Bytes::from_static(s.as_bytes()),
            content_type: "text/plain",
            rows: 1,
            gzip: None,
        }
    }

    #[tokio::test]
    async fn caches_until_invalidated() {
        let c = ResponseCache::new(Duration::from_secs(60), 4, 1 << 20);
        let (a, hit) = c
            .get_or_compute("k", || async { Ok::<_, ()>(r("a")) })
            .await
            .unwrap();
        assert!(!hit && a.body == "a");
        let (b, hit) = c
            .get_or_compute("k", || async { Ok::<_, ()>(r("b")) })
            .await
            .unwrap();
        assert!(hit && b.body == "a");
        c.invalidate();
        let (b, hit) = c
            .get_or_compute("k", || async { Ok::<_, ()>(r("b")) })
            .await
            .unwrap();
        assert!(!hit && b.body == "b");
        // Errors are not cached.
        assert!(
            c.get_or_compute("e", || async { Err::<Rendered, _>(1) })
                .await
                .is_err()
        );
        let (e, _) = c
            .get_or_compute("e", || async { Ok::<_, i32>(r("e")) })
            .await
            .unwrap();
        assert_eq!(e.body, "e");
        for k in 0..10 {
            let key = format!("x{k}");
            c.get_or_compute(&key, || async { Ok::<_, ()>(r("x")) })
                .await
                .unwrap();
        }
        assert!(c.lock().len() <= 4);
    }
}
