//! Redo of GiST records (`gist_redo` in `gistxlog.c`): page updates
//! (delete + insert, or a one-for-one overwrite), insert-time deletion of
//! dead leaf tuples, page splits (each half rebuilt from the logged tuples
//! with its NSN, right link and follow-right flag), page deletion with the
//! parent's downlink, and completing a child's split (follow-right cleared,
//! NSN set to the record's LSN). Page-reuse and assign-LSN records touch no
//! page.
//!
//! Layout: `GISTPageOpaqueData` (16 bytes) in the special space: NSN (as a
//! `PageXLogRecPtr`), right link, flags, page id.

use postgres_wal::rmgr::cursor::BodyCursor;

use crate::btree::posting::index_tuple_size;
use crate::page::{Page, SIZE_OF_PAGE_HEADER};
use crate::{RedoContext, RedoError};

const XLOG_GIST_PAGE_UPDATE: u8 = 0x00;
const XLOG_GIST_DELETE: u8 = 0x10;
const XLOG_GIST_PAGE_REUSE: u8 = 0x20;
const XLOG_GIST_PAGE_SPLIT: u8 = 0x30;
const XLOG_GIST_PAGE_DELETE: u8 = 0x60;
const XLOG_GIST_ASSIGN_LSN: u8 = 0x70;

/// `F_LEAF`.
pub const F_LEAF: u16 = 1 << 0;
const F_DELETED: u16 = 1 << 1;
const F_TUPLES_DELETED: u16 = 1 << 2;
/// `F_FOLLOW_RIGHT`.
pub const F_FOLLOW_RIGHT: u16 = 1 << 3;
/// `F_HAS_GARBAGE`.
pub const F_HAS_GARBAGE: u16 = 1 << 4;
const GIST_PAGE_ID: u16 = 0xFF81;
/// `sizeof(GISTPageOpaqueData)`.
pub const SIZE_OF_GIST_OPAQUE: usize = 16;
/// Offset of `flags` in the special space.
pub const FLAGS_IN_SPECIAL: usize = 12;
const GIST_ROOT_BLKNO: u32 = 0;
const INVALID_BLOCK: u32 = u32::MAX;

/// The GiST special space of a page.
struct Opaque(usize);

impl Opaque {
    fn of(page: &Page<'_>) -> Result<Opaque, RedoError> {
        let special = usize::from(page.special());
        if special + SIZE_OF_GIST_OPAQUE > page.bytes().len() {
            return Err(RedoError::Inconsistent("GiST page without special space"));
        }
        Ok(Opaque(special))
    }
    /// `GistPageSetNSN`: high word first, like a page LSN.
    fn set_nsn(&self, page: &mut Page<'_>, nsn: u64) {
        page.set_u32_at(self.0, (nsn >> 32) as u32);
        page.set_u32_at(self.0 + 4, nsn as u32);
    }
    fn set_rightlink(&self, page: &mut Page<'_>, v: u32) {
        page.set_u32_at(self.0 + 8, v)
    }
    fn flags(&self, page: &Page<'_>) -> u16 {
        page.u16_at(self.0 + FLAGS_IN_SPECIAL)
    }
    fn set_flags(&self, page: &mut Page<'_>, v: u16) {
        page.set_u16_at(self.0 + FLAGS_IN_SPECIAL, v)
    }
    fn update_flags(&self, page: &mut Page<'_>, set: u16, clear: u16) {
        let flags = (self.flags(page) | set) & !clear;
        self.set_flags(page, flags);
    }
}

/// `gistinitpage`.
fn init_page(page: &mut Page<'_>, flags: u16) -> Opaque {
    page.init(SIZE_OF_GIST_OPAQUE);
    let opaque = Opaque(usize::from(page.special()));
    opaque.set_rightlink(page, INVALID_BLOCK);
    opaque.set_flags(page, flags);
    page.set_u16_at(opaque.0 + 14, GIST_PAGE_ID);
    opaque
}

/// Applies a GiST record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let block_id = context.block.block_id;
    match (record.rmgr_info(), block_id) {
        (XLOG_GIST_PAGE_UPDATE, 0) => page_update(page, context),
        (XLOG_GIST_PAGE_UPDATE, 1) | (XLOG_GIST_PAGE_SPLIT, 0) => {
            clear_follow_right(page, record.end_lsn.0)
        }
        (XLOG_GIST_DELETE, 0) => {
            let mut r = BodyCursor::new(&record.main_data, "gistxlogDelete");
            let _latest_removed_xid = r.u32()?;
            let ntodelete = r.u16()?;
            if !r.remaining().is_empty() {
                let todelete = offsets(r.bytes(2 * usize::from(ntodelete))?);
                page.index_multi_delete(&todelete)?;
            }
            Opaque::of(page)?.update_flags(page, F_TUPLES_DELETED, F_HAS_GARBAGE);
            Ok(())
        }
        (XLOG_GIST_PAGE_SPLIT, _) => split_page(page, context),
        (XLOG_GIST_PAGE_DELETE, 0 | 1) => {
            let mut r = BodyCursor::new(&record.main_data, "gistxlogPageDelete");
            let delete_xid = r.u64()?;
            let downlink = r.u16()?;
            if block_id == 0 {
                // `GistPageSetDeleted` on the (empty) leaf.
                Opaque::of(page)?.update_flags(page, F_DELETED, 0);
                page.set_lower((SIZE_OF_PAGE_HEADER + 8) as u16);
                page.bytes_mut()[SIZE_OF_PAGE_HEADER..SIZE_OF_PAGE_HEADER + 8]
                    .copy_from_slice(&delete_xid.to_le_bytes());
            } else {
                page.index_tuple_delete(downlink)?;
            }
            Ok(())
        }
        (XLOG_GIST_PAGE_REUSE | XLOG_GIST_ASSIGN_LSN | XLOG_GIST_PAGE_DELETE, block_id) => {
            Err(RedoError::NoBlock(block_id))
        }
        (XLOG_GIST_PAGE_UPDATE | XLOG_GIST_DELETE, block_id) => Err(RedoError::NoBlock(block_id)),
        (info, _) => Err(RedoError::Unsupported { rmgr: "Gist", info }),
    }
}

/// `gistRedoClearFollowRight`.
fn clear_follow_right(page: &mut Page<'_>, lsn: u64) -> Result<(), RedoError> {
    let opaque = Opaque::of(page)?;
    opaque.set_nsn(page, lsn);
    opaque.update_flags(page, 0, F_FOLLOW_RIGHT);
    Ok(())
}

fn offsets(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Splits packed index tuples (each `IndexTupleSize` long).
fn tuples(data: &[u8]) -> Result<Vec<&[u8]>, RedoError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = index_tuple_size(&data[at..])?;
        let tuple = data
            .get(at..at + size)
            .ok_or(RedoError::Inconsistent("GiST tuple truncated"))?;
        out.push(tuple);
        at += size;
    }
    Ok(out)
}

/// `gistfillbuffer` from `off`, or after the last item when `None`.
fn fill(page: &mut Page<'_>, items: &[&[u8]], off: Option<u16>) -> Result<(), RedoError> {
    let first = off.unwrap_or_else(|| page.max_offset() + 1);
    for (off, item) in (first..).zip(items) {
        page.add_item(item, off, false, false)?;
    }
    Ok(())
}

/// `gistRedoPageUpdateRecord` on block 0.
fn page_update(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "gistxlogPageUpdate");
    let ntodelete = r.u16()?;
    let ntoinsert = r.u16()?;
    let mut d = BodyCursor::new(context.data(), "GiST page update data");
    if ntodelete == 1 && ntoinsert == 1 {
        let offnum = d.u16()?;
        let rest = d.remaining();
        let size = index_tuple_size(rest)?;
        let tuple = rest
            .get(..size)
            .ok_or(RedoError::Inconsistent("GiST tuple truncated"))?;
        page.index_tuple_overwrite(offnum, tuple)?;
        return Ok(());
    }
    if ntodelete > 0 {
        let todelete = offsets(d.bytes(2 * usize::from(ntodelete))?);
        page.index_multi_delete(&todelete)?;
        let opaque = Opaque::of(page)?;
        if opaque.flags(page) & F_LEAF != 0 {
            opaque.update_flags(page, F_TUPLES_DELETED, 0);
        }
    }
    fill(page, &tuples(d.remaining())?, None)
}

/// `gistRedoPageSplitRecord` for one of the split pages (blocks 1..=npage).
fn split_page(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let mut r = BodyCursor::new(&record.main_data, "gistxlogPageSplit");
    let origrlink = r.u32()?;
    r.align(8)?;
    let orignsn = r.u64()?;
    let origleaf = r.bool()?;
    r.align(2)?;
    let npage = r.u16()?;
    let markfollowright = r.bool()?;
    let block_id = context.block.block_id;
    let i = u16::from(block_id)
        .checked_sub(1)
        .ok_or(RedoError::NoBlock(block_id))?;
    if i >= npage {
        return Err(RedoError::NoBlock(block_id));
    }
    let blkno = context.block.blkno;
    let is_root_split = record
        .block(1)
        .is_some_and(|first| first.blkno == GIST_ROOT_BLKNO);
    let mut d = BodyCursor::new(context.data(), "GiST split page data");
    let num = d.i32()?;
    let items = tuples(d.remaining())?;
    if usize::try_from(num).ok() != Some(items.len()) {
        return Err(RedoError::Inconsistent("GiST split tuple count"));
    }
    let flags = if origleaf && blkno != GIST_ROOT_BLKNO {
        F_LEAF
    } else {
        0
    };
    let opaque = init_page(page, flags);
    fill(page, &items, Some(1))?;
    opaque.set_nsn(page, orignsn);
    if blkno == GIST_ROOT_BLKNO {
        opaque.set_rightlink(page, INVALID_BLOCK);
        return Ok(());
    }
    let last = i + 1 == npage;
    let rightlink = if last {
        origrlink
    } else {
        let next = block_id.saturating_add(1);
        record.block(next).ok_or(RedoError::NoBlock(next))?.blkno
    };
    opaque.set_rightlink(page, rightlink);
    if !last && !is_root_split && markfollowright {
        opaque.update_flags(page, F_FOLLOW_RIGHT, 0);
    }
    Ok(())
}
