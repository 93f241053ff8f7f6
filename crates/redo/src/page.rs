//! The PostgreSQL 15 slotted page (`bufpage.h`/`bufpage.c`) and the page
//! primitives redo needs: init, add item (overwrite or shuffle), index
//! tuple delete / multi-delete / overwrite, fragmentation repair and line
//! pointer truncation.
//!
//! Every primitive produces byte-for-byte what Postgres produces, because the
//! oracle compares whole pages (minus what masking hides). Where Postgres
//! would `elog(PANIC)` on a corrupt page we return [`PageError`].

use postgres_wal::record::BLCKSZ;
use thiserror::Error;

/// `SizeOfPageHeaderData` (defined in the format crate).
pub use postgres_wal::record::SIZE_OF_PAGE_HEADER;
/// `sizeof(ItemIdData)`.
pub const SIZE_OF_ITEM_ID: usize = 4;
/// `PD_HAS_FREE_LINES`.
pub const PD_HAS_FREE_LINES: u16 = 0x0001;
/// `PD_PAGE_FULL`.
pub const PD_PAGE_FULL: u16 = 0x0002;
/// `PD_ALL_VISIBLE`.
pub const PD_ALL_VISIBLE: u16 = 0x0004;
/// `PG_PAGE_LAYOUT_VERSION`.
pub const PG_PAGE_LAYOUT_VERSION: u16 = 4;
/// `MaxHeapTuplesPerPage` for 8 kB pages.
pub const MAX_HEAP_TUPLES_PER_PAGE: u16 = 291;

/// `LP_UNUSED`.
pub const LP_UNUSED: u8 = 0;
/// `LP_NORMAL`.
pub const LP_NORMAL: u8 = 1;
/// `LP_REDIRECT`.
pub const LP_REDIRECT: u8 = 2;
/// `LP_DEAD`.
pub const LP_DEAD: u8 = 3;

/// A page whose header or line pointers do not allow the operation.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PageError {
    #[error("page is {0} bytes, expected {BLCKSZ}")]
    WrongSize(usize),
    #[error("corrupted page pointers: lower {lower}, upper {upper}, special {special}")]
    Pointers {
        lower: u16,
        upper: u16,
        special: u16,
    },
    #[error("offset number {offnum} invalid (max {max})")]
    BadOffset { offnum: u16, max: u16 },
    #[error("line pointer {offnum} does not point at a stored item")]
    BadItem { offnum: u16 },
    #[error("item of {size} bytes does not fit")]
    NoSpace { size: usize },
    #[error("will not overwrite used line pointer {offnum}")]
    ItemInUse { offnum: u16 },
}

/// `MAXALIGN` for 64-bit platforms.
pub fn maxalign(len: usize) -> usize {
    (len + 7) & !7
}

/// A line pointer (`ItemIdData`): 15-bit offset, 2-bit flags, 15-bit length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemId {
    pub off: u16,
    pub flags: u8,
    pub len: u16,
}

impl ItemId {
    fn decode(raw: u32) -> ItemId {
        ItemId {
            off: (raw & 0x7FFF) as u16,
            flags: ((raw >> 15) & 0x3) as u8,
            len: ((raw >> 17) & 0x7FFF) as u16,
        }
    }

    fn encode(self) -> u32 {
        u32::from(self.off & 0x7FFF)
            | (u32::from(self.flags & 0x3) << 15)
            | (u32::from(self.len & 0x7FFF) << 17)
    }

    /// `ItemIdIsUsed`.
    pub fn is_used(self) -> bool {
        self.flags != LP_UNUSED
    }

    /// `ItemIdHasStorage`.
    pub fn has_storage(self) -> bool {
        self.len != 0
    }

    /// `ItemIdIsNormal`.
    pub fn is_normal(self) -> bool {
        self.flags == LP_NORMAL
    }
}

/// A mutable view of one 8 kB page.
pub struct Page<'a> {
    bytes: &'a mut [u8],
}

impl<'a> Page<'a> {
    /// Wraps `bytes`, which must be exactly [`BLCKSZ`] long.
    pub fn new(bytes: &'a mut [u8]) -> Result<Page<'a>, PageError> {
        if bytes.len() != BLCKSZ {
            return Err(PageError::WrongSize(bytes.len()));
        }
        Ok(Page { bytes })
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The raw bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    pub fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    pub fn set_u16_at(&mut self, at: usize, value: u16) {
        self.bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }

    pub fn set_u32_at(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// `pd_lsn` as a 64-bit LSN.
    pub fn lsn(&self) -> u64 {
        (u64::from(self.u32_at(0)) << 32) | u64::from(self.u32_at(4))
    }

    /// `PageSetLSN`.
    pub fn set_lsn(&mut self, lsn: u64) {
        self.set_u32_at(0, (lsn >> 32) as u32);
        self.set_u32_at(4, lsn as u32);
    }

    pub fn flags(&self) -> u16 {
        self.u16_at(10)
    }

    pub fn set_flags(&mut self, flags: u16) {
        self.set_u16_at(10, flags);
    }

    pub fn lower(&self) -> u16 {
        self.u16_at(12)
    }

    pub fn set_lower(&mut self, value: u16) {
        self.set_u16_at(12, value);
    }

    pub fn upper(&self) -> u16 {
        self.u16_at(14)
    }

    pub fn set_upper(&mut self, value: u16) {
        self.set_u16_at(14, value);
    }

    pub fn special(&self) -> u16 {
        self.u16_at(16)
    }

    pub fn prune_xid(&self) -> u32 {
        self.u32_at(20)
    }

    pub fn set_prune_xid(&mut self, xid: u32) {
        self.set_u32_at(20, xid);
    }

    /// `PageIsNew`: never initialised (`pd_upper == 0`).
    pub fn is_new(&self) -> bool {
        self.upper() == 0
    }

    /// `PageInit`: zero the page and lay out an empty page with
    /// `special_size` (MAXALIGNed) bytes of special space.
    pub fn init(&mut self, special_size: usize) {
        let special = (BLCKSZ - maxalign(special_size)) as u16;
        self.bytes.fill(0);
        self.set_lower(SIZE_OF_PAGE_HEADER as u16);
        self.set_upper(special);
        self.set_u16_at(16, special);
        self.set_u16_at(18, BLCKSZ as u16 | PG_PAGE_LAYOUT_VERSION);
    }

    /// `PageGetMaxOffsetNumber`.
    pub fn max_offset(&self) -> u16 {
        let lower = usize::from(self.lower());
        if lower <= SIZE_OF_PAGE_HEADER {
            0
        } else {
            ((lower - SIZE_OF_PAGE_HEADER) / SIZE_OF_ITEM_ID) as u16
        }
    }

    fn item_id_at(offnum: u16) -> usize {
        SIZE_OF_PAGE_HEADER + (usize::from(offnum) - 1) * SIZE_OF_ITEM_ID
    }

    /// The line pointer `offnum` (1-based); errors past the page's end.
    pub fn item_id(&self, offnum: u16) -> Result<ItemId, PageError> {
        if offnum == 0 || Self::item_id_at(offnum) + SIZE_OF_ITEM_ID > BLCKSZ {
            return Err(PageError::BadOffset {
                offnum,
                max: self.max_offset(),
            });
        }
        Ok(ItemId::decode(self.u32_at(Self::item_id_at(offnum))))
    }

    /// Overwrites line pointer `offnum`.
    pub fn set_item_id(&mut self, offnum: u16, id: ItemId) -> Result<(), PageError> {
        self.item_id(offnum)?;
        self.set_u32_at(Self::item_id_at(offnum), id.encode());
        Ok(())
    }

    /// The line pointer `offnum`, which must be within `max_offset()`.
    pub fn existing_item_id(&self, offnum: u16) -> Result<ItemId, PageError> {
        if offnum == 0 || offnum > self.max_offset() {
            return Err(PageError::BadOffset {
                offnum,
                max: self.max_offset(),
            });
        }
        self.item_id(offnum)
    }

    /// Byte range of the item `offnum` points to (its `lp_len` bytes).
    pub fn item_range(&self, offnum: u16) -> Result<std::ops::Range<usize>, PageError> {
        let id = self.existing_item_id(offnum)?;
        let start = usize::from(id.off);
        let end = start + usize::from(id.len);
        if !id.has_storage() || start < SIZE_OF_PAGE_HEADER || end > BLCKSZ {
            return Err(PageError::BadItem { offnum });
        }
        Ok(start..end)
    }

    /// The start offset of a normal item (for tuple-header edits), checked
    /// to leave at least `min_len` bytes.
    pub fn normal_item(&self, offnum: u16, min_len: usize) -> Result<usize, PageError> {
        let id = self.existing_item_id(offnum)?;
        let range = self.item_range(offnum)?;
        if !id.is_normal() || range.len() < min_len {
            return Err(PageError::BadItem { offnum });
        }
        Ok(range.start)
    }

    fn check_pointers(&self, need_aligned_special: bool) -> Result<(), PageError> {
        let (lower, upper, special) = (self.lower(), self.upper(), self.special());
        let bad = usize::from(lower) < SIZE_OF_PAGE_HEADER
            || lower > upper
            || upper > special
            || usize::from(special) > BLCKSZ
            || (need_aligned_special && usize::from(special) != maxalign(usize::from(special)));
        if bad {
            return Err(PageError::Pointers {
                lower,
                upper,
                special,
            });
        }
        Ok(())
    }

    /// `PageAddItemExtended` with an explicit offset number. `overwrite`
    /// reuses an unused line pointer (`PAI_OVERWRITE`); otherwise later line
    /// pointers shift up. `is_heap` enforces `MaxHeapTuplesPerPage`.
    pub fn add_item(
        &mut self,
        item: &[u8],
        offnum: u16,
        overwrite: bool,
        is_heap: bool,
    ) -> Result<u16, PageError> {
        self.check_pointers(false)?;
        let limit = self.max_offset() + 1;
        let max = self.max_offset();
        let mut shuffle = false;
        if offnum == 0 || offnum > limit || (is_heap && offnum > MAX_HEAP_TUPLES_PER_PAGE) {
            return Err(PageError::BadOffset { offnum, max });
        }
        if offnum < limit {
            if overwrite {
                let id = self.item_id(offnum)?;
                if id.is_used() || id.has_storage() {
                    return Err(PageError::ItemInUse { offnum });
                }
            } else {
                shuffle = true;
            }
        }
        let lower = if offnum == limit || shuffle {
            usize::from(self.lower()) + SIZE_OF_ITEM_ID
        } else {
            usize::from(self.lower())
        };
        let aligned = maxalign(item.len());
        let upper = usize::from(self.upper()) as isize - aligned as isize;
        if (lower as isize) > upper || item.len() > 0x7FFF {
            return Err(PageError::NoSpace { size: item.len() });
        }
        let upper = upper as usize;
        let at = Self::item_id_at(offnum);
        if shuffle {
            let end = Self::item_id_at(limit);
            self.bytes.copy_within(at..end, at + SIZE_OF_ITEM_ID);
        }
        let id = ItemId {
            off: upper as u16,
            flags: LP_NORMAL,
            len: item.len() as u16,
        };
        self.set_u32_at(at, id.encode());
        self.bytes[upper..upper + item.len()].copy_from_slice(item);
        self.set_lower(lower as u16);
        self.set_upper(upper as u16);
        Ok(offnum)
    }

    /// `compactify_tuples`: pack the listed items (in their given, final
    /// line-pointer order) against `pd_special`, highest first. Each entry
    /// is (final line pointer number, old offset, aligned length).
    fn compactify(&mut self, items: &[(u16, usize, usize)]) -> Result<(), PageError> {
        let snapshot = self.bytes.to_vec();
        let mut upper = usize::from(self.special());
        for &(offnum, old_off, aligned_len) in items {
            if aligned_len > upper || old_off + aligned_len > BLCKSZ {
                return Err(PageError::BadItem { offnum });
            }
            upper -= aligned_len;
            self.bytes[upper..upper + aligned_len]
                .copy_from_slice(&snapshot[old_off..old_off + aligned_len]);
            let mut id = ItemId::decode(self.u32_at(Self::item_id_at(offnum)));
            id.off = upper as u16;
            self.set_u32_at(Self::item_id_at(offnum), id.encode());
        }
        self.set_upper(upper as u16);
        Ok(())
    }

    /// `PageRepairFragmentation`: compact storage of used items, mark
    /// storage-less unused items unused, drop trailing unused line pointers
    /// and set `PD_HAS_FREE_LINES` accordingly.
    pub fn repair_fragmentation(&mut self) -> Result<(), PageError> {
        self.check_pointers(true)?;
        let (upper, special) = (usize::from(self.upper()), usize::from(self.special()));
        let nline = self.max_offset();
        let mut items = Vec::new();
        let mut total = 0usize;
        let mut nunused = 0u16;
        let mut final_used = 0u16;
        for offnum in 1..=nline {
            let mut id = self.item_id(offnum)?;
            if id.is_used() {
                if id.has_storage() {
                    let off = usize::from(id.off);
                    if off < upper || off >= special {
                        return Err(PageError::BadItem { offnum });
                    }
                    let aligned = maxalign(usize::from(id.len));
                    total += aligned;
                    items.push((offnum, off, aligned));
                }
                final_used = offnum;
            } else {
                id.flags = LP_UNUSED;
                id.off = 0;
                id.len = 0;
                self.set_item_id(offnum, id)?;
                nunused += 1;
            }
        }
        if items.is_empty() {
            self.set_upper(special as u16);
        } else {
            if total > special - usize::from(self.lower()) {
                return Err(PageError::NoSpace { size: total });
            }
            self.compactify(&items)?;
        }
        if final_used != nline {
            let trailing = nline - final_used;
            nunused -= trailing;
            self.set_lower(self.lower() - trailing * SIZE_OF_ITEM_ID as u16);
        }
        self.set_has_free_lines(nunused > 0);
        Ok(())
    }

    fn set_has_free_lines(&mut self, on: bool) {
        let flags = self.flags();
        self.set_flags(if on {
            flags | PD_HAS_FREE_LINES
        } else {
            flags & !PD_HAS_FREE_LINES
        });
    }

    /// `PageTruncateLinePointerArray`: drop trailing unused line pointers
    /// (always keeping the first) and maintain `PD_HAS_FREE_LINES`.
    pub fn truncate_line_pointer_array(&mut self) -> Result<(), PageError> {
        let mut count_done = false;
        let mut set_hint = false;
        let mut trailing = 0u16;
        for offnum in (1..=self.max_offset()).rev() {
            let id = self.item_id(offnum)?;
            if !count_done && offnum > 1 {
                if !id.is_used() {
                    trailing += 1;
                } else {
                    count_done = true;
                }
            } else if !id.is_used() {
                set_hint = true;
                break;
            }
        }
        if trailing > 0 {
            self.set_lower(self.lower() - trailing * SIZE_OF_ITEM_ID as u16);
        }
        self.set_has_free_lines(set_hint);
        Ok(())
    }

    /// Checks a stored item for the index primitives; returns (offset, size).
    fn index_item(&self, offnum: u16) -> Result<(usize, usize), PageError> {
        let id = self.existing_item_id(offnum)?;
        let (off, size) = (usize::from(id.off), usize::from(id.len));
        if off < usize::from(self.upper())
            || off + size > usize::from(self.special())
            || off != maxalign(off)
        {
            return Err(PageError::BadItem { offnum });
        }
        Ok((off, size))
    }

    /// `PageIndexTupleDelete`: remove item `offnum`, closing the gap in both
    /// the line pointer array and the tuple space.
    pub fn index_tuple_delete(&mut self, offnum: u16) -> Result<(), PageError> {
        self.check_pointers(true)?;
        let (offset, size) = self.index_item(offnum)?;
        let size = maxalign(size);
        let at = Self::item_id_at(offnum);
        let lower = usize::from(self.lower());
        self.bytes.copy_within(at + SIZE_OF_ITEM_ID..lower, at);
        let upper = usize::from(self.upper());
        if offset > upper {
            self.bytes.copy_within(upper..offset, upper + size);
        }
        self.set_upper((upper + size) as u16);
        self.set_lower((lower - SIZE_OF_ITEM_ID) as u16);
        if self.max_offset() > 0 {
            for i in 1..=self.max_offset() {
                let mut id = self.item_id(i)?;
                if usize::from(id.off) <= offset {
                    id.off += size as u16;
                    self.set_item_id(i, id)?;
                }
            }
        }
        Ok(())
    }

    /// `PageIndexTupleDeleteNoCompact`: remove item `offnum`'s storage but
    /// keep its line pointer (unused) unless it is the last one.
    pub fn index_tuple_delete_no_compact(&mut self, offnum: u16) -> Result<(), PageError> {
        self.check_pointers(true)?;
        let (offset, size) = self.index_item(offnum)?;
        let size = maxalign(size);
        let nline = self.max_offset();
        if offnum < nline {
            self.set_item_id(
                offnum,
                ItemId {
                    off: 0,
                    flags: LP_UNUSED,
                    len: 0,
                },
            )?;
        } else {
            self.set_lower(self.lower() - SIZE_OF_ITEM_ID as u16);
        }
        let upper = usize::from(self.upper());
        if offset > upper {
            self.bytes.copy_within(upper..offset, upper + size);
        }
        self.set_upper((upper + size) as u16);
        for i in 1..=self.max_offset() {
            let mut id = self.item_id(i)?;
            if id.has_storage() && usize::from(id.off) <= offset {
                id.off += size as u16;
                self.set_item_id(i, id)?;
            }
        }
        Ok(())
    }

    /// `PageIndexMultiDelete`: remove the (ascending) `offnums` and compact.
    pub fn index_multi_delete(&mut self, offnums: &[u16]) -> Result<(), PageError> {
        if offnums.len() <= 2 {
            for &offnum in offnums.iter().rev() {
                self.index_tuple_delete(offnum)?;
            }
            return Ok(());
        }
        self.check_pointers(true)?;
        let mut kept_ids = Vec::new();
        let mut items = Vec::new();
        let mut next = 0usize;
        for offnum in 1..=self.max_offset() {
            let (offset, size) = self.index_item(offnum)?;
            if next < offnums.len() && offnums[next] == offnum {
                next += 1;
            } else {
                kept_ids.push(self.item_id(offnum)?);
                items.push((kept_ids.len() as u16, offset, maxalign(size)));
            }
        }
        if next != offnums.len() {
            return Err(PageError::BadOffset {
                offnum: offnums.get(next).copied().unwrap_or(0),
                max: self.max_offset(),
            });
        }
        for (i, id) in kept_ids.iter().enumerate() {
            self.set_u32_at(Self::item_id_at(i as u16 + 1), id.encode());
        }
        self.set_lower((SIZE_OF_PAGE_HEADER + kept_ids.len() * SIZE_OF_ITEM_ID) as u16);
        if items.is_empty() {
            self.set_upper(self.special());
            Ok(())
        } else {
            self.compactify(&items)
        }
    }

    /// `PageIndexTupleOverwrite`: replace item `offnum` with `item`, moving
    /// the tuples below it if the aligned size changes.
    pub fn index_tuple_overwrite(&mut self, offnum: u16, item: &[u8]) -> Result<(), PageError> {
        self.check_pointers(true)?;
        let (offset, old_size) = self.index_item(offnum)?;
        let old_size = maxalign(old_size);
        let new_aligned = maxalign(item.len());
        let (upper, lower) = (usize::from(self.upper()), usize::from(self.lower()));
        if new_aligned > old_size + (upper - lower) {
            return Err(PageError::NoSpace { size: item.len() });
        }
        let diff = old_size as isize - new_aligned as isize;
        if diff != 0 {
            let new_upper = (upper as isize + diff) as usize;
            self.bytes.copy_within(upper..offset, new_upper);
            self.set_upper(new_upper as u16);
            for i in 1..=self.max_offset() {
                let mut id = self.item_id(i)?;
                if id.has_storage() && usize::from(id.off) <= offset {
                    id.off = (isize::from(id.off as i16) + diff) as u16;
                    self.set_item_id(i, id)?;
                }
            }
        }
        let new_off = (offset as isize + diff) as usize;
        let mut id = self.item_id(offnum)?;
        id.off = new_off as u16;
        id.len = item.len() as u16;
        self.set_item_id(offnum, id)?;
        self.bytes[new_off..new_off + item.len()].copy_from_slice(item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Vec<u8> {
        let mut bytes = vec![0u8; BLCKSZ];
        Page::new(&mut bytes).unwrap().init(0);
        bytes
    }

    #[test]
    fn add_items_then_multi_delete_compacts_in_line_pointer_order() {
        let mut bytes = fresh();
        let mut page = Page::new(&mut bytes).unwrap();
        for (i, fill) in [1u8, 2, 3, 4].iter().enumerate() {
            page.add_item(&[*fill; 16], i as u16 + 1, false, false)
                .unwrap();
        }
        assert_eq!(page.max_offset(), 4);
        assert_eq!(page.upper() as usize, BLCKSZ - 64);
        page.index_multi_delete(&[1, 2, 3]).unwrap();
        assert_eq!(page.max_offset(), 1);
        let range = page.item_range(1).unwrap();
        assert_eq!(range.start, BLCKSZ - 16);
        assert_eq!(&page.bytes()[range], &[4u8; 16]);
    }

    #[test]
    fn insert_in_the_middle_shifts_line_pointers() {
        let mut bytes = fresh();
        let mut page = Page::new(&mut bytes).unwrap();
        page.add_item(&[1; 8], 1, false, false).unwrap();
        page.add_item(&[2; 8], 2, false, false).unwrap();
        page.add_item(&[9; 8], 1, false, false).unwrap();
        let first = page.item_range(1).unwrap();
        assert_eq!(&page.bytes()[first], &[9; 8]);
        let third = page.item_range(3).unwrap();
        assert_eq!(&page.bytes()[third], &[2; 8]);
    }

    #[test]
    fn index_tuple_delete_and_overwrite_keep_space_packed() {
        let mut bytes = fresh();
        let mut page = Page::new(&mut bytes).unwrap();
        for i in 1..=3u16 {
            page.add_item(&[i as u8; 8], i, false, false).unwrap();
        }
        page.index_tuple_delete(2).unwrap();
        assert_eq!(page.max_offset(), 2);
        assert_eq!(page.upper() as usize, BLCKSZ - 16);
        page.index_tuple_overwrite(1, &[7; 24]).unwrap();
        assert_eq!(page.upper() as usize, BLCKSZ - 32);
        let r1 = page.item_range(1).unwrap();
        assert_eq!(&page.bytes()[r1], &[7; 24]);
        let r2 = page.item_range(2).unwrap();
        assert_eq!(&page.bytes()[r2], &[3; 8]);
    }

    #[test]
    fn repair_fragmentation_drops_trailing_unused() {
        let mut bytes = fresh();
        let mut page = Page::new(&mut bytes).unwrap();
        for i in 1..=3u16 {
            page.add_item(&[i as u8; 8], i, false, true).unwrap();
        }
        for off in [1u16, 3] {
            let mut id = page.item_id(off).unwrap();
            id.flags = LP_UNUSED;
            id.len = 0;
            page.set_item_id(off, id).unwrap();
        }
        page.repair_fragmentation().unwrap();
        assert_eq!(page.max_offset(), 2);
        assert_eq!(page.flags() & PD_HAS_FREE_LINES, PD_HAS_FREE_LINES);
        assert_eq!(page.upper() as usize, BLCKSZ - 8);
    }

    #[test]
    fn garbage_pointers_are_errors() {
        let mut bytes = vec![0xFFu8; BLCKSZ];
        let mut page = Page::new(&mut bytes).unwrap();
        assert!(page.add_item(&[1; 8], 1, false, false).is_err());
        assert!(page.repair_fragmentation().is_err());
        assert!(page.index_tuple_delete(1).is_err());
        assert!(Page::new(&mut [0u8; 10]).is_err());
    }
}
