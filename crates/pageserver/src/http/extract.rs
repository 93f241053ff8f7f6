//! Request extractors whose failures are spec-shaped errors.
//!
//! Axum's own `Json`, `Path` and `Query` reject with plain-text bodies and
//! statuses such as 415 or 422; the spec promises `{"msg"}` bodies and 400
//! for malformed requests, so these wrappers translate every rejection.
//! The JSON extractor also ignores `Content-Type`: a body is parsed as JSON
//! whatever the client labelled it, which is what `curl -d` users expect.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::ids::{TenantId, TimelineId};

/// A JSON request body that must be present.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A JSON request body that may be absent (empty body means `None`).
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))
}

/// Parses a body; the message names the field that did not fit (`port:
/// invalid value: integer 70000, expected u16`), not only its column.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("malformed request body: {inner}"))
        } else {
            ApiError::bad_request(format!("malformed request body: {path}: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::bad_request(format!("malformed request body: {error}")))?;
    Ok(value)
}

pub use api_types::present;

/// The same for handlers that take a body apart as a JSON object: the
/// field's value unless it is `null`.
pub fn take_field(
    fields: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    match fields.remove(name) {
        Some(serde_json::Value::Null) => Err(ApiError::bad_request(format!(
            "{name} must not be null; omit it instead"
        ))),
        value => Ok(value),
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("request body is required"));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        parse_json(&bytes).map(|value| OptionalJsonBody(Some(value)))
    }
}

/// Path parameters, rejected with 400 and a `{"msg"}` body.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Query parameters, rejected with 400 and a `{"msg"}` body.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Parses a tenant id from a path segment or body field (400 when malformed).
pub fn parse_tenant_id(text: &str) -> Result<TenantId, ApiError> {
    crate::ids::parse_tenant_id(text).map_err(|error| ApiError::bad_request(error.to_string()))
}

/// Parses a timeline id from a path segment or body field (400 when malformed).
pub fn parse_timeline_id(text: &str) -> Result<TimelineId, ApiError> {
    crate::ids::parse_timeline_id(text).map_err(|error| ApiError::bad_request(error.to_string()))
}
