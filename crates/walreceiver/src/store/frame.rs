//! The frame format of a store file, and the recovery scan over it.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "WALF" (0x464C4157 little-endian)
//!      4     4  payload length in bytes (1..=MAX_FRAME_PAYLOAD_BYTES), LE
//!      8     8  LSN of the payload's first byte, LE
//!     16     4  CRC-32C over bytes 0..16 of the header, then the payload, LE
//!     20     4  reserved, zero
//!     24     …  payload: WAL bytes
//! ```
//!
//! The CRC covers the length and LSN, so a header left by a torn write, or
//! zeros a file system exposes after a crash, never pass as a frame.

use std::path::Path;

use fileio::ReadAt;

use postgres_wal::Lsn;

use super::{io_error, FrameIndex, StoreError, MAX_FRAME_PAYLOAD_BYTES};

/// Size of the header in front of every payload.
pub(super) const FRAME_HEADER_BYTES: usize = 24;
const MAGIC: u32 = u32::from_le_bytes(*b"WALF");

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHeader {
    pub(super) len: u32,
    pub(super) lsn: Lsn,
    pub(super) crc: u32,
}

impl FrameHeader {
    /// The header for `payload` at `lsn` (payload at most
    /// `MAX_FRAME_PAYLOAD_BYTES`, which fits in a u32).
    pub(super) fn for_payload(lsn: Lsn, payload: &[u8]) -> FrameHeader {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut header = FrameHeader { len, lsn, crc: 0 };
        header.crc = header.checksum(payload);
        header
    }

    pub(super) fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut bytes = [0u8; FRAME_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.len.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.lsn.0.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }

    /// Decodes a header, or says why these bytes are not one.
    pub(super) fn decode(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, String> {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if word(0) != MAGIC {
            return Err("no frame magic".to_owned());
        }
        let len = word(4);
        if len == 0 || len as usize > MAX_FRAME_PAYLOAD_BYTES {
            return Err(format!("frame length {len} out of range"));
        }
        let mut lsn_bytes = [0u8; 8];
        lsn_bytes.copy_from_slice(&bytes[8..16]);
        Ok(FrameHeader {
            len,
            lsn: Lsn(u64::from_le_bytes(lsn_bytes)),
            crc: word(16),
        })
    }

    fn checksum(&self, payload: &[u8]) -> u32 {
        let encoded = FrameHeader { crc: 0, ..*self }.encode_fields();
        crc32c::crc32c_append(crc32c::crc32c(&encoded), payload)
    }

    /// Magic, length and LSN: the header bytes the CRC covers.
    fn encode_fields(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.len.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.lsn.0.to_le_bytes());
        bytes
    }
}

/// The frames of one file, the byte length they cover, and why the scan
/// stopped before the end of the file (`None`: every byte is a good frame).
pub(super) type ScanResult = (Vec<FrameIndex>, u64, Option<String>);

/// Whether `payload` is what the frame's CRC says.
pub(super) fn payload_matches(frame: &FrameIndex, payload: &[u8]) -> bool {
    let header = FrameHeader {
        len: frame.len,
        lsn: frame.lsn,
        crc: frame.crc,
    };
    header.checksum(payload) == frame.crc
}

/// Reads every frame header from the start of `file` (of `size_bytes`,
/// first LSN `start`) and checks magic, length and LSN continuity, and with
/// `verify_payloads` also each payload's CRC.
pub(super) fn scan(
    file: &dyn ReadAt,
    path: &Path,
    start: Lsn,
    size_bytes: u64,
    verify_payloads: bool,
) -> Result<ScanResult, StoreError> {
    let mut frames = Vec::new();
    let mut offset = 0u64;
    let mut expected_lsn = start;
    let mut payload = Vec::new();
    while offset < size_bytes {
        let remaining = size_bytes - offset;
        if remaining < FRAME_HEADER_BYTES as u64 {
            return Ok((
                frames,
                offset,
                Some(format!("{remaining} stray bytes at the end")),
            ));
        }
        let mut header_bytes = [0u8; FRAME_HEADER_BYTES];
        file.read_exact_at(&mut header_bytes, offset)
            .map_err(|e| io_error("read", path, e))?;
        let header = match FrameHeader::decode(&header_bytes) {
            Ok(header) => header,
            Err(reason) => return Ok((frames, offset, Some(reason))),
        };
        if header.lsn != expected_lsn {
            let reason = format!("frame at {} where {expected_lsn} was expected", header.lsn);
            return Ok((frames, offset, Some(reason)));
        }
        let payload_offset = offset + FRAME_HEADER_BYTES as u64;
        if u64::from(header.len) > size_bytes - payload_offset {
            return Ok((frames, offset, Some("frame cut short".to_owned())));
        }
        if verify_payloads {
            payload.resize(header.len as usize, 0);
            file.read_exact_at(&mut payload, payload_offset)
                .map_err(|e| io_error("read", path, e))?;
            if header.checksum(&payload) != header.crc {
                return Ok((frames, offset, Some("frame CRC mismatch".to_owned())));
            }
        }
        frames.push(FrameIndex {
            lsn: header.lsn,
            payload_offset,
            len: header.len,
            crc: header.crc,
        });
        expected_lsn = expected_lsn + u64::from(header.len);
        offset = payload_offset + u64::from(header.len);
    }
    Ok((frames, offset, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let payload = b"some wal bytes";
        let header = FrameHeader::for_payload(Lsn(0x1_0000_0028), payload);
        let encoded = header.encode();
        let decoded = FrameHeader::decode(&encoded).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(decoded.checksum(payload), decoded.crc);
        assert_ne!(decoded.checksum(b"some wal bytez"), decoded.crc);

        assert!(FrameHeader::decode(&[0u8; FRAME_HEADER_BYTES]).is_err());
        let mut long = encoded;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FrameHeader::decode(&long).is_err());
        // A changed LSN keeps the magic but fails the CRC.
        let mut moved = encoded;
        moved[8] ^= 1;
        let moved = FrameHeader::decode(&moved).unwrap();
        assert_ne!(moved.checksum(payload), moved.crc);
    }
}
