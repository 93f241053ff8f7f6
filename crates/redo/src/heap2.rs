//! Redo of HEAP2 records (`heap2_redo` in `heapam.c`): prune, vacuum,
//! freeze, visible (heap page and VM page), multi-insert and lock-updated.
//! New-cid and rewrite records register no blocks.

use postgres_wal::rmgr::heap::XLOG_HEAP_INIT_PAGE;
use postgres_wal::rmgr::heap::{XLH_INSERT_ALL_FROZEN_SET, XLH_INSERT_ALL_VISIBLE_CLEARED};
use postgres_wal::rmgr::heap2::{Heap2Record, XLH_FREEZE_XVAC, XLH_INVALID_XVAC};

use crate::heap::clear_all_visible;
use crate::page::{ItemId, Page, LP_DEAD, LP_REDIRECT, LP_UNUSED, PD_ALL_VISIBLE};
use crate::tuple::{build_tuple, TupleAt};
use crate::vm;
use crate::{RedoContext, RedoError};

/// Applies a HEAP2 record to the block in `context`.
pub fn redo(page: &mut Page<'_>, context: &RedoContext<'_>) -> Result<(), RedoError> {
    let record = context.record;
    match Heap2Record::parse(record.info, &record.main_data)? {
        Heap2Record::Prune(prune) => {
            let offsets = prune.offsets(context.data())?;
            for (from, to) in offsets.redirected {
                set_line_pointer(page, from, LP_REDIRECT, to)?;
            }
            for off in offsets.now_dead {
                set_line_pointer(page, off, LP_DEAD, 0)?;
            }
            for off in offsets.now_unused {
                set_line_pointer(page, off, LP_UNUSED, 0)?;
            }
            page.repair_fragmentation()?;
        }
        Heap2Record::Vacuum { nunused } => {
            let offsets = postgres_wal::rmgr::heap::u16_array(
                &mut postgres_wal::rmgr::cursor::BodyCursor::new(context.data(), "xl_heap_vacuum"),
                usize::from(nunused),
            )?;
            for off in offsets {
                set_line_pointer(page, off, LP_UNUSED, 0)?;
            }
            page.truncate_line_pointer_array()?;
        }
        Heap2Record::FreezePage(freeze) => {
            for plan in freeze.tuples(context.data())? {
                let tuple = TupleAt::find(page, plan.offset)?;
                tuple.set_xmax(page, plan.xmax);
                if plan.frzflags & XLH_FREEZE_XVAC != 0 {
                    tuple.set_xvac(page, 2);
                }
                if plan.frzflags & XLH_INVALID_XVAC != 0 {
                    tuple.set_xvac(page, 0);
                }
                tuple.set_infomask(page, plan.infomask);
                tuple.set_infomask2(page, plan.infomask2);
            }
        }
        Heap2Record::Visible(visible) => {
            if context.block.block_id == 1 {
                let flags = page.flags() | PD_ALL_VISIBLE;
                page.set_flags(flags);
            } else {
                let heap_block = record.block(1).ok_or(RedoError::NoBlock(1))?.blkno;
                if page.lsn() < record.end_lsn.0 {
                    vm::set_bits(page, heap_block, visible.flags);
                }
            }
        }
        Heap2Record::MultiInsert(insert) => {
            let init = record.info & XLOG_HEAP_INIT_PAGE != 0;
            if init {
                page.init(0);
            }
            let blkno = context.block.blkno;
            for (i, tuple) in insert.tuples(context.data())?.into_iter().enumerate() {
                let offnum = if init {
                    u16::try_from(i + 1).map_err(|_| RedoError::Inconsistent("too many tuples"))?
                } else {
                    *insert
                        .offsets
                        .get(i)
                        .ok_or(RedoError::Inconsistent("fewer offsets than tuples"))?
                };
                if page.max_offset() + 1 < offnum {
                    return Err(RedoError::Inconsistent("invalid max offset number"));
                }
                let bytes = build_tuple(tuple.header, record.xid, (blkno, offnum), tuple.data);
                page.add_item(&bytes, offnum, true, true)?;
            }
            if insert.flags & XLH_INSERT_ALL_VISIBLE_CLEARED != 0 {
                clear_all_visible(page);
            }
            if insert.flags & XLH_INSERT_ALL_FROZEN_SET != 0 {
                let flags = page.flags() | PD_ALL_VISIBLE;
                page.set_flags(flags);
            }
        }
        Heap2Record::LockUpdated(lock) => {
            let tuple = TupleAt::find(page, lock.offnum)?;
            tuple.reset_xmax_bits(page, lock.infobits_set);
            tuple.set_xmax(page, lock.xmax);
        }
        Heap2Record::NewCid(_) | Heap2Record::Rewrite(_) => {
            return Err(RedoError::NoBlock(context.block.block_id));
        }
    }
    Ok(())
}

/// `ItemIdSetRedirect` / `ItemIdSetDead` / `ItemIdSetUnused` on an existing
/// line pointer.
fn set_line_pointer(
    page: &mut Page<'_>,
    offnum: u16,
    flags: u8,
    off: u16,
) -> Result<(), RedoError> {
    page.existing_item_id(offnum)?;
    page.set_item_id(offnum, ItemId { off, flags, len: 0 })?;
    Ok(())
}
