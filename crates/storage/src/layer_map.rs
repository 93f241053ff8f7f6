//! Which layers of one timeline can hold versions of (key, lsn): the open
//! in-memory layer, frozen in-memory layers, and delta and image files.
//!
//! Levels: an L0 delta is a flushed frozen layer (its LSN range, keys from
//! its first to its last key). Compaction replaces all L0s covering LSNs
//! `[a, b)` with L1 deltas covering `[a, b)` whose key ranges tile the key
//! space. A delta is L1 when another delta has exactly its LSN range, or
//! when its key range is the whole key space (a single L1 file).
//!
//! Invariant: for any one key, the open layer, the frozen layers and the
//! delta files whose key range contains it cover disjoint LSN ranges (each
//! freeze ends a range where the next begins; L1 files of one compaction
//! share an LSN range but not keys; every L1 is older than every L0).
//! Image layers may sit at any LSN. So "the delta holding the newest
//! versions of K below LSN X" is the one with the greatest start below X
//! whose key range contains K: a delta not containing K holds no version
//! of it.

use std::sync::Arc;

use postgres_wal::Lsn;

use crate::key::Key;
use crate::layer::memory::InMemoryLayer;
use crate::layer::{LayerDesc, LayerHandle};

/// The layers of one timeline.
pub struct LayerMap {
    /// Receives writes; covers `start_lsn..`.
    pub open: InMemoryLayer,
    /// Frozen, not yet flushed; oldest first.
    pub frozen: Vec<Arc<InMemoryLayer>>,
    /// Delta files sorted by LSN start.
    pub deltas: Vec<Arc<LayerHandle>>,
    /// Image files sorted by LSN.
    pub images: Vec<Arc<LayerHandle>>,
}

/// A layer holding versions of a key (in memory or a delta file).
pub enum DeltaSource<'a> {
    /// Open or frozen in-memory layer.
    Memory(&'a InMemoryLayer),
    /// A delta file.
    File(&'a Arc<LayerHandle>),
}

impl DeltaSource<'_> {
    /// First LSN the source covers.
    pub fn start_lsn(&self) -> Lsn {
        match self {
            DeltaSource::Memory(layer) => layer.start_lsn(),
            DeltaSource::File(handle) => handle.desc().lsn_range.start,
        }
    }
}

impl LayerMap {
    /// A map with only an empty open layer starting at `start_lsn`.
    pub fn new(start_lsn: Lsn) -> LayerMap {
        LayerMap {
            open: InMemoryLayer::new(start_lsn),
            frozen: Vec::new(),
            deltas: Vec::new(),
            images: Vec::new(),
        }
    }

    /// The layer holding the newest versions of `key` below `cont_lsn`
    /// (exclusive), ignoring images.
    pub fn find_delta(&self, key: Key, cont_lsn: Lsn) -> Option<DeltaSource<'_>> {
        if self.open.start_lsn() < cont_lsn {
            return Some(DeltaSource::Memory(&self.open));
        }
        if let Some(frozen) = self.frozen.iter().rev().find(|f| f.start_lsn() < cont_lsn) {
            return Some(DeltaSource::Memory(frozen));
        }
        self.deltas
            .iter()
            .rev()
            .find(|d| d.desc().lsn_range.start < cont_lsn && d.desc().contains_key(&key))
            .map(DeltaSource::File)
    }

    /// The newest image layer below `cont_lsn` (exclusive) covering `key`.
    pub fn find_image(&self, key: Key, cont_lsn: Lsn) -> Option<&Arc<LayerHandle>> {
        self.images
            .iter()
            .rev()
            .find(|i| i.desc().image_lsn() < cont_lsn && i.desc().contains_key(&key))
    }

    /// Adds a delta file, keeping the order.
    pub fn insert_delta(&mut self, handle: Arc<LayerHandle>) {
        let at = self
            .deltas
            .partition_point(|d| d.desc().lsn_range.start < handle.desc().lsn_range.start);
        self.deltas.insert(at, handle);
    }

    /// Adds an image file, keeping the order.
    pub fn insert_image(&mut self, handle: Arc<LayerHandle>) {
        let at = self
            .images
            .partition_point(|i| i.desc().image_lsn() <= handle.desc().image_lsn());
        self.images.insert(at, handle);
    }

    /// Whether a delta file is L1 (see the module doc).
    pub fn is_l1(&self, handle: &LayerHandle) -> bool {
        let desc = handle.desc();
        desc.key_range == (Key::MIN..Key::MAX)
            || self
                .deltas
                .iter()
                .any(|d| d.uid() != handle.uid() && d.desc().lsn_range == desc.lsn_range)
    }

    /// The L0 delta files, oldest first.
    pub fn l0_deltas(&self) -> Vec<Arc<LayerHandle>> {
        self.deltas
            .iter()
            .filter(|d| !self.is_l1(d))
            .cloned()
            .collect()
    }

    /// Every layer file, deltas then images.
    pub fn files(&self) -> impl Iterator<Item = &Arc<LayerHandle>> {
        self.deltas.iter().chain(self.images.iter())
    }

    /// Descriptions of every layer file.
    pub fn file_descs(&self) -> Vec<LayerDesc> {
        self.files().map(|h| h.desc().clone()).collect()
    }
}
