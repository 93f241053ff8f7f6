//! A small WAL *writer* for tests: lays records out in pages and segments
//! the way `XLogInsert` does (8-byte aligned, page headers with
//! continuation flags and `xlp_rem_len`, long headers at segment starts,
//! `XLOG_SWITCH` ending a segment), so the reader can be checked against
//! streams whose exact contents are known.
//!
//! Enabled for this crate's tests and, through the `test-util` feature, for
//! the fuzz target and other crates' tests. Not for production use.

use crate::decode::{
    compute_record_crc, XLogRecordHeader, BKPBLOCK_HAS_DATA, BKPBLOCK_HAS_IMAGE, BKPBLOCK_SAME_REL,
    BKPBLOCK_WILL_INIT, BKPIMAGE_APPLY, BKPIMAGE_HAS_HOLE, SIZE_OF_XLOG_RECORD,
    XLR_BLOCK_ID_DATA_LONG, XLR_BLOCK_ID_DATA_SHORT, XLR_BLOCK_ID_ORIGIN,
    XLR_BLOCK_ID_TOPLEVEL_XID,
};
use crate::lsn::WAL_PAGE_SIZE;
use crate::page::{
    LONG_PAGE_HEADER_SIZE, SHORT_PAGE_HEADER_SIZE, XLOG_PAGE_MAGIC, XLP_FIRST_IS_CONTRECORD,
    XLP_LONG_HEADER,
};
use crate::record::{RelFileNode, BLCKSZ};
use crate::Lsn;

/// A block reference to encode into a test record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestBlock {
    pub block_id: u8,
    pub rel: RelFileNode,
    pub fork: u8,
    pub blkno: u32,
    pub will_init: bool,
    pub data: Vec<u8>,
    /// An uncompressed page image: `(page, hole_offset, hole_length)`.
    pub image: Option<(Vec<u8>, u16, u16)>,
}

/// Encodes a complete record (header with correct CRC, block headers,
/// payloads, main data) the way `XLogRecordAssemble` lays it out.
#[allow(clippy::too_many_arguments)]
pub fn encode_record(
    rmid: u8,
    info: u8,
    xid: u32,
    prev: Lsn,
    blocks: &[TestBlock],
    origin: Option<u16>,
    toplevel_xid: Option<u32>,
    main_data: &[u8],
) -> Vec<u8> {
    let mut headers = Vec::new();
    let mut payload = Vec::new();
    let mut prev_rel: Option<RelFileNode> = None;
    for b in blocks {
        let mut flags = b.fork;
        if !b.data.is_empty() {
            flags |= BKPBLOCK_HAS_DATA;
        }
        if b.image.is_some() {
            flags |= BKPBLOCK_HAS_IMAGE;
        }
        if b.will_init {
            flags |= BKPBLOCK_WILL_INIT;
        }
        let same_rel = prev_rel == Some(b.rel);
        if same_rel {
            flags |= BKPBLOCK_SAME_REL;
        }
        headers.push(b.block_id);
        headers.push(flags);
        headers.extend_from_slice(&(b.data.len() as u16).to_le_bytes());
        if let Some((page, hole_offset, hole_length)) = &b.image {
            let (ho, hl) = (usize::from(*hole_offset), usize::from(*hole_length));
            let stored: Vec<u8> = [&page[..ho], &page[ho + hl..BLCKSZ]].concat();
            let mut bimg_info = BKPIMAGE_APPLY;
            if hl > 0 {
                bimg_info |= BKPIMAGE_HAS_HOLE;
            }
            headers.extend_from_slice(&(stored.len() as u16).to_le_bytes());
            headers.extend_from_slice(&hole_offset.to_le_bytes());
            headers.push(bimg_info);
            payload.extend_from_slice(&stored);
        }
        if !same_rel {
            for v in [b.rel.spc_node, b.rel.db_node, b.rel.rel_node] {
                headers.extend_from_slice(&v.to_le_bytes());
            }
        }
        headers.extend_from_slice(&b.blkno.to_le_bytes());
        payload.extend_from_slice(&b.data);
        prev_rel = Some(b.rel);
    }
    if let Some(origin) = origin {
        headers.push(XLR_BLOCK_ID_ORIGIN);
        headers.extend_from_slice(&origin.to_le_bytes());
    }
    if let Some(xid) = toplevel_xid {
        headers.push(XLR_BLOCK_ID_TOPLEVEL_XID);
        headers.extend_from_slice(&xid.to_le_bytes());
    }
    if !main_data.is_empty() {
        if main_data.len() < 256 {
            headers.push(XLR_BLOCK_ID_DATA_SHORT);
            headers.push(main_data.len() as u8);
        } else {
            headers.push(XLR_BLOCK_ID_DATA_LONG);
            headers.extend_from_slice(&(main_data.len() as u32).to_le_bytes());
        }
        payload.extend_from_slice(main_data);
    }
    let total_len = SIZE_OF_XLOG_RECORD + headers.len() + payload.len();
    let header = XLogRecordHeader {
        total_len: total_len as u32,
        xid,
        prev,
        info,
        rmid,
        crc: 0,
    };
    let mut record = header.to_bytes().to_vec();
    record.extend_from_slice(&headers);
    record.extend_from_slice(&payload);
    let crc = compute_record_crc(&record);
    record[20..24].copy_from_slice(&crc.to_le_bytes());
    record
}

/// Where a written record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub start: Lsn,
    /// MAXALIGNed end, as the reader reports it.
    pub end: Lsn,
}

/// Lays records out into WAL pages, starting at a segment boundary.
#[derive(Clone, Debug)]
pub struct WalWriter {
    segment_size: u64,
    system_id: u64,
    timeline: u32,
    start: Lsn,
    bytes: Vec<u8>,
    prev: Lsn,
    /// Byte offsets (relative to `start`) that belong to record contents.
    record_offsets: Vec<(usize, usize)>,
}

impl WalWriter {
    /// An empty stream starting at the segment boundary `start`.
    pub fn new(start: Lsn, segment_size: u64, system_id: u64) -> WalWriter {
        assert!(start.is_segment_start(segment_size));
        WalWriter {
            segment_size,
            system_id,
            timeline: 1,
            start,
            bytes: Vec::new(),
            prev: Lsn::INVALID,
            record_offsets: Vec::new(),
        }
    }

    /// The stream so far, from the start segment boundary.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The LSN of the first byte.
    pub fn start(&self) -> Lsn {
        self.start
    }

    /// The LSN after the last byte written.
    pub fn end(&self) -> Lsn {
        Lsn(self.start.0 + self.bytes.len() as u64)
    }

    /// `(offset, len)` ranges of record bytes (excluding page headers and
    /// padding) relative to [`WalWriter::start`].
    pub fn record_ranges(&self) -> &[(usize, usize)] {
        &self.record_offsets
    }

    fn write_page_header(&mut self, rem_len: u32) {
        let lsn = self.end();
        let long = lsn.is_segment_start(self.segment_size);
        let mut info = if rem_len > 0 {
            XLP_FIRST_IS_CONTRECORD
        } else {
            0
        };
        if long {
            info |= XLP_LONG_HEADER;
        }
        let size = if long {
            LONG_PAGE_HEADER_SIZE
        } else {
            SHORT_PAGE_HEADER_SIZE
        };
        let mut h = vec![0u8; size];
        h[0..2].copy_from_slice(&XLOG_PAGE_MAGIC.to_le_bytes());
        h[2..4].copy_from_slice(&info.to_le_bytes());
        h[4..8].copy_from_slice(&self.timeline.to_le_bytes());
        h[8..16].copy_from_slice(&lsn.0.to_le_bytes());
        h[16..20].copy_from_slice(&rem_len.to_le_bytes());
        if long {
            h[24..32].copy_from_slice(&self.system_id.to_le_bytes());
            h[32..36].copy_from_slice(&(self.segment_size as u32).to_le_bytes());
            h[36..40].copy_from_slice(&(WAL_PAGE_SIZE as u32).to_le_bytes());
        }
        self.bytes.extend_from_slice(&h);
    }

    /// Appends an already encoded record; its `xl_prev` is overwritten with
    /// the previous record's start and its CRC recomputed.
    pub fn append_encoded(&mut self, mut record: Vec<u8>) -> Placed {
        record[8..16].copy_from_slice(&self.prev.0.to_le_bytes());
        let crc = compute_record_crc(&record);
        record[20..24].copy_from_slice(&crc.to_le_bytes());
        // Align the insert position; a record never starts inside a header.
        while !self.bytes.len().is_multiple_of(8) {
            self.bytes.push(0);
        }
        if self.end().page_offset() == 0 {
            self.write_page_header(0);
        }
        let start = self.end();
        let mut written = 0;
        while written < record.len() {
            if self.end().page_offset() == 0 {
                self.write_page_header((record.len() - written) as u32);
            }
            let room = (WAL_PAGE_SIZE - self.end().page_offset()) as usize;
            let n = room.min(record.len() - written);
            self.record_offsets.push((self.bytes.len(), n));
            self.bytes.extend_from_slice(&record[written..written + n]);
            written += n;
        }
        self.prev = start;
        let end = self.end();
        let is_switch = record[17] == 0 && record[16] & 0xF0 == 0x40;
        if is_switch {
            let seg_end = end.segment_start(self.segment_size).0 + self.segment_size;
            if !end.is_segment_start(self.segment_size) {
                self.bytes.resize((seg_end - self.start.0) as usize, 0);
            }
            return Placed {
                start,
                end: self.end(),
            };
        }
        Placed {
            start,
            end: end.align_up(8).unwrap_or(end),
        }
    }

    /// Encodes and appends a record with the given main data and blocks.
    pub fn append(
        &mut self,
        rmid: u8,
        info: u8,
        xid: u32,
        blocks: &[TestBlock],
        main_data: &[u8],
    ) -> Placed {
        let record = encode_record(rmid, info, xid, self.prev, blocks, None, None, main_data);
        self.append_encoded(record)
    }

    /// Pads with zeros to the end of the current segment (what an unused
    /// WAL tail looks like).
    pub fn pad_to_segment_end(&mut self) {
        let end = self.end();
        if !end.is_segment_start(self.segment_size) || self.bytes.is_empty() {
            let seg_end = end.segment_start(self.segment_size).0 + self.segment_size;
            self.bytes.resize((seg_end - self.start.0) as usize, 0);
        }
    }
}
