//! Endpoints of the spec that belong to features not built yet (size
//! model, eviction, auth). They validate ids and existence like the real ones would, then
//! answer 400 with a message saying what is missing, so a client sees a
//! clear reason instead of a router 404.

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::Router;

use super::error::ApiError;
use super::extract::{parse_tenant_id, ApiPath};
use super::AppState;

/// Routes answered by this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/disk_usage_eviction/run", put(disk_usage_eviction))
        .route("/v1/reload_auth_validation_keys", post(reload_auth_keys))
        .route("/v1/tenant/{tenant_id}/synthetic_size", get(synthetic_size))
        .route("/v1/tenant/{tenant_id}/size", get(size))
}

async fn disk_usage_eviction() -> ApiError {
    ApiError::not_implemented(
        "disk-usage eviction is not implemented: layers are never evicted yet",
    )
}

async fn reload_auth_keys() -> ApiError {
    ApiError::not_implemented("authentication is not enabled on this pageserver")
}

/// Parses the tenant id and requires the tenant to exist.
fn existing_tenant(state: &AppState, tenant_id: &str) -> Result<(), ApiError> {
    state.manager.get(parse_tenant_id(tenant_id)?)?;
    Ok(())
}

async fn synthetic_size(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<(), ApiError> {
    existing_tenant(&state, &tenant_id)?;
    Err(ApiError::not_implemented(
        "the synthetic size model is not implemented yet",
    ))
}

async fn size(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<(), ApiError> {
    existing_tenant(&state, &tenant_id)?;
    Err(ApiError::not_implemented(
        "the tenant size model is not implemented yet",
    ))
}
