//! Typed bodies of standby records (`RM_STANDBY_ID`): AccessExclusive locks
//! held, running transactions snapshots, and invalidations.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::xact::{InvalMessage, SIZE_OF_INVAL_MESSAGE};
use super::RmgrId;
use crate::record::DecodedRecord;

pub const XLOG_STANDBY_LOCK: u8 = 0x00;
pub const XLOG_RUNNING_XACTS: u8 = 0x10;
pub const XLOG_INVALIDATIONS: u8 = 0x20;

/// `xl_standby_lock`: an AccessExclusiveLock held by `xid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyLock {
    pub xid: u32,
    pub db_oid: u32,
    pub rel_oid: u32,
}

/// `xl_running_xacts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningXacts {
    pub subxid_overflow: bool,
    pub next_xid: u32,
    pub oldest_running_xid: u32,
    pub latest_completed_xid: u32,
    /// Top-level xids running.
    pub xids: Vec<u32>,
    /// Subtransaction xids running (may be incomplete if overflowed).
    pub subxids: Vec<u32>,
}

/// A typed STANDBY record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StandbyRecord {
    Lock(Vec<StandbyLock>),
    RunningXacts(RunningXacts),
    /// `xl_invalidations`.
    Invalidations {
        db_id: u32,
        ts_id: u32,
        relcache_init_file_inval: bool,
        messages: Vec<InvalMessage>,
    },
}

fn count(n: i32, what: &'static str) -> Result<usize, BodyError> {
    usize::try_from(n).map_err(|_| BodyError::Invalid {
        what,
        detail: format!("negative count {n}"),
    })
}

/// Parses the body of a STANDBY record.
pub fn parse(record: &DecodedRecord) -> Result<StandbyRecord, BodyError> {
    expect_rmgr(record, RmgrId::Standby, "STANDBY")?;
    let info = record.rmgr_info();
    let data = &record.main_data;
    Ok(match info {
        XLOG_STANDBY_LOCK => {
            let mut c = BodyCursor::new(data, "xl_standby_locks");
            let n = count(c.i32()?, "xl_standby_locks")?;
            let raw = c.u32_array(n.saturating_mul(3))?;
            StandbyRecord::Lock(
                raw.chunks_exact(3)
                    .map(|l| StandbyLock {
                        xid: l[0],
                        db_oid: l[1],
                        rel_oid: l[2],
                    })
                    .collect(),
            )
        }
        XLOG_RUNNING_XACTS => StandbyRecord::RunningXacts(parse_running_xacts(data)?),
        XLOG_INVALIDATIONS => {
            let mut c = BodyCursor::new(data, "xl_invalidations");
            let db_id = c.u32()?;
            let ts_id = c.u32()?;
            let relcache_init_file_inval = c.bool()?;
            c.align(4)?;
            let n = count(c.i32()?, "xl_invalidations")?;
            let raw = c.bytes(n.saturating_mul(SIZE_OF_INVAL_MESSAGE))?;
            let messages = raw
                .chunks_exact(SIZE_OF_INVAL_MESSAGE)
                .map(|m| {
                    let mut msg = [0u8; SIZE_OF_INVAL_MESSAGE];
                    msg.copy_from_slice(m);
                    InvalMessage(msg)
                })
                .collect();
            StandbyRecord::Invalidations {
                db_id,
                ts_id,
                relcache_init_file_inval,
                messages,
            }
        }
        _ => {
            return Err(BodyError::UnknownType {
                what: "STANDBY",
                info,
            })
        }
    })
}

fn parse_running_xacts(data: &[u8]) -> Result<RunningXacts, BodyError> {
    let what = "xl_running_xacts";
    let mut c = BodyCursor::new(data, what);
    let xcnt = count(c.i32()?, what)?;
    let subxcnt = count(c.i32()?, what)?;
    let subxid_overflow = c.bool()?;
    c.align(4)?;
    let next_xid = c.u32()?;
    let oldest_running_xid = c.u32()?;
    let latest_completed_xid = c.u32()?;
    Ok(RunningXacts {
        subxid_overflow,
        next_xid,
        oldest_running_xid,
        latest_completed_xid,
        xids: c.u32_array(xcnt)?,
        subxids: c.u32_array(subxcnt)?,
    })
}
