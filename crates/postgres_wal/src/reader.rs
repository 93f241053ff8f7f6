//! Reassembling WAL records from a byte stream: page headers are checked and
//! stripped, records that span pages and segments are put back together,
//! `XLOG_SWITCH` padding is skipped, and every record's CRC is verified.
//!
//! [`WalStreamDecoder`] is fed bytes in whatever chunks they arrive (from a
//! replication connection, or whole segment files) and hands out complete
//! records. It starts either at a page boundary (then any record continued
//! from before that page is skipped, as `XLogFindNextRecord` does) or at the
//! start of a record. [`SegmentDecoder`] wraps it for whole segment files.
//!
//! The decoder performs no I/O. Errors name the LSN at which the stream went
//! wrong; after an error the decoder keeps returning that error.

use crate::decode::{
    compute_record_crc, decode_record, RecordError, XLogRecordHeader, SIZE_OF_XLOG_RECORD,
};
use crate::lsn::{DEFAULT_WAL_SEGMENT_SIZE, WAL_PAGE_SIZE};
use crate::page::{is_valid_segment_size, PageHeaderError, XLogPageHeader};
use crate::record::DecodedRecord;
use crate::rmgr::xlog::XLOG_SWITCH;
use crate::Lsn;

/// Records longer than this are rejected as garbage. PostgreSQL 15 limits a
/// record to what one palloc can hold (just under 1 GB).
pub const MAX_RECORD_LEN: u32 = 1024 * 1024 * 1024 - 1;

/// Why the stream cannot be decoded further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("invalid WAL page header at {lsn}: {source}")]
    PageHeader { lsn: Lsn, source: PageHeaderError },
    #[error("invalid record at {lsn}: {source}")]
    Record { lsn: Lsn, source: RecordError },
    #[error("WAL position overflows past {lsn}")]
    LsnOverflow { lsn: Lsn },
    #[error("invalid WAL segment size {0}: must be a power of two between 1 MB and 1 GB")]
    BadSegmentSize(u64),
    #[error("segment starting at {found} does not follow the previous one (expected {expected})")]
    NonContiguousSegment { found: Lsn, expected: Lsn },
    #[error("segment starting at {start} has {len} bytes, expected {expected}")]
    WrongSegmentLength {
        start: Lsn,
        len: usize,
        expected: u64,
    },
}

impl WalError {
    /// The LSN the error is about.
    pub fn lsn(&self) -> Lsn {
        match self {
            WalError::PageHeader { lsn, .. }
            | WalError::Record { lsn, .. }
            | WalError::LsnOverflow { lsn } => *lsn,
            WalError::NonContiguousSegment { found, .. } => *found,
            WalError::WrongSegmentLength { start, .. } => *start,
            WalError::BadSegmentSize(_) => Lsn::INVALID,
        }
    }

    /// Whether this is how WAL normally ends: a zeroed record header, or a
    /// page left over from a recycled segment (wrong page address). Tools
    /// like `pg_waldump` stop there quietly.
    pub fn is_end_of_wal(&self) -> bool {
        matches!(
            self,
            WalError::Record {
                source: RecordError::InvalidLength(0),
                ..
            } | WalError::PageHeader {
                source: PageHeaderError::UnexpectedPageAddr(_) | PageHeaderError::BadMagic(0),
                ..
            }
        )
    }
}

/// What the decoder needs to know about the cluster's WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
    /// If set, long page headers must carry this system identifier;
    /// otherwise the first one seen is remembered and enforced.
    pub system_id: Option<u64>,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size: DEFAULT_WAL_SEGMENT_SIZE,
            system_id: None,
        }
    }
}

/// A complete, CRC-checked record, borrowed from the decoder until the next
/// call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Where the record starts.
    pub start_lsn: Lsn,
    /// `EndRecPtr`: the first byte after the record, rounded up to 8 bytes
    /// (where the next record starts); for `XLOG_SWITCH` the start of the
    /// next segment, as in PostgreSQL.
    pub end_lsn: Lsn,
    /// The record's bytes, `xl_tot_len` of them, page headers removed.
    pub bytes: &'a [u8],
}

impl RawRecord<'_> {
    /// The 24-byte header (always present in a complete record).
    pub fn header(&self) -> XLogRecordHeader {
        XLogRecordHeader::parse(self.bytes).unwrap_or(XLogRecordHeader {
            total_len: 0,
            xid: 0,
            prev: Lsn::INVALID,
            info: 0,
            rmid: 0,
            crc: 0,
        })
    }

    /// Fully decodes the record (block data, images, main data).
    pub fn decode(&self) -> Result<DecodedRecord, WalError> {
        decode_record(self.bytes, self.start_lsn, self.end_lsn).map_err(|source| WalError::Record {
            lsn: self.start_lsn,
            source,
        })
    }

    /// [`RawRecord::decode`] into `out`, reusing its buffers
    /// ([`crate::decode::decode_record_into`]).
    pub fn decode_into(&self, out: &mut DecodedRecord) -> Result<(), WalError> {
        crate::decode::decode_record_into(self.bytes, self.start_lsn, self.end_lsn, out).map_err(
            |source| WalError::Record {
                lsn: self.start_lsn,
                source,
            },
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Started at a page boundary whose header is not read yet; a record
    /// continued onto that page is skipped.
    AtFirstPage,
    /// Skipping `remaining` bytes of a record that began before our start.
    SkipContinuation { remaining: u64 },
    /// The next byte (after any padding) starts a record.
    RecordStart,
    /// Collecting the record that started at `record_start`.
    InRecord { total_len: Option<u32> },
    /// After `XLOG_SWITCH`: the rest of the segment is unused.
    SkipToSegmentEnd,
}

/// Reassembles records from WAL bytes fed in arbitrary chunks.
///
/// ```
/// # use postgres_wal::reader::{WalStreamDecoder, WalConfig};
/// # use postgres_wal::Lsn;
/// let mut decoder = WalStreamDecoder::new(Lsn(0x0100_0000), WalConfig::default());
/// decoder.feed_bytes(&[]); // bytes as they arrive, starting at 0/1000000
/// while let Some(record) = decoder.poll_raw().unwrap() {
///     println!("{} rmid {}", record.start_lsn, record.header().rmid);
/// }
/// ```
#[derive(Debug)]
pub struct WalStreamDecoder {
    config: WalConfig,
    /// Bytes fed but not consumed yet are `input[input_pos..input_end]`;
    /// `input[input_pos]` is WAL position `lsn`. Bytes past `input_end` are
    /// spare room kept initialised, so refilling it needs no zeroing.
    input: Vec<u8>,
    input_pos: usize,
    input_end: usize,
    lsn: Lsn,
    /// Alignment padding still to be skipped before the next record.
    padding: u64,
    state: State,
    record: Vec<u8>,
    /// Where the last completed record's bytes are: `None` in `record`,
    /// `Some(offset)` in `input` (a record that lay inside one page and
    /// was validated in place, saving a copy).
    record_in_input: Option<usize>,
    record_len: usize,
    record_start: Lsn,
    /// Start of the last record returned, to check the next `xl_prev`.
    prev_record: Option<Lsn>,
    last_timeline: Option<u32>,
    system_id: Option<u64>,
    failed: Option<WalError>,
}

impl WalStreamDecoder {
    /// A decoder whose first fed byte is WAL position `start`: a page
    /// boundary (possibly mid-segment) or the start of a record.
    pub fn new(start: Lsn, config: WalConfig) -> WalStreamDecoder {
        let state = if start.page_offset() == 0 {
            State::AtFirstPage
        } else {
            State::RecordStart
        };
        let failed = (!is_valid_segment_size(config.segment_size))
            .then_some(WalError::BadSegmentSize(config.segment_size));
        WalStreamDecoder {
            config,
            input: Vec::new(),
            input_pos: 0,
            input_end: 0,
            lsn: start,
            padding: 0,
            state,
            record: Vec::new(),
            record_in_input: None,
            record_len: 0,
            record_start: start,
            prev_record: None,
            last_timeline: None,
            system_id: config.system_id,
            failed,
        }
    }

    /// Like [`WalStreamDecoder::new`] at a record start, also checking that
    /// the first record's `xl_prev` is `prev`.
    pub fn new_after(start: Lsn, prev: Lsn, config: WalConfig) -> WalStreamDecoder {
        let mut decoder = WalStreamDecoder::new(start, config);
        decoder.prev_record = Some(prev);
        decoder
    }

    /// Appends the next bytes of the stream.
    pub fn feed_bytes(&mut self, bytes: &[u8]) {
        self.compact_input();
        let end = self.input_end + bytes.len();
        if self.input.len() < end {
            self.input.resize(end, 0);
        }
        self.input[self.input_end..end].copy_from_slice(bytes);
        self.input_end = end;
    }

    /// Lets the caller read the next bytes straight into the decoder's
    /// buffer, saving the copy [`WalStreamDecoder::feed_bytes`] makes:
    /// `fill` gets `max_len` bytes of space and returns how many of them it
    /// filled (more than `max_len` counts as `max_len`).
    pub fn feed_with<E>(
        &mut self,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.compact_input();
        let start = self.input_end;
        if self.input.len() < start + max_len {
            self.input.resize(start + max_len, 0);
        }
        let n = fill(&mut self.input[start..start + max_len])?.min(max_len);
        self.input_end = start + n;
        Ok(n)
    }

    fn compact_input(&mut self) {
        // Drop consumed bytes once they dominate the buffer, so that feeding
        // a long stream in small chunks stays linear.
        if self.input_pos > 0 && self.input_pos >= self.input_end / 2 {
            self.input.copy_within(self.input_pos..self.input_end, 0);
            self.input_end -= self.input_pos;
            self.input_pos = 0;
        }
    }

    /// The WAL position up to which bytes have been fed.
    pub fn fed_up_to(&self) -> Lsn {
        Lsn(self
            .lsn
            .0
            .saturating_add((self.input_end - self.input_pos) as u64))
    }

    /// The position where the next record will start (once enough bytes
    /// arrive) or where the current partial record started.
    pub fn next_record_lsn(&self) -> Lsn {
        match self.state {
            State::InRecord { .. } => self.record_start,
            _ => Lsn(self.lsn.0.saturating_add(self.padding)),
        }
    }

    /// Timeline of the last page header read, if any.
    pub fn timeline(&self) -> Option<u32> {
        self.last_timeline
    }

    /// The next complete record, `Ok(None)` if more bytes are needed.
    pub fn poll_raw(&mut self) -> Result<Option<RawRecord<'_>>, WalError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.advance() {
            Ok(Some(end_lsn)) => {
                let bytes = match self.record_in_input {
                    Some(offset) => &self.input[offset..offset + self.record_len],
                    None => &self.record[..],
                };
                Ok(Some(RawRecord {
                    start_lsn: self.record_start,
                    end_lsn,
                    bytes,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The next complete record, fully decoded; `Ok(None)` if more bytes are
    /// needed.
    pub fn poll_decode(&mut self) -> Result<Option<DecodedRecord>, WalError> {
        let decoded = match self.poll_raw()? {
            Some(raw) => raw.decode(),
            None => return Ok(None),
        };
        decoded
            .map(Some)
            .inspect_err(|e| self.failed = Some(e.clone()))
    }

    fn available(&self) -> usize {
        self.input_end - self.input_pos
    }

    fn consume(&mut self, n: usize) -> Result<(), WalError> {
        self.input_pos += n;
        self.lsn = self
            .lsn
            .checked_add(n as u64)
            .ok_or(WalError::LsnOverflow { lsn: self.lsn })?;
        Ok(())
    }

    fn record_error(&self, source: RecordError) -> WalError {
        WalError::Record {
            lsn: self.record_start,
            source,
        }
    }

    /// Runs the state machine until a record completes (returning its end
    /// LSN) or the input runs out.
    fn advance(&mut self) -> Result<Option<Lsn>, WalError> {
        loop {
            if self.padding > 0 {
                let n = self.padding.min(self.available() as u64) as usize;
                if n == 0 {
                    return Ok(None);
                }
                self.consume(n)?;
                self.padding -= n as u64;
                continue;
            }
            if self.state == State::SkipToSegmentEnd {
                if !self.skip_to_segment_end()? {
                    return Ok(None);
                }
                continue;
            }
            if self.lsn.page_offset() == 0 {
                if !self.read_page_header()? {
                    return Ok(None);
                }
                continue;
            }
            let page_left = (WAL_PAGE_SIZE - self.lsn.page_offset()) as usize;
            match self.state {
                State::SkipContinuation { remaining } => {
                    let n = (remaining.min(page_left as u64) as usize).min(self.available());
                    if n == 0 {
                        return Ok(None);
                    }
                    self.consume(n)?;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        self.padding = self.alignment_padding()?;
                        State::RecordStart
                    } else {
                        State::SkipContinuation { remaining }
                    };
                }
                State::RecordStart => {
                    if self.available() == 0 {
                        return Ok(None);
                    }
                    if let Some(end) = self.try_record_in_place(page_left)? {
                        return Ok(Some(end));
                    }
                    self.record.clear();
                    self.record_in_input = None;
                    self.record_start = self.lsn;
                    self.state = State::InRecord { total_len: None };
                }
                State::InRecord { total_len } => {
                    if let Some(end) = self.collect_record_bytes(total_len, page_left)? {
                        return Ok(Some(end));
                    }
                    if self.available() == 0 {
                        return Ok(None);
                    }
                }
                State::AtFirstPage | State::SkipToSegmentEnd => {
                    // Both are resolved above before any byte is read.
                    return Ok(None);
                }
            }
        }
    }

    fn alignment_padding(&self) -> Result<u64, WalError> {
        let aligned = self
            .lsn
            .align_up(8)
            .ok_or(WalError::LsnOverflow { lsn: self.lsn })?;
        Ok(aligned.0 - self.lsn.0)
    }

    /// Skips the unused tail of a segment after `XLOG_SWITCH`; true once at
    /// the next segment's start.
    fn skip_to_segment_end(&mut self) -> Result<bool, WalError> {
        let offset = self.lsn.segment_offset(self.config.segment_size);
        if offset == 0 {
            self.state = State::RecordStart;
            return Ok(true);
        }
        let left = self.config.segment_size - offset;
        let n = left.min(self.available() as u64) as usize;
        self.consume(n)?;
        Ok(n as u64 == left)
    }

    /// Reads and validates the page header at `self.lsn`; false if not all
    /// of it has arrived yet.
    fn read_page_header(&mut self) -> Result<bool, WalError> {
        let input = &self.input[self.input_pos..self.input_end];
        let Some(size) = XLogPageHeader::size_hint(input) else {
            return Ok(false);
        };
        if input.len() < size {
            return Ok(false);
        }
        let page_lsn = self.lsn;
        let err = |source| WalError::PageHeader {
            lsn: page_lsn,
            source,
        };
        let header = XLogPageHeader::parse(input).map_err(err)?;
        header
            .validate(
                page_lsn,
                self.config.segment_size,
                self.system_id,
                self.last_timeline,
            )
            .map_err(err)?;
        if let Some(long) = header.long {
            self.system_id.get_or_insert(long.system_id);
        }
        self.last_timeline = Some(header.timeline);
        self.state = self.state_after_page_header(&header).map_err(err)?;
        self.consume(header.size())?;
        Ok(true)
    }

    /// Checks the page's continuation flags against what we are in the
    /// middle of, and returns the state to continue in.
    fn state_after_page_header(
        &mut self,
        header: &XLogPageHeader,
    ) -> Result<State, PageHeaderError> {
        match self.state {
            State::AtFirstPage if header.is_contrecord() => Ok(State::SkipContinuation {
                remaining: u64::from(header.rem_len),
            }),
            State::AtFirstPage => Ok(State::RecordStart),
            State::SkipContinuation { remaining } => {
                if !header.is_contrecord() {
                    return Err(PageHeaderError::MissingContrecord);
                }
                if u64::from(header.rem_len) != remaining {
                    return Err(PageHeaderError::BadContrecordLength {
                        found: header.rem_len,
                        expected: remaining,
                    });
                }
                Ok(self.state)
            }
            State::RecordStart if header.is_contrecord() => {
                Err(PageHeaderError::UnexpectedContrecord)
            }
            State::RecordStart | State::SkipToSegmentEnd => Ok(State::RecordStart),
            State::InRecord { total_len } => {
                if !header.is_contrecord() {
                    if header.is_overwrite_contrecord() {
                        // The server abandoned this record (crash mid-write)
                        // and wrote XLOG_OVERWRITE_CONTRECORD here instead.
                        self.record.clear();
                        return Ok(State::RecordStart);
                    }
                    return Err(PageHeaderError::MissingContrecord);
                }
                if let Some(total) = total_len {
                    let expected = u64::from(total) - self.record.len() as u64;
                    if header.rem_len == 0 || u64::from(header.rem_len) != expected {
                        return Err(PageHeaderError::BadContrecordLength {
                            found: header.rem_len,
                            expected,
                        });
                    }
                }
                Ok(self.state)
            }
        }
    }

    /// Copies the next piece of the current record (up to the page end);
    /// returns its end LSN once the record is complete and valid.
    fn collect_record_bytes(
        &mut self,
        total_len: Option<u32>,
        page_left: usize,
    ) -> Result<Option<Lsn>, WalError> {
        let have = self.record.len();
        // Stop at 4 bytes (the length) and at 24 (the header) so that both
        // are validated before we wait for a possibly bogus amount of data.
        let target = match total_len {
            None => 4,
            Some(total) if have < SIZE_OF_XLOG_RECORD => SIZE_OF_XLOG_RECORD.min(total as usize),
            Some(total) => total as usize,
        };
        let n = (target - have).min(page_left).min(self.available());
        if n > 0 {
            let from = self.input_pos;
            self.record.extend_from_slice(&self.input[from..from + n]);
            self.consume(n)?;
        }
        let have = self.record.len();
        if have < target {
            return Ok(None);
        }
        let total = match total_len {
            None => {
                let total = u32::from_le_bytes([
                    self.record[0],
                    self.record[1],
                    self.record[2],
                    self.record[3],
                ]);
                if (total as usize) < SIZE_OF_XLOG_RECORD {
                    return Err(self.record_error(RecordError::InvalidLength(total)));
                }
                if total > MAX_RECORD_LEN {
                    return Err(self.record_error(RecordError::TooLong(total)));
                }
                self.state = State::InRecord {
                    total_len: Some(total),
                };
                return Ok(None);
            }
            Some(total) => total as usize,
        };
        if have == SIZE_OF_XLOG_RECORD && total > SIZE_OF_XLOG_RECORD {
            self.check_prev_link()?;
            return Ok(None);
        }
        if have < total {
            return Ok(None);
        }
        if total == SIZE_OF_XLOG_RECORD {
            self.check_prev_link()?;
        }
        self.finish_record().map(Some)
    }

    fn check_prev_link(&self) -> Result<(), WalError> {
        match XLogRecordHeader::parse(&self.record) {
            Some(header) => self.check_prev_of(&header),
            None => Ok(()),
        }
    }

    fn check_prev_of(&self, header: &XLogRecordHeader) -> Result<(), WalError> {
        if let Some(expected) = self.prev_record {
            if header.prev != expected {
                return Err(self.record_error(RecordError::BadPrevLink {
                    found: header.prev,
                    expected,
                }));
            }
        }
        Ok(())
    }

    /// The common case: a record that starts here and ends on this page
    /// with all its bytes already fed is validated where it lies, without
    /// copying it. Returns `None` to fall back to the copying path.
    fn try_record_in_place(&mut self, page_left: usize) -> Result<Option<Lsn>, WalError> {
        let input = &self.input[self.input_pos..self.input_end];
        let Some(len_bytes) = input.get(..4) else {
            return Ok(None);
        };
        let total = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let total_len = total as usize;
        if total_len < SIZE_OF_XLOG_RECORD || total_len > page_left || total_len > input.len() {
            // Too short (the copying path reports it) or not all here.
            return Ok(None);
        }
        let bytes = &input[..total_len];
        let Some(header) = XLogRecordHeader::parse(bytes) else {
            return Ok(None);
        };
        let computed = compute_record_crc(bytes);
        self.record_start = self.lsn;
        self.check_prev_of(&header)?;
        self.record_in_input = Some(self.input_pos);
        self.record_len = total_len;
        self.consume(total_len)?;
        self.complete_record(&header, computed).map(Some)
    }

    /// Verifies the CRC of the complete record collected in `record` and
    /// sets up the state for the next one; returns the record's end LSN.
    fn finish_record(&mut self) -> Result<Lsn, WalError> {
        let header = XLogRecordHeader::parse(&self.record)
            .ok_or_else(|| self.record_error(RecordError::InvalidLength(0)))?;
        let computed = compute_record_crc(&self.record);
        self.record_in_input = None;
        self.complete_record(&header, computed)
    }

    /// Checks the CRC of the record just read and moves past it (and past
    /// the rest of the segment after `XLOG_SWITCH`); returns its end LSN.
    fn complete_record(
        &mut self,
        header: &XLogRecordHeader,
        computed: u32,
    ) -> Result<Lsn, WalError> {
        if computed != header.crc {
            return Err(self.record_error(RecordError::BadCrc {
                stored: header.crc,
                computed,
            }));
        }
        self.prev_record = Some(self.record_start);
        let is_switch = header.rmid == 0 && header.info & 0xF0 == XLOG_SWITCH;
        if is_switch && !self.lsn.is_segment_start(self.config.segment_size) {
            self.state = State::SkipToSegmentEnd;
            let segment_end = self
                .lsn
                .segment_start(self.config.segment_size)
                .checked_add(self.config.segment_size)
                .ok_or(WalError::LsnOverflow { lsn: self.lsn })?;
            return Ok(segment_end);
        }
        self.state = State::RecordStart;
        self.padding = self.alignment_padding()?;
        // PG15's EndRecPtr is MAXALIGNed: it is the next record's start and
        // the LSN the server stamped on the pages this record changed.
        Ok(Lsn(self.lsn.0 + self.padding))
    }
}

/// Decodes a run of whole WAL segment files, given in order with each one's
/// start LSN. Decoding starts at the first record boundary of the first
/// segment (a record continued from an earlier segment is skipped).
#[derive(Debug)]
pub struct SegmentDecoder {
    stream: Option<WalStreamDecoder>,
    config: WalConfig,
    next_segment: Option<Lsn>,
}

impl SegmentDecoder {
    /// A decoder for segments of `config.segment_size` bytes.
    pub fn new(config: WalConfig) -> SegmentDecoder {
        SegmentDecoder {
            stream: None,
            config,
            next_segment: None,
        }
    }

    /// Adds the next segment, which must start where the previous one ended
    /// and be exactly one segment long.
    pub fn add_segment(&mut self, start: Lsn, bytes: &[u8]) -> Result<(), WalError> {
        if !is_valid_segment_size(self.config.segment_size) {
            return Err(WalError::BadSegmentSize(self.config.segment_size));
        }
        if !start.is_segment_start(self.config.segment_size) {
            return Err(WalError::NonContiguousSegment {
                found: start,
                expected: start.segment_start(self.config.segment_size),
            });
        }
        if bytes.len() as u64 != self.config.segment_size {
            return Err(WalError::WrongSegmentLength {
                start,
                len: bytes.len(),
                expected: self.config.segment_size,
            });
        }
        if let Some(expected) = self.next_segment {
            if start != expected {
                return Err(WalError::NonContiguousSegment {
                    found: start,
                    expected,
                });
            }
        }
        let config = self.config;
        self.stream
            .get_or_insert_with(|| WalStreamDecoder::new(start, config))
            .feed_bytes(bytes);
        self.next_segment = start.checked_add(self.config.segment_size);
        Ok(())
    }

    /// The next complete record from the segments added so far.
    pub fn next_raw(&mut self) -> Result<Option<RawRecord<'_>>, WalError> {
        match &mut self.stream {
            Some(stream) => stream.poll_raw(),
            None => Ok(None),
        }
    }

    /// The next record, fully decoded.
    pub fn next_record(&mut self) -> Result<Option<DecodedRecord>, WalError> {
        match &mut self.stream {
            Some(stream) => stream.poll_decode(),
            None => Ok(None),
        }
    }

    /// Where the next record will start (or the partial one started).
    pub fn next_record_lsn(&self) -> Option<Lsn> {
        self.stream.as_ref().map(WalStreamDecoder::next_record_lsn)
    }
}

/// Decodes every record in `segments` (start LSN and bytes of each whole
/// segment, in order) and returns them with the error that stopped decoding,
/// if any. Reaching the end of the given bytes is not an error.
pub fn decode_segments<'a>(
    segments: impl IntoIterator<Item = (Lsn, &'a [u8])>,
    config: WalConfig,
) -> (Vec<DecodedRecord>, Option<WalError>) {
    let mut decoder = SegmentDecoder::new(config);
    let mut records = Vec::new();
    for (start, bytes) in segments {
        if let Err(e) = decoder.add_segment(start, bytes) {
            return (records, Some(e));
        }
        loop {
            match decoder.next_record() {
                Ok(Some(record)) => records.push(record),
                Ok(None) => break,
                Err(e) => return (records, Some(e)),
            }
        }
    }
    (records, None)
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
