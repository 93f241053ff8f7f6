//! WAL ingest: turns PostgreSQL 15 WAL records into the versioned keys and
//! values of a [`storage::Timeline`], and the native redo the read path uses
//! to rebuild pages from them.
//!
//! ```text
//! RawRecord ──WalIngest::ingest_record──▶ puts at the record's end LSN
//!   blocks      → page images / WAL records for native redo   (blocks)
//!   heap VM     → VM bit clears                               (blocks)
//!   smgr/dbase  → relation sizes, relation & database lists   (catalog)
//!   xact/clog   → CLOG bits, dropped relations, 2PC files     (xact, slru)
//!   multixact   → offsets/members pages                       (slru)
//!   xlog        → checkpoint counters (next xid/oid/multi)    (checkpoint)
//! ```
//!
//! Every value of a record is put at the record's end LSN, so a base backup
//! (`datadir::Basebackup`) at any record boundary sees a consistent data
//! directory. A WAL receiver buffers the records of each read off its socket
//! ([`WalIngest::buffer_record`]) and writes them as one writer batch
//! ([`WalIngest::write_buffered`]): the timeline's locks are taken once per
//! batch, not once per record. [`WalIngest::ingest_bytes`] does both for a
//! stretch of WAL, decoding on a second thread when the stretch is long
//! ([`pipelined`]). Values follow the key layout of `datadir::layout`.
//!
//! [`NativeRedo`] is the [`storage::Reconstruct`] to open repositories with:
//! it applies stored WAL records with [`redo::apply`] on top of images and
//! derived operations.
//!
//! ```no_run
//! # fn demo(timeline: &storage::Timeline, wal: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use postgres_wal::{WalConfig, WalStreamDecoder};
//! let mut ingest = walingest::WalIngest::new(timeline)?;
//! let mut decoder = WalStreamDecoder::new(timeline.last_record_lsn(), WalConfig::default());
//! decoder.feed_bytes(wal);
//! while let Some(raw) = decoder.poll_raw()? {
//!     ingest.ingest_record(timeline, &raw)?;
//! }
//! # Ok(()) }
//! ```
//!
//! Known gap: commit timestamps (`pg_commit_ts`) are not stored.

mod batch;
mod blocks;
mod catalog;
pub mod checkpoint;
mod error;
pub mod images;
mod ingest;
mod known;
mod native;
pub mod pipelined;
mod prepare;
mod slru;
pub mod stored_record;
mod value_slab;
mod xact;

pub use error::IngestError;
pub use ingest::{CommitPoint, IngestStats, WalIngest};
pub use native::NativeRedo;
pub use pipelined::{FeedError, Ingested};
pub use value_slab::ValueSlab;
