//! Endpoint registrations (an extension; see [`crate::tenant::endpoints`]):
//! `PUT`/`DELETE .../timeline/{timeline_id}/endpoint/{endpoint_name}` and
//! `GET /v1/tenant/{tenant_id}/endpoint`.

use axum::extract::State;
use axum::Json;
use postgres_wal::Lsn;

use super::error::ApiError;
use super::extract::{parse_tenant_id, parse_timeline_id, ApiPath, JsonBody};
use super::AppState;
use crate::tenant::endpoints::{validate_name, EndpointRecord};
use api_types::{EndpointInfo, EndpointRegistration};

/// `GET /v1/tenant/{tenant_id}/endpoint`: every registration, by name.
pub async fn list(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Json<Vec<EndpointInfo>>, ApiError> {
    let tenant = state.manager.get(parse_tenant_id(&tenant_id)?)?;
    let id = tenant.id();
    Ok(Json(
        tenant
            .endpoints()
            .list()
            .iter()
            .map(|(name, record)| record.info(id, name))
            .collect(),
    ))
}

/// `PUT .../endpoint/{endpoint_name}`: registers the endpoint (replacing an
/// earlier registration of that name, on whichever timeline).
pub async fn register(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id, name)): ApiPath<(String, String, String)>,
    JsonBody(body): JsonBody<EndpointRegistration>,
) -> Result<Json<EndpointInfo>, ApiError> {
    let tenant_id = parse_tenant_id(&tenant_id)?;
    let timeline_id = parse_timeline_id(&timeline_id)?;
    validate_name(&name).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let lsn: Lsn = body
        .lsn
        .parse()
        .map_err(|error| ApiError::bad_request(format!("lsn: {error}")))?;
    if body.port == 0 {
        return Err(ApiError::bad_request("port must be 1 to 65535"));
    }
    if body.pid == Some(0) {
        return Err(ApiError::bad_request("pid must be positive"));
    }
    let tenant = state.manager.get_active(tenant_id)?;
    if tenant.timeline(timeline_id).is_none() {
        return Err(ApiError::not_found(format!(
            "timeline {timeline_id} not found"
        )));
    }
    let record = EndpointRecord {
        timeline_id,
        mode: body.mode,
        lsn,
        port: body.port,
        pid: body.pid,
    };
    let info = record.info(tenant_id, &name);
    let work = tokio::task::spawn_blocking(move || tenant.endpoints().register(&name, record));
    work.await
        .map_err(|error| ApiError::internal(format!("registration task failed: {error}")))?
        .map_err(|error| {
            ApiError::internal(format!("cannot save the endpoint registration: {error}"))
        })?;
    Ok(Json(info))
}

/// `DELETE .../endpoint/{endpoint_name}`: forgets the endpoint; 200 `{}`
/// also when it was not registered (stopping twice is not an error).
pub async fn unregister(
    State(state): State<AppState>,
    ApiPath((tenant_id, timeline_id, name)): ApiPath<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant_id = parse_tenant_id(&tenant_id)?;
    let timeline_id = parse_timeline_id(&timeline_id)?;
    validate_name(&name).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let tenant = state.manager.get_active(tenant_id)?;
    if tenant.timeline(timeline_id).is_none() {
        return Err(ApiError::not_found(format!(
            "timeline {timeline_id} not found"
        )));
    }
    let work =
        tokio::task::spawn_blocking(move || tenant.endpoints().unregister(&name, timeline_id));
    work.await
        .map_err(|error| ApiError::internal(format!("registration task failed: {error}")))?
        .map_err(|error| {
            ApiError::internal(format!("cannot remove the endpoint registration: {error}"))
        })?;
    Ok(Json(serde_json::json!({})))
}
