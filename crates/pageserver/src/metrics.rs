//! Prometheus metrics of the pageserver, served at `GET /metrics`.
//!
//! Metrics live in a registry owned by the server instance (not a process
//! global) so that several servers in one test process do not mix counts.

use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The pageserver's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Management API requests by method, route template and status.
    pub http_requests: IntCounterVec,
    /// Management API request latency by method and route template.
    pub http_request_seconds: HistogramVec,
    /// Tenants currently loaded.
    pub tenants: IntGauge,
    /// Timelines currently loaded.
    pub timelines: IntGauge,
    /// Timeline creations by kind (`bootstrap`, `branch`) and outcome.
    pub timeline_creations: IntCounterVec,
    /// 1 for every resource manager redone natively (endpoints leave it out
    /// of `wal_consistency_checking`).
    pub native_redo_rmgrs: IntGaugeVec,
    /// WAL records ingested since start, all timelines.
    pub wal_ingested_records: IntGauge,
    /// WAL bytes ingested since start, all timelines.
    pub wal_ingested_bytes: IntGauge,
    /// Timelines with a WAL source attached.
    pub wal_receivers: IntGauge,
    /// Blocks whose native redo was compared with a consistency-check image.
    pub native_redo_checks: IntGauge,
    /// Those comparisons that disagreed (each one is logged as an error).
    pub native_redo_mismatches: IntGauge,
    /// Layer files by level (`L0`, `L1`, `image`), all timelines.
    pub layers: IntGaugeVec,
    /// Bytes of layer files by level, all timelines.
    pub layer_bytes: IntGaugeVec,
    /// Background runs by kind (`flush`, `compaction`, `image`, `gc`) and
    /// outcome (`ok`, `error`).
    pub background_runs: IntCounterVec,
    /// Duration of background runs by kind.
    pub background_seconds: HistogramVec,
    /// Layer files GC deleted.
    pub gc_layers_removed: IntCounter,
    /// Bytes of layer files GC deleted.
    pub gc_bytes_removed: IntCounter,
    /// Reads (pages, base backups) that hit a corrupt layer file.
    pub corrupt_reads: IntGauge,
    /// Evicted layer files downloaded on demand, all tenants.
    pub ondemand_downloads: IntGauge,
    /// Their bytes.
    pub ondemand_download_bytes: IntGauge,
    /// Time spent on them, microseconds.
    pub ondemand_download_micros: IntGauge,
}

/// Registering a metric fails only for duplicate or malformed names, which
/// are fixed in this file; the error is still surfaced rather than panicking.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "pageserver_http_requests_total",
                "Management API requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let http_request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "pageserver_http_request_duration_seconds",
                "Management API request latency",
            ),
            &["method", "route"],
        )?;
        let tenants = IntGauge::new("pageserver_tenants", "Tenants loaded")?;
        let timelines = IntGauge::new("pageserver_timelines", "Timelines loaded")?;
        let timeline_creations = IntCounterVec::new(
            Opts::new(
                "pageserver_timeline_creations_total",
                "Timeline creations by kind and outcome",
            ),
            &["kind", "outcome"],
        )?;
        let native_redo_rmgrs = IntGaugeVec::new(
            Opts::new(
                "pageserver_native_redo_rmgr",
                "Resource managers whose WAL records are redone natively",
            ),
            &["rmgr"],
        )?;
        for rmgr in redo::NATIVE_RMGRS {
            native_redo_rmgrs.with_label_values(&[rmgr.name()]).set(1);
        }
        let wal_ingested_records = IntGauge::new(
            "pageserver_wal_ingested_records",
            "WAL records ingested since start",
        )?;
        let wal_ingested_bytes = IntGauge::new(
            "pageserver_wal_ingested_bytes",
            "WAL bytes ingested since start",
        )?;
        let wal_receivers = IntGauge::new(
            "pageserver_wal_receivers",
            "Timelines with a WAL source attached",
        )?;
        let native_redo_checks = IntGauge::new(
            "pageserver_native_redo_checks",
            "Blocks whose native redo was compared with a consistency-check image",
        )?;
        let native_redo_mismatches = IntGauge::new(
            "pageserver_native_redo_mismatches",
            "Native redo results that disagreed with a consistency-check image",
        )?;
        let lifecycle = Lifecycle::new()?;
        lifecycle.register(&registry)?;
        let corrupt_reads = IntGauge::new(
            "pageserver_corrupt_reads_total",
            "Page and base backup reads that hit a corrupt layer file (each logged as an error)",
        )?;
        registry.register(Box::new(corrupt_reads.clone()))?;
        let ondemand_downloads = IntGauge::new(
            "pageserver_ondemand_downloads_total",
            "Evicted layer files downloaded on demand since start",
        )?;
        let ondemand_download_bytes = IntGauge::new(
            "pageserver_ondemand_download_bytes_total",
            "Bytes of evicted layer files downloaded on demand since start",
        )?;
        let ondemand_download_micros = IntGauge::new(
            "pageserver_ondemand_download_microseconds_total",
            "Time spent downloading and installing evicted layer files",
        )?;
        registry.register(Box::new(ondemand_downloads.clone()))?;
        registry.register(Box::new(ondemand_download_bytes.clone()))?;
        registry.register(Box::new(ondemand_download_micros.clone()))?;
        registry.register(Box::new(native_redo_checks.clone()))?;
        registry.register(Box::new(native_redo_mismatches.clone()))?;
        registry.register(Box::new(native_redo_rmgrs.clone()))?;
        registry.register(Box::new(wal_ingested_records.clone()))?;
        registry.register(Box::new(wal_ingested_bytes.clone()))?;
        registry.register(Box::new(wal_receivers.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_request_seconds.clone()))?;
        registry.register(Box::new(tenants.clone()))?;
        registry.register(Box::new(timelines.clone()))?;
        registry.register(Box::new(timeline_creations.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_request_seconds,
            tenants,
            timelines,
            timeline_creations,
            native_redo_rmgrs,
            wal_ingested_records,
            wal_ingested_bytes,
            wal_receivers,
            native_redo_checks,
            native_redo_mismatches,
            layers: lifecycle.layers,
            layer_bytes: lifecycle.layer_bytes,
            background_runs: lifecycle.background_runs,
            background_seconds: lifecycle.background_seconds,
            gc_layers_removed: lifecycle.gc_layers_removed,
            gc_bytes_removed: lifecycle.gc_bytes_removed,
            corrupt_reads,
            ondemand_downloads,
            ondemand_download_bytes,
            ondemand_download_micros,
        })
    }

    /// Counts one background run of `kind` that started at `started`.
    pub fn background_run(&self, kind: &str, started: Instant, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.background_runs
            .with_label_values(&[kind, outcome])
            .inc();
        self.background_seconds
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts what a GC run deleted.
    pub fn gc_removed(&self, layers: usize, bytes: u64) {
        self.gc_layers_removed
            .inc_by(u64::try_from(layers).unwrap_or(u64::MAX));
        self.gc_bytes_removed.inc_by(bytes);
    }

    /// The metrics in Prometheus text format, followed by the histogram of
    /// records applied per page reconstruction, summed over `stats` (one
    /// snapshot per tenant's repository). Storage counts reconstructions in
    /// fixed buckets with plain atomics on the read path, so the histogram is
    /// rendered from those counters rather than observed sample by sample.
    pub fn render_with_storage(&self, stats: &[storage::StatsSnapshot]) -> String {
        let mut text = self.render();
        text.push_str(&render_reconstruct_histogram(stats));
        text
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// The layer lifecycle's metrics (issue #11), built apart to keep
/// [`Metrics::new`] short.
struct Lifecycle {
    layers: IntGaugeVec,
    layer_bytes: IntGaugeVec,
    background_runs: IntCounterVec,
    background_seconds: HistogramVec,
    gc_layers_removed: IntCounter,
    gc_bytes_removed: IntCounter,
}

impl Lifecycle {
    fn new() -> Result<Lifecycle, prometheus::Error> {
        Ok(Lifecycle {
            layers: IntGaugeVec::new(
                Opts::new("pageserver_layers", "Layer files by level"),
                &["level"],
            )?,
            layer_bytes: IntGaugeVec::new(
                Opts::new("pageserver_layer_bytes", "Bytes of layer files by level"),
                &["level"],
            )?,
            background_runs: IntCounterVec::new(
                Opts::new(
                    "pageserver_background_runs_total",
                    "Background flush, compaction, image and GC runs by outcome",
                ),
                &["kind", "outcome"],
            )?,
            background_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "pageserver_background_duration_seconds",
                    "Duration of background runs",
                )
                .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]),
                &["kind"],
            )?,
            gc_layers_removed: IntCounter::new(
                "pageserver_gc_layers_removed_total",
                "Layer files deleted by GC",
            )?,
            gc_bytes_removed: IntCounter::new(
                "pageserver_gc_bytes_removed_total",
                "Bytes of layer files deleted by GC",
            )?,
        })
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.layers.clone()))?;
        registry.register(Box::new(self.layer_bytes.clone()))?;
        registry.register(Box::new(self.background_runs.clone()))?;
        registry.register(Box::new(self.background_seconds.clone()))?;
        registry.register(Box::new(self.gc_layers_removed.clone()))?;
        registry.register(Box::new(self.gc_bytes_removed.clone()))
    }
}

/// `pageserver_reconstruct_records` (reads serving clients) and
/// `pageserver_background_reconstruct_records` (image creation,
/// materialisation, sizes) in the text exposition format, then the
/// materialised-image counters.
fn render_reconstruct_histogram(stats: &[storage::StatsSnapshot]) -> String {
    use std::fmt::Write as _;
    let mut text = render_records_histogram(
        stats,
        "pageserver_reconstruct_records",
        "WAL records applied to reconstruct one page for a client read",
        |s| (&s.records_histogram, s.records_total),
    );
    text.push_str(&render_records_histogram(
        stats,
        "pageserver_background_reconstruct_records",
        "WAL records applied to reconstruct one page for background work",
        |s| (&s.background_records_histogram, s.background_records_total),
    ));
    let total = |field: fn(&storage::StatsSnapshot) -> u64| stats.iter().map(field).sum::<u64>();
    let hits = "pageserver_materialized_hits_total";
    let _ = writeln!(
        text,
        "# HELP {hits} Page reconstructions that started from a materialised image\n\
         # TYPE {hits} counter\n{hits} {}",
        total(|s| s.materialized_hits)
    );
    let fills = "pageserver_materialized_fills_total";
    let _ = writeln!(
        text,
        "# HELP {fills} Materialised page images stored, by source\n\
         # TYPE {fills} counter\n{fills}{{source=\"background\"}} {}\n{fills}{{source=\"read\"}} {}",
        total(|s| s.materialized_fills_background),
        total(|s| s.materialized_fills_read)
    );
    text
}

/// One records-applied histogram: cumulative buckets over
/// `storage::stats::RECORDS_BUCKETS`, then `+Inf`, sum and count.
fn render_records_histogram(
    stats: &[storage::StatsSnapshot],
    name: &str,
    help: &str,
    field: fn(&storage::StatsSnapshot) -> (&Vec<u64>, u64),
) -> String {
    use std::fmt::Write as _;
    let buckets = storage::stats::RECORDS_BUCKETS.len() + 1;
    let mut counts = vec![0u64; buckets];
    let mut sum = 0u64;
    for snapshot in stats {
        let (histogram, total) = field(snapshot);
        for (all, count) in counts.iter_mut().zip(histogram) {
            *all += count;
        }
        sum += total;
    }
    let mut text = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
    let mut cumulative = 0u64;
    for (i, count) in counts.iter().enumerate() {
        cumulative += count;
        let bound = storage::stats::RECORDS_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), u64::to_string);
        let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(text, "{name}_sum {sum}\n{name}_count {cumulative}");
    text
}
