//! Tenant mobility endpoints: `attach`, `detach`, `ignore`, `load`,
//! `location_config`. The work is in `tenant_manager::mobility`; this file parses
//! requests and maps outcomes to the spec's status codes.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{parse_tenant_id, ApiPath, ApiQuery, OptionalJsonBody};
use super::{json_response, AppState};
use crate::tenant::upload::FINAL_UPLOAD_TIMEOUT;
use crate::tenant_config::TenantConfig;
use crate::tenant_manager::mobility::LocationMode;

/// Routes answered by this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenant/{tenant_id}/attach", post(attach))
        .route("/v1/tenant/{tenant_id}/detach", post(detach))
        .route("/v1/tenant/{tenant_id}/ignore", post(ignore))
        .route("/v1/tenant/{tenant_id}/load", post(load))
        .route(
            "/v1/tenant/{tenant_id}/location_config",
            put(location_config),
        )
}

fn empty(status: StatusCode) -> Response {
    json_response(status, Value::Object(Map::new()))
}

fn take_generation(fields: &mut Map<String, Value>) -> Result<Option<u32>, ApiError> {
    match super::extract::take_field(fields, "generation")? {
        None => Ok(None),
        Some(value) => serde_json::from_value::<u32>(value.clone())
            .map(Some)
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "generation must be a 32-bit unsigned integer, got {value}"
                ))
            }),
    }
}

fn parse_config(value: Option<Value>) -> Result<Option<TenantConfig>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => TenantConfig::from_json(value)
            .map(Some)
            .map_err(|error| ApiError::bad_request(format!("invalid tenant config: {error}"))),
    }
}

fn object(body: Option<Value>) -> Result<Map<String, Value>, ApiError> {
    match body {
        None => Ok(Map::new()),
        Some(Value::Object(fields)) => Ok(fields),
        Some(_) => Err(ApiError::bad_request("request body must be a JSON object")),
    }
}

/// `POST /v1/tenant/{id}/attach` → 202; poll `attachment_status`.
async fn attach(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    let has_body = body.is_some();
    let mut fields = object(body)?;
    let generation = take_generation(&mut fields)?;
    // The body is optional, but a body must carry `config` (the schema
    // requires it); without a body the pageserver's defaults apply.
    let config = match (has_body, super::extract::take_field(&mut fields, "config")?) {
        (true, None) => {
            return Err(ApiError::bad_request(
                "config is required in an attach body",
            ))
        }
        (_, config) => parse_config(config)?.unwrap_or_default(),
    };
    // Other top-level fields are tolerated, as the spec's schema allows
    // them; the config itself rejects unknown settings (its schema says so).
    state.manager.attach(id, generation, config, false).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

#[derive(Debug, Deserialize)]
struct DetachQuery {
    #[serde(default)]
    detach_ignored: bool,
}

/// `POST /v1/tenant/{id}/detach[?detach_ignored=true]` → 200.
async fn detach(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DetachQuery>,
) -> Result<Response, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    state
        .manager
        .detach(id, query.detach_ignored, FINAL_UPLOAD_TIMEOUT)
        .await?;
    Ok(empty(StatusCode::OK))
}

/// `POST /v1/tenant/{id}/ignore` → 200.
async fn ignore(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    state.manager.ignore(id).await?;
    Ok(empty(StatusCode::OK))
}

/// `POST /v1/tenant/{id}/load` → 202.
async fn load(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    let mut fields = object(body)?;
    let generation = take_generation(&mut fields)?;
    state.manager.load_tenant(id, generation)?;
    Ok(empty(StatusCode::ACCEPTED))
}

#[derive(Debug, Deserialize)]
struct FlushQuery {
    flush_ms: Option<u64>,
}

/// `PUT /v1/tenant/{id}/location_config[?flush_ms=N]` → 200.
async fn location_config(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<FlushQuery>,
    OptionalJsonBody(body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let id = parse_tenant_id(&tenant_id)?;
    let mut fields = object(body)?;
    let body_id = match fields.remove("tenant_id") {
        Some(Value::String(body_id)) => body_id,
        _ => return Err(ApiError::bad_request("tenant_id (a string) is required")),
    };
    if parse_tenant_id(&body_id)? != id {
        // Both ids are well-formed, so the request is not malformed; it
        // names two tenants at once (docs/api-deviations.md).
        return Err(ApiError::conflict(
            "tenant_id in the body differs from the one in the path",
        ));
    }
    let mode: LocationMode = match fields.remove("mode") {
        Some(Value::String(text)) => text.parse()?,
        None | Some(Value::Null) => return Err(ApiError::bad_request(
            "mode is required: AttachedSingle, AttachedMulti, AttachedStale, Secondary or Detached",
        )),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode must be a string, got {other}"
            )))
        }
    };
    let generation = take_generation(&mut fields)?;
    let config = parse_config(super::extract::take_field(&mut fields, "tenant_conf")?)?;
    // Only checked (nothing here acts on it): a schema-violating value
    // must still be refused.
    let secondary_ok = match super::extract::take_field(&mut fields, "secondary_conf")? {
        None => true,
        Some(Value::Object(conf)) => conf.get("warm").is_none_or(Value::is_boolean),
        Some(_) => false,
    };
    if !secondary_ok {
        return Err(ApiError::bad_request(
            "secondary_conf must be an object whose warm is a boolean",
        ));
    }
    let flush = query.flush_ms.map(Duration::from_millis);
    state
        .manager
        .location_config(id, mode, generation, config, flush)
        .await?;
    Ok(empty(StatusCode::OK))
}
