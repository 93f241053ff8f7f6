//! The part of ingesting a record that depends on the record alone:
//! decoding it, encoding the stored form of each block natively redone from
//! it, and the visibility-map bits it clears. [`prepare`] is pure, so a
//! decoding thread can run it ahead of the thread that applies records
//! ([`crate::pipelined`]); [`crate::WalIngest::buffer_prepared`] does the
//! rest, which needs the timeline's state.

use bytes::Bytes;
use postgres_wal::record::DecodedRecord;
use postgres_wal::rmgr::RmgrId;
use postgres_wal::{Lsn, RawRecord};
use redo::vm::VmClear;
use smallvec::SmallVec;

use crate::{stored_record, IngestError};

/// A record made ready for [`crate::WalIngest::buffer_prepared`].
#[derive(Debug)]
pub struct PreparedRecord {
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
    /// The VM bits a heap record clears on pages it does not register.
    pub vm_clears: Vec<VmClear>,
}

impl PreparedRecord {
    /// Where the record starts.
    pub fn start_lsn(&self) -> Lsn {
        self.start_lsn
    }

    /// Where the record ends (where the next one starts).
    pub fn end_lsn(&self) -> Lsn {
        self.end_lsn
    }

    /// Bytes of the record in the WAL.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the record has no bytes (never, for a record read off WAL).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Decodes `raw` and derives what depends on it alone.
pub fn prepare(raw: &RawRecord<'_>) -> PreparedRecord {
    let malformed = |reason: String| IngestError::Malformed {
        lsn: raw.start_lsn,
        reason,
    };
    let decoded = raw
        .decode()
        .map_err(|e| malformed(e.to_string()))
        .and_then(|record| {
            let native = redo::is_native(record.rmid);
            let stored = record
                .blocks
                .iter()
                .map(|block| {
                    (native && block.image.is_none())
                        .then(|| stored_record::encode(block.block_id, &record))
                })
                .collect();
            let vm_clears = if matches!(
                RmgrId::from_u8(record.rmid),
                Some(RmgrId::Heap | RmgrId::Heap2)
            ) {
                redo::vm::vm_changes(&record).map_err(|e| malformed(e.to_string()))?
            } else {
                Vec::new()
            };
            Ok(Decoded {
                record,
                stored,
                vm_clears,
            })
        });
    PreparedRecord {
        start_lsn: raw.start_lsn,
        end_lsn: raw.end_lsn,
        len: raw.bytes.len(),
        decoded,
    }
}
