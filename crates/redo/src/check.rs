//! The after-image oracle as a pure state machine: feed it decoded records
//! in WAL order; it keeps the latest known version of every block and, for
//! every block a record carries a consistency-check image for (an image not
//! marked for apply), redoes the record natively on the previous version,
//! masks both pages and compares them.
//!
//! After each record the block's version becomes the record's own image (or
//! our result when there is none), so one mismatch never cascades. `pagectl
//! redo-check` and the oracle tests are thin drivers around [`Checker`].

use std::collections::{BTreeMap, HashMap};

use postgres_wal::record::{DecodedBlock, DecodedRecord, ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::rmgr::RmgrId;

use crate::{apply, mask, Page, RedoError};

/// Per resource manager counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RmgrStats {
    /// Records with at least one block compared.
    pub records_checked: u64,
    /// Blocks compared (consistency images redone natively).
    pub checked: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// Blocks whose record has no native redo here.
    pub unsupported: u64,
    /// Blocks with a check image but no known previous version.
    pub no_base: u64,
    /// Blocks restored from an image marked for apply (full-page writes).
    pub restored: u64,
}

/// One block whose native redo differs from the after-image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub start_lsn: u64,
    pub rmid: u8,
    pub rmgr: String,
    pub info: u8,
    pub block_id: u8,
    pub rel: RelFileNode,
    pub fork: ForkNumber,
    pub blkno: u32,
    /// First differing byte offsets after masking (empty when redo failed).
    pub first_diffs: Vec<usize>,
    /// Redo's error, when it failed instead of producing a page.
    pub error: Option<String>,
}

type BlockKey = (RelFileNode, ForkNumber, u32);

/// Keeps block versions and statistics across fed records.
#[derive(Default)]
pub struct Checker {
    versions: HashMap<BlockKey, Vec<u8>>,
    stats: BTreeMap<u8, RmgrStats>,
    mismatches: Vec<Mismatch>,
    /// How many mismatches to keep in detail.
    pub keep_mismatches: usize,
}

/// The name of a resource manager id (or `rmgr N` for custom ones).
pub fn rmgr_name(rmid: u8) -> String {
    RmgrId::from_u8(rmid).map_or_else(|| format!("rmgr {rmid}"), |id| id.name().to_string())
}

impl Checker {
    /// An empty checker that keeps the first 20 mismatches in detail.
    pub fn new() -> Checker {
        Checker {
            keep_mismatches: 20,
            ..Checker::default()
        }
    }

    /// Counts per resource manager id, in id order.
    pub fn stats(&self) -> &BTreeMap<u8, RmgrStats> {
        &self.stats
    }

    /// The kept mismatches, in WAL order.
    pub fn mismatches(&self) -> &[Mismatch] {
        &self.mismatches
    }

    /// Total mismatched blocks over all managers.
    pub fn total_mismatched(&self) -> u64 {
        self.stats.values().map(|s| s.mismatched).sum()
    }

    /// Processes one record.
    pub fn feed(&mut self, record: &DecodedRecord) {
        let mut compared_any = false;
        for block in &record.blocks {
            compared_any |= self.feed_block(record, block);
        }
        if compared_any {
            self.stats.entry(record.rmid).or_default().records_checked += 1;
        }
    }

    /// Handles one block; true when it was compared.
    fn feed_block(&mut self, record: &DecodedRecord, block: &DecodedBlock) -> bool {
        let key = (block.rel, block.fork, block.blkno);
        let rmid = record.rmid;
        match &block.image {
            Some(image) if image.apply => {
                self.stats.entry(rmid).or_default().restored += 1;
                self.store_image(key, &image.page, record.end_lsn.0);
                false
            }
            Some(image) => {
                let base = if block.will_init {
                    Some(vec![0u8; BLCKSZ])
                } else {
                    self.versions.get(&key).cloned()
                };
                let compared = match base {
                    Some(base) => {
                        self.compare(record, block, base, &image.page);
                        true
                    }
                    None => {
                        self.stats.entry(rmid).or_default().no_base += 1;
                        false
                    }
                };
                self.store_image(key, &image.page, record.end_lsn.0);
                compared
            }
            None => {
                // No image: advance our version natively if we can, else
                // forget it (its content is unknown from here on).
                let next = self.versions.get(&key).cloned().and_then(|mut page| {
                    apply(&mut page, record, block.block_id).ok().map(|()| page)
                });
                match next {
                    Some(page) => self.versions.insert(key, page),
                    None => self.versions.remove(&key),
                };
                false
            }
        }
    }

    fn store_image(&mut self, key: BlockKey, image: &[u8], end_lsn: u64) {
        let mut page = image.to_vec();
        if let Ok(mut view) = Page::new(&mut page) {
            if !view.is_new() {
                view.set_lsn(end_lsn);
            }
        }
        self.versions.insert(key, page);
    }

    fn compare(
        &mut self,
        record: &DecodedRecord,
        block: &DecodedBlock,
        base: Vec<u8>,
        image: &[u8],
    ) {
        let stats = self.stats.entry(record.rmid).or_default();
        let mut page = base;
        let outcome = apply(&mut page, record, block.block_id);
        if let Err(RedoError::Unsupported { .. }) = outcome {
            stats.unsupported += 1;
            return;
        }
        stats.checked += 1;
        let result = outcome.and_then(|()| masked_diffs(record.rmid, &page, image, block.blkno));
        match result {
            Ok(diffs) if diffs.is_empty() => stats.matched += 1,
            Ok(diffs) => {
                stats.mismatched += 1;
                self.keep(record, block, diffs, None);
            }
            Err(error) => {
                stats.mismatched += 1;
                self.keep(record, block, Vec::new(), Some(error.to_string()));
            }
        }
    }

    fn keep(
        &mut self,
        record: &DecodedRecord,
        block: &DecodedBlock,
        first_diffs: Vec<usize>,
        error: Option<String>,
    ) {
        if self.mismatches.len() >= self.keep_mismatches {
            return;
        }
        self.mismatches.push(Mismatch {
            start_lsn: record.start_lsn.0,
            rmid: record.rmid,
            rmgr: rmgr_name(record.rmid),
            info: record.info,
            block_id: block.block_id,
            rel: block.rel,
            fork: block.fork,
            blkno: block.blkno,
            first_diffs,
            error,
        });
    }
}

/// Masks copies of both pages for `rmid` and returns the first (up to 8)
/// differing offsets.
pub fn masked_diffs(
    rmid: u8,
    ours: &[u8],
    theirs: &[u8],
    blkno: u32,
) -> Result<Vec<usize>, RedoError> {
    let rmgr = RmgrId::from_u8(rmid).ok_or(RedoError::Unsupported {
        rmgr: "unknown",
        info: 0,
    })?;
    let mut a = ours.to_vec();
    let mut b = theirs.to_vec();
    mask(rmgr, &mut a, blkno)?;
    mask(rmgr, &mut b, blkno)?;
    Ok(a.iter()
        .zip(b.iter())
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .take(8)
        .collect())
}

#[cfg(test)]
mod tests {
    use postgres_wal::record::BlockImage;
    use postgres_wal::Lsn;

    use super::*;
    use postgres_wal::rmgr::xlog::{XLOG_FPI, XLOG_FPI_FOR_HINT};

    /// A record of `rmid` changing block 3 of one relation.
    fn record(rmid: RmgrId, info: u8, at: u64, image: Option<BlockImage>) -> DecodedRecord {
        DecodedRecord {
            start_lsn: Lsn(at),
            end_lsn: Lsn(at + 0x40),
            total_len: 0x40,
            xid: 0,
            prev: Lsn(0),
            info,
            rmid: rmid as u8,
            origin: None,
            toplevel_xid: None,
            blocks: vec![DecodedBlock {
                block_id: 0,
                rel: RelFileNode {
                    spc_node: 1663,
                    db_node: 5,
                    rel_node: 16384,
                },
                fork: ForkNumber::Main,
                blkno: 3,
                fork_flags: 0,
                will_init: false,
                image,
                data: Vec::new(),
            }],
            main_data: Vec::new(),
        }
    }

    fn image(page: &[u8], apply: bool) -> BlockImage {
        BlockImage {
            page: page.to_vec(),
            apply,
            info: 0,
            hole_offset: 0,
            hole_length: 0,
        }
    }

    /// A hint-bit record without its image (full_page_writes off) changes
    /// nothing, in PostgreSQL's redo and ours: the block's known version
    /// stays, so the next checked record on the block is compared with it
    /// rather than counted as having no base.
    #[test]
    fn an_imageless_hint_record_keeps_the_block_version() {
        let mut page = vec![0u8; BLCKSZ];
        Page::new(&mut page).unwrap().init(0);
        let mut checker = Checker::new();
        checker.feed(&record(
            RmgrId::Xlog,
            XLOG_FPI,
            0x1000,
            Some(image(&page, true)),
        ));
        let hint = record(RmgrId::Xlog, XLOG_FPI_FOR_HINT, 0x2000, None);
        let mut redone = page.clone();
        apply(&mut redone, &hint, 0).unwrap();
        assert_eq!(redone, page, "not even the LSN changes");
        checker.feed(&hint);
        // A generic record with an empty delta and its check image.
        checker.feed(&record(
            RmgrId::Generic,
            0,
            0x3000,
            Some(image(&page, false)),
        ));
        let stats = checker.stats()[&(RmgrId::Generic as u8)];
        assert_eq!(
            (stats.no_base, stats.checked, stats.matched),
            (0, 1, 1),
            "{stats:?}"
        );
        // An XLOG_FPI block without its image is refused, as PostgreSQL does.
        let fpi = record(RmgrId::Xlog, XLOG_FPI, 0x4000, None);
        assert!(apply(&mut redone, &fpi, 0).is_err());
    }
}
