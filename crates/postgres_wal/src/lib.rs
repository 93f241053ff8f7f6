//! PostgreSQL 15 formats, as facts and pure functions.
//!
//! This crate owns everything about the bytes PostgreSQL 15 writes: log
//! sequence numbers and WAL segment arithmetic ([`lsn`]), and (as they land)
//! WAL page headers, record reassembly and decoding, record bodies per
//! resource manager, page layout and `pg_control`. It performs no I/O, so
//! every function here can be property-tested and fuzzed on plain bytes.

pub mod lsn;
pub mod record;
pub mod rmgr;

pub use lsn::{Lsn, LsnParseError};
