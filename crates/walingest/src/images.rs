//! Turning a block image carried by a record into the page PostgreSQL's redo
//! would leave behind.
//!
//! Both kinds of image — full-page writes (marked for apply) and
//! `wal_consistency_checking` after-images — show the page as it was when the
//! record was inserted, i.e. after the change. What they lack is what redo
//! does on top (see DESIGN §10):
//! - the page LSN: redo stamps the record's end LSN on every non-new page;
//! - GiST: the left child whose split a downlink insertion completes gets
//!   its follow-right flag cleared and NSN set to the record's LSN *after*
//!   the record is inserted, so no image shows it (`gistRedoClearFollowRight`
//!   does it even for restored images);
//! - hash: split records set bucket flags on restored pages too
//!   (`hash_xlog_split_allocate_page`, `hash_xlog_split_complete`).

use postgres_wal::record::{DecodedBlock, DecodedRecord, BLCKSZ};
use postgres_wal::rmgr::RmgrId;
use postgres_wal::Lsn;

const PD_UPPER_OFFSET: usize = 14;
const PD_SPECIAL_OFFSET: usize = 16;

const XLOG_GIST_PAGE_UPDATE: u8 = 0x00;
const XLOG_GIST_PAGE_SPLIT: u8 = 0x30;
/// `F_FOLLOW_RIGHT` in `GISTPageOpaqueData.flags`.
const GIST_F_FOLLOW_RIGHT: u16 = 1 << 3;
/// `GISTPageOpaqueData`: nsn (8), rightlink (4), flags (2), page id (2).
const GIST_OPAQUE_SIZE: usize = 16;
const GIST_FLAGS_OFFSET: usize = 12;

const XLOG_HASH_SPLIT_ALLOCATE_PAGE: u8 = 0x40;
const XLOG_HASH_SPLIT_COMPLETE: u8 = 0x60;
/// `HashPageOpaqueData`: prevblkno (4), nextblkno (4), bucket (4), flag (2), page id (2).
const HASH_OPAQUE_SIZE: usize = 16;
const HASH_FLAG_OFFSET: usize = 12;

/// The page `block`'s image stands for after redo, or an error message when
/// the image or the record is malformed.
pub fn page_after_redo(
    record: &DecodedRecord,
    block: &DecodedBlock,
    image: Vec<u8>,
) -> Result<Vec<u8>, String> {
    if image.len() != BLCKSZ {
        return Err(format!("block image of {} bytes", image.len()));
    }
    let mut page = image;
    let info = record.rmgr_info();
    match RmgrId::from_u8(record.rmid) {
        Some(RmgrId::Gist) => {
            let completes_split = (info == XLOG_GIST_PAGE_UPDATE && block.block_id == 1)
                || (info == XLOG_GIST_PAGE_SPLIT && block.block_id == 0);
            if completes_split && !is_new(&page) {
                gist_clear_follow_right(&mut page, record.end_lsn)?;
            }
        }
        Some(RmgrId::Hash) => hash_split_flags(record, block, &mut page)?,
        _ => {}
    }
    if !is_new(&page) {
        set_page_lsn(&mut page, record.end_lsn);
    }
    Ok(page)
}

/// `PageIsNew`: `pd_upper == 0`.
pub fn is_new(page: &[u8]) -> bool {
    u16_at(page, PD_UPPER_OFFSET) == Some(0)
}

/// `PageSetLSN`: high 32 bits then low 32 bits, each in native (LE) order.
pub fn set_page_lsn(page: &mut [u8], lsn: Lsn) {
    write_lsn(page, 0, lsn);
}

fn write_lsn(page: &mut [u8], at: usize, lsn: Lsn) {
    if let Some(target) = page.get_mut(at..at + 8) {
        target[0..4].copy_from_slice(&((lsn.0 >> 32) as u32).to_le_bytes());
        target[4..8].copy_from_slice(&(lsn.0 as u32).to_le_bytes());
    }
}

fn u16_at(page: &[u8], at: usize) -> Option<u16> {
    page.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// Offset of an opaque area of `size` bytes at `pd_special`, checked.
fn special(page: &[u8], size: usize) -> Result<usize, String> {
    let start = usize::from(u16_at(page, PD_SPECIAL_OFFSET).unwrap_or(0));
    if start < 24 || start + size > page.len() {
        return Err(format!("special space at {start} cannot hold {size} bytes"));
    }
    Ok(start)
}

fn gist_clear_follow_right(page: &mut [u8], lsn: Lsn) -> Result<(), String> {
    let at = special(page, GIST_OPAQUE_SIZE)?;
    write_lsn(page, at, lsn);
    let flags_at = at + GIST_FLAGS_OFFSET;
    let flags = u16_at(page, flags_at).unwrap_or(0) & !GIST_F_FOLLOW_RIGHT;
    page[flags_at..flags_at + 2].copy_from_slice(&flags.to_le_bytes());
    Ok(())
}

fn hash_split_flags(
    record: &DecodedRecord,
    block: &DecodedBlock,
    page: &mut [u8],
) -> Result<(), String> {
    let data = &record.main_data;
    let u16_of = |at: usize| u16_at(data, at).ok_or("hash split record too short");
    let (flag, prev_blkno) = match (record.rmgr_info(), block.block_id) {
        (XLOG_HASH_SPLIT_ALLOCATE_PAGE, 0) => {
            let new_bucket = data
                .get(0..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or("hash split record too short")?;
            (u16_of(4)?, Some(new_bucket))
        }
        (XLOG_HASH_SPLIT_COMPLETE, 0) => (u16_of(0)?, None),
        (XLOG_HASH_SPLIT_COMPLETE, 1) => (u16_of(2)?, None),
        _ => return Ok(()),
    };
    if is_new(page) {
        return Ok(());
    }
    let at = special(page, HASH_OPAQUE_SIZE)?;
    page[at + HASH_FLAG_OFFSET..at + HASH_FLAG_OFFSET + 2].copy_from_slice(&flag.to_le_bytes());
    if let Some(prev) = prev_blkno {
        page[at..at + 4].copy_from_slice(&prev.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_wal::record::{ForkNumber, RelFileNode};

    fn record(rmid: RmgrId, info: u8, main_data: Vec<u8>) -> DecodedRecord {
        DecodedRecord {
            start_lsn: Lsn(0x1000),
            end_lsn: Lsn(0x1_0000_2040),
            total_len: 0,
            xid: 0,
            prev: Lsn(0),
            info,
            rmid: rmid as u8,
            origin: None,
            toplevel_xid: None,
            blocks: Vec::new(),
            main_data,
        }
    }

    fn block(block_id: u8) -> DecodedBlock {
        DecodedBlock {
            block_id,
            rel: RelFileNode::default(),
            fork: ForkNumber::Main,
            blkno: 0,
            fork_flags: 0,
            will_init: false,
            image: None,
            data: Vec::new(),
        }
    }

    /// A page with header fields set and a 16-byte special space.
    fn page_with_special() -> Vec<u8> {
        let mut page = vec![0u8; BLCKSZ];
        let special = (BLCKSZ - 16) as u16;
        page[12..14].copy_from_slice(&24u16.to_le_bytes());
        page[14..16].copy_from_slice(&special.to_le_bytes());
        page[16..18].copy_from_slice(&special.to_le_bytes());
        page
    }

    #[test]
    fn page_lsn_is_the_record_end_except_on_new_pages() {
        let r = record(RmgrId::Heap, 0, vec![]);
        let page = page_after_redo(&r, &block(0), page_with_special()).unwrap();
        assert_eq!(&page[0..8], &[1, 0, 0, 0, 0x40, 0x20, 0, 0]);
        let zero = vec![0u8; BLCKSZ];
        assert_eq!(page_after_redo(&r, &block(0), zero.clone()).unwrap(), zero);
        assert!(page_after_redo(&r, &block(0), vec![0u8; 100]).is_err());
    }

    #[test]
    fn gist_left_child_loses_follow_right_and_gets_the_nsn() {
        let mut image = page_with_special();
        let at = BLCKSZ - 16;
        image[at + 12] = (GIST_F_FOLLOW_RIGHT | 1) as u8;
        let update = record(RmgrId::Gist, XLOG_GIST_PAGE_UPDATE, vec![]);
        let child = page_after_redo(&update, &block(1), image.clone()).unwrap();
        assert_eq!(child[at + 12], 1, "follow-right cleared, leaf flag kept");
        assert_eq!(&child[at..at + 8], &[1, 0, 0, 0, 0x40, 0x20, 0, 0]);
        // Block 0 of an update is the page itself: untouched but for its LSN.
        let own = page_after_redo(&update, &block(0), image.clone()).unwrap();
        assert_eq!(own[at + 12], image[at + 12]);
        let split = record(RmgrId::Gist, XLOG_GIST_PAGE_SPLIT, vec![]);
        assert_eq!(
            page_after_redo(&split, &block(0), image.clone()).unwrap()[at + 12],
            1
        );
    }

    #[test]
    fn hash_split_sets_bucket_flags() {
        let image = page_with_special();
        let at = BLCKSZ - 16;
        let mut body = 7u32.to_le_bytes().to_vec();
        body.extend_from_slice(&0x22u16.to_le_bytes());
        body.extend_from_slice(&0x44u16.to_le_bytes());
        body.push(0);
        let alloc = record(RmgrId::Hash, XLOG_HASH_SPLIT_ALLOCATE_PAGE, body);
        let old = page_after_redo(&alloc, &block(0), image.clone()).unwrap();
        assert_eq!(old[at + 12], 0x22);
        assert_eq!(&old[at..at + 4], &7u32.to_le_bytes());
        let short = record(RmgrId::Hash, XLOG_HASH_SPLIT_COMPLETE, vec![1]);
        assert!(page_after_redo(&short, &block(0), image.clone()).is_err());
    }
}
