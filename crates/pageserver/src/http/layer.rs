//! `GET /v1/tenant/{tenant_id}/timeline/{timeline_id}/layer`: the layer map
//! of one timeline (an extension; Neon serves the same path): every layer
//! file as a key range × LSN range with its kind, level and size, and the
//! in-memory layers. The web console draws it; its ancestors' layers are
//! not included (read them from the ancestor).

use axum::extract::State;
use axum::Json;
use postgres_wal::Lsn;
use serde::Serialize;

use super::error::ApiError;
use super::extract::{parse_tenant_id, parse_timeline_id, ApiPath};
use super::AppState;

/// The answer.
#[derive(Debug, Serialize)]
pub struct LayerMapAnswer {
    /// The timeline.
    pub timeline_id: String,
    /// The open layer first, then frozen ones, oldest first.
    pub in_memory_layers: Vec<InMemoryLayer>,
    /// Layer files: deltas by LSN start, then images by LSN.
    pub historic_layers: Vec<HistoricLayer>,
}

/// An in-memory layer.
#[derive(Debug, Serialize)]
pub struct InMemoryLayer {
    /// First LSN it covers.
    pub lsn_start: Lsn,
    /// End of its range (exclusive); absent for the open layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsn_end: Option<Lsn>,
    /// Bytes of values held.
    pub size_bytes: u64,
}

/// A layer file.
#[derive(Debug, Serialize)]
pub struct HistoricLayer {
    /// `Delta` or `Image`.
    pub kind: &'static str,
    /// `L0`, `L1` (deltas) or `image`.
    pub level: &'static str,
    /// The file name (encodes both ranges).
    pub layer_file_name: String,
    /// Bytes of the file.
    pub layer_file_size: u64,
    /// First key (36 hex digits), inclusive.
    pub key_start: String,
    /// Last key, exclusive.
    pub key_end: String,
    /// First LSN, inclusive (an image's LSN).
    pub lsn_start: Lsn,
    /// End LSN, exclusive (an image at L ends at L+1).
    pub lsn_end: Lsn,
}

/// `GET .../layer`.
pub async fn layer_map(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id)): ApiPath<(String, String)>,
) -> Result<Json<LayerMapAnswer>, ApiError> {
    let tenant = state.manager.get(parse_tenant_id(&tenant_id)?)?;
    let timeline_id = parse_timeline_id(&timeline_id)?;
    let timeline = tenant
        .timeline(timeline_id)
        .ok_or_else(|| ApiError::not_found(format!("timeline {timeline_id} not found")))?;
    let storage = std::sync::Arc::clone(timeline.storage());
    // File sizes may need a stat each: off the async workers.
    let info = tokio::task::spawn_blocking(move || storage.layer_map_info())
        .await
        .map_err(|error| ApiError::internal(format!("layer map task failed: {error}")))?;
    Ok(Json(LayerMapAnswer {
        timeline_id: timeline_id.to_string(),
        in_memory_layers: info
            .in_memory
            .iter()
            .map(|layer| InMemoryLayer {
                lsn_start: layer.start_lsn,
                lsn_end: layer.end_lsn,
                size_bytes: layer.size_bytes,
            })
            .collect(),
        historic_layers: info.files.iter().map(historic).collect(),
    }))
}

fn historic(file: &storage::LayerFileInfo) -> HistoricLayer {
    let (kind, level) = match (file.desc.kind, file.is_l1) {
        (storage::LayerKind::Image, _) => ("Image", "image"),
        (storage::LayerKind::Delta, true) => ("Delta", "L1"),
        (storage::LayerKind::Delta, false) => ("Delta", "L0"),
    };
    HistoricLayer {
        kind,
        level,
        layer_file_name: file.desc.file_name(),
        layer_file_size: file.size_bytes,
        key_start: file.desc.key_range.start.to_string(),
        key_end: file.desc.key_range.end.to_string(),
        lsn_start: file.desc.lsn_range.start,
        lsn_end: file.desc.lsn_range.end,
    }
}
