//! PostgreSQL 15 formats, as facts and pure functions.
//!
//! This crate owns everything about the bytes PostgreSQL 15 writes. It
//! performs no I/O, so every function here can be property-tested and
//! fuzzed on plain bytes.
//!
//! Reading WAL, bottom up:
//! - [`lsn`]: positions and segment/page arithmetic;
//! - [`page`]: WAL page headers and their validation;
//! - [`reader`]: reassembling records from a byte stream
//!   ([`WalStreamDecoder`]) or from whole segment files ([`SegmentDecoder`]),
//!   CRC-checked;
//! - [`decode`]: the record header, block references and payloads, giving a
//!   [`record::DecodedRecord`]; [`image`] and [`pglz`] restore full-page
//!   images;
//! - [`rmgr`]: typed bodies per resource manager, and the record type names
//!   `pg_waldump` uses; [`stats`]: its `--stats=record` categories.
//!
//! ```
//! use postgres_wal::{Lsn, WalConfig, WalStreamDecoder};
//! let mut decoder = WalStreamDecoder::new(Lsn(0x0100_0000), WalConfig::default());
//! decoder.feed_bytes(&[]); // WAL bytes from 0/1000000 on, in any chunks
//! while let Some(record) = decoder.poll_decode().expect("valid WAL") {
//!     println!("{} rmgr {} ends at {}", record.start_lsn, record.rmid, record.end_lsn);
//! }
//! ```
//!
//! Also here: `pg_control` ([`control`]), SLRU arithmetic ([`slru`]), the
//! visibility-map page layout ([`vm`]) and a synthesised
//! shutdown-checkpoint segment ([`synth`]).

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
pub mod vm;

pub use decode::{decode_record, RecordError, RecordLayout, XLogRecordHeader};
pub use lsn::{Lsn, LsnParseError};
pub use reader::{
    decode_segments, RawRecord, SegmentDecoder, WalConfig, WalError, WalStreamDecoder,
};
