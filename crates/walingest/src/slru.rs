//! SLRU pages: CLOG status bits, multixact offsets and members, page zeroing
//! and truncation, with the segment sizes and segment lists base backup
//! reads kept in step.
//!
//! Commit timestamps (`pg_commit_ts`) are not stored: the endpoint rebuilds
//! nothing from them and `track_commit_timestamp` is off by default. The
//! commit time of every transaction is in its commit record, so an LSN↔time
//! index can be derived from the WAL later if wanted.

use std::collections::BTreeMap;

use postgres_wal::rmgr::multixact::MultiXactMember;
use postgres_wal::slru::{
    self as pg_slru, CLOG_XACTS_PER_PAGE, MULTIXACT_MEMBERS_PER_PAGE, MULTIXACT_OFFSETS_PER_PAGE,
    SLRU_PAGES_PER_SEGMENT,
};
use storage::{DerivedOp, Key, SlruKind, Value};

use crate::batch::Batch;
use crate::blocks::zero_page;
use crate::checkpoint::xid_precedes;
use crate::known::Known;
use crate::IngestError;

/// Where an SLRU page lives: segment and page inside it.
fn locate(page: u32) -> (u32, u32) {
    (
        pg_slru::segment_of_page(page),
        pg_slru::page_in_segment(page),
    )
}

/// `*_ZEROPAGE`: the page exists from now on, all zeros.
pub(crate) fn zero_page_record(
    known: &mut Known,
    b: &mut Batch<'_>,
    kind: SlruKind,
    pageno: i32,
) -> Result<(), IngestError> {
    let page = u32::try_from(pageno).map_err(|_| b.malformed("negative SLRU page number"))?;
    let (segno, blkno) = locate(page);
    known.extend_slru_segment(b, kind, segno, blkno + 1)?;
    b.put(Key::slru_block(kind, segno, blkno), zero_page())
}

/// Whether `page` is stored (its segment holds it).
fn page_exists(
    known: &mut Known,
    b: &mut Batch<'_>,
    kind: SlruKind,
    page: u32,
) -> Result<bool, IngestError> {
    let (segno, blkno) = locate(page);
    Ok(blkno < known.slru_segment_size(b, kind, segno)?)
}

/// Sets the CLOG status of `xids` (`TransactionIdSetTreeStatus`; the final
/// state only, sub-committed is never visible after the record).
pub(crate) fn set_clog_status(
    known: &mut Known,
    b: &mut Batch<'_>,
    xids: impl IntoIterator<Item = u32>,
    status: u8,
) -> Result<(), IngestError> {
    let mut by_page: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
    for xid in xids {
        let slot = (xid % CLOG_XACTS_PER_PAGE) as u16;
        by_page
            .entry(xid / CLOG_XACTS_PER_PAGE)
            .or_default()
            .push(slot);
    }
    for (page, slots) in by_page {
        let (segno, blkno) = locate(page);
        if !page_exists(known, b, SlruKind::Clog, page)? {
            // Recovery reads a missing SLRU page as zeros
            // (`SlruPhysicalReadPage`); the page then exists.
            known.extend_slru_segment(b, SlruKind::Clog, segno, blkno + 1)?;
            b.put(Key::slru_block(SlruKind::Clog, segno, blkno), zero_page())?;
        }
        b.put(
            Key::slru_block(SlruKind::Clog, segno, blkno),
            Value::Derived(DerivedOp::ClogSetStatus { status, slots }),
        )?;
    }
    Ok(())
}

/// `SimpleLruTruncate`: removes every segment all of whose pages precede
/// `cutoff_page`, by the SLRU's circular page order.
pub(crate) fn truncate(
    known: &mut Known,
    b: &mut Batch<'_>,
    kind: SlruKind,
    cutoff_page: u32,
) -> Result<(), IngestError> {
    for segno in known.slru_segments(b, kind)? {
        let first = segno.wrapping_mul(SLRU_PAGES_PER_SEGMENT);
        let last = first.wrapping_add(SLRU_PAGES_PER_SEGMENT - 1);
        if page_precedes(kind, first, cutoff_page) && page_precedes(kind, last, cutoff_page) {
            known.remove_slru_segment(b, kind, segno)?;
        }
    }
    Ok(())
}

/// `ClogPagePrecedes` / `MultiXactOffsetPagePrecedes` /
/// `MultiXactMemberPagePrecedes`: compare the first entries of both pages
/// circularly (xids, multixact ids and member offsets all wrap at 2^32).
fn page_precedes(kind: SlruKind, page1: u32, page2: u32) -> bool {
    let per_page = match kind {
        SlruKind::Clog => CLOG_XACTS_PER_PAGE,
        SlruKind::MultiXactOffsets => MULTIXACT_OFFSETS_PER_PAGE,
        SlruKind::MultiXactMembers => MULTIXACT_MEMBERS_PER_PAGE,
    };
    let first1 = page1.wrapping_mul(per_page);
    let first2 = page2.wrapping_mul(per_page);
    xid_precedes(first1, first2) && xid_precedes(first1, first2.wrapping_add(per_page - 1))
}

/// `RecordNewMultiXact`: the multixact's starting offset and its members.
pub(crate) fn create_multixact(
    known: &mut Known,
    b: &mut Batch<'_>,
    multi: u32,
    offset: u32,
    members: &[MultiXactMember],
) -> Result<(), IngestError> {
    let position = pg_slru::multixact_offset_position(multi);
    write_slru(
        known,
        b,
        SlruKind::MultiXactOffsets,
        position.page,
        |page| {
            page[position.byte..position.byte + 4].copy_from_slice(&offset.to_le_bytes());
        },
    )?;
    for (i, member) in members.iter().enumerate() {
        let member_offset = offset.wrapping_add(i as u32);
        let (page_no, flags_byte, xid_byte) = pg_slru::multixact_member_position(member_offset);
        // One flag byte per member (`MXACT_MEMBER_BITS_PER_XACT` = 8).
        let flag_at = flags_byte + (member_offset % 4) as usize;
        let status = u8::try_from(member.status)
            .map_err(|_| b.malformed("multixact member status out of range"))?;
        write_slru(known, b, SlruKind::MultiXactMembers, page_no, |page| {
            page[flag_at] = status;
            page[xid_byte..xid_byte + 4].copy_from_slice(&member.xid.to_le_bytes());
        })?;
    }
    Ok(())
}

/// Rewrites an SLRU page in place (creating it as zeros if missing).
fn write_slru(
    known: &mut Known,
    b: &mut Batch<'_>,
    kind: SlruKind,
    page: u32,
    change: impl FnOnce(&mut [u8]),
) -> Result<(), IngestError> {
    let (segno, blkno) = locate(page);
    known.extend_slru_segment(b, kind, segno, blkno + 1)?;
    b.modify_page(Key::slru_block(kind, segno, blkno), change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clog_pages_precede_circularly() {
        assert!(page_precedes(SlruKind::Clog, 0, 1));
        assert!(!page_precedes(SlruKind::Clog, 1, 1));
        assert!(!page_precedes(SlruKind::Clog, 2, 1));
        // 2^32 xids are 131072 CLOG pages: page 131071 precedes page 5 after wraparound.
        assert!(page_precedes(SlruKind::Clog, 131_071, 5));
        assert!(page_precedes(SlruKind::MultiXactOffsets, 10, 11));
    }
}
