//! Log sequence numbers and the WAL segment/page arithmetic built on them.
//!
//! An LSN is a byte position in the (conceptually infinite) WAL stream. It is
//! written the way PostgreSQL writes it: two hexadecimal numbers, the high and
//! low 32 bits, separated by a slash (`16/B374D848`).

use std::fmt;
use std::ops::{Add, Sub};
use std::str::FromStr;

/// Size of one WAL page (`XLOG_BLCKSZ`), fixed at compile time in PostgreSQL.
pub const WAL_PAGE_SIZE: u64 = 8192;
/// Default WAL segment size (`wal_segment_size`, set by `initdb --wal-segsize`).
pub const DEFAULT_WAL_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A position in the WAL stream.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Lsn(pub u64);

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two hexadecimal numbers separated by '/', like 16/B374D848"
)]
pub struct LsnParseError {
    /// The rejected text.
    pub input: String,
}

impl Lsn {
    /// The invalid LSN PostgreSQL uses as "none" (`InvalidXLogRecPtr`).
    pub const INVALID: Lsn = Lsn(0);
    /// The largest representable LSN.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// Whether this is a real position (non-zero).
    pub fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// Number of the segment that holds this position.
    pub fn segment_number(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }

    /// Byte offset of this position inside its segment.
    pub fn segment_offset(self, segment_size: u64) -> u64 {
        self.0 % segment_size
    }

    /// Byte offset of this position inside its WAL page.
    pub fn page_offset(self) -> u64 {
        self.0 % WAL_PAGE_SIZE
    }

    /// Start of the WAL page holding this position.
    pub fn page_start(self) -> Lsn {
        Lsn(self.0 - self.page_offset())
    }

    /// Start of the segment holding this position.
    pub fn segment_start(self, segment_size: u64) -> Lsn {
        Lsn(self.0 - self.segment_offset(segment_size))
    }

    /// Whether this position is the first byte of a segment.
    pub fn is_segment_start(self, segment_size: u64) -> bool {
        self.segment_offset(segment_size) == 0
    }

    /// Rounds up to a multiple of `alignment` (records are 8-byte aligned), or
    /// `None` on overflow.
    pub fn align_up(self, alignment: u64) -> Option<Lsn> {
        debug_assert!(alignment.is_power_of_two());
        self.0
            .checked_add(alignment - 1)
            .map(|v| Lsn(v & !(alignment - 1)))
    }

    /// `self + bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// `self - other` in bytes, or `None` if `other` is ahead.
    pub fn checked_sub(self, other: Lsn) -> Option<u64> {
        self.0.checked_sub(other.0)
    }

    /// The WAL file name (`XLogFileName`) of the segment holding this position
    /// on timeline `timeline_id`, e.g. `000000010000000000000001`.
    pub fn wal_file_name(self, timeline_id: u32, segment_size: u64) -> String {
        let segment = self.segment_number(segment_size);
        let segments_per_xlog_id = 0x1_0000_0000 / segment_size;
        format!(
            "{:08X}{:08X}{:08X}",
            timeline_id,
            segment / segments_per_xlog_id,
            segment % segments_per_xlog_id
        )
    }

    /// Parses a WAL file name back into (timeline id, first LSN of the segment).
    /// Partial and history files are not segment names and yield `None`.
    pub fn from_wal_file_name(name: &str, segment_size: u64) -> Option<(u32, Lsn)> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let timeline_id = u32::from_str_radix(&name[0..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
        let segments_per_xlog_id = 0x1_0000_0000 / segment_size;
        if seg >= segments_per_xlog_id {
            return None;
        }
        let segment = log.checked_mul(segments_per_xlog_id)?.checked_add(seg)?;
        Some((timeline_id, Lsn(segment.checked_mul(segment_size)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || LsnParseError {
            input: s.to_owned(),
        };
        let (high, low) = s.split_once('/').ok_or_else(error)?;
        let parse_half = |half: &str| {
            if half.is_empty() || half.len() > 8 || !half.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            u32::from_str_radix(half, 16).map_err(|_| error())
        };
        Ok(Lsn(
            (u64::from(parse_half(high)?) << 32) | u64::from(parse_half(low)?)
        ))
    }
}

impl From<Lsn> for String {
    fn from(lsn: Lsn) -> String {
        lsn.to_string()
    }
}

impl TryFrom<String> for Lsn {
    type Error = LsnParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Lsn {
        Lsn(v)
    }
}

impl Add<u64> for Lsn {
    type Output = Lsn;
    /// Panics on overflow in debug builds like any integer addition; use
    /// [`Lsn::checked_add`] on values that come from input.
    fn add(self, bytes: u64) -> Lsn {
        Lsn(self.0 + bytes)
    }
}

impl Sub<Lsn> for Lsn {
    type Output = u64;
    fn sub(self, other: Lsn) -> u64 {
        self.0 - other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_like_postgres() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!("0/16B9188".parse::<Lsn>().unwrap(), Lsn(0x16B9188));
        assert_eq!("ffffffff/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn::MAX);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "g/1",
            "1/123456789",
            " 1/2",
            "-1/2",
            "+1/2",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn wal_file_names_match_postgres() {
        let seg = DEFAULT_WAL_SEGMENT_SIZE;
        assert_eq!(
            Lsn(0x0100_0028).wal_file_name(1, seg),
            "000000010000000000000001"
        );
        assert_eq!(
            Lsn(0x16_B374_D848).wal_file_name(1, seg),
            "0000000100000016000000B3"
        );
        assert_eq!(
            Lsn::from_wal_file_name("0000000100000016000000B3", seg),
            Some((1, Lsn(0x16_B300_0000)))
        );
        assert_eq!(
            Lsn::from_wal_file_name("000000010000000000000001.partial", seg),
            None
        );
        assert_eq!(
            Lsn::from_wal_file_name("000000010000000000000100", seg),
            None
        );
    }

    proptest! {
        #[test]
        fn text_round_trips(v in any::<u64>()) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn segment_math_is_consistent(v in any::<u64>(), shift in 20u32..=30) {
            let seg_size = 1u64 << shift;
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.segment_start(seg_size).0 + lsn.segment_offset(seg_size), v);
            prop_assert_eq!(lsn.page_start().0 + lsn.page_offset(), v);
            prop_assert!(lsn.page_start() >= lsn.segment_start(seg_size));
            let name = lsn.wal_file_name(7, seg_size);
            prop_assert_eq!(Lsn::from_wal_file_name(&name, seg_size), Some((7, lsn.segment_start(seg_size))));
        }

        #[test]
        fn align_up_is_the_next_multiple(v in 0u64..u64::MAX - 8) {
            let aligned = Lsn(v).align_up(8).unwrap();
            prop_assert!(aligned.0.is_multiple_of(8) && aligned.0 >= v && aligned.0 - v < 8);
        }
    }
}
