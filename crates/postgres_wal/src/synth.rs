//! Synthesising the WAL a stock server needs to start at an arbitrary LSN:
//! one shutdown-checkpoint record, inside one full WAL segment.
//!
//! A base backup at LSN *L* carries no real WAL. Instead we write a
//! `XLOG_CHECKPOINT_SHUTDOWN` record at the first valid record position at or
//! after *L* (8-byte aligned, past the page header, moved to the next page if
//! the 114-byte record would not fit on this one, so it never continues onto
//! another page), whose `redo` is its own position. `pg_control` then points
//! at it with state "shut down", so the postmaster finds a clean shutdown and
//! replays nothing. The segment around it is zeros except for a long page
//! header on its first page (PostgreSQL validates that page whenever it opens
//! a segment), a short header on the record's page and, when the record is
//! not the first on its page, one `XLOG_NOOP` record filling the gap: tools
//! that scan a page from its start (`pg_waldump`, `pg_verifybackup`, our own
//! decoder) then walk a valid chain of records to the checkpoint.

use crate::control::{CheckPoint, CHECKPOINT_SIZE};
use crate::lsn::WAL_PAGE_SIZE;
use crate::Lsn;

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
pub const XLOG_PAGE_MAGIC: u16 = 0xD110;
/// `XLP_FIRST_IS_CONTRECORD`.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`.
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `SizeOfXLogShortPHD`.
pub const SHORT_PAGE_HEADER_SIZE: u64 = 24;
/// `SizeOfXLogLongPHD`.
pub const LONG_PAGE_HEADER_SIZE: u64 = 40;
/// `SizeOfXLogRecord`.
pub const RECORD_HEADER_SIZE: usize = 24;
/// `offsetof(XLogRecord, xl_crc)`: the header bytes the CRC covers.
pub const RECORD_CRC_OFFSET: usize = 20;
/// `XLR_BLOCK_ID_DATA_SHORT`: main data of at most 255 bytes follows.
pub const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
/// `XLR_BLOCK_ID_DATA_LONG`: a 4-byte main data length follows.
pub const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
/// `XLOG_CHECKPOINT_SHUTDOWN` (info of the XLOG resource manager).
pub const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
/// `XLOG_NOOP` (info of the XLOG resource manager).
pub const XLOG_NOOP: u8 = 0x20;
/// Smallest gap a filler `XLOG_NOOP` record can fill: its 24-byte header and
/// a 2-byte short data header, rounded up to the 8-byte record alignment.
pub const MIN_FILLER_SIZE: u64 = 32;
/// Length of a checkpoint record: header + short data header + body.
pub const CHECKPOINT_RECORD_SIZE: usize = RECORD_HEADER_SIZE + 2 + CHECKPOINT_SIZE;

/// Why a checkpoint segment cannot be synthesised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("WAL segment size {0} is not a power of two between 1 MiB and 1 GiB")]
    BadSegmentSize(u64),
    #[error("LSN {0} is too close to the end of the WAL address space")]
    LsnOverflow(Lsn),
}

/// A shutdown checkpoint placed in its WAL segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthesizedCheckpoint {
    /// Where the record starts; `pg_control.checkPoint` and the record's
    /// `redo` both equal this.
    pub record_lsn: Lsn,
    /// The record's end rounded up to the 8-byte record alignment
    /// (`EndRecPtr`): where the started server writes its next record.
    pub end_lsn: Lsn,
    /// The checkpoint body as written (with `redo` set).
    pub checkpoint: CheckPoint,
    /// WAL file name of the segment (`pg_wal/<name>`).
    pub file_name: String,
    /// The whole segment file.
    pub segment: Vec<u8>,
}

/// Size of the page header of the WAL page starting at `page_start`.
pub fn page_header_size(page_start: Lsn, segment_size: u64) -> u64 {
    if page_start.is_segment_start(segment_size) {
        LONG_PAGE_HEADER_SIZE
    } else {
        SHORT_PAGE_HEADER_SIZE
    }
}

/// The first position at or after `at` where a whole checkpoint record can
/// start without crossing a page boundary, and either first on its page or
/// at least [`MIN_FILLER_SIZE`] bytes after the page header.
pub fn checkpoint_position(at: Lsn, segment_size: u64) -> Result<Lsn, SynthError> {
    let overflow = || SynthError::LsnOverflow(at);
    let mut pos = at.align_up(8).ok_or_else(overflow)?;
    let header = page_header_size(pos.page_start(), segment_size);
    if pos.page_offset() < header {
        pos = pos.page_start().checked_add(header).ok_or_else(overflow)?;
    }
    let gap = pos.page_offset() - header;
    if gap > 0 && gap < MIN_FILLER_SIZE {
        pos = Lsn(pos.page_start().0 + header + MIN_FILLER_SIZE);
    }
    if pos.page_offset() + CHECKPOINT_RECORD_SIZE as u64 > WAL_PAGE_SIZE {
        let next_page = pos
            .page_start()
            .checked_add(WAL_PAGE_SIZE)
            .ok_or_else(overflow)?;
        pos = next_page
            .checked_add(page_header_size(next_page, segment_size))
            .ok_or_else(overflow)?;
    }
    Ok(pos)
}

/// The 114 bytes of a shutdown checkpoint record with a valid CRC.
pub fn checkpoint_record(checkpoint: &CheckPoint, prev: Lsn) -> Vec<u8> {
    let mut record = Vec::with_capacity(CHECKPOINT_RECORD_SIZE);
    record.extend_from_slice(&(CHECKPOINT_RECORD_SIZE as u32).to_le_bytes());
    record.extend_from_slice(&0u32.to_le_bytes()); // xl_xid
    record.extend_from_slice(&prev.0.to_le_bytes());
    record.push(XLOG_CHECKPOINT_SHUTDOWN); // xl_info
    record.push(0); // xl_rmid = RM_XLOG_ID
    record.extend_from_slice(&[0, 0]); // padding
    record.extend_from_slice(&[0; 4]); // xl_crc, filled below
    record.push(XLR_BLOCK_ID_DATA_SHORT);
    record.push(CHECKPOINT_SIZE as u8);
    record.extend_from_slice(&checkpoint.serialize());
    let crc = record_crc(&record);
    record[RECORD_CRC_OFFSET..RECORD_HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    record
}

/// An `XLOG_NOOP` record of exactly `total_len` bytes (at least
/// [`MIN_FILLER_SIZE`] - 6), its main data zeros.
pub fn noop_record(total_len: usize, prev: Lsn) -> Vec<u8> {
    let short_data = total_len.saturating_sub(RECORD_HEADER_SIZE + 2);
    let mut record = Vec::with_capacity(total_len);
    record.extend_from_slice(&(total_len as u32).to_le_bytes());
    record.extend_from_slice(&0u32.to_le_bytes());
    record.extend_from_slice(&prev.0.to_le_bytes());
    record.extend_from_slice(&[XLOG_NOOP, 0, 0, 0, 0, 0, 0, 0]);
    if short_data <= usize::from(u8::MAX) {
        record.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, short_data as u8]);
    } else {
        let long_data = total_len.saturating_sub(RECORD_HEADER_SIZE + 5) as u32;
        record.push(XLR_BLOCK_ID_DATA_LONG);
        record.extend_from_slice(&long_data.to_le_bytes());
    }
    record.resize(total_len, 0);
    let crc = record_crc(&record);
    record[RECORD_CRC_OFFSET..RECORD_HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    record
}

/// CRC-32C of a whole record as PostgreSQL computes it: the body after the
/// header first, then the header bytes before `xl_crc`.
pub fn record_crc(record: &[u8]) -> u32 {
    let body = record.get(RECORD_HEADER_SIZE..).unwrap_or(&[]);
    let header = record.get(..RECORD_CRC_OFFSET).unwrap_or(record);
    crc32c::crc32c_append(crc32c::crc32c(body), header)
}

/// Whether the CRC stored in a record's header matches its bytes.
pub fn record_crc_is_valid(record: &[u8]) -> bool {
    match record.get(RECORD_CRC_OFFSET..RECORD_HEADER_SIZE) {
        Some(stored) => stored == record_crc(record).to_le_bytes(),
        None => false,
    }
}

/// Writes a WAL page header at the start of `page`.
fn write_page_header(
    page: &mut [u8],
    page_start: Lsn,
    timeline_id: u32,
    system_identifier: u64,
    segment_size: u64,
) {
    let long = page_start.is_segment_start(segment_size);
    let info = if long { XLP_LONG_HEADER } else { 0 };
    page[0..2].copy_from_slice(&XLOG_PAGE_MAGIC.to_le_bytes());
    page[2..4].copy_from_slice(&info.to_le_bytes());
    page[4..8].copy_from_slice(&timeline_id.to_le_bytes());
    page[8..16].copy_from_slice(&page_start.0.to_le_bytes());
    page[16..20].copy_from_slice(&0u32.to_le_bytes()); // xlp_rem_len: no continuation
    if long {
        page[24..32].copy_from_slice(&system_identifier.to_le_bytes());
        page[32..36].copy_from_slice(&(segment_size as u32).to_le_bytes());
        page[36..40].copy_from_slice(&(WAL_PAGE_SIZE as u32).to_le_bytes());
    }
}

/// Builds the WAL segment holding a shutdown checkpoint at the first record
/// position at or after `at`. `checkpoint.redo` is overwritten with that
/// position; its timeline names the segment and the page headers.
pub fn shutdown_checkpoint_segment(
    at: Lsn,
    checkpoint: &CheckPoint,
    system_identifier: u64,
    segment_size: u64,
) -> Result<SynthesizedCheckpoint, SynthError> {
    if !segment_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&segment_size) {
        return Err(SynthError::BadSegmentSize(segment_size));
    }
    let record_lsn = checkpoint_position(at, segment_size)?;
    let mut checkpoint = checkpoint.clone();
    checkpoint.redo = record_lsn.0;
    let first_on_page = record_lsn
        .page_start()
        .checked_add(page_header_size(record_lsn.page_start(), segment_size))
        .ok_or(SynthError::LsnOverflow(at))?;
    let filler = (record_lsn > first_on_page)
        .then(|| noop_record((record_lsn - first_on_page) as usize, Lsn::INVALID));
    // A record read at random only needs its prev link to point backwards;
    // one read right after the filler must point at the filler.
    let prev = match filler {
        Some(_) => first_on_page,
        None if at < record_lsn => at,
        None => Lsn::INVALID,
    };
    let record = checkpoint_record(&checkpoint, prev);

    let timeline_id = checkpoint.this_timeline_id;
    let segment_start = record_lsn.segment_start(segment_size);
    let mut segment = vec![0u8; segment_size as usize];
    write_page_header(
        &mut segment,
        segment_start,
        timeline_id,
        system_identifier,
        segment_size,
    );
    let page_offset = (record_lsn.page_start() - segment_start) as usize;
    let page = &mut segment[page_offset..page_offset + WAL_PAGE_SIZE as usize];
    write_page_header(
        page,
        record_lsn.page_start(),
        timeline_id,
        system_identifier,
        segment_size,
    );
    let in_page = record_lsn.page_offset() as usize;
    page[in_page..in_page + record.len()].copy_from_slice(&record);
    if let Some(filler) = filler {
        let at = first_on_page.page_offset() as usize;
        page[at..at + filler.len()].copy_from_slice(&filler);
    }

    Ok(SynthesizedCheckpoint {
        record_lsn,
        end_lsn: record_lsn + (CHECKPOINT_RECORD_SIZE as u64).next_multiple_of(8),
        file_name: record_lsn.wal_file_name(timeline_id, segment_size),
        checkpoint,
        segment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsn::DEFAULT_WAL_SEGMENT_SIZE as SEG;

    fn checkpoint() -> CheckPoint {
        CheckPoint {
            redo: 0,
            this_timeline_id: 1,
            prev_timeline_id: 1,
            full_page_writes: true,
            next_xid: 735,
            next_oid: 16384,
            next_multi: 1,
            next_multi_offset: 0,
            oldest_xid: 716,
            oldest_xid_db: 1,
            oldest_multi: 1,
            oldest_multi_db: 1,
            time: 1_700_000_000,
            oldest_commit_ts_xid: 0,
            newest_commit_ts_xid: 0,
            oldest_active_xid: 0,
        }
    }

    /// Our own stream decoder, started at the record's page like
    /// pg_waldump's `XLogFindNextRecord`, walks filler then checkpoint.
    fn decode_from_page_start(synth: &SynthesizedCheckpoint) -> Vec<crate::record::DecodedRecord> {
        use crate::reader::{WalConfig, WalStreamDecoder};
        let page_start = synth.record_lsn.page_start();
        let config = WalConfig {
            segment_size: SEG,
            system_id: Some(42),
        };
        let mut decoder = WalStreamDecoder::new(page_start, config);
        let offset = page_start.segment_offset(SEG) as usize;
        decoder.feed_bytes(&synth.segment[offset..offset + 2 * WAL_PAGE_SIZE as usize]);
        let mut records = Vec::new();
        loop {
            match decoder.poll_decode() {
                Ok(Some(record)) => records.push(record),
                Ok(None) => break,
                Err(e) if e.is_end_of_wal() => break,
                Err(e) => panic!("{e}"),
            }
        }
        records
    }

    #[test]
    fn project_decoder_reads_the_synthesised_wal() {
        for at in [
            0x0100_0000u64,
            0x0152_3A81,
            0x0152_2018,
            0x0152_2020,
            0x0152_3FA8,
        ] {
            let synth = shutdown_checkpoint_segment(Lsn(at), &checkpoint(), 42, SEG).unwrap();
            let records = decode_from_page_start(&synth);
            let last = records.last().unwrap();
            assert_eq!(last.start_lsn, synth.record_lsn, "at {at:X}");
            assert_eq!(last.end_lsn, synth.end_lsn);
            assert_eq!((last.rmid, last.rmgr_info()), (0, XLOG_CHECKPOINT_SHUTDOWN));
            assert_eq!(last.total_len, 114);
            assert_eq!(
                CheckPoint::parse(&last.main_data).unwrap(),
                synth.checkpoint
            );
            assert!(records.len() <= 2);
            if let [filler, _] = records.as_slice() {
                assert_eq!(filler.rmgr_info(), XLOG_NOOP);
                assert_eq!(last.prev, filler.start_lsn);
            }
        }
        let record = checkpoint_record(&checkpoint(), Lsn(0x100));
        let decoded = crate::decode_record(&record, Lsn(0x1000), Lsn(0x1000 + 114)).unwrap();
        assert_eq!(decoded.main_data.len(), CHECKPOINT_SIZE);
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn record_is_114_bytes_with_valid_crc() {
        let record = checkpoint_record(&checkpoint(), Lsn(0x100));
        assert_eq!(record.len(), 114);
        assert_eq!(&record[0..4], &114u32.to_le_bytes());
        assert!(record_crc_is_valid(&record));
        let mut bad = record.clone();
        bad[60] ^= 0x40;
        assert!(!record_crc_is_valid(&bad));
        assert_eq!(CheckPoint::parse(&record[26..]).unwrap(), checkpoint());
    }

    #[test]
    fn positions_skip_headers_and_never_cross_pages() {
        assert_eq!(
            checkpoint_position(Lsn(0x0100_0000), SEG).unwrap(),
            Lsn(0x0100_0028)
        );
        assert_eq!(
            checkpoint_position(Lsn(0x0100_2000), SEG).unwrap(),
            Lsn(0x0100_2018)
        );
        assert_eq!(
            checkpoint_position(Lsn(0x0100_2031), SEG).unwrap(),
            Lsn(0x0100_2038)
        );
        assert_eq!(
            checkpoint_position(Lsn(0x0100_2040), SEG).unwrap(),
            Lsn(0x0100_2040)
        );
        // 8100 + 114 > 8192: the record moves to the next page.
        assert_eq!(
            checkpoint_position(Lsn(0x0100_3FA8), SEG).unwrap(),
            Lsn(0x0100_4018)
        );
        // ... and into the next segment's long header.
        assert_eq!(
            checkpoint_position(Lsn(0x01FF_FFA8), SEG).unwrap(),
            Lsn(0x0200_0028)
        );
        assert!(checkpoint_position(Lsn(u64::MAX - 3), SEG).is_err());
    }

    #[test]
    fn segment_has_headers_and_the_record() {
        let at = Lsn(0x0152_3A81);
        let synth = shutdown_checkpoint_segment(at, &checkpoint(), 42, SEG).unwrap();
        assert_eq!(synth.record_lsn, Lsn(0x0152_3A88));
        assert_eq!(synth.checkpoint.redo, synth.record_lsn.0);
        assert_eq!(synth.end_lsn, Lsn(0x0152_3A88 + 120));
        assert_eq!(synth.file_name, "000000010000000000000001");
        let seg = &synth.segment;
        assert_eq!(seg.len(), SEG as usize);
        assert_eq!(u16_at(seg, 0), XLOG_PAGE_MAGIC);
        assert_eq!(u16_at(seg, 2), XLP_LONG_HEADER);
        assert_eq!(&seg[8..16], &0x0100_0000u64.to_le_bytes());
        assert_eq!(&seg[24..32], &42u64.to_le_bytes());
        let page = 0x52_2000usize;
        assert_eq!(u16_at(seg, page), XLOG_PAGE_MAGIC);
        assert_eq!(u16_at(seg, page + 2), 0);
        assert_eq!(&seg[page + 8..page + 16], &0x0152_2000u64.to_le_bytes());
        let rec = &seg[0x52_3A88..0x52_3A88 + 114];
        assert!(record_crc_is_valid(rec));
        // The filler NOOP starts right after the page header and the
        // checkpoint's prev link points at it.
        assert_eq!(&rec[8..16], &0x0152_2018u64.to_le_bytes());
        let filler = &seg[page + 24..0x52_3A88];
        assert_eq!(&filler[0..4], &((0x1A88 - 24) as u32).to_le_bytes());
        assert_eq!(filler[16], XLOG_NOOP);
        assert!(record_crc_is_valid(filler));
        assert!(seg[0x52_3A88 + 114..].iter().all(|&b| b == 0));
        assert!(shutdown_checkpoint_segment(at, &checkpoint(), 42, 12345).is_err());
    }
}
