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
/// their end LSNs, in WAL order, followed by the values of the record being
/// ingested (from `record_start` on). Writing many records as one writer
/// batch takes the timeline's locks once per batch instead of once per
/// record; every value still sits at its own record's end LSN, so reads at
/// any record boundary are unchanged once the batch is written. A record
/// collects its values here directly (no buffer of its own to copy from).
#[derive(Default)]
pub(crate) struct Pending {
    puts: Vec<(Key, Lsn, Value)>,
    /// Where the values of the record being ingested start in `puts`.
    record_start: usize,
    /// [`Value::size_bytes`] of the finished records' values.
    bytes: usize,
    /// End of the newest finished record, `None` when there is none.
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
    /// End of the newest finished record.
    pub fn end(&self) -> Option<Lsn> {
        self.end
    }

    /// Whether ingest should write the pending records now.
    pub fn is_full(&self) -> bool {
        self.puts.len() >= PENDING_MAX_PUTS || self.bytes >= PENDING_MAX_BYTES
    }

    /// Starts collecting a record's values (dropping those of a record
    /// neither finished nor abandoned).
    pub fn begin_record(&mut self) {
        self.puts.truncate(self.record_start);
    }

    /// Ends the current record at `end`.
    pub fn finish_record(&mut self, end: Lsn, timeline: &Timeline) {
        self.bytes += self.puts[self.record_start..]
            .iter()
            .map(|(_, _, value)| value.size_bytes())
            .sum::<usize>();
        self.record_start = self.puts.len();
        self.prev_end = self.end.unwrap_or_else(|| timeline.last_record_lsn());
        self.end = Some(end);
    }

    /// Drops the current record's values.
    pub fn abandon_record(&mut self) {
        self.puts.truncate(self.record_start);
    }

    /// Writes the finished records as one writer batch finished at the
    /// newest one's end; the current record's values stay. On error the
    /// finished records' values are dropped (the timeline refuses further
    /// writes after a failed write anyway).
    pub fn write(&mut self, timeline: &Timeline) -> Result<(), IngestError> {
        let Some(end) = self.end.take() else {
            return Ok(());
        };
        self.bytes = 0;
        // Rare: a record that reads the store while earlier ones wait.
        let current =
            (self.record_start < self.puts.len()).then(|| self.puts.split_off(self.record_start));
        self.record_start = 0;
        let mut writer = timeline.writer();
        let put = writer.put_all(&mut self.puts);
        self.puts.clear();
        if let Some(current) = current {
            self.puts = current;
        }
        put?;
        writer.set_prev_record_lsn(self.prev_end);
        writer.finish(end)?;
        Ok(())
    }

    /// The current record's values.
    fn current(&self) -> &[(Key, Lsn, Value)] {
        &self.puts[self.record_start..]
    }
}

/// Values derived from one record, collected into [`Pending`] at the
/// record's end LSN.
pub(crate) struct Batch<'t> {
    pub timeline: &'t Timeline,
    /// The timeline state the record applies to: its `last_record_lsn`
    /// once `pending` is written (see [`Batch::read`]).
    pub read_lsn: Lsn,
    /// Where the record starts (for error messages).
    pub start_lsn: Lsn,
    /// Where it ends: the LSN of its values.
    end_lsn: Lsn,
    /// Earlier records not yet written, then this record's values.
    pending: &'t mut Pending,
    /// Where each key is among this record's values (an offset from the
    /// record's first), once there are too many for a linear search (most
    /// records put a handful of values; a relation extension may put
    /// thousands of zero pages).
    index: Option<KeyMap<usize>>,
}

/// Puts a batch holds before it indexes them.
const LINEAR_SEARCH_MAX: usize = 16;

impl<'t> Batch<'t> {
    /// A batch for the record `start_lsn..end_lsn`, collecting into
    /// `pending` (whose buffer is reused between records, so that a record
    /// allocates none).
    pub fn new(
        timeline: &'t Timeline,
        pending: &'t mut Pending,
        start_lsn: Lsn,
        end_lsn: Lsn,
    ) -> Batch<'t> {
        pending.begin_record();
        Batch {
            timeline,
            read_lsn: pending.end().unwrap_or_else(|| timeline.last_record_lsn()),
            start_lsn,
            end_lsn,
            pending,
            index: None,
        }
    }

    /// Where `key` is among this record's values.
    fn slot(&self, key: Key) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self
                .pending
                .current()
                .iter()
                .position(|(k, _, _)| *k == key),
        }
    }

    /// This record's value at `slot`.
    fn value_mut(&mut self, slot: usize) -> &mut Value {
        let at = self.pending.record_start + slot;
        &mut self.pending.puts[at].2
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
            let next = self.pending.current().len();
            if let Some(index) = &mut self.index {
                index.insert(key, next);
            } else if next >= LINEAR_SEARCH_MAX {
                let mut index = KeyMap::default();
                let current = self.pending.current().iter();
                index.extend(current.enumerate().map(|(i, (k, _, _))| (*k, i)));
                index.insert(key, next);
                self.index = Some(index);
            }
            self.pending.puts.push((key, self.end_lsn, value));
            return Ok(());
        };
        let merged = merge(self.value_mut(slot), value)
            .map_err(|reason| self.malformed(format!("{key}: {reason}")))?;
        *self.value_mut(slot) = merged;
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
        let own = self.slot(key).map(|slot| &self.pending.current()[slot].2);
        let mut page = match own {
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
