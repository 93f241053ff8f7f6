//! Typed bodies of storage manager records (`RM_SMGR_ID`): creating a
//! relation fork and truncating a relation.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::{DecodedRecord, ForkNumber, RelFileNode};

pub const XLOG_SMGR_CREATE: u8 = 0x10;
pub const XLOG_SMGR_TRUNCATE: u8 = 0x20;

/// Truncate the main fork.
pub const SMGR_TRUNCATE_HEAP: u32 = 0x0001;
/// Truncate the visibility map.
pub const SMGR_TRUNCATE_VM: u32 = 0x0002;
/// Truncate the free space map.
pub const SMGR_TRUNCATE_FSM: u32 = 0x0004;
/// All of them.
pub const SMGR_TRUNCATE_ALL: u32 = SMGR_TRUNCATE_HEAP | SMGR_TRUNCATE_VM | SMGR_TRUNCATE_FSM;

/// A typed SMGR record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmgrRecord {
    /// `xl_smgr_create`.
    Create { rel: RelFileNode, fork: ForkNumber },
    /// `xl_smgr_truncate`: the forks named by `flags` shrink to `blkno`
    /// blocks (the VM and FSM to the blocks covering it).
    Truncate {
        blkno: u32,
        rel: RelFileNode,
        flags: u32,
    },
}

fn rel_file_node(c: &mut BodyCursor<'_>) -> Result<RelFileNode, BodyError> {
    Ok(RelFileNode {
        spc_node: c.u32()?,
        db_node: c.u32()?,
        rel_node: c.u32()?,
    })
}

/// Parses the body of an SMGR record.
pub fn parse(record: &DecodedRecord) -> Result<SmgrRecord, BodyError> {
    expect_rmgr(record, RmgrId::Storage, "SMGR")?;
    let info = record.rmgr_info();
    let mut c = BodyCursor::new(&record.main_data, "SMGR");
    Ok(match info {
        XLOG_SMGR_CREATE => {
            let rel = rel_file_node(&mut c)?;
            let fork_no = c.i32()?;
            let fork = u8::try_from(fork_no)
                .ok()
                .and_then(ForkNumber::from_u8)
                .ok_or(BodyError::Invalid {
                    what: "xl_smgr_create",
                    detail: format!("fork number {fork_no}"),
                })?;
            SmgrRecord::Create { rel, fork }
        }
        XLOG_SMGR_TRUNCATE => SmgrRecord::Truncate {
            blkno: c.u32()?,
            rel: rel_file_node(&mut c)?,
            flags: c.u32()?,
        },
        _ => return Err(BodyError::UnknownType { what: "SMGR", info }),
    })
}
