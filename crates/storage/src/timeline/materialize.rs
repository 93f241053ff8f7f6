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
        self.keep_in_open_layer(key, lsn, &bytes);
        if self
            .shared
            .materialized
            .insert(self.uid, key, lsn, bytes.clone())
        {
            self.shared.stats.record_materialized_fill(true);
        }
        Ok(bytes)
    }

    /// Stores `image` (the value of `key` at `lsn`) in the open layer in
    /// place of the key's newest record there, so the chain ends in the
    /// layer even after the materialised cache evicts the image: the cache
    /// (bounded) cannot hold every page a busy workload keeps touching,
    /// and an evicted floor made a read apply every record since the last
    /// image layer (the long chains of issue #11's full-size test). The
    /// write lock is held only for one map lookup.
    pub(super) fn keep_in_open_layer(&self, key: Key, lsn: Lsn, image: &Bytes) {
        self.layers
            .write()
            .open
            .replace_newest_with_image(key, lsn, image.clone());
    }
}
