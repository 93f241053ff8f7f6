//! A repository: the directory holding every timeline of one tenant, and
//! the operations that change which timelines exist (create, branch,
//! delete) or what they keep (GC).
//!
//! Layout: `<dir>/timelines/<timeline id>/{metadata, <layer files>}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use postgres_wal::Lsn;

use crate::cache::PageCache;
use crate::error::RepositoryError;
use crate::id::TimelineId;
use crate::io::{FileIo, StdFileIo, TEMP_SUFFIX};
use crate::materialized::MaterializedCache;
use crate::metadata::TimelineMetadata;
use crate::policy::FreezePolicy;
use crate::redo::{BuiltinRedo, Reconstruct};
use crate::stats::StorageStats;
use crate::timeline::load::read_metadata;
use crate::timeline::{GcResult, Timeline};

/// Name of the directory holding the timelines.
pub const TIMELINES_DIR_NAME: &str = "timelines";

/// Tunables of a repository.
#[derive(Clone, Debug)]
pub struct RepositoryConfig {
    /// When writers freeze and flush the open layer.
    pub freeze: FreezePolicy,
    /// Capacity of the cache of values read from layer files.
    pub page_cache_bytes: usize,
    /// Writers freeze but do not flush; once more than this many frozen
    /// layers wait for a flush, the writer that froze flushes them itself
    /// (back-pressure bounding memory to about `(this + 1) ×
    /// freeze.max_open_bytes`).
    pub max_frozen_layers: usize,
    /// Capacity of the cache of materialised page images, shared by every
    /// timeline ([`crate::materialized`]); 0 disables it.
    pub materialized_cache_bytes: usize,
    /// A read that applied at least this many records stores its result
    /// as the key's materialised image ([`crate::policy::fill_after_read`];
    /// 0: only [`crate::Timeline::materialize_hot`] fills the cache).
    pub materialize_after_records: usize,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            freeze: FreezePolicy::default(),
            page_cache_bytes: 64 * 1024 * 1024,
            max_frozen_layers: 4,
            materialized_cache_bytes: 128 * 1024 * 1024,
            materialize_after_records: 3,
        }
    }
}

/// What every timeline of a repository shares.
pub(crate) struct Shared {
    pub(crate) io: Arc<dyn FileIo>,
    pub(crate) redo: Arc<dyn Reconstruct>,
    pub(crate) cache: PageCache,
    pub(crate) materialized: MaterializedCache,
    pub(crate) config: RepositoryConfig,
    pub(crate) stats: StorageStats,
}

/// The timelines of one tenant.
pub struct Repository {
    dir: PathBuf,
    timelines_dir: PathBuf,
    shared: Arc<Shared>,
    timelines: RwLock<BTreeMap<TimelineId, Arc<Timeline>>>,
    /// Serialises create, branch, delete and GC, so GC always sees every
    /// child's branch point.
    structure_lock: Mutex<()>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("dir", &self.dir)
            .field(
                "timelines",
                &self.timelines.read().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RepositoryError + '_ {
    move |source| RepositoryError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Repository {
    /// Opens (creating if needed) the repository in `dir` with local files
    /// and the built-in redo (images and derived operations only).
    pub fn open(dir: &Path, config: RepositoryConfig) -> Result<Repository, RepositoryError> {
        Repository::open_with(dir, config, Arc::new(StdFileIo), Arc::new(BuiltinRedo))
    }

    /// Opens with a chosen file I/O implementation (tests inject faults) and
    /// redo implementation (the pageserver plugs native redo in here).
    pub fn open_with(
        dir: &Path,
        config: RepositoryConfig,
        io: Arc<dyn FileIo>,
        redo: Arc<dyn Reconstruct>,
    ) -> Result<Repository, RepositoryError> {
        let timelines_dir = dir.join(TIMELINES_DIR_NAME);
        io.create_dir_all(&timelines_dir)
            .map_err(io_error(&timelines_dir))?;
        let shared = Arc::new(Shared {
            io,
            redo,
            cache: PageCache::new(config.page_cache_bytes),
            materialized: MaterializedCache::new(config.materialized_cache_bytes),
            config,
            stats: StorageStats::default(),
        });
        let repository = Repository {
            dir: dir.to_owned(),
            timelines_dir,
            shared,
            timelines: RwLock::new(BTreeMap::new()),
            structure_lock: Mutex::new(()),
        };
        repository.load_timelines()?;
        Ok(repository)
    }

    /// Loads every timeline, ancestors before children.
    fn load_timelines(&self) -> Result<(), RepositoryError> {
        let io = self.shared.io.as_ref();
        let mut pending = Vec::new();
        for entry in io
            .list_dir(&self.timelines_dir)
            .map_err(io_error(&self.timelines_dir))?
        {
            let path = self.timelines_dir.join(&entry.name);
            if entry.name.ends_with(TEMP_SUFFIX) {
                // An interrupted create or delete.
                io.remove_dir_all(&path).map_err(io_error(&path))?;
                continue;
            }
            let Ok(id) = entry.name.parse::<TimelineId>() else {
                continue;
            };
            if entry.is_dir {
                pending.push((id, path.clone(), read_metadata(io, &path)?));
            }
        }
        let mut timelines = self.timelines.write();
        while !pending.is_empty() {
            let before = pending.len();
            let mut still_pending = Vec::new();
            for (id, path, metadata) in pending {
                let ancestor = match metadata.ancestor {
                    None => None,
                    Some((ancestor_id, _)) => match timelines.get(&ancestor_id) {
                        Some(a) => Some(a.clone()),
                        None => {
                            still_pending.push((id, path, metadata));
                            continue;
                        }
                    },
                };
                let timeline = Timeline::load(path, id, &metadata, ancestor, self.shared.clone())?;
                timelines.insert(id, Arc::new(timeline));
            }
            if still_pending.len() == before {
                let (id, path, metadata) = &still_pending[0];
                return Err(RepositoryError::Corrupt {
                    path: path.clone(),
                    reason: format!(
                        "timeline {id}: ancestor {:?} is missing",
                        metadata.ancestor.map(|(a, _)| a)
                    ),
                });
            }
            pending = still_pending;
        }
        Ok(())
    }

    /// The repository directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates an empty root timeline. Its `last_record_lsn` starts at 0/0;
    /// the caller imports the initdb data with puts at `initdb_lsn`, then
    /// `finish(initdb_lsn)` and `freeze_and_flush()` to make it durable.
    pub fn create_timeline(
        &self,
        id: TimelineId,
        pg_version: u32,
        initdb_lsn: Lsn,
    ) -> Result<Arc<Timeline>, RepositoryError> {
        let _guard = self.structure_lock.lock();
        self.check_new(id)?;
        let metadata = TimelineMetadata {
            disk_consistent_lsn: Lsn::INVALID,
            prev_record_lsn: Lsn::INVALID,
            ancestor: None,
            gc_cutoff: Lsn::INVALID,
            initdb_lsn,
            pg_version,
        };
        self.insert_new(id, &metadata, None)
    }

    /// Creates `new_id` as a branch of `ancestor_id` at `lsn`: constant time,
    /// nothing is copied. Refused below the ancestor's GC cutoff and beyond
    /// its last record. The branch starts with `last_record_lsn`,
    /// `disk_consistent_lsn` and `gc_cutoff` all at `lsn`.
    pub fn branch_timeline(
        &self,
        new_id: TimelineId,
        ancestor_id: TimelineId,
        lsn: Lsn,
    ) -> Result<Arc<Timeline>, RepositoryError> {
        let _guard = self.structure_lock.lock();
        self.check_new(new_id)?;
        let ancestor = self.timeline(ancestor_id)?;
        let gc_cutoff = ancestor.gc_cutoff();
        if lsn < gc_cutoff {
            return Err(RepositoryError::BranchBelowGcCutoff {
                ancestor: ancestor_id,
                lsn,
                gc_cutoff,
            });
        }
        let last_record_lsn = ancestor.last_record_lsn();
        if lsn > last_record_lsn {
            return Err(RepositoryError::BranchBeyondHead {
                ancestor: ancestor_id,
                lsn,
                last_record_lsn,
            });
        }
        let prev_record_lsn = if lsn == last_record_lsn {
            ancestor.prev_record_lsn()
        } else {
            Lsn::INVALID
        };
        let metadata = TimelineMetadata {
            disk_consistent_lsn: lsn,
            prev_record_lsn,
            ancestor: Some((ancestor_id, lsn)),
            gc_cutoff: lsn,
            initdb_lsn: ancestor.initdb_lsn(),
            pg_version: ancestor.pg_version(),
        };
        self.insert_new(new_id, &metadata, Some(ancestor))
    }

    fn check_new(&self, id: TimelineId) -> Result<(), RepositoryError> {
        if self.timelines.read().contains_key(&id) {
            return Err(RepositoryError::TimelineExists(id));
        }
        Ok(())
    }

    fn insert_new(
        &self,
        id: TimelineId,
        metadata: &TimelineMetadata,
        ancestor: Option<Arc<Timeline>>,
    ) -> Result<Arc<Timeline>, RepositoryError> {
        let timeline = Arc::new(Timeline::create(
            &self.timelines_dir,
            id,
            metadata,
            ancestor,
            self.shared.clone(),
        )?);
        self.timelines.write().insert(id, timeline.clone());
        Ok(timeline)
    }

    /// The timeline with this id.
    pub fn timeline(&self, id: TimelineId) -> Result<Arc<Timeline>, RepositoryError> {
        self.timelines
            .read()
            .get(&id)
            .cloned()
            .ok_or(RepositoryError::TimelineNotFound(id))
    }

    /// Every timeline, by id.
    pub fn list_timelines(&self) -> Vec<Arc<Timeline>> {
        self.timelines.read().values().cloned().collect()
    }

    /// Timelines branched directly from `id`, with their branch points.
    pub fn children(&self, id: TimelineId) -> Vec<(TimelineId, Lsn)> {
        self.timelines
            .read()
            .values()
            .filter_map(|t| {
                t.ancestor()
                    .filter(|(a, _)| *a == id)
                    .map(|(_, lsn)| (t.id(), lsn))
            })
            .collect()
    }

    /// Deletes a timeline and its files. Refused while children exist.
    pub fn delete_timeline(&self, id: TimelineId) -> Result<(), RepositoryError> {
        let _guard = self.structure_lock.lock();
        let timeline = self.timeline(id)?;
        let children: Vec<TimelineId> = self.children(id).into_iter().map(|(c, _)| c).collect();
        if !children.is_empty() {
            return Err(RepositoryError::HasChildren {
                timeline: id,
                children,
            });
        }
        self.timelines.write().remove(&id);
        timeline.shutdown();
        // Rename first so a crash mid-removal leaves a temp dir that the
        // next open deletes, never a half-deleted timeline.
        let io = self.shared.io.as_ref();
        let doomed = self.timelines_dir.join(format!("{id}{TEMP_SUFFIX}"));
        if io.list_dir(&doomed).is_ok() {
            io.remove_dir_all(&doomed).map_err(io_error(&doomed))?;
        }
        io.rename(timeline.dir(), &doomed)
            .map_err(io_error(&doomed))?;
        io.sync_dir(&self.timelines_dir)
            .map_err(io_error(&self.timelines_dir))?;
        io.remove_dir_all(&doomed).map_err(io_error(&doomed))
    }

    /// Deletes the layer files of `id` that no read at or above its GC
    /// cutoff, nor at any child's branch point, can reach; returns what was
    /// removed and the bytes freed. Blocking: deletes files on the calling
    /// thread; holds the repository's structure lock (branch creation and
    /// deletion wait) and the timeline's layer work lock, never its write
    /// lock; reads wait only while the files are unlinked.
    pub fn gc_timeline(&self, id: TimelineId) -> Result<GcResult, RepositoryError> {
        let _guard = self.structure_lock.lock();
        let timeline = self.timeline(id)?;
        let retain: Vec<Lsn> = self.children(id).into_iter().map(|(_, lsn)| lsn).collect();
        Ok(timeline.gc(&retain)?)
    }

    /// Counters for metrics: records applied per reconstruction, compaction,
    /// image and GC runs (lock-free; cheap to read at any time).
    pub fn stats(&self) -> &StorageStats {
        &self.shared.stats
    }

    /// Empties the page cache and the materialised images (benchmarks use
    /// this to measure cold reads).
    pub fn clear_page_cache(&self) {
        self.shared.cache.clear();
        self.shared.materialized.clear();
    }

    /// Wakes every `wait_lsn` waiter with `ShuttingDown` and refuses
    /// further reads and writes.
    pub fn shutdown(&self) {
        for timeline in self.timelines.read().values() {
            timeline.shutdown();
        }
    }
}
