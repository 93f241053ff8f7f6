//! Typed errors of the public API, one enum per kind of operation.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use postgres_wal::Lsn;

use crate::id::TimelineId;
use crate::key::Key;
use crate::redo::RedoError;

/// A layer file failed to open or read. Always names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerFileError {
    /// The file's bytes are not a valid layer (bad checksum, truncated,
    /// inconsistent header); it is never served.
    #[error("layer file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The operating system refused the read.
    #[error("reading layer file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Why a read (`get`, `list_keys`, `get_rel_size`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// History below the GC cutoff may be gone; reads there are refused.
    #[error("timeline {timeline}: LSN {lsn} is below the GC cutoff {gc_cutoff}")]
    BelowGcCutoff {
        timeline: TimelineId,
        lsn: Lsn,
        gc_cutoff: Lsn,
    },
    /// The timeline has not received WAL up to this LSN yet (see `wait_lsn`).
    #[error("timeline {timeline}: LSN {lsn} is ahead of the last record {last_record_lsn}")]
    LsnAhead {
        timeline: TimelineId,
        lsn: Lsn,
        last_record_lsn: Lsn,
    },
    /// The key has no version at or below the LSN.
    #[error("key {key} has no value at LSN {lsn}")]
    KeyNotFound { key: Key, lsn: Lsn },
    /// The redo implementation could not build the value.
    #[error("reconstructing key {key} at LSN {lsn}: {source}")]
    Redo {
        key: Key,
        lsn: Lsn,
        source: RedoError,
    },
    /// A stored value is not what its key requires (e.g. a relation size
    /// that is not 4 bytes).
    #[error("key {key} at LSN {lsn}: {reason}")]
    BadValue { key: Key, lsn: Lsn, reason: String },
    /// A layer file is corrupt or unreadable.
    #[error(transparent)]
    Layer(#[from] LayerFileError),
    /// The repository is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The caller cancelled the read.
    #[error("cancelled")]
    Cancelled,
}

/// Why a write-side operation (put, finish, freeze, flush, image creation,
/// GC cutoff) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Puts must be above the last record LSN; `finish` must not go back.
    #[error(
        "timeline {timeline}: LSN {lsn} does not advance past the last record {last_record_lsn}"
    )]
    LsnNotAdvancing {
        timeline: TimelineId,
        lsn: Lsn,
        last_record_lsn: Lsn,
    },
    /// `finish(lsn)` below a value put in the same batch.
    #[error("timeline {timeline}: batch finished at {lsn} but holds a value at {max_put_lsn}")]
    FinishBelowPut {
        timeline: TimelineId,
        lsn: Lsn,
        max_put_lsn: Lsn,
    },
    /// An LSN the store cannot represent (`Lsn::MAX`).
    #[error("timeline {timeline}: invalid LSN {lsn}")]
    InvalidLsn { timeline: TimelineId, lsn: Lsn },
    /// The GC cutoff only moves forward, and never past the last record.
    #[error("timeline {timeline}: GC cutoff {requested} is outside {current}..={last_record_lsn}")]
    GcCutoffOutOfRange {
        timeline: TimelineId,
        requested: Lsn,
        current: Lsn,
        last_record_lsn: Lsn,
    },
    /// A previous write or fsync failed; the timeline accepts no more writes
    /// until the repository is reopened (the data it had is re-fed from WAL).
    #[error("timeline {timeline} stopped accepting writes after an I/O failure: {reason}")]
    Broken {
        timeline: TimelineId,
        reason: String,
    },
    /// Writing a file failed (the timeline is now broken).
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Reading the data to write (image layer creation) failed.
    #[error(transparent)]
    Read(#[from] GetError),
    /// The repository is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why `wait_lsn` returned without the LSN arriving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitLsnError {
    /// The timeout elapsed first.
    #[error("timeline {timeline}: timed out after {waited:?} waiting for LSN {lsn} (last record {last_record_lsn})")]
    Timeout {
        timeline: TimelineId,
        lsn: Lsn,
        last_record_lsn: Lsn,
        waited: Duration,
    },
    /// The repository is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why a repository-level operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// No timeline with this id.
    #[error("timeline {0} not found")]
    TimelineNotFound(TimelineId),
    /// A timeline with this id exists already.
    #[error("timeline {0} already exists")]
    TimelineExists(TimelineId),
    /// Branch point below the ancestor's GC cutoff.
    #[error("cannot branch from {ancestor} at {lsn}: below its GC cutoff {gc_cutoff}")]
    BranchBelowGcCutoff {
        ancestor: TimelineId,
        lsn: Lsn,
        gc_cutoff: Lsn,
    },
    /// Branch point beyond the ancestor's last record.
    #[error("cannot branch from {ancestor} at {lsn}: beyond its last record {last_record_lsn}")]
    BranchBeyondHead {
        ancestor: TimelineId,
        lsn: Lsn,
        last_record_lsn: Lsn,
    },
    /// Deleting a timeline that other timelines branch from.
    #[error("timeline {timeline} has child timelines {children:?}")]
    HasChildren {
        timeline: TimelineId,
        children: Vec<TimelineId>,
    },
    /// A metadata file is corrupt, or the directory layout is inconsistent.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A timeline operation failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The repository is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}
