//! Typed bodies of transaction records (`RM_XACT_ID`, PG15 `xact.h`):
//! commit, abort, prepare, commit/abort prepared, xid assignment and
//! invalidations.
//!
//! Commit and abort share a layout: a timestamp, then optional parts whose
//! presence `xinfo` announces (database, subtransactions, dropped relations,
//! dropped stats, invalidations, two-phase xid and GID, replication origin).
//! The parse follows `ParseCommitRecord` / `ParseAbortRecord`.

use super::cursor::{expect_rmgr, BodyCursor, BodyError};
use super::RmgrId;
use crate::record::{DecodedRecord, RelFileNode};
use crate::Lsn;

pub const XLOG_XACT_COMMIT: u8 = 0x00;
pub const XLOG_XACT_PREPARE: u8 = 0x10;
pub const XLOG_XACT_ABORT: u8 = 0x20;
pub const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
pub const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
pub const XLOG_XACT_ASSIGNMENT: u8 = 0x50;
pub const XLOG_XACT_INVALIDATIONS: u8 = 0x60;
/// The opcode bits of an XACT info byte.
pub const XLOG_XACT_OPMASK: u8 = 0x70;
/// An `xl_xact_xinfo` word follows the timestamp.
pub const XLOG_XACT_HAS_INFO: u8 = 0x80;

pub const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
pub const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
pub const XACT_XINFO_HAS_RELFILENODES: u32 = 1 << 2;
pub const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
pub const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
pub const XACT_XINFO_HAS_ORIGIN: u32 = 1 << 5;
pub const XACT_XINFO_HAS_AE_LOCKS: u32 = 1 << 6;
pub const XACT_XINFO_HAS_GID: u32 = 1 << 7;
pub const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;

/// `sizeof(SharedInvalidationMessage)`.
pub const SIZE_OF_INVAL_MESSAGE: usize = 16;
/// `sizeof(xl_xact_prepare)`.
const SIZE_OF_XACT_PREPARE: usize = 72;

/// One shared-invalidation message, kept as its 16 raw bytes (its first
/// byte, a signed id, tells the kind: catcache >= 0, then relcache, smgr…).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalMessage(pub [u8; SIZE_OF_INVAL_MESSAGE]);

impl InvalMessage {
    /// The message kind (`id` field).
    pub fn id(&self) -> i8 {
        self.0[0] as i8
    }
}

/// `xl_xact_stats_item`: statistics to drop with the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsItem {
    pub kind: i32,
    pub db_oid: u32,
    pub obj_oid: u32,
}

/// A parsed commit or abort (also commit/abort prepared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XactFinish {
    /// Commit or abort time (microseconds since 2000-01-01).
    pub xact_time: i64,
    pub xinfo: u32,
    pub db_id: u32,
    pub ts_id: u32,
    pub subxacts: Vec<u32>,
    /// Relations to delete (dropped in this transaction, or created in an
    /// aborted one).
    pub rels: Vec<RelFileNode>,
    pub dropped_stats: Vec<StatsItem>,
    /// Invalidations (commit only).
    pub invals: Vec<InvalMessage>,
    /// For commit/abort prepared: the prepared transaction's xid.
    pub twophase_xid: Option<u32>,
    pub gid: Option<String>,
    /// `(origin_lsn, origin_timestamp)`.
    pub origin: Option<(Lsn, i64)>,
}

/// A parsed PREPARE (`xl_xact_prepare` followed by its arrays).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XactPrepare {
    pub xid: u32,
    pub database: u32,
    pub prepared_at: i64,
    pub owner: u32,
    pub gid: String,
    pub subxacts: Vec<u32>,
    pub commit_rels: Vec<RelFileNode>,
    pub abort_rels: Vec<RelFileNode>,
    pub commit_stats: Vec<StatsItem>,
    pub abort_stats: Vec<StatsItem>,
    pub invals: Vec<InvalMessage>,
    pub init_file_inval: bool,
    pub origin_lsn: Lsn,
    pub origin_timestamp: i64,
}

/// A typed XACT record body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum XactRecord {
    Commit(XactFinish),
    Abort(XactFinish),
    CommitPrepared(XactFinish),
    AbortPrepared(XactFinish),
    Prepare(XactPrepare),
    /// `xl_xact_assignment`: subtransaction xids assigned to `xtop`.
    Assignment {
        xtop: u32,
        subxacts: Vec<u32>,
    },
    /// Invalidations logged mid-transaction (logical decoding).
    Invalidations(Vec<InvalMessage>),
}

impl XactRecord {
    /// The commit/abort details, for the four finishing record kinds.
    pub fn finish(&self) -> Option<&XactFinish> {
        match self {
            XactRecord::Commit(f)
            | XactRecord::Abort(f)
            | XactRecord::CommitPrepared(f)
            | XactRecord::AbortPrepared(f) => Some(f),
            _ => None,
        }
    }
}

/// Parses the body of an XACT record.
pub fn parse(record: &DecodedRecord) -> Result<XactRecord, BodyError> {
    expect_rmgr(record, RmgrId::Transaction, "XACT")?;
    let info = record.rmgr_info();
    let data = &record.main_data;
    Ok(match info & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT => XactRecord::Commit(parse_finish(info, data, true)?),
        XLOG_XACT_ABORT => XactRecord::Abort(parse_finish(info, data, false)?),
        XLOG_XACT_COMMIT_PREPARED => XactRecord::CommitPrepared(parse_finish(info, data, true)?),
        XLOG_XACT_ABORT_PREPARED => XactRecord::AbortPrepared(parse_finish(info, data, false)?),
        XLOG_XACT_PREPARE => XactRecord::Prepare(parse_prepare(data)?),
        XLOG_XACT_ASSIGNMENT => {
            let mut c = BodyCursor::new(data, "xl_xact_assignment");
            let xtop = c.u32()?;
            let n = count(c.i32()?, "xl_xact_assignment")?;
            XactRecord::Assignment {
                xtop,
                subxacts: c.u32_array(n)?,
            }
        }
        XLOG_XACT_INVALIDATIONS => {
            let mut c = BodyCursor::new(data, "xl_xact_invals");
            let n = count(c.i32()?, "xl_xact_invals")?;
            XactRecord::Invalidations(inval_messages(&mut c, n)?)
        }
        _ => return Err(BodyError::UnknownType { what: "XACT", info }),
    })
}

/// A non-negative C `int` count.
fn count(n: i32, what: &'static str) -> Result<usize, BodyError> {
    usize::try_from(n).map_err(|_| BodyError::Invalid {
        what,
        detail: format!("negative count {n}"),
    })
}

fn rel_file_nodes(c: &mut BodyCursor<'_>, n: usize) -> Result<Vec<RelFileNode>, BodyError> {
    let raw = c.u32_array(n.saturating_mul(3))?;
    Ok(raw
        .chunks_exact(3)
        .map(|r| RelFileNode {
            spc_node: r[0],
            db_node: r[1],
            rel_node: r[2],
        })
        .collect())
}

fn stats_items(c: &mut BodyCursor<'_>, n: usize) -> Result<Vec<StatsItem>, BodyError> {
    let raw = c.u32_array(n.saturating_mul(3))?;
    Ok(raw
        .chunks_exact(3)
        .map(|r| StatsItem {
            kind: r[0] as i32,
            db_oid: r[1],
            obj_oid: r[2],
        })
        .collect())
}

fn inval_messages(c: &mut BodyCursor<'_>, n: usize) -> Result<Vec<InvalMessage>, BodyError> {
    let raw = c.bytes(n.saturating_mul(SIZE_OF_INVAL_MESSAGE))?;
    Ok(raw
        .chunks_exact(SIZE_OF_INVAL_MESSAGE)
        .map(|m| {
            let mut msg = [0u8; SIZE_OF_INVAL_MESSAGE];
            msg.copy_from_slice(m);
            InvalMessage(msg)
        })
        .collect())
}

fn parse_finish(info: u8, data: &[u8], is_commit: bool) -> Result<XactFinish, BodyError> {
    let what = if is_commit {
        "xl_xact_commit"
    } else {
        "xl_xact_abort"
    };
    let mut c = BodyCursor::new(data, what);
    let mut f = XactFinish {
        xact_time: c.i64()?,
        ..XactFinish::default()
    };
    if info & XLOG_XACT_HAS_INFO != 0 {
        f.xinfo = c.u32()?;
    }
    let has = |flag: u32| f.xinfo & flag != 0;
    if has(XACT_XINFO_HAS_DBINFO) {
        f.db_id = c.u32()?;
        f.ts_id = c.u32()?;
    }
    if has(XACT_XINFO_HAS_SUBXACTS) {
        let n = count(c.i32()?, what)?;
        f.subxacts = c.u32_array(n)?;
    }
    if has(XACT_XINFO_HAS_RELFILENODES) {
        let n = count(c.i32()?, what)?;
        f.rels = rel_file_nodes(&mut c, n)?;
    }
    if has(XACT_XINFO_HAS_DROPPED_STATS) {
        let n = count(c.i32()?, what)?;
        f.dropped_stats = stats_items(&mut c, n)?;
    }
    // Abort records never carry invalidations.
    if is_commit && has(XACT_XINFO_HAS_INVALS) {
        let n = count(c.i32()?, what)?;
        f.invals = inval_messages(&mut c, n)?;
    }
    if has(XACT_XINFO_HAS_TWOPHASE) {
        f.twophase_xid = Some(c.u32()?);
        if has(XACT_XINFO_HAS_GID) {
            f.gid = Some(c.cstr()?);
        }
    }
    if has(XACT_XINFO_HAS_ORIGIN) {
        // Stored unaligned after the GID.
        f.origin = Some((c.lsn()?, c.i64()?));
    }
    Ok(f)
}

/// Moves past the padding that MAXALIGNs the part that began at `start`:
/// the 2PC state file starts each array on an 8-byte boundary.
fn realign(c: &mut BodyCursor<'_>, start: usize) -> Result<(), BodyError> {
    let len = c.position() - start;
    c.seek(start + len.div_ceil(8) * 8)
}

fn parse_prepare(data: &[u8]) -> Result<XactPrepare, BodyError> {
    let what = "xl_xact_prepare";
    let mut c = BodyCursor::new(data, what);
    c.skip(8)?; // magic, total_len
    let xid = c.u32()?;
    let database = c.u32()?;
    let prepared_at = c.i64()?;
    let owner = c.u32()?;
    let nsubxacts = count(c.i32()?, what)?;
    let ncommitrels = count(c.i32()?, what)?;
    let nabortrels = count(c.i32()?, what)?;
    let ncommitstats = count(c.i32()?, what)?;
    let nabortstats = count(c.i32()?, what)?;
    let ninvalmsgs = count(c.i32()?, what)?;
    let init_file_inval = c.bool()?;
    c.align(2)?;
    let gidlen = usize::from(c.u16()?);
    let origin_lsn = c.lsn()?;
    let origin_timestamp = c.i64()?;
    c.seek(SIZE_OF_XACT_PREPARE)?;
    let gid = {
        let raw = c.bytes(gidlen)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).into_owned()
    };
    realign(&mut c, SIZE_OF_XACT_PREPARE)?;
    let mut p = c.position();
    let subxacts = c.u32_array(nsubxacts)?;
    realign(&mut c, p)?;
    p = c.position();
    let commit_rels = rel_file_nodes(&mut c, ncommitrels)?;
    realign(&mut c, p)?;
    p = c.position();
    let abort_rels = rel_file_nodes(&mut c, nabortrels)?;
    realign(&mut c, p)?;
    p = c.position();
    let commit_stats = stats_items(&mut c, ncommitstats)?;
    realign(&mut c, p)?;
    p = c.position();
    let abort_stats = stats_items(&mut c, nabortstats)?;
    realign(&mut c, p)?;
    let invals = inval_messages(&mut c, ninvalmsgs)?;
    Ok(XactPrepare {
        xid,
        database,
        prepared_at,
        owner,
        gid,
        subxacts,
        commit_rels,
        abort_rels,
        commit_stats,
        abort_stats,
        invals,
        init_file_inval,
        origin_lsn,
        origin_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(info: u8, main_data: Vec<u8>) -> DecodedRecord {
        DecodedRecord {
            start_lsn: Lsn(0x100_0028),
            end_lsn: Lsn(0x100_0100),
            total_len: 0,
            xid: 740,
            prev: Lsn::INVALID,
            info,
            rmid: RmgrId::Transaction as u8,
            origin: None,
            toplevel_xid: None,
            blocks: vec![],
            main_data,
        }
    }

    fn le(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn commit_with_every_optional_part() {
        let xinfo = XACT_XINFO_HAS_DBINFO
            | XACT_XINFO_HAS_SUBXACTS
            | XACT_XINFO_HAS_RELFILENODES
            | XACT_XINFO_HAS_INVALS
            | XACT_XINFO_HAS_TWOPHASE
            | XACT_XINFO_HAS_GID
            | XACT_XINFO_HAS_ORIGIN;
        let mut d = 12345i64.to_le_bytes().to_vec();
        d.extend(le(&[xinfo, 5, 1663, 2, 741, 742, 1, 1663, 5, 16384, 1]));
        d.extend([0xfeu8; 16]);
        d.extend(le(&[99]));
        d.extend(b"gid-1\0");
        d.extend(0x1234u64.to_le_bytes());
        d.extend(77i64.to_le_bytes());
        let parsed = parse(&record(XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO, d)).unwrap();
        let XactRecord::CommitPrepared(f) = parsed else {
            panic!("wrong kind: {parsed:?}");
        };
        assert_eq!(f.xact_time, 12345);
        assert_eq!((f.db_id, f.ts_id), (5, 1663));
        assert_eq!(f.subxacts, vec![741, 742]);
        assert_eq!(f.rels[0].rel_node, 16384);
        assert_eq!(f.invals.len(), 1);
        assert_eq!(f.invals[0].id(), -2);
        assert_eq!(f.twophase_xid, Some(99));
        assert_eq!(f.gid.as_deref(), Some("gid-1"));
        assert_eq!(f.origin, Some((Lsn(0x1234), 77)));
    }

    #[test]
    fn plain_commit_and_truncated_bodies() {
        let ok = parse(&record(XLOG_XACT_COMMIT, 5i64.to_le_bytes().to_vec())).unwrap();
        assert_eq!(ok.finish().unwrap().xact_time, 5);
        assert!(parse(&record(XLOG_XACT_COMMIT, vec![1, 2, 3])).is_err());
        // A subxact count far beyond the body is an error, not an allocation.
        let mut d = 5i64.to_le_bytes().to_vec();
        d.extend(le(&[XACT_XINFO_HAS_SUBXACTS, 0x7fff_ffff]));
        assert!(parse(&record(XLOG_XACT_ABORT | XLOG_XACT_HAS_INFO, d)).is_err());
    }

    #[test]
    fn assignment() {
        let d = le(&[700, 2, 701, 702]);
        assert_eq!(
            parse(&record(XLOG_XACT_ASSIGNMENT, d)).unwrap(),
            XactRecord::Assignment {
                xtop: 700,
                subxacts: vec![701, 702]
            }
        );
    }
}
