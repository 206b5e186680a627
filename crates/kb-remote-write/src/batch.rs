//! [`DecodedBatch`]: the series of one remote_write request or one scrape, in a compact owned
//! form (one string arena plus index vectors) that both the protobuf decoder and the text
//! exposition parser build, and that every [`crate::SampleSink`] reads.
//!
//! Invariant: every label range points at a `char` boundary of `text` (the builder only appends
//! whole `&str`s), so the accessors never fail.

/// One sample: a value at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; Prometheus's staleness marker is a NaN with the bits of [`STALE_NAN_BITS`].
    pub value: f64,
}

/// The bit pattern Prometheus writes as a "stale" marker when a series disappears.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

impl Sample {
    /// True for Prometheus's staleness marker (a specific NaN).
    pub fn is_stale_marker(&self) -> bool {
        self.value.to_bits() == STALE_NAN_BITS
    }
}

#[derive(Debug, Clone, Copy)]
struct LabelIdx {
    name_start: u32,
    name_end: u32,
    value_end: u32,
}

#[derive(Debug, Clone, Copy)]
struct SeriesIdx {
    labels_start: u32,
    labels_end: u32,
    samples_start: u32,
    samples_end: u32,
}

/// Decoded series with their labels and samples.
#[derive(Debug, Clone, Default)]
pub struct DecodedBatch {
    text: String,
    labels: Vec<LabelIdx>,
    series: Vec<SeriesIdx>,
    samples: Vec<Sample>,
}

/// One series of a [`DecodedBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    batch: &'a DecodedBatch,
    idx: SeriesIdx,
}

impl<'a> Series<'a> {
    /// The labels in the order they were sent.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let b = self.batch;
        b.labels
            .get(self.idx.labels_start as usize..self.idx.labels_end as usize)
            .unwrap_or(&[])
            .iter()
            .map(move |l| {
                (
                    b.text
                        .get(l.name_start as usize..l.name_end as usize)
                        .unwrap_or(""),
                    b.text
                        .get(l.name_end as usize..l.value_end as usize)
                        .unwrap_or(""),
                )
            })
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The metric name (`__name__`), or `""`.
    pub fn name(&self) -> &'a str {
        self.label("__name__").unwrap_or("")
    }

    /// The samples, in the order they were sent.
    pub fn samples(&self) -> &'a [Sample] {
        self.batch
            .samples
            .get(self.idx.samples_start as usize..self.idx.samples_end as usize)
            .unwrap_or(&[])
    }
}

impl DecodedBatch {
    /// An empty batch with room for about `series` series.
    pub fn with_capacity(series: usize, text_bytes: usize) -> DecodedBatch {
        DecodedBatch {
            text: String::with_capacity(text_bytes),
            labels: Vec::with_capacity(series * 6),
            series: Vec::with_capacity(series),
            samples: Vec::with_capacity(series),
        }
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Number of samples over all series.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// True when the batch has no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Iterates the series.
    pub fn series(&self) -> impl Iterator<Item = Series<'_>> + '_ {
        self.series
            .iter()
            .map(move |&idx| Series { batch: self, idx })
    }

    /// Bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.labels.capacity() * size_of::<LabelIdx>()
            + self.series.capacity() * size_of::<SeriesIdx>()
            + self.samples.capacity() * size_of::<Sample>()
    }

    /// Starts a new series; returns a builder that appends labels and samples to it.
    pub fn push_series(&mut self) -> SeriesBuilder<'_> {
        let labels_start = u32_len(self.labels.len());
        let samples_start = u32_len(self.samples.len());
        SeriesBuilder {
            batch: self,
            labels_start,
            samples_start,
        }
    }
}

fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends one series; [`SeriesBuilder::finish`] commits it, dropping it discards it.
#[derive(Debug)]
pub struct SeriesBuilder<'a> {
    batch: &'a mut DecodedBatch,
    labels_start: u32,
    samples_start: u32,
}

impl SeriesBuilder<'_> {
    /// Appends a label.
    pub fn label(&mut self, name: &str, value: &str) {
        let b = &mut *self.batch;
        let name_start = u32_len(b.text.len());
        b.text.push_str(name);
        let name_end = u32_len(b.text.len());
        b.text.push_str(value);
        b.labels.push(LabelIdx {
            name_start,
            name_end,
            value_end: u32_len(b.text.len()),
        });
    }

    /// Appends a sample.
    pub fn sample(&mut self, timestamp_ms: i64, value: f64) {
        self.batch.samples.push(Sample {
            timestamp_ms,
            value,
        });
    }

    /// Labels appended so far.
    pub fn label_count(&self) -> usize {
        self.batch.labels.len() - self.labels_start as usize
    }

    /// Commits the series.
    pub fn finish(self) {
        let labels_end = u32_len(self.batch.labels.len());
        let samples_end = u32_len(self.batch.samples.len());
        self.batch.series.push(SeriesIdx {
            labels_start: self.labels_start,
            labels_end,
            samples_start: self.samples_start,
            samples_end,
        });
        // Leave `self` without running Drop's rollback.
        std::mem::forget(self);
    }
}

impl Drop for SeriesBuilder<'_> {
    fn drop(&mut self) {
        // Not finished: roll back what this series appended (text stays, unreferenced).
        self.batch.labels.truncate(self.labels_start as usize);
        self.batch.samples.truncate(self.samples_start as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_back() {
        let mut b = DecodedBatch::default();
        let mut s = b.push_series();
        s.label("__name__", "up");
        s.label("job", "x");
        s.sample(1, 1.0);
        s.finish();
        {
            let mut s = b.push_series();
            s.label("__name__", "dropped");
            s.sample(2, 2.0);
        }
        let mut s = b.push_series();
        s.label("__name__", "é");
        s.sample(3, f64::from_bits(STALE_NAN_BITS));
        s.finish();
        let v: Vec<_> = b.series().collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name(), "up");
        assert_eq!(v[0].label("job"), Some("x"));
        assert_eq!(
            v[0].samples(),
            &[Sample {
                timestamp_ms: 1,
                value: 1.0
            }]
        );
        assert_eq!(v[1].name(), "é");
        assert!(v[1].samples()[0].is_stale_marker());
        assert_eq!(b.sample_count(), 2);
    }
}
