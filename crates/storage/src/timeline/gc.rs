//! Garbage collection: deletes the layer files that no read at or above the
//! GC cutoff, nor at any child's branch point, can reach
//! ([`crate::policy::gc_garbage`] decides). The cutoff is persisted in the
//! metadata before GC runs (`set_gc_cutoff`), so a crash mid-way leaves
//! only files that were garbage anyway or files still listed — never a
//! readable LSN without its data.

use std::sync::Arc;

use postgres_wal::Lsn;

use super::Timeline;
use crate::error::WriteError;
use crate::layer::{LayerDesc, LayerHandle, LayerKind};
use crate::policy::{self, GcLayer};

/// What one GC run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcResult {
    /// Layer files deleted.
    pub layers_removed: Vec<LayerDesc>,
    /// Bytes of the files deleted.
    pub bytes_removed: u64,
    /// Layer files kept.
    pub layers_kept: usize,
}

impl Timeline {
    /// Deletes layer files that no read at or above the GC cutoff, nor at
    /// any of `retain_lsns` (children's branch points), can reach. Holds
    /// the layer work lock (not the write lock); reads wait only while the
    /// files are unlinked.
    pub(crate) fn gc(&self, retain_lsns: &[Lsn]) -> Result<GcResult, WriteError> {
        let _work = self.layer_work.lock();
        self.check_writable()?;
        let (cutoff, disk_consistent) = {
            let state = self.lsns.lock();
            (state.gc_cutoff, state.disk_consistent)
        };
        let removed: Vec<Arc<LayerHandle>> = {
            let mut map = self.layers.write();
            let files: Vec<Arc<LayerHandle>> = map.files().cloned().collect();
            let descs: Vec<GcLayer> = files
                .iter()
                .map(|h| GcLayer {
                    is_image: h.desc().kind == LayerKind::Image,
                    key_range: h.desc().key_range.clone(),
                    lsn_range: h.desc().lsn_range.clone(),
                })
                .collect();
            let garbage = policy::gc_garbage(&descs, cutoff, disk_consistent, retain_lsns);
            let removed: Vec<Arc<LayerHandle>> =
                garbage.iter().map(|&i| files[i].clone()).collect();
            map.deltas
                .retain(|h| !removed.iter().any(|r| r.uid() == h.uid()));
            map.images
                .retain(|h| !removed.iter().any(|r| r.uid() == h.uid()));
            removed
        };
        // Sizes before the files go (a size learnt from the file itself).
        let bytes_removed = removed.iter().map(|h| self.file_size(h)).sum();
        self.remove_layer_files(&removed)?;
        let result = GcResult {
            layers_removed: removed.iter().map(|h| h.desc().clone()).collect(),
            bytes_removed,
            layers_kept: self.layers.read().files().count(),
        };
        self.shared.stats.record_gc(&result);
        Ok(result)
    }
}
