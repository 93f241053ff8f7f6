//! The form in which a WAL record is stored as a [`storage::Value::WalRecord`]
//! for one of its blocks, so that [`crate::NativeRedo`] can decode it again.
//!
//! Format 2 (written now) is a compact serialisation of the decoded record
//! without any block images: the block a value belongs to never has one
//! (a block with an image is stored as that image), and no redo routine
//! reads another block's image, only its tag and data. Dropping them keeps
//! a heap update whose other page carried a full-page write from storing
//! 8 KiB twice, and spares redo the decompression. All integers are
//! little-endian:
//!
//! ```text
//! format u8 = 2 | block_id u8 | start_lsn u64 | end_lsn u64 | xid u32 |
//! info u8 | rmid u8 | has u8 (1 = origin, 2 = toplevel xid) |
//! [origin u16] [toplevel_xid u32] | main_len u32 | main data |
//! block count u8 | per block: block_id u8, spc u32, db u32, rel u32,
//!   fork u8, blkno u32, fork_flags u8, will_init u8, data_len u32, data
//! ```
//!
//! Format 1 (`format u8 = 1 | block_id u8 | start_lsn u64 | end_lsn u64 |
//! the record's bytes as in the WAL`) is still decoded.

use bytes::{Bytes, BytesMut};
use postgres_wal::record::{DecodedBlock, DecodedRecord, ForkNumber, RelFileNode};
use postgres_wal::{decode_record, Lsn};

use crate::value_slab::ValueSlab;

const FORMAT_RAW: u8 = 1;
const FORMAT_COMPACT: u8 = 2;
const HAS_ORIGIN: u8 = 1;
const HAS_TOPLEVEL_XID: u8 = 2;

/// Encodes `record` for its block `block_id` (format 2).
pub fn encode(block_id: u8, record: &DecodedRecord) -> Bytes {
    // The exact size, so that the buffer becomes `Bytes` without a
    // reallocation or a separate shared header.
    let mut out = BytesMut::with_capacity(encoded_len(record));
    write(block_id, record, &mut out);
    out.freeze()
}

/// [`encode`] into memory taken from `slab` (see [`ValueSlab`]).
pub fn encode_in(block_id: u8, record: &DecodedRecord, slab: &mut ValueSlab) -> Bytes {
    let out = slab.room(encoded_len(record));
    write(block_id, record, out);
    slab.take()
}

/// Bytes [`write`] appends for `record`.
fn encoded_len(record: &DecodedRecord) -> usize {
    let blocks_len: usize = record.blocks.iter().map(|b| 24 + b.data.len()).sum();
    25 + if record.origin.is_some() { 2 } else { 0 }
        + if record.toplevel_xid.is_some() { 4 } else { 0 }
        + 4
        + record.main_data.len()
        + 1
        + blocks_len
}

/// Appends the format 2 form of `record` for `block_id` to `out`.
fn write(block_id: u8, record: &DecodedRecord, out: &mut BytesMut) {
    let start = out.len();
    out.extend_from_slice(&[FORMAT_COMPACT, block_id]);
    out.extend_from_slice(&record.start_lsn.0.to_le_bytes());
    out.extend_from_slice(&record.end_lsn.0.to_le_bytes());
    out.extend_from_slice(&record.xid.to_le_bytes());
    let has = u8::from(record.origin.is_some()) * HAS_ORIGIN
        + u8::from(record.toplevel_xid.is_some()) * HAS_TOPLEVEL_XID;
    out.extend_from_slice(&[record.info, record.rmid, has]);
    if let Some(origin) = record.origin {
        out.extend_from_slice(&origin.to_le_bytes());
    }
    if let Some(xid) = record.toplevel_xid {
        out.extend_from_slice(&xid.to_le_bytes());
    }
    put_bytes(out, &record.main_data);
    // A record has at most XLR_MAX_BLOCK_ID + 1 = 33 block references.
    out.extend_from_slice(&[record.blocks.len() as u8]);
    for block in &record.blocks {
        out.extend_from_slice(&[block.block_id]);
        for v in [block.rel.spc_node, block.rel.db_node, block.rel.rel_node] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&[block.fork as u8]);
        out.extend_from_slice(&block.blkno.to_le_bytes());
        out.extend_from_slice(&[block.fork_flags, u8::from(block.will_init)]);
        put_bytes(out, &block.data);
    }
    debug_assert_eq!(out.len() - start, encoded_len(record));
}

/// Encodes a record in format 1 (its WAL bytes as they are). Kept for tests
/// of the decoder's compatibility.
pub fn encode_raw(block_id: u8, start_lsn: Lsn, end_lsn: Lsn, record_bytes: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(18 + record_bytes.len());
    out.extend_from_slice(&[FORMAT_RAW, block_id]);
    out.extend_from_slice(&start_lsn.0.to_le_bytes());
    out.extend_from_slice(&end_lsn.0.to_le_bytes());
    out.extend_from_slice(record_bytes);
    Bytes::from(out)
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A stored record, decoded.
#[derive(Debug)]
pub struct StoredRecord {
    pub block_id: u8,
    pub record: DecodedRecord,
}

/// Decodes a value written by [`encode`] or [`encode_raw`]; malformed bytes
/// give an error.
pub fn decode(bytes: &[u8]) -> Result<StoredRecord, String> {
    let mut r = Reader { bytes, at: 0 };
    let format = r.u8()?;
    let block_id = r.u8()?;
    let start_lsn = Lsn(r.u64()?);
    let end_lsn = Lsn(r.u64()?);
    match format {
        FORMAT_RAW => {
            let record = decode_record(r.rest(), start_lsn, end_lsn)
                .map_err(|e| format!("stored record at {start_lsn}: {e}"))?;
            Ok(StoredRecord { block_id, record })
        }
        FORMAT_COMPACT => {
            let record = decode_compact(&mut r, start_lsn, end_lsn)?;
            if r.at != bytes.len() {
                return Err(format!(
                    "{} bytes after the stored record",
                    bytes.len() - r.at
                ));
            }
            Ok(StoredRecord { block_id, record })
        }
        other => Err(format!("unknown stored record format {other}")),
    }
}

fn decode_compact(
    r: &mut Reader<'_>,
    start_lsn: Lsn,
    end_lsn: Lsn,
) -> Result<DecodedRecord, String> {
    let xid = r.u32()?;
    let info = r.u8()?;
    let rmid = r.u8()?;
    let has = r.u8()?;
    let origin = if has & HAS_ORIGIN != 0 {
        Some(r.u16()?)
    } else {
        None
    };
    let toplevel_xid = if has & HAS_TOPLEVEL_XID != 0 {
        Some(r.u32()?)
    } else {
        None
    };
    let main_data = r.sized()?.to_vec();
    let count = r.u8()?;
    let mut blocks = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let block_id = r.u8()?;
        let rel = RelFileNode {
            spc_node: r.u32()?,
            db_node: r.u32()?,
            rel_node: r.u32()?,
        };
        let fork_no = r.u8()?;
        let fork = ForkNumber::from_u8(fork_no).ok_or(format!("fork number {fork_no}"))?;
        blocks.push(DecodedBlock {
            block_id,
            rel,
            fork,
            blkno: r.u32()?,
            fork_flags: r.u8()?,
            will_init: r.u8()? != 0,
            image: None,
            data: r.sized()?.to_vec(),
        });
    }
    Ok(DecodedRecord {
        start_lsn,
        end_lsn,
        total_len: 0,
        xid,
        prev: Lsn::INVALID,
        info,
        rmid,
        origin,
        toplevel_xid,
        blocks,
        main_data,
    })
}

/// Bounds-checked little-endian reads.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("stored record truncated at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    fn sized(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_wal::record::{BlockImage, BLCKSZ};

    fn record() -> DecodedRecord {
        let block = |block_id: u8, blkno: u32, image: bool| DecodedBlock {
            block_id,
            rel: RelFileNode {
                spc_node: 1663,
                db_node: 5,
                rel_node: 16384,
            },
            fork: ForkNumber::Main,
            blkno,
            fork_flags: 0x20,
            will_init: block_id == 1,
            image: image.then(|| BlockImage {
                page: vec![7; BLCKSZ],
                apply: true,
                info: 0x02,
                hole_offset: 0,
                hole_length: 0,
            }),
            data: vec![block_id; 10],
        };
        DecodedRecord {
            start_lsn: Lsn(0x1_0000_0028),
            end_lsn: Lsn(0x1_0000_0090),
            total_len: 100,
            xid: 777,
            prev: Lsn(0x10),
            info: 0x20,
            rmid: 10,
            origin: Some(3),
            toplevel_xid: Some(770),
            blocks: vec![block(0, 4, true), block(1, 9, false)],
            main_data: vec![1, 2, 3],
        }
    }

    #[test]
    fn compact_form_keeps_everything_redo_reads_and_drops_images() {
        let original = record();
        let bytes = encode(1, &original);
        assert!(bytes.len() < 200, "no image stored: {} bytes", bytes.len());
        let stored = decode(&bytes).unwrap();
        assert_eq!(stored.block_id, 1);
        let mut expected = original;
        expected.blocks[0].image = None;
        expected.total_len = 0;
        expected.prev = Lsn::INVALID;
        assert_eq!(stored.record, expected);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let bytes = encode(0, &record());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode(&longer).is_err());
        assert!(decode(&[9; 40]).is_err());
        let raw = encode_raw(0, Lsn(8), Lsn(16), &[0xff; 30]);
        assert!(decode(&raw).is_err());
    }
}
