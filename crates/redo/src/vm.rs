//! The visibility map (`visibilitymap.c`): where a heap block's two bits
//! live, and the VM changes heap records imply for VM pages they do not
//! register as blocks.
//!
//! Heap insert/multi-insert/update/delete/lock/lock-updated clear VM bits
//! during redo without a block reference (so no image ever shows the
//! result); ingest must store those changes as their own values. The VM
//! page a `HEAP2 VISIBLE` record sets bits on *is* registered (block 0),
//! so [`crate::apply`] handles it and it is not listed here.

use postgres_wal::record::{DecodedRecord, RelFileNode};
use postgres_wal::rmgr::heap::{
    HeapRecord, XLH_DELETE_ALL_VISIBLE_CLEARED, XLH_INSERT_ALL_VISIBLE_CLEARED,
    XLH_LOCK_ALL_FROZEN_CLEARED, XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED,
    XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED,
};
use postgres_wal::rmgr::heap2::Heap2Record;
use postgres_wal::rmgr::RmgrId;

use crate::page::Page;
use crate::RedoError;

/// Heap blocks covered by one VM page (`HEAPBLOCKS_PER_PAGE`; the layout
/// is defined in [`postgres_wal::vm`]).
pub use postgres_wal::vm::HEAP_BLOCKS_PER_PAGE;
use postgres_wal::vm::{BITS_PER_HEAP_BLOCK, HEAP_BLOCKS_PER_BYTE, PAGE_HEADER_SIZE};

/// `VISIBILITYMAP_ALL_VISIBLE`.
pub const ALL_VISIBLE: u8 = 0x01;
/// `VISIBILITYMAP_ALL_FROZEN`.
pub const ALL_FROZEN: u8 = 0x02;
/// `VISIBILITYMAP_VALID_BITS`.
pub const VALID_BITS: u8 = 0x03;

/// The VM block holding `heap_block`'s bits.
pub fn vm_block(heap_block: u32) -> u32 {
    heap_block / HEAP_BLOCKS_PER_PAGE
}

fn byte_and_shift(heap_block: u32) -> (usize, u32) {
    let byte = (heap_block % HEAP_BLOCKS_PER_PAGE) / HEAP_BLOCKS_PER_BYTE;
    (
        PAGE_HEADER_SIZE + byte as usize,
        (heap_block % HEAP_BLOCKS_PER_BYTE) * BITS_PER_HEAP_BLOCK,
    )
}

/// One VM change a heap record implies: clear `clear_bits` of `heap_block`
/// on VM page `vm_block` of `rel`'s visibility-map fork.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmClear {
    pub rel: RelFileNode,
    pub vm_block: u32,
    pub heap_block: u32,
    pub clear_bits: u8,
}

/// The VM bit clears `record` implies (empty for records that imply none).
pub fn vm_changes(record: &DecodedRecord) -> Result<Vec<VmClear>, RedoError> {
    let mut out = Vec::new();
    vm_changes_into(record, &mut out)?;
    Ok(out)
}

/// [`vm_changes`] into `out` (cleared first), reusing its allocation; on
/// error `out` is left empty.
pub fn vm_changes_into(record: &DecodedRecord, out: &mut Vec<VmClear>) -> Result<(), RedoError> {
    out.clear();
    let found = vm_changes_to(record, out);
    if found.is_err() {
        out.clear();
    }
    found
}

fn vm_changes_to(record: &DecodedRecord, out: &mut Vec<VmClear>) -> Result<(), RedoError> {
    let mut push = |block_id: u8, bits: u8| -> Result<(), RedoError> {
        let block = record.block(block_id).ok_or(RedoError::NoBlock(block_id))?;
        out.push(VmClear {
            rel: block.rel,
            vm_block: vm_block(block.blkno),
            heap_block: block.blkno,
            clear_bits: bits,
        });
        Ok(())
    };
    match RmgrId::from_u8(record.rmid) {
        Some(RmgrId::Heap) => match HeapRecord::parse(record.info, &record.main_data)? {
            HeapRecord::Insert(r) if r.flags & XLH_INSERT_ALL_VISIBLE_CLEARED != 0 => {
                push(0, VALID_BITS)?
            }
            HeapRecord::Delete(r) if r.flags & XLH_DELETE_ALL_VISIBLE_CLEARED != 0 => {
                push(0, VALID_BITS)?
            }
            HeapRecord::Update(r) | HeapRecord::HotUpdate(r) => {
                let old_block = if record.block(1).is_some() { 1 } else { 0 };
                if r.flags & XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED != 0 {
                    push(old_block, VALID_BITS)?;
                }
                if r.flags & XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED != 0 {
                    push(0, VALID_BITS)?;
                }
            }
            HeapRecord::Lock(r) if r.flags & XLH_LOCK_ALL_FROZEN_CLEARED != 0 => {
                push(0, ALL_FROZEN)?
            }
            _ => {}
        },
        Some(RmgrId::Heap2) => match Heap2Record::parse(record.info, &record.main_data)? {
            Heap2Record::MultiInsert(r) if r.flags & XLH_INSERT_ALL_VISIBLE_CLEARED != 0 => {
                push(0, VALID_BITS)?
            }
            Heap2Record::LockUpdated(r) if r.flags & XLH_LOCK_ALL_FROZEN_CLEARED != 0 => {
                push(0, ALL_FROZEN)?
            }
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

/// Applies a [`VmClear`] to its VM page (`visibilitymap_clear`; a page never
/// initialised is initialised first, as `vm_readbuf` does). The page LSN is
/// left alone, as Postgres leaves it.
pub fn apply_clear(page: &mut [u8], change: &VmClear) -> Result<(), RedoError> {
    let mut page = Page::new(page)?;
    if page.is_new() {
        page.init(0);
    }
    let (byte, shift) = byte_and_shift(change.heap_block);
    page.bytes_mut()[byte] &= !((change.clear_bits & VALID_BITS) << shift);
    Ok(())
}

/// `visibilitymap_set` on a VM page: set `flags` for `heap_block`
/// (initialising a never-initialised page first).
pub fn set_bits(page: &mut Page<'_>, heap_block: u32, flags: u8) {
    if page.is_new() {
        page.init(0);
    }
    let (byte, shift) = byte_and_shift(heap_block);
    page.bytes_mut()[byte] |= (flags & VALID_BITS) << shift;
}

/// The bits currently set for `heap_block` on its VM page.
pub fn get_bits(page: &[u8], heap_block: u32) -> u8 {
    let (byte, shift) = byte_and_shift(heap_block);
    page.get(byte).map_or(0, |b| (b >> shift) & VALID_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_wal::record::BLCKSZ;

    #[test]
    fn block_to_map_position() {
        assert_eq!(HEAP_BLOCKS_PER_PAGE, 32672);
        assert_eq!(vm_block(32671), 0);
        assert_eq!(vm_block(32672), 1);
        let mut bytes = vec![0u8; BLCKSZ];
        let mut page = Page::new(&mut bytes).unwrap();
        set_bits(&mut page, 5, ALL_VISIBLE | ALL_FROZEN);
        assert_eq!(page.bytes()[PAGE_HEADER_SIZE + 1], 0b0000_1100);
        let change = VmClear {
            rel: RelFileNode::default(),
            vm_block: 0,
            heap_block: 5,
            clear_bits: ALL_FROZEN,
        };
        apply_clear(&mut bytes, &change).unwrap();
        assert_eq!(get_bits(&bytes, 5), ALL_VISIBLE);
    }
}

#[cfg(test)]
mod record_tests {
    use postgres_wal::record::{DecodedBlock, DecodedRecord, ForkNumber, RelFileNode};
    use postgres_wal::rmgr::heap::{XLH_DELETE_ALL_VISIBLE_CLEARED, XLOG_HEAP_DELETE};
    use postgres_wal::rmgr::RmgrId;
    use postgres_wal::Lsn;

    use super::*;

    #[test]
    fn delete_that_cleared_all_visible_clears_both_vm_bits() {
        let rel = RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: 16384,
        };
        let mut record = DecodedRecord {
            start_lsn: Lsn(1),
            end_lsn: Lsn(2),
            total_len: 0,
            xid: 7,
            prev: Lsn(0),
            info: XLOG_HEAP_DELETE,
            rmid: RmgrId::Heap as u8,
            origin: None,
            toplevel_xid: None,
            blocks: vec![DecodedBlock {
                block_id: 0,
                rel,
                fork: ForkNumber::Main,
                blkno: 40_000,
                fork_flags: 0,
                will_init: false,
                image: None,
                data: vec![],
            }],
            main_data: vec![7, 0, 0, 0, 1, 0, 0, XLH_DELETE_ALL_VISIBLE_CLEARED],
        };
        let changes = vm_changes(&record).unwrap();
        assert_eq!(
            changes,
            vec![VmClear {
                rel,
                vm_block: 1,
                heap_block: 40_000,
                clear_bits: VALID_BITS
            }]
        );
        // Into a reused vector: the earlier record's clears are gone.
        let mut reused = changes.clone();
        vm_changes_into(&record, &mut reused).unwrap();
        assert_eq!(reused, changes);
        record.main_data[7] = 0;
        assert!(vm_changes(&record).unwrap().is_empty());
        vm_changes_into(&record, &mut reused).unwrap();
        assert!(reused.is_empty());
        // A record naming no block 0: an error, and nothing left behind.
        record.main_data[7] = XLH_DELETE_ALL_VISIBLE_CLEARED;
        record.blocks[0].block_id = 1;
        let mut reused = changes;
        assert!(vm_changes_into(&record, &mut reused).is_err());
        assert!(reused.is_empty());
    }
}
