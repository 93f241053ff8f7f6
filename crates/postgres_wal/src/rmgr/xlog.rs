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

/// `sizeof(CheckPoint)` on 64-bit platforms.
pub const SIZE_OF_CHECKPOINT: usize = 88;
/// `MAXFNAMELEN`, the size of a restore point's name field.
const MAXFNAMELEN: usize = 64;

/// `CheckPoint`: the body of both checkpoint records (and of `pg_control`'s
/// copy of the latest one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckPoint {
    pub redo: Lsn,
    pub this_timeline: u32,
    pub prev_timeline: u32,
    pub full_page_writes: bool,
    /// `nextXid` as a 64-bit FullTransactionId (epoch in the high half).
    pub next_full_xid: u64,
    pub next_oid: u32,
    pub next_multi: u32,
    pub next_multi_offset: u32,
    pub oldest_xid: u32,
    pub oldest_xid_db: u32,
    pub oldest_multi: u32,
    pub oldest_multi_db: u32,
    /// `pg_time_t` seconds since the Unix epoch.
    pub time: i64,
    pub oldest_commit_ts_xid: u32,
    pub newest_commit_ts_xid: u32,
    pub oldest_active_xid: u32,
}

impl CheckPoint {
    /// Parses a `CheckPoint` struct.
    pub fn parse(bytes: &[u8]) -> Result<CheckPoint, BodyError> {
        let mut c = BodyCursor::new(bytes, "CheckPoint");
        let redo = c.lsn()?;
        let this_timeline = c.u32()?;
        let prev_timeline = c.u32()?;
        let full_page_writes = c.bool()?;
        c.align(8)?;
        let next_full_xid = c.u64()?;
        let next_oid = c.u32()?;
        let next_multi = c.u32()?;
        let next_multi_offset = c.u32()?;
        let oldest_xid = c.u32()?;
        let oldest_xid_db = c.u32()?;
        let oldest_multi = c.u32()?;
        let oldest_multi_db = c.u32()?;
        c.align(8)?;
        let time = c.i64()?;
        Ok(CheckPoint {
            redo,
            this_timeline,
            prev_timeline,
            full_page_writes,
            next_full_xid,
            next_oid,
            next_multi,
            next_multi_offset,
            oldest_xid,
            oldest_xid_db,
            oldest_multi,
            oldest_multi_db,
            time,
            oldest_commit_ts_xid: c.u32()?,
            newest_commit_ts_xid: c.u32()?,
            oldest_active_xid: c.u32()?,
        })
    }

    /// Serialises to the 88-byte C layout (padding zeroed).
    pub fn to_bytes(&self) -> [u8; SIZE_OF_CHECKPOINT] {
        let mut b = [0u8; SIZE_OF_CHECKPOINT];
        b[0..8].copy_from_slice(&self.redo.0.to_le_bytes());
        b[8..12].copy_from_slice(&self.this_timeline.to_le_bytes());
        b[12..16].copy_from_slice(&self.prev_timeline.to_le_bytes());
        b[16] = u8::from(self.full_page_writes);
        b[24..32].copy_from_slice(&self.next_full_xid.to_le_bytes());
        let u32s = [
            self.next_oid,
            self.next_multi,
            self.next_multi_offset,
            self.oldest_xid,
            self.oldest_xid_db,
            self.oldest_multi,
            self.oldest_multi_db,
        ];
        for (i, v) in u32s.iter().enumerate() {
            b[32 + 4 * i..36 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[64..72].copy_from_slice(&self.time.to_le_bytes());
        b[72..76].copy_from_slice(&self.oldest_commit_ts_xid.to_le_bytes());
        b[76..80].copy_from_slice(&self.newest_commit_ts_xid.to_le_bytes());
        b[80..84].copy_from_slice(&self.oldest_active_xid.to_le_bytes());
        b
    }
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
        XLOG_CHECKPOINT_SHUTDOWN => XlogRecord::CheckpointShutdown(CheckPoint::parse(data)?),
        XLOG_CHECKPOINT_ONLINE => XlogRecord::CheckpointOnline(CheckPoint::parse(data)?),
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
    fn checkpoint_round_trips_through_its_c_layout() {
        let cp = CheckPoint {
            redo: Lsn(0x1_0000_0028),
            this_timeline: 3,
            prev_timeline: 2,
            full_page_writes: true,
            next_full_xid: (1 << 32) | 740,
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
        assert_eq!(CheckPoint::parse(&cp.to_bytes()).unwrap(), cp);
        assert!(CheckPoint::parse(&cp.to_bytes()[..80]).is_err());
    }
}
