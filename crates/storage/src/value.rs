//! Values stored under a key at an LSN: a whole image, or a record applied
//! on top of the previous version.
//!
//! The encoded form (used in layer files, see `docs/storage-format.md`) is a
//! tag byte followed by a tag-specific payload; [`Value::decode`] rejects
//! anything malformed with an error instead of guessing.

use bytes::Bytes;

const TAG_IMAGE: u8 = 1;
const TAG_WAL_RECORD: u8 = 2;
const TAG_WAL_RECORD_WILL_INIT: u8 = 3;
const TAG_CLOG_SET_STATUS: u8 = 4;
const TAG_VM_CLEAR_BITS: u8 = 5;
const TAG_WRITE_BYTES: u8 = 6;

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// The whole value (a page, a relation size, a directory, a file).
    Image(Bytes),
    /// A WAL record, opaque to storage, applied by the pluggable redo
    /// ([`crate::Reconstruct`]). `will_init` records rebuild the value from
    /// nothing, so reconstruction never looks below them.
    WalRecord {
        /// Whether the record initialises the page (needs no earlier version).
        will_init: bool,
        /// The record bytes, in whatever form the redo implementation wants.
        rec: Bytes,
    },
    /// A small operation derived by ingest, applied by [`crate::redo::apply_derived`].
    Derived(DerivedOp),
}

/// Operations ingest derives from WAL for pages the WAL does not image.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DerivedOp {
    /// Set the 2-bit status of transactions on a CLOG page. `slots` are
    /// positions on the page (`xid % postgres_wal::slru::CLOG_XACTS_PER_PAGE`); `status` is the
    /// `TRANSACTION_STATUS_*` value (0..=3).
    ClogSetStatus { status: u8, slots: Vec<u16> },
    /// Clear visibility-map bits (`flags`: 0x01 all-visible, 0x02 all-frozen)
    /// for heap blocks at positions `slots`
    /// (`heap_blkno % postgres_wal::vm::HEAP_BLOCKS_PER_PAGE`).
    VmClearBits { flags: u8, slots: Vec<u16> },
    /// Overwrite `bytes` at `offset` (multixact pages, small files).
    WriteBytes { offset: u32, bytes: Bytes },
}

/// Why bytes are not an encoded [`Value`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed value: {reason}")]
pub struct ValueDecodeError {
    /// What was wrong.
    pub reason: &'static str,
}

impl Value {
    /// Whether reconstruction can start from this value alone.
    pub fn will_init(&self) -> bool {
        match self {
            Value::Image(_) => true,
            Value::WalRecord { will_init, .. } => *will_init,
            Value::Derived(_) => false,
        }
    }

    /// The value a relation-size (or SLRU segment size) key holds: the
    /// number of blocks as 4 little-endian bytes.
    pub fn rel_size(blocks: u32) -> Value {
        Value::Image(Bytes::copy_from_slice(&blocks.to_le_bytes()))
    }

    /// Decodes a relation size written by [`Value::rel_size`].
    pub fn decode_rel_size(bytes: &[u8]) -> Option<u32> {
        <[u8; 4]>::try_from(bytes).ok().map(u32::from_le_bytes)
    }

    /// Approximate memory/disk footprint, used by the freeze policy.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Image(b) | Value::WalRecord { rec: b, .. } => b.len() + 1,
            Value::Derived(DerivedOp::ClogSetStatus { slots, .. })
            | Value::Derived(DerivedOp::VmClearBits { slots, .. }) => 2 + 2 * slots.len(),
            Value::Derived(DerivedOp::WriteBytes { bytes, .. }) => 5 + bytes.len(),
        }
    }

    /// Appends the encoded form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Image(b) => {
                out.push(TAG_IMAGE);
                out.extend_from_slice(b);
            }
            Value::WalRecord { will_init, rec } => {
                out.push(if *will_init {
                    TAG_WAL_RECORD_WILL_INIT
                } else {
                    TAG_WAL_RECORD
                });
                out.extend_from_slice(rec);
            }
            Value::Derived(DerivedOp::ClogSetStatus { status, slots }) => {
                out.extend_from_slice(&[TAG_CLOG_SET_STATUS, *status]);
                slots
                    .iter()
                    .for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
            }
            Value::Derived(DerivedOp::VmClearBits { flags, slots }) => {
                out.extend_from_slice(&[TAG_VM_CLEAR_BITS, *flags]);
                slots
                    .iter()
                    .for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
            }
            Value::Derived(DerivedOp::WriteBytes { offset, bytes }) => {
                out.push(TAG_WRITE_BYTES);
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }

    /// Decodes an encoded value. `bytes` is shared, not copied, for images
    /// and records.
    pub fn decode(bytes: Bytes) -> Result<Value, ValueDecodeError> {
        let err = |reason| ValueDecodeError { reason };
        let (&tag, _) = bytes.split_first().ok_or(err("empty"))?;
        let body = bytes.slice(1..);
        match tag {
            TAG_IMAGE => Ok(Value::Image(body)),
            TAG_WAL_RECORD | TAG_WAL_RECORD_WILL_INIT => Ok(Value::WalRecord {
                will_init: tag == TAG_WAL_RECORD_WILL_INIT,
                rec: body,
            }),
            TAG_CLOG_SET_STATUS | TAG_VM_CLEAR_BITS => {
                let (&arg, rest) = body.split_first().ok_or(err("missing argument"))?;
                if rest.len() % 2 != 0 {
                    return Err(err("odd slot list length"));
                }
                let slots = rest
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Ok(Value::Derived(if tag == TAG_CLOG_SET_STATUS {
                    DerivedOp::ClogSetStatus { status: arg, slots }
                } else {
                    DerivedOp::VmClearBits { flags: arg, slots }
                }))
            }
            TAG_WRITE_BYTES => {
                let offset = body
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_le_bytes)
                    .ok_or(err("missing offset"))?;
                Ok(Value::Derived(DerivedOp::WriteBytes {
                    offset,
                    bytes: body.slice(4..),
                }))
            }
            _ => Err(err("unknown tag")),
        }
    }

    /// The encoded form as a new vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_bytes() + 8);
        self.encode_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips() {
        let values = [
            Value::Image(Bytes::from_static(b"page")),
            Value::Image(Bytes::new()),
            Value::WalRecord {
                will_init: true,
                rec: Bytes::from_static(b"rec"),
            },
            Value::WalRecord {
                will_init: false,
                rec: Bytes::new(),
            },
            Value::Derived(DerivedOp::ClogSetStatus {
                status: 1,
                slots: vec![0, 5, 32767],
            }),
            Value::Derived(DerivedOp::VmClearBits {
                flags: 3,
                slots: vec![],
            }),
            Value::Derived(DerivedOp::WriteBytes {
                offset: 100,
                bytes: Bytes::from_static(b"xy"),
            }),
        ];
        for v in values {
            assert_eq!(Value::decode(Bytes::from(v.encode())).unwrap(), v);
        }
    }

    #[test]
    fn malformed_bytes_are_errors() {
        for bad in [&b""[..], &[0], &[99, 1], &[4], &[5, 1, 2], &[6, 1, 2]] {
            assert!(
                Value::decode(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rel_size_round_trips() {
        let Value::Image(b) = Value::rel_size(1234) else {
            panic!("not an image")
        };
        assert_eq!(Value::decode_rel_size(&b), Some(1234));
        assert_eq!(Value::decode_rel_size(b"abc"), None);
    }
}
