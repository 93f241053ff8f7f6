//! [`NativeRedo`]: the [`storage::Reconstruct`] the pageserver plugs into its
//! repositories. Images and derived operations are applied as
//! [`storage::BuiltinRedo`] does; [`Value::WalRecord`]s are decoded (see
//! [`crate::stored_record`]) and redone with [`redo::apply`].
//!
//! A page with no earlier version starts as a zero page. That is what
//! PostgreSQL's redo reads for a block past the end of a relation or an SLRU
//! segment, so a record or derived operation that lands on a page the store
//! never saw behaves exactly as it would in crash recovery.

use bytes::Bytes;
use postgres_wal::record::BLCKSZ;
use postgres_wal::Lsn;
use storage::{apply_derived, Key, KeyKind, Reconstruct, RedoError, Value};

use crate::stored_record;

/// Native redo for stored WAL records plus images and derived operations.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeRedo;

impl Reconstruct for NativeRedo {
    fn reconstruct(
        &self,
        key: Key,
        _lsn: Lsn,
        base: Option<Bytes>,
        records: &[(Lsn, Value)],
    ) -> Result<Bytes, RedoError> {
        // `base` stays shared until the first record needs to change it.
        let mut base = base;
        let mut current: Option<Vec<u8>> = None;
        for (_, value) in records {
            match value {
                Value::Image(image) => {
                    current = None;
                    base = Some(image.clone());
                }
                Value::WalRecord { will_init, rec } => {
                    let page = if *will_init {
                        base = None;
                        current.insert(vec![0u8; BLCKSZ])
                    } else {
                        working_page(key, &mut base, &mut current)?
                    };
                    apply_stored_record(key, page, rec)?;
                }
                Value::Derived(op) => {
                    let page = working_page(key, &mut base, &mut current)?;
                    apply_derived(page, op)?;
                }
                other => {
                    return Err(RedoError::Unsupported {
                        what: format!("value kind {other:?}"),
                    })
                }
            }
        }
        match (current, base) {
            (Some(page), _) => Ok(Bytes::from(page)),
            (None, Some(bytes)) => Ok(bytes),
            (None, None) => Err(RedoError::NoBase {
                records: records.len(),
            }),
        }
    }
}

/// The page the next record applies to: the one being built, else a copy of
/// the base, else (for pages only) a zero page.
fn working_page<'a>(
    key: Key,
    base: &mut Option<Bytes>,
    current: &'a mut Option<Vec<u8>>,
) -> Result<&'a mut Vec<u8>, RedoError> {
    if current.is_none() {
        let start = match base.take() {
            Some(bytes) => bytes.to_vec(),
            None if starts_as_zero_page(key) => vec![0u8; BLCKSZ],
            None => return Err(RedoError::NoBase { records: 1 }),
        };
        *current = Some(start);
    }
    current.as_mut().ok_or(RedoError::NoBase { records: 1 })
}

/// Keys whose missing versions read as a zero page in PostgreSQL's recovery.
fn starts_as_zero_page(key: Key) -> bool {
    matches!(
        key.kind(),
        KeyKind::RelBlock { .. } | KeyKind::SlruBlock { .. }
    )
}

/// Decodes a stored record and redoes it on `page`, checking it is really a
/// record for this key's block.
fn apply_stored_record(key: Key, page: &mut [u8], rec: &[u8]) -> Result<(), RedoError> {
    let stored = stored_record::decode(rec).map_err(|reason| RedoError::Invalid { reason })?;
    let block = stored
        .record
        .block(stored.block_id)
        .ok_or_else(|| RedoError::Invalid {
            reason: format!("stored record has no block {}", stored.block_id),
        })?;
    let expected = Key::rel_block(block.rel, block.fork, block.blkno);
    if expected != key {
        return Err(RedoError::Invalid {
            reason: format!("stored record is for {expected}, not {key}"),
        });
    }
    if page.len() != BLCKSZ {
        return Err(RedoError::Invalid {
            reason: format!("base of {} bytes is not a page", page.len()),
        });
    }
    redo::apply(page, &stored.record, stored.block_id).map_err(|e| match e {
        redo::RedoError::Unsupported { .. } => RedoError::Unsupported {
            what: format!("{e} (record at {})", stored.record.start_lsn),
        },
        other => RedoError::Invalid {
            reason: format!("redo of record at {}: {other}", stored.record.start_lsn),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_wal::record::{DecodedBlock, DecodedRecord, ForkNumber, RelFileNode};
    use storage::{DerivedOp, SlruKind};

    const REL: RelFileNode = RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 16384,
    };

    fn heap_record(blkno: u32) -> DecodedRecord {
        DecodedRecord {
            start_lsn: Lsn(0x1000),
            end_lsn: Lsn(0x1040),
            total_len: 0,
            xid: 900,
            prev: Lsn::INVALID,
            info: 0x00,
            rmid: 10,
            origin: None,
            toplevel_xid: None,
            blocks: vec![DecodedBlock {
                block_id: 0,
                rel: REL,
                fork: ForkNumber::Main,
                blkno,
                fork_flags: 0,
                will_init: false,
                image: None,
                data: Vec::new(),
            }],
            main_data: vec![0; 3],
        }
    }

    #[test]
    fn derived_ops_on_a_missing_slru_page_start_from_zeros() {
        let op = DerivedOp::ClogSetStatus {
            status: 2,
            slots: vec![1],
        };
        let key = Key::slru_block(SlruKind::Clog, 0, 3);
        let page = NativeRedo
            .reconstruct(key, Lsn(1), None, &[(Lsn(1), Value::Derived(op.clone()))])
            .unwrap();
        assert_eq!(page.len(), BLCKSZ);
        assert_eq!(page[0], 0b10 << 2);
        // Other keys (directories, sizes) have no implicit zero value.
        let err = NativeRedo
            .reconstruct(Key::db_dir(), Lsn(1), None, &[(Lsn(1), Value::Derived(op))])
            .unwrap_err();
        assert!(matches!(err, RedoError::NoBase { .. }));
    }

    #[test]
    fn a_stored_record_for_another_block_or_garbage_is_refused() {
        let rec = crate::stored_record::encode(0, &heap_record(7));
        let other_block = Key::rel_block(REL, ForkNumber::Main, 8);
        let value = Value::WalRecord {
            will_init: false,
            rec,
        };
        let base = Bytes::from(vec![0u8; BLCKSZ]);
        let err = NativeRedo
            .reconstruct(other_block, Lsn(2), Some(base.clone()), &[(Lsn(2), value)])
            .unwrap_err();
        assert!(matches!(err, RedoError::Invalid { .. }), "{err}");
        let garbage = Value::WalRecord {
            will_init: true,
            rec: Bytes::from_static(&[2, 0, 1]),
        };
        let key = Key::rel_block(REL, ForkNumber::Main, 7);
        let err = NativeRedo
            .reconstruct(key, Lsn(2), Some(base), &[(Lsn(2), garbage)])
            .unwrap_err();
        assert!(matches!(err, RedoError::Invalid { .. }), "{err}");
    }

    #[test]
    fn images_replace_and_records_apply_in_order() {
        let key = Key::slru_block(SlruKind::Clog, 0, 0);
        let set = |status| {
            Value::Derived(DerivedOp::ClogSetStatus {
                status,
                slots: vec![0],
            })
        };
        let records = [
            (Lsn(1), set(1)),
            (Lsn(2), Value::Image(Bytes::from(vec![0u8; BLCKSZ]))),
            (Lsn(3), set(2)),
        ];
        let page = NativeRedo
            .reconstruct(
                key,
                Lsn(3),
                Some(Bytes::from(vec![0xffu8; BLCKSZ])),
                &records,
            )
            .unwrap();
        assert_eq!(page[0], 0b10);
        assert!(
            page[1..].iter().all(|&b| b == 0),
            "the image replaced the base"
        );
    }
}
