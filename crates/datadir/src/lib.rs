//! A PostgreSQL 15 data directory as versioned keys: import and base backup.
//!
//! - [`layout`] says which key holds which part of a data directory and how
//!   the "directory" values listing relations, databases, SLRU segments and
//!   prepared transactions are encoded (shared with WAL ingest).
//! - [`import_datadir`] stores a cleanly shut down data directory at its
//!   checkpoint LSN; [`bootstrap`] runs the stock `initdb` first.
//! - [`Basebackup`] writes a tar of the data directory at any LSN of a
//!   timeline, with a synthesised shutdown checkpoint so a stock postmaster
//!   starts from it without replaying WAL; [`Basebackup::write_lazy_tar`]
//!   and [`lazy`] make a *lazy* data directory (relation segments sparse,
//!   filled on first access by the `lazyfill` crate).
//! - [`history::diff`] says which relations changed between two LSNs from
//!   the stored records alone; [`catalog`] names relations at an LSN from
//!   the stored `pg_class`/`pg_namespace`/`pg_database` pages.
//!
//! ```no_run
//! # fn demo(repo: &storage::Repository) -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use postgres_wal::Lsn;
//! use storage::TimelineId;
//!
//! let timeline = repo.create_timeline(TimelineId::generate(), 15, Lsn::INVALID)?;
//! let stats = datadir::bootstrap(&timeline, Path::new("/usr/lib/postgresql/15/bin"),
//!                                Path::new("/tmp"))?;
//! let backup = datadir::Basebackup::prepare(&timeline, Some(stats.lsn))?;
//! backup.write_tar(std::fs::File::create("/tmp/base.tar")?)?;
//! # Ok(()) }
//! ```

pub mod basebackup;
pub mod bootstrap;
pub mod error;
pub mod import;
pub mod layout;
pub mod lazy;
pub mod manifest;

pub use basebackup::{Basebackup, LazySegment};
pub use bootstrap::{bootstrap, run_initdb};
pub use error::{BasebackupError, ImportError};
pub use import::{import_datadir, ImportStats};
pub mod catalog;
pub mod history;
pub use error::HistoryError;
pub use history::{diff, ChangeKind, RelationChange, TimelineDiff};
