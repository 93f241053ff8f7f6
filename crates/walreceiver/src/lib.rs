//! The pageserver's WAL receiver: connects to a stock PostgreSQL 15 endpoint
//! *as a physical standby*, makes the WAL it streams durable in a local
//! [`WalStore`], hands it to a [`WalSink`] (ingest), and reports the durable
//! position as the standby's flush LSN, so that with
//! `synchronous_standby_names = 'pageserver'` a commit returns only once the
//! pageserver holds it durably.
//!
//! - [`store`]: the durable local WAL (format, crash rules).

pub mod store;

pub use postgres_wal::Lsn;
pub use store::{StoreError, WalStore};
