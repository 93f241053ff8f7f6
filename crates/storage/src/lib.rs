//! The versioned page store: every version of every piece of a Postgres data
//! directory, keyed by LSN, on timelines that branch off each other.
//!
//! # Model
//!
//! - A [`Key`] (18 bytes, ordered) names a relation block, a relation size,
//!   a directory, an SLRU page, a two-phase file, a relmapper file or the
//!   control/checkpoint state ([`KeyKind`]).
//! - A [`Value`] is a whole image, a WAL record (opaque to storage, marked
//!   will-init or not) or a small [`DerivedOp`] (set CLOG bits, clear VM
//!   bits, overwrite bytes).
//! - A [`Repository`] holds the [`Timeline`]s of one tenant. A timeline
//!   accepts batches of puts at increasing LSNs and answers `get(key, lsn)`
//!   for any LSN between its GC cutoff and its last record. A branch is a new
//!   timeline that reads its ancestor below the branch point.
//! - Reads reconstruct a value from the newest image (or will-init record) at
//!   or below the LSN plus every later record, through a [`Reconstruct`]
//!   implementation: [`BuiltinRedo`] handles images and derived operations;
//!   the pageserver plugs in native Postgres redo with
//!   [`Repository::open_with`].
//!
//! # Example
//!
//! ```
//! use postgres_wal::Lsn;
//! use storage::{Key, Repository, RepositoryConfig, TimelineId, Value};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let repo = Repository::open(dir.path(), RepositoryConfig::default())?;
//! let main = repo.create_timeline(TimelineId::generate(), 15, Lsn(0x100))?;
//!
//! // One batch per WAL record: puts above last_record_lsn, then finish.
//! let mut writer = main.writer();
//! writer.put(Key::checkpoint(), Lsn(0x100), Value::Image(b"v1".to_vec().into()))?;
//! writer.finish(Lsn(0x100))?;
//! let mut writer = main.writer();
//! writer.put(Key::checkpoint(), Lsn(0x200), Value::Image(b"v2".to_vec().into()))?;
//! writer.finish(Lsn(0x200))?;
//!
//! // Branching is constant time; the branch sees the ancestor's history.
//! let branch = repo.branch_timeline(TimelineId::generate(), main.id(), Lsn(0x100))?;
//! assert_eq!(&branch.get(Key::checkpoint(), Lsn(0x100))?[..], b"v1");
//! assert_eq!(&main.get(Key::checkpoint(), Lsn(0x200))?[..], b"v2");
//!
//! // Flushing writes a delta layer file and advances disk_consistent_lsn:
//! // after a restart everything up to it reads back.
//! main.freeze_and_flush()?;
//! drop((main, branch, repo));
//! let repo = Repository::open(dir.path(), RepositoryConfig::default())?;
//! let main = repo.list_timelines().into_iter().find(|t| t.ancestor().is_none()).unwrap();
//! assert_eq!(main.disk_consistent_lsn(), Lsn(0x200));
//! assert_eq!(&main.get(Key::checkpoint(), Lsn(0x200))?[..], b"v2");
//! # Ok(()) }
//! ```
//!
//! # API at a glance
//!
//! [`Repository`] (one per tenant, `Send + Sync`):
//! - [`Repository::open`] / [`Repository::open_with`] (choose file I/O and
//!   redo), [`Repository::shutdown`], [`Repository::clear_page_cache`];
//! - [`Repository::create_timeline`]`(id, pg_version, initdb_lsn)`,
//!   [`Repository::branch_timeline`]`(new_id, ancestor_id, lsn)`,
//!   [`Repository::timeline`], [`Repository::list_timelines`],
//!   [`Repository::children`], [`Repository::delete_timeline`] (refused
//!   with [`RepositoryError::HasChildren`]), [`Repository::gc_timeline`].
//!
//! [`Timeline`] (shared as `Arc<Timeline>`):
//! - writes: [`Timeline::writer`] → [`TimelineWriter::put`]`(key, lsn,
//!   value)`… → [`TimelineWriter::finish`]`(lsn)` (advances
//!   `last_record_lsn`, may freeze by [`FreezePolicy`]; flushes only
//!   under back-pressure);
//!   [`Timeline::freeze_and_flush`], [`Timeline::freeze`],
//!   [`Timeline::flush_frozen`];
//! - reads: [`Timeline::get`]`(key, lsn)`, [`Timeline::get_rel_size`],
//!   [`Timeline::list_keys`]`(range, lsn)`,
//!   [`Timeline::versions_in`]`(keys, lsns)` (index-only: which versions
//!   exist in a key × LSN range, for `timeline diff`), [`Timeline::wait_lsn`]`(lsn,
//!   timeout)` and [`Timeline::wait_lsn_async`];
//! - LSNs: [`Timeline::last_record_lsn`], [`Timeline::prev_record_lsn`],
//!   [`Timeline::disk_consistent_lsn`], [`Timeline::gc_cutoff`] /
//!   [`Timeline::set_gc_cutoff`], [`Timeline::ancestor`],
//!   [`Timeline::initdb_lsn`], [`Timeline::pg_version`];
//! - layer lifecycle (file work off the write lock; see [`timeline`]):
//!   [`Timeline::flush_frozen`] / [`Timeline::flush_if_due`] (writers
//!   only freeze), [`Timeline::compact`]`(&`[`CompactionPolicy`]`)` → L0
//!   deltas into L1 deltas split by key range, then image layers per key
//!   partition ([`CompactionResult`]); [`Repository::gc_timeline`] →
//!   [`GcResult`] with `layers_removed` and `bytes_removed`;
//! - materialised head images ([`materialized`]):
//!   [`Timeline::materialize_hot`]`(threshold, max_keys)` (a background
//!   caller rebuilds the keys writers made hot at the last record LSN),
//!   [`Timeline::materialize`]`(key, lsn)`; reads use them like image
//!   layers and fill them after a long replay
//!   ([`RepositoryConfig::materialize_after_records`]);
//! - sizes and metrics: [`Timeline::physical_size_bytes`],
//!   [`Timeline::logical_size_bytes`]`(lsn)`,
//!   [`Timeline::layer_stats`] (L0/L1/image counts and bytes),
//!   [`Repository::stats`] (records applied per reconstruction histogram,
//!   compaction/image/GC counters, materialised image hits and fills);
//! - maintenance: [`Timeline::create_image_layer`],
//!   [`Timeline::create_image_layer_if_due`], [`Timeline::verify_layers`],
//!   [`Timeline::layer_files`], [`Timeline::broken_reason`].
//!
//! Errors are typed per kind of operation: [`RepositoryError`],
//! [`GetError`], [`WriteError`], [`WaitLsnError`], [`LayerFileError`].
//! Ids ([`TimelineId`], [`TenantId`]) are 16 bytes shown as 32 hex digits.
//!
//! # Durability
//!
//! Only data at or below [`Timeline::disk_consistent_lsn`] survives a
//! restart; the WAL source re-feeds the rest (see the [`timeline`] module).
//! Files are written to a temporary name, fsynced, renamed and the directory
//! fsynced ([`io::write_atomic`]); every block carries a CRC-32C and a
//! corrupt file is reported by name, never served. Formats:
//! `docs/storage-format.md`.
//!
//! # Threads
//!
//! Everything is synchronous and thread-safe (`Arc<Timeline>` is `Send +
//! Sync`). Reads may touch disk and [`Timeline::wait_lsn`] blocks; async
//! callers run them on blocking threads.

pub mod cache;
pub mod error;
pub mod id;
pub mod io;
pub mod key;
pub mod layer;
pub mod layer_map;
pub mod materialized;
pub mod metadata;
pub mod policy;
pub mod redo;
pub mod repository;
pub mod stats;
pub mod timeline;
pub mod value;

pub use error::{GetError, LayerFileError, RepositoryError, WaitLsnError, WriteError};
pub use id::{IdParseError, TenantId, TimelineId};
pub use key::{Key, KeyKind, SlruKind, KEY_SIZE};
pub use layer::{LayerDesc, LayerKind};
pub use policy::{CompactionPolicy, FreezePolicy};
pub use redo::{apply_derived, BuiltinRedo, Reconstruct, RedoError};
pub use repository::{Repository, RepositoryConfig};
pub use stats::{ReadPurpose, StatsSnapshot, StorageStats};
pub use timeline::history::StoredVersion;
pub use timeline::{
    CompactionResult, GcResult, InMemoryLayerInfo, LayerFileInfo, LayerMapInfo, LayerStats,
    MaterializeResult, Timeline, TimelineWriter, WaitLsnFuture,
};
pub use value::{DerivedOp, Value};
