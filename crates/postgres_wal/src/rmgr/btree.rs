//! BTREE resource manager records (PG15 `nbtxlog.h`): inserts, splits,
//! deduplication, vacuum/delete, page deletion, new root, metapage updates
//! and page reuse.

use super::heap::{rel_file_node, u16_array, BodyCursor, BodyError};
use crate::record::RelFileNode;

/// `XLOG_BTREE_INSERT_LEAF`.
pub const XLOG_BTREE_INSERT_LEAF: u8 = 0x00;
/// `XLOG_BTREE_INSERT_UPPER`.
pub const XLOG_BTREE_INSERT_UPPER: u8 = 0x10;
/// `XLOG_BTREE_INSERT_META`.
pub const XLOG_BTREE_INSERT_META: u8 = 0x20;
/// `XLOG_BTREE_SPLIT_L`.
pub const XLOG_BTREE_SPLIT_L: u8 = 0x30;
/// `XLOG_BTREE_SPLIT_R`.
pub const XLOG_BTREE_SPLIT_R: u8 = 0x40;
/// `XLOG_BTREE_INSERT_POST`.
pub const XLOG_BTREE_INSERT_POST: u8 = 0x50;
/// `XLOG_BTREE_DEDUP`.
pub const XLOG_BTREE_DEDUP: u8 = 0x60;
/// `XLOG_BTREE_DELETE`.
pub const XLOG_BTREE_DELETE: u8 = 0x70;
/// `XLOG_BTREE_UNLINK_PAGE`.
pub const XLOG_BTREE_UNLINK_PAGE: u8 = 0x80;
/// `XLOG_BTREE_UNLINK_PAGE_META`.
pub const XLOG_BTREE_UNLINK_PAGE_META: u8 = 0x90;
/// `XLOG_BTREE_NEWROOT`.
pub const XLOG_BTREE_NEWROOT: u8 = 0xA0;
/// `XLOG_BTREE_MARK_PAGE_HALFDEAD`.
pub const XLOG_BTREE_MARK_PAGE_HALFDEAD: u8 = 0xB0;
/// `XLOG_BTREE_VACUUM`.
pub const XLOG_BTREE_VACUUM: u8 = 0xC0;
/// `XLOG_BTREE_REUSE_PAGE`.
pub const XLOG_BTREE_REUSE_PAGE: u8 = 0xD0;
/// `XLOG_BTREE_META_CLEANUP`.
pub const XLOG_BTREE_META_CLEANUP: u8 = 0xE0;

/// `xl_btree_metadata` (block data of the metapage reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtreeMetadata {
    pub version: u32,
    pub root: u32,
    pub level: u32,
    pub fastroot: u32,
    pub fastlevel: u32,
    pub last_cleanup_num_delpages: u32,
    pub allequalimage: bool,
}

impl BtreeMetadata {
    /// Parses the metapage block data.
    pub fn parse(data: &[u8]) -> Result<BtreeMetadata, BodyError> {
        let mut r = BodyCursor::new(data, "xl_btree_metadata");
        Ok(BtreeMetadata {
            version: r.u32()?,
            root: r.u32()?,
            level: r.u32()?,
            fastroot: r.u32()?,
            fastlevel: r.u32()?,
            last_cleanup_num_delpages: r.u32()?,
            allequalimage: r.u8()? != 0,
        })
    }
}

/// `xl_btree_split`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtreeSplit {
    pub level: u32,
    pub firstrightoff: u16,
    pub newitemoff: u16,
    pub postingoff: u16,
}

/// `BTDedupInterval`: `nitems` tuples starting at `baseoff` merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupInterval {
    pub baseoff: u16,
    pub nitems: u16,
}

/// Parses `count` dedup intervals from block 0 data.
pub fn dedup_intervals(data: &[u8], count: u16) -> Result<Vec<DedupInterval>, BodyError> {
    let mut r = BodyCursor::new(data, "BTDedupInterval array");
    (0..count)
        .map(|_| {
            Ok(DedupInterval {
                baseoff: r.u16()?,
                nitems: r.u16()?,
            })
        })
        .collect()
}

/// One `xl_btree_update`: which TIDs (by index into the posting list) to
/// remove from the posting tuple at the matching updated offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingUpdate {
    pub offnum: u16,
    pub deleted_tids: Vec<u16>,
}

/// Block 0 data of a vacuum/delete record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletePlan {
    pub deleted: Vec<u16>,
    pub updates: Vec<PostingUpdate>,
}

/// Parses vacuum/delete block data: `ndeleted` offsets, `nupdated` offsets,
/// then `nupdated` `xl_btree_update` entries with their TID index arrays.
pub fn delete_plan(data: &[u8], ndeleted: u16, nupdated: u16) -> Result<DeletePlan, BodyError> {
    let mut r = BodyCursor::new(data, "xl_btree_delete/vacuum offsets");
    let deleted = u16_array(&mut r, usize::from(ndeleted))?;
    let updated = u16_array(&mut r, usize::from(nupdated))?;
    let mut updates = Vec::with_capacity(updated.len());
    for offnum in updated {
        let n = r.u16()?;
        updates.push(PostingUpdate {
            offnum,
            deleted_tids: u16_array(&mut r, usize::from(n))?,
        });
    }
    Ok(DeletePlan { deleted, updates })
}

/// `xl_btree_mark_page_halfdead`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtreeMarkPageHalfdead {
    pub poffset: u16,
    pub leafblk: u32,
    pub leftblk: u32,
    pub rightblk: u32,
    pub topparent: u32,
}

/// `xl_btree_unlink_page`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtreeUnlinkPage {
    pub leftsib: u32,
    pub rightsib: u32,
    pub level: u32,
    /// Full transaction id after which the page may be recycled.
    pub safexid: u64,
    pub leafleftsib: u32,
    pub leafrightsib: u32,
    pub leaftopparent: u32,
}

/// `xl_btree_reuse_page`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtreeReusePage {
    pub node: RelFileNode,
    pub block: u32,
    pub latest_removed_full_xid: u64,
}

/// A parsed BTREE record main-data body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtreeRecord {
    /// Insert leaf/upper/meta/posting: `offnum` is the new item's offset.
    Insert {
        offnum: u16,
    },
    Split(BtreeSplit),
    Dedup {
        nintervals: u16,
    },
    Vacuum {
        ndeleted: u16,
        nupdated: u16,
    },
    Delete {
        latest_removed_xid: u32,
        ndeleted: u16,
        nupdated: u16,
    },
    MarkPageHalfdead(BtreeMarkPageHalfdead),
    UnlinkPage(BtreeUnlinkPage),
    NewRoot {
        rootblk: u32,
        level: u32,
    },
    ReusePage(BtreeReusePage),
    /// Metapage rewrite; the metadata is in block 0 data.
    MetaCleanup,
}

impl BtreeRecord {
    /// Parses the main data of a BTREE record whose `xl_info` is `info`.
    pub fn parse(info: u8, main_data: &[u8]) -> Result<BtreeRecord, BodyError> {
        let info = info & 0xF0;
        let mut r = BodyCursor::new(main_data, btree_record_name(info));
        let record = match info {
            XLOG_BTREE_INSERT_LEAF
            | XLOG_BTREE_INSERT_UPPER
            | XLOG_BTREE_INSERT_META
            | XLOG_BTREE_INSERT_POST => BtreeRecord::Insert { offnum: r.u16()? },
            XLOG_BTREE_SPLIT_L | XLOG_BTREE_SPLIT_R => BtreeRecord::Split(BtreeSplit {
                level: r.u32()?,
                firstrightoff: r.u16()?,
                newitemoff: r.u16()?,
                postingoff: r.u16()?,
            }),
            XLOG_BTREE_DEDUP => BtreeRecord::Dedup {
                nintervals: r.u16()?,
            },
            XLOG_BTREE_VACUUM => BtreeRecord::Vacuum {
                ndeleted: r.u16()?,
                nupdated: r.u16()?,
            },
            XLOG_BTREE_DELETE => BtreeRecord::Delete {
                latest_removed_xid: r.u32()?,
                ndeleted: r.u16()?,
                nupdated: r.u16()?,
            },
            XLOG_BTREE_MARK_PAGE_HALFDEAD => {
                let poffset = r.u16()?;
                r.align(4)?;
                BtreeRecord::MarkPageHalfdead(BtreeMarkPageHalfdead {
                    poffset,
                    leafblk: r.u32()?,
                    leftblk: r.u32()?,
                    rightblk: r.u32()?,
                    topparent: r.u32()?,
                })
            }
            XLOG_BTREE_UNLINK_PAGE | XLOG_BTREE_UNLINK_PAGE_META => {
                let leftsib = r.u32()?;
                let rightsib = r.u32()?;
                let level = r.u32()?;
                r.align(8)?;
                BtreeRecord::UnlinkPage(BtreeUnlinkPage {
                    leftsib,
                    rightsib,
                    level,
                    safexid: r.u64()?,
                    leafleftsib: r.u32()?,
                    leafrightsib: r.u32()?,
                    leaftopparent: r.u32()?,
                })
            }
            XLOG_BTREE_NEWROOT => BtreeRecord::NewRoot {
                rootblk: r.u32()?,
                level: r.u32()?,
            },
            XLOG_BTREE_REUSE_PAGE => {
                let node = rel_file_node(&mut r)?;
                let block = r.u32()?;
                BtreeRecord::ReusePage(BtreeReusePage {
                    node,
                    block,
                    latest_removed_full_xid: r.u64()?,
                })
            }
            XLOG_BTREE_META_CLEANUP => BtreeRecord::MetaCleanup,
            _ => {
                return Err(BodyError::UnknownType {
                    what: "Btree",
                    info,
                })
            }
        };
        Ok(record)
    }
}

/// The name `pg_waldump` uses for a BTREE info code.
pub fn btree_record_name(info: u8) -> &'static str {
    match info & 0xF0 {
        XLOG_BTREE_INSERT_LEAF => "INSERT_LEAF",
        XLOG_BTREE_INSERT_UPPER => "INSERT_UPPER",
        XLOG_BTREE_INSERT_META => "INSERT_META",
        XLOG_BTREE_SPLIT_L => "SPLIT_L",
        XLOG_BTREE_SPLIT_R => "SPLIT_R",
        XLOG_BTREE_INSERT_POST => "INSERT_POST",
        XLOG_BTREE_DEDUP => "DEDUP",
        XLOG_BTREE_DELETE => "DELETE",
        XLOG_BTREE_UNLINK_PAGE => "UNLINK_PAGE",
        XLOG_BTREE_UNLINK_PAGE_META => "UNLINK_PAGE_META",
        XLOG_BTREE_NEWROOT => "NEWROOT",
        XLOG_BTREE_MARK_PAGE_HALFDEAD => "MARK_PAGE_HALFDEAD",
        XLOG_BTREE_VACUUM => "VACUUM",
        XLOG_BTREE_REUSE_PAGE => "REUSE_PAGE",
        XLOG_BTREE_META_CLEANUP => "META_CLEANUP",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlink_page_reads_the_padded_full_xid() {
        let mut body = Vec::new();
        for v in [1u32, 2, 0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&0x1_0000_0005u64.to_le_bytes());
        for v in [7u32, 8, 9] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let BtreeRecord::UnlinkPage(rec) =
            BtreeRecord::parse(XLOG_BTREE_UNLINK_PAGE, &body).unwrap()
        else {
            panic!("wrong variant")
        };
        assert_eq!(rec.safexid, 0x1_0000_0005);
        assert_eq!(rec.leaftopparent, 9);
        assert!(BtreeRecord::parse(XLOG_BTREE_UNLINK_PAGE, &body[..30]).is_err());
    }

    #[test]
    fn delete_plan_with_posting_updates() {
        let data = [2, 0, 5, 0, 1, 0, 0, 0];
        let plan = delete_plan(&data, 1, 1).unwrap();
        assert_eq!(plan.deleted, vec![2]);
        assert_eq!(
            plan.updates,
            vec![PostingUpdate {
                offnum: 5,
                deleted_tids: vec![0]
            }]
        );
        assert!(delete_plan(&data[..6], 1, 1).is_err());
    }

    #[test]
    fn unknown_info_is_an_error() {
        assert!(matches!(
            BtreeRecord::parse(0xF0, &[]),
            Err(BodyError::UnknownType { .. })
        ));
    }
}
