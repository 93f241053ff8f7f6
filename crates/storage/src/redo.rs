//! The redo interface the read path calls to turn a base version plus later
//! records into a value, and the built-in implementation for images and
//! derived operations.
//!
//! Native PostgreSQL redo (for [`Value::WalRecord`]) lives outside this crate:
//! the pageserver implements [`Reconstruct`], handles `WalRecord`s itself and
//! calls [`apply_derived`] for the derived operations.

use bytes::Bytes;
use postgres_wal::slru::CLOG_XACTS_PER_PAGE;
use postgres_wal::vm::{HEAP_BLOCKS_PER_PAGE, PAGE_HEADER_SIZE as VM_PAGE_HEADER_SIZE};
use postgres_wal::Lsn;

use crate::key::Key;
use crate::value::{DerivedOp, Value};

/// Why a value could not be reconstructed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedoError {
    /// Records exist but nothing to apply them to (no image, no will-init record).
    #[error("no base image to apply {records} record(s) to")]
    NoBase { records: usize },
    /// This implementation cannot apply the record.
    #[error("unsupported record: {what}")]
    Unsupported { what: String },
    /// The record does not fit the value it applies to.
    #[error("record does not apply: {reason}")]
    Invalid { reason: String },
}

/// Builds the value of `key` at `lsn` from `base` (the newest image at or
/// below `lsn`, if any) and `records`: every later version up to `lsn`,
/// oldest first. If `base` is `None`, the first record is either will-init
/// or the key had no earlier version.
///
/// Implementations must be pure functions of their arguments: the store
/// caches results.
pub trait Reconstruct: Send + Sync {
    /// Applies `records` to `base`.
    fn reconstruct(
        &self,
        key: Key,
        lsn: Lsn,
        base: Option<Bytes>,
        records: &[(Lsn, Value)],
    ) -> Result<Bytes, RedoError>;
}

/// Handles [`Value::Image`] and [`Value::Derived`]; refuses WAL records.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinRedo;

impl Reconstruct for BuiltinRedo {
    fn reconstruct(
        &self,
        _key: Key,
        _lsn: Lsn,
        base: Option<Bytes>,
        records: &[(Lsn, Value)],
    ) -> Result<Bytes, RedoError> {
        let mut current: Option<Vec<u8>> = None;
        let mut base = base;
        for (_, value) in records {
            match value {
                Value::Image(b) => {
                    current = None;
                    base = Some(b.clone());
                }
                Value::Derived(op) => {
                    let page = match current.as_mut() {
                        Some(page) => page,
                        None => {
                            let start = base.take().ok_or(RedoError::NoBase {
                                records: records.len(),
                            })?;
                            current.insert(start.to_vec())
                        }
                    };
                    apply_derived(page, op)?;
                }
                Value::WalRecord { .. } => {
                    return Err(RedoError::Unsupported {
                        what: "WAL record (no native redo configured)".into(),
                    })
                }
            }
        }
        match (current, base) {
            (Some(page), _) => Ok(Bytes::from(page)),
            (None, Some(b)) => Ok(b),
            (None, None) => Err(RedoError::NoBase {
                records: records.len(),
            }),
        }
    }
}

/// Applies one derived operation to a value in place.
pub fn apply_derived(page: &mut [u8], op: &DerivedOp) -> Result<(), RedoError> {
    match op {
        DerivedOp::ClogSetStatus { status, slots } => {
            if *status > 3 {
                return Err(invalid(format!("CLOG status {status} is not 2 bits")));
            }
            for &slot in slots {
                set_two_bits(page, 0, u32::from(slot), CLOG_XACTS_PER_PAGE, |b, shift| {
                    (b & !(0b11 << shift)) | (status << shift)
                })?;
            }
        }
        DerivedOp::VmClearBits { flags, slots } => {
            for &slot in slots {
                set_two_bits(
                    page,
                    VM_PAGE_HEADER_SIZE,
                    u32::from(slot),
                    HEAP_BLOCKS_PER_PAGE,
                    |b, shift| b & !((flags & 0b11) << shift),
                )?;
            }
        }
        DerivedOp::WriteBytes { offset, bytes } => {
            let start = *offset as usize;
            let page_len = page.len();
            let target = start
                .checked_add(bytes.len())
                .and_then(|end| page.get_mut(start..end))
                .ok_or_else(|| {
                    invalid(format!(
                        "write of {} bytes at {offset} past a {}-byte value",
                        bytes.len(),
                        page_len
                    ))
                })?;
            target.copy_from_slice(bytes);
        }
    }
    Ok(())
}

/// Rewrites the byte holding 2-bit slot `slot` of a bitmap starting at
/// `header` bytes into `page`. Bit order matches PostgreSQL: slot `n` lives in
/// byte `n / 4` at shift `(n % 4) * 2`.
fn set_two_bits(
    page: &mut [u8],
    header: usize,
    slot: u32,
    slots_per_page: u32,
    update: impl Fn(u8, u32) -> u8,
) -> Result<(), RedoError> {
    if slot >= slots_per_page {
        return Err(invalid(format!("slot {slot} beyond {slots_per_page}")));
    }
    let index = header + (slot / 4) as usize;
    let shift = (slot % 4) * 2;
    let len = page.len();
    let byte = page
        .get_mut(index)
        .ok_or_else(|| invalid(format!("byte {index} beyond a {len}-byte page")))?;
    *byte = update(*byte, shift);
    Ok(())
}

fn invalid(reason: String) -> RedoError {
    RedoError::Invalid { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_wal::record::BLCKSZ;

    fn redo(base: Option<Bytes>, values: Vec<Value>) -> Result<Bytes, RedoError> {
        let records: Vec<_> = values.into_iter().map(|v| (Lsn(1), v)).collect();
        BuiltinRedo.reconstruct(Key::MIN, Lsn(1), base, &records)
    }

    #[test]
    fn clog_bits_land_where_postgres_reads_them() {
        let zero = Bytes::from(vec![0u8; BLCKSZ]);
        let op = DerivedOp::ClogSetStatus {
            status: 1,
            slots: vec![0, 5, 32767],
        };
        let page = redo(Some(zero), vec![Value::Derived(op)]).unwrap();
        assert_eq!(page[0], 0b01);
        assert_eq!(page[1], 0b01 << 2);
        assert_eq!(page[BLCKSZ - 1], 0b01 << 6);
        // Overwriting a status replaces both bits.
        let op = DerivedOp::ClogSetStatus {
            status: 2,
            slots: vec![0],
        };
        let page = redo(Some(page), vec![Value::Derived(op)]).unwrap();
        assert_eq!(page[0], 0b10);
    }

    #[test]
    fn vm_clear_only_touches_named_bits() {
        let full = Bytes::from(vec![0xffu8; BLCKSZ]);
        let op = DerivedOp::VmClearBits {
            flags: 0x01,
            slots: vec![1],
        };
        let page = redo(Some(full), vec![Value::Derived(op)]).unwrap();
        assert_eq!(page[VM_PAGE_HEADER_SIZE], 0b1111_1011);
        assert_eq!(page[VM_PAGE_HEADER_SIZE - 1], 0xff);
    }

    #[test]
    fn records_apply_in_order_and_images_reset() {
        let w = |off: u32, b: &'static [u8]| {
            Value::Derived(DerivedOp::WriteBytes {
                offset: off,
                bytes: Bytes::from_static(b),
            })
        };
        let out = redo(
            Some(Bytes::from_static(b"aaaa")),
            vec![
                w(0, b"b"),
                Value::Image(Bytes::from_static(b"cccc")),
                w(3, b"d"),
            ],
        )
        .unwrap();
        assert_eq!(&out[..], b"cccd");
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        let w = Value::Derived(DerivedOp::WriteBytes {
            offset: u32::MAX,
            bytes: Bytes::from_static(b"xx"),
        });
        assert!(matches!(
            redo(Some(Bytes::from_static(b"a")), vec![w.clone()]),
            Err(RedoError::Invalid { .. })
        ));
        assert!(matches!(redo(None, vec![w]), Err(RedoError::NoBase { .. })));
        let wal = Value::WalRecord {
            will_init: true,
            rec: Bytes::new(),
        };
        assert!(matches!(
            redo(None, vec![wal]),
            Err(RedoError::Unsupported { .. })
        ));
        let clog = Value::Derived(DerivedOp::ClogSetStatus {
            status: 1,
            slots: vec![0],
        });
        assert!(matches!(
            redo(Some(Bytes::new()), vec![clog]),
            Err(RedoError::Invalid { .. })
        ));
    }
}
