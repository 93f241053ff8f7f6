//! Redo of BTREE records (`btree_redo` in `nbtxlog.c`): inserts (incl.
//! posting-list splits), page splits, deduplication, vacuum/delete with
//! posting-list updates, half-dead marking and unlinking, new roots and
//! metapage rewrites. Reuse-page records touch no page.
//!
//! Index tuples are handled as raw bytes with the PG15 nbtree layout
//! (`IndexTupleData` + posting lists); see [`posting`] for those helpers.

pub(crate) mod posting;

use postgres_wal::rmgr::btree::{
    dedup_intervals, delete_plan, BtreeMetadata, BtreeRecord, BtreeSplit, DedupInterval,
    XLOG_BTREE_INSERT_POST, XLOG_BTREE_SPLIT_L,
};

use crate::page::{maxalign, Page};
use crate::{RedoContext, RedoError};
use posting::{index_tuple_size, DedupState};

pub const BTP_LEAF: u16 = 1 << 0;
pub const BTP_ROOT: u16 = 1 << 1;
pub const BTP_DELETED: u16 = 1 << 2;
pub const BTP_META: u16 = 1 << 3;
pub const BTP_HALF_DEAD: u16 = 1 << 4;
pub const BTP_SPLIT_END: u16 = 1 << 5;
pub const BTP_HAS_GARBAGE: u16 = 1 << 6;
pub const BTP_INCOMPLETE_SPLIT: u16 = 1 << 7;
pub const BTP_HAS_FULLXID: u16 = 1 << 8;
/// `sizeof(BTPageOpaqueData)`.
pub const SIZE_OF_BT_OPAQUE: usize = 16;
/// `BTREE_MAGIC`.
pub const BTREE_MAGIC: u32 = 0x053162;
const P_NONE: u32 = 0;
const P_HIKEY: u16 = 1;

/// The btree special space (`BTPageOpaqueData`) of a page.
struct Opaque(usize);

impl Opaque {
    fn of(page: &Page<'_>) -> Result<Opaque, RedoError> {
        let special = usize::from(page.special());
        if special + SIZE_OF_BT_OPAQUE > page.bytes().len() {
            return Err(RedoError::Inconsistent("btree page without special space"));
        }
        Ok(Opaque(special))
    }
    fn set_prev(&self, page: &mut Page<'_>, v: u32) {
        page.set_u32_at(self.0, v)
    }
    fn next(&self, page: &Page<'_>) -> u32 {
        page.u32_at(self.0 + 4)
    }
    fn set_next(&self, page: &mut Page<'_>, v: u32) {
        page.set_u32_at(self.0 + 4, v)
    }
    fn set_level(&self, page: &mut Page<'_>, v: u32) {
        page.set_u32_at(self.0 + 8, v)
    }
    fn flags(&self, page: &Page<'_>) -> u16 {
        page.u16_at(self.0 + 12)
    }
    fn set_flags(&self, page: &mut Page<'_>, v: u16) {
        page.set_u16_at(self.0 + 12, v)
    }
    fn set_cycleid(&self, page: &mut Page<'_>, v: u16) {
        page.set_u16_at(self.0 + 14, v)
    }
    /// `P_FIRSTDATAKEY`: the high key occupies offset 1 unless rightmost.
    fn first_data_key(&self, page: &Page<'_>) -> u16 {
        if self.next(page) == P_NONE {
            1
        } else {
            2
        }
    }
}

/// `_bt_pageinit` plus the special-space fields every redo routine sets.
fn init_page(page: &mut Page<'_>, prev: u32, next: u32, level: u32, flags: u16) -> Opaque {
    page.init(SIZE_OF_BT_OPAQUE);
    let opaque = Opaque(usize::from(page.special()));
    opaque.set_prev(page, prev);
    opaque.set_next(page, next);
    opaque.set_level(page, level);
    opaque.set_flags(page, flags);
    opaque.set_cycleid(page, 0);
    opaque
}

/// Applies a BTREE record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let info = record.rmgr_info();
    let block_id = context.block.block_id;
    match (
        BtreeRecord::parse(record.info, &record.main_data)?,
        block_id,
    ) {
        (BtreeRecord::Insert { offnum }, 0) => {
            insert(page, context.data(), offnum, info == XLOG_BTREE_INSERT_POST)
        }
        (BtreeRecord::Insert { .. }, 1) => clear_incomplete_split(page),
        (BtreeRecord::Insert { .. }, 2) => restore_meta(page, context.data()),
        (BtreeRecord::Split(split), 0) => {
            let right = record.block(1).ok_or(RedoError::NoBlock(1))?.blkno;
            split_left(
                page,
                context.data(),
                &split,
                info == XLOG_BTREE_SPLIT_L,
                right,
            )
        }
        (BtreeRecord::Split(split), 1) => {
            let orig = record.block(0).ok_or(RedoError::NoBlock(0))?.blkno;
            let sibling = record.block(2).map_or(P_NONE, |b| b.blkno);
            let flags = if split.level == 0 { BTP_LEAF } else { 0 };
            init_page(page, orig, sibling, split.level, flags);
            restore_items(page, context.data())
        }
        (BtreeRecord::Split(_), 2) => {
            let right = record.block(1).ok_or(RedoError::NoBlock(1))?.blkno;
            Opaque::of(page)?.set_prev(page, right);
            Ok(())
        }
        (BtreeRecord::Split(_), 3) => clear_incomplete_split(page),
        (BtreeRecord::Dedup { nintervals }, 0) => {
            dedup(page, &dedup_intervals(context.data(), nintervals)?)
        }
        (BtreeRecord::Vacuum { ndeleted, nupdated }, 0)
        | (
            BtreeRecord::Delete {
                ndeleted, nupdated, ..
            },
            0,
        ) => vacuum(page, context.data(), ndeleted, nupdated),
        (BtreeRecord::MarkPageHalfdead(rec), 1) => remove_downlink(page, rec.poffset),
        (BtreeRecord::MarkPageHalfdead(rec), 0) => {
            init_half_dead_leaf(page, rec.leftblk, rec.rightblk, rec.topparent)
        }
        (BtreeRecord::UnlinkPage(rec), 1) => {
            Opaque::of(page)?.set_next(page, rec.rightsib);
            Ok(())
        }
        (BtreeRecord::UnlinkPage(rec), 0) => {
            let opaque = init_page(page, rec.leftsib, rec.rightsib, rec.level, 0);
            let leaf = if rec.level == 0 { BTP_LEAF } else { 0 };
            opaque.set_flags(page, BTP_DELETED | BTP_HAS_FULLXID | leaf);
            page.set_lower(32);
            page.set_upper(page.special());
            page.bytes_mut()[24..32].copy_from_slice(&rec.safexid.to_le_bytes());
            Ok(())
        }
        (BtreeRecord::UnlinkPage(rec), 2) => {
            Opaque::of(page)?.set_prev(page, rec.leftsib);
            Ok(())
        }
        (BtreeRecord::UnlinkPage(rec), 3) => {
            init_half_dead_leaf(page, rec.leafleftsib, rec.leafrightsib, rec.leaftopparent)
        }
        (BtreeRecord::UnlinkPage(_), 4) => restore_meta(page, context.data()),
        (BtreeRecord::NewRoot { level, .. }, 0) => {
            let flags = BTP_ROOT | if level == 0 { BTP_LEAF } else { 0 };
            init_page(page, P_NONE, P_NONE, level, flags);
            if level > 0 {
                restore_items(page, context.data())?;
            }
            Ok(())
        }
        (BtreeRecord::NewRoot { .. }, 1) => clear_incomplete_split(page),
        (BtreeRecord::NewRoot { .. }, 2) => restore_meta(page, context.data()),
        (BtreeRecord::MetaCleanup, 0) => restore_meta(page, context.data()),
        (_, block_id) => Err(RedoError::NoBlock(block_id)),
    }
}

fn clear_incomplete_split(page: &mut Page<'_>) -> Result<(), RedoError> {
    let opaque = Opaque::of(page)?;
    let flags = opaque.flags(page) & !BTP_INCOMPLETE_SPLIT;
    opaque.set_flags(page, flags);
    Ok(())
}

/// `_bt_restore_meta`: rebuild the metapage from `xl_btree_metadata`.
fn restore_meta(page: &mut Page<'_>, data: &[u8]) -> Result<(), RedoError> {
    let meta = BtreeMetadata::parse(data)?;
    let opaque = init_page(page, 0, 0, 0, BTP_META);
    let _ = opaque;
    let fields = [
        BTREE_MAGIC,
        meta.version,
        meta.root,
        meta.level,
        meta.fastroot,
        meta.fastlevel,
        meta.last_cleanup_num_delpages,
    ];
    for (i, value) in fields.iter().enumerate() {
        page.set_u32_at(24 + 4 * i, *value);
    }
    page.bytes_mut()[56..64].copy_from_slice(&(-1.0f64).to_le_bytes());
    page.bytes_mut()[64] = u8::from(meta.allequalimage);
    page.set_lower(24 + 48);
    Ok(())
}

/// `_bt_restore_page`: add the logged (MAXALIGNed) tuples at offsets 1..n.
fn restore_items(page: &mut Page<'_>, data: &[u8]) -> Result<(), RedoError> {
    let mut items = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = maxalign(index_tuple_size(&data[at..])?);
        let item = data
            .get(at..at + size)
            .ok_or(RedoError::Inconsistent("truncated index tuple"))?;
        items.push(item);
        at += size;
    }
    let n = items.len();
    for (i, item) in items.iter().enumerate().rev() {
        page.add_item(item, (n - i) as u16, false, false)?;
    }
    Ok(())
}

/// `btree_xlog_insert` on block 0, with the posting-list split variant.
fn insert(page: &mut Page<'_>, data: &[u8], offnum: u16, posting: bool) -> Result<(), RedoError> {
    if !posting {
        page.add_item(data, offnum, false, false)?;
        return Ok(());
    }
    if data.len() < 2 || offnum < 2 {
        return Err(RedoError::Inconsistent(
            "posting insert without posting offset",
        ));
    }
    let postingoff = u16::from_le_bytes([data[0], data[1]]);
    let mut newitem = data[2..].to_vec();
    let range = page.item_range(offnum - 1)?;
    let oposting = page.bytes()[range.clone()].to_vec();
    let nposting = posting::swap_posting(&mut newitem, &oposting, postingoff)?;
    let len = maxalign(index_tuple_size(&nposting)?).min(nposting.len());
    if range.start + len > page.bytes().len() {
        return Err(RedoError::Inconsistent("posting tuple overruns page"));
    }
    page.bytes_mut()[range.start..range.start + len].copy_from_slice(&nposting[..len]);
    page.add_item(&newitem, offnum, false, false)?;
    Ok(())
}

/// `btree_xlog_split` for the original (left) page: rebuild it from its
/// own items below `firstrightoff`, the logged new item and left high key.
fn split_left(
    page: &mut Page<'_>,
    data: &[u8],
    split: &BtreeSplit,
    new_item_on_left: bool,
    right_block: u32,
) -> Result<(), RedoError> {
    let mut at = 0;
    let mut newitem = Vec::new();
    let mut nposting = Vec::new();
    let mut replace_posting_off = 0u16;
    if new_item_on_left || split.postingoff != 0 {
        let size = maxalign(index_tuple_size(data)?);
        newitem = data
            .get(..size)
            .ok_or(RedoError::Inconsistent("truncated new item"))?
            .to_vec();
        at = size;
        if split.postingoff != 0 {
            replace_posting_off = split
                .newitemoff
                .checked_sub(1)
                .ok_or(RedoError::Inconsistent("posting split at offset 0"))?;
            let range = page.item_range(replace_posting_off)?;
            let oposting = page.bytes()[range].to_vec();
            nposting = posting::swap_posting(&mut newitem, &oposting, split.postingoff)?;
        }
    }
    let rest = &data[at..];
    let hikey_size = maxalign(index_tuple_size(rest)?);
    let hikey = rest
        .get(..hikey_size)
        .ok_or(RedoError::Inconsistent("truncated left high key"))?;

    let orig = page.bytes().to_vec();
    let mut orig_copy = orig.clone();
    let orig_page = Page::new(&mut orig_copy)?;
    let orig_opaque = Opaque::of(&orig_page)?;
    let first = orig_opaque.first_data_key(&orig_page);
    let special_at = usize::from(orig_page.special());

    page.init(postgres_wal::record::BLCKSZ - special_at);
    page.bytes_mut()[special_at..].copy_from_slice(&orig[special_at..]);
    page.add_item(hikey, P_HIKEY, false, false)?;
    let mut left_off = P_HIKEY + 1;
    let mut off = first;
    while off < split.firstrightoff {
        if off == replace_posting_off {
            let len = maxalign(index_tuple_size(&nposting)?).min(nposting.len());
            page.add_item(&nposting[..len], left_off, false, false)?;
            left_off += 1;
            off += 1;
            continue;
        } else if new_item_on_left && off == split.newitemoff {
            page.add_item(&newitem, left_off, false, false)?;
            left_off += 1;
        }
        let range = orig_page.item_range(off)?;
        page.add_item(&orig[range], left_off, false, false)?;
        left_off += 1;
        off += 1;
    }
    if new_item_on_left && off == split.newitemoff {
        page.add_item(&newitem, left_off, false, false)?;
    }
    let opaque = Opaque::of(page)?;
    let leaf = if split.level == 0 { BTP_LEAF } else { 0 };
    opaque.set_flags(page, BTP_INCOMPLETE_SPLIT | leaf);
    opaque.set_next(page, right_block);
    opaque.set_cycleid(page, 0);
    Ok(())
}

/// `btree_xlog_dedup`: merge runs of duplicates into posting tuples exactly
/// as the logged intervals say.
fn dedup(page: &mut Page<'_>, intervals: &[DedupInterval]) -> Result<(), RedoError> {
    let orig = page.bytes().to_vec();
    let mut orig_copy = orig.clone();
    let orig_page = Page::new(&mut orig_copy)?;
    let orig_opaque = Opaque::of(&orig_page)?;
    let min_off = orig_opaque.first_data_key(&orig_page);
    let max_off = orig_page.max_offset();
    let special_at = usize::from(orig_page.special());
    let had_garbage = orig_opaque.flags(&orig_page) & BTP_HAS_GARBAGE != 0;

    page.init(postgres_wal::record::BLCKSZ - special_at);
    page.bytes_mut()[special_at..].copy_from_slice(&orig[special_at..]);
    if orig_opaque.next(&orig_page) != P_NONE {
        let range = orig_page.item_range(P_HIKEY)?;
        page.add_item(&orig[range], P_HIKEY, false, false)?;
    }
    let mut state = DedupState::default();
    for offnum in min_off..=max_off {
        let item = &orig[orig_page.item_range(offnum)?];
        if offnum == min_off {
            state.start(item, offnum)?;
            continue;
        }
        let extends = intervals.get(state.nintervals).is_some_and(|interval| {
            state.baseoff == interval.baseoff && state.nitems < usize::from(interval.nitems)
        });
        if extends {
            if !state.save(item)? {
                return Err(RedoError::Inconsistent("deduplication could not merge"));
            }
        } else {
            state.finish(page)?;
            state.start(item, offnum)?;
        }
    }
    if min_off <= max_off {
        state.finish(page)?;
    }
    if had_garbage {
        let opaque = Opaque::of(page)?;
        let flags = opaque.flags(page) & !BTP_HAS_GARBAGE;
        opaque.set_flags(page, flags);
    }
    Ok(())
}

/// `btree_xlog_vacuum` / `btree_xlog_delete`: shrink posting lists, delete
/// items, clear `BTP_HAS_GARBAGE`.
fn vacuum(page: &mut Page<'_>, data: &[u8], ndeleted: u16, nupdated: u16) -> Result<(), RedoError> {
    let plan = delete_plan(data, ndeleted, nupdated)?;
    for update in &plan.updates {
        let range = page.item_range(update.offnum)?;
        let orig = page.bytes()[range].to_vec();
        let updated = posting::update_posting(&orig, &update.deleted_tids)?;
        page.index_tuple_overwrite(update.offnum, &updated)?;
    }
    if !plan.deleted.is_empty() {
        page.index_multi_delete(&plan.deleted)?;
    }
    let opaque = Opaque::of(page)?;
    let flags = opaque.flags(page) & !BTP_HAS_GARBAGE;
    opaque.set_flags(page, flags);
    Ok(())
}

/// Parent side of `btree_xlog_mark_page_halfdead`: the pivot at `poffset`
/// takes over the right sibling's downlink and the next pivot goes.
fn remove_downlink(page: &mut Page<'_>, poffset: u16) -> Result<(), RedoError> {
    let next = poffset
        .checked_add(1)
        .ok_or(RedoError::Inconsistent("parent offset overflow"))?;
    let next_at = page.item_range(next)?.start;
    let right_sibling = page.bytes()[next_at..next_at + 4].to_vec();
    let at = page.item_range(poffset)?;
    if at.len() < 8 {
        return Err(RedoError::Inconsistent("pivot tuple too short"));
    }
    page.bytes_mut()[at.start..at.start + 4].copy_from_slice(&right_sibling);
    page.index_tuple_delete(next)?;
    Ok(())
}

/// A half-dead leaf: empty but for a high key naming the top parent.
fn init_half_dead_leaf(
    page: &mut Page<'_>,
    left: u32,
    right: u32,
    top_parent: u32,
) -> Result<(), RedoError> {
    init_page(page, left, right, 0, BTP_HALF_DEAD | BTP_LEAF);
    let mut trunc = [0u8; 8];
    posting::set_block(&mut trunc, top_parent);
    // t_info: size 8 with INDEX_ALT_TID_MASK (BTreeTupleSetNAtts(.., 0, false)).
    trunc[6..8].copy_from_slice(&(8u16 | posting::INDEX_ALT_TID_MASK).to_le_bytes());
    page.add_item(&trunc, P_HIKEY, false, false)?;
    Ok(())
}
