//! Redo of HEAP records (`heap_redo` in `heapam.c`): insert, delete,
//! update, hot update, confirm, lock and inplace. Truncate touches no page.
//!
//! Visibility-map bit clears these records imply are not done here (the VM
//! page is not a registered block); see [`crate::vm`].

use postgres_wal::rmgr::heap::{
    HeapHeader, HeapRecord, HeapUpdate, UpdateNewTuple, XLH_DELETE_ALL_VISIBLE_CLEARED,
    XLH_DELETE_IS_PARTITION_MOVE, XLH_DELETE_IS_SUPER, XLH_INSERT_ALL_VISIBLE_CLEARED,
    XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED, XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED, XLOG_HEAP_INIT_PAGE,
};

use crate::page::{Page, PD_ALL_VISIBLE};
use crate::tuple::{
    build_tuple, xmax_is_locked_only, TupleAt, HEAP_HOT_UPDATED, MOVED_PARTITIONS_OFFSET_NUMBER,
    SIZEOF_HEAP_TUPLE_HEADER, T_HOFF,
};
use crate::{RedoContext, RedoError};

/// Applies a HEAP record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    let parsed = HeapRecord::parse(record.info, &record.main_data)?;
    let blkno = context.block.blkno;
    match parsed {
        HeapRecord::Insert(insert) => {
            if record.info & XLOG_HEAP_INIT_PAGE != 0 {
                page.init(0);
            }
            let (header, body) = HeapHeader::parse_with_tuple(context.data())?;
            add_new_tuple(page, header, record.xid, (blkno, insert.offnum), body, 0)?;
            if insert.flags & XLH_INSERT_ALL_VISIBLE_CLEARED != 0 {
                clear_all_visible(page);
            }
        }
        HeapRecord::Delete(delete) => {
            let tuple = TupleAt::find(page, delete.offnum)?;
            tuple.reset_xmax_bits(page, delete.infobits_set);
            let mask2 = tuple.infomask2(page) & !HEAP_HOT_UPDATED;
            tuple.set_infomask2(page, mask2);
            if delete.flags & XLH_DELETE_IS_SUPER == 0 {
                tuple.set_xmax(page, delete.xmax);
            } else {
                tuple.set_xmin(page, 0);
            }
            tuple.set_cmax(page, 0);
            set_prunable(page, record.xid);
            if delete.flags & XLH_DELETE_ALL_VISIBLE_CLEARED != 0 {
                clear_all_visible(page);
            }
            if delete.flags & XLH_DELETE_IS_PARTITION_MOVE != 0 {
                tuple.set_ctid(page, u32::MAX, MOVED_PARTITIONS_OFFSET_NUMBER);
            } else {
                tuple.set_ctid(page, blkno, delete.offnum);
            }
        }
        HeapRecord::Update(update) => redo_update(page, context, &update, false)?,
        HeapRecord::HotUpdate(update) => redo_update(page, context, &update, true)?,
        HeapRecord::Truncate(_) => {
            return Err(RedoError::NoBlock(context.block.block_id));
        }
        HeapRecord::Confirm { offnum } => {
            let tuple = TupleAt::find(page, offnum)?;
            tuple.set_ctid(page, blkno, offnum);
        }
        HeapRecord::Lock(lock) => {
            let tuple = TupleAt::find(page, lock.offnum)?;
            tuple.reset_xmax_bits(page, lock.infobits_set);
            if xmax_is_locked_only(tuple.infomask(page)) {
                let mask2 = tuple.infomask2(page) & !HEAP_HOT_UPDATED;
                tuple.set_infomask2(page, mask2);
                tuple.set_ctid(page, blkno, lock.offnum);
            }
            tuple.set_xmax(page, lock.locking_xid);
            tuple.set_cmax(page, 0);
        }
        HeapRecord::Inplace { offnum } => {
            let tuple = TupleAt::find(page, offnum)?;
            let range = page.item_range(offnum)?;
            let hoff = usize::from(page.bytes()[tuple.at + T_HOFF]);
            let new_data = context.data();
            if hoff > range.len() || range.len() - hoff != new_data.len() {
                return Err(RedoError::Inconsistent("inplace tuple length differs"));
            }
            page.bytes_mut()[range.start + hoff..range.end].copy_from_slice(new_data);
        }
    }
    Ok(())
}

/// `PageClearAllVisible`.
pub fn clear_all_visible(page: &mut Page<'_>) {
    let flags = page.flags() & !PD_ALL_VISIBLE;
    page.set_flags(flags);
}

/// `PageSetPrunable`: remember the oldest xid that may leave prunable tuples.
pub fn set_prunable(page: &mut Page<'_>, xid: u32) {
    let current = page.prune_xid();
    // TransactionIdPrecedes: modulo-2^32 comparison of normal xids.
    if current == 0 || (xid.wrapping_sub(current) as i32) < 0 {
        page.set_prune_xid(xid);
    }
}

/// Builds the new tuple (xmin = record xid, cmin 0, ctid = its own TID,
/// xmax as given) and places it at `tid.1` reusing an unused line pointer.
fn add_new_tuple(
    page: &mut Page<'_>,
    header: HeapHeader,
    xmin: u32,
    tid: (u32, u16),
    body: &[u8],
    xmax: u32,
) -> Result<(), RedoError> {
    if page.max_offset() + 1 < tid.1 {
        return Err(RedoError::Inconsistent("invalid max offset number"));
    }
    let mut tuple = build_tuple(header, xmin, tid, body);
    tuple[4..8].copy_from_slice(&xmax.to_le_bytes());
    page.add_item(&tuple, tid.1, true, true)?;
    Ok(())
}

/// `heap_xlog_update`, for whichever of the old (block 1, or block 0 when
/// both tuples share the page) and new (block 0) pages `context` names.
fn redo_update(
    page: &mut Page<'_>,
    context: &RedoContext<'_>,
    update: &HeapUpdate,
    hot: bool,
) -> Result<(), RedoError> {
    let record = context.record;
    let new_block = record.block(0).ok_or(RedoError::NoBlock(0))?;
    let same_page = record.block(1).is_none();
    let is_old_page = context.block.block_id == 1 || same_page;
    let is_new_page = context.block.block_id == 0;
    let mut old_tuple = Vec::new();
    if is_old_page {
        let tuple = TupleAt::find(page, update.old_offnum)?;
        old_tuple = page.bytes()[page.item_range(update.old_offnum)?].to_vec();
        tuple.reset_xmax_bits(page, update.old_infobits_set);
        let mask2 = tuple.infomask2(page);
        tuple.set_infomask2(
            page,
            if hot {
                mask2 | HEAP_HOT_UPDATED
            } else {
                mask2 & !HEAP_HOT_UPDATED
            },
        );
        tuple.set_xmax(page, update.old_xmax);
        tuple.set_cmax(page, 0);
        tuple.set_ctid(page, new_block.blkno, update.new_offnum);
        set_prunable(page, record.xid);
        if update.flags & XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED != 0 {
            clear_all_visible(page);
        }
    }
    if !is_new_page {
        return Ok(());
    }
    if !same_page && record.info & XLOG_HEAP_INIT_PAGE != 0 {
        page.init(0);
    }
    let new = UpdateNewTuple::parse(update.flags, context.data())?;
    let body = new_tuple_body(&new, &old_tuple)?;
    add_new_tuple(
        page,
        new.header,
        record.xid,
        (new_block.blkno, update.new_offnum),
        &body,
        update.new_xmax,
    )?;
    if update.flags & XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED != 0 {
        clear_all_visible(page);
    }
    Ok(())
}

/// Reassembles the new tuple's bytes after the fixed header: logged bitmap
/// and padding, the prefix shared with the old tuple, the logged middle,
/// the suffix shared with the old tuple.
fn new_tuple_body(new: &UpdateNewTuple<'_>, old_tuple: &[u8]) -> Result<Vec<u8>, RedoError> {
    let (prefix, suffix) = (usize::from(new.prefix_len), usize::from(new.suffix_len));
    if (prefix > 0 || suffix > 0) && old_tuple.len() < SIZEOF_HEAP_TUPLE_HEADER {
        return Err(RedoError::Inconsistent("prefix/suffix without old tuple"));
    }
    let mut body = Vec::with_capacity(new.data.len() + prefix + suffix);
    if prefix > 0 {
        let bitmap_len = usize::from(new.header.hoff)
            .checked_sub(SIZEOF_HEAP_TUPLE_HEADER)
            .filter(|len| *len <= new.data.len())
            .ok_or(RedoError::Inconsistent("t_hoff out of range"))?;
        let old_hoff = usize::from(old_tuple[T_HOFF]);
        let old_prefix = old_tuple
            .get(old_hoff..old_hoff + prefix)
            .ok_or(RedoError::Inconsistent("prefix longer than old tuple"))?;
        body.extend_from_slice(&new.data[..bitmap_len]);
        body.extend_from_slice(old_prefix);
        body.extend_from_slice(&new.data[bitmap_len..]);
    } else {
        body.extend_from_slice(new.data);
    }
    if suffix > 0 {
        let start = old_tuple
            .len()
            .checked_sub(suffix)
            .ok_or(RedoError::Inconsistent("suffix longer than old tuple"))?;
        body.extend_from_slice(&old_tuple[start..]);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use postgres_wal::record::{DecodedBlock, DecodedRecord, ForkNumber, RelFileNode, BLCKSZ};
    use postgres_wal::rmgr::heap::{XLOG_HEAP_DELETE, XLOG_HEAP_INSERT};
    use postgres_wal::rmgr::RmgrId;
    use postgres_wal::Lsn;

    use crate::page::Page;
    use crate::tuple::{HEAP_XMAX_INVALID, T_CTID, T_INFOMASK, T_XMAX, T_XMIN};

    fn record(info: u8, xid: u32, main_data: Vec<u8>, data: Vec<u8>) -> DecodedRecord {
        DecodedRecord {
            start_lsn: Lsn(0x100_0000),
            end_lsn: Lsn(0x100_0040),
            total_len: 64,
            xid,
            prev: Lsn(0),
            info,
            rmid: RmgrId::Heap as u8,
            origin: None,
            toplevel_xid: None,
            blocks: vec![DecodedBlock {
                block_id: 0,
                rel: RelFileNode::default(),
                fork: ForkNumber::Main,
                blkno: 7,
                fork_flags: 0,
                will_init: false,
                image: None,
                data,
            }],
            main_data,
        }
    }

    #[test]
    fn insert_on_init_page_then_delete() {
        // xl_heap_insert { offnum 1, flags 0 }; xl_heap_header + 4 data bytes.
        let mut data = vec![2, 0, 0x02, 0x08, 24];
        data.extend_from_slice(&[0, 0xAA, 0xBB, 0xCC, 0xDD]);
        let insert = record(XLOG_HEAP_INSERT | 0x80, 900, vec![1, 0, 0], data);
        let mut bytes = vec![0xEEu8; BLCKSZ];
        crate::apply(&mut bytes, &insert, 0).unwrap();
        let page = Page::new(&mut bytes).unwrap();
        assert_eq!(page.max_offset(), 1);
        assert_eq!(page.lsn(), 0x100_0040);
        let range = page.item_range(1).unwrap();
        assert_eq!(range.len(), 23 + 5);
        let at = range.start;
        assert_eq!(page.u32_at(at + T_XMIN), 900);
        assert_eq!(page.u16_at(at + T_CTID + 4), 1);
        assert_eq!(&page.bytes()[at + 24..at + 28], &[0xAA, 0xBB, 0xCC, 0xDD]);

        // xl_heap_delete { xmax 901, offnum 1, infobits 0, flags 0 }.
        let delete = record(
            XLOG_HEAP_DELETE,
            901,
            vec![0x85, 3, 0, 0, 1, 0, 0, 0],
            vec![],
        );
        crate::apply(&mut bytes, &delete, 0).unwrap();
        let page = Page::new(&mut bytes).unwrap();
        assert_eq!(page.u32_at(at + T_XMAX), 901);
        assert_eq!(page.u16_at(at + T_INFOMASK) & HEAP_XMAX_INVALID, 0);
        assert_eq!(page.prune_xid(), 901);
    }

    #[test]
    fn insert_past_the_line_pointer_array_is_an_error() {
        let data = vec![2, 0, 0x02, 0x08, 24, 0];
        let insert = record(XLOG_HEAP_INSERT | 0x80, 900, vec![5, 0, 0], data);
        let mut bytes = vec![0u8; BLCKSZ];
        assert!(crate::apply(&mut bytes, &insert, 0).is_err());
    }
}
