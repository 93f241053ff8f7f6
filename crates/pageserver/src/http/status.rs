//! Health, the API description, and metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// The OpenAPI description of this API, embedded at build time.
pub const OPENAPI_SPEC: &str = include_str!("../../openapi.yml");

/// `GET /v1/status`: `{"id": <node id>}`, plus (an extension) which
/// resource managers this pageserver redoes natively and the
/// `wal_consistency_checking` value endpoints must run with: the others,
/// whose records then carry after-images.
pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let native: Vec<&str> = redo::NATIVE_RMGRS.iter().map(|rmgr| rmgr.name()).collect();
    Json(serde_json::json!({
        "id": state.manager.conf().id,
        "native_redo_rmgrs": native,
        "wal_consistency_checking": redo::wal_consistency_checking_value(),
    }))
}

/// `GET /v1/openapi.yml`.
pub async fn openapi_spec() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_SPEC).into_response()
}

/// `GET /metrics`, Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let tenants = state.manager.list();
    let timelines: usize = tenants.iter().map(|tenant| tenant.timelines().len()).sum();
    state
        .metrics
        .tenants
        .set(i64::try_from(tenants.len()).unwrap_or(i64::MAX));
    state
        .metrics
        .timelines
        .set(i64::try_from(timelines).unwrap_or(i64::MAX));
    use std::sync::atomic::Ordering::Relaxed;
    let (mut records, mut bytes, mut receivers) = (0u64, 0u64, 0i64);
    let (mut checks, mut mismatches) = (0u64, 0u64);
    for timeline in tenants.iter().flat_map(|tenant| tenant.timelines()) {
        let counters = timeline.ingest_counters();
        records += counters.records.load(Relaxed);
        bytes += counters.bytes.load(Relaxed);
        checks += counters.native_checks.load(Relaxed);
        mismatches += counters.image_mismatches.load(Relaxed);
        receivers += i64::from(timeline.wal_source_connstr().is_some());
    }
    let metrics = &state.metrics;
    let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    metrics.wal_ingested_records.set(gauge(records));
    metrics.wal_ingested_bytes.set(gauge(bytes));
    metrics.wal_receivers.set(receivers);
    metrics.native_redo_checks.set(gauge(checks));
    metrics.native_redo_mismatches.set(gauge(mismatches));
    let (mut downloads, mut download_bytes, mut download_micros) = (0u64, 0u64, 0u64);
    for tenant in &tenants {
        let counters = tenant.on_demand_io().counters();
        downloads += counters.count.load(Relaxed);
        download_bytes += counters.bytes.load(Relaxed);
        download_micros += counters.micros.load(Relaxed);
    }
    metrics.ondemand_downloads.set(gauge(downloads));
    metrics.ondemand_download_bytes.set(gauge(download_bytes));
    metrics.ondemand_download_micros.set(gauge(download_micros));
    // Layer statistics stat every layer file: off the async workers.
    let storage_stats: Vec<storage::StatsSnapshot> = tenants
        .iter()
        .filter_map(|tenant| tenant.storage_stats())
        .collect();
    let all: Vec<_> = tenants
        .iter()
        .flat_map(|tenant| tenant.timelines())
        .collect();
    let stats = tokio::task::spawn_blocking(move || {
        let mut totals = std::collections::HashMap::new();
        for timeline in all {
            for (level, s) in crate::storage_ops::layer_stats(timeline.storage()) {
                let entry: &mut (u64, u64) = totals.entry(level).or_default();
                entry.0 += s.count;
                entry.1 += s.bytes;
            }
        }
        totals
    })
    .await
    .unwrap_or_default();
    for level in crate::storage_ops::LayerLevel::ALL {
        let (count, bytes) = stats.get(&level).copied().unwrap_or_default();
        metrics
            .layers
            .with_label_values(&[level.label()])
            .set(gauge(count));
        metrics
            .layer_bytes
            .with_label_values(&[level.label()])
            .set(gauge(bytes));
    }
    metrics.corrupt_reads.set(gauge(state.corruption.count()));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render_with_storage(&storage_stats),
    )
        .into_response()
}
