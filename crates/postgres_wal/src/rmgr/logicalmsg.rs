//! Typed body of logical decoding messages (`RM_LOGICALMSG_ID`, written by
//! `pg_logical_emit_message`).

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::DecodedRecord;

pub const XLOG_LOGICAL_MESSAGE: u8 = 0x00;

/// `xl_logical_message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    pub db_id: u32,
    pub transactional: bool,
    /// The prefix, without its terminating NUL.
    pub prefix: String,
    pub message: Vec<u8>,
}

/// Parses the body of a LOGICALMSG record.
pub fn parse(record: &DecodedRecord) -> Result<LogicalMessage, BodyError> {
    expect_rmgr(record, RmgrId::LogicalMessage, "LOGICALMSG")?;
    let info = record.rmgr_info();
    if info != XLOG_LOGICAL_MESSAGE {
        return Err(BodyError::UnknownType {
            what: "LOGICALMSG",
            info,
        });
    }
    let what = "xl_logical_message";
    let mut c = BodyCursor::new(&record.main_data, what);
    let db_id = c.u32()?;
    let transactional = c.bool()?;
    c.align(8)?;
    let prefix_size = c.u64()?;
    let message_size = c.u64()?;
    let too_big = |n: u64| BodyError::Invalid {
        what,
        detail: format!("size {n} does not fit"),
    };
    let prefix_size = usize::try_from(prefix_size).map_err(|_| too_big(prefix_size))?;
    let message_size = usize::try_from(message_size).map_err(|_| too_big(message_size))?;
    let prefix_raw = c.bytes(prefix_size)?;
    let end = prefix_raw
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(prefix_raw.len());
    Ok(LogicalMessage {
        db_id,
        transactional,
        prefix: String::from_utf8_lossy(&prefix_raw[..end]).into_owned(),
        message: c.bytes(message_size)?.to_vec(),
    })
}
