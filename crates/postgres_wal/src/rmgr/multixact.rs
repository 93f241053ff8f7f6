//! Typed bodies of MultiXact records (`RM_MULTIXACT_ID`): zeroing offset and
//! member pages, creating a multixact with its members, truncation.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::DecodedRecord;

pub const XLOG_MULTIXACT_ZERO_OFF_PAGE: u8 = 0x00;
pub const XLOG_MULTIXACT_ZERO_MEM_PAGE: u8 = 0x10;
pub const XLOG_MULTIXACT_CREATE_ID: u8 = 0x20;
pub const XLOG_MULTIXACT_TRUNCATE_ID: u8 = 0x30;

/// `MultiXactMember`: a member xid and its lock status
/// (`MultiXactStatus`: 0 for-key-share … 5 update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiXactMember {
    pub xid: u32,
    pub status: u32,
}

/// A typed MultiXact record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiXactRecord {
    ZeroOffsetPage {
        pageno: i32,
    },
    ZeroMemberPage {
        pageno: i32,
    },
    /// `xl_multixact_create`.
    Create {
        mid: u32,
        offset: u32,
        members: Vec<MultiXactMember>,
    },
    /// `xl_multixact_truncate`.
    Truncate {
        oldest_multi_db: u32,
        start_trunc_off: u32,
        end_trunc_off: u32,
        start_trunc_memb: u32,
        end_trunc_memb: u32,
    },
}

/// Parses the body of a MultiXact record.
pub fn parse(record: &DecodedRecord) -> Result<MultiXactRecord, BodyError> {
    expect_rmgr(record, RmgrId::MultiXact, "MultiXact")?;
    let info = record.rmgr_info();
    let mut c = BodyCursor::new(&record.main_data, "MultiXact");
    Ok(match info {
        XLOG_MULTIXACT_ZERO_OFF_PAGE => MultiXactRecord::ZeroOffsetPage { pageno: c.i32()? },
        XLOG_MULTIXACT_ZERO_MEM_PAGE => MultiXactRecord::ZeroMemberPage { pageno: c.i32()? },
        XLOG_MULTIXACT_CREATE_ID => {
            let mid = c.u32()?;
            let offset = c.u32()?;
            let n = c.i32()?;
            let n = usize::try_from(n).map_err(|_| BodyError::Invalid {
                what: "xl_multixact_create",
                detail: format!("negative member count {n}"),
            })?;
            let raw = c.u32_array(n.saturating_mul(2))?;
            MultiXactRecord::Create {
                mid,
                offset,
                members: raw
                    .chunks_exact(2)
                    .map(|m| MultiXactMember {
                        xid: m[0],
                        status: m[1],
                    })
                    .collect(),
            }
        }
        XLOG_MULTIXACT_TRUNCATE_ID => MultiXactRecord::Truncate {
            oldest_multi_db: c.u32()?,
            start_trunc_off: c.u32()?,
            end_trunc_off: c.u32()?,
            start_trunc_memb: c.u32()?,
            end_trunc_memb: c.u32()?,
        },
        _ => {
            return Err(BodyError::UnknownType {
                what: "MultiXact",
                info,
            })
        }
    })
}
