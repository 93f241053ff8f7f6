//! Endpoints of the spec that belong to features not built yet (remote
//! storage attachment, size model, eviction). They validate ids and existence like the real ones would, then
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
        .route("/v1/tenant/{tenant_id}/attach", post(attach))
        .route(
            "/v1/tenant/{tenant_id}/location_config",
            put(location_config),
        )
        .route("/v1/tenant/{tenant_id}/detach", post(detach))
        .route("/v1/tenant/{tenant_id}/ignore", post(ignore))
        .route("/v1/tenant/{tenant_id}/load", post(load))
        .route("/v1/tenant/{tenant_id}/synthetic_size", get(synthetic_size))
        .route("/v1/tenant/{tenant_id}/size", get(size))
}

async fn disk_usage_eviction() -> ApiError {
    ApiError::not_implemented(
        "disk-usage eviction is not implemented: layers are never evicted yet",
    )
}

/// Parses the tenant id and requires the tenant to exist.
fn existing_tenant(state: &AppState, tenant_id: &str) -> Result<(), ApiError> {
    state.manager.get(parse_tenant_id(tenant_id)?)?;
    Ok(())
}

async fn attach(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<(), ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    if state.manager.get(id).is_ok() {
        return Err(ApiError::conflict(format!(
            "tenant {id} is already attached to this pageserver"
        )));
    }
    Err(ApiError::not_implemented(
        "attach is not available: this pageserver has no remote storage to attach from",
    ))
}

async fn location_config(ApiPath(tenant_id): ApiPath<String>) -> Result<(), ApiError> {
    parse_tenant_id(&tenant_id)?;
    Err(ApiError::not_implemented(
        "location_config is not available: it needs remote storage and generations",
    ))
}

async fn detach(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<(), ApiError> {
    existing_tenant(&state, &tenant_id)?;
    Err(ApiError::not_implemented(
        "detach is not available without remote storage (it would destroy the only copy); use DELETE /v1/tenant/{tenant_id}",
    ))
}

async fn ignore(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<(), ApiError> {
    existing_tenant(&state, &tenant_id)?;
    Err(ApiError::not_implemented("ignore is not implemented yet"))
}

async fn load(ApiPath(tenant_id): ApiPath<String>) -> Result<(), ApiError> {
    parse_tenant_id(&tenant_id)?;
    Err(ApiError::not_implemented(
        "load is not implemented yet: every tenant on disk is loaded at startup",
    ))
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
