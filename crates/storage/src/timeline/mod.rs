//! A timeline: one line of history of a Postgres cluster, optionally
//! branched from an ancestor timeline at an LSN.
//!
//! Writes arrive in batches through [`TimelineWriter`] and land in the open
//! in-memory layer; the freeze policy turns it into a frozen layer that is
//! flushed to a delta file, after which the metadata's
//! `disk_consistent_lsn` moves forward. Reads ([`Timeline::get`]) search the
//! layer map, then the ancestor below the branch point.
//!
//! # Durability contract
//!
//! Only data at or below [`Timeline::disk_consistent_lsn`] survives a
//! restart. After reopening, `last_record_lsn == disk_consistent_lsn`, and
//! the caller (the pageserver's WAL receiver) must re-feed WAL from there:
//! anything it had put above that LSN is gone. Files above the
//! disk-consistent LSN found at open (written before a crash but never
//! committed by a metadata update) are deleted for the same reason.
//!
//! # Failure
//!
//! After a failed write, fsync or rename the timeline is *broken*: it keeps
//! serving reads from what it holds, but every later write returns
//! [`WriteError::Broken`] until the repository is reopened (STYLE §4: never
//! retry an fsync and carry on as if the data were safe).

mod compact;
mod flush;
mod gc;
pub mod history;
pub(crate) mod load;
mod materialize;
mod read;
mod size;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use postgres_wal::Lsn;

use crate::error::WriteError;
use crate::id::TimelineId;
use crate::key::Key;
use crate::layer::LayerDesc;
use crate::layer_map::LayerMap;
use crate::materialized::HotKeys;
use crate::metadata::TimelineMetadata;
use crate::policy::OpenLayerState;
use crate::repository::Shared;
use crate::value::Value;

pub use compact::CompactionResult;
pub use gc::GcResult;
pub use materialize::MaterializeResult;
pub use size::{InMemoryLayerInfo, LayerFileInfo, LayerMapInfo, LayerStats};
pub use wait::WaitLsnFuture;

/// LSNs that move as the timeline is written, flushed and garbage-collected.
struct LsnState {
    last_record: Lsn,
    prev_record: Lsn,
    disk_consistent: Lsn,
    /// `prev_record` as of `disk_consistent` (what the metadata stores).
    disk_prev_record: Lsn,
    gc_cutoff: Lsn,
    shutting_down: bool,
    /// Async waiters (see `wait.rs`): woken once `last_record` reaches the LSN.
    waiters: Vec<(Lsn, std::task::Waker)>,
}

/// One timeline of a repository. Shared as `Arc<Timeline>`; every method
/// takes `&self` and is safe to call from many threads.
pub struct Timeline {
    id: TimelineId,
    dir: PathBuf,
    pg_version: u32,
    initdb_lsn: Lsn,
    ancestor: Option<Arc<Timeline>>,
    ancestor_lsn: Lsn,
    shared: Arc<Shared>,
    layers: RwLock<LayerMap>,
    lsns: Mutex<LsnState>,
    lsn_advanced: Condvar,
    /// Serialises writers (one batch at a time) and freezes. Holds the
    /// writer's batch buffer, kept between batches so that a batch (one per
    /// WAL record) allocates nothing; empty whenever no writer holds it.
    write_lock: Mutex<Vec<(Key, Lsn, Value)>>,
    /// Serialises everything that writes files or metadata: flush,
    /// compaction, image creation, GC, GC cutoff updates. Never held by a
    /// writer except under back-pressure (see `flush.rs`).
    layer_work: Mutex<()>,
    /// Held (shared) by reads while they read files outside the layer map
    /// lock; taken exclusively (and released at once) before files that
    /// left the map are deleted, to wait out reads that planned with them.
    gc_guard: RwLock<()>,
    broken: Mutex<Option<String>>,
    /// Number of freezes so far, signalled on `frozen_cv` so a background
    /// flusher can wait for work ([`Timeline::wait_frozen`]).
    freezes: Mutex<u64>,
    frozen_cv: Condvar,
    /// Bytes of each layer file by name, learnt when written or first
    /// asked (`size.rs`).
    file_sizes: Mutex<std::collections::HashMap<String, u64>>,
    /// Process-unique id: the key of this timeline's entries in the
    /// materialised image cache (never reused, so a reopened timeline
    /// never sees entries of history it may have lost).
    uid: u64,
    /// Records written per key since its last materialised image.
    hot: Mutex<HotKeys>,
}

/// Capacity (versions) of the writer's batch buffer kept between batches:
/// enough for a run of pipelined ingest (256 KiB of WAL, some 2,500
/// versions), which otherwise regrows its buffer every run; a rare bigger
/// batch gives the excess back.
const MAX_KEPT_BATCH: usize = 4096;

static NEXT_TIMELINE_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Timeline {
    fn from_parts(
        id: TimelineId,
        dir: PathBuf,
        metadata: &TimelineMetadata,
        ancestor: Option<Arc<Timeline>>,
        shared: Arc<Shared>,
        layers: LayerMap,
    ) -> Timeline {
        Timeline {
            id,
            dir,
            pg_version: metadata.pg_version,
            initdb_lsn: metadata.initdb_lsn,
            ancestor,
            ancestor_lsn: metadata.ancestor.map_or(Lsn::INVALID, |(_, lsn)| lsn),
            shared,
            layers: RwLock::new(layers),
            lsns: Mutex::new(LsnState {
                last_record: metadata.disk_consistent_lsn,
                prev_record: metadata.prev_record_lsn,
                disk_consistent: metadata.disk_consistent_lsn,
                disk_prev_record: metadata.prev_record_lsn,
                gc_cutoff: metadata.gc_cutoff,
                shutting_down: false,
                waiters: Vec::new(),
            }),
            lsn_advanced: Condvar::new(),
            write_lock: Mutex::new(Vec::new()),
            layer_work: Mutex::new(()),
            gc_guard: RwLock::new(()),
            broken: Mutex::new(None),
            file_sizes: Mutex::new(std::collections::HashMap::new()),
            freezes: Mutex::new(0),
            frozen_cv: Condvar::new(),
            uid: NEXT_TIMELINE_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hot: Mutex::new(HotKeys::default()),
        }
    }

    /// The timeline's id.
    pub fn id(&self) -> TimelineId {
        self.id
    }

    /// Directory holding the metadata and layer files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PostgreSQL major version of the data.
    pub fn pg_version(&self) -> u32 {
        self.pg_version
    }

    /// LSN of the initdb import.
    pub fn initdb_lsn(&self) -> Lsn {
        self.initdb_lsn
    }

    /// The ancestor timeline's id and the branch point, if any.
    pub fn ancestor(&self) -> Option<(TimelineId, Lsn)> {
        self.ancestor.as_ref().map(|a| (a.id, self.ancestor_lsn))
    }

    /// The ancestor timeline itself.
    pub fn ancestor_timeline(&self) -> Option<&Arc<Timeline>> {
        self.ancestor.as_ref()
    }

    /// End of the last complete batch of writes; reads up to here are served.
    pub fn last_record_lsn(&self) -> Lsn {
        self.lsns.lock().last_record
    }

    /// The `last_record_lsn` before the latest batch (the start of the last
    /// record when batches are WAL records).
    pub fn prev_record_lsn(&self) -> Lsn {
        self.lsns.lock().prev_record
    }

    /// Everything at or below this LSN survives a restart.
    pub fn disk_consistent_lsn(&self) -> Lsn {
        self.lsns.lock().disk_consistent
    }

    /// Reads and branches below this LSN are refused.
    pub fn gc_cutoff(&self) -> Lsn {
        self.lsns.lock().gc_cutoff
    }

    /// Why the timeline stopped accepting writes, if it did.
    pub fn broken_reason(&self) -> Option<String> {
        self.broken.lock().clone()
    }

    /// The layer files the timeline reads from now (deltas, then images).
    pub fn layer_files(&self) -> Vec<LayerDesc> {
        self.layers.read().file_descs()
    }

    /// Number of in-memory layers (open one included) and bytes they hold.
    pub fn in_memory_size(&self) -> (usize, u64) {
        let map = self.layers.read();
        let frozen: u64 = map.frozen.iter().map(|f| f.size_bytes()).sum();
        (1 + map.frozen.len(), map.open.size_bytes() + frozen)
    }

    /// Starts a batch of writes. Blocks while another batch, a flush or a
    /// metadata update is in progress.
    ///
    /// ```no_run
    /// # fn demo(t: &storage::Timeline) -> Result<(), storage::WriteError> {
    /// use storage::{Key, Value};
    /// use postgres_wal::Lsn;
    /// let mut writer = t.writer();
    /// writer.put(Key::checkpoint(), Lsn(0x100), Value::Image(vec![1, 2].into()))?;
    /// writer.finish(Lsn(0x100))?; // now visible to readers at 0/100
    /// # Ok(()) }
    /// ```
    pub fn writer(&self) -> TimelineWriter<'_> {
        let batch = self.write_lock.lock();
        debug_assert!(batch.is_empty());
        TimelineWriter {
            timeline: self,
            batch,
            // Only a writer moves it, and this one holds the write lock.
            last_record_lsn: self.last_record_lsn(),
            max_put_lsn: Lsn::INVALID,
            prev_record_lsn: None,
        }
    }

    /// Wakes waiters and refuses further reads and writes.
    pub(crate) fn shutdown(&self) {
        let waiters = {
            let mut state = self.lsns.lock();
            state.shutting_down = true;
            std::mem::take(&mut state.waiters)
        };
        self.lsn_advanced.notify_all();
        {
            let _freezes = self.freezes.lock();
            self.frozen_cv.notify_all();
        }
        waiters.into_iter().for_each(|(_, waker)| waker.wake());
    }

    fn check_writable(&self) -> Result<(), WriteError> {
        if self.lsns.lock().shutting_down {
            return Err(WriteError::ShuttingDown);
        }
        match self.broken.lock().as_ref() {
            Some(reason) => Err(WriteError::Broken {
                timeline: self.id,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Marks the timeline broken for a reason found outside the store (for
    /// instance WAL that ingest cannot apply): further writes are refused
    /// with that reason, reads keep working. The first reason wins.
    pub fn set_broken(&self, reason: impl Into<String>) {
        self.broken.lock().get_or_insert_with(|| reason.into());
    }

    /// Marks the timeline broken after an I/O failure on `path`.
    fn fail(&self, path: PathBuf, source: std::io::Error) -> WriteError {
        let reason = format!("{}: {source}", path.display());
        self.broken.lock().get_or_insert(reason);
        WriteError::Io { path, source }
    }

    /// Applies a finished batch and advances `last_record_lsn`. Returns
    /// whether the freeze policy now says to freeze (decided under the
    /// locks taken anyway, rather than taking them again per batch).
    fn apply_batch(
        &self,
        batch: &mut Vec<(Key, Lsn, Value)>,
        lsn: Lsn,
        prev_record_lsn: Option<Lsn>,
    ) -> bool {
        self.hot
            .lock()
            .note_batch(batch.iter().map(|(key, _, value)| (*key, value)));
        let open = {
            let mut map = self.layers.write();
            for (key, value_lsn, value) in batch.drain(..) {
                map.open.put(key, value_lsn, value);
            }
            // A rare huge batch (a relation extended by thousands of
            // blocks) should not pin its buffer for the timeline's life.
            if batch.capacity() > MAX_KEPT_BATCH {
                batch.shrink_to(MAX_KEPT_BATCH);
            }
            OpenLayerState {
                size_bytes: map.open.size_bytes(),
                start_lsn: map.open.start_lsn(),
                last_record_lsn: lsn,
                age: map
                    .open
                    .first_put()
                    .map_or(std::time::Duration::ZERO, |t| t.elapsed()),
                is_empty: map.open.is_empty(),
            }
        };
        let mut state = self.lsns.lock();
        if lsn > state.last_record {
            state.prev_record = prev_record_lsn.unwrap_or(state.last_record);
            state.last_record = lsn;
        }
        let (ready, waiting) = std::mem::take(&mut state.waiters)
            .into_iter()
            .partition(|(target, _)| *target <= lsn);
        state.waiters = waiting;
        drop(state);
        self.lsn_advanced.notify_all();
        for (_, waker) in ready {
            waker.wake();
        }
        crate::policy::should_freeze(&self.shared.config.freeze, &open)
    }
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lsns.lock();
        f.debug_struct("Timeline")
            .field("id", &self.id)
            .field("ancestor", &self.ancestor())
            .field("last_record_lsn", &state.last_record)
            .field("disk_consistent_lsn", &state.disk_consistent)
            .field("gc_cutoff", &state.gc_cutoff)
            .finish_non_exhaustive()
    }
}

/// A batch of writes to one timeline, made visible atomically by
/// [`TimelineWriter::finish`]. Dropping it without `finish` discards the batch.
pub struct TimelineWriter<'a> {
    timeline: &'a Timeline,
    /// The write lock, whose buffer is this batch.
    batch: MutexGuard<'a, Vec<(Key, Lsn, Value)>>,
    /// The timeline's `last_record_lsn`, fixed while the writer holds the
    /// write lock.
    last_record_lsn: Lsn,
    max_put_lsn: Lsn,
    /// Set by [`TimelineWriter::set_prev_record_lsn`] for a batch of
    /// several records; else the previous `last_record_lsn`.
    prev_record_lsn: Option<Lsn>,
}

impl Drop for TimelineWriter<'_> {
    /// A batch not finished is discarded; the buffer stays for the next.
    fn drop(&mut self) {
        self.batch.clear();
    }
}

impl TimelineWriter<'_> {
    /// Adds a version of `key` at `lsn`, which must be above the timeline's
    /// `last_record_lsn`. A second put of the same (key, lsn) replaces the first.
    pub fn put(&mut self, key: Key, lsn: Lsn, value: Value) -> Result<(), WriteError> {
        let timeline = self.timeline;
        if lsn == Lsn::MAX {
            return Err(WriteError::InvalidLsn {
                timeline: timeline.id,
                lsn,
            });
        }
        let last_record_lsn = self.last_record_lsn;
        if lsn <= last_record_lsn {
            return Err(WriteError::LsnNotAdvancing {
                timeline: timeline.id,
                lsn,
                last_record_lsn,
            });
        }
        self.max_put_lsn = self.max_put_lsn.max(lsn);
        self.batch.push((key, lsn, value));
        Ok(())
    }

    /// Adds every version in `puts` (each as [`TimelineWriter::put`]
    /// would), leaving `puts` empty with its capacity. Hands the buffer over
    /// rather than copying when the batch is still empty. On error nothing
    /// of `puts` is added.
    pub fn put_all(&mut self, puts: &mut Vec<(Key, Lsn, Value)>) -> Result<(), WriteError> {
        let timeline = self.timeline;
        let last_record_lsn = self.last_record_lsn;
        let mut max_put_lsn = self.max_put_lsn;
        for &(_, lsn, _) in puts.iter() {
            if lsn == Lsn::MAX {
                return Err(WriteError::InvalidLsn {
                    timeline: timeline.id,
                    lsn,
                });
            }
            if lsn <= last_record_lsn {
                return Err(WriteError::LsnNotAdvancing {
                    timeline: timeline.id,
                    lsn,
                    last_record_lsn,
                });
            }
            max_put_lsn = max_put_lsn.max(lsn);
        }
        self.max_put_lsn = max_put_lsn;
        if self.batch.is_empty() {
            std::mem::swap(&mut *self.batch, puts);
        } else {
            self.batch.append(puts);
        }
        Ok(())
    }

    /// For a batch holding several WAL records: where the last of them
    /// starts its predecessor's end (`prev_record_lsn` after `finish`),
    /// instead of the `last_record_lsn` the batch started from.
    pub fn set_prev_record_lsn(&mut self, lsn: Lsn) {
        self.prev_record_lsn = Some(lsn);
    }

    /// Number of versions in the batch.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Makes the batch visible and sets `last_record_lsn` to `lsn` (at least
    /// every put LSN, never backwards). Freezes the open layer when the
    /// freeze policy says so (a short swap, no file write). Does not flush:
    /// [`Timeline::flush_frozen`] / [`Timeline::flush_if_due`] do, from a
    /// background caller — except under back-pressure, when more than
    /// `RepositoryConfig::max_frozen_layers` frozen layers wait; then it
    /// flushes them itself and a flush failure is returned (the batch is
    /// applied and readable either way).
    pub fn finish(mut self, lsn: Lsn) -> Result<(), WriteError> {
        let timeline = self.timeline;
        timeline.check_writable()?;
        if lsn == Lsn::MAX {
            return Err(WriteError::InvalidLsn {
                timeline: timeline.id,
                lsn,
            });
        }
        let last_record_lsn = self.last_record_lsn;
        if lsn < last_record_lsn {
            return Err(WriteError::LsnNotAdvancing {
                timeline: timeline.id,
                lsn,
                last_record_lsn,
            });
        }
        if lsn < self.max_put_lsn {
            return Err(WriteError::FinishBelowPut {
                timeline: timeline.id,
                lsn,
                max_put_lsn: self.max_put_lsn,
            });
        }
        if timeline.apply_batch(&mut self.batch, lsn, self.prev_record_lsn) {
            timeline.freeze_locked();
            timeline.flush_if_backlogged()?;
        }
        Ok(())
    }
}
