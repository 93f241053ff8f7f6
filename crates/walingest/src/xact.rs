//! Transaction records: commit and abort (also of prepared transactions) set
//! CLOG bits and drop relations; PREPARE writes the two-phase state file.

use bytes::Bytes;
use postgres_wal::record::DecodedRecord;
use postgres_wal::rmgr::xact::{XactFinish, XactPrepare, XactRecord};
use postgres_wal::slru::{CLOG_STATUS_ABORTED, CLOG_STATUS_COMMITTED};
use storage::{Key, Value};

use crate::batch::Batch;
use crate::checkpoint::CheckpointState;
use crate::known::Known;
use crate::{slru, IngestError};

pub(crate) fn ingest(
    known: &mut Known,
    checkpoint: &mut CheckpointState,
    b: &mut Batch<'_>,
    record: &DecodedRecord,
    body: &XactRecord,
) -> Result<(), IngestError> {
    match body {
        XactRecord::Commit(f) => finish(known, checkpoint, b, record.xid, f, CLOG_STATUS_COMMITTED),
        XactRecord::Abort(f) => finish(known, checkpoint, b, record.xid, f, CLOG_STATUS_ABORTED),
        XactRecord::CommitPrepared(f) | XactRecord::AbortPrepared(f) => {
            let status = match body {
                XactRecord::CommitPrepared(_) => CLOG_STATUS_COMMITTED,
                _ => CLOG_STATUS_ABORTED,
            };
            // The record's own xid is the finishing session's (usually none);
            // the prepared transaction's is in the body.
            let xid = f
                .twophase_xid
                .ok_or_else(|| b.malformed("commit/abort prepared without its xid"))?;
            finish(known, checkpoint, b, xid, f, status)?;
            known.remove_twophase(b, xid)
        }
        XactRecord::Prepare(p) => prepare(known, checkpoint, b, record, p),
        XactRecord::Assignment { xtop, subxacts } => {
            checkpoint.advance_xid(*xtop);
            subxacts.iter().for_each(|&x| checkpoint.advance_xid(x));
            Ok(())
        }
        // Invalidations matter to logical decoding only.
        _ => Ok(()),
    }
}

/// `xact_redo_commit` / `xact_redo_abort`.
fn finish(
    known: &mut Known,
    checkpoint: &mut CheckpointState,
    b: &mut Batch<'_>,
    xid: u32,
    f: &XactFinish,
    status: u8,
) -> Result<(), IngestError> {
    if xid == 0 {
        return Err(b.malformed("commit/abort record without an xid"));
    }
    let xids = std::iter::once(xid).chain(f.subxacts.iter().copied());
    xids.clone().for_each(|x| checkpoint.advance_xid(x));
    slru::set_clog_status(known, b, xids, status)?;
    for rel in &f.rels {
        known.drop_rel(b, *rel)?;
    }
    Ok(())
}

/// `xact_redo` PREPARE: the state file PostgreSQL writes at a checkpoint
/// (`RecreateTwoPhaseFile`) is the record's main data followed by its
/// CRC-32C.
fn prepare(
    known: &mut Known,
    checkpoint: &mut CheckpointState,
    b: &mut Batch<'_>,
    record: &DecodedRecord,
    p: &XactPrepare,
) -> Result<(), IngestError> {
    if p.xid == 0 {
        return Err(b.malformed("PREPARE without an xid"));
    }
    checkpoint.advance_xid(p.xid);
    p.subxacts.iter().for_each(|&x| checkpoint.advance_xid(x));
    let mut file = record.main_data.clone();
    file.extend_from_slice(&crc32c::crc32c(&record.main_data).to_le_bytes());
    b.put(Key::twophase_file(p.xid), Value::Image(Bytes::from(file)))?;
    known.add_twophase(b, p.xid)
}
