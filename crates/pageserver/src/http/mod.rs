//! The management API (`openapi.yml`, served at `GET /v1/openapi.yml`).
//!
//! One file per resource: `status` (health, spec, metrics), `tenant`,
//! `timeline` (with the `branch_name` extension, unique per tenant: see
//! `tenant::CreateTimelineError::NameTaken`), `endpoints` (endpoints the
//! CLI registers), `layer` (the layer map), `console` (the web console's embedded assets), `time`
//! (LSN ↔ timestamp), `diff` (what changed between two LSNs), `size` (the tenant size model), `mobility` (attach, detach,
//! location_config), and `eviction` (one run of disk-usage eviction).
//! Every error, including axum's own rejections, unknown routes and wrong
//! methods, is a `{"msg": ...}` body.

mod auth;
mod console;
mod diff;
mod endpoints;
pub mod error;
mod eviction;
pub mod extract;
mod layer;
mod mobility;
mod size;
mod status;
mod tenant;
mod time;
mod timeline;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::metrics::Metrics;
use crate::tenant_manager::TenantManager;
use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The tenants.
    pub manager: Arc<TenantManager>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// JWT keys and whether the API requires a token.
    pub security: crate::security::Security,
    /// Corrupt reads the page service ran into.
    pub corruption: Arc<page_service::corruption::CorruptionLog>,
}

/// The API's routes. Trailing slashes are normalised away by the caller
/// (`server::serve_http`), so each path is registered once, without one.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status::status))
        .route("/v1/openapi.yml", get(status::openapi_spec))
        .route("/metrics", get(status::metrics))
        .route("/v1/reload_auth_validation_keys", post(auth::reload_keys))
        .route("/v1/tenant", get(tenant::list).post(tenant::create))
        .route("/v1/tenant/config", put(tenant::update_config))
        .route(
            "/v1/tenant/{tenant_id}",
            get(tenant::get).delete(tenant::delete),
        )
        .route("/v1/tenant/{tenant_id}/config", get(tenant::get_config))
        .route("/v1/tenant/{tenant_id}/size", get(size::size))
        .route(
            "/v1/tenant/{tenant_id}/synthetic_size",
            get(size::synthetic_size),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline",
            get(timeline::list).post(timeline::create),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}",
            get(timeline::get).delete(timeline::delete),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/get_lsn_by_timestamp",
            get(time::lsn_by_timestamp),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/get_timestamp_of_lsn",
            get(time::timestamp_of_lsn),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/diff",
            get(diff::diff),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/layer",
            get(layer::layer_map),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/do_gc",
            put(timeline::do_gc),
        )
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/wal_source",
            put(timeline::attach_wal_source).delete(timeline::detach_wal_source),
        )
        .route("/v1/tenant/{tenant_id}/endpoint", get(endpoints::list))
        .route(
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/endpoint/{endpoint_name}",
            put(endpoints::register).delete(endpoints::unregister),
        )
        .merge(mobility::routes())
        .merge(eviction::routes())
        .merge(console::routes())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// A panicking handler is a bug; the client still gets a spec-shaped body.
fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("internal error: the request handler panicked").into_response()
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    // The route template, not the raw path: ids would explode cardinality.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .http_request_seconds
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .http_requests
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Answers with the status and a JSON body.
pub(crate) fn json_response<T: serde::Serialize>(
    status: axum::http::StatusCode,
    body: T,
) -> Response {
    (status, axum::Json(body)).into_response()
}
