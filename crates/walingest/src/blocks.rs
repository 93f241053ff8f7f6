//! Block references: every page a record registers becomes a value, and
//! relations grow to hold them.
//!
//! - An image (full-page write or consistency-check after-image) becomes
//!   [`Value::Image`] of the page redo would produce ([`crate::images`]).
//! - A block of a natively redone resource manager without an image becomes
//!   [`Value::WalRecord`] ([`crate::stored_record`]); a block past the end
//!   of its relation starts from a zero page, as in PostgreSQL's redo, so it
//!   is stored as will-init.
//! - A block of an `XLOG_FPI_FOR_HINT` record without an image changes
//!   nothing and stores nothing, as PostgreSQL's redo skips it: such records
//!   come from a server with checksums or `wal_log_hints` and
//!   `full_page_writes = off` (endpoints run with it off).
//! - Any other block without an image cannot be reproduced: the record is
//!   refused with [`crate::IngestError::Unsupported`].
//!
//! Writing past the end of a fork extends it; the blocks skipped over are
//! zero pages, as `XLogReadBufferExtended` writes them. Visibility-map bits
//! that heap records clear without registering the VM page come from
//! [`redo::vm::vm_changes`].

use bytes::Bytes;
use postgres_wal::record::{DecodedRecord, ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::rmgr::RmgrId;
use smallvec::SmallVec;
use storage::{DerivedOp, Key, Value};

use crate::batch::Batch;
use crate::known::Known;
use crate::prepare::Decoded;
use crate::{images, stored_record, IngestError, IngestStats};
use redo::vm::VmClear;

/// `InvalidBlockNumber`: never a real block.
const INVALID_BLOCK: u32 = u32::MAX;
/// Most zero pages one record may add to fill a gap. PostgreSQL extends a
/// relation a block at a time except hash indexes, whose split points skip
/// ahead by up to a few thousand blocks; beyond this the gap is left to the
/// readers, which treat a missing page as zeros (base backup and
/// [`crate::NativeRedo`] both do).
const MAX_GAP_FILL_BLOCKS: u32 = 131_072;

static ZERO_PAGE: [u8; BLCKSZ] = [0u8; BLCKSZ];

pub(crate) fn zero_page() -> Value {
    Value::Image(Bytes::from_static(&ZERO_PAGE))
}

/// Stores a value for every block reference of `record`. Block images are
/// moved out of the record into the stored values (nothing after this step
/// reads them).
pub(crate) fn ingest_blocks(
    known: &mut Known,
    b: &mut Batch<'_>,
    decoded: &mut Decoded,
    stats: &mut IngestStats,
    check_native: bool,
) -> Result<(), IngestError> {
    let Decoded { record, stored, .. } = decoded;
    if record.blocks.is_empty() {
        return Ok(());
    }
    let past_end = extend_for_blocks(known, b, record)?;
    let native = redo::is_native(record.rmid);
    let hint_record = redo::xlog::is_hint_record(record);
    for index in 0..record.blocks.len() {
        let image = record.blocks[index].image.take();
        let stored = stored.get_mut(index).and_then(Option::take);
        let (record, block) = (&*record, &record.blocks[index]);
        let key = Key::rel_block(block.rel, block.fork, block.blkno);
        let value = if let Some(image) = image {
            if check_native && native && !image.apply {
                let fresh =
                    block.will_init || past_end.contains(&(block.rel, block.fork, block.blkno));
                match native_redo_matches(b, record, block, &image.page, fresh)? {
                    Some(true) => stats.native_checks += 1,
                    Some(false) => {
                        stats.native_checks += 1;
                        stats.image_mismatches += 1;
                    }
                    None => {}
                }
            }
            let page =
                images::page_after_redo(record, block, image.page).map_err(|e| b.malformed(e))?;
            stats.images_stored += 1;
            Value::Image(Bytes::from(page))
        } else if hint_record {
            // Only hint bits changed, which redo never reproduces.
            continue;
        } else if native {
            stats.native_records_stored += 1;
            Value::WalRecord {
                will_init: block.will_init
                    || past_end.contains(&(block.rel, block.fork, block.blkno)),
                rec: stored.unwrap_or_else(|| stored_record::encode(block.block_id, record)),
            }
        } else {
            return Err(b.unsupported(format!(
                "{} record (info {:#04x}) changes block {} of relation {}/{}/{} fork {:?} \
                 without an image; the endpoint must run with wal_consistency_checking \
                 covering {}",
                rmgr_name(record.rmid),
                record.rmgr_info(),
                block.blkno,
                block.rel.spc_node,
                block.rel.db_node,
                block.rel.rel_node,
                block.fork,
                rmgr_name(record.rmid),
            )));
        };
        b.put(key, value)?;
    }
    Ok(())
}

/// Redoes `block` natively on its stored previous version and compares the
/// result with the record's consistency-check after-image, masked as
/// PostgreSQL masks it. `None` when there is nothing to compare with (no
/// previous version) or no native routine for this record type.
fn native_redo_matches(
    b: &mut Batch<'_>,
    record: &DecodedRecord,
    block: &postgres_wal::record::DecodedBlock,
    image: &[u8],
    fresh: bool,
) -> Result<Option<bool>, IngestError> {
    let mut page = if fresh {
        vec![0u8; BLCKSZ]
    } else {
        match b.read(Key::rel_block(block.rel, block.fork, block.blkno))? {
            Some(bytes) if bytes.len() == BLCKSZ => bytes.to_vec(),
            _ => return Ok(None),
        }
    };
    match redo::apply(&mut page, record, block.block_id) {
        Ok(()) => Ok(Some(
            redo::check::masked_diffs(record.rmid, &page, image, block.blkno)
                .is_ok_and(|diffs| diffs.is_empty()),
        )),
        Err(redo::RedoError::Unsupported { .. }) => Ok(None),
        Err(_) => Ok(Some(false)),
    }
}

pub(crate) fn rmgr_name(rmid: u8) -> String {
    RmgrId::from_u8(rmid).map_or_else(|| format!("rmgr {rmid}"), |id| id.name().to_owned())
}

/// Blocks of one record, on the stack for the usual handful.
type RecordBlocks = SmallVec<[(RelFileNode, ForkNumber, u32); 4]>;

/// Grows every fork the record writes past its end (creating forks PostgreSQL
/// creates without WAL, such as the FSM and VM) and returns the record's own
/// blocks that lie past the old end.
fn extend_for_blocks(
    known: &mut Known,
    b: &mut Batch<'_>,
    record: &DecodedRecord,
) -> Result<RecordBlocks, IngestError> {
    // A record has at most 33 blocks: a sorted vector, not a tree per fork.
    let mut written = RecordBlocks::new();
    for block in &record.blocks {
        if block.blkno == INVALID_BLOCK {
            return Err(b.malformed("block reference to InvalidBlockNumber"));
        }
        written.push((block.rel, block.fork, block.blkno));
    }
    written.sort_unstable();
    written.dedup();
    let mut past_end = RecordBlocks::new();
    for fork_blocks in written.chunk_by(|x, y| (x.0, x.1) == (y.0, y.1)) {
        let (rel, fork, _) = fork_blocks[0];
        known.create_rel(b, rel, fork)?;
        let old_size = known.rel_size(b, rel, fork)?;
        let Some(&(_, _, last)) = fork_blocks.last() else {
            continue;
        };
        if last < old_size {
            continue;
        }
        let own: Vec<u32> = fork_blocks.iter().map(|&(_, _, blkno)| blkno).collect();
        fill_gap(b, rel, fork, old_size, last, &own)?;
        known.set_rel_size(rel, fork, last + 1);
        past_end.extend(fork_blocks.iter().filter(|w| w.2 >= old_size).copied());
    }
    Ok(past_end)
}

/// Zero pages for blocks `from..upto` the record does not write itself
/// (`own`, sorted).
fn fill_gap(
    b: &mut Batch<'_>,
    rel: RelFileNode,
    fork: ForkNumber,
    from: u32,
    upto: u32,
    own: &[u32],
) -> Result<(), IngestError> {
    let end = upto.min(from.saturating_add(MAX_GAP_FILL_BLOCKS));
    for blkno in from..end {
        if own.binary_search(&blkno).is_err() {
            b.put(Key::rel_block(rel, fork, blkno), zero_page())?;
        }
    }
    Ok(())
}

/// Visibility-map bits heap records clear on VM pages they do not register.
pub(crate) fn ingest_vm_clears(
    known: &mut Known,
    b: &mut Batch<'_>,
    changes: &[VmClear],
) -> Result<(), IngestError> {
    for &change in changes {
        let fork = ForkNumber::VisibilityMap;
        let key = Key::rel_block(change.rel, fork, change.vm_block);
        known.create_rel(b, change.rel, fork)?;
        let size = known.rel_size(b, change.rel, fork)?;
        if change.vm_block >= size {
            // `visibilitymap_pin` extends the map with initialised pages;
            // clearing bits on a fresh page leaves it just initialised.
            fill_gap(
                b,
                change.rel,
                fork,
                size,
                change.vm_block,
                &[change.vm_block],
            )?;
            known.set_rel_size(change.rel, fork, change.vm_block + 1);
            let mut page = vec![0u8; BLCKSZ];
            redo::vm::apply_clear(&mut page, &change).map_err(|e| b.malformed(e.to_string()))?;
            b.put(key, Value::Image(Bytes::from(page)))?;
        } else {
            let slot = change.heap_block % redo::vm::HEAP_BLOCKS_PER_PAGE;
            let slot = u16::try_from(slot).map_err(|_| b.malformed("VM slot out of range"))?;
            b.put(
                key,
                Value::Derived(DerivedOp::VmClearBits {
                    flags: change.clear_bits,
                    slots: vec![slot],
                }),
            )?;
        }
    }
    Ok(())
}
