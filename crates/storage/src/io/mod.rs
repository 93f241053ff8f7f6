//! All file I/O of the store goes through [`FileIo`] from the shared
//! `fileio` crate (crash-safe replace, fault injection, simulated disk,
//! poisoning); this module re-exports it and adds what only the store needs:
//! layer files evicted to remote storage and fetched on demand
//! ([`OnDemandIo`]).

mod ondemand;

pub use fileio::{
    remove_temp_files, write_atomic, AtomicFile, DirEntry, Fault, FaultyIo, FileIo, FileIoError,
    MemoryFileIo, Poison, ReadAt, StdFileIo, TEMP_SUFFIX,
};
pub use ondemand::{
    marker_path, DownloadCounters, EvictedMarker, LayerDownloader, OnDemandIo, EVICTED_SUFFIX,
};
