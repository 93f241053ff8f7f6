//! Compaction (L0 deltas → L1 deltas split by key range) and image layer
//! creation per key partition. Both run under the layer work lock only:
//! they read immutable layer files and the read path, write new files with
//! the atomic protocol, and take the layer map's write lock just to install
//! the result, so writers and readers keep going throughout.
//!
//! Crash safety: an L1 set is written completely (every file durable)
//! before it replaces the L0s in the map and the L0 files are deleted; on
//! open, [`crate::policy::interrupted_compaction_garbage`] keeps exactly one
//! copy of the data. An image layer at L ≤ `disk_consistent_lsn` is
//! committed by its rename; partitions are independent.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres_wal::Lsn;

use super::Timeline;
use crate::error::{GetError, WriteError};
use crate::key::Key;
use crate::layer::file::{encode_delta_layer_from_stored, encode_layer, LayerFile};
use crate::layer::{LayerDesc, LayerHandle, LayerKind};
use crate::policy::{self, CompactionPolicy, LayerInfo};
use crate::stats::ReadPurpose;
use crate::value::Value;

/// What one [`Timeline::compact`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionResult {
    /// Files written (L1 deltas and images).
    pub layers_created: Vec<LayerDesc>,
    /// L0 files the L1s replaced (deleted).
    pub layers_removed: Vec<LayerDesc>,
    /// Bytes of the files written.
    pub bytes_written: u64,
    /// Number of image layers created.
    pub images_created: usize,
    /// Partitions due for an image but skipped because a key in them
    /// cannot be reconstructed (the error is logged by nobody here: the
    /// count lets the caller report it).
    pub image_partitions_skipped: usize,
    /// Time spent compacting L0s.
    pub compaction_duration: Duration,
    /// Time spent creating images.
    pub image_duration: Duration,
}

/// Versions to write into a layer file, sorted by (key, lsn).
type Versions = Vec<(Key, Lsn, Value)>;

/// One version to copy into an L1 file: which input file and position.
struct Source {
    key: Key,
    lsn: Lsn,
    file: usize,
    position: usize,
}

impl Timeline {
    /// Compacts L0 deltas into L1 deltas when `compaction_threshold` L0s
    /// wait, then creates image layers at `disk_consistent_lsn` for the key
    /// partitions with at least `image_creation_threshold` delta levels
    /// above their newest image.
    ///
    /// Blocking: runs file reads and writes on the calling thread, holding
    /// only the layer work lock (so it waits for, and delays, flushes and
    /// GC of this timeline — never writers, except a writer under
    /// back-pressure). Reads keep working throughout.
    pub fn compact(&self, policy: &CompactionPolicy) -> Result<CompactionResult, WriteError> {
        let _work = self.layer_work.lock();
        self.check_writable()?;
        let mut result = CompactionResult::default();
        let started = Instant::now();
        self.compact_l0(policy, &mut result)?;
        result.compaction_duration = started.elapsed();
        let started = Instant::now();
        self.create_images(policy, &mut result)?;
        result.image_duration = started.elapsed();
        self.shared.stats.record_compaction(&result);
        Ok(result)
    }

    fn compact_l0(
        &self,
        policy: &CompactionPolicy,
        result: &mut CompactionResult,
    ) -> Result<(), WriteError> {
        let (inputs, l1_end) = {
            let map = self.layers.read();
            let l1_end = map
                .deltas
                .iter()
                .filter(|d| map.is_l1(d))
                .map(|d| d.desc().lsn_range.end)
                .max()
                .unwrap_or(Lsn(0));
            (map.l0_deltas(), l1_end)
        };
        let ranges: Vec<Range<Lsn>> = inputs.iter().map(|h| h.desc().lsn_range.clone()).collect();
        let picked = policy::pick_l0_for_compaction(&ranges, l1_end, policy.compaction_threshold);
        let inputs: Vec<Arc<LayerHandle>> = picked.iter().map(|&i| inputs[i].clone()).collect();
        let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
            return Ok(());
        };
        let lsn_range = first.desc().lsn_range.start..last.desc().lsn_range.end;
        let io = self.shared.io.as_ref();
        let files = inputs
            .iter()
            .map(|h| h.load(io))
            .collect::<Result<Vec<_>, _>>()
            .map_err(GetError::from)?;
        let (sources, key_sizes) = merge_indexes(&files);
        let mut created = Vec::new();
        for keys in policy::split_l1(&key_sizes, policy.compaction_target_size) {
            let desc = LayerDesc {
                kind: LayerKind::Delta,
                key_range: keys.clone(),
                lsn_range: lsn_range.clone(),
            };
            let first = sources.partition_point(|s| s.key < keys.start);
            let end = sources.partition_point(|s| s.key < keys.end);
            // Payloads are copied as stored: no decompression and
            // recompression of every version (#16's profile of a
            // pageserver under pgbench had zstd at the top).
            let mut payloads = Vec::with_capacity(end - first);
            for s in &sources[first..end] {
                let stored = files[s.file]
                    .read_stored(s.position)
                    .map_err(GetError::from)?;
                payloads.push((s.key, s.lsn, stored));
            }
            let encoded =
                encode_delta_layer_from_stored(&desc, payloads.iter().map(|(k, l, p)| (*k, *l, p)));
            created.push(self.commit_layer(&desc, encoded, result)?);
        }
        {
            let mut map = self.layers.write();
            map.deltas
                .retain(|h| !inputs.iter().any(|i| i.uid() == h.uid()));
            for handle in created {
                map.insert_delta(handle);
            }
        }
        self.remove_layer_files(&inputs)?;
        result
            .layers_removed
            .extend(inputs.iter().map(|h| h.desc().clone()));
        Ok(())
    }

    /// Encodes and commits one layer file; records it in `result`.
    fn write_layer(
        &self,
        desc: &LayerDesc,
        values: &[(Key, Lsn, Value)],
        result: &mut CompactionResult,
    ) -> Result<Arc<LayerHandle>, WriteError> {
        let encoded = encode_layer(desc, values.iter().map(|(k, l, v)| (*k, *l, v)));
        self.commit_layer(desc, encoded, result)
    }

    /// Commits one encoded layer file (an encoding error is a bug in the
    /// caller, reported as a failure of that file); records it in `result`.
    fn commit_layer(
        &self,
        desc: &LayerDesc,
        encoded: Result<Vec<u8>, String>,
        result: &mut CompactionResult,
    ) -> Result<Arc<LayerHandle>, WriteError> {
        let bytes = encoded.map_err(|reason| {
            self.fail(
                self.dir.join(desc.file_name()),
                std::io::Error::other(reason),
            )
        })?;
        let path = self.write_file(&desc.file_name(), &bytes)?;
        self.note_file_size(&desc.file_name(), bytes.len() as u64);
        result.bytes_written += bytes.len() as u64;
        result.layers_created.push(desc.clone());
        Ok(Arc::new(LayerHandle::new(desc.clone(), path)))
    }

    /// Creates images at `disk_consistent_lsn` for the partitions the image
    /// policy says are due, then images at the GC cutoff for partitions
    /// whose history went quiet below it (so GC can free what they hide).
    fn create_images(
        &self,
        policy: &CompactionPolicy,
        result: &mut CompactionResult,
    ) -> Result<(), WriteError> {
        let lsn = self.disk_consistent_lsn();
        if policy.image_creation_threshold == 0 || lsn == Lsn(0) {
            return Ok(());
        }
        // Below the cutoff, or an ancestor not yet re-fed up to the branch
        // point after a restart: an image built now could miss data.
        if self.check_readable(lsn).is_err() {
            return Ok(());
        }
        let keys = self.list_keys_unchecked(&(Key::MIN..Key::MAX), lsn)?;
        let partitions = policy::partition_keys(&keys, policy.compaction_target_size);
        let due = policy::partitions_needing_images(
            &partitions,
            &self.layer_infos(),
            policy.image_creation_threshold,
            lsn,
        );
        for part in due.into_iter().map(|i| &partitions[i]) {
            let first = keys.partition_point(|k| *k < part.start);
            let end = keys.partition_point(|k| *k < part.end);
            self.create_partition_image(part, &keys[first..end], lsn, result)?;
        }

        // An image at the cutoff must survive a crash to replace anything.
        let cutoff = self.gc_cutoff().min(lsn);
        if cutoff == Lsn(0) || self.check_readable(cutoff).is_err() {
            return Ok(());
        }
        // Records in memory lie above the cutoff (it is at most
        // `disk_consistent_lsn`): the timeline is being written, not quiet.
        {
            let map = self.layers.read();
            if !map.open.is_empty() || !map.frozen.is_empty() {
                return Ok(());
            }
        }
        let (infos, sizes): (Vec<LayerInfo>, Vec<u64>) = {
            let handles: Vec<Arc<LayerHandle>> = self.layers.read().files().cloned().collect();
            handles
                .iter()
                .map(|h| (layer_info(h), self.file_size(h)))
                .unzip()
        };
        let quiet = policy::partitions_quiet_below(&partitions, &infos, &sizes, cutoff);
        for part in quiet.into_iter().map(|i| &partitions[i]) {
            let keys = self.list_keys_unchecked(part, cutoff)?;
            self.create_partition_image(part, &keys, cutoff, result)?;
        }
        Ok(())
    }

    /// What the image policy knows of the current layer map.
    fn layer_infos(&self) -> Vec<LayerInfo> {
        self.layers.read().files().map(|h| layer_info(h)).collect()
    }

    /// Writes and installs the image of `part` (whose keys at `lsn` are
    /// `keys`) at `lsn`, unless one exists or a key cannot be rebuilt.
    fn create_partition_image(
        &self,
        part: &Range<Key>,
        keys: &[Key],
        lsn: Lsn,
        result: &mut CompactionResult,
    ) -> Result<(), WriteError> {
        let desc = LayerDesc {
            kind: LayerKind::Image,
            key_range: part.clone(),
            lsn_range: lsn..Lsn(lsn.0 + 1),
        };
        if self.layers.read().images.iter().any(|i| *i.desc() == desc) {
            return Ok(());
        }
        let Some(values) = self.image_values(keys, lsn)? else {
            result.image_partitions_skipped += 1;
            return Ok(());
        };
        let handle = self.write_layer(&desc, &values, result)?;
        self.layers.write().insert_image(handle);
        result.images_created += 1;
        Ok(())
    }

    /// The value at `lsn` of every key of `keys` that has one; `None` if
    /// some key cannot be reconstructed (an image missing it would claim
    /// the key does not exist, so the partition gets no image).
    fn image_values(&self, keys: &[Key], lsn: Lsn) -> Result<Option<Versions>, WriteError> {
        let mut values = Vec::with_capacity(keys.len());
        for &key in keys {
            match self.reconstruct_value(key, lsn, ReadPurpose::Background) {
                Ok(bytes) => values.push((key, lsn, Value::Image(bytes))),
                Err(GetError::KeyNotFound { .. }) => {}
                Err(GetError::Redo { .. } | GetError::BadValue { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(values))
    }

    /// Deletes layer files no longer in the layer map. Takes the GC guard
    /// exclusively once, as a fence: every read that planned with the old
    /// map holds it shared until done, and reads starting after the fence
    /// see the new map, so no read can still reach these files. The guard
    /// is released before unlinking: deleting gigabytes of layers after a
    /// large compaction takes long, and every read of this timeline (and
    /// of its branches, which read through it) would wait for it.
    pub(super) fn remove_layer_files(
        &self,
        handles: &[Arc<LayerHandle>],
    ) -> Result<(), WriteError> {
        if handles.is_empty() {
            return Ok(());
        }
        drop(self.gc_guard.write());
        for handle in handles {
            self.shared
                .io
                .remove_file(handle.path())
                .map_err(|source| self.fail(handle.path().clone(), source))?;
            self.forget_file_size(&handle.desc().file_name());
        }
        self.shared
            .io
            .sync_dir(&self.dir)
            .map_err(|source| self.fail(self.dir.clone(), source))
    }
}

impl Timeline {
    /// Writes an image layer holding the value at `lsn` of every key in
    /// `keys` that exists there, so reads at or above `lsn` need no older
    /// history. Returns the new layer (or `None` if an identical one exists).
    pub fn create_image_layer(
        &self,
        keys: Range<Key>,
        lsn: Lsn,
    ) -> Result<Option<LayerDesc>, WriteError> {
        let _work = self.layer_work.lock();
        self.check_writable()?;
        self.check_readable(lsn)?;
        let desc = LayerDesc {
            kind: LayerKind::Image,
            key_range: keys.clone(),
            lsn_range: lsn..Lsn(lsn.0 + 1),
        };
        if !desc.is_well_formed() || self.layers.read().images.iter().any(|i| *i.desc() == desc) {
            return Ok(None);
        }
        let mut values = Vec::new();
        for key in self.list_keys_unchecked(&keys, lsn)? {
            let bytes = self.reconstruct_value(key, lsn, ReadPurpose::Background)?;
            values.push((key, Value::Image(bytes)));
        }
        let values: Vec<(Key, Lsn, Value)> = values.into_iter().map(|(k, v)| (k, lsn, v)).collect();
        let handle = self.write_layer(&desc, &values, &mut CompactionResult::default())?;
        self.layers.write().insert_image(handle);
        Ok(Some(desc))
    }

    /// Creates an image layer of the whole key space at
    /// `disk_consistent_lsn` if the image policy says one is due (at least
    /// `threshold` delta files above the newest whole-key-space image).
    /// The background task of the pageserver calls this periodically.
    pub fn create_image_layer_if_due(
        &self,
        threshold: usize,
    ) -> Result<Option<LayerDesc>, WriteError> {
        let deltas_above = {
            let map = self.layers.read();
            let newest_full_image = map
                .images
                .iter()
                .filter(|i| i.desc().key_range == (Key::MIN..Key::MAX))
                .map(|i| i.desc().image_lsn())
                .max();
            map.deltas
                .iter()
                .filter(|d| newest_full_image.is_none_or(|lsn| d.desc().lsn_range.start > lsn))
                .count()
        };
        let lsn = self.disk_consistent_lsn();
        if !policy::image_layer_due(deltas_above, threshold) || lsn < self.gc_cutoff() {
            return Ok(None);
        }
        self.create_image_layer(Key::MIN..Key::MAX, lsn)
    }
}

/// What the image policy knows about one layer file.
fn layer_info(handle: &LayerHandle) -> LayerInfo {
    LayerInfo {
        is_image: handle.desc().kind == LayerKind::Image,
        key_range: handle.desc().key_range.clone(),
        lsn_range: handle.desc().lsn_range.clone(),
    }
}

/// Every version of the input files sorted by (key, lsn), and the stored
/// bytes per key (the split policy's input).
fn merge_indexes(files: &[Arc<LayerFile>]) -> (Vec<Source>, Vec<(Key, u64)>) {
    let mut sources = Vec::new();
    let mut sizes: Vec<(Key, u64)> = Vec::new();
    for (file_no, file) in files.iter().enumerate() {
        let index = file.index();
        for (position, entry) in index.iter().enumerate() {
            sources.push(Source {
                key: entry.key,
                lsn: entry.lsn,
                file: file_no,
                position,
            });
            let end = index
                .get(position + 1)
                .map_or(file.header().index_offset, |n| n.offset);
            sizes.push((entry.key, end.saturating_sub(entry.offset)));
        }
    }
    sources.sort_by_key(|s| (s.key, s.lsn));
    sizes.sort_by_key(|(k, _)| *k);
    let mut key_sizes: Vec<(Key, u64)> = Vec::new();
    for (key, size) in sizes {
        match key_sizes.last_mut() {
            Some((last, total)) if *last == key => *total += size,
            _ => key_sizes.push((key, size)),
        }
    }
    (sources, key_sizes)
}
