//! Typed body of the relation-mapper record (`RM_RELMAP_ID`): a new
//! `pg_filenode.map` for a database (or the shared one), carried whole.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::DecodedRecord;

pub const XLOG_RELMAP_UPDATE: u8 = 0x00;
/// Size of a relmap file (`RELMAPPER_FILESIZE`).
pub const RELMAPPER_FILESIZE: usize = 512;

/// `xl_relmap_update`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelmapUpdate {
    /// Database OID, or 0 for the shared map.
    pub db_id: u32,
    /// The database's tablespace (`pg_global` for the shared map).
    pub ts_id: u32,
    /// The new map file contents (512 bytes in practice).
    pub data: Vec<u8>,
}

/// Parses the body of a RELMAP record.
pub fn parse(record: &DecodedRecord) -> Result<RelmapUpdate, BodyError> {
    expect_rmgr(record, RmgrId::RelMap, "RELMAP")?;
    let info = record.rmgr_info();
    if info != XLOG_RELMAP_UPDATE {
        return Err(BodyError::UnknownType {
            what: "RELMAP",
            info,
        });
    }
    let mut c = BodyCursor::new(&record.main_data, "xl_relmap_update");
    let db_id = c.u32()?;
    let ts_id = c.u32()?;
    let nbytes = c.i32()?;
    let nbytes = usize::try_from(nbytes).map_err(|_| BodyError::Invalid {
        what: "xl_relmap_update",
        detail: format!("negative size {nbytes}"),
    })?;
    Ok(RelmapUpdate {
        db_id,
        ts_id,
        data: c.bytes(nbytes)?.to_vec(),
    })
}
