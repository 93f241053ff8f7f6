//! The API's error type: a status code and a `{"msg": ...}` body, the shape
//! every error response of the spec has. Library errors convert into it here,
//! in one place, so each status code decision is visible side by side.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::tenant::{CreateTimelineError, DeleteTimelineError, GcError};
use crate::tenant_manager::TenantError;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub msg: String,
}

impl ApiError {
    /// Any status with a message.
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
        }
    }

    /// 400.
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    }

    /// 404.
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, msg)
    }

    /// 409.
    pub fn conflict(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, msg)
    }

    /// 500, logged: it means something on our side failed.
    pub fn internal(msg: impl Into<String>) -> ApiError {
        let msg = msg.into();
        tracing::error!(%msg, "internal error answering a request");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
    }

    /// For endpoints of the spec this pageserver does not offer yet: 400
    /// with a message naming what is missing. (501 would be the textbook
    /// code, but the spec promises no 5xx for a well-behaved server, and
    /// Neon answers `attach` without remote storage with 400 as well.)
    pub fn not_implemented(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    }

    /// 503.
    pub fn unavailable(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "msg": self.msg }))).into_response()
    }
}

impl From<TenantError> for ApiError {
    fn from(error: TenantError) -> ApiError {
        let msg = error.to_string();
        match error {
            TenantError::NotFound(_) | TenantError::NotInRemote(_) => ApiError::not_found(msg),
            TenantError::AlreadyExists(_) | TenantError::Deleting(_) => ApiError::conflict(msg),
            TenantError::Broken { .. } | TenantError::ShuttingDown => ApiError::unavailable(msg),
            TenantError::Io(_) => ApiError::internal(msg),
            TenantError::BadRequest(_) => ApiError::bad_request(msg),
            TenantError::Conflict(_) => ApiError::conflict(msg),
            TenantError::Remote(_) => ApiError::unavailable(msg),
        }
    }
}

impl From<CreateTimelineError> for ApiError {
    fn from(error: CreateTimelineError) -> ApiError {
        let msg = error.to_string();
        match error {
            CreateTimelineError::InvalidRequest(_) => ApiError::bad_request(msg),
            CreateTimelineError::Conflict(_)
            | CreateTimelineError::AlreadyCreating(_)
            | CreateTimelineError::NameTaken { .. }
            | CreateTimelineError::Renaming { .. } => ApiError::conflict(msg),
            CreateTimelineError::AncestorNotFound(_) => ApiError::not_found(msg),
            // The spec's "permanently unsatisfiable request, don't retry".
            CreateTimelineError::AncestorLsn(_) => ApiError::new(StatusCode::NOT_ACCEPTABLE, msg),
            CreateTimelineError::AncestorNotActive(_)
            | CreateTimelineError::TenantNotActive(_)
            | CreateTimelineError::ShuttingDown => ApiError::unavailable(msg),
            CreateTimelineError::Storage(storage::RepositoryError::ShuttingDown) => {
                ApiError::unavailable(msg)
            }
            CreateTimelineError::Bootstrap(_) | CreateTimelineError::Storage(_) => {
                ApiError::internal(msg)
            }
        }
    }
}

impl From<DeleteTimelineError> for ApiError {
    fn from(error: DeleteTimelineError) -> ApiError {
        let msg = error.to_string();
        match error {
            DeleteTimelineError::NotFound(_) => ApiError::not_found(msg),
            DeleteTimelineError::HasChildren { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, msg)
            }
            DeleteTimelineError::InProgress(_) => ApiError::conflict(msg),
            DeleteTimelineError::Storage(storage::RepositoryError::ShuttingDown) => {
                ApiError::unavailable(msg)
            }
            DeleteTimelineError::Storage(_) => ApiError::internal(msg),
        }
    }
}

impl From<crate::wal_source::WalSourceError> for ApiError {
    fn from(error: crate::wal_source::WalSourceError) -> ApiError {
        use crate::wal_source::WalSourceError;
        match &error {
            WalSourceError::BadSource(_) => ApiError::bad_request(error.to_string()),
            WalSourceError::Conflict { .. } => ApiError::conflict(error.to_string()),
            WalSourceError::NotActive(_) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, error.to_string())
            }
            WalSourceError::Io { .. } => ApiError::internal(error.to_string()),
        }
    }
}

impl From<GcError> for ApiError {
    fn from(error: GcError) -> ApiError {
        use storage::{RepositoryError, WriteError};
        let msg = error.to_string();
        match &error {
            GcError::NotFound(_) | GcError::Storage(RepositoryError::TimelineNotFound(_)) => {
                ApiError::not_found(msg)
            }
            // The tenant's own retention setting does not parse: the
            // request cannot succeed until the setting is changed.
            GcError::Config(_) => ApiError::bad_request(msg),
            // Another GC run or a write moved the cutoff or head meanwhile.
            GcError::Cutoff(WriteError::GcCutoffOutOfRange { .. }) => ApiError::conflict(msg),
            GcError::Cutoff(WriteError::ShuttingDown)
            | GcError::Storage(RepositoryError::ShuttingDown)
            | GcError::Storage(RepositoryError::Write(WriteError::ShuttingDown)) => {
                ApiError::unavailable(msg)
            }
            GcError::Cutoff(_) | GcError::Storage(_) => ApiError::internal(msg),
        }
    }
}
