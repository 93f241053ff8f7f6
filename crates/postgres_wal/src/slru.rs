//! SLRU arithmetic: where a transaction's status, a multixact's offset or
//! member, or a commit timestamp lives in `pg_xact`, `pg_multixact` and
//! `pg_commit_ts`.
//!
//! PostgreSQL stores these "simple LRU" logs as 8 KiB pages grouped 32 to a
//! segment file named by the segment number in (at least four) hex digits.
//! The formulas mirror `clog.c`, `multixact.c` and `commit_ts.c` of PG15 so
//! ingest (which sets bits) and base backup (which writes the files) agree.

use crate::record::BLCKSZ;

/// Pages per SLRU segment file (`SLRU_PAGES_PER_SEGMENT`).
pub const SLRU_PAGES_PER_SEGMENT: u32 = 32;
/// Size of one SLRU segment file when all its pages exist.
pub const SLRU_SEGMENT_SIZE_BYTES: usize = SLRU_PAGES_PER_SEGMENT as usize * BLCKSZ;

/// Transaction status bits per xid in `pg_xact` (`CLOG_BITS_PER_XACT`).
pub const CLOG_BITS_PER_XACT: u32 = 2;
/// Xids per CLOG byte.
pub const CLOG_XACTS_PER_BYTE: u32 = 4;
/// Xids per CLOG page.
pub const CLOG_XACTS_PER_PAGE: u32 = BLCKSZ as u32 * CLOG_XACTS_PER_BYTE;

/// CLOG status values (`TRANSACTION_STATUS_*`).
pub const CLOG_STATUS_IN_PROGRESS: u8 = 0x00;
pub const CLOG_STATUS_COMMITTED: u8 = 0x01;
pub const CLOG_STATUS_ABORTED: u8 = 0x02;
pub const CLOG_STATUS_SUB_COMMITTED: u8 = 0x03;

/// Multixact offsets per page: one 4-byte `MultiXactOffset` each.
pub const MULTIXACT_OFFSETS_PER_PAGE: u32 = BLCKSZ as u32 / 4;
/// Members per group: four flag bytes followed by four xids.
pub const MULTIXACT_MEMBERS_PER_GROUP: u32 = 4;
/// Bytes per member group (4 flag bytes + 4 × 4-byte xids).
pub const MULTIXACT_MEMBER_GROUP_SIZE_BYTES: u32 = 20;
/// Member groups per page (the last 12 bytes of a page are unused).
pub const MULTIXACT_MEMBER_GROUPS_PER_PAGE: u32 = BLCKSZ as u32 / MULTIXACT_MEMBER_GROUP_SIZE_BYTES;
/// Members per page.
pub const MULTIXACT_MEMBERS_PER_PAGE: u32 =
    MULTIXACT_MEMBER_GROUPS_PER_PAGE * MULTIXACT_MEMBERS_PER_GROUP;

/// Size of one commit-timestamp entry: `TimestampTz` + `RepOriginId`.
pub const COMMIT_TS_ENTRY_SIZE_BYTES: u32 = 10;
/// Commit timestamps per page.
pub const COMMIT_TS_XACTS_PER_PAGE: u32 = BLCKSZ as u32 / COMMIT_TS_ENTRY_SIZE_BYTES;

/// The SLRU logs a data directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlruKind {
    /// `pg_xact`: two status bits per transaction.
    Clog,
    /// `pg_multixact/offsets`: where each multixact's members start.
    MultiXactOffsets,
    /// `pg_multixact/members`: the member xids and their lock flags.
    MultiXactMembers,
    /// `pg_commit_ts`: commit timestamps (only with `track_commit_timestamp`).
    CommitTs,
}

impl SlruKind {
    /// Every kind, in key order.
    pub const ALL: [SlruKind; 4] = [
        SlruKind::Clog,
        SlruKind::MultiXactOffsets,
        SlruKind::MultiXactMembers,
        SlruKind::CommitTs,
    ];

    /// The directory of this log relative to the data directory.
    pub fn dir(self) -> &'static str {
        match self {
            SlruKind::Clog => "pg_xact",
            SlruKind::MultiXactOffsets => "pg_multixact/offsets",
            SlruKind::MultiXactMembers => "pg_multixact/members",
            SlruKind::CommitTs => "pg_commit_ts",
        }
    }
}

/// A position inside an SLRU: page number and byte offset in the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlruPosition {
    pub page: u32,
    pub byte: usize,
}

/// Page and byte of `xid` in `pg_xact`, plus the bit shift of its two status bits.
pub fn clog_position(xid: u32) -> (SlruPosition, u32) {
    let index = xid % CLOG_XACTS_PER_PAGE;
    let position = SlruPosition {
        page: xid / CLOG_XACTS_PER_PAGE,
        byte: (index / CLOG_XACTS_PER_BYTE) as usize,
    };
    let shift = (xid % CLOG_XACTS_PER_BYTE) * CLOG_BITS_PER_XACT;
    (position, shift)
}

/// Reads the two status bits of `xid` from its CLOG page, or `None` if the
/// page is too short.
pub fn clog_status(page: &[u8], xid: u32) -> Option<u8> {
    let (position, shift) = clog_position(xid);
    page.get(position.byte).map(|b| (b >> shift) & 0x03)
}

/// Writes the two status bits of `xid` into its CLOG page; false if the page
/// is too short.
pub fn set_clog_status(page: &mut [u8], xid: u32, status: u8) -> bool {
    let (position, shift) = clog_position(xid);
    match page.get_mut(position.byte) {
        Some(byte) => {
            *byte = (*byte & !(0x03 << shift)) | ((status & 0x03) << shift);
            true
        }
        None => false,
    }
}

/// Page and byte of multixact `multi`'s entry in `pg_multixact/offsets`.
pub fn multixact_offset_position(multi: u32) -> SlruPosition {
    SlruPosition {
        page: multi / MULTIXACT_OFFSETS_PER_PAGE,
        byte: ((multi % MULTIXACT_OFFSETS_PER_PAGE) * 4) as usize,
    }
}

/// Page of member offset `offset` in `pg_multixact/members`, with the byte
/// of its flags word and of its xid.
pub fn multixact_member_position(offset: u32) -> (u32, usize, usize) {
    let page = offset / MULTIXACT_MEMBERS_PER_PAGE;
    let group = (offset / MULTIXACT_MEMBERS_PER_GROUP) % MULTIXACT_MEMBER_GROUPS_PER_PAGE;
    let flags_byte = group * MULTIXACT_MEMBER_GROUP_SIZE_BYTES;
    let xid_byte = flags_byte + 4 + (offset % MULTIXACT_MEMBERS_PER_GROUP) * 4;
    (page, flags_byte as usize, xid_byte as usize)
}

/// Page and byte of `xid`'s entry in `pg_commit_ts`.
pub fn commit_ts_position(xid: u32) -> SlruPosition {
    SlruPosition {
        page: xid / COMMIT_TS_XACTS_PER_PAGE,
        byte: ((xid % COMMIT_TS_XACTS_PER_PAGE) * COMMIT_TS_ENTRY_SIZE_BYTES) as usize,
    }
}

/// Segment number holding `page`.
pub fn segment_of_page(page: u32) -> u32 {
    page / SLRU_PAGES_PER_SEGMENT
}

/// Index of `page` inside its segment file.
pub fn page_in_segment(page: u32) -> u32 {
    page % SLRU_PAGES_PER_SEGMENT
}

/// The file name PostgreSQL gives segment `segment` (`SlruFileName`: `%04X`).
pub fn segment_file_name(segment: u32) -> String {
    format!("{segment:04X}")
}

/// Parses an SLRU segment file name back to its number. Only upper-case hex
/// of four to six digits is accepted, as PostgreSQL writes it.
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    if !(4..=6).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(name, 16).ok()
}

/// Whether an SLRU must have the page holding "next" id `next` present when
/// a server starts: PostgreSQL reads that page at startup to zero its tail,
/// except when `next` is the first entry of its page.
pub fn next_page_needed(entries_per_page: u32, next: u32) -> bool {
    !next.is_multiple_of(entries_per_page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clog_math_matches_postgres_macros() {
        // xid 3 = byte 0, bits 6..7; xid 32768 is the first of page 1.
        assert_eq!(clog_position(3), (SlruPosition { page: 0, byte: 0 }, 6));
        assert_eq!(clog_position(32768), (SlruPosition { page: 1, byte: 0 }, 0));
        assert_eq!(
            clog_position(32767).0,
            SlruPosition {
                page: 0,
                byte: 8191
            }
        );
        let mut page = vec![0u8; BLCKSZ];
        assert!(set_clog_status(&mut page, 5, CLOG_STATUS_COMMITTED));
        assert!(set_clog_status(&mut page, 6, CLOG_STATUS_ABORTED));
        assert_eq!(page[1], 0b0010_0100);
        assert_eq!(clog_status(&page, 5), Some(CLOG_STATUS_COMMITTED));
        assert_eq!(clog_status(&page, 7), Some(CLOG_STATUS_IN_PROGRESS));
        assert_eq!(clog_status(&page[..1], 5), None);
    }

    #[test]
    fn multixact_and_commit_ts_math() {
        assert_eq!(MULTIXACT_MEMBERS_PER_PAGE, 1636);
        assert_eq!(COMMIT_TS_XACTS_PER_PAGE, 819);
        assert_eq!(
            multixact_offset_position(2049),
            SlruPosition { page: 1, byte: 4 }
        );
        // Member 5 is the second member of group 1: flags at 20, xid at 20+4+4.
        assert_eq!(multixact_member_position(5), (0, 20, 28));
        assert_eq!(multixact_member_position(1636), (1, 0, 4));
        assert_eq!(commit_ts_position(820), SlruPosition { page: 1, byte: 10 });
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(0), "0000");
        assert_eq!(segment_file_name(0x1A), "001A");
        assert_eq!(segment_file_name(0x12345), "12345");
        assert_eq!(parse_segment_file_name("001A"), Some(0x1A));
        assert_eq!(parse_segment_file_name("001a"), None);
        assert_eq!(parse_segment_file_name("1A"), None);
        assert_eq!(segment_of_page(33), 1);
        assert_eq!(page_in_segment(33), 1);
        assert!(!next_page_needed(CLOG_XACTS_PER_PAGE, 32768));
        assert!(next_page_needed(CLOG_XACTS_PER_PAGE, 735));
    }
}
