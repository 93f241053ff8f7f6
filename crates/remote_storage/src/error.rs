//! The one error type of remote operations. Callers decide on the variant:
//! [`RemoteError::NotFound`] is an answer, [`RemoteError::is_retryable`]
//! errors are retried by [`crate::Remote`], the rest are reported.

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The object does not exist.
    #[error("remote object {0} not found")]
    NotFound(String),
    /// A failure worth retrying: network, 5xx, throttling, timeout.
    #[error("remote operation on {path} failed: {message}")]
    Transient {
        /// The object or prefix.
        path: String,
        /// What the backend said.
        message: String,
    },
    /// A failure retrying will not fix (bad credentials, bad request).
    #[error("remote operation on {path} failed permanently: {message}")]
    Permanent {
        /// The object or prefix.
        path: String,
        /// What the backend said.
        message: String,
    },
    /// An attempt took longer than the per-attempt timeout.
    #[error("remote operation on {0} timed out")]
    Timeout(String),
    /// The object was read but is not what was written (size or checksum).
    #[error("remote object {path} is corrupt: {reason}")]
    Corrupt {
        /// The object.
        path: String,
        /// What does not match.
        reason: String,
    },
    /// A path that cannot name an object.
    #[error("invalid remote path {0:?}")]
    InvalidPath(String),
    /// The operation was cancelled (shutdown, detach).
    #[error("remote operation cancelled: shutting down")]
    Cancelled,
}

impl RemoteError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RemoteError::Transient { .. } | RemoteError::Timeout(_) | RemoteError::Corrupt { .. }
        )
    }

    /// Maps an `object_store` error for the object or prefix `path`.
    pub(crate) fn from_object_store(path: &str, error: object_store::Error) -> RemoteError {
        use object_store::Error as E;
        match error {
            E::NotFound { .. } => RemoteError::NotFound(path.to_owned()),
            E::InvalidPath { .. } => RemoteError::InvalidPath(path.to_owned()),
            E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::NotSupported { .. }
            | E::NotImplemented => RemoteError::Permanent {
                path: path.to_owned(),
                message: error.to_string(),
            },
            other => RemoteError::Transient {
                path: path.to_owned(),
                message: other.to_string(),
            },
        }
    }
}
