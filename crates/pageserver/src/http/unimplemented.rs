//! Endpoints of the spec that belong to features not built yet (eviction).
//! They answer 400 with a message saying what is missing, so a client sees a
//! clear reason instead of a router 404.

use axum::routing::put;
use axum::Router;

use super::error::ApiError;
use super::AppState;

/// Routes answered by this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/disk_usage_eviction/run", put(disk_usage_eviction))
}

async fn disk_usage_eviction() -> ApiError {
    ApiError::not_implemented(
        "disk-usage eviction is not implemented: layers are never evicted yet",
    )
}
