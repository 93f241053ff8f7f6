//! Records that change which files exist: relation create and truncate
//! (smgr), database create and drop, tablespaces, relation mapper files.

use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::rmgr::dbase::DbaseRecord;
use postgres_wal::rmgr::relmap::{RelmapUpdate, RELMAPPER_FILESIZE};
use postgres_wal::rmgr::smgr::{
    SmgrRecord, SMGR_TRUNCATE_FSM, SMGR_TRUNCATE_HEAP, SMGR_TRUNCATE_VM,
};
use postgres_wal::rmgr::tblspc::TblspcRecord;
use storage::{Key, Value};

use crate::batch::Batch;
use crate::known::Known;
use crate::IngestError;

pub(crate) fn smgr(
    known: &mut Known,
    b: &mut Batch<'_>,
    body: &SmgrRecord,
) -> Result<(), IngestError> {
    match body {
        SmgrRecord::Create { rel, fork } => {
            known.create_rel(b, *rel, *fork)?;
            Ok(())
        }
        SmgrRecord::Truncate { blkno, rel, flags } => truncate(known, b, *rel, *blkno, *flags),
        _ => Ok(()),
    }
}

/// `smgr_redo` truncate: the main fork to `blocks`, the VM and FSM to the
/// pages covering them (their last kept page losing the entries of removed
/// heap blocks, which PostgreSQL does without WAL).
fn truncate(
    known: &mut Known,
    b: &mut Batch<'_>,
    rel: RelFileNode,
    blocks: u32,
    flags: u32,
) -> Result<(), IngestError> {
    if flags & SMGR_TRUNCATE_HEAP != 0 {
        shrink(known, b, rel, ForkNumber::Main, blocks)?;
    }
    if flags & SMGR_TRUNCATE_VM != 0 {
        truncate_vm(known, b, rel, blocks)?;
    }
    if flags & SMGR_TRUNCATE_FSM != 0 {
        truncate_fsm(known, b, rel, blocks)?;
    }
    Ok(())
}

/// Heap blocks one FSM leaf page covers (`SlotsPerFSMPage`: the page minus
/// its header and `fp_next_slot`, minus the non-leaf half of the tree).
const FSM_SLOTS_PER_PAGE: u32 = (BLCKSZ as u32 - 24 - 4) - (BLCKSZ as u32 / 2 - 1);
/// `FSM_TREE_DEPTH` for 8 KiB pages.
const FSM_TREE_DEPTH: u32 = 3;

/// `fsm_logical_to_physical` for a leaf (bottom-level) page: the block of
/// the FSM fork holding it, counting the upper-level pages before it.
fn fsm_leaf_block(leaf: u32) -> u32 {
    let mut node = u64::from(leaf);
    let mut pages = 0u64;
    for _ in 0..FSM_TREE_DEPTH {
        pages += node + 1;
        node /= u64::from(FSM_SLOTS_PER_PAGE);
    }
    u32::try_from(pages - 1).unwrap_or(u32::MAX)
}

/// `FreeSpaceMapPrepareTruncateRel` followed by the truncation. The last
/// kept leaf page is zeroed rather than having only its tail cleared: the
/// map is a hint, and an empty page (which PostgreSQL initialises on read)
/// never claims space that is not free.
fn truncate_fsm(
    known: &mut Known,
    b: &mut Batch<'_>,
    rel: RelFileNode,
    heap_blocks: u32,
) -> Result<(), IngestError> {
    let fork = ForkNumber::Fsm;
    if !known.rel_exists(b, rel, fork)? {
        return Ok(());
    }
    let size = known.rel_size(b, rel, fork)?;
    let leaf = fsm_leaf_block(heap_blocks / FSM_SLOTS_PER_PAGE);
    let new_size = if !heap_blocks.is_multiple_of(FSM_SLOTS_PER_PAGE) {
        if leaf >= size {
            return Ok(());
        }
        b.put(Key::rel_block(rel, fork, leaf), crate::blocks::zero_page())?;
        leaf + 1
    } else {
        leaf
    };
    if new_size < size {
        known.set_rel_size(rel, fork, new_size);
    }
    Ok(())
}

fn shrink(
    known: &mut Known,
    b: &mut Batch<'_>,
    rel: RelFileNode,
    fork: ForkNumber,
    blocks: u32,
) -> Result<(), IngestError> {
    if known.rel_exists(b, rel, fork)? && known.rel_size(b, rel, fork)? > blocks {
        known.set_rel_size(rel, fork, blocks);
    }
    Ok(())
}

/// `visibilitymap_prepare_truncate` followed by the truncation.
fn truncate_vm(
    known: &mut Known,
    b: &mut Batch<'_>,
    rel: RelFileNode,
    heap_blocks: u32,
) -> Result<(), IngestError> {
    let fork = ForkNumber::VisibilityMap;
    if !known.rel_exists(b, rel, fork)? {
        return Ok(());
    }
    let per_page = redo::vm::HEAP_BLOCKS_PER_PAGE;
    let trunc_block = heap_blocks / per_page;
    let size = known.rel_size(b, rel, fork)?;
    if size <= trunc_block {
        return Ok(());
    }
    let first_cleared = heap_blocks % per_page;
    if first_cleared == 0 {
        known.set_rel_size(rel, fork, trunc_block);
        return Ok(());
    }
    b.modify_page(Key::rel_block(rel, fork, trunc_block), |page| {
        if !crate::images::is_new(page) {
            clear_vm_tail(page, first_cleared);
        }
    })?;
    known.set_rel_size(rel, fork, trunc_block + 1);
    Ok(())
}

/// Clears the bits of heap blocks `first..` on a VM page.
fn clear_vm_tail(page: &mut [u8], first: u32) {
    const MAP_START: usize = 24; // MAXALIGN(SizeOfPageHeaderData)
    let byte = MAP_START + (first / 4) as usize;
    let keep_bits = (first % 4) * 2;
    if byte < BLCKSZ {
        page[byte] &= ((1u16 << keep_bits) - 1) as u8;
        page[byte + 1..].fill(0);
    }
}

pub(crate) fn dbase(
    known: &mut Known,
    b: &mut Batch<'_>,
    body: &DbaseRecord,
) -> Result<(), IngestError> {
    match body {
        DbaseRecord::CreateWalLog {
            db_id,
            tablespace_id,
        } => {
            // The files follow as ordinary WAL (smgr create, FPIs, relmap).
            known.set_rels_of_db(*tablespace_id, *db_id, []);
            known.add_db(b, *tablespace_id, *db_id)
        }
        DbaseRecord::CreateFileCopy {
            db_id,
            tablespace_id,
            src_db_id,
            src_tablespace_id,
        } => copy_database(
            known,
            b,
            (*src_tablespace_id, *src_db_id),
            (*tablespace_id, *db_id),
        ),
        DbaseRecord::Drop {
            db_id,
            tablespace_ids,
        } => {
            for &spc in tablespace_ids {
                known.set_rels_of_db(spc, *db_id, []);
                known.remove_db(b, spc, *db_id)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The file-copy strategy copies the template's directory with no page in
/// the WAL: copy every fork of it as of this record (the server checkpoints
/// before copying, so its files then equal what we hold).
fn copy_database(
    known: &mut Known,
    b: &mut Batch<'_>,
    (src_spc, src_db): (u32, u32),
    (spc, db): (u32, u32),
) -> Result<(), IngestError> {
    let rels = known.rels_of_db(b, src_spc, src_db)?;
    let mut sizes = Vec::with_capacity(rels.len());
    for &(rel_node, fork) in &rels {
        let src = RelFileNode {
            spc_node: src_spc,
            db_node: src_db,
            rel_node,
        };
        let dst = RelFileNode {
            spc_node: spc,
            db_node: db,
            rel_node,
        };
        let blocks = known.rel_size(b, src, fork)?;
        for blkno in 0..blocks {
            if let Some(page) = b.read(Key::rel_block(src, fork, blkno))? {
                b.put(Key::rel_block(dst, fork, blkno), Value::Image(page))?;
            }
        }
        sizes.push((dst, fork, blocks));
    }
    known.set_rels_of_db(spc, db, rels);
    for (dst, fork, blocks) in sizes {
        known.set_rel_size(dst, fork, blocks);
    }
    if let Some(map) = b.read(Key::relmap_file(src_spc, src_db))? {
        b.put(Key::relmap_file(spc, db), Value::Image(map))?;
    }
    known.add_db(b, spc, db)
}

/// `XLOG_TBLSPC_DROP`: PostgreSQL removes the tablespace's (by then empty)
/// database directories. A database directory there appears with the first
/// relation created in it and would otherwise outlive the tablespace. A
/// tablespace create needs nothing: base backup makes `pg_tblspc/<oid>` for
/// each database stored in it.
pub(crate) fn tablespace(
    known: &mut Known,
    b: &mut Batch<'_>,
    body: &TblspcRecord,
) -> Result<(), IngestError> {
    if let TblspcRecord::Drop { ts_id } = body {
        for db in known.dbs_in_tablespace(b, *ts_id)? {
            known.set_rels_of_db(*ts_id, db, []);
            known.remove_db(b, *ts_id, db)?;
        }
    }
    Ok(())
}

/// `XLOG_RELMAP_UPDATE`: the whole file.
pub(crate) fn relmap(b: &mut Batch<'_>, update: &RelmapUpdate) -> Result<(), IngestError> {
    if update.data.len() != RELMAPPER_FILESIZE {
        return Err(b.malformed(format!(
            "relmap update of {} bytes, expected {RELMAPPER_FILESIZE}",
            update.data.len()
        )));
    }
    b.put(
        Key::relmap_file(update.ts_id, update.db_id),
        Value::Image(update.data.clone().into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsm_leaf_pages_sit_after_their_upper_levels() {
        assert_eq!(FSM_SLOTS_PER_PAGE, 4069);
        // Root, first level-1 page, then leaves 0, 1, ...
        assert_eq!(fsm_leaf_block(0), 2);
        assert_eq!(fsm_leaf_block(1), 3);
        // Leaf 4069 starts the second level-1 page's subtree.
        assert_eq!(fsm_leaf_block(4068), 4070);
        assert_eq!(fsm_leaf_block(4069), 4072);
    }

    #[test]
    fn vm_tail_clear_keeps_bits_of_remaining_blocks() {
        let mut page = vec![0xffu8; BLCKSZ];
        clear_vm_tail(&mut page, 6); // keep heap blocks 0..6
        assert_eq!(page[24], 0xff);
        assert_eq!(page[25], 0b0000_1111);
        assert!(page[26..].iter().all(|&b| b == 0));
        assert_eq!(page[23], 0xff, "header untouched");
    }
}
