//! Decoding one reassembled WAL record: the 24-byte `XLogRecord` header, its
//! CRC-32C, the block-reference headers, and the data that follows them.
//!
//! Two levels, so that callers pay only for what they need:
//! - [`RecordLayout::parse`] walks the headers and checks that the declared
//!   lengths add up (what `pg_waldump --stats` needs: rmgr, info, image sizes);
//! - [`decode_record`] additionally copies block data and main data out and
//!   restores every full-page image to exactly `BLCKSZ` bytes.
//!
//! The checks mirror `DecodeXLogRecord` in `xlogreader.c`.

use crate::image::{restore_image, ImageError};
use crate::record::{BlockImage, DecodedBlock, DecodedRecord, ForkNumber, RelFileNode, BLCKSZ};
use crate::Lsn;
use smallvec::SmallVec;

/// `SizeOfXLogRecord`.
pub const SIZE_OF_XLOG_RECORD: usize = 24;
/// Offset of `xl_crc` inside the header; the CRC covers the bytes before it.
pub const XLOG_RECORD_CRC_OFFSET: usize = 20;
/// Highest block id a block reference may use.
pub const XLR_MAX_BLOCK_ID: u8 = 32;
/// Main data with a one-byte length.
pub const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
/// Main data with a four-byte length.
pub const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
/// Replication origin id follows.
pub const XLR_BLOCK_ID_ORIGIN: u8 = 253;
/// Top-level transaction id follows (subtransaction records).
pub const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// The `xl_info` bits that belong to the WAL machinery, not the rmgr.
pub const XLR_INFO_MASK: u8 = 0x0F;
/// `xl_info` flag: the record carries consistency-check images.
pub const XLR_CHECK_CONSISTENCY: u8 = 0x02;

/// `BKPBLOCK_FORK_MASK`.
pub const BKPBLOCK_FORK_MASK: u8 = 0x0F;
/// `BKPBLOCK_HAS_IMAGE`: a full-page image follows the block header.
pub const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
/// `BKPBLOCK_HAS_DATA`: per-block data is included.
pub const BKPBLOCK_HAS_DATA: u8 = 0x20;
/// `BKPBLOCK_WILL_INIT`: redo reinitialises the page.
pub const BKPBLOCK_WILL_INIT: u8 = 0x40;
/// `BKPBLOCK_SAME_REL`: the relation is that of the previous block.
pub const BKPBLOCK_SAME_REL: u8 = 0x80;

/// `BKPIMAGE_HAS_HOLE`.
pub const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// `BKPIMAGE_APPLY`.
pub const BKPIMAGE_APPLY: u8 = 0x02;
/// `BKPIMAGE_COMPRESS_PGLZ`.
pub const BKPIMAGE_COMPRESS_PGLZ: u8 = 0x04;
/// `BKPIMAGE_COMPRESS_LZ4`.
pub const BKPIMAGE_COMPRESS_LZ4: u8 = 0x08;
/// `BKPIMAGE_COMPRESS_ZSTD`.
pub const BKPIMAGE_COMPRESS_ZSTD: u8 = 0x10;
/// Any of the compression bits.
pub const BKPIMAGE_COMPRESSED: u8 =
    BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD;

const BLCKSZ_U16: u16 = 8192;

/// Why a record's bytes are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("invalid record length: wanted at least 24, got {0}")]
    InvalidLength(u32),
    #[error("record length {0} is larger than any record PostgreSQL writes")]
    TooLong(u32),
    #[error("record header says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: u32, actual: usize },
    #[error("record with incorrect prev-link {found} (expected {expected})")]
    BadPrevLink { found: Lsn, expected: Lsn },
    #[error(
        "incorrect resource manager data checksum: stored {stored:08X}, computed {computed:08X}"
    )]
    BadCrc { stored: u32, computed: u32 },
    #[error("record with invalid length: headers overrun the record")]
    Overrun,
    #[error("declared data lengths ({declared} bytes) do not match the {actual} bytes after the headers")]
    DataLengthMismatch { declared: u64, actual: u64 },
    #[error("out-of-order block_id {0}")]
    OutOfOrderBlock(u8),
    #[error("invalid block_id {0}")]
    InvalidBlockId(u8),
    #[error("invalid fork number {fork} in block {block_id}")]
    InvalidFork { block_id: u8, fork: u8 },
    #[error("BKPBLOCK_HAS_DATA set, but no data included (block {0})")]
    HasDataButEmpty(u8),
    #[error("BKPBLOCK_HAS_DATA not set, but data length is {len} (block {block_id})")]
    DataWithoutFlag { block_id: u8, len: u16 },
    #[error("BKPBLOCK_SAME_REL set but no previous rel (block {0})")]
    SameRelWithoutRel(u8),
    #[error("inconsistent block image header in block {block_id}: {what}")]
    BadImageHeader { block_id: u8, what: &'static str },
    #[error("cannot restore block image of block {block_id}: {source}")]
    Image { block_id: u8, source: ImageError },
}

/// The fixed 24-byte record header (`XLogRecord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XLogRecordHeader {
    pub total_len: u32,
    pub xid: u32,
    pub prev: Lsn,
    pub info: u8,
    pub rmid: u8,
    pub crc: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl XLogRecordHeader {
    /// Parses the header at the start of `bytes`, or `None` if fewer than
    /// 24 bytes are given.
    pub fn parse(bytes: &[u8]) -> Option<XLogRecordHeader> {
        let b = bytes.get(..SIZE_OF_XLOG_RECORD)?;
        let mut prev = [0u8; 8];
        prev.copy_from_slice(&b[8..16]);
        Some(XLogRecordHeader {
            total_len: u32_at(b, 0),
            xid: u32_at(b, 4),
            prev: Lsn(u64::from_le_bytes(prev)),
            info: b[16],
            rmid: b[17],
            crc: u32_at(b, 20),
        })
    }

    /// Serialises the header (the CRC field as stored in `self.crc`).
    pub fn to_bytes(&self) -> [u8; SIZE_OF_XLOG_RECORD] {
        let mut b = [0u8; SIZE_OF_XLOG_RECORD];
        b[0..4].copy_from_slice(&self.total_len.to_le_bytes());
        b[4..8].copy_from_slice(&self.xid.to_le_bytes());
        b[8..16].copy_from_slice(&self.prev.0.to_le_bytes());
        b[16] = self.info;
        b[17] = self.rmid;
        b[20..24].copy_from_slice(&self.crc.to_le_bytes());
        b
    }
}

/// CRC-32C of a complete record as PostgreSQL computes it: over the body
/// (everything after the header) first, then the header up to `xl_crc`.
pub fn compute_record_crc(record: &[u8]) -> u32 {
    let body = record.get(SIZE_OF_XLOG_RECORD..).unwrap_or(&[]);
    let head = &record[..record.len().min(XLOG_RECORD_CRC_OFFSET)];
    crc32c::crc32c_append(crc32c::crc32c(body), head)
}

/// Checks the stored CRC of a complete record (`ValidXLogRecord`).
pub fn verify_record_crc(record: &[u8]) -> Result<(), RecordError> {
    let header = XLogRecordHeader::parse(record).ok_or(RecordError::LengthMismatch {
        declared: 0,
        actual: record.len(),
    })?;
    let computed = compute_record_crc(record);
    if computed != header.crc {
        return Err(RecordError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// A block image's header fields, before the image is restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// `bimg_len`: bytes stored in the record (after hole removal and
    /// compression). This is what `pg_waldump` counts as FPI size.
    pub stored_len: u16,
    pub hole_offset: u16,
    pub hole_length: u16,
    /// `bimg_info`.
    pub info: u8,
}

impl ImageHeader {
    /// `BKPIMAGE_APPLY`.
    pub fn apply(&self) -> bool {
        self.info & BKPIMAGE_APPLY != 0
    }

    /// Whether any compression bit is set.
    pub fn is_compressed(&self) -> bool {
        self.info & BKPIMAGE_COMPRESSED != 0
    }
}

/// One block reference header, with where its payload sits in the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    pub block_id: u8,
    pub fork_flags: u8,
    pub fork: ForkNumber,
    pub rel: RelFileNode,
    pub blkno: u32,
    pub data_len: u16,
    pub image: Option<ImageHeader>,
    /// Offset of the image bytes (if any) inside the record.
    pub image_offset: usize,
    /// Offset of the block data inside the record.
    pub data_offset: usize,
}

/// The headers of a record and where each payload lives, without copying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    pub header: XLogRecordHeader,
    /// Most records reference one or two blocks: those stay on the stack.
    pub blocks: SmallVec<[BlockRef; 2]>,
    pub origin: Option<u16>,
    pub toplevel_xid: Option<u32>,
    pub main_data_offset: usize,
    pub main_data_len: u32,
}

/// A cursor over the block headers that fails with [`RecordError::Overrun`]
/// instead of reading past the record.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).ok_or(RecordError::Overrun)?;
        let slice = self.bytes.get(self.pos..end).ok_or(RecordError::Overrun)?;
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16_at(self.take(2)?, 0))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32_at(self.take(4)?, 0))
    }
}

impl RecordLayout {
    /// Parses the header and block headers of the complete record `record`
    /// (exactly `xl_tot_len` bytes) and checks that the declared payload
    /// lengths account for every byte. Does not check the CRC.
    pub fn parse(record: &[u8]) -> Result<RecordLayout, RecordError> {
        let header = XLogRecordHeader::parse(record).ok_or(RecordError::LengthMismatch {
            declared: 0,
            actual: record.len(),
        })?;
        if header.total_len as usize != record.len() {
            return Err(RecordError::LengthMismatch {
                declared: header.total_len,
                actual: record.len(),
            });
        }
        let mut layout = RecordLayout {
            header,
            blocks: SmallVec::new(),
            origin: None,
            toplevel_xid: None,
            main_data_offset: record.len(),
            main_data_len: 0,
        };
        let mut cur = Cursor {
            bytes: record,
            pos: SIZE_OF_XLOG_RECORD,
        };
        let mut datatotal: u64 = 0;
        let mut last_rel: Option<RelFileNode> = None;
        while ((record.len() - cur.pos) as u64) > datatotal {
            let block_id = cur.u8()?;
            match block_id {
                XLR_BLOCK_ID_DATA_SHORT => {
                    layout.main_data_len = u32::from(cur.u8()?);
                    datatotal += u64::from(layout.main_data_len);
                    break;
                }
                XLR_BLOCK_ID_DATA_LONG => {
                    layout.main_data_len = cur.u32()?;
                    datatotal += u64::from(layout.main_data_len);
                    break;
                }
                XLR_BLOCK_ID_ORIGIN => layout.origin = Some(cur.u16()?),
                XLR_BLOCK_ID_TOPLEVEL_XID => layout.toplevel_xid = Some(cur.u32()?),
                id if id <= XLR_MAX_BLOCK_ID => {
                    if layout.blocks.last().is_some_and(|b| b.block_id >= id) {
                        return Err(RecordError::OutOfOrderBlock(id));
                    }
                    let block = parse_block_header(&mut cur, id, &mut last_rel)?;
                    datatotal += u64::from(block.data_len);
                    if let Some(image) = block.image {
                        datatotal += u64::from(image.stored_len);
                    }
                    layout.blocks.push(block);
                }
                other => return Err(RecordError::InvalidBlockId(other)),
            }
        }
        let remaining = (record.len() - cur.pos) as u64;
        if remaining != datatotal {
            return Err(RecordError::DataLengthMismatch {
                declared: datatotal,
                actual: remaining,
            });
        }
        // Payloads follow the headers in order: per block its image then its
        // data, and the main data last.
        let mut pos = cur.pos;
        for block in &mut layout.blocks {
            block.image_offset = pos;
            pos += block.image.map_or(0, |i| usize::from(i.stored_len));
            block.data_offset = pos;
            pos += usize::from(block.data_len);
        }
        layout.main_data_offset = pos;
        Ok(layout)
    }

    /// Total bytes of full-page images (`bimg_len` summed), as `pg_waldump`
    /// counts "FPI size".
    pub fn fpi_len(&self) -> u32 {
        self.blocks
            .iter()
            .filter_map(|b| b.image.map(|i| u32::from(i.stored_len)))
            .sum()
    }
}

fn parse_block_header(
    cur: &mut Cursor<'_>,
    block_id: u8,
    last_rel: &mut Option<RelFileNode>,
) -> Result<BlockRef, RecordError> {
    let fork_flags = cur.u8()?;
    let fork_no = fork_flags & BKPBLOCK_FORK_MASK;
    let fork = ForkNumber::from_u8(fork_no).ok_or(RecordError::InvalidFork {
        block_id,
        fork: fork_no,
    })?;
    let data_len = cur.u16()?;
    let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
    if has_data && data_len == 0 {
        return Err(RecordError::HasDataButEmpty(block_id));
    }
    if !has_data && data_len != 0 {
        return Err(RecordError::DataWithoutFlag {
            block_id,
            len: data_len,
        });
    }
    let image = if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
        Some(parse_image_header(cur, block_id)?)
    } else {
        None
    };
    let rel = if fork_flags & BKPBLOCK_SAME_REL == 0 {
        let rel = RelFileNode {
            spc_node: cur.u32()?,
            db_node: cur.u32()?,
            rel_node: cur.u32()?,
        };
        *last_rel = Some(rel);
        rel
    } else {
        last_rel.ok_or(RecordError::SameRelWithoutRel(block_id))?
    };
    let blkno = cur.u32()?;
    Ok(BlockRef {
        block_id,
        fork_flags,
        fork,
        rel,
        blkno,
        data_len,
        image,
        image_offset: 0,
        data_offset: 0,
    })
}

fn parse_image_header(cur: &mut Cursor<'_>, block_id: u8) -> Result<ImageHeader, RecordError> {
    let stored_len = cur.u16()?;
    let hole_offset = cur.u16()?;
    let info = cur.u8()?;
    let compressed = info & BKPIMAGE_COMPRESSED != 0;
    let has_hole = info & BKPIMAGE_HAS_HOLE != 0;
    let hole_length = if compressed {
        if has_hole {
            cur.u16()?
        } else {
            0
        }
    } else {
        BLCKSZ_U16.wrapping_sub(stored_len)
    };
    let bad = |what| Err(RecordError::BadImageHeader { block_id, what });
    if has_hole && (hole_offset == 0 || hole_length == 0 || stored_len == BLCKSZ_U16) {
        return bad("BKPIMAGE_HAS_HOLE set, but hole offset, hole length or image length invalid");
    }
    if !has_hole && (hole_offset != 0 || hole_length != 0) {
        return bad("BKPIMAGE_HAS_HOLE not set, but hole offset or length non-zero");
    }
    if compressed && stored_len == BLCKSZ_U16 {
        return bad("BKPIMAGE_COMPRESSED set, but image length is BLCKSZ");
    }
    if !has_hole && !compressed && stored_len != BLCKSZ_U16 {
        return bad(
            "neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but image length is not BLCKSZ",
        );
    }
    if usize::from(hole_offset) + usize::from(hole_length) > BLCKSZ || stored_len > BLCKSZ_U16 {
        return bad("hole or image extends past the end of the page");
    }
    Ok(ImageHeader {
        stored_len,
        hole_offset,
        hole_length,
        info,
    })
}

/// Fully decodes the complete record `record` that starts at `start_lsn` and
/// ends at `end_lsn`: copies out block data and main data and restores every
/// full-page image. Does not check the CRC (the reader did).
pub fn decode_record(
    record: &[u8],
    start_lsn: Lsn,
    end_lsn: Lsn,
) -> Result<DecodedRecord, RecordError> {
    let mut decoded = DecodedRecord {
        start_lsn,
        end_lsn,
        total_len: 0,
        xid: 0,
        prev: Lsn::INVALID,
        info: 0,
        rmid: 0,
        origin: None,
        toplevel_xid: None,
        blocks: Vec::new(),
        main_data: Vec::new(),
    };
    decode_record_into(record, start_lsn, end_lsn, &mut decoded)?;
    Ok(decoded)
}

/// [`decode_record`] into `out`, reusing its buffers (the block list and
/// each block's and the main data's vectors) instead of allocating: a
/// decoder that recycles its records allocates only for images. On error
/// `out` holds a mix of old and new fields and must not be used.
pub fn decode_record_into(
    record: &[u8],
    start_lsn: Lsn,
    end_lsn: Lsn,
    out: &mut DecodedRecord,
) -> Result<(), RecordError> {
    let layout = RecordLayout::parse(record)?;
    out.blocks.truncate(layout.blocks.len());
    for (index, b) in layout.blocks.iter().enumerate() {
        let image = match b.image {
            Some(h) => {
                let stored = &record[b.image_offset..b.image_offset + usize::from(h.stored_len)];
                let page = restore_image(stored, &h).map_err(|source| RecordError::Image {
                    block_id: b.block_id,
                    source,
                })?;
                Some(BlockImage {
                    page,
                    apply: h.apply(),
                    info: h.info,
                    hole_offset: h.hole_offset,
                    hole_length: h.hole_length,
                })
            }
            None => None,
        };
        let data = &record[b.data_offset..b.data_offset + usize::from(b.data_len)];
        let fields = |data: Vec<u8>| DecodedBlock {
            block_id: b.block_id,
            rel: b.rel,
            fork: b.fork,
            blkno: b.blkno,
            fork_flags: b.fork_flags,
            will_init: b.fork_flags & BKPBLOCK_WILL_INIT != 0,
            image,
            data,
        };
        match out.blocks.get_mut(index) {
            Some(block) => {
                let mut buffer = std::mem::take(&mut block.data);
                buffer.clear();
                buffer.extend_from_slice(data);
                *block = fields(buffer);
            }
            None => out.blocks.push(fields(data.to_vec())),
        }
    }
    let main_start = layout.main_data_offset;
    let main_end = main_start + layout.main_data_len as usize;
    out.main_data.clear();
    out.main_data
        .extend_from_slice(&record[main_start..main_end]);
    out.start_lsn = start_lsn;
    out.end_lsn = end_lsn;
    out.total_len = layout.header.total_len;
    out.xid = layout.header.xid;
    out.prev = layout.header.prev;
    out.info = layout.header.info;
    out.rmid = layout.header.rmid;
    out.origin = layout.origin;
    out.toplevel_xid = layout.toplevel_xid;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testwal::{encode_record, TestBlock};

    fn rel(n: u32) -> RelFileNode {
        RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: n,
        }
    }

    fn block(id: u8, rel_node: u32) -> TestBlock {
        TestBlock {
            block_id: id,
            rel: rel(rel_node),
            fork: 0,
            blkno: 7,
            will_init: false,
            data: vec![id; 3],
            image: None,
        }
    }

    /// Recomputes the CRC after a test edits a record.
    fn reseal(mut r: Vec<u8>) -> Vec<u8> {
        let crc = compute_record_crc(&r);
        r[20..24].copy_from_slice(&crc.to_le_bytes());
        r
    }

    #[test]
    fn decodes_blocks_origin_toplevel_xid_and_long_main_data() {
        let mut with_image = block(2, 16385);
        let page: Vec<u8> = (0..BLCKSZ).map(|i| (i % 7) as u8).collect();
        with_image.image = Some((page.clone(), 0, 0));
        let blocks = vec![block(0, 16384), block(1, 16384), with_image];
        let main = vec![9u8; 300];
        let raw = encode_record(10, 0x20, 5, Lsn(8), &blocks, Some(3), Some(77), &main);
        verify_record_crc(&raw).unwrap();
        let r = decode_record(&raw, Lsn(0x28), Lsn(0x100)).unwrap();
        assert_eq!((r.origin, r.toplevel_xid), (Some(3), Some(77)));
        assert_eq!(r.main_data, main);
        assert_eq!(r.blocks.len(), 3);
        assert_eq!(r.blocks[1].rel, rel(16384)); // via BKPBLOCK_SAME_REL
        assert_eq!(r.blocks[2].rel, rel(16385));
        assert_eq!(r.blocks[2].image.as_ref().unwrap().page, page);
        assert_eq!(r.blocks[0].data, vec![0; 3]);
        let layout = RecordLayout::parse(&raw).unwrap();
        assert_eq!(layout.fpi_len(), BLCKSZ as u32);
        assert_eq!(r.rmgr_info(), 0x20);
    }

    /// Decoding into a record that held another one gives exactly what a
    /// fresh decode gives: more blocks, fewer, an image where there was
    /// none and back, shorter and longer data.
    #[test]
    fn decoding_into_a_used_record_equals_a_fresh_decode() {
        let page: Vec<u8> = (0..BLCKSZ).map(|i| (i % 11) as u8).collect();
        let mut with_image = block(1, 16390);
        with_image.image = Some((page, 0, 0));
        let mut long_data = block(0, 16391);
        long_data.data = vec![4; 500];
        let records = [
            encode_record(
                10,
                0x20,
                5,
                Lsn(8),
                &[block(0, 1), with_image.clone()],
                Some(3),
                Some(77),
                &[1; 40],
            ),
            encode_record(11, 0x10, 6, Lsn(16), &[long_data], None, None, b""),
            encode_record(
                10,
                0,
                7,
                Lsn(24),
                &[block(0, 2), block(1, 2), block(2, 3)],
                None,
                Some(9),
                &[2; 300],
            ),
            encode_record(9, 0x30, 8, Lsn(32), &[], None, None, b"xyz"),
            encode_record(10, 0x20, 9, Lsn(40), &[with_image], None, None, &[3; 7]),
        ];
        let mut reused = decode_record(&records[0], Lsn(0x28), Lsn(0x100)).unwrap();
        for (i, raw) in records.iter().cycle().take(12).enumerate() {
            let (start, end) = (Lsn(0x100 * (i as u64 + 1)), Lsn(0x100 * (i as u64 + 2)));
            decode_record_into(raw, start, end, &mut reused).unwrap();
            assert_eq!(
                reused,
                decode_record(raw, start, end).unwrap(),
                "record {i}"
            );
        }
    }

    #[test]
    fn crc_covers_body_and_header() {
        let raw = encode_record(10, 0, 5, Lsn(8), &[block(0, 1)], None, None, b"abc");
        for at in [0usize, 5, 16, 17, 24, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[at] ^= 0x40;
            assert!(
                matches!(verify_record_crc(&bad), Err(RecordError::BadCrc { .. })),
                "byte {at}"
            );
        }
    }

    #[test]
    fn malformed_block_headers_are_typed_errors() {
        let raw = encode_record(10, 0, 5, Lsn(8), &[block(0, 1)], None, None, b"abc");
        // Header layout: 24 record header, then id, fork_flags, data_len.
        let mut same_rel = raw.clone();
        same_rel[25] |= BKPBLOCK_SAME_REL;
        assert!(RecordLayout::parse(&reseal(same_rel)).is_err());
        let mut no_data_flag = raw.clone();
        no_data_flag[25] &= !BKPBLOCK_HAS_DATA;
        assert_eq!(
            RecordLayout::parse(&no_data_flag).unwrap_err(),
            RecordError::DataWithoutFlag {
                block_id: 0,
                len: 3
            }
        );
        let mut bad_fork = raw.clone();
        bad_fork[25] |= 0x07;
        assert!(matches!(
            RecordLayout::parse(&bad_fork),
            Err(RecordError::InvalidFork { .. })
        ));
        let mut bad_id = raw.clone();
        bad_id[24] = 200;
        assert_eq!(
            RecordLayout::parse(&bad_id).unwrap_err(),
            RecordError::InvalidBlockId(200)
        );
        let two = encode_record(
            10,
            0,
            5,
            Lsn(8),
            &[block(3, 1), block(1, 2)],
            None,
            None,
            b"",
        );
        assert_eq!(
            RecordLayout::parse(&two).unwrap_err(),
            RecordError::OutOfOrderBlock(1)
        );
        let mut short = raw.clone();
        short.truncate(raw.len() - 1);
        let len = short.len() as u32;
        short[0..4].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            RecordLayout::parse(&short),
            Err(RecordError::DataLengthMismatch { .. })
        ));
    }

    #[test]
    fn inconsistent_image_headers_are_rejected() {
        let mut b = block(0, 1);
        b.image = Some((vec![1u8; BLCKSZ], 100, 50));
        let raw = encode_record(10, 0, 5, Lsn(8), &[b], None, None, b"");
        RecordLayout::parse(&raw).unwrap();
        // Image header: after id(24), flags(25), data_len(26..28):
        // bimg_len 28..30, hole_offset 30..32, bimg_info 32.
        let mut no_hole_flag = raw.clone();
        no_hole_flag[32] &= !BKPIMAGE_HAS_HOLE;
        assert!(matches!(
            RecordLayout::parse(&no_hole_flag),
            Err(RecordError::BadImageHeader { .. })
        ));
        let mut compressed_full = raw.clone();
        compressed_full[28..30].copy_from_slice(&8192u16.to_le_bytes());
        compressed_full[32] = BKPIMAGE_COMPRESS_LZ4;
        assert!(RecordLayout::parse(&compressed_full).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..600))| {
            let mut r = bytes.clone();
            if r.len() >= 4 {
                let n = r.len() as u32;
                r[0..4].copy_from_slice(&n.to_le_bytes());
            }
            let _ = decode_record(&r, Lsn(0), Lsn(0));
            let _ = RecordLayout::parse(&bytes);
        });
    }
}
