//! Why a WAL record could not be ingested.
//!
//! The distinction that matters to the caller: [`IngestError::Unsupported`]
//! and [`IngestError::Malformed`] are properties of the WAL (retrying the same
//! record fails the same way, so the timeline must be marked broken), while
//! [`IngestError::Storage`] and [`IngestError::Read`] come from the store.

use postgres_wal::Lsn;
use storage::{GetError, Key, WriteError};

/// Failure to ingest one record. Nothing of the record is stored when this is
/// returned, and the ingest caches are dropped, so feeding the record again
/// (after fixing the cause) is safe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The record changes a page in a way only redo can reproduce, for a
    /// resource manager we have no native redo for, and it carries no image
    /// of the result (the endpoint ran without `wal_consistency_checking`
    /// for that manager).
    #[error("record at {lsn} cannot be ingested: {reason}")]
    Unsupported { lsn: Lsn, reason: String },
    /// The record's bytes do not decode, or its body contradicts itself.
    #[error("record at {lsn} is malformed: {reason}")]
    Malformed { lsn: Lsn, reason: String },
    /// A value ingest keeps (directory, size, checkpoint) is stored in a form
    /// it cannot parse.
    #[error("stored value {key} at {lsn} is malformed: {reason}")]
    BadStoredValue { key: Key, lsn: Lsn, reason: String },
    /// The timeline holds no checkpoint state: it was never bootstrapped or
    /// imported.
    #[error("timeline has neither a checkpoint nor a control file at {lsn}")]
    NotBootstrapped { lsn: Lsn },
    /// Writing the derived values failed.
    #[error("storing the record's values: {0}")]
    Storage(#[from] WriteError),
    /// Reading the state a record builds on failed.
    #[error("reading ingest state: {0}")]
    Read(#[from] GetError),
}

impl IngestError {
    /// Whether the error is a property of the WAL itself (the timeline should
    /// be marked broken), as opposed to a storage failure.
    pub fn is_wal_problem(&self) -> bool {
        matches!(
            self,
            IngestError::Unsupported { .. } | IngestError::Malformed { .. }
        )
    }
}
