//! One record's worth of derived values, collected before anything is
//! written so that a record is stored entirely or not at all.
//!
//! Storage keeps one version per (key, LSN): a second put at the same LSN
//! replaces the first. Several changes a single record makes to one key
//! (two VM bits on one VM page, subtransactions on one CLOG page) are
//! therefore merged here into one value.

use bytes::Bytes;
use postgres_wal::record::BLCKSZ;
use postgres_wal::Lsn;
use storage::key::KeyMap;
use storage::{apply_derived, DerivedOp, GetError, Key, Timeline, Value};

use crate::IngestError;

/// Records ingested but not yet written to the timeline: their values at
/// their end LSNs, in WAL order. Writing many records as one writer batch
/// takes the timeline's locks once per batch instead of once per record;
/// every value still sits at its own record's end LSN, so reads at any
/// record boundary are unchanged once the batch is written.
#[derive(Default)]
pub(crate) struct Pending {
    puts: Vec<(Key, Lsn, Value)>,
    /// [`Value::size_bytes`] of `puts`.
    bytes: usize,
    /// End of the newest pending record, `None` when there is none.
    end: Option<Lsn>,
    /// End of the record before the newest (the timeline's
    /// `prev_record_lsn` once written).
    prev_end: Lsn,
}

/// Pending values beyond which ingest writes them out without waiting for
/// its caller: bounds the memory of a burst (full-page images) and how
/// long the timeline's freeze policy goes unconsulted.
const PENDING_MAX_PUTS: usize = 16_384;
const PENDING_MAX_BYTES: usize = 8 << 20;

impl Pending {
    /// End of the newest pending record.
    pub fn end(&self) -> Option<Lsn> {
        self.end
    }

    /// Whether ingest should write the pending records now.
    pub fn is_full(&self) -> bool {
        self.puts.len() >= PENDING_MAX_PUTS || self.bytes >= PENDING_MAX_BYTES
    }

    /// Adds one record's values (draining `puts`), to be put at `end`.
    /// `written_end` is the timeline's `last_record_lsn`.
    pub fn add_record(&mut self, puts: &mut Vec<(Key, Value)>, end: Lsn, written_end: Lsn) {
        self.prev_end = self.end.unwrap_or(written_end);
        self.end = Some(end);
        self.puts.reserve(puts.len());
        for (key, value) in puts.drain(..) {
            self.bytes += value.size_bytes();
            self.puts.push((key, end, value));
        }
    }

    /// Writes the pending records as one writer batch finished at the
    /// newest one's end. On error the pending values are dropped (the
    /// timeline refuses further writes after a failed write anyway).
    pub fn write(&mut self, timeline: &Timeline) -> Result<(), IngestError> {
        let Some(end) = self.end.take() else {
            return Ok(());
        };
        self.bytes = 0;
        let mut writer = timeline.writer();
        let put = writer.put_all(&mut self.puts);
        self.puts.clear();
        put?;
        writer.set_prev_record_lsn(self.prev_end);
        writer.finish(end)?;
        Ok(())
    }
}

/// Values derived from one record (the caller puts them at its end LSN).
pub(crate) struct Batch<'t> {
    pub timeline: &'t Timeline,
    /// The timeline state the record applies to: its `last_record_lsn`
    /// once `pending` is written (see [`Batch::read`]).
    pub read_lsn: Lsn,
    /// Where the record starts (for error messages).
    pub start_lsn: Lsn,
    /// Earlier records not yet written: reading the store writes them first.
    pending: &'t mut Pending,
    puts: Vec<(Key, Value)>,
    /// Where each key is in `puts`, once there are too many for a linear
    /// search (most records put a handful of values; a relation extension
    /// may put thousands of zero pages).
    index: Option<KeyMap<usize>>,
}

/// Puts a batch holds before it indexes them.
const LINEAR_SEARCH_MAX: usize = 16;

impl<'t> Batch<'t> {
    /// A batch collecting into `puts` (an empty buffer, reused between
    /// records so that a record allocates none).
    pub fn new(
        timeline: &'t Timeline,
        pending: &'t mut Pending,
        start_lsn: Lsn,
        mut puts: Vec<(Key, Value)>,
    ) -> Batch<'t> {
        puts.clear();
        Batch {
            timeline,
            read_lsn: pending.end().unwrap_or_else(|| timeline.last_record_lsn()),
            start_lsn,
            pending,
            puts,
            index: None,
        }
    }

    /// Where `key` is in `puts`.
    fn slot(&self, key: Key) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.puts.iter().position(|(k, _)| *k == key),
        }
    }

    /// The values, in the order first put.
    pub fn into_puts(self) -> Vec<(Key, Value)> {
        self.puts
    }

    pub fn malformed(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Malformed {
            lsn: self.start_lsn,
            reason: reason.into(),
        }
    }

    pub fn unsupported(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Unsupported {
            lsn: self.start_lsn,
            reason: reason.into(),
        }
    }

    pub fn bad_stored(&self, key: Key, reason: impl Into<String>) -> IngestError {
        IngestError::BadStoredValue {
            key,
            lsn: self.read_lsn,
            reason: reason.into(),
        }
    }

    /// The stored value of `key` before this record (`None` if it has none).
    /// Writes the pending records first: the value may be theirs.
    pub fn read(&mut self, key: Key) -> Result<Option<Bytes>, IngestError> {
        if self.pending.end().is_some() {
            self.pending.write(self.timeline)?;
            self.read_lsn = self.timeline.last_record_lsn();
        }
        match self.timeline.get(key, self.read_lsn) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(GetError::KeyNotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a version of `key`, merging it with one this record already put.
    pub fn put(&mut self, key: Key, value: Value) -> Result<(), IngestError> {
        let Some(slot) = self.slot(key) else {
            if let Some(index) = &mut self.index {
                index.insert(key, self.puts.len());
            } else if self.puts.len() >= LINEAR_SEARCH_MAX {
                let mut index = KeyMap::default();
                index.extend(self.puts.iter().enumerate().map(|(i, (k, _))| (*k, i)));
                index.insert(key, self.puts.len());
                self.index = Some(index);
            }
            self.puts.push((key, value));
            return Ok(());
        };
        let merged = merge(&self.puts[slot].1, value)
            .map_err(|reason| self.malformed(format!("{key}: {reason}")))?;
        self.puts[slot].1 = merged;
        Ok(())
    }

    /// Rewrites the page at `key` as of this record (the version this record
    /// already put, else the stored one, else a zero page) and puts the result
    /// as an image. Used for changes no [`DerivedOp`] expresses.
    pub fn modify_page(
        &mut self,
        key: Key,
        change: impl FnOnce(&mut [u8]),
    ) -> Result<(), IngestError> {
        let mut page = match self.slot(key).map(|slot| &self.puts[slot].1) {
            Some(Value::Image(bytes)) => bytes.to_vec(),
            Some(_) => return Err(self.malformed(format!("{key}: page rewritten after a record"))),
            None => match self.read(key)? {
                Some(bytes) if bytes.len() == BLCKSZ => bytes.to_vec(),
                Some(bytes) => {
                    return Err(self.bad_stored(key, format!("{} bytes, not a page", bytes.len())))
                }
                None => vec![0u8; BLCKSZ],
            },
        };
        change(&mut page);
        self.put(key, Value::Image(Bytes::from(page)))
    }
}

/// Combines two versions of one key put by the same record.
fn merge(existing: &Value, new: Value) -> Result<Value, String> {
    use DerivedOp::{ClogSetStatus, VmClearBits};
    match (existing, new) {
        // A whole new value wins (storage would do the same).
        (_, new @ Value::Image(_)) => Ok(new),
        (
            _,
            new @ Value::WalRecord {
                will_init: true, ..
            },
        ) => Ok(new),
        (Value::Image(bytes), Value::Derived(op)) => {
            let mut page = bytes.to_vec();
            apply_derived(&mut page, &op).map_err(|e| e.to_string())?;
            Ok(Value::Image(Bytes::from(page)))
        }
        (
            Value::Derived(ClogSetStatus { status, slots }),
            Value::Derived(ClogSetStatus {
                status: new_status,
                slots: new_slots,
            }),
        ) if *status == new_status => Ok(Value::Derived(ClogSetStatus {
            status: *status,
            slots: slots.iter().copied().chain(new_slots).collect(),
        })),
        (
            Value::Derived(VmClearBits { flags, slots }),
            Value::Derived(VmClearBits {
                flags: new_flags,
                slots: new_slots,
            }),
        ) if *flags == new_flags => Ok(Value::Derived(VmClearBits {
            flags: *flags,
            slots: slots.iter().copied().chain(new_slots).collect(),
        })),
        (existing, new) => Err(format!(
            "two changes in one record cannot be combined ({existing:?} then {new:?})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_bits_and_applies_derived_to_images() {
        let clog = |slots: Vec<u16>| Value::Derived(DerivedOp::ClogSetStatus { status: 1, slots });
        assert_eq!(
            merge(&clog(vec![1]), clog(vec![2])).unwrap(),
            clog(vec![1, 2])
        );
        let zero = Value::Image(Bytes::from(vec![0u8; BLCKSZ]));
        let Value::Image(page) = merge(&zero, clog(vec![0])).unwrap() else {
            panic!("image expected")
        };
        assert_eq!(page[0], 1);
        let other = Value::Derived(DerivedOp::ClogSetStatus {
            status: 2,
            slots: vec![3],
        });
        assert!(merge(&clog(vec![1]), other).is_err());
    }
}
