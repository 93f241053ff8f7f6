//! WAL page headers (`XLogPageHeaderData` / `XLogLongPageHeaderData`, PG15).
//!
//! Every 8 kB WAL page starts with a short header; the first page of each
//! segment carries the long form, which adds the system identifier and the
//! segment and page sizes so a reader can tell WAL of another cluster apart.
//! This module parses the headers and performs the same validation as
//! `XLogReaderValidatePageHeader` in `xlogreader.c`.

use crate::lsn::WAL_PAGE_SIZE;
use crate::Lsn;

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
pub const XLOG_PAGE_MAGIC: u16 = 0xD110;
/// MAXALIGN'd size of the short header (`SizeOfXLogShortPHD`).
pub const SHORT_PAGE_HEADER_SIZE: usize = 24;
/// MAXALIGN'd size of the long header (`SizeOfXLogLongPHD`).
pub const LONG_PAGE_HEADER_SIZE: usize = 40;

/// The first record on the page continues a record from the previous page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// The header is the long form.
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// Backup blocks on this page are optional (archive compression hint).
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// The record that should have continued onto this page was abandoned and
/// replaced by an `XLOG_OVERWRITE_CONTRECORD` record.
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// All defined flag bits.
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// The fields only the long header has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongHeaderFields {
    /// `xlp_sysid`: the cluster's system identifier (from `pg_control`).
    pub system_id: u64,
    /// `xlp_seg_size`.
    pub segment_size: u32,
    /// `xlp_xlog_blcksz`.
    pub xlog_blcksz: u32,
}

/// A parsed WAL page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XLogPageHeader {
    pub magic: u16,
    pub info: u16,
    pub timeline: u32,
    /// `xlp_pageaddr`: the LSN of the page's first byte.
    pub page_addr: Lsn,
    /// `xlp_rem_len`: bytes of a continued record remaining at this page.
    pub rem_len: u32,
    pub long: Option<LongHeaderFields>,
}

/// Why a page header is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageHeaderError {
    #[error("page header needs {needed} bytes, only {available} given")]
    Truncated { needed: usize, available: usize },
    #[error("invalid magic number {0:04X}")]
    BadMagic(u16),
    #[error("invalid info bits {0:04X}")]
    BadInfoBits(u16),
    #[error("first page of a segment lacks the long header (info bits {0:04X})")]
    MissingLongHeader(u16),
    #[error("WAL file is from a different database system: system identifier {found}, expected {expected}")]
    WrongSystemId { found: u64, expected: u64 },
    #[error("incorrect segment size {found} in page header, expected {expected}")]
    WrongSegmentSize { found: u32, expected: u64 },
    #[error("incorrect XLOG_BLCKSZ {0} in page header")]
    WrongBlockSize(u32),
    #[error("unexpected pageaddr {0}")]
    UnexpectedPageAddr(Lsn),
    #[error("out-of-sequence timeline ID {found} (after {previous})")]
    TimelineWentBackwards { found: u32, previous: u32 },
    #[error("contrecord flag set on a page where a new record must start")]
    UnexpectedContrecord,
    #[error("there is no contrecord flag although a record continues here")]
    MissingContrecord,
    #[error("invalid contrecord length {found} (expected {expected})")]
    BadContrecordLength { found: u32, expected: u64 },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl XLogPageHeader {
    /// How many bytes the header at the start of `bytes` occupies, judged by
    /// its info bits (needs at least 4 bytes).
    pub fn size_hint(bytes: &[u8]) -> Option<usize> {
        if bytes.len() < 4 {
            return None;
        }
        Some(if u16_at(bytes, 2) & XLP_LONG_HEADER != 0 {
            LONG_PAGE_HEADER_SIZE
        } else {
            SHORT_PAGE_HEADER_SIZE
        })
    }

    /// Parses the header at the start of `bytes` without validating it.
    pub fn parse(bytes: &[u8]) -> Result<XLogPageHeader, PageHeaderError> {
        let needed = Self::size_hint(bytes).unwrap_or(SHORT_PAGE_HEADER_SIZE);
        if bytes.len() < needed {
            return Err(PageHeaderError::Truncated {
                needed,
                available: bytes.len(),
            });
        }
        let info = u16_at(bytes, 2);
        let long = (info & XLP_LONG_HEADER != 0).then(|| LongHeaderFields {
            system_id: u64_at(bytes, 24),
            segment_size: u32_at(bytes, 32),
            xlog_blcksz: u32_at(bytes, 36),
        });
        Ok(XLogPageHeader {
            magic: u16_at(bytes, 0),
            info,
            timeline: u32_at(bytes, 4),
            page_addr: Lsn(u64_at(bytes, 8)),
            rem_len: u32_at(bytes, 16),
            long,
        })
    }

    /// Size of this header in bytes (24 or 40).
    pub fn size(&self) -> usize {
        if self.long.is_some() {
            LONG_PAGE_HEADER_SIZE
        } else {
            SHORT_PAGE_HEADER_SIZE
        }
    }

    /// Whether the page starts with the continuation of a record.
    pub fn is_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    /// Whether an abandoned record's continuation was overwritten here.
    pub fn is_overwrite_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0
    }

    /// Checks the header of the page that starts at `page_lsn` the way
    /// `XLogReaderValidatePageHeader` does: magic, flags, long header on a
    /// segment's first page (with matching system id, segment and page
    /// size), the page address, and that the timeline never goes backwards.
    pub fn validate(
        &self,
        page_lsn: Lsn,
        segment_size: u64,
        expected_system_id: Option<u64>,
        previous_timeline: Option<u32>,
    ) -> Result<(), PageHeaderError> {
        if self.magic != XLOG_PAGE_MAGIC {
            return Err(PageHeaderError::BadMagic(self.magic));
        }
        if self.info & !XLP_ALL_FLAGS != 0 {
            return Err(PageHeaderError::BadInfoBits(self.info));
        }
        match self.long {
            Some(long) => {
                if let Some(expected) = expected_system_id {
                    if long.system_id != expected {
                        return Err(PageHeaderError::WrongSystemId {
                            found: long.system_id,
                            expected,
                        });
                    }
                }
                if u64::from(long.segment_size) != segment_size {
                    return Err(PageHeaderError::WrongSegmentSize {
                        found: long.segment_size,
                        expected: segment_size,
                    });
                }
                if u64::from(long.xlog_blcksz) != WAL_PAGE_SIZE {
                    return Err(PageHeaderError::WrongBlockSize(long.xlog_blcksz));
                }
            }
            None if page_lsn.is_segment_start(segment_size) => {
                return Err(PageHeaderError::MissingLongHeader(self.info));
            }
            None => {}
        }
        if self.page_addr != page_lsn {
            return Err(PageHeaderError::UnexpectedPageAddr(self.page_addr));
        }
        if let Some(previous) = previous_timeline {
            if self.timeline < previous {
                return Err(PageHeaderError::TimelineWentBackwards {
                    found: self.timeline,
                    previous,
                });
            }
        }
        Ok(())
    }
}

/// Whether `segment_size` is one PostgreSQL accepts (a power of two between
/// 1 MB and 1 GB, `IsValidWalSegSize`).
pub fn is_valid_segment_size(segment_size: u64) -> bool {
    segment_size.is_power_of_two() && (1 << 20..=1 << 30).contains(&segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_header(addr: u64, info: u16) -> Vec<u8> {
        let mut b = vec![0u8; LONG_PAGE_HEADER_SIZE];
        b[0..2].copy_from_slice(&XLOG_PAGE_MAGIC.to_le_bytes());
        b[2..4].copy_from_slice(&(info | XLP_LONG_HEADER).to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&addr.to_le_bytes());
        b[24..32].copy_from_slice(&42u64.to_le_bytes());
        b[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn accepts_a_valid_long_header_and_rejects_each_defect() {
        let seg = 16 << 20;
        let h = XLogPageHeader::parse(&long_header(seg, 0)).unwrap();
        assert_eq!(h.size(), LONG_PAGE_HEADER_SIZE);
        h.validate(Lsn(seg), seg, Some(42), Some(1)).unwrap();
        assert_eq!(
            h.validate(Lsn(seg), seg, Some(43), None),
            Err(PageHeaderError::WrongSystemId {
                found: 42,
                expected: 43
            })
        );
        assert_eq!(
            h.validate(Lsn(seg * 2), seg, None, None),
            Err(PageHeaderError::UnexpectedPageAddr(Lsn(seg)))
        );
        assert!(matches!(
            h.validate(Lsn(seg), seg * 2, None, None),
            Err(PageHeaderError::WrongSegmentSize { .. })
        ));
        assert!(matches!(
            h.validate(Lsn(seg), seg, None, Some(2)),
            Err(PageHeaderError::TimelineWentBackwards { .. })
        ));
        let mut bad = long_header(seg, 0);
        bad[0] = 0x11;
        let h = XLogPageHeader::parse(&bad).unwrap();
        assert!(matches!(
            h.validate(Lsn(seg), seg, None, None),
            Err(PageHeaderError::BadMagic(_))
        ));
    }

    #[test]
    fn segment_start_needs_the_long_header() {
        let mut b = long_header(0, 0);
        b[2..4].copy_from_slice(&0u16.to_le_bytes());
        let h = XLogPageHeader::parse(&b).unwrap();
        assert_eq!(h.size(), SHORT_PAGE_HEADER_SIZE);
        assert!(matches!(
            h.validate(Lsn(0), 16 << 20, None, None),
            Err(PageHeaderError::MissingLongHeader(_))
        ));
        h.validate(Lsn(0), 16 << 20, None, None).unwrap_err();
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert!(matches!(
            XLogPageHeader::parse(&[0u8; 10]),
            Err(PageHeaderError::Truncated { .. })
        ));
        let b = long_header(0, 0);
        assert!(XLogPageHeader::parse(&b[..30]).is_err());
    }
}
