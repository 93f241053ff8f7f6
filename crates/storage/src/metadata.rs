//! The per-timeline metadata file: the LSNs that say what is durable and
//! where the timeline branched from. Fixed 128 bytes with a CRC-32C, always
//! replaced atomically ([`crate::io::write_atomic`]); layout in
//! `docs/storage-format.md`.

use postgres_wal::Lsn;

use crate::id::TimelineId;

/// Name of the metadata file inside a timeline directory.
pub const METADATA_FILE_NAME: &str = "metadata";
/// Size of the encoded metadata.
pub const METADATA_SIZE: usize = 128;
const MAGIC: [u8; 8] = *b"SEDTLMET";
/// Current metadata format version.
pub const METADATA_FORMAT_VERSION: u16 = 1;
const CRC_OFFSET: usize = METADATA_SIZE - 4;
const FLAG_HAS_ANCESTOR: u16 = 1;

/// What a timeline persists besides its layer files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineMetadata {
    /// Everything at or below this LSN is in layer files.
    pub disk_consistent_lsn: Lsn,
    /// The `last_record_lsn` before the last batch that reached disk.
    pub prev_record_lsn: Lsn,
    /// The timeline this one branched from, and the branch point.
    pub ancestor: Option<(TimelineId, Lsn)>,
    /// Reads and branches below this LSN are refused.
    pub gc_cutoff: Lsn,
    /// LSN of the initdb import (informational).
    pub initdb_lsn: Lsn,
    /// PostgreSQL major version of the data.
    pub pg_version: u32,
}

/// Why metadata bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataDecodeError {
    /// Not exactly [`METADATA_SIZE`] bytes.
    #[error("size {0} bytes, expected {METADATA_SIZE}")]
    WrongSize(usize),
    /// The bytes do not start with the metadata magic.
    #[error("bad magic")]
    BadMagic,
    /// The stored CRC-32C does not match.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch { stored: u32, computed: u32 },
    /// A format version this build does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    /// Flag bits this build does not know.
    #[error("unknown flags {0:#x}")]
    UnknownFlags(u16),
    /// `disk_consistent_lsn` is `Lsn::MAX`, leaving no room above it.
    #[error("disk_consistent_lsn out of range")]
    DiskConsistentLsnOutOfRange,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl TimelineMetadata {
    /// The 128-byte encoded form.
    pub fn encode(&self) -> [u8; METADATA_SIZE] {
        let mut b = [0u8; METADATA_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&METADATA_FORMAT_VERSION.to_le_bytes());
        let flags = if self.ancestor.is_some() {
            FLAG_HAS_ANCESTOR
        } else {
            0
        };
        b[10..12].copy_from_slice(&flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.pg_version.to_le_bytes());
        b[16..24].copy_from_slice(&self.disk_consistent_lsn.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.prev_record_lsn.0.to_le_bytes());
        if let Some((id, lsn)) = self.ancestor {
            b[32..48].copy_from_slice(id.as_bytes());
            b[48..56].copy_from_slice(&lsn.0.to_le_bytes());
        }
        b[56..64].copy_from_slice(&self.gc_cutoff.0.to_le_bytes());
        b[64..72].copy_from_slice(&self.initdb_lsn.0.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates metadata bytes.
    pub fn decode(b: &[u8]) -> Result<TimelineMetadata, MetadataDecodeError> {
        if b.len() != METADATA_SIZE {
            return Err(MetadataDecodeError::WrongSize(b.len()));
        }
        if b[0..8] != MAGIC {
            return Err(MetadataDecodeError::BadMagic);
        }
        let stored = u32::from_le_bytes([b[124], b[125], b[126], b[127]]);
        let computed = crc32c::crc32c(&b[..CRC_OFFSET]);
        if computed != stored {
            return Err(MetadataDecodeError::ChecksumMismatch { stored, computed });
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != METADATA_FORMAT_VERSION {
            return Err(MetadataDecodeError::UnsupportedVersion(version));
        }
        let flags = u16::from_le_bytes([b[10], b[11]]);
        if flags & !FLAG_HAS_ANCESTOR != 0 {
            return Err(MetadataDecodeError::UnknownFlags(flags));
        }
        let ancestor = (flags & FLAG_HAS_ANCESTOR != 0).then(|| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&b[32..48]);
            (TimelineId(id), Lsn(u64_at(b, 48)))
        });
        let disk_consistent_lsn = Lsn(u64_at(b, 16));
        // The open layer starts right after it; Lsn::MAX leaves no room.
        if disk_consistent_lsn == Lsn::MAX {
            return Err(MetadataDecodeError::DiskConsistentLsnOutOfRange);
        }
        Ok(TimelineMetadata {
            pg_version: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            disk_consistent_lsn,
            prev_record_lsn: Lsn(u64_at(b, 24)),
            ancestor,
            gc_cutoff: Lsn(u64_at(b, 56)),
            initdb_lsn: Lsn(u64_at(b, 64)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TimelineMetadata {
        TimelineMetadata {
            disk_consistent_lsn: Lsn(0x1_0000_0028),
            prev_record_lsn: Lsn(0x20),
            ancestor: Some((TimelineId([7; 16]), Lsn(0x10))),
            gc_cutoff: Lsn(0x8),
            initdb_lsn: Lsn(0x4),
            pg_version: 15,
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(TimelineMetadata::decode(&m.encode()).unwrap(), m);
        let root = TimelineMetadata {
            ancestor: None,
            ..sample()
        };
        assert_eq!(TimelineMetadata::decode(&root.encode()).unwrap(), root);
    }

    #[test]
    fn impossible_lsns_are_rejected() {
        let m = TimelineMetadata {
            disk_consistent_lsn: Lsn::MAX,
            ..sample()
        };
        assert_eq!(
            TimelineMetadata::decode(&m.encode()),
            Err(MetadataDecodeError::DiskConsistentLsnOutOfRange)
        );
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_rejected() {
        let bytes = sample().encode();
        for i in 0..METADATA_SIZE {
            let mut bad = bytes;
            bad[i] ^= 0x40;
            let err = TimelineMetadata::decode(&bad).expect_err(&format!("byte {i}"));
            // Every byte but the magic is under the checksum.
            if i < 8 {
                assert_eq!(err, MetadataDecodeError::BadMagic, "byte {i}");
            } else {
                assert!(
                    matches!(err, MetadataDecodeError::ChecksumMismatch { .. }),
                    "byte {i}: {err}"
                );
            }
        }
        for len in 0..METADATA_SIZE {
            assert_eq!(
                TimelineMetadata::decode(&bytes[..len]),
                Err(MetadataDecodeError::WrongSize(len))
            );
        }
    }
}
