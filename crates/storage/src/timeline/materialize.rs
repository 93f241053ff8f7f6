//! Filling the materialised image cache ([`crate::materialized`]) for this
//! timeline: the periodic pass over the keys writers made hot, and an
//! explicit fill for one key.

use bytes::Bytes;
use postgres_wal::Lsn;

use super::Timeline;
use crate::error::GetError;
use crate::key::Key;
use crate::policy;
use crate::stats::ReadPurpose;

/// What one [`Timeline::materialize_hot`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaterializeResult {
    /// The LSN the images were built at (the last record LSN at the start).
    pub lsn: Lsn,
    /// Keys materialised.
    pub materialized: usize,
    /// Keys due but skipped (no value there, or redo failed; the next read
    /// reports the same error).
    pub skipped: usize,
}

impl Timeline {
    /// Materialises, at the last record LSN, the keys with at least
    /// `threshold` records written since their last image (hottest first,
    /// at most `max_keys`), so reads at the head apply only what arrives
    /// after this pass. `threshold` 0 does nothing (see
    /// [`policy::materialize_threshold`] for the value derived from the
    /// image creation threshold).
    ///
    /// Blocking (reconstructs pages on the calling thread); holds no lock
    /// across a reconstruction: each image is built like a read and stored
    /// atomically in the cache.
    pub fn materialize_hot(
        &self,
        threshold: usize,
        max_keys: usize,
    ) -> Result<MaterializeResult, GetError> {
        // Counts are reset before the LSN is read, so records that arrive
        // meanwhile count towards the next pass (an undercount only delays
        // a refresh; it never affects what a read returns).
        let keys = {
            let mut hot = self.hot.lock();
            let keys = policy::keys_to_materialize(&hot.counts(), threshold, max_keys);
            hot.reset(&keys);
            keys
        };
        let lsn = self.last_record_lsn();
        let mut result = MaterializeResult {
            lsn,
            ..MaterializeResult::default()
        };
        if keys.is_empty() || self.check_readable(lsn).is_err() {
            return Ok(result);
        }
        for key in keys {
            match self.materialize_at(key, lsn) {
                Ok(_) => result.materialized += 1,
                Err(
                    GetError::KeyNotFound { .. }
                    | GetError::Redo { .. }
                    | GetError::BadValue { .. },
                ) => result.skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(result)
    }

    /// Reads `key` at `lsn` (like [`Timeline::get`]) and keeps the result as
    /// its materialised image unless a newer one is held.
    pub fn materialize(&self, key: Key, lsn: Lsn) -> Result<Bytes, GetError> {
        self.check_readable(lsn)?;
        self.materialize_at(key, lsn)
    }

    fn materialize_at(&self, key: Key, lsn: Lsn) -> Result<Bytes, GetError> {
        let bytes = self.reconstruct_value(key, lsn, ReadPurpose::Background)?;
        if self
            .shared
            .materialized
            .insert(self.uid, key, lsn, bytes.clone())
        {
            self.shared.stats.record_materialized_fill(true);
        }
        Ok(bytes)
    }
}
