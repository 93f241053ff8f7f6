//! Redo of HASH index records (`hash_redo` in `hash_xlog.c`): metapage and
//! bitmap-page initialisation, inserts, overflow-page addition, bucket
//! splits (allocate / complete / cleanup; the split page itself is always a
//! full-page image), squeeze (move page contents, free an overflow page),
//! deletes by VACUUM and by insert-time microvacuum, and metapage tuple
//! count updates.
//!
//! Pages use the PG15 hash layout: `HashPageOpaqueData` (16 bytes) in the
//! special space, `HashMetaPageData` right after the page header of block 0,
//! and bitmap pages holding a `uint32` array after the page header.

use postgres_wal::rmgr::cursor::BodyCursor;

use crate::btree::posting::index_tuple_size;
use crate::page::{maxalign, Page, SIZE_OF_PAGE_HEADER};
use crate::{RedoContext, RedoError};

const XLOG_HASH_INIT_META_PAGE: u8 = 0x00;
const XLOG_HASH_INIT_BITMAP_PAGE: u8 = 0x10;
const XLOG_HASH_INSERT: u8 = 0x20;
const XLOG_HASH_ADD_OVFL_PAGE: u8 = 0x30;
const XLOG_HASH_SPLIT_ALLOCATE_PAGE: u8 = 0x40;
const XLOG_HASH_SPLIT_PAGE: u8 = 0x50;
const XLOG_HASH_SPLIT_COMPLETE: u8 = 0x60;
const XLOG_HASH_MOVE_PAGE_CONTENTS: u8 = 0x70;
const XLOG_HASH_SQUEEZE_PAGE: u8 = 0x80;
const XLOG_HASH_DELETE: u8 = 0x90;
const XLOG_HASH_SPLIT_CLEANUP: u8 = 0xA0;
const XLOG_HASH_UPDATE_META_PAGE: u8 = 0xB0;
const XLOG_HASH_VACUUM_ONE_PAGE: u8 = 0xC0;

const XLH_SPLIT_META_UPDATE_MASKS: u8 = 1 << 0;
const XLH_SPLIT_META_UPDATE_SPLITPOINT: u8 = 1 << 1;

/// `LH_UNUSED_PAGE`.
pub const LH_UNUSED_PAGE: u16 = 0;
/// `LH_OVERFLOW_PAGE`.
pub const LH_OVERFLOW_PAGE: u16 = 1 << 0;
/// `LH_BUCKET_PAGE`.
pub const LH_BUCKET_PAGE: u16 = 1 << 1;
const LH_BITMAP_PAGE: u16 = 1 << 2;
const LH_META_PAGE: u16 = 1 << 3;
const LH_BUCKET_NEEDS_SPLIT_CLEANUP: u16 = 1 << 6;
/// `LH_PAGE_HAS_DEAD_TUPLES`: a hint set without WAL, masked.
pub const LH_PAGE_HAS_DEAD_TUPLES: u16 = 1 << 7;
/// `LH_PAGE_TYPE`.
pub const LH_PAGE_TYPE: u16 = LH_OVERFLOW_PAGE | LH_BUCKET_PAGE | LH_BITMAP_PAGE | LH_META_PAGE;
const HASHO_PAGE_ID: u16 = 0xFF80;
/// `sizeof(HashPageOpaqueData)`.
pub const SIZE_OF_HASH_OPAQUE: usize = 16;
/// Offset of `hasho_flag` inside the special space.
pub const FLAG_IN_SPECIAL: usize = 12;
const INVALID_BLOCK: u32 = u32::MAX;

const HASH_MAGIC: u32 = 0x0644_0640;
const HASH_VERSION: u32 = 4;
/// `HASH_MAX_SPLITPOINTS`.
const HASH_MAX_SPLITPOINTS: usize = 98;
/// `HASH_MAX_BITMAPS` for 8 kB pages.
const HASH_MAX_BITMAPS: usize = 1024;

/// Byte offsets of `HashMetaPageData` fields on the metapage.
mod meta {
    pub const MAGIC: usize = 24;
    pub const VERSION: usize = 28;
    pub const NTUPLES: usize = 32;
    pub const FFACTOR: usize = 40;
    pub const BSIZE: usize = 42;
    pub const BMSIZE: usize = 44;
    pub const BMSHIFT: usize = 46;
    pub const MAXBUCKET: usize = 48;
    pub const HIGHMASK: usize = 52;
    pub const LOWMASK: usize = 56;
    pub const OVFLPOINT: usize = 60;
    pub const FIRSTFREE: usize = 64;
    pub const NMAPS: usize = 68;
    pub const PROCID: usize = 72;
    pub const SPARES: usize = 76;
    pub const MAPP: usize = SPARES + 4 * super::HASH_MAX_SPLITPOINTS;
    /// `pd_lower` after init: the end of the (8-aligned) struct.
    pub const END: usize = 24 + 4544;
}

/// The hash special space of a page.
struct Opaque(usize);

impl Opaque {
    fn of(page: &Page<'_>) -> Result<Opaque, RedoError> {
        let special = usize::from(page.special());
        if special + SIZE_OF_HASH_OPAQUE > page.bytes().len() {
            return Err(RedoError::Inconsistent("hash page without special space"));
        }
        Ok(Opaque(special))
    }
    fn set_prev(&self, page: &mut Page<'_>, v: u32) {
        page.set_u32_at(self.0, v)
    }
    fn set_next(&self, page: &mut Page<'_>, v: u32) {
        page.set_u32_at(self.0 + 4, v)
    }
    fn flag(&self, page: &Page<'_>) -> u16 {
        page.u16_at(self.0 + FLAG_IN_SPECIAL)
    }
    fn set_flag(&self, page: &mut Page<'_>, v: u16) {
        page.set_u16_at(self.0 + FLAG_IN_SPECIAL, v)
    }
    fn clear_flag(&self, page: &mut Page<'_>, bits: u16) {
        let flag = self.flag(page) & !bits;
        self.set_flag(page, flag);
    }
}

/// `_hash_pageinit` plus the special-space fields `_hash_initbuf` and
/// friends set.
fn init_page(page: &mut Page<'_>, prev: u32, bucket: u32, flag: u16) -> Opaque {
    page.init(SIZE_OF_HASH_OPAQUE);
    let opaque = Opaque(usize::from(page.special()));
    opaque.set_prev(page, prev);
    opaque.set_next(page, INVALID_BLOCK);
    page.set_u32_at(opaque.0 + 8, bucket);
    opaque.set_flag(page, flag);
    page.set_u16_at(opaque.0 + 14, HASHO_PAGE_ID);
    opaque
}

/// A `uint32` metapage field (all of them lie inside any 8 kB page).
fn meta_u32(page: &Page<'_>, at: usize) -> u32 {
    page.u32_at(at)
}

fn meta_ntuples(page: &Page<'_>) -> f64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&page.bytes()[meta::NTUPLES..meta::NTUPLES + 8]);
    f64::from_le_bytes(b)
}

fn set_meta_ntuples(page: &mut Page<'_>, v: f64) {
    page.bytes_mut()[meta::NTUPLES..meta::NTUPLES + 8].copy_from_slice(&v.to_le_bytes());
}

/// Applies a HASH record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let main = &record.main_data;
    let block_id = context.block.block_id;
    match (record.rmgr_info(), block_id) {
        (XLOG_HASH_INIT_META_PAGE, 0) => init_meta(page, main),
        (XLOG_HASH_INIT_BITMAP_PAGE, 0) => {
            let bmsize = BodyCursor::new(main, "xl_hash_init_bitmap_page").u16()?;
            init_bitmap(page, bmsize);
            Ok(())
        }
        (XLOG_HASH_INIT_BITMAP_PAGE, 1) => {
            let nmaps = meta_u32(page, meta::NMAPS);
            let num_buckets = meta_u32(page, meta::MAXBUCKET).wrapping_add(1);
            set_mapp(page, nmaps, num_buckets.wrapping_add(1))?;
            page.set_u32_at(meta::NMAPS, nmaps.wrapping_add(1));
            Ok(())
        }
        (XLOG_HASH_INSERT, 0) => {
            let offnum = BodyCursor::new(main, "xl_hash_insert").u16()?;
            page.add_item(context.data(), offnum, false, false)?;
            Ok(())
        }
        (XLOG_HASH_INSERT, 1) => {
            let n = meta_ntuples(page) + 1.0;
            set_meta_ntuples(page, n);
            Ok(())
        }
        (XLOG_HASH_ADD_OVFL_PAGE, _) => add_ovfl_page(page, context),
        (XLOG_HASH_SPLIT_ALLOCATE_PAGE, _) => split_allocate(page, context),
        // The split page is always logged as a full-page image to apply.
        (XLOG_HASH_SPLIT_PAGE, _) => Err(RedoError::Inconsistent(
            "hash split page record without a full-page image",
        )),
        (XLOG_HASH_SPLIT_COMPLETE, 0 | 1) => {
            let mut r = BodyCursor::new(main, "xl_hash_split_complete");
            let (old_flag, new_flag) = (r.u16()?, r.u16()?);
            let flag = if block_id == 0 { old_flag } else { new_flag };
            Opaque::of(page)?.set_flag(page, flag);
            Ok(())
        }
        (XLOG_HASH_MOVE_PAGE_CONTENTS, _) => move_page_contents(page, context),
        (XLOG_HASH_SQUEEZE_PAGE, _) => squeeze_page(page, context),
        (XLOG_HASH_DELETE, 0) => Ok(()),
        (XLOG_HASH_DELETE, 1) => {
            let mut r = BodyCursor::new(main, "xl_hash_delete");
            let clear_dead = r.bool()?;
            page.index_multi_delete(&offsets(context.data())?)?;
            if clear_dead {
                Opaque::of(page)?.clear_flag(page, LH_PAGE_HAS_DEAD_TUPLES);
            }
            Ok(())
        }
        (XLOG_HASH_SPLIT_CLEANUP, 0) => {
            Opaque::of(page)?.clear_flag(page, LH_BUCKET_NEEDS_SPLIT_CLEANUP);
            Ok(())
        }
        (XLOG_HASH_UPDATE_META_PAGE, 0) => {
            let mut r = BodyCursor::new(main, "xl_hash_update_meta_page");
            let ntuples = f64::from_le_bytes(r.u64()?.to_le_bytes());
            set_meta_ntuples(page, ntuples);
            Ok(())
        }
        (XLOG_HASH_VACUUM_ONE_PAGE, _) => vacuum_one_page(page, context),
        (XLOG_HASH_INIT_META_PAGE..=XLOG_HASH_VACUUM_ONE_PAGE, block_id) => {
            Err(RedoError::NoBlock(block_id))
        }
        (info, _) => Err(RedoError::Unsupported { rmgr: "Hash", info }),
    }
}

/// An array of `OffsetNumber`s (block data of deletes and moves).
fn offsets(data: &[u8]) -> Result<Vec<u16>, RedoError> {
    if !data.len().is_multiple_of(2) {
        return Err(RedoError::Inconsistent("odd-sized offset array"));
    }
    Ok(data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

fn set_mapp(page: &mut Page<'_>, index: u32, blkno: u32) -> Result<(), RedoError> {
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    if index >= HASH_MAX_BITMAPS {
        return Err(RedoError::Inconsistent(
            "hash metapage bitmap count out of range",
        ));
    }
    page.set_u32_at(meta::MAPP + 4 * index, blkno);
    Ok(())
}

fn spares_at(index: u32) -> Result<usize, RedoError> {
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    if index >= HASH_MAX_SPLITPOINTS {
        return Err(RedoError::Inconsistent("hash splitpoint out of range"));
    }
    Ok(meta::SPARES + 4 * index)
}

/// `_hash_spareindex`.
fn spare_index(num_bucket: u32) -> u32 {
    let group = if num_bucket <= 1 {
        0
    } else {
        32 - (num_bucket - 1).leading_zeros()
    };
    if group < 10 {
        return group;
    }
    10 + ((group - 10) << 2) + (((num_bucket - 1) >> (group - 3)) & 3)
}

/// `_hash_get_totalbuckets`.
fn total_buckets(phase: u32) -> u32 {
    if phase < 10 {
        return 1 << phase;
    }
    let group = 10 + ((phase - 10) >> 2);
    let base = 1u32 << (group - 1);
    base + (base >> 2) * (((phase - 10) & 3) + 1)
}

/// `_hash_init_metabuffer` with `initpage`.
fn init_meta(page: &mut Page<'_>, main: &[u8]) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(main, "xl_hash_init_meta_page");
    let num_tuples = f64::from_le_bytes(r.u64()?.to_le_bytes());
    let procid = r.u32()?;
    let ffactor = r.u16()?;
    if ffactor == 0 {
        return Err(RedoError::Inconsistent("hash fill factor is zero"));
    }
    let buckets = num_tuples / f64::from(ffactor);
    let num_buckets = if buckets <= 2.0 {
        2
    } else if buckets >= f64::from(0x4000_0000u32) {
        0x4000_0000
    } else {
        // Truncation as in the C conversion of a double to uint32.
        total_buckets(spare_index(buckets as u32))
    };
    let spare = spare_index(num_buckets);
    init_page(page, INVALID_BLOCK, INVALID_BLOCK, LH_META_PAGE);
    let bsize = (postgres_wal::record::BLCKSZ - SIZE_OF_PAGE_HEADER - SIZE_OF_HASH_OPAQUE) as u16;
    let lshift = 15 - bsize.leading_zeros() as u16;
    page.set_u32_at(meta::MAGIC, HASH_MAGIC);
    page.set_u32_at(meta::VERSION, HASH_VERSION);
    set_meta_ntuples(page, 0.0);
    page.set_u16_at(meta::FFACTOR, ffactor);
    page.set_u16_at(meta::BSIZE, bsize);
    page.set_u16_at(meta::BMSIZE, 1 << lshift);
    page.set_u16_at(meta::BMSHIFT, lshift + 3);
    page.set_u32_at(meta::PROCID, procid);
    page.set_u32_at(meta::MAXBUCKET, num_buckets - 1);
    let highmask = (num_buckets + 1).next_power_of_two() - 1;
    page.set_u32_at(meta::HIGHMASK, highmask);
    page.set_u32_at(meta::LOWMASK, highmask >> 1);
    page.set_u32_at(spares_at(spare)?, 1);
    page.set_u32_at(meta::OVFLPOINT, spare);
    page.set_u32_at(meta::FIRSTFREE, 0);
    page.set_u32_at(meta::NMAPS, 0);
    page.set_lower(meta::END as u16);
    Ok(())
}

/// `_hash_initbitmapbuffer` with `initpage`.
fn init_bitmap(page: &mut Page<'_>, bmsize: u16) {
    init_page(page, INVALID_BLOCK, INVALID_BLOCK, LH_BITMAP_PAGE);
    let end = (SIZE_OF_PAGE_HEADER + usize::from(bmsize)).min(usize::from(page.special()));
    page.bytes_mut()[SIZE_OF_PAGE_HEADER..end].fill(0xFF);
    page.set_lower(end as u16);
}

/// Sets or clears bit `bit` of a bitmap page's free-page map.
fn set_bitmap_bit(page: &mut Page<'_>, data: &[u8], on: bool) -> Result<(), RedoError> {
    let bit = BodyCursor::new(data, "hash bitmap bit").u32()?;
    let word = SIZE_OF_PAGE_HEADER + 4 * usize::try_from(bit / 32).unwrap_or(usize::MAX);
    if word + 4 > usize::from(page.special()) {
        return Err(RedoError::Inconsistent("hash bitmap bit beyond the page"));
    }
    let mask = 1u32 << (bit % 32);
    let value = page.u32_at(word);
    page.set_u32_at(word, if on { value | mask } else { value & !mask });
    Ok(())
}

fn block_no(context: &RedoContext<'_>, block_id: u8) -> Result<u32, RedoError> {
    Ok(context
        .record
        .block(block_id)
        .ok_or(RedoError::NoBlock(block_id))?
        .blkno)
}

/// `hash_xlog_add_ovfl_page`.
fn add_ovfl_page(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let mut r = BodyCursor::new(&record.main_data, "xl_hash_add_ovfl_page");
    let bmsize = r.u16()?;
    let bmpage_found = r.bool()?;
    match context.block.block_id {
        0 => {
            let bucket = BodyCursor::new(context.data(), "hash overflow bucket").u32()?;
            let left = block_no(context, 1)?;
            init_page(page, left, bucket, LH_OVERFLOW_PAGE);
            Ok(())
        }
        1 => {
            let right = block_no(context, 0)?;
            Opaque::of(page)?.set_next(page, right);
            Ok(())
        }
        2 => set_bitmap_bit(page, context.data(), true),
        3 => {
            init_bitmap(page, bmsize);
            Ok(())
        }
        4 => {
            let firstfree = BodyCursor::new(context.data(), "hash firstfree").u32()?;
            page.set_u32_at(meta::FIRSTFREE, firstfree);
            if !bmpage_found {
                let at = spares_at(page.u32_at(meta::OVFLPOINT))?;
                page.set_u32_at(at, page.u32_at(at).wrapping_add(1));
                if let Some(newmap) = record.block(3) {
                    let nmaps = page.u32_at(meta::NMAPS);
                    set_mapp(page, nmaps, newmap.blkno)?;
                    page.set_u32_at(meta::NMAPS, nmaps.wrapping_add(1));
                    page.set_u32_at(at, page.u32_at(at).wrapping_add(1));
                }
            }
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

/// `hash_xlog_split_allocate_page`.
fn split_allocate(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "xl_hash_split_allocate_page");
    let new_bucket = r.u32()?;
    let old_flag = r.u16()?;
    let new_flag = r.u16()?;
    let flags = r.u8()?;
    match context.block.block_id {
        0 => {
            let opaque = Opaque::of(page)?;
            opaque.set_flag(page, old_flag);
            opaque.set_prev(page, new_bucket);
            Ok(())
        }
        1 => {
            init_page(page, new_bucket, new_bucket, new_flag);
            Ok(())
        }
        2 => {
            page.set_u32_at(meta::MAXBUCKET, new_bucket);
            let mut d = BodyCursor::new(context.data(), "hash split metapage data");
            if flags & XLH_SPLIT_META_UPDATE_MASKS != 0 {
                let lowmask = d.u32()?;
                let highmask = d.u32()?;
                page.set_u32_at(meta::LOWMASK, lowmask);
                page.set_u32_at(meta::HIGHMASK, highmask);
            }
            if flags & XLH_SPLIT_META_UPDATE_SPLITPOINT != 0 {
                let ovflpoint = d.u32()?;
                let ovflpages = d.u32()?;
                page.set_u32_at(spares_at(ovflpoint)?, ovflpages);
                page.set_u32_at(meta::OVFLPOINT, ovflpoint);
            }
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

/// Adds the moved tuples of a squeeze step to the write page: block data
/// is `ntups` target offsets followed by the tuples, each added with its
/// MAXALIGNed length.
fn add_moved_tuples(page: &mut Page<'_>, data: &[u8], ntups: u16) -> Result<(), RedoError> {
    if ntups == 0 {
        return Ok(());
    }
    let split = 2 * usize::from(ntups);
    let head = data
        .get(..split)
        .ok_or(RedoError::Inconsistent("hash move: offsets truncated"))?;
    let targets = offsets(head)?;
    let mut at = split;
    let mut inserted = 0usize;
    while at < data.len() {
        let size = maxalign(index_tuple_size(&data[at..])?);
        let item = data
            .get(at..at + size)
            .ok_or(RedoError::Inconsistent("hash move: tuple truncated"))?;
        let offnum = *targets.get(inserted).ok_or(RedoError::Inconsistent(
            "hash move: more tuples than offsets",
        ))?;
        page.add_item(item, offnum, false, false)?;
        at += size;
        inserted += 1;
    }
    Ok(())
}

/// `hash_xlog_move_page_contents`.
fn move_page_contents(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "xl_hash_move_page_contents");
    let ntups = r.u16()?;
    match context.block.block_id {
        // The primary bucket page is only locked.
        0 => Ok(()),
        1 => add_moved_tuples(page, context.data(), ntups),
        2 => {
            page.index_multi_delete(&offsets(context.data())?)?;
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

/// `hash_xlog_squeeze_page`.
fn squeeze_page(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "xl_hash_squeeze_page");
    let prevblkno = r.u32()?;
    let nextblkno = r.u32()?;
    let ntups = r.u16()?;
    let _is_prim_bucket_same_wrt = r.bool()?;
    let is_prev_bucket_same_wrt = r.bool()?;
    match context.block.block_id {
        0 => Ok(()),
        1 => {
            add_moved_tuples(page, context.data(), ntups)?;
            if is_prev_bucket_same_wrt {
                Opaque::of(page)?.set_next(page, nextblkno);
            }
            Ok(())
        }
        2 => {
            // The freed overflow page: emptied, marked unused.
            init_page(page, INVALID_BLOCK, INVALID_BLOCK, LH_UNUSED_PAGE);
            Ok(())
        }
        3 => {
            if !is_prev_bucket_same_wrt {
                Opaque::of(page)?.set_next(page, nextblkno);
            }
            Ok(())
        }
        4 => {
            Opaque::of(page)?.set_prev(page, prevblkno);
            Ok(())
        }
        5 => set_bitmap_bit(page, context.data(), false),
        6 => {
            let firstfree = BodyCursor::new(context.data(), "hash firstfree").u32()?;
            page.set_u32_at(meta::FIRSTFREE, firstfree);
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

/// `hash_xlog_vacuum_one_page`.
fn vacuum_one_page(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let mut r = BodyCursor::new(&context.record.main_data, "xl_hash_vacuum_one_page");
    let _latest_removed_xid = r.u32()?;
    let ntuples = r.i32()?;
    let count = usize::try_from(ntuples)
        .map_err(|_| RedoError::Inconsistent("negative hash vacuum tuple count"))?;
    match context.block.block_id {
        0 => {
            if !r.remaining().is_empty() {
                let bytes = r.bytes(2 * count)?;
                page.index_multi_delete(&offsets(bytes)?)?;
            }
            Opaque::of(page)?.clear_flag(page, LH_PAGE_HAS_DEAD_TUPLES);
            Ok(())
        }
        1 => {
            let n = meta_ntuples(page) - f64::from(ntuples);
            set_meta_ntuples(page, n);
            Ok(())
        }
        other => Err(RedoError::NoBlock(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitpoint_arithmetic_matches_postgres_tables() {
        assert_eq!(spare_index(2), 1);
        assert_eq!(spare_index(512), 9);
        assert_eq!(spare_index(513), 10);
        assert_eq!(spare_index(1024), 13);
        assert_eq!(total_buckets(9), 512);
        assert_eq!(total_buckets(10), 640);
        assert_eq!(total_buckets(13), 1024);
        assert_eq!(meta::MAPP + 4 * HASH_MAX_BITMAPS, 24 + 4540);
    }
}
