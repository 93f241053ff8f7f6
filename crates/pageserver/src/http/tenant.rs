//! Tenant endpoints: create, list, get, delete, and tenant settings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{parse_tenant_id, ApiPath, JsonBody, OptionalJsonBody};
use super::{json_response, AppState};
use crate::tenant_config::TenantConfig;
use crate::tenant_manager::{TenantInfo, TenantManager};

/// `GET /v1/tenant`.
pub async fn list(State(state): State<AppState>) -> Json<Vec<TenantInfo>> {
    let tenants = state.manager.list();
    Json(
        tenants
            .iter()
            .map(|t| TenantManager::tenant_info(t))
            .collect(),
    )
}

/// `POST /v1/tenant`: 201 with the new id as a JSON string. Without
/// `new_tenant_id` an id is generated (the spec's prose; the served schema
/// does not require the field). The body is the shared
/// [`api_types::TenantCreateRequest`]; its settings are validated by
/// [`TenantConfig::from_json`].
pub async fn create(
    State(state): State<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<api_types::TenantCreateRequest>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    let tenant_id = body
        .new_tenant_id
        .as_deref()
        .map(parse_tenant_id)
        .transpose()?;
    let config = parse_config(body.config)?;
    let tenant = state
        .manager
        .create_tenant(tenant_id, config, body.generation)?;
    Ok(json_response(StatusCode::CREATED, tenant.id().to_string()))
}

fn parse_config(fields: Map<String, Value>) -> Result<TenantConfig, ApiError> {
    TenantConfig::from_json(Value::Object(fields))
        .map_err(|error| ApiError::bad_request(format!("invalid tenant config: {error}")))
}

/// `GET /v1/tenant/{tenant_id}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    let tenant = state.manager.get(parse_tenant_id(&tenant_id)?)?;
    Ok(Json(TenantManager::tenant_info(&tenant)))
}

/// `DELETE /v1/tenant/{tenant_id}`: 202 when deletion starts; then 409
/// while it runs and 404 once it is done (the spec's polling contract).
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    // Deleting under a running writable endpoint would leave its commits
    // waiting forever for a standby that is gone: it must stop first.
    let streaming: Vec<String> = state
        .manager
        .get(id)?
        .timelines()
        .iter()
        .filter(|timeline| timeline.wal_source_connstr().is_some())
        .map(|timeline| timeline.id().to_string())
        .collect();
    if !streaming.is_empty() {
        return Err(ApiError::conflict(format!(
            "tenant {id} has running writable endpoints streaming WAL into timeline(s) {}; stop them first",
            streaming.join(", ")
        )));
    }
    state.manager.start_delete(id)?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        Value::Object(Map::new()),
    ))
}

/// `GET /v1/tenant/{tenant_id}/config`.
pub async fn get_config(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<api_types::TenantConfigResponse>, ApiError> {
    let tenant = state.manager.get(parse_tenant_id(&tenant_id)?)?;
    Ok(Json(api_types::TenantConfigResponse {
        tenant_specific_overrides: config_object(&tenant.config())?,
        effective_config: config_object(&tenant.effective_config())?,
    }))
}

/// A tenant config as the API's JSON object.
fn config_object(config: &TenantConfig) -> Result<api_types::TenantConfig, ApiError> {
    match serde_json::to_value(config) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::internal(format!(
            "tenant config serialised as {other}, not an object"
        ))),
        Err(error) => Err(ApiError::internal(format!(
            "cannot serialise the tenant config: {error}"
        ))),
    }
}

/// `PUT /v1/tenant/config`: replaces a tenant's overrides.
pub async fn update_config(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<api_types::TenantConfigRequest>,
) -> Result<Json<Vec<TenantInfo>>, ApiError> {
    let tenant_id = parse_tenant_id(&body.tenant_id)?;
    let config = parse_config(body.config)?;
    let tenant = state.manager.get_active(tenant_id)?;
    tenant
        .set_config(config)
        .map_err(|error| ApiError::internal(format!("cannot save tenant config: {error}")))?;
    Ok(Json(vec![TenantManager::tenant_info(&tenant)]))
}
