//! The web console: a read-only page over this API, served at `/console`
//! (and `/console/...`) from assets compiled into the binary, so it works
//! offline and needs no build step. The HTML shell, script and stylesheet
//! are public; the script fetches the JSON API, which enforces auth as for
//! any client (a token passed as `?token=` is kept in the browser's
//! sessionStorage and sent as a bearer token). What it shows is described
//! in `docs/console.md`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// Whether a path belongs to the console's public assets.
pub(crate) fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// The console's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(stylesheet))
        // Any other path under /console is a page of the single-page app.
        .route("/console/{*page}", get(index))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets change with the binary; don't let a browser keep
            // an old script after an upgrade.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                // No inline script, no third-party anything.
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
                ),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

async fn script() -> Response {
    asset(CONSOLE_JS, "text/javascript; charset=utf-8")
}

async fn stylesheet() -> Response {
    asset(CONSOLE_CSS, "text/css; charset=utf-8")
}
