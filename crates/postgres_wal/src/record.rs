//! The decoded form of one WAL record: header fields, block references and
//! main data, independent of the resource manager that wrote it.
//!
//! Produced by the decoder from reassembled record bytes; consumed by ingest,
//! redo and the offline tools. Resource-manager specific bodies are parsed
//! from `main_data` and block `data` by the modules under [`crate::rmgr`].

use crate::Lsn;

/// Size of a heap/index page (`BLCKSZ`).
pub const BLCKSZ: usize = 8192;
/// Size of the standard header of a heap/index page
/// (`SizeOfPageHeaderData`, a multiple of `MAXALIGN`).
pub const SIZE_OF_PAGE_HEADER: usize = 24;

/// Identifies a relation's storage (`RelFileNode` in PG15): tablespace,
/// database and relfilenode OIDs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelFileNode {
    pub spc_node: u32,
    pub db_node: u32,
    pub rel_node: u32,
}

/// The fork of a relation a block belongs to (`ForkNumber`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ForkNumber {
    Main = 0,
    Fsm = 1,
    VisibilityMap = 2,
    Init = 3,
}

impl ForkNumber {
    /// The fork for its on-disk number, or `None` for anything else.
    pub fn from_u8(value: u8) -> Option<ForkNumber> {
        match value {
            0 => Some(ForkNumber::Main),
            1 => Some(ForkNumber::Fsm),
            2 => Some(ForkNumber::VisibilityMap),
            3 => Some(ForkNumber::Init),
            _ => None,
        }
    }
}

/// A full-page image carried by a block reference, already restored: the hole
/// is filled with zeros and any compression (pglz, lz4, zstd) undone, so
/// `page` is always exactly [`BLCKSZ`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockImage {
    pub page: Vec<u8>,
    /// `BKPIMAGE_APPLY`: redo must restore this image. When false the image
    /// exists only for `wal_consistency_checking` and shows the page as it is
    /// *after* the record (with the previous page LSN).
    pub apply: bool,
    /// Raw `bimg_info` flags as written.
    pub info: u8,
    pub hole_offset: u16,
    pub hole_length: u16,
}

/// One block reference of a record (`DecodedBkpBlock`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedBlock {
    /// The block id (0..=`XLR_MAX_BLOCK_ID`) the record registered it under.
    pub block_id: u8,
    pub rel: RelFileNode,
    pub fork: ForkNumber,
    pub blkno: u32,
    /// Raw fork/flags byte (`BKPBLOCK_*` bits in the high nibble).
    pub fork_flags: u8,
    /// `BKPBLOCK_WILL_INIT`: redo reinitialises the page, the old content is
    /// not needed.
    pub will_init: bool,
    pub image: Option<BlockImage>,
    /// Per-block data registered with the reference (may be empty).
    pub data: Vec<u8>,
}

/// One decoded WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Where the record starts (its `ReadRecPtr`).
    pub start_lsn: Lsn,
    /// The record's `EndRecPtr`: the first byte after it rounded up to 8
    /// bytes, i.e. where the next record starts (PG15 `EndRecPtr` is
    /// MAXALIGNed) and the LSN the server stamped on the pages it changed.
    /// For `XLOG_SWITCH` it is the start of the next segment.
    pub end_lsn: Lsn,
    /// `xl_tot_len`.
    pub total_len: u32,
    /// `xl_xid`.
    pub xid: u32,
    /// `xl_prev`.
    pub prev: Lsn,
    /// `xl_info`: the high nibble belongs to the resource manager, the low
    /// bits are `XLR_*` flags.
    pub info: u8,
    /// `xl_rmid`; see [`crate::rmgr::RmgrId`].
    pub rmid: u8,
    pub origin: Option<u16>,
    pub toplevel_xid: Option<u32>,
    pub blocks: Vec<DecodedBlock>,
    pub main_data: Vec<u8>,
}

impl DecodedRecord {
    /// The block reference registered under `block_id`, if any.
    pub fn block(&self, block_id: u8) -> Option<&DecodedBlock> {
        self.blocks.iter().find(|b| b.block_id == block_id)
    }

    /// The resource-manager part of `xl_info` (`info & ~XLR_INFO_MASK`).
    pub fn rmgr_info(&self) -> u8 {
        self.info & 0xF0
    }
}
