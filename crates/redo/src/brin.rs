//! Redo of BRIN records (`brin_xlog.c`): index creation (metapage), tuple
//! insert/update/same-page update with the matching revmap entry, revmap
//! extension and desummarization.

use postgres_wal::rmgr::cursor::BodyCursor;

use crate::page::Page;
use crate::{RedoContext, RedoError};

const XLOG_BRIN_CREATE_INDEX: u8 = 0x00;
const XLOG_BRIN_INSERT: u8 = 0x10;
const XLOG_BRIN_UPDATE: u8 = 0x20;
const XLOG_BRIN_SAMEPAGE_UPDATE: u8 = 0x30;
const XLOG_BRIN_REVMAP_EXTEND: u8 = 0x40;
const XLOG_BRIN_DESUMMARIZE: u8 = 0x50;
const XLOG_BRIN_OPMASK: u8 = 0x70;
const XLOG_BRIN_INIT_PAGE: u8 = 0x80;

/// `BRIN_PAGETYPE_META`.
pub const BRIN_PAGETYPE_META: u16 = 0xF091;
/// `BRIN_PAGETYPE_REVMAP`.
pub const BRIN_PAGETYPE_REVMAP: u16 = 0xF092;
/// `BRIN_PAGETYPE_REGULAR`.
pub const BRIN_PAGETYPE_REGULAR: u16 = 0xF093;
/// `BRIN_EVACUATE_PAGE` (a page flag set without WAL).
pub const BRIN_EVACUATE_PAGE: u16 = 1;
const BRIN_META_MAGIC: u32 = 0xA810_9CFA;
/// `REVMAP_PAGE_MAXITEMS` for 8 kB pages.
const REVMAP_PAGE_MAXITEMS: u32 = 1360;
/// Offset of the page type in the special space (`vector[3]`).
pub const TYPE_IN_SPECIAL: usize = 6;
/// Offset of the page flags in the special space (`vector[2]`).
pub const FLAGS_IN_SPECIAL: usize = 4;

/// `brin_page_init`.
fn page_init(page: &mut Page<'_>, page_type: u16) {
    page.init(8);
    let special = usize::from(page.special());
    page.set_u16_at(special + TYPE_IN_SPECIAL, page_type);
}

/// `brinSetHeapBlockItemptr`: point the revmap entry of `heap_block`'s
/// range at (`block`, `offset`), or invalidate it when `None`.
fn set_revmap_entry(
    page: &mut Page<'_>,
    pages_per_range: u32,
    heap_block: u32,
    target: Option<(u32, u16)>,
) -> Result<(), RedoError> {
    if pages_per_range == 0 {
        return Err(RedoError::Inconsistent("pagesPerRange is zero"));
    }
    let index = (heap_block / pages_per_range) % REVMAP_PAGE_MAXITEMS;
    let at = 24 + 6 * index as usize;
    let (block, offset) = target.unwrap_or((u32::MAX, 0));
    crate::tuple::write_ctid(page.bytes_mut(), at, block, offset);
    Ok(())
}

/// Applies a BRIN record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let mut r = BodyCursor::new(&record.main_data, "BRIN record");
    let block_id = context.block.block_id;
    match (record.info & XLOG_BRIN_OPMASK, block_id) {
        (XLOG_BRIN_CREATE_INDEX, 0) => {
            let pages_per_range = r.u32()?;
            let version = r.u16()?;
            page_init(page, BRIN_PAGETYPE_META);
            for (i, value) in [BRIN_META_MAGIC, u32::from(version), pages_per_range, 0]
                .iter()
                .enumerate()
            {
                page.set_u32_at(24 + 4 * i, *value);
            }
            page.set_lower(24 + 16);
            Ok(())
        }
        (XLOG_BRIN_INSERT, _) => insert_update(page, context, &mut r),
        (XLOG_BRIN_UPDATE, 2) => {
            let old_offnum = r.u16()?;
            page.index_tuple_delete_no_compact(old_offnum)?;
            Ok(())
        }
        (XLOG_BRIN_UPDATE, _) => {
            r.u16()?;
            r.align(4)?;
            insert_update(page, context, &mut r)
        }
        (XLOG_BRIN_SAMEPAGE_UPDATE, 0) => {
            let offnum = r.u16()?;
            page.index_tuple_overwrite(offnum, context.data())?;
            Ok(())
        }
        (XLOG_BRIN_REVMAP_EXTEND, 0) => {
            let target = r.u32()?;
            page.set_u32_at(24 + 12, target);
            page.set_lower(24 + 16);
            Ok(())
        }
        (XLOG_BRIN_REVMAP_EXTEND, 1) => {
            page_init(page, BRIN_PAGETYPE_REVMAP);
            Ok(())
        }
        (XLOG_BRIN_DESUMMARIZE, 0) => {
            let pages_per_range = r.u32()?;
            let heap_block = r.u32()?;
            set_revmap_entry(page, pages_per_range, heap_block, None)
        }
        (XLOG_BRIN_DESUMMARIZE, 1) => {
            r.u32()?;
            r.u32()?;
            let reg_offset = r.u16()?;
            page.index_tuple_delete_no_compact(reg_offset)?;
            Ok(())
        }
        (_, block_id) => Err(RedoError::NoBlock(block_id)),
    }
}

/// `brin_xlog_insert_update`: block 0 gets the tuple, block 1 (revmap) the
/// pointer to it. `r` is positioned at the `xl_brin_insert`.
fn insert_update(
    page: &mut Page<'_>,
    context: &RedoContext<'_>,
    r: &mut BodyCursor<'_>,
) -> Result<(), RedoError> {
    let heap_block = r.u32()?;
    let pages_per_range = r.u32()?;
    let offnum = r.u16()?;
    match context.block.block_id {
        0 => {
            if context.record.info & XLOG_BRIN_INIT_PAGE != 0 {
                page_init(page, BRIN_PAGETYPE_REGULAR);
            }
            if page.max_offset() + 1 < offnum {
                return Err(RedoError::Inconsistent("invalid max offset number"));
            }
            page.add_item(context.data(), offnum, true, false)?;
            Ok(())
        }
        1 => {
            let regular = context.record.block(0).ok_or(RedoError::NoBlock(0))?;
            set_revmap_entry(
                page,
                pages_per_range,
                heap_block,
                Some((regular.blkno, offnum)),
            )
        }
        other => Err(RedoError::NoBlock(other)),
    }
}
