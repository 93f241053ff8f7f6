//! PostgreSQL 15 formats, as facts and pure functions.
//!
//! This crate owns everything about the bytes PostgreSQL 15 writes: log
//! sequence numbers and WAL segment arithmetic ([`lsn`]), and (as they land)
//! WAL page headers, record reassembly and decoding, record bodies per
//! resource manager, page layout and `pg_control`. It performs no I/O, so
//! every function here can be property-tested and fuzzed on plain bytes.

pub mod control;
pub mod decode;
pub mod image;
pub mod lsn;
pub mod page;
pub mod pglz;
pub mod reader;
pub mod record;
pub mod rmgr;
pub mod slru;
pub mod stats;
pub mod synth;
#[cfg(any(test, feature = "test-util"))]
pub mod testwal;

pub use decode::{decode_record, RecordError, RecordLayout, XLogRecordHeader};
pub use lsn::{Lsn, LsnParseError};
pub use reader::{
    decode_segments, RawRecord, SegmentDecoder, WalConfig, WalError, WalStreamDecoder,
};
