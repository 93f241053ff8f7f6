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
    /// Whether `stored` and `vm_clears` are filled in ([`derive`]).
    pub derived: bool,
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
    let mut prepared = decode_only(raw);
    if let Ok(decoded) = &mut prepared.decoded {
        if let Err(error) = derive(decoded, raw.start_lsn) {
            prepared.decoded = Err(error);
        }
    }
    prepared
}

/// [`prepare`] without the derived parts, which
/// [`crate::WalIngest::buffer_prepared`] then derives on its own thread: a
/// decoding thread ([`crate::pipelined`]) is the busier of the two.
pub(crate) fn decode_only(raw: &RawRecord<'_>) -> PreparedRecord {
    let decoded = raw
        .decode()
        .map_err(|e| IngestError::Malformed {
            lsn: raw.start_lsn,
            reason: e.to_string(),
        })
        .map(|record| Decoded {
            record,
            stored: SmallVec::new(),
            vm_clears: Vec::new(),
            derived: false,
        });
    PreparedRecord {
        start_lsn: raw.start_lsn,
        end_lsn: raw.end_lsn,
        len: raw.bytes.len(),
        decoded,
    }
}

/// [`decode_only`] into the buffers of `spare`, a record already ingested
/// (its images and stored forms were handed to the store; its block list
/// and data vectors are reused).
pub(crate) fn decode_reusing(raw: &RawRecord<'_>, spare: Option<PreparedRecord>) -> PreparedRecord {
    let Some(PreparedRecord {
        decoded: Ok(mut decoded),
        ..
    }) = spare
    else {
        return decode_only(raw);
    };
    decoded.stored.clear();
    decoded.vm_clears.clear();
    decoded.derived = false;
    let decoded = match raw.decode_into(&mut decoded.record) {
        Ok(()) => Ok(decoded),
        Err(e) => Err(IngestError::Malformed {
            lsn: raw.start_lsn,
            reason: e.to_string(),
        }),
    };
    PreparedRecord {
        start_lsn: raw.start_lsn,
        end_lsn: raw.end_lsn,
        len: raw.bytes.len(),
        decoded,
    }
}

/// Fills in the stored forms and VM clears of a record decoded by
/// [`decode_only`] (that starts at `lsn`), once.
pub(crate) fn derive(decoded: &mut Decoded, lsn: Lsn) -> Result<(), IngestError> {
    if decoded.derived {
        return Ok(());
    }
    let record = &decoded.record;
    let native = redo::is_native(record.rmid);
    decoded.stored.clear();
    for block in &record.blocks {
        decoded.stored.push(
            (native && block.image.is_none())
                .then(|| stored_record::encode(block.block_id, record)),
        );
    }
    if matches!(
        RmgrId::from_u8(record.rmid),
        Some(RmgrId::Heap | RmgrId::Heap2)
    ) {
        decoded.vm_clears = redo::vm::vm_changes(record).map_err(|e| IngestError::Malformed {
            lsn,
            reason: e.to_string(),
        })?;
    }
    decoded.derived = true;
    Ok(())
}
