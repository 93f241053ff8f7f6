//! The API token: every request that changes something (any method but GET and HEAD —
//! config, switchover, membership, node-down, and peers' `POST /raft` batches) must carry
//! `Authorization: Bearer <api-token>`; reads stay open, as the spec defines no security
//! scheme (the deviation is documented in the README). Also the header the daemon's own
//! HTTP client sends to its peers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

/// The configured token (compared in constant time).
#[derive(Clone)]
pub struct ApiToken(Arc<[u8]>);

impl ApiToken {
    pub fn new(token: &str) -> ApiToken {
        ApiToken(token.as_bytes().into())
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(given) = authorization
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .map(<[u8]>::trim_ascii)
        else {
            return false;
        };
        // Constant time, so the token cannot be guessed byte by byte from response times.
        bool::from(given.ct_eq(&self.0))
    }

    /// Default headers for the daemon's client to its peers (marked sensitive, so they
    /// are never logged).
    pub fn client_headers(&self) -> Result<HeaderMap, header::InvalidHeaderValue> {
        let mut value = HeaderValue::from_bytes(&[b"Bearer ".as_slice(), &self.0[..]].concat())?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        Ok(headers)
    }
}

/// Middleware: 401 (`{"msg": ...}`, `WWW-Authenticate: Bearer`) for a mutating request
/// without the token.
pub async fn require_token(State(token): State<ApiToken>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    if token.accepts(req.headers().get(header::AUTHORIZATION)) {
        return next.run(req).await;
    }
    let msg = if req.headers().contains_key(header::AUTHORIZATION) {
        "invalid API token"
    } else {
        "this request needs `Authorization: Bearer <api-token>`"
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "msg": msg })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let t = ApiToken::new("0123456789abcdef");
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(t.accepts(Some(&h("Bearer 0123456789abcdef"))));
        assert!(!t.accepts(None));
        assert!(!t.accepts(Some(&h("0123456789abcdef"))));
        assert!(!t.accepts(Some(&h("Basic 0123456789abcdef"))));
        assert!(!t.accepts(Some(&h("Bearer 0123456789abcdeg"))));
        assert!(!t.accepts(Some(&h("Bearer 0123456789abcde"))));
        assert!(!t.accepts(Some(&h("Bearer 0123456789abcdef0"))));
        assert!(!t.accepts(Some(&h("Bearer "))));
        let headers = t.client_headers().unwrap();
        assert!(t.accepts(headers.get(header::AUTHORIZATION)));
        assert!(headers[header::AUTHORIZATION].is_sensitive());
    }
}
