//! HEAP2 resource manager records (PG15 `heapam_xlog.h`): prune, vacuum,
//! freeze, visible, multi-insert, lock-updated, new-cid and logical rewrite.
//!
//! Main data parses with [`Heap2Record::parse`]; the arrays some records keep
//! in block 0's data parse with the helpers next to each struct.

use super::heap::{
    item_pointer, rel_file_node, u16_array, BodyCursor, BodyError, HeapHeader, ItemPointer,
};
use crate::record::RelFileNode;

/// `XLOG_HEAP2_REWRITE`.
pub const XLOG_HEAP2_REWRITE: u8 = 0x00;
/// `XLOG_HEAP2_PRUNE`.
pub const XLOG_HEAP2_PRUNE: u8 = 0x10;
/// `XLOG_HEAP2_VACUUM`.
pub const XLOG_HEAP2_VACUUM: u8 = 0x20;
/// `XLOG_HEAP2_FREEZE_PAGE`.
pub const XLOG_HEAP2_FREEZE_PAGE: u8 = 0x30;
/// `XLOG_HEAP2_VISIBLE`.
pub const XLOG_HEAP2_VISIBLE: u8 = 0x40;
/// `XLOG_HEAP2_MULTI_INSERT`.
pub const XLOG_HEAP2_MULTI_INSERT: u8 = 0x50;
/// `XLOG_HEAP2_LOCK_UPDATED`.
pub const XLOG_HEAP2_LOCK_UPDATED: u8 = 0x60;
/// `XLOG_HEAP2_NEW_CID`.
pub const XLOG_HEAP2_NEW_CID: u8 = 0x70;

/// `XLH_FREEZE_XVAC`.
pub const XLH_FREEZE_XVAC: u8 = 0x02;
/// `XLH_INVALID_XVAC`.
pub const XLH_INVALID_XVAC: u8 = 0x04;

/// `xl_heap_prune` (offset arrays live in block 0 data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapPrune {
    pub latest_removed_xid: u32,
    pub nredirected: u16,
    pub ndead: u16,
}

/// Block 0 data of a prune record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOffsets {
    /// (from, to) pairs: `from` becomes a redirect to `to`.
    pub redirected: Vec<(u16, u16)>,
    pub now_dead: Vec<u16>,
    pub now_unused: Vec<u16>,
}

impl HeapPrune {
    /// Splits block 0 data into the three offset arrays.
    pub fn offsets(&self, data: &[u8]) -> Result<PruneOffsets, BodyError> {
        let mut r = BodyCursor::new(data, "xl_heap_prune offsets");
        let pairs = u16_array(&mut r, usize::from(self.nredirected) * 2)?;
        let redirected = pairs.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        let now_dead = u16_array(&mut r, usize::from(self.ndead))?;
        if !r.remaining().len().is_multiple_of(2) {
            return Err(BodyError::Invalid {
                what: "xl_heap_prune unused array length",
                detail: (r.remaining().len()).to_string(),
            });
        }
        let unused_count = r.remaining().len() / 2;
        let now_unused = u16_array(&mut r, unused_count)?;
        Ok(PruneOffsets {
            redirected,
            now_dead,
            now_unused,
        })
    }
}

/// One `xl_heap_freeze_tuple` (12 bytes with padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreezeTuple {
    pub xmax: u32,
    pub offset: u16,
    pub infomask2: u16,
    pub infomask: u16,
    pub frzflags: u8,
}

/// `sizeof(xl_heap_freeze_tuple)`.
pub const SIZE_OF_FREEZE_TUPLE: usize = 12;

/// `xl_heap_freeze_page`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapFreezePage {
    pub cutoff_xid: u32,
    pub ntuples: u16,
}

impl HeapFreezePage {
    /// The freeze plans in block 0 data.
    pub fn tuples(&self, data: &[u8]) -> Result<Vec<FreezeTuple>, BodyError> {
        let mut r = BodyCursor::new(data, "xl_heap_freeze_tuple array");
        (0..self.ntuples)
            .map(|_| {
                let tuple = FreezeTuple {
                    xmax: r.u32()?,
                    offset: r.u16()?,
                    infomask2: r.u16()?,
                    infomask: r.u16()?,
                    frzflags: r.u8()?,
                };
                r.bytes(1)?;
                Ok(tuple)
            })
            .collect()
    }
}

/// `xl_heap_visible`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapVisible {
    pub cutoff_xid: u32,
    /// `VISIBILITYMAP_*` bits to set.
    pub flags: u8,
}

/// `xl_heap_multi_insert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapMultiInsert {
    pub flags: u8,
    pub ntuples: u16,
    /// Target offsets; empty when the page is initialised (tuples then go
    /// to offsets 1..=ntuples).
    pub offsets: Vec<u16>,
}

/// One tuple of a multi-insert's block data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiInsertTuple<'a> {
    pub header: HeapHeader,
    /// Tuple bytes after the fixed header (`datalen` bytes).
    pub data: &'a [u8],
}

impl HeapMultiInsert {
    /// The `ntuples` tuples in block 0 data (each `xl_multi_insert_tuple`
    /// starts 2-byte aligned); the data must be consumed exactly.
    pub fn tuples<'a>(&self, data: &'a [u8]) -> Result<Vec<MultiInsertTuple<'a>>, BodyError> {
        let mut r = BodyCursor::new(data, "xl_multi_insert_tuple");
        let mut tuples = Vec::with_capacity(usize::from(self.ntuples));
        for _ in 0..self.ntuples {
            r.align(2)?;
            let datalen = r.u16()?;
            let infomask2 = r.u16()?;
            let infomask = r.u16()?;
            let hoff = r.u8()?;
            let body = r.bytes(usize::from(datalen))?;
            tuples.push(MultiInsertTuple {
                header: HeapHeader {
                    infomask2,
                    infomask,
                    hoff,
                },
                data: body,
            });
        }
        if !r.remaining().is_empty() {
            return Err(BodyError::Invalid {
                what: "xl_heap_multi_insert trailing bytes",
                detail: (r.remaining().len()).to_string(),
            });
        }
        Ok(tuples)
    }
}

/// `xl_heap_lock_updated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapLockUpdated {
    pub xmax: u32,
    pub offnum: u16,
    pub infobits_set: u8,
    pub flags: u8,
}

/// `xl_heap_new_cid` (logical decoding only; no page change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapNewCid {
    pub top_xid: u32,
    pub cmin: u32,
    pub cmax: u32,
    pub combocid: u32,
    pub target_node: RelFileNode,
    pub target_tid: ItemPointer,
}

/// `xl_heap_rewrite_mapping` (logical rewrite files; no page change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapRewriteMapping {
    pub mapped_xid: u32,
    pub mapped_db: u32,
    pub mapped_rel: u32,
    pub offset: i64,
    pub num_mappings: u32,
    pub start_lsn: u64,
}

/// A parsed HEAP2 record main-data body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heap2Record {
    Rewrite(HeapRewriteMapping),
    Prune(HeapPrune),
    /// `xl_heap_vacuum`: `nunused` now-unused offsets in block 0 data.
    Vacuum {
        nunused: u16,
    },
    FreezePage(HeapFreezePage),
    Visible(HeapVisible),
    MultiInsert(HeapMultiInsert),
    LockUpdated(HeapLockUpdated),
    NewCid(HeapNewCid),
}

impl Heap2Record {
    /// Parses the main data of a HEAP2 record whose `xl_info` is `info`.
    pub fn parse(info: u8, main_data: &[u8]) -> Result<Heap2Record, BodyError> {
        let mut r = BodyCursor::new(main_data, heap2_record_name(info));
        let record = match info & super::heap::XLOG_HEAP_OPMASK {
            XLOG_HEAP2_REWRITE => {
                let mapped_xid = r.u32()?;
                let mapped_db = r.u32()?;
                let mapped_rel = r.u32()?;
                r.align(8)?;
                let offset = r.u64()? as i64;
                let num_mappings = r.u32()?;
                r.align(8)?;
                Heap2Record::Rewrite(HeapRewriteMapping {
                    mapped_xid,
                    mapped_db,
                    mapped_rel,
                    offset,
                    num_mappings,
                    start_lsn: r.u64()?,
                })
            }
            XLOG_HEAP2_PRUNE => Heap2Record::Prune(HeapPrune {
                latest_removed_xid: r.u32()?,
                nredirected: r.u16()?,
                ndead: r.u16()?,
            }),
            XLOG_HEAP2_VACUUM => Heap2Record::Vacuum { nunused: r.u16()? },
            XLOG_HEAP2_FREEZE_PAGE => Heap2Record::FreezePage(HeapFreezePage {
                cutoff_xid: r.u32()?,
                ntuples: r.u16()?,
            }),
            XLOG_HEAP2_VISIBLE => Heap2Record::Visible(HeapVisible {
                cutoff_xid: r.u32()?,
                flags: r.u8()?,
            }),
            XLOG_HEAP2_MULTI_INSERT => {
                let flags = r.u8()?;
                r.align(2)?;
                let ntuples = r.u16()?;
                let init = info & super::heap::XLOG_HEAP_INIT_PAGE != 0;
                let offsets = if init {
                    Vec::new()
                } else {
                    u16_array(&mut r, usize::from(ntuples))?
                };
                Heap2Record::MultiInsert(HeapMultiInsert {
                    flags,
                    ntuples,
                    offsets,
                })
            }
            XLOG_HEAP2_LOCK_UPDATED => Heap2Record::LockUpdated(HeapLockUpdated {
                xmax: r.u32()?,
                offnum: r.u16()?,
                infobits_set: r.u8()?,
                flags: r.u8()?,
            }),
            _ => Heap2Record::NewCid(HeapNewCid {
                top_xid: r.u32()?,
                cmin: r.u32()?,
                cmax: r.u32()?,
                combocid: r.u32()?,
                target_node: rel_file_node(&mut r)?,
                target_tid: item_pointer(&mut r)?,
            }),
        };
        Ok(record)
    }
}

/// The name `pg_waldump` uses for a HEAP2 info code.
pub fn heap2_record_name(info: u8) -> &'static str {
    match info & super::heap::XLOG_HEAP_OPMASK {
        XLOG_HEAP2_REWRITE => "REWRITE",
        XLOG_HEAP2_PRUNE => "PRUNE",
        XLOG_HEAP2_VACUUM => "VACUUM",
        XLOG_HEAP2_FREEZE_PAGE => "FREEZE_PAGE",
        XLOG_HEAP2_VISIBLE => "VISIBLE",
        XLOG_HEAP2_MULTI_INSERT => {
            if info & super::heap::XLOG_HEAP_INIT_PAGE != 0 {
                "MULTI_INSERT+INIT"
            } else {
                "MULTI_INSERT"
            }
        }
        XLOG_HEAP2_LOCK_UPDATED => "LOCK_UPDATED",
        _ => "NEW_CID",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_offsets_split_into_three_arrays() {
        let prune = HeapPrune {
            latest_removed_xid: 5,
            nredirected: 1,
            ndead: 1,
        };
        let data = [1, 0, 3, 0, 2, 0, 4, 0, 5, 0];
        let offsets = prune.offsets(&data).unwrap();
        assert_eq!(offsets.redirected, vec![(1, 3)]);
        assert_eq!(offsets.now_dead, vec![2]);
        assert_eq!(offsets.now_unused, vec![4, 5]);
        assert!(prune.offsets(&data[..3]).is_err());
    }

    #[test]
    fn multi_insert_tuples_are_short_aligned() {
        let rec = Heap2Record::parse(XLOG_HEAP2_MULTI_INSERT, &[0, 0, 2, 0, 1, 0, 3, 0]).unwrap();
        let Heap2Record::MultiInsert(rec) = rec else {
            panic!("wrong variant")
        };
        assert_eq!(rec.offsets, vec![1, 3]);
        // Tuple 1: datalen 1 (7 header bytes + 1 data = 8, even); tuple 2: datalen 0.
        let data = [1, 0, 2, 0, 0, 8, 24, 0xAB, 0, 0, 2, 0, 0, 8, 24];
        let tuples = rec.tuples(&data).unwrap();
        assert_eq!(tuples.len(), 2);
        assert_eq!(tuples[0].data, &[0xAB]);
        assert!(tuples[1].data.is_empty());
        assert!(rec.tuples(&data[..10]).is_err());
    }
}
