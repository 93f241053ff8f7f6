//! Freezing the open layer, flushing frozen layers to delta files, and
//! metadata updates.
//!
//! Locking: freezing swaps the open layer under the timeline's write lock
//! (the lock writers hold for a batch) and the layer map lock, both
//! briefly. Everything that writes files (flush, compaction, image
//! creation, GC) and every metadata update runs under the *layer work*
//! lock instead, building files from an immutable snapshot of the layer map
//! and taking the map's write lock only to install the result, so writers
//! never wait for a file write. The one exception is back-pressure: a
//! writer whose freeze leaves more than `max_frozen_layers` frozen layers
//! flushes them itself, so memory stays bounded when nobody flushes. Lock
//! order: write lock, then layer work lock, then the layer map / LSN locks.

use std::sync::Arc;
use std::time::Duration;

use postgres_wal::Lsn;

use super::Timeline;
use crate::error::WriteError;
use crate::io::write_atomic;
use crate::key::Key;
use crate::layer::file::encode_layer;
use crate::layer::memory::InMemoryLayer;
use crate::layer::{LayerDesc, LayerHandle, LayerKind};
use crate::metadata::{TimelineMetadata, METADATA_FILE_NAME};
use crate::policy::{self, OpenLayerState};

impl Timeline {
    /// Freezes the open layer (if it holds anything up to the last record)
    /// and writes every frozen layer to a delta file, advancing
    /// `disk_consistent_lsn` to `last_record_lsn`. Blocks writers only for
    /// the freeze; blocks for the file writes itself.
    pub fn freeze_and_flush(&self) -> Result<(), WriteError> {
        self.freeze()?;
        self.flush_frozen()
    }

    /// Freezes the open layer if the freeze policy says so, then flushes
    /// every frozen layer (writers freeze by the policy but never flush;
    /// this periodic call, or [`Timeline::flush_frozen`] from a background
    /// task, does). An idle timeline also needs it for the age limit.
    pub fn flush_if_due(&self) -> Result<(), WriteError> {
        if self.freeze_policy_says_freeze() {
            self.freeze()?;
        }
        if self.layers.read().frozen.is_empty() {
            return Ok(());
        }
        self.flush_frozen()
    }

    /// Freezes the open layer without flushing it (the frozen layer stays
    /// readable in memory until [`Timeline::flush_frozen`]).
    pub fn freeze(&self) -> Result<(), WriteError> {
        let _guard = self.write_lock.lock();
        self.check_writable()?;
        self.freeze_locked();
        Ok(())
    }

    /// Writes every frozen layer to a delta file and advances
    /// `disk_consistent_lsn` past each. Does not take the write lock:
    /// writers keep going while the files are written (it waits for other
    /// layer work — compaction, image creation, GC — to finish).
    pub fn flush_frozen(&self) -> Result<(), WriteError> {
        let _work = self.layer_work.lock();
        self.check_writable()?;
        self.flush_frozen_locked()
    }

    /// Number of frozen layers waiting to be flushed.
    pub fn frozen_layer_count(&self) -> usize {
        self.layers.read().frozen.len()
    }

    /// Back-pressure for writers: when more than `max_frozen_layers` frozen
    /// layers wait, the writer (holding the write lock) flushes them. The
    /// only place a writer waits for a file write.
    pub(super) fn flush_if_backlogged(&self) -> Result<(), WriteError> {
        if self.frozen_layer_count() > self.shared.config.max_frozen_layers {
            self.flush_frozen()?;
        }
        Ok(())
    }

    pub(super) fn freeze_policy_says_freeze(&self) -> bool {
        let last_record_lsn = self.last_record_lsn();
        let map = self.layers.read();
        let state = OpenLayerState {
            size_bytes: map.open.size_bytes(),
            start_lsn: map.open.start_lsn(),
            last_record_lsn,
            age: map.open.first_put().map_or(Duration::ZERO, |t| t.elapsed()),
            is_empty: map.open.is_empty(),
        };
        policy::should_freeze(&self.shared.config.freeze, &state)
    }

    /// Ends the open layer at `last_record_lsn`. Caller holds the write lock.
    /// A no-op when no LSN has passed since the open layer started.
    pub(super) fn freeze_locked(&self) {
        let (last, prev) = {
            let state = self.lsns.lock();
            (state.last_record, state.prev_record)
        };
        let end_lsn = Lsn(last.0 + 1);
        let mut map = self.layers.write();
        if map.open.start_lsn() >= end_lsn {
            return;
        }
        let mut frozen = std::mem::replace(&mut map.open, InMemoryLayer::new(end_lsn));
        frozen.freeze(end_lsn, prev);
        map.frozen.push(Arc::new(frozen));
        drop(map);
        *self.freezes.lock() += 1;
        self.frozen_cv.notify_all();
    }

    /// Blocks until a frozen layer waits for a flush (returns true at
    /// once if one does), at most `timeout`; for a background flusher:
    /// `loop { if t.wait_frozen(d) { t.flush_frozen()? } }`. Returns false
    /// on timeout with nothing frozen, or when the timeline shuts down.
    pub fn wait_frozen(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut freezes = self.freezes.lock();
        loop {
            if self.frozen_layer_count() > 0 {
                return true;
            }
            if self.lsns.lock().shutting_down
                || self
                    .frozen_cv
                    .wait_until(&mut freezes, deadline)
                    .timed_out()
            {
                return self.frozen_layer_count() > 0;
            }
        }
    }

    /// Flushes frozen layers oldest first. Caller holds the layer work
    /// lock (not the write lock): a frozen layer is immutable, so the file
    /// is built and written with no lock writers or readers need; the map
    /// lock is taken only to swap the frozen layer for the file.
    pub(super) fn flush_frozen_locked(&self) -> Result<(), WriteError> {
        loop {
            let Some(frozen) = self.layers.read().frozen.first().cloned() else {
                return Ok(());
            };
            let handle = self.write_delta(&frozen)?;
            {
                let mut map = self.layers.write();
                // Only this function removes frozen layers, under the
                // layer work lock: the first one is still `frozen`.
                map.frozen.remove(0);
                if let Some(handle) = handle {
                    map.insert_delta(handle);
                }
            }
            {
                let mut state = self.lsns.lock();
                state.disk_consistent = Lsn(frozen.end_lsn().0 - 1);
                state.disk_prev_record = frozen.prev_record_lsn();
            }
            self.persist_metadata()?;
        }
    }

    /// Writes one frozen layer as a delta file (nothing for an empty layer).
    fn write_delta(&self, frozen: &InMemoryLayer) -> Result<Option<Arc<LayerHandle>>, WriteError> {
        let Some((first_key, last_key)) = frozen.key_bounds() else {
            return Ok(None);
        };
        // A layer's key range is half-open, so a frozen layer holding
        // Key::MAX cannot express it; refuse rather than write a lie.
        if last_key == Key::MAX {
            return Err(self.fail(
                self.dir.clone(),
                std::io::Error::other("key FFFF..FF cannot be stored in a layer file"),
            ));
        }
        let desc = LayerDesc {
            kind: LayerKind::Delta,
            key_range: first_key..last_key.next(),
            lsn_range: frozen.start_lsn()..frozen.end_lsn(),
        };
        let bytes = encode_layer(&desc, frozen.iter()).map_err(|reason| {
            self.fail(
                self.dir.join(desc.file_name()),
                std::io::Error::other(reason),
            )
        })?;
        let path = self.write_file(&desc.file_name(), &bytes)?;
        self.note_file_size(&desc.file_name(), bytes.len() as u64);
        Ok(Some(Arc::new(LayerHandle::new(desc, path))))
    }

    /// Commits a file with the atomic protocol; a failure breaks the timeline.
    pub(super) fn write_file(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<std::path::PathBuf, WriteError> {
        write_atomic(self.shared.io.as_ref(), &self.dir, name, bytes)
            .map_err(|source| self.fail(self.dir.join(name), source))
    }

    /// The metadata as it should be on disk now.
    pub(crate) fn metadata(&self) -> TimelineMetadata {
        let state = self.lsns.lock();
        TimelineMetadata {
            disk_consistent_lsn: state.disk_consistent,
            prev_record_lsn: state.disk_prev_record,
            ancestor: self.ancestor(),
            gc_cutoff: state.gc_cutoff,
            initdb_lsn: self.initdb_lsn,
            pg_version: self.pg_version,
        }
    }

    /// Replaces the metadata file. Caller holds the layer work lock.
    fn persist_metadata(&self) -> Result<(), WriteError> {
        let bytes = self.metadata().encode();
        self.write_file(METADATA_FILE_NAME, &bytes).map(|_| ())
    }

    /// Moves the GC cutoff forward to `lsn` (at most `last_record_lsn`) and
    /// persists it. Reads and branches below it are refused from now on;
    /// [`crate::Repository::gc_timeline`] then deletes what no longer matters.
    pub fn set_gc_cutoff(&self, lsn: Lsn) -> Result<(), WriteError> {
        let _work = self.layer_work.lock();
        self.check_writable()?;
        {
            let mut state = self.lsns.lock();
            if lsn < state.gc_cutoff || lsn > state.last_record {
                return Err(WriteError::GcCutoffOutOfRange {
                    timeline: self.id,
                    requested: lsn,
                    current: state.gc_cutoff,
                    last_record_lsn: state.last_record,
                });
            }
            state.gc_cutoff = lsn;
        }
        self.persist_metadata()
    }
}
