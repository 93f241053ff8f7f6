//! The part of ingesting a record that depends on the record alone:
//! decoding it and finding the visibility-map bits it clears
//! ([`decode_only`], [`decode_in_place`], which a decoding thread runs
//! ahead of the thread that applies records, see [`crate::pipelined`]),
//! then encoding the stored form of each block natively redone from it
//! ([`derive`], on the applying thread, which owns the slab the stored
//! forms are cut from). [`crate::WalIngest`] does the rest, which needs
//! the timeline's state.

use bytes::Bytes;
use postgres_wal::record::DecodedRecord;
use postgres_wal::rmgr::RmgrId;
use postgres_wal::{Lsn, RawRecord};
use redo::vm::VmClear;
use smallvec::SmallVec;

use crate::value_slab::ValueSlab;
use crate::{stored_record, IngestError};

/// A record decoded for [`crate::WalIngest`] to ingest.
#[derive(Debug)]
pub(crate) struct PreparedRecord {
    pub(crate) start_lsn: Lsn,
    pub(crate) end_lsn: Lsn,
    /// Bytes of the record in the WAL (page headers excluded).
    pub(crate) len: usize,
    /// The decoded record, or why it could not be decoded (reported when
    /// the record is ingested, in WAL order).
    pub(crate) decoded: Result<Decoded, IngestError>,
}

#[derive(Debug)]
pub(crate) struct Decoded {
    pub record: DecodedRecord,
    /// Per block (same order as `record.blocks`): the stored form of the
    /// record for that block, for blocks of a natively redone manager
    /// without an image; `None` for the others.
    pub stored: SmallVec<[Option<Bytes>; 2]>,
    /// The VM bits a heap record clears on pages it does not register
    /// (found when the record is decoded).
    pub vm_clears: Vec<VmClear>,
    /// Whether `stored` is filled in ([`derive`]).
    pub derived: bool,
}

impl PreparedRecord {
    /// Where the record starts.
    pub fn start_lsn(&self) -> Lsn {
        self.start_lsn
    }

    /// Bytes of the record in the WAL.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// Decodes `raw` (the stored forms are left to [`derive`]).
pub(crate) fn decode_only(raw: &RawRecord<'_>) -> PreparedRecord {
    let decoded = raw
        .decode()
        .map_err(|e| IngestError::Malformed {
            lsn: raw.start_lsn,
            reason: e.to_string(),
        })
        .and_then(|record| {
            let mut decoded = Decoded {
                record,
                stored: SmallVec::new(),
                vm_clears: Vec::new(),
                derived: false,
            };
            find_vm_clears(&mut decoded, raw.start_lsn)?;
            Ok(decoded)
        });
    PreparedRecord {
        start_lsn: raw.start_lsn,
        end_lsn: raw.end_lsn,
        len: raw.bytes.len(),
        decoded,
    }
}

/// [`decode_only`] into `slot`, a record already ingested (its images and
/// stored forms were handed to the store): its block list and data vectors
/// are reused, and the record is not moved (at a few hundred bytes, moving
/// records between buffers cost as much as decoding them).
pub(crate) fn decode_in_place(raw: &RawRecord<'_>, slot: &mut PreparedRecord) {
    slot.start_lsn = raw.start_lsn;
    slot.end_lsn = raw.end_lsn;
    slot.len = raw.bytes.len();
    let Ok(decoded) = &mut slot.decoded else {
        *slot = decode_only(raw);
        return;
    };
    decoded.stored.clear();
    decoded.vm_clears.clear();
    decoded.derived = false;
    let outcome = raw
        .decode_into(&mut decoded.record)
        .map_err(|e| IngestError::Malformed {
            lsn: raw.start_lsn,
            reason: e.to_string(),
        })
        .and_then(|()| find_vm_clears(decoded, raw.start_lsn));
    if let Err(error) = outcome {
        slot.decoded = Err(error);
    }
}

/// Fills in `decoded.vm_clears` (of a record that starts at `lsn`). On the
/// decoding thread rather than in [`derive`]: it needs the record alone,
/// and the applying thread is the busier one.
fn find_vm_clears(decoded: &mut Decoded, lsn: Lsn) -> Result<(), IngestError> {
    let record = &decoded.record;
    if matches!(
        RmgrId::from_u8(record.rmid),
        Some(RmgrId::Heap | RmgrId::Heap2)
    ) {
        redo::vm::vm_changes_into(record, &mut decoded.vm_clears).map_err(|e| {
            IngestError::Malformed {
                lsn,
                reason: e.to_string(),
            }
        })?;
    }
    Ok(())
}

/// Fills in the stored forms (cut from `slab`) of a record decoded by
/// [`decode_only`], once.
pub(crate) fn derive(decoded: &mut Decoded, slab: &mut ValueSlab) {
    if decoded.derived {
        return;
    }
    let record = &decoded.record;
    let native = redo::is_native(record.rmid);
    decoded.stored.clear();
    for block in &record.blocks {
        decoded.stored.push(
            (native && block.image.is_none())
                .then(|| stored_record::encode_in(block.block_id, record, slab)),
        );
    }
    decoded.derived = true;
}
