//! Health, the API description, and metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// The OpenAPI description of this API, embedded at build time.
pub const OPENAPI_SPEC: &str = include_str!("../../openapi.yml");

/// `GET /v1/status`: `{"id": <node id>}`.
pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": state.manager.conf().id }))
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
