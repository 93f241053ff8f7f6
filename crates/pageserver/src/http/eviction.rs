//! `PUT /v1/disk_usage_eviction/run`: one run of disk-usage eviction, which
//! evicts uploaded layer files least recently read first until
//! `evict_bytes` are freed (`crate::tenant::eviction`). Evicted layers are
//! downloaded again on their next read.

use axum::extract::State;
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::JsonBody;
use super::AppState;
use crate::tenant::eviction::{self, EvictionReport};
use crate::tenant::TenantState;

/// Routes answered by this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/disk_usage_eviction/run", put(run))
}

#[derive(Debug, Deserialize)]
struct EvictionRequest {
    evict_bytes: u64,
}

async fn run(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<EvictionRequest>,
) -> Result<Json<EvictionReport>, ApiError> {
    let tenants: Vec<_> = state
        .manager
        .list()
        .into_iter()
        .filter(|t| t.state() == TenantState::Active)
        .collect();
    let report =
        tokio::task::spawn_blocking(move || eviction::evict(&tenants, request.evict_bytes))
            .await
            .map_err(|error| ApiError::internal(format!("eviction run failed: {error}")))?;
    Ok(Json(report))
}
