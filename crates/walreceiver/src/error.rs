//! Error types of the receiver and of the sink it feeds.

use postgres_wal::Lsn;

use crate::store::StoreError;

/// Why connecting to, or streaming from, the WAL source failed (or why the
/// receiver stopped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// The connection string could not be understood.
    #[error("invalid connection string: {0}")]
    ConnectionString(String),
    /// Could not open a connection.
    #[error("could not connect to the WAL source at {address}: {source}")]
    Connect {
        /// `host:port` or the socket path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading or writing an established connection failed.
    #[error("connection to the WAL source at {address} failed: {source}")]
    Io {
        /// `host:port` or the socket path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server closed the connection.
    #[error("the WAL source at {address} closed the connection")]
    Closed {
        /// `host:port` or the socket path.
        address: String,
    },
    /// No answer in time.
    #[error("the WAL source at {address} did not answer in time ({what})")]
    Timeout {
        /// `host:port` or the socket path.
        address: String,
        /// What we were waiting for.
        what: &'static str,
    },
    /// The server sent something that does not follow the protocol.
    #[error("protocol error from the WAL source at {address}: {reason}")]
    Protocol {
        /// `host:port` or the socket path.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// Authentication failed or needs something we do not support.
    #[error("authentication with the WAL source at {address} failed: {reason}")]
    Authentication {
        /// `host:port` or the socket path.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error.
    #[error("the WAL source at {address} reported {severity} {code}: {message}")]
    Server {
        /// `host:port` or the socket path.
        address: String,
        /// ERROR, FATAL, …
        severity: String,
        /// SQLSTATE.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server is not PostgreSQL 15.
    #[error("WAL source at {address} is PostgreSQL {version}, this pageserver needs 15")]
    VersionMismatch {
        /// `host:port` or the socket path.
        address: String,
        /// The server's `server_version`.
        version: String,
    },
    /// The server belongs to another cluster than the timeline.
    #[error(
        "WAL source at {address} has system id {actual}, this timeline belongs to system id {expected}"
    )]
    SystemIdMismatch {
        /// `host:port` or the socket path.
        address: String,
        /// The system id the timeline was created from.
        expected: u64,
        /// What `IDENTIFY_SYSTEM` said.
        actual: u64,
    },
    /// The server sent WAL that does not continue where the last message ended.
    #[error("WAL source at {address} sent WAL at {got}, expected {expected}")]
    Discontinuity {
        /// `host:port` or the socket path.
        address: String,
        /// Where the next byte was expected.
        expected: Lsn,
        /// Where the message started.
        got: Lsn,
    },
    /// The local WAL store failed; the receiver stops.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The consumer failed; the receiver stops.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl ReceiverError {
    /// Whether the receiver should stop (rather than reconnect) after this.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Sink(_))
    }
}

/// Why a [`crate::WalSink`] could not consume WAL. Stops the receiver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Consuming failed; the receiver stops and shows this in its status.
    #[error("WAL consumer failed: {0}")]
    Failed(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The consumer is shutting down; the receiver stops without an error.
    #[error("WAL consumer is shutting down")]
    ShuttingDown,
}

impl SinkError {
    /// Wraps any error (or a `String`/`&str` message) as [`SinkError::Failed`].
    pub fn failed(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Failed(error.into())
    }
}

impl From<String> for SinkError {
    /// A message as [`SinkError::Failed`].
    fn from(message: String) -> Self {
        Self::failed(message)
    }
}

impl From<&str> for SinkError {
    /// A message as [`SinkError::Failed`].
    fn from(message: &str) -> Self {
        Self::failed(message)
    }
}
