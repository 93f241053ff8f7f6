//! Page masking as Postgres does it before comparing a replayed page with a
//! record's consistency-check image (`bufmask.c` and each manager's
//! `*_mask`): page LSN and checksum, header hint bits, the hole between
//! `pd_lower` and `pd_upper`, and per access method the fields that change
//! without WAL (tuple hint bits, command ids, speculative tokens, index
//! line-pointer dead flags, btree garbage/split-end flags and cycle ids).
//!
//! Masking writes `MASK_MARKER` (0) over what it hides, so two pages are
//! equivalent exactly when their masked bytes are equal.

use postgres_wal::rmgr::RmgrId;

use crate::btree::{BTP_HAS_GARBAGE, BTP_LEAF, BTP_SPLIT_END, SIZE_OF_BT_OPAQUE};
use crate::page::{
    maxalign, Page, PageError, LP_NORMAL, LP_UNUSED, PD_ALL_VISIBLE, PD_HAS_FREE_LINES,
    PD_PAGE_FULL, SIZE_OF_PAGE_HEADER,
};
use crate::tuple::{
    write_ctid, HEAP_XACT_MASK, HEAP_XMAX_COMMITTED, HEAP_XMAX_INVALID, HEAP_XMIN_FROZEN,
    SIZEOF_HEAP_TUPLE_HEADER, SPEC_TOKEN_OFFSET_NUMBER, T_CTID, T_FIELD3, T_INFOMASK,
};
use crate::RedoError;

/// Masks `page` (block `blkno`) the way resource manager `rmgr`'s mask
/// function does. XLOG has no mask function: its pages are left as they are.
pub fn mask(rmgr: RmgrId, page: &mut [u8], blkno: u32) -> Result<(), RedoError> {
    let mut page = Page::new(page)?;
    match rmgr {
        RmgrId::Xlog => {}
        RmgrId::Heap | RmgrId::Heap2 => heap_mask(&mut page, blkno)?,
        RmgrId::Btree => btree_mask(&mut page)?,
        RmgrId::Sequence | RmgrId::Generic => {
            mask_lsn_and_checksum(&mut page);
            mask_unused_space(&mut page)?;
        }
        RmgrId::Brin => brin_mask(&mut page)?,
        RmgrId::Hash => hash_mask(&mut page)?,
        RmgrId::Gist => gist_mask(&mut page)?,
        RmgrId::Gin => gin_mask(&mut page)?,
        RmgrId::SpGist => {
            // `spg_mask`: the hole only when pd_lower looks set.
            mask_lsn_and_checksum(&mut page);
            mask_hint_bits(&mut page);
            if usize::from(page.lower()) >= SIZE_OF_PAGE_HEADER {
                mask_unused_space(&mut page)?;
            }
        }
        other => {
            return Err(RedoError::Unsupported {
                rmgr: other.name(),
                info: 0,
            })
        }
    }
    Ok(())
}

/// `mask_page_lsn_and_checksum`.
fn mask_lsn_and_checksum(page: &mut Page<'_>) {
    page.bytes_mut()[0..10].fill(0);
}

/// `mask_page_hint_bits`.
fn mask_hint_bits(page: &mut Page<'_>) {
    page.set_prune_xid(0);
    let flags = page.flags() & !(PD_PAGE_FULL | PD_HAS_FREE_LINES | PD_ALL_VISIBLE);
    page.set_flags(flags);
}

/// `mask_unused_space`; an invalid header is an error, as in Postgres.
fn mask_unused_space(page: &mut Page<'_>) -> Result<(), PageError> {
    let (lower, upper, special) = (page.lower(), page.upper(), page.special());
    if lower > upper
        || special < upper
        || usize::from(lower) < SIZE_OF_PAGE_HEADER
        || usize::from(special) > postgres_wal::record::BLCKSZ
    {
        return Err(PageError::Pointers {
            lower,
            upper,
            special,
        });
    }
    page.bytes_mut()[usize::from(lower)..usize::from(upper)].fill(0);
    Ok(())
}

fn heap_mask(page: &mut Page<'_>, blkno: u32) -> Result<(), PageError> {
    mask_lsn_and_checksum(page);
    mask_hint_bits(page);
    mask_unused_space(page)?;
    for offnum in 1..=page.max_offset() {
        let id = page.item_id(offnum)?;
        let at = usize::from(id.off);
        let len = usize::from(id.len);
        if id.flags == LP_NORMAL && at + SIZEOF_HEAP_TUPLE_HEADER <= page.bytes().len() {
            let mut infomask = page.u16_at(at + T_INFOMASK);
            if infomask & HEAP_XMIN_FROZEN != HEAP_XMIN_FROZEN {
                infomask &= !HEAP_XACT_MASK;
            } else {
                infomask &= !(HEAP_XMAX_INVALID | HEAP_XMAX_COMMITTED);
            }
            page.set_u16_at(at + T_INFOMASK, infomask);
            page.set_u32_at(at + T_FIELD3, 0);
            if page.u16_at(at + T_CTID + 4) == SPEC_TOKEN_OFFSET_NUMBER {
                write_ctid(page.bytes_mut(), at + T_CTID, blkno, offnum);
            }
        }
        if id.has_storage() {
            let end = (at + maxalign(len)).min(page.bytes().len());
            if at + len < end {
                page.bytes_mut()[at + len..end].fill(0);
            }
        }
    }
    Ok(())
}

fn btree_mask(page: &mut Page<'_>) -> Result<(), PageError> {
    mask_lsn_and_checksum(page);
    mask_hint_bits(page);
    mask_unused_space(page)?;
    let special = usize::from(page.special());
    if special + SIZE_OF_BT_OPAQUE > page.bytes().len() {
        return Err(PageError::Pointers {
            lower: page.lower(),
            upper: page.upper(),
            special: page.special(),
        });
    }
    let flags_at = special + 12;
    let flags = page.u16_at(flags_at);
    if flags & BTP_LEAF != 0 {
        // mask_lp_flags: LP_DEAD hints are set without WAL on leaf pages.
        for offnum in 1..=page.max_offset() {
            let mut id = page.item_id(offnum)?;
            if id.is_used() {
                id.flags = LP_UNUSED;
                page.set_item_id(offnum, id)?;
            }
        }
    }
    page.set_u16_at(flags_at, flags & !(BTP_HAS_GARBAGE | BTP_SPLIT_END));
    page.set_u16_at(special + 14, 0);
    Ok(())
}

/// `brin_mask`: unused space only on regular pages and metapages with a
/// valid `pd_lower`; the evacuate flag is set without WAL.
fn brin_mask(page: &mut Page<'_>) -> Result<(), PageError> {
    use crate::brin::{
        BRIN_EVACUATE_PAGE, BRIN_PAGETYPE_META, BRIN_PAGETYPE_REGULAR, FLAGS_IN_SPECIAL,
        TYPE_IN_SPECIAL,
    };
    mask_lsn_and_checksum(page);
    mask_hint_bits(page);
    let special = usize::from(page.special());
    if special + 8 > page.bytes().len() {
        return Err(PageError::Pointers {
            lower: page.lower(),
            upper: page.upper(),
            special: page.special(),
        });
    }
    let page_type = page.u16_at(special + TYPE_IN_SPECIAL);
    if page_type == BRIN_PAGETYPE_REGULAR
        || (page_type == BRIN_PAGETYPE_META && usize::from(page.lower()) > SIZE_OF_PAGE_HEADER)
    {
        mask_unused_space(page)?;
    }
    let flags = page.u16_at(special + FLAGS_IN_SPECIAL) & !BRIN_EVACUATE_PAGE;
    page.set_u16_at(special + FLAGS_IN_SPECIAL, flags);
    Ok(())
}

/// `mask_page_content`: everything after the header, and `pd_lower` /
/// `pd_upper`.
fn mask_page_content(page: &mut Page<'_>) {
    page.bytes_mut()[SIZE_OF_PAGE_HEADER..].fill(0);
    page.set_lower(0);
    page.set_upper(0);
}

/// `mask_lp_flags`: used line pointers get `LP_UNUSED` flags.
fn mask_lp_flags(page: &mut Page<'_>) -> Result<(), PageError> {
    for offnum in 1..=page.max_offset() {
        let mut id = page.item_id(offnum)?;
        if id.is_used() {
            id.flags = LP_UNUSED;
            page.set_item_id(offnum, id)?;
        }
    }
    Ok(())
}

/// The special space of `size` bytes, or an error naming the pointers.
fn special_at(page: &Page<'_>, size: usize) -> Result<usize, PageError> {
    let special = usize::from(page.special());
    if special + size > page.bytes().len() {
        return Err(PageError::Pointers {
            lower: page.lower(),
            upper: page.upper(),
            special: page.special(),
        });
    }
    Ok(special)
}

/// `hash_mask`: unused pages entirely, line pointer flags of bucket and
/// overflow pages (dead marks are set without WAL), the dead-tuples hint.
fn hash_mask(page: &mut Page<'_>) -> Result<(), PageError> {
    use crate::hash::{
        FLAG_IN_SPECIAL, LH_BUCKET_PAGE, LH_OVERFLOW_PAGE, LH_PAGE_HAS_DEAD_TUPLES, LH_PAGE_TYPE,
        LH_UNUSED_PAGE, SIZE_OF_HASH_OPAQUE,
    };
    mask_lsn_and_checksum(page);
    mask_hint_bits(page);
    mask_unused_space(page)?;
    let flag_at = special_at(page, SIZE_OF_HASH_OPAQUE)? + FLAG_IN_SPECIAL;
    let flag = page.u16_at(flag_at);
    let page_type = flag & LH_PAGE_TYPE;
    if page_type == LH_UNUSED_PAGE {
        mask_page_content(page);
    } else if page_type == LH_BUCKET_PAGE || page_type == LH_OVERFLOW_PAGE {
        mask_lp_flags(page)?;
    }
    // After mask_page_content the flag word is already zero.
    if page_type != LH_UNUSED_PAGE {
        page.set_u16_at(flag_at, flag & !LH_PAGE_HAS_DEAD_TUPLES);
    }
    Ok(())
}

/// `gist_mask`: the NSN (an LSN), the follow-right flag (set on the left
/// child after its record is written), leaf line pointer flags (killed
/// without WAL) and the has-garbage hint (never set by redo).
fn gist_mask(page: &mut Page<'_>) -> Result<(), PageError> {
    use crate::gist::{
        FLAGS_IN_SPECIAL, F_FOLLOW_RIGHT, F_HAS_GARBAGE, F_LEAF, SIZE_OF_GIST_OPAQUE,
    };
    mask_lsn_and_checksum(page);
    mask_hint_bits(page);
    mask_unused_space(page)?;
    let special = special_at(page, SIZE_OF_GIST_OPAQUE)?;
    page.bytes_mut()[special..special + 8].fill(0);
    let flags = page.u16_at(special + FLAGS_IN_SPECIAL) | F_FOLLOW_RIGHT;
    if flags & F_LEAF != 0 {
        mask_lp_flags(page)?;
    }
    page.set_u16_at(special + FLAGS_IN_SPECIAL, flags & !F_HAS_GARBAGE);
    Ok(())
}

/// `gin_mask`: deleted pages entirely (redo re-initialises them), others
/// their hole when `pd_lower` looks set.
fn gin_mask(page: &mut Page<'_>) -> Result<(), PageError> {
    use crate::gin::{FLAGS_IN_SPECIAL, GIN_DELETED, SIZE_OF_GIN_OPAQUE};
    mask_lsn_and_checksum(page);
    let flags = page.u16_at(special_at(page, SIZE_OF_GIN_OPAQUE)? + FLAGS_IN_SPECIAL);
    mask_hint_bits(page);
    if flags & GIN_DELETED != 0 {
        mask_page_content(page);
    } else if usize::from(page.lower()) > SIZE_OF_PAGE_HEADER {
        mask_unused_space(page)?;
    }
    Ok(())
}
