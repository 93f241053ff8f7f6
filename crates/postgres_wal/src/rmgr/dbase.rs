//! Typed bodies of database records (`RM_DBASE_ID`): `CREATE DATABASE` by
//! file copy or by WAL-logging (PG15's default strategy), and drop.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::DecodedRecord;

pub const XLOG_DBASE_CREATE_FILE_COPY: u8 = 0x00;
pub const XLOG_DBASE_CREATE_WAL_LOG: u8 = 0x10;
pub const XLOG_DBASE_DROP: u8 = 0x20;

/// A typed DBASE record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbaseRecord {
    /// `xl_dbase_create_file_copy_rec`: copy the source database directory.
    CreateFileCopy {
        db_id: u32,
        tablespace_id: u32,
        src_db_id: u32,
        src_tablespace_id: u32,
    },
    /// `xl_dbase_create_wal_log_rec`: the directory is created; contents
    /// follow as ordinary WAL.
    CreateWalLog { db_id: u32, tablespace_id: u32 },
    /// `xl_dbase_drop_rec`: the database's directories in these tablespaces
    /// are removed.
    Drop {
        db_id: u32,
        tablespace_ids: Vec<u32>,
    },
}

/// Parses the body of a DBASE record.
pub fn parse(record: &DecodedRecord) -> Result<DbaseRecord, BodyError> {
    expect_rmgr(record, RmgrId::Database, "DBASE")?;
    let info = record.rmgr_info();
    let mut c = BodyCursor::new(&record.main_data, "DBASE");
    Ok(match info {
        XLOG_DBASE_CREATE_FILE_COPY => DbaseRecord::CreateFileCopy {
            db_id: c.u32()?,
            tablespace_id: c.u32()?,
            src_db_id: c.u32()?,
            src_tablespace_id: c.u32()?,
        },
        XLOG_DBASE_CREATE_WAL_LOG => DbaseRecord::CreateWalLog {
            db_id: c.u32()?,
            tablespace_id: c.u32()?,
        },
        XLOG_DBASE_DROP => {
            let db_id = c.u32()?;
            let n = c.i32()?;
            let n = usize::try_from(n).map_err(|_| BodyError::Invalid {
                what: "xl_dbase_drop_rec",
                detail: format!("negative tablespace count {n}"),
            })?;
            DbaseRecord::Drop {
                db_id,
                tablespace_ids: c.u32_array(n)?,
            }
        }
        _ => {
            return Err(BodyError::UnknownType {
                what: "DBASE",
                info,
            })
        }
    })
}
