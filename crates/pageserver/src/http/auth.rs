//! JWT enforcement on the management API and the key-reload endpoint.
//!
//! Which token an operation needs follows from its path: everything under
//! `/v1/tenant/{tenant_id}` is that tenant's (a `tenant` token for it, or a
//! `pageserverapi` one); everything else except the public operations needs
//! `pageserverapi`. Public, as the spec marks with `security: []` (plus the
//! spec and the metrics, which reveal no tenant data): `/v1/status`,
//! `/v1/disk_usage_eviction/run`, `/v1/openapi.yml`, `/metrics`, and the
//! web console's static assets under `/console` (no data).
//! No or invalid token → 401, valid but not allowed → 403.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Paths anyone may call.
const PUBLIC_PATHS: [&str; 4] = [
    "/v1/status",
    "/v1/disk_usage_eviction/run",
    "/v1/openapi.yml",
    "/metrics",
];

/// The tenant a path belongs to, if it is under `/v1/tenant/{tenant_id}`
/// (`/v1/tenant/config` is the tenant-less settings update).
fn path_tenant(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/tenant/")?;
    let tenant = rest.split('/').next()?;
    (!tenant.is_empty() && tenant != "config").then_some(tenant)
}

/// Middleware: refuses requests whose token does not allow them.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(jwt) = state
        .security
        .jwt
        .as_ref()
        .filter(|_| state.security.http_auth)
    else {
        return next.run(request).await;
    };
    let path = request.uri().path().trim_end_matches('/');
    // The console's HTML and script are public; the data it shows comes
    // from API calls that carry the token like any other client's.
    if PUBLIC_PATHS.contains(&path) || super::console::is_console_path(path) {
        return next.run(request).await;
    }
    let header_value = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let verdict = jwt
        .decode_bearer(header_value)
        .and_then(|claims| claims.check_tenant(path_tenant(path)));
    match verdict {
        Ok(()) => next.run(request).await,
        Err(error) if error.is_forbidden() => {
            ApiError::new(StatusCode::FORBIDDEN, error.to_string()).into_response()
        }
        Err(error) => {
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, error.to_string()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// `POST /v1/reload_auth_validation_keys`: re-reads the public keys; 500
/// when none are configured or none are found (the old keys stay in force).
pub(crate) async fn reload_keys(State(state): State<AppState>) -> Result<(), ApiError> {
    let jwt = state.security.jwt.as_ref().ok_or_else(|| {
        ApiError::internal("no auth_validation_public_key_path is configured: nothing to reload")
    })?;
    let jwt = jwt.clone();
    let count = tokio::task::spawn_blocking(move || jwt.reload())
        .await
        .map_err(|error| ApiError::internal(format!("key reload failed: {error}")))?
        .map_err(|error| ApiError::internal(format!("key reload failed: {error}")))?;
    tracing::info!(count, "reloaded JWT validation keys");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::path_tenant;

    #[test]
    fn tenant_paths() {
        assert_eq!(path_tenant("/v1/tenant/abc"), Some("abc"));
        assert_eq!(path_tenant("/v1/tenant/abc/timeline/x"), Some("abc"));
        assert_eq!(path_tenant("/v1/tenant/config"), None);
        assert_eq!(path_tenant("/v1/tenant"), None);
        assert_eq!(path_tenant("/v1/tenant/"), None);
        assert_eq!(path_tenant("/v1/status"), None);
    }
}
