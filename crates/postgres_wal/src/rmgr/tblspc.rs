//! Typed bodies of tablespace records (`RM_TBLSPC_ID`): create (with the
//! directory path) and drop.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::DecodedRecord;

pub const XLOG_TBLSPC_CREATE: u8 = 0x00;
pub const XLOG_TBLSPC_DROP: u8 = 0x10;

/// A typed TBLSPC record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TblspcRecord {
    /// `xl_tblspc_create_rec`.
    Create { ts_id: u32, path: String },
    /// `xl_tblspc_drop_rec`.
    Drop { ts_id: u32 },
}

/// Parses the body of a TBLSPC record.
pub fn parse(record: &DecodedRecord) -> Result<TblspcRecord, BodyError> {
    expect_rmgr(record, RmgrId::Tablespace, "TBLSPC")?;
    let info = record.rmgr_info();
    let mut c = BodyCursor::new(&record.main_data, "TBLSPC");
    Ok(match info {
        XLOG_TBLSPC_CREATE => TblspcRecord::Create {
            ts_id: c.u32()?,
            path: c.cstr()?,
        },
        XLOG_TBLSPC_DROP => TblspcRecord::Drop { ts_id: c.u32()? },
        _ => {
            return Err(BodyError::UnknownType {
                what: "TBLSPC",
                info,
            })
        }
    })
}
