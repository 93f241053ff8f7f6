//! Counters a repository keeps for the pageserver to export as metrics:
//! records applied per page reconstruction (a histogram), compaction,
//! image creation and GC runs, materialised image hits and fills. Plain atomics, updated without locks.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::timeline::{CompactionResult, GcResult};

/// Upper bounds (inclusive) of the records-per-reconstruction histogram
/// buckets; one more bucket counts everything above the last. 3 is the
/// default `image_creation_threshold`, the bound a p99 is judged against,
/// so it has a bucket of its own.
pub const RECORDS_BUCKETS: [u64; 10] = [0, 1, 2, 3, 4, 8, 16, 32, 64, 128];

/// Who a page reconstruction is for: the histograms keep them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPurpose {
    /// A read serving a client (`Timeline::get`: page service, base backup).
    Request,
    /// Background work: image creation, materialisation, size computation.
    Background,
}

/// Repository-wide counters (see [`crate::Repository::stats`]).
#[derive(Debug, Default)]
pub struct StorageStats {
    /// Reconstructions per bucket of records applied (`RECORDS_BUCKETS`,
    /// then one for more).
    records_histogram: [AtomicU64; RECORDS_BUCKETS.len() + 1],
    records_total: AtomicU64,
    /// The same for background reconstructions (image creation,
    /// materialisation, sizes): they replay long chains on purpose, so that
    /// reads serving clients do not.
    background_records_histogram: [AtomicU64; RECORDS_BUCKETS.len() + 1],
    background_records_total: AtomicU64,
    compaction_runs: AtomicU64,
    compaction_micros: AtomicU64,
    image_micros: AtomicU64,
    images_created: AtomicU64,
    layers_compacted: AtomicU64,
    gc_runs: AtomicU64,
    gc_layers_removed: AtomicU64,
    gc_bytes_removed: AtomicU64,
    materialized_hits: AtomicU64,
    materialized_fills_background: AtomicU64,
    materialized_fills_read: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Reconstructions whose record count was ≤ `RECORDS_BUCKETS[i]` and
    /// above the previous bound; the last entry counts the rest
    /// (non-cumulative).
    pub records_histogram: Vec<u64>,
    /// Records applied over all reconstructions (the histogram's sum).
    pub records_total: u64,
    /// [`Self::records_histogram`] of background reconstructions (image
    /// creation, materialisation, sizes), kept apart from client reads.
    pub background_records_histogram: Vec<u64>,
    /// Records applied over all background reconstructions.
    pub background_records_total: u64,
    /// `Timeline::compact` runs.
    pub compaction_runs: u64,
    /// Total time compacting L0s, microseconds.
    pub compaction_micros: u64,
    /// Total time creating images, microseconds.
    pub image_micros: u64,
    /// Image layers created.
    pub images_created: u64,
    /// L0 files replaced by L1s.
    pub layers_compacted: u64,
    /// GC runs.
    pub gc_runs: u64,
    /// Layer files GC deleted.
    pub gc_layers_removed: u64,
    /// Bytes GC freed.
    pub gc_bytes_removed: u64,
    /// Reconstructions that started from a materialised image.
    pub materialized_hits: u64,
    /// Materialised images stored by [`crate::Timeline::materialize_hot`].
    pub materialized_fills_background: u64,
    /// Materialised images stored by reads after a long replay.
    pub materialized_fills_read: u64,
}

impl StorageStats {
    /// Records one reconstruction that applied `records` records on top of
    /// its base image, in the histogram of its purpose.
    pub fn record_reconstruction(&self, records: usize, purpose: ReadPurpose) {
        let records = records as u64;
        let bucket = RECORDS_BUCKETS
            .iter()
            .position(|bound| records <= *bound)
            .unwrap_or(RECORDS_BUCKETS.len());
        let (histogram, total) = match purpose {
            ReadPurpose::Request => (&self.records_histogram, &self.records_total),
            ReadPurpose::Background => (
                &self.background_records_histogram,
                &self.background_records_total,
            ),
        };
        histogram[bucket].fetch_add(1, Ordering::Relaxed);
        total.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn record_materialized_hit(&self) {
        self.materialized_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_materialized_fill(&self, background: bool) {
        let counter = if background {
            &self.materialized_fills_background
        } else {
            &self.materialized_fills_read
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_compaction(&self, result: &CompactionResult) {
        self.compaction_runs.fetch_add(1, Ordering::Relaxed);
        self.compaction_micros.fetch_add(
            result.compaction_duration.as_micros() as u64,
            Ordering::Relaxed,
        );
        self.image_micros
            .fetch_add(result.image_duration.as_micros() as u64, Ordering::Relaxed);
        self.images_created
            .fetch_add(result.images_created as u64, Ordering::Relaxed);
        self.layers_compacted
            .fetch_add(result.layers_removed.len() as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_gc(&self, result: &GcResult) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_layers_removed
            .fetch_add(result.layers_removed.len() as u64, Ordering::Relaxed);
        self.gc_bytes_removed
            .fetch_add(result.bytes_removed, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            records_histogram: self.records_histogram.iter().map(get).collect(),
            records_total: get(&self.records_total),
            background_records_histogram: self
                .background_records_histogram
                .iter()
                .map(get)
                .collect(),
            background_records_total: get(&self.background_records_total),
            compaction_runs: get(&self.compaction_runs),
            compaction_micros: get(&self.compaction_micros),
            image_micros: get(&self.image_micros),
            images_created: get(&self.images_created),
            layers_compacted: get(&self.layers_compacted),
            gc_runs: get(&self.gc_runs),
            gc_layers_removed: get(&self.gc_layers_removed),
            gc_bytes_removed: get(&self.gc_bytes_removed),
            materialized_hits: get(&self.materialized_hits),
            materialized_fills_background: get(&self.materialized_fills_background),
            materialized_fills_read: get(&self.materialized_fills_read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let stats = StorageStats::default();
        for n in [0, 1, 3, 4, 200] {
            stats.record_reconstruction(n, ReadPurpose::Request);
        }
        stats.record_reconstruction(500, ReadPurpose::Background);
        let snap = stats.snapshot();
        assert_eq!(
            snap.records_histogram,
            vec![1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(snap.records_total, 208);
        assert_eq!(
            snap.background_records_histogram,
            vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(snap.background_records_total, 500);
    }
}
