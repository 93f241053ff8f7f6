//! Typed errors of the public API, one enum per kind of operation.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use postgres_wal::Lsn;

use crate::id::TimelineId;
use crate::key::Key;
use crate::layer::LayerDesc;
use crate::redo::RedoError;
use crate::value::ValueDecodeError;

/// A layer file failed to open or read. Always names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerFileError {
    /// The file's bytes are not a valid layer (bad checksum, truncated,
    /// inconsistent header); it is never served.
    #[error("layer file {path} is corrupt: {reason}")]
    Corrupt {
        path: PathBuf,
        reason: LayerFormatError,
    },
    /// The operating system refused the read.
    #[error("reading layer file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A checksummed part of a layer file other than its values (those fail
/// as [`LayerFormatError::Value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPart {
    /// The fixed 128-byte header.
    Header,
    /// The index at the end of the file.
    Index,
}

impl std::fmt::Display for LayerPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayerPart::Header => "header",
            LayerPart::Index => "index",
        })
    }
}

/// Why the bytes of a layer file are not a valid layer (the decoders in
/// [`crate::layer::file`]). Carried by [`LayerFileError::Corrupt`], which
/// adds the file's path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerFormatError {
    /// Fewer bytes than the fixed header.
    #[error("{have} bytes, shorter than the {need}-byte header")]
    Truncated { need: u64, have: u64 },
    /// The file does not start with the layer magic.
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 8] },
    /// A stored CRC-32C does not match the bytes it covers.
    #[error("{part} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        part: LayerPart,
        stored: u32,
        computed: u32,
    },
    /// A format version this build does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    /// The header's kind byte is neither delta nor image.
    #[error("unknown layer kind {0}")]
    UnknownKind(u8),
    /// The header's key or LSN range is empty.
    #[error("empty key or LSN range")]
    EmptyRange,
    /// The header describes other ranges than the file name does.
    #[error("header says {found}, file name says {expected}")]
    WrongDesc {
        expected: Box<LayerDesc>,
        found: Box<LayerDesc>,
    },
    /// Header, index and file length do not fit together.
    #[error("length {file_len} does not match {entry_count} entries indexed at {index_offset}")]
    IndexBounds {
        file_len: u64,
        entry_count: u64,
        index_offset: u64,
    },
    /// Index entries not strictly sorted by (key, LSN).
    #[error("index out of order at {key} {lsn}")]
    IndexOutOfOrder { key: Key, lsn: Lsn },
    /// An index entry outside the ranges the header declares.
    #[error("index entry {key} {lsn} outside the header's ranges")]
    IndexEntryOutsideRanges { key: Key, lsn: Lsn },
    /// Blob offsets not strictly increasing, or inside the header.
    #[error("blob offset {offset} out of order")]
    BlobOffsetOutOfOrder { offset: u64 },
    /// The last blob would reach into the index.
    #[error("last blob overlaps the index")]
    BlobOverlapsIndex,
    /// A read asked for an index position the file does not have.
    #[error("index position {position} out of range ({entries} entries)")]
    PositionOutOfRange { position: usize, entries: usize },
    /// The value of one version failed its checks.
    #[error("value of {key} at {lsn}: {source}")]
    Value {
        key: Key,
        lsn: Lsn,
        source: ValueFormatError,
    },
}

/// Why one stored value (a blob) of a layer file is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueFormatError {
    /// The blob's length field disagrees with the space the index gives it.
    #[error("length field {stored} does not match the index ({expected} bytes)")]
    LengthMismatch { stored: u64, expected: u64 },
    /// The blob's CRC-32C does not match its payload.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch { stored: u32, computed: u32 },
    /// A v2 payload too short for its codec's header.
    #[error("payload of {have} bytes, shorter than the {need} its codec needs")]
    Truncated { need: usize, have: usize },
    /// A v2 codec byte this build does not know.
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    /// A compressed value claims more than a reader accepts.
    #[error("raw length {raw_len} exceeds the limit of {limit} bytes")]
    RawLengthTooLarge { raw_len: usize, limit: usize },
    /// The zstd frame does not decompress.
    #[error("zstd frame does not decode: {0}")]
    Decompress(#[source] io::Error),
    /// The zstd frame decompresses to another length than stored.
    #[error("zstd frame holds {have} bytes, header says {expected}")]
    DecompressedLength { have: usize, expected: usize },
    /// The payload is not an encoded value.
    #[error(transparent)]
    Decode(#[from] ValueDecodeError),
    /// An image layer holds a value that is not a page image.
    #[error("non-image value in an image layer")]
    WrongKind,
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
