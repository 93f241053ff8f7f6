//! Redo of GIN records (`gin_redo` in `ginxlog.c`): posting-tree creation,
//! inserts into entry pages and data pages (leaf recompression actions or
//! internal posting items) with the child's incomplete-split flag cleared,
//! data-leaf vacuum, posting-tree page deletion, and the fast-update
//! pending list (metapage updates, list page inserts and deletes). Splits
//! and entry-page vacuum carry full-page images; only their child flag is
//! redone here.
//!
//! Layout: `GinPageOpaqueData` (8 bytes: right link, maxoff, flags) in the
//! special space; data pages hold a right-bound TID at 24 and their items
//! (posting items or compressed posting-list segments, see [`posting`])
//! from 32 up to `pd_lower`.

mod posting;

use postgres_wal::rmgr::cursor::BodyCursor;

use crate::btree::posting::index_tuple_size;
use crate::page::{Page, SIZE_OF_PAGE_HEADER};
use crate::{RedoContext, RedoError};

const XLOG_GIN_CREATE_PTREE: u8 = 0x10;
const XLOG_GIN_INSERT: u8 = 0x20;
const XLOG_GIN_SPLIT: u8 = 0x30;
const XLOG_GIN_VACUUM_PAGE: u8 = 0x40;
const XLOG_GIN_DELETE_PAGE: u8 = 0x50;
const XLOG_GIN_UPDATE_META_PAGE: u8 = 0x60;
const XLOG_GIN_INSERT_LISTPAGE: u8 = 0x70;
const XLOG_GIN_DELETE_LISTPAGE: u8 = 0x80;
const XLOG_GIN_VACUUM_DATA_LEAF_PAGE: u8 = 0x90;

const GIN_INSERT_ISDATA: u16 = 0x01;
const GIN_INSERT_ISLEAF: u16 = 0x02;

const GIN_DATA: u16 = 1 << 0;
const GIN_LEAF: u16 = 1 << 1;
/// `GIN_DELETED`: masking hides the whole content of such pages.
pub const GIN_DELETED: u16 = 1 << 2;
const GIN_META: u16 = 1 << 3;
const GIN_LIST: u16 = 1 << 4;
const GIN_LIST_FULLROW: u16 = 1 << 5;
const GIN_INCOMPLETE_SPLIT: u16 = 1 << 6;
const GIN_COMPRESSED: u16 = 1 << 7;
/// `sizeof(GinPageOpaqueData)`.
pub const SIZE_OF_GIN_OPAQUE: usize = 8;
/// Offset of `flags` in the special space.
pub const FLAGS_IN_SPECIAL: usize = 6;
const INVALID_BLOCK: u32 = u32::MAX;
/// `sizeof(GinMetaPageData)`.
const SIZE_OF_GIN_META: usize = 56;
/// Start of a data page's items: contents + MAXALIGNed right bound.
const DATA_START: usize = SIZE_OF_PAGE_HEADER + 8;
/// `sizeof(PostingItem)`.
const SIZE_OF_POSTING_ITEM: usize = 10;

const GIN_SEGMENT_DELETE: u8 = 1;
const GIN_SEGMENT_INSERT: u8 = 2;
const GIN_SEGMENT_REPLACE: u8 = 3;
const GIN_SEGMENT_ADDITEMS: u8 = 4;

/// The GIN special space of a page.
struct Opaque(usize);

impl Opaque {
    fn of(page: &Page<'_>) -> Result<Opaque, RedoError> {
        let special = usize::from(page.special());
        if special + SIZE_OF_GIN_OPAQUE > page.bytes().len() || special < DATA_START {
            return Err(RedoError::Inconsistent("GIN page without special space"));
        }
        Ok(Opaque(special))
    }
    fn set_rightlink(&self, page: &mut Page<'_>, v: u32) {
        page.set_u32_at(self.0, v)
    }
    fn maxoff(&self, page: &Page<'_>) -> u16 {
        page.u16_at(self.0 + 4)
    }
    fn set_maxoff(&self, page: &mut Page<'_>, v: u16) {
        page.set_u16_at(self.0 + 4, v)
    }
    fn flags(&self, page: &Page<'_>) -> u16 {
        page.u16_at(self.0 + FLAGS_IN_SPECIAL)
    }
    fn update_flags(&self, page: &mut Page<'_>, set: u16, clear: u16) {
        let flags = (self.flags(page) | set) & !clear;
        page.set_u16_at(self.0 + FLAGS_IN_SPECIAL, flags);
    }
}

/// `GinInitPage`.
fn init_page(page: &mut Page<'_>, flags: u16) -> Opaque {
    page.init(SIZE_OF_GIN_OPAQUE);
    let opaque = Opaque(usize::from(page.special()));
    opaque.update_flags(page, flags, 0);
    opaque.set_rightlink(page, INVALID_BLOCK);
    opaque
}

/// `GinInitMetabuffer` followed by copying the logged `GinMetaPageData`.
fn restore_meta(page: &mut Page<'_>, metadata: &[u8]) -> Result<(), RedoError> {
    let metadata = metadata
        .get(..SIZE_OF_GIN_META)
        .ok_or(RedoError::Inconsistent("GIN metadata truncated"))?;
    init_page(page, GIN_META);
    let at = SIZE_OF_PAGE_HEADER;
    page.bytes_mut()[at..at + SIZE_OF_GIN_META].copy_from_slice(metadata);
    page.set_lower((at + SIZE_OF_GIN_META) as u16);
    Ok(())
}

/// `GinDataPageSetDataSize`.
fn set_data_size(page: &mut Page<'_>, size: usize) -> Result<(), RedoError> {
    let lower = DATA_START + size;
    if lower > usize::from(page.special()) {
        return Err(RedoError::Inconsistent("GIN data beyond the special space"));
    }
    page.set_lower(lower as u16);
    Ok(())
}

fn block_number(bytes: &[u8]) -> Result<u32, RedoError> {
    let mut r = BodyCursor::new(bytes, "BlockIdData");
    let (hi, lo) = (r.u16()?, r.u16()?);
    Ok((u32::from(hi) << 16) | u32::from(lo))
}

fn write_block_number(page: &mut Page<'_>, at: usize, block: u32) {
    page.set_u16_at(at, (block >> 16) as u16);
    page.set_u16_at(at + 2, block as u16);
}

/// Applies a GIN record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let main = &record.main_data;
    let block_id = context.block.block_id;
    match (record.rmgr_info(), block_id) {
        (XLOG_GIN_CREATE_PTREE, 0) => {
            let size = BodyCursor::new(main, "ginxlogCreatePostingTree").u32()? as usize;
            let data = main
                .get(4..4 + size)
                .ok_or(RedoError::Inconsistent("GIN posting tree data truncated"))?;
            init_page(page, GIN_DATA | GIN_LEAF | GIN_COMPRESSED);
            set_data_size(page, size)?;
            page.bytes_mut()[DATA_START..DATA_START + size].copy_from_slice(data);
            Ok(())
        }
        (XLOG_GIN_INSERT, 0) => insert(page, context),
        (XLOG_GIN_INSERT, 1) | (XLOG_GIN_SPLIT, 3) => {
            Opaque::of(page)?.update_flags(page, 0, GIN_INCOMPLETE_SPLIT);
            Ok(())
        }
        (XLOG_GIN_SPLIT | XLOG_GIN_VACUUM_PAGE, _) => Err(RedoError::Inconsistent(
            "GIN split/vacuum record without a full-page image",
        )),
        (XLOG_GIN_VACUUM_DATA_LEAF_PAGE, 0) => recompress(page, context.data()),
        (XLOG_GIN_DELETE_PAGE, _) => delete_page(page, context),
        (XLOG_GIN_UPDATE_META_PAGE, _) => update_meta(page, context),
        (XLOG_GIN_INSERT_LISTPAGE, 0) => {
            let mut r = BodyCursor::new(main, "ginxlogInsertListPage");
            let rightlink = r.u32()?;
            let ntuples = r.i32()?;
            let opaque = init_page(page, GIN_LIST);
            opaque.set_rightlink(page, rightlink);
            if rightlink == INVALID_BLOCK {
                opaque.update_flags(page, GIN_LIST_FULLROW, 0);
                opaque.set_maxoff(page, 1);
            }
            add_tuples(page, context.data(), ntuples)
        }
        (XLOG_GIN_DELETE_LISTPAGE, 0) => restore_meta(page, main),
        (XLOG_GIN_DELETE_LISTPAGE, _) => {
            init_page(page, GIN_DELETED);
            Ok(())
        }
        (XLOG_GIN_CREATE_PTREE..=XLOG_GIN_VACUUM_DATA_LEAF_PAGE, block_id) => {
            Err(RedoError::NoBlock(block_id))
        }
        (info, _) => Err(RedoError::Unsupported { rmgr: "Gin", info }),
    }
}

/// Adds `ntuples` packed index tuples after the page's last item.
fn add_tuples(page: &mut Page<'_>, data: &[u8], ntuples: i32) -> Result<(), RedoError> {
    let first = page.max_offset() + 1;
    let mut at = 0;
    for off in (first..).take(usize::try_from(ntuples).unwrap_or(0)) {
        let rest = data
            .get(at..)
            .ok_or(RedoError::Inconsistent("GIN tuples truncated"))?;
        let size = index_tuple_size(rest)?;
        let tuple = rest
            .get(..size)
            .ok_or(RedoError::Inconsistent("GIN tuple truncated"))?;
        page.add_item(tuple, off, false, false)?;
        at += size;
    }
    Ok(())
}

/// `ginRedoInsert` on block 0.
fn insert(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let main = &context.record.main_data;
    let flags = BodyCursor::new(main, "ginxlogInsert").u16()?;
    let is_leaf = flags & GIN_INSERT_ISLEAF != 0;
    let right_child = if is_leaf {
        INVALID_BLOCK
    } else {
        block_number(main.get(6..).unwrap_or_default())?
    };
    let data = context.data();
    if flags & GIN_INSERT_ISDATA != 0 {
        if is_leaf {
            return recompress(page, data);
        }
        let mut r = BodyCursor::new(data, "ginxlogInsertDataInternal");
        let offset = r.u16()?;
        let item = r.bytes(SIZE_OF_POSTING_ITEM)?;
        return insert_posting_item(page, offset, item, right_child);
    }
    let mut r = BodyCursor::new(data, "ginxlogInsertEntry");
    let offset = r.u16()?;
    let is_delete = r.bool()?;
    r.skip(1)?;
    let rest = r.remaining();
    let tuple = rest
        .get(..index_tuple_size(rest)?)
        .ok_or(RedoError::Inconsistent("GIN entry tuple truncated"))?;
    if right_child != INVALID_BLOCK {
        // GinSetDownlink on the tuple that pointed at the split child.
        let at = page.normal_item(offset, 8)?;
        write_block_number(page, at, right_child);
        page.set_u16_at(at + 4, 0);
    }
    if is_delete {
        page.index_tuple_delete(offset)?;
    }
    page.add_item(tuple, offset, false, false)?;
    Ok(())
}

/// Byte offset of posting item `offset` (1-based) on a data page.
fn posting_item_at(offset: u32) -> Result<usize, RedoError> {
    let index = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .checked_sub(1)
        .ok_or(RedoError::Inconsistent("GIN posting item offset 0"))?;
    Ok(DATA_START + index * SIZE_OF_POSTING_ITEM)
}

/// Internal data page insert: the old item now points at the split's right
/// half, the new item (pointing at the left half) goes in at `offset`.
fn insert_posting_item(
    page: &mut Page<'_>,
    offset: u16,
    item: &[u8],
    right_child: u32,
) -> Result<(), RedoError> {
    let opaque = Opaque::of(page)?;
    let maxoff = opaque.maxoff(page);
    if offset == 0 || offset > maxoff.saturating_add(1) {
        return Err(RedoError::Inconsistent(
            "GIN posting item offset out of range",
        ));
    }
    let end = posting_item_at(u32::from(maxoff) + 1)?;
    let at = posting_item_at(u32::from(offset))?;
    if end + SIZE_OF_POSTING_ITEM > opaque.0 {
        return Err(RedoError::Inconsistent("GIN internal data page full"));
    }
    if offset <= maxoff {
        write_block_number(page, at, right_child);
    }
    page.bytes_mut()
        .copy_within(at..end, at + SIZE_OF_POSTING_ITEM);
    page.bytes_mut()[at..at + SIZE_OF_POSTING_ITEM].copy_from_slice(item);
    opaque.set_maxoff(page, maxoff + 1);
    set_data_size(page, (usize::from(maxoff) + 1) * SIZE_OF_POSTING_ITEM)
}

/// `ginRedoRecompress`: apply segment actions to a compressed data leaf.
/// Segments before the first action stay in place; everything from there
/// on is rewritten (bytes past the new `pd_lower` are unused space).
fn recompress(page: &mut Page<'_>, data: &[u8]) -> Result<(), RedoError> {
    let opaque = Opaque::of(page)?;
    if opaque.flags(page) & GIN_COMPRESSED == 0 {
        return Err(RedoError::Inconsistent(
            "uncompressed (pre-9.4) GIN data leaf",
        ));
    }
    let lower = usize::from(page.lower());
    let old = page
        .bytes()
        .get(DATA_START..lower)
        .ok_or(RedoError::Inconsistent("GIN data leaf pd_lower"))?
        .to_vec();
    let mut segments = Vec::new();
    let mut at = 0;
    while at < old.len() {
        let size = posting::segment_size(&old[at..])?;
        segments.push(&old[at..at + size]);
        at += size;
    }
    let mut out: Vec<u8> = Vec::with_capacity(old.len() + 64);
    let mut next = 0usize;
    let mut r = BodyCursor::new(data, "ginxlogRecompressDataLeaf");
    let nactions = r.u16()?;
    for _ in 0..nactions {
        let segno = usize::from(r.u8()?);
        let action = r.u8()?;
        if segno < next {
            return Err(RedoError::Inconsistent("GIN segment actions out of order"));
        }
        while next < segno {
            let seg = segments
                .get(next)
                .ok_or(RedoError::Inconsistent("GIN segment number past the end"))?;
            out.extend_from_slice(seg);
            next += 1;
        }
        match action {
            GIN_SEGMENT_DELETE => next += 1,
            GIN_SEGMENT_INSERT | GIN_SEGMENT_REPLACE => {
                let rest = r.remaining();
                let size = posting::segment_size(rest)?;
                out.extend_from_slice(r.bytes(size)?);
                if action == GIN_SEGMENT_REPLACE {
                    next += 1;
                }
            }
            GIN_SEGMENT_ADDITEMS => {
                let nitems = usize::from(r.u16()?);
                let raw = r.bytes(6 * nitems)?;
                let items = raw
                    .chunks_exact(6)
                    .map(posting::read_tid)
                    .collect::<Result<Vec<_>, _>>()?;
                let seg = segments.get(next).ok_or(RedoError::Inconsistent(
                    "GIN add-items past the last segment",
                ))?;
                let merged = posting::merge(&items, &posting::decode_segment(seg)?);
                out.extend_from_slice(&posting::encode_segment(&merged)?);
                next += 1;
            }
            _ => return Err(RedoError::Inconsistent("unknown GIN segment action")),
        }
    }
    for seg in segments.iter().skip(next) {
        out.extend_from_slice(seg);
    }
    set_data_size(page, out.len())?;
    page.bytes_mut()[DATA_START..DATA_START + out.len()].copy_from_slice(&out);
    Ok(())
}

/// `ginRedoDeletePage`: block 0 the deleted page, 1 its parent, 2 its left
/// sibling.
fn delete_page(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "ginxlogDeletePage");
    let parent_offset = r.u16()?;
    r.align(4)?;
    let right_link = r.u32()?;
    let delete_xid = r.u32()?;
    let opaque = Opaque::of(page)?;
    match context.block.block_id {
        0 => {
            opaque.update_flags(page, GIN_DELETED, 0);
            page.set_prune_xid(delete_xid);
            Ok(())
        }
        1 => {
            let maxoff = opaque.maxoff(page);
            if parent_offset == 0 || parent_offset > maxoff {
                return Err(RedoError::Inconsistent("GIN parent offset out of range"));
            }
            let at = posting_item_at(u32::from(parent_offset))?;
            let end = posting_item_at(u32::from(maxoff) + 1)?;
            if end > opaque.0 {
                return Err(RedoError::Inconsistent(
                    "GIN posting items overrun the page",
                ));
            }
            page.bytes_mut()
                .copy_within(at + SIZE_OF_POSTING_ITEM..end, at);
            opaque.set_maxoff(page, maxoff - 1);
            set_data_size(page, usize::from(maxoff - 1) * SIZE_OF_POSTING_ITEM)
        }
        2 => {
            opaque.set_rightlink(page, right_link);
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

/// `ginRedoUpdateMetapage`: block 0 the metapage (always rebuilt), block 1
/// the pending list's tail (tuples appended, or a new right link).
fn update_meta(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let main = &context.record.main_data;
    let mut r = BodyCursor::new(main, "ginxlogUpdateMeta");
    r.seek(16)?;
    let metadata = r.bytes(SIZE_OF_GIN_META)?;
    let prev_tail = r.u32()?;
    let new_rightlink = r.u32()?;
    let ntuples = r.i32()?;
    match context.block.block_id {
        0 => restore_meta(page, metadata),
        1 if ntuples > 0 => {
            add_tuples(page, context.data(), ntuples)?;
            let opaque = Opaque::of(page)?;
            let maxoff = opaque.maxoff(page).wrapping_add(1);
            opaque.set_maxoff(page, maxoff);
            Ok(())
        }
        1 if prev_tail != INVALID_BLOCK => {
            Opaque::of(page)?.set_rightlink(page, new_rightlink);
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}
