//! The scraper: GETs a Kubecost `/metrics` page on an interval and feeds the same
//! [`SampleSink`] as the receiver, for clusters without remote_write.
//!
//! Each scrape has a total timeout and a body size cap; the loop sleeps through
//! [`Shutdown::sleep`] so it ends as soon as shutdown is requested. Samples without a
//! timestamp get the scrape's start time. Like Prometheus, a series present in the previous
//! scrape and missing from this one gets a staleness marker, so a finished pod stops costing
//! at once. A failed scrape (HTTP error, timeout, parse error) stores nothing and is logged;
//! the loop goes on.

use crate::batch::{DecodedBatch, STALE_NAN_BITS};
use crate::exposition::{ParseError, parse_exposition};
use crate::proto::DecodeLimits;
use crate::sink::{SampleSink, SinkError};
use kb_pipeline::shutdown::Shutdown;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One cluster's `/metrics` to scrape.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// Cluster the samples are stored under.
    pub cluster: String,
    /// Full URL of the page (for example `http://kubecost:9003/metrics`).
    pub url: String,
    /// Time between scrape starts.
    pub interval: Duration,
    /// Total time one scrape may take (connect, headers and body).
    pub timeout: Duration,
    /// Largest page accepted.
    pub max_body_bytes: usize,
    /// Per-series limits.
    pub limits: DecodeLimits,
}

impl ScrapeTarget {
    /// A target with the defaults: every 60 s, 10 s timeout, 64 MiB cap.
    pub fn new(cluster: impl Into<String>, url: impl Into<String>) -> ScrapeTarget {
        ScrapeTarget {
            cluster: cluster.into(),
            url: url.into(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_body_bytes: 64 << 20,
            limits: DecodeLimits::default(),
        }
    }
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("scrape {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("scrape {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("scrape {url}: timed out")]
    Timeout { url: String },
    #[error("scrape {url}: page larger than {max} bytes")]
    TooLarge { url: String, max: usize },
    #[error("scrape {url}: page is not utf-8")]
    Utf8 { url: String },
    #[error("scrape {url}: {source}")]
    Parse {
        url: String,
        #[source]
        source: ParseError,
    },
    #[error("scrape {url}: {source}")]
    Sink {
        url: String,
        #[source]
        source: SinkError,
    },
}

/// What one scrape stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeReport {
    /// Series on the page.
    pub series: usize,
    /// Staleness markers sent for series that disappeared.
    pub stale: usize,
}

/// A target plus what the previous scrape saw (for staleness markers).
#[derive(Debug)]
pub struct Scraper {
    target: ScrapeTarget,
    client: reqwest::Client,
    previous: Option<DecodedBatch>,
}

fn hash_labels<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in labels {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

impl Scraper {
    /// A scraper using `client` (share one client between targets).
    pub fn new(target: ScrapeTarget, client: reqwest::Client) -> Scraper {
        Scraper {
            target,
            client,
            previous: None,
        }
    }

    /// The target.
    pub fn target(&self) -> &ScrapeTarget {
        &self.target
    }

    async fn fetch(&self) -> Result<String, ScrapeError> {
        let url = &self.target.url;
        let transport = |source| ScrapeError::Transport {
            url: url.clone(),
            source,
        };
        let mut resp = self
            .client
            .get(url)
            .header("accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
            .timeout(self.target.timeout)
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status {
                url: url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let max = self.target.max_body_bytes;
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(ScrapeError::TooLarge {
                url: url.clone(),
                max,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > max {
                return Err(ScrapeError::TooLarge {
                    url: url.clone(),
                    max,
                });
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| ScrapeError::Utf8 { url: url.clone() })
    }

    /// Scrapes once, stamping samples without a timestamp with `now_ms`, and writes the page
    /// (plus staleness markers) to `sink`.
    pub async fn scrape_once(
        &mut self,
        sink: &Arc<dyn SampleSink>,
        now_ms: i64,
    ) -> Result<ScrapeReport, ScrapeError> {
        let url = self.target.url.clone();
        let text = match tokio::time::timeout(self.target.timeout, self.fetch()).await {
            Ok(r) => r?,
            Err(_) => return Err(ScrapeError::Timeout { url }),
        };
        let limits = self.target.limits;
        let previous = self.previous.take();
        let parsed = tokio::task::spawn_blocking(move || {
            let mut batch = parse_exposition(&text, now_ms, &limits)?;
            let mut stale = 0;
            if let Some(prev) = &previous {
                let seen: HashSet<u64> = batch.series().map(|s| hash_labels(s.labels())).collect();
                let gone: Vec<Vec<(String, String)>> = prev
                    .series()
                    .filter(|s| !seen.contains(&hash_labels(s.labels())))
                    .map(|s| {
                        s.labels()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .collect();
                for labels in gone {
                    let mut s = batch.push_series();
                    for (k, v) in &labels {
                        s.label(k, v);
                    }
                    s.sample(now_ms, f64::from_bits(STALE_NAN_BITS));
                    s.finish();
                    stale += 1;
                }
            }
            Ok::<_, ParseError>((batch, stale))
        })
        .await;
        let (batch, stale) = match parsed {
            Ok(Ok(x)) => x,
            Ok(Err(source)) => return Err(ScrapeError::Parse { url, source }),
            Err(e) => {
                return Err(ScrapeError::Sink {
                    url,
                    source: SinkError::new(format!("parse task failed: {e}")),
                });
            }
        };
        let sink2 = sink.clone();
        let cluster = self.target.cluster.clone();
        let (res, batch) = tokio::task::spawn_blocking(move || {
            let r = sink2.write(&cluster, &batch);
            (r, batch)
        })
        .await
        .map_err(|e| ScrapeError::Sink {
            url: url.clone(),
            source: SinkError::new(format!("sink task failed: {e}")),
        })?;
        res.map_err(|source| ScrapeError::Sink {
            url: url.clone(),
            source,
        })?;
        let series = batch.series_count() - stale;
        // Keep only the live series for the next comparison.
        let mut keep = DecodedBatch::with_capacity(series, 0);
        for s in batch
            .series()
            .filter(|s| !s.samples().iter().any(|p| p.is_stale_marker()))
        {
            let mut b = keep.push_series();
            for (k, v) in s.labels() {
                b.label(k, v);
            }
            b.finish();
        }
        self.previous = Some(keep);
        Ok(ScrapeReport { series, stale })
    }

    /// Scrapes every `interval` until shutdown. Errors are logged and the loop goes on.
    pub async fn run(mut self, sink: Arc<dyn SampleSink>, shutdown: Shutdown) {
        loop {
            if shutdown.is_triggered() {
                break;
            }
            let started = tokio::time::Instant::now();
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let res = tokio::select! {
                r = self.scrape_once(&sink, now_ms) => Some(r),
                () = shutdown.wait() => None,
            };
            match res {
                None => break,
                Some(Ok(r)) => tracing::debug!(
                    cluster = %self.target.cluster, series = r.series, stale = r.stale, "scraped"
                ),
                Some(Err(e)) => {
                    tracing::warn!(cluster = %self.target.cluster, error = %e, "scrape failed")
                }
            }
            let wait = self.target.interval.saturating_sub(started.elapsed());
            if shutdown.sleep(wait).await.is_err() {
                break;
            }
        }
    }
}
