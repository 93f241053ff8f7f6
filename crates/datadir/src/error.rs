//! Typed errors of import, bootstrap and base backup.

use std::path::PathBuf;

use postgres_wal::control::ControlError;
use postgres_wal::synth::SynthError;
use postgres_wal::Lsn;
use storage::{GetError, Key, WriteError};

/// Why importing a data directory (or bootstrapping one) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading a file or directory failed.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file does not have the shape PostgreSQL gives it.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// `global/pg_control` is unusable.
    #[error("global/pg_control: {0}")]
    Control(#[from] ControlError),
    /// Only a cleanly shut down cluster has all its data in the files.
    #[error("the data directory was not shut down cleanly (pg_control state {0})")]
    NotShutDown(String),
    /// The timeline already holds data at or beyond the checkpoint LSN.
    #[error("timeline already has data up to {last_record_lsn}; cannot import at {lsn}")]
    TimelineNotEmpty { lsn: Lsn, last_record_lsn: Lsn },
    /// Writing to the store failed.
    #[error("storing the import: {0}")]
    Store(#[from] WriteError),
    /// The OS user Postgres runs as is unusable (we are root).
    #[error(transparent)]
    OsUser(#[from] pgproc::Error),
    /// `initdb` could not be started or failed.
    #[error("initdb failed: {0}")]
    Initdb(String),
    /// The import was cancelled (shutdown).
    #[error("cancelled")]
    Cancelled,
}

/// Why a base backup could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BasebackupError {
    /// The LSN is outside what the timeline can serve.
    #[error("LSN {lsn} is not readable on this timeline: {source}")]
    LsnNotAvailable { lsn: Lsn, source: GetError },
    /// The timeline has no data directory at that LSN (before its import).
    #[error("the timeline holds no {what} at LSN {lsn} (is it before the initial import?)")]
    Missing { what: &'static str, lsn: Lsn },
    /// A stored value is not what the layout requires.
    #[error("stored {what} at LSN {lsn} is malformed: {reason}")]
    BadValue {
        what: String,
        lsn: Lsn,
        reason: String,
    },
    /// Reading from the store failed.
    #[error("reading key {key} at {lsn}: {source}")]
    Read {
        key: Key,
        lsn: Lsn,
        source: GetError,
    },
    /// `pg_control` stored for the timeline is unusable.
    #[error("stored pg_control: {0}")]
    Control(#[from] ControlError),
    /// The checkpoint record could not be synthesised.
    #[error("synthesising the checkpoint: {0}")]
    Synth(#[from] SynthError),
    /// Writing the tar stream failed (the receiver went away, disk full...).
    #[error("writing the archive: {0}")]
    Write(#[source] std::io::Error),
    /// The backup was cancelled (shutdown or client gone).
    #[error("cancelled")]
    Cancelled,
}

/// Why a diff between two points of a timeline could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The range is empty or reversed.
    #[error("--from {from} must be below --to {to}")]
    BadRange { from: Lsn, to: Lsn },
    /// An end point is outside what the timeline can serve (below the GC
    /// cutoff, above the head).
    #[error("LSN {lsn} is not readable on this timeline: {source}")]
    LsnNotAvailable { lsn: Lsn, source: GetError },
    /// Reading a stored value failed.
    #[error("reading key {key} at {lsn}: {source}")]
    Read {
        key: Key,
        lsn: Lsn,
        source: GetError,
    },
    /// A stored catalog or directory value is not what the layout requires.
    #[error("{0}")]
    Catalog(String),
}
