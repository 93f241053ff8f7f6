//! `GET /v1/tenant/{tenant_id}/size` and `.../synthetic_size`: the tenant
//! size model of [`crate::size`].

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{parse_tenant_id, ApiPath};
use super::AppState;
use crate::size::SizeModel;

/// Query of `GET .../size`.
#[derive(Debug, Deserialize)]
pub struct SizeQuery {
    #[serde(default)]
    inputs_only: Option<bool>,
    #[serde(default)]
    retention_period: Option<u64>,
}

/// Computes the model on a blocking thread (logical sizes walk relations).
async fn model(
    state: &AppState,
    tenant_id: &str,
    inputs_only: bool,
    retention_period: Option<u64>,
) -> Result<(String, SizeModel), ApiError> {
    let tenant = state.manager.get_active(parse_tenant_id(tenant_id)?)?;
    let id = tenant.id().to_string();
    let work = tokio::task::spawn_blocking(move || {
        crate::size::gather(&tenant, inputs_only, retention_period)
    });
    let model = work
        .await
        .map_err(|error| ApiError::internal(format!("size calculation failed: {error}")))?;
    Ok((id, model))
}

/// `GET /v1/tenant/{tenant_id}/size[?inputs_only=true][&retention_period=N]`:
/// `{"id", "size", "inputs"}`, `size` null with `inputs_only`.
pub async fn size(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
    query: Result<Query<SizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|error| {
        ApiError::bad_request(format!(
            "bad query (inputs_only=true|false, retention_period=<bytes>): {error}"
        ))
    })?;
    let inputs_only = query.inputs_only.unwrap_or(false);
    let (id, model) = model(&state, &tenant_id, inputs_only, query.retention_period).await?;
    Ok(Json(json!({
        "id": id,
        "size": model.size,
        "inputs": model.inputs,
    })))
}

/// `GET /v1/tenant/{tenant_id}/synthetic_size`: the size with how each
/// segment is paid for.
pub async fn synthetic_size(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, model) = model(&state, &tenant_id, false, None).await?;
    Ok(Json(json!({
        "id": id,
        "size": model.size.unwrap_or(0),
        "segment_sizes": model.segment_sizes,
        "inputs": model.inputs,
    })))
}
