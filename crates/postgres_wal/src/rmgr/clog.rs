//! Typed bodies of CLOG records (`RM_CLOG_ID`): zeroing a new `pg_xact`
//! page and truncating old ones.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::DecodedRecord;

pub const CLOG_ZEROPAGE: u8 = 0x00;
pub const CLOG_TRUNCATE: u8 = 0x10;

/// A typed CLOG record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClogRecord {
    /// A new CLOG page `pageno` is zeroed.
    ZeroPage { pageno: i32 },
    /// `xl_clog_truncate`: pages before `pageno` are removed.
    Truncate {
        pageno: i32,
        oldest_xact: u32,
        oldest_xact_db: u32,
    },
}

/// Parses the body of a CLOG record.
pub fn parse(record: &DecodedRecord) -> Result<ClogRecord, BodyError> {
    expect_rmgr(record, RmgrId::Clog, "CLOG")?;
    let info = record.rmgr_info();
    let mut c = BodyCursor::new(&record.main_data, "CLOG");
    Ok(match info {
        CLOG_ZEROPAGE => ClogRecord::ZeroPage { pageno: c.i32()? },
        CLOG_TRUNCATE => ClogRecord::Truncate {
            pageno: c.i32()?,
            oldest_xact: c.u32()?,
            oldest_xact_db: c.u32()?,
        },
        _ => return Err(BodyError::UnknownType { what: "CLOG", info }),
    })
}
