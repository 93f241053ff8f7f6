//! Sizes of a timeline: bytes of its layer files (physical), bytes of its
//! relations at an LSN (logical), and layer counts per level for metrics.

use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::Lsn;

use super::Timeline;
use crate::error::GetError;
use crate::key::{Key, KeyKind};
use crate::layer::{LayerHandle, LayerKind};
use crate::stats::ReadPurpose;
use crate::value::Value;

/// Layer files of one timeline per level, with their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// L0 delta files (flushed frozen layers).
    pub l0_count: usize,
    /// Bytes of the L0 files.
    pub l0_bytes: u64,
    /// L1 delta files (compaction output).
    pub l1_count: usize,
    /// Bytes of the L1 files.
    pub l1_bytes: u64,
    /// Image layer files.
    pub image_count: usize,
    /// Bytes of the image files.
    pub image_bytes: u64,
}

/// One layer file as the layer-map view reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerFileInfo {
    /// Key range × LSN range and kind.
    pub desc: crate::layer::LayerDesc,
    /// Whether a delta file is L1 (compaction output); false for images.
    pub is_l1: bool,
    /// Bytes of the file (0 when it cannot be read).
    pub size_bytes: u64,
}

/// One in-memory layer (the open one or a frozen one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InMemoryLayerInfo {
    /// First LSN it covers.
    pub start_lsn: Lsn,
    /// End of its LSN range (exclusive); `None` for the open layer.
    pub end_lsn: Option<Lsn>,
    /// Bytes of values it holds.
    pub size_bytes: u64,
}

/// Every layer a timeline reads from, at one moment: what a layer-map
/// picture needs (its ancestors' layers are not included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerMapInfo {
    /// The open layer first, then frozen ones, oldest first.
    pub in_memory: Vec<InMemoryLayerInfo>,
    /// Delta files by LSN start, then image files by LSN.
    pub files: Vec<LayerFileInfo>,
}

impl Timeline {
    /// Records the size of a file this timeline just wrote.
    pub(super) fn note_file_size(&self, name: &str, bytes: u64) {
        self.file_sizes.lock().insert(name.to_owned(), bytes);
    }

    /// Forgets a deleted file's size.
    pub(super) fn forget_file_size(&self, name: &str) {
        self.file_sizes.lock().remove(name);
    }

    /// Bytes of a layer file: remembered, or asked of the file system once
    /// (files found on open). An unreadable file counts as 0 bytes.
    pub(super) fn file_size(&self, handle: &LayerHandle) -> u64 {
        let name = handle.desc().file_name();
        if let Some(size) = self.file_sizes.lock().get(&name) {
            return *size;
        }
        // Asked without holding the map lock: one open + stat.
        let size = self
            .shared
            .io
            .open_read(handle.path())
            .and_then(|f| f.len())
            .unwrap_or(0);
        self.file_sizes.lock().insert(name, size);
        size
    }

    /// Sum of the bytes of this timeline's layer files (not its ancestors').
    /// Cheap after the first call (sizes are remembered).
    pub fn physical_size_bytes(&self) -> u64 {
        let stats = self.layer_stats();
        stats.l0_bytes + stats.l1_bytes + stats.image_bytes
    }

    /// The layer map as it is now. The map lock is held only to copy the
    /// handles; file sizes are looked up afterwards (one stat per file the
    /// first time).
    pub fn layer_map_info(&self) -> LayerMapInfo {
        let (in_memory, files) = {
            let map = self.layers.read();
            let mut in_memory = vec![InMemoryLayerInfo {
                start_lsn: map.open.start_lsn(),
                end_lsn: None,
                size_bytes: map.open.size_bytes(),
            }];
            in_memory.extend(map.frozen.iter().map(|frozen| InMemoryLayerInfo {
                start_lsn: frozen.start_lsn(),
                end_lsn: Some(frozen.end_lsn()),
                size_bytes: frozen.size_bytes(),
            }));
            let files: Vec<(std::sync::Arc<LayerHandle>, bool)> =
                map.files().map(|h| (h.clone(), map.is_l1(h))).collect();
            (in_memory, files)
        };
        let files = files
            .into_iter()
            .map(|(handle, is_l1)| LayerFileInfo {
                desc: handle.desc().clone(),
                is_l1: is_l1 && handle.desc().kind == LayerKind::Delta,
                size_bytes: self.file_size(&handle),
            })
            .collect();
        LayerMapInfo { in_memory, files }
    }

    /// Layer files per level with their bytes (for metrics).
    pub fn layer_stats(&self) -> LayerStats {
        let files: Vec<(std::sync::Arc<LayerHandle>, bool)> = {
            let map = self.layers.read();
            map.files().map(|h| (h.clone(), map.is_l1(h))).collect()
        };
        let mut stats = LayerStats::default();
        for (handle, is_l1) in files {
            let size = self.file_size(&handle);
            let (count, bytes) = match (handle.desc().kind, is_l1) {
                (LayerKind::Image, _) => (&mut stats.image_count, &mut stats.image_bytes),
                (LayerKind::Delta, true) => (&mut stats.l1_count, &mut stats.l1_bytes),
                (LayerKind::Delta, false) => (&mut stats.l0_count, &mut stats.l0_bytes),
            };
            *count += 1;
            *bytes += size;
        }
        stats
    }

    /// Logical size at `lsn` of the relation forks `forks`: the sum of
    /// their block counts × `BLCKSZ` (a fork without a size key counts 0).
    /// The one definition of logical size; the pageserver's API reports it
    /// for the forks the relation directories list, whose encoding storage
    /// does not know (ingest keeps a dropped relation's size key and removes
    /// the relation from its database's directory). Cost: one read per fork.
    pub fn logical_size_bytes_of(
        &self,
        lsn: Lsn,
        forks: impl IntoIterator<Item = (RelFileNode, ForkNumber)>,
    ) -> Result<u64, GetError> {
        self.check_readable(lsn)?;
        forks.into_iter().try_fold(0u64, |total, (rel, fork)| {
            Ok(total + self.fork_bytes(Key::rel_size(rel, fork), lsn)?)
        })
    }

    /// [`Timeline::logical_size_bytes_of`] every relation fork that has a
    /// size key at `lsn`, dropped relations included. Cost: one pass over
    /// the key indexes of the relation key space plus one read per fork.
    pub fn logical_size_bytes(&self, lsn: Lsn) -> Result<u64, GetError> {
        self.check_readable(lsn)?;
        // Relation keys (tag 0) all sort below the first directory key.
        let keys = self.list_keys_unchecked(&(Key::MIN..Key::db_dir()), lsn)?;
        let forks = keys.into_iter().filter_map(|key| match key.kind() {
            KeyKind::RelSize { rel, fork } => Some((rel, fork)),
            _ => None,
        });
        self.logical_size_bytes_of(lsn, forks)
    }

    /// Bytes of one relation fork by its size key (0 without one).
    fn fork_bytes(&self, key: Key, lsn: Lsn) -> Result<u64, GetError> {
        let bytes = match self.reconstruct_value(key, lsn, ReadPurpose::Background) {
            Ok(bytes) => bytes,
            Err(GetError::KeyNotFound { .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        let blocks = Value::decode_rel_size(&bytes).ok_or_else(|| GetError::BadValue {
            key,
            lsn,
            reason: format!("relation size of {} bytes, expected 4", bytes.len()),
        })?;
        Ok(u64::from(blocks) * BLCKSZ as u64)
    }
}
