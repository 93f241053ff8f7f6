//! Prometheus metrics of the pageserver, served at `GET /metrics`.
//!
//! Metrics live in a registry owned by the server instance (not a process
//! global) so that several servers in one test process do not mix counts.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
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
    /// Reads (pages, base backups) that hit a corrupt layer file.
    pub corrupt_reads: IntGauge,
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
        let corrupt_reads = IntGauge::new(
            "pageserver_corrupt_reads_total",
            "Page and base backup reads that hit a corrupt layer file (each logged as an error)",
        )?;
        registry.register(Box::new(corrupt_reads.clone()))?;
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
            corrupt_reads,
        })
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
