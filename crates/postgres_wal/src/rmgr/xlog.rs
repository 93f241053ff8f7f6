//! Typed bodies of XLOG resource manager records (`RM_XLOG_ID`, PG15):
//! checkpoints, next OID, segment switch, full-page images, parameter
//! changes, backup end, restore points, FPW changes, end of recovery and
//! overwritten continuation records.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::DecodedRecord;
use crate::Lsn;

pub const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
pub const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
pub const XLOG_NOOP: u8 = 0x20;
pub const XLOG_NEXTOID: u8 = 0x30;
pub const XLOG_SWITCH: u8 = 0x40;
pub const XLOG_BACKUP_END: u8 = 0x50;
pub const XLOG_PARAMETER_CHANGE: u8 = 0x60;
pub const XLOG_RESTORE_POINT: u8 = 0x70;
pub const XLOG_FPW_CHANGE: u8 = 0x80;
pub const XLOG_END_OF_RECOVERY: u8 = 0x90;
pub const XLOG_FPI_FOR_HINT: u8 = 0xA0;
pub const XLOG_FPI: u8 = 0xB0;
pub const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;

/// The checkpoint struct is shared with `pg_control`, which embeds a copy of
/// the latest one; it is defined (parse and serialise) in [`crate::control`].
pub use crate::control::CheckPoint;
/// `sizeof(CheckPoint)` on 64-bit platforms.
pub use crate::control::CHECKPOINT_SIZE as SIZE_OF_CHECKPOINT;
/// `MAXFNAMELEN`, the size of a restore point's name field.
const MAXFNAMELEN: usize = 64;

/// Parses a checkpoint record's body (exactly one `CheckPoint`).
fn parse_checkpoint(data: &[u8]) -> Result<CheckPoint, BodyError> {
    CheckPoint::parse(data).map_err(|error| BodyError::Invalid {
        what: "CheckPoint",
        detail: error.to_string(),
    })
}

/// `xl_parameter_change`: settings a standby must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterChange {
    pub max_connections: i32,
    pub max_worker_processes: i32,
    pub max_wal_senders: i32,
    pub max_prepared_xacts: i32,
    pub max_locks_per_xact: i32,
    pub wal_level: i32,
    pub wal_log_hints: bool,
    pub track_commit_timestamp: bool,
}

/// A typed XLOG record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum XlogRecord {
    CheckpointShutdown(CheckPoint),
    CheckpointOnline(CheckPoint),
    Noop,
    NextOid(u32),
    Switch,
    BackupEnd {
        start: Lsn,
    },
    ParameterChange(ParameterChange),
    RestorePoint {
        time: i64,
        name: String,
    },
    FpwChange {
        full_page_writes: bool,
    },
    EndOfRecovery {
        time: i64,
        this_timeline: u32,
        prev_timeline: u32,
    },
    /// Full-page images only (in the block references).
    Fpi,
    /// Full-page image written because a hint bit changed.
    FpiForHint,
    OverwriteContrecord {
        overwritten_lsn: Lsn,
        time: i64,
    },
}

/// Parses the body of an XLOG record.
pub fn parse(record: &DecodedRecord) -> Result<XlogRecord, BodyError> {
    expect_rmgr(record, RmgrId::Xlog, "XLOG")?;
    let data = &record.main_data;
    let info = record.rmgr_info();
    Ok(match info {
        XLOG_CHECKPOINT_SHUTDOWN => XlogRecord::CheckpointShutdown(parse_checkpoint(data)?),
        XLOG_CHECKPOINT_ONLINE => XlogRecord::CheckpointOnline(parse_checkpoint(data)?),
        XLOG_NOOP => XlogRecord::Noop,
        XLOG_NEXTOID => XlogRecord::NextOid(BodyCursor::new(data, "nextOid").u32()?),
        XLOG_SWITCH => XlogRecord::Switch,
        XLOG_BACKUP_END => XlogRecord::BackupEnd {
            start: BodyCursor::new(data, "backup end").lsn()?,
        },
        XLOG_PARAMETER_CHANGE => XlogRecord::ParameterChange(parse_parameter_change(data)?),
        XLOG_RESTORE_POINT => {
            let mut c = BodyCursor::new(data, "xl_restore_point");
            XlogRecord::RestorePoint {
                time: c.i64()?,
                name: c.fixed_cstr(MAXFNAMELEN)?,
            }
        }
        XLOG_FPW_CHANGE => XlogRecord::FpwChange {
            full_page_writes: BodyCursor::new(data, "fpw change").bool()?,
        },
        XLOG_END_OF_RECOVERY => {
            let mut c = BodyCursor::new(data, "xl_end_of_recovery");
            XlogRecord::EndOfRecovery {
                time: c.i64()?,
                this_timeline: c.u32()?,
                prev_timeline: c.u32()?,
            }
        }
        XLOG_FPI => XlogRecord::Fpi,
        XLOG_FPI_FOR_HINT => XlogRecord::FpiForHint,
        XLOG_OVERWRITE_CONTRECORD => {
            let mut c = BodyCursor::new(data, "xl_overwrite_contrecord");
            XlogRecord::OverwriteContrecord {
                overwritten_lsn: c.lsn()?,
                time: c.i64()?,
            }
        }
        _ => return Err(BodyError::UnknownType { what: "XLOG", info }),
    })
}

fn parse_parameter_change(data: &[u8]) -> Result<ParameterChange, BodyError> {
    let mut c = BodyCursor::new(data, "xl_parameter_change");
    Ok(ParameterChange {
        max_connections: c.i32()?,
        max_worker_processes: c.i32()?,
        max_wal_senders: c.i32()?,
        max_prepared_xacts: c.i32()?,
        max_locks_per_xact: c.i32()?,
        wal_level: c.i32()?,
        wal_log_hints: c.bool()?,
        track_commit_timestamp: c.bool()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_bodies_parse_and_reject_short_input() {
        let cp = CheckPoint {
            redo: 0x1_0000_0028,
            this_timeline_id: 3,
            prev_timeline_id: 2,
            full_page_writes: true,
            next_xid: (1 << 32) | 740,
            next_oid: 24576,
            next_multi: 1,
            next_multi_offset: 0,
            oldest_xid: 716,
            oldest_xid_db: 1,
            oldest_multi: 1,
            oldest_multi_db: 1,
            time: 1_700_000_000,
            oldest_commit_ts_xid: 0,
            newest_commit_ts_xid: 0,
            oldest_active_xid: 740,
        };
        let bytes = cp.serialize();
        assert_eq!(parse_checkpoint(&bytes).unwrap(), cp);
        assert!(matches!(
            parse_checkpoint(&bytes[..80]),
            Err(BodyError::Invalid {
                what: "CheckPoint",
                ..
            })
        ));
    }
}
