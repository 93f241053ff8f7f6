//! Heap tuple headers (`htup_details.h`): field offsets, infomask bits and
//! the small header edits the heap redo routines make.

use crate::page::{Page, PageError};

/// `SizeofHeapTupleHeader`.
pub const SIZEOF_HEAP_TUPLE_HEADER: usize = 23;

pub const T_XMIN: usize = 0;
pub const T_XMAX: usize = 4;
/// `t_cid` / `t_xvac` share this field.
pub const T_FIELD3: usize = 8;
pub const T_CTID: usize = 12;
pub const T_INFOMASK2: usize = 18;
pub const T_INFOMASK: usize = 20;
pub const T_HOFF: usize = 22;

pub const HEAP_XMAX_KEYSHR_LOCK: u16 = 0x0010;
pub const HEAP_COMBOCID: u16 = 0x0020;
pub const HEAP_XMAX_EXCL_LOCK: u16 = 0x0040;
pub const HEAP_XMAX_LOCK_ONLY: u16 = 0x0080;
pub const HEAP_LOCK_MASK: u16 = HEAP_XMAX_KEYSHR_LOCK | HEAP_XMAX_EXCL_LOCK;
pub const HEAP_XMIN_COMMITTED: u16 = 0x0100;
pub const HEAP_XMIN_INVALID: u16 = 0x0200;
pub const HEAP_XMIN_FROZEN: u16 = HEAP_XMIN_COMMITTED | HEAP_XMIN_INVALID;
pub const HEAP_XMAX_COMMITTED: u16 = 0x0400;
pub const HEAP_XMAX_INVALID: u16 = 0x0800;
pub const HEAP_XMAX_IS_MULTI: u16 = 0x1000;
pub const HEAP_MOVED: u16 = 0xC000;
pub const HEAP_XACT_MASK: u16 = 0xFFF0;
pub const HEAP_XMAX_BITS: u16 = HEAP_XMAX_COMMITTED
    | HEAP_XMAX_INVALID
    | HEAP_XMAX_IS_MULTI
    | HEAP_LOCK_MASK
    | HEAP_XMAX_LOCK_ONLY;

pub const HEAP_KEYS_UPDATED: u16 = 0x2000;
pub const HEAP_HOT_UPDATED: u16 = 0x4000;

/// `SpecTokenOffsetNumber`: a ctid offset marking a speculative insertion.
pub const SPEC_TOKEN_OFFSET_NUMBER: u16 = 0xFFFE;
/// `MovedPartitionsOffsetNumber`.
pub const MOVED_PARTITIONS_OFFSET_NUMBER: u16 = 0xFFFD;

/// A normal tuple at a known page offset, for header edits.
pub struct TupleAt {
    pub at: usize,
}

impl TupleAt {
    /// The normal item `offnum` of `page`, long enough for a tuple header.
    pub fn find(page: &Page<'_>, offnum: u16) -> Result<TupleAt, PageError> {
        Ok(TupleAt {
            at: page.normal_item(offnum, SIZEOF_HEAP_TUPLE_HEADER)?,
        })
    }

    pub fn infomask(&self, page: &Page<'_>) -> u16 {
        page.u16_at(self.at + T_INFOMASK)
    }

    pub fn set_infomask(&self, page: &mut Page<'_>, value: u16) {
        page.set_u16_at(self.at + T_INFOMASK, value);
    }

    pub fn infomask2(&self, page: &Page<'_>) -> u16 {
        page.u16_at(self.at + T_INFOMASK2)
    }

    pub fn set_infomask2(&self, page: &mut Page<'_>, value: u16) {
        page.set_u16_at(self.at + T_INFOMASK2, value);
    }

    pub fn set_xmin(&self, page: &mut Page<'_>, xid: u32) {
        page.set_u32_at(self.at + T_XMIN, xid);
    }

    pub fn set_xmax(&self, page: &mut Page<'_>, xid: u32) {
        page.set_u32_at(self.at + T_XMAX, xid);
    }

    /// `HeapTupleHeaderSetCmax(tup, cid, false)`.
    pub fn set_cmax(&self, page: &mut Page<'_>, cid: u32) {
        page.set_u32_at(self.at + T_FIELD3, cid);
        let mask = self.infomask(page) & !HEAP_COMBOCID;
        self.set_infomask(page, mask);
    }

    /// `HeapTupleHeaderSetXvac`.
    pub fn set_xvac(&self, page: &mut Page<'_>, xid: u32) {
        page.set_u32_at(self.at + T_FIELD3, xid);
    }

    pub fn set_ctid(&self, page: &mut Page<'_>, block: u32, offset: u16) {
        write_ctid(page.bytes_mut(), self.at + T_CTID, block, offset);
    }

    /// Clears `HEAP_XMAX_BITS | HEAP_MOVED` and `HEAP_KEYS_UPDATED`, then
    /// applies `infobits` (`fix_infomask_from_infobits`).
    pub fn reset_xmax_bits(&self, page: &mut Page<'_>, infobits: u8) {
        let mut mask = self.infomask(page) & !(HEAP_XMAX_BITS | HEAP_MOVED);
        let mut mask2 = self.infomask2(page) & !HEAP_KEYS_UPDATED;
        fix_infomask_from_infobits(infobits, &mut mask, &mut mask2);
        self.set_infomask(page, mask);
        self.set_infomask2(page, mask2);
    }
}

/// Writes an `ItemPointerData` at `at`.
pub fn write_ctid(bytes: &mut [u8], at: usize, block: u32, offset: u16) {
    bytes[at..at + 2].copy_from_slice(&((block >> 16) as u16).to_le_bytes());
    bytes[at + 2..at + 4].copy_from_slice(&(block as u16).to_le_bytes());
    bytes[at + 4..at + 6].copy_from_slice(&offset.to_le_bytes());
}

/// `fix_infomask_from_infobits`: the reverse of `compute_infobits`.
pub fn fix_infomask_from_infobits(infobits: u8, infomask: &mut u16, infomask2: &mut u16) {
    use postgres_wal::rmgr::heap::{
        XLHL_KEYS_UPDATED, XLHL_XMAX_EXCL_LOCK, XLHL_XMAX_IS_MULTI, XLHL_XMAX_KEYSHR_LOCK,
        XLHL_XMAX_LOCK_ONLY,
    };
    *infomask &=
        !(HEAP_XMAX_IS_MULTI | HEAP_XMAX_LOCK_ONLY | HEAP_XMAX_KEYSHR_LOCK | HEAP_XMAX_EXCL_LOCK);
    *infomask2 &= !HEAP_KEYS_UPDATED;
    if infobits & XLHL_XMAX_IS_MULTI != 0 {
        *infomask |= HEAP_XMAX_IS_MULTI;
    }
    if infobits & XLHL_XMAX_LOCK_ONLY != 0 {
        *infomask |= HEAP_XMAX_LOCK_ONLY;
    }
    if infobits & XLHL_XMAX_EXCL_LOCK != 0 {
        *infomask |= HEAP_XMAX_EXCL_LOCK;
    }
    if infobits & XLHL_XMAX_KEYSHR_LOCK != 0 {
        *infomask |= HEAP_XMAX_KEYSHR_LOCK;
    }
    if infobits & XLHL_KEYS_UPDATED != 0 {
        *infomask2 |= HEAP_KEYS_UPDATED;
    }
}

/// `HEAP_XMAX_IS_LOCKED_ONLY`.
pub fn xmax_is_locked_only(infomask: u16) -> bool {
    infomask & HEAP_XMAX_LOCK_ONLY != 0
        || infomask & (HEAP_XMAX_IS_MULTI | HEAP_LOCK_MASK) == HEAP_XMAX_EXCL_LOCK
}

/// Builds a new heap tuple as redo does: a zeroed 23-byte header with the
/// logged infomasks and `t_hoff`, xmin = the record's xid, cmin 0, the given
/// ctid, followed by `body` (everything after the fixed header).
pub fn build_tuple(
    header: postgres_wal::rmgr::heap::HeapHeader,
    xmin: u32,
    ctid: (u32, u16),
    body: &[u8],
) -> Vec<u8> {
    let mut tuple = vec![0u8; SIZEOF_HEAP_TUPLE_HEADER + body.len()];
    tuple[SIZEOF_HEAP_TUPLE_HEADER..].copy_from_slice(body);
    tuple[T_INFOMASK2..T_INFOMASK2 + 2].copy_from_slice(&header.infomask2.to_le_bytes());
    let infomask = header.infomask & !HEAP_COMBOCID;
    tuple[T_INFOMASK..T_INFOMASK + 2].copy_from_slice(&infomask.to_le_bytes());
    tuple[T_HOFF] = header.hoff;
    tuple[T_XMIN..T_XMIN + 4].copy_from_slice(&xmin.to_le_bytes());
    write_ctid(&mut tuple, T_CTID, ctid.0, ctid.1);
    tuple
}
