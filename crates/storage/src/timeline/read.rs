//! The read path: find the newest image or will-init version of a key at or
//! below an LSN, collect every later version, and hand them to the redo
//! implementation. Walks this timeline's layers newest first, then the
//! ancestor's below the branch point.
//!
//! A materialised image ([`crate::materialized`]) of the key at `C ≤ lsn`,
//! on the timeline being walked, is a *floor*: only versions above `C` are
//! collected and the image is the base, exactly as if an image layer at
//! `C` existed — unless a stored image newer than `C` or a will-init
//! version above it ends the walk first.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;

use super::Timeline;
use crate::error::GetError;
use crate::key::Key;
use crate::layer::memory::InMemoryLayer;
use crate::layer::LayerHandle;
use crate::layer_map::{DeltaSource, LayerMap};
use crate::policy;
use crate::stats::ReadPurpose;
use crate::value::Value;

/// How far collecting versions in one timeline got.
enum Step {
    /// Found an image or will-init version: nothing older is needed.
    Done,
    /// An image layer covering the key does not hold it: the key had no
    /// value at that image's LSN, so nothing older matters either.
    AbsentBelow,
    /// This timeline has nothing older; continue in the ancestor.
    Exhausted,
    /// Reached the floor: the materialised image is the base.
    Floor,
}

/// The next file read of a lookup, planned under the layer map lock.
enum Next {
    /// Finished (in-memory layers answered, or nothing older here).
    Done(Step),
    /// Read versions in `lsns` from a delta file, then plan again.
    Delta {
        file: Arc<LayerHandle>,
        lsns: Range<Lsn>,
    },
    /// Read versions newer than the image from a delta file (if any), then
    /// the image itself; that ends the lookup.
    Image {
        delta: Option<(Arc<LayerHandle>, Range<Lsn>)>,
        image: Arc<LayerHandle>,
    },
}

/// Walks the layer map down from `cont_lsn`, reading in-memory layers on
/// the way, until a file must be read (or nothing older exists). An image
/// layer at least as new as the delta's start wins: only the delta's
/// versions above the image are needed.
///
/// With a `floor` (the LSN of a materialised image at or above every stored
/// image below `cont_lsn`), only versions above the floor are collected and
/// the walk ends there with [`Step::Floor`].
fn plan(
    map: &LayerMap,
    key: Key,
    cont_lsn: &mut Lsn,
    floor: Option<Lsn>,
    out: &mut Vec<(Lsn, Value)>,
) -> Next {
    loop {
        let delta = map.find_delta(key, *cont_lsn);
        let image = map.find_image(key, *cont_lsn);
        let image_lsn = image.map(|i| i.desc().image_lsn());
        if let Some(floor) = floor.filter(|f| image_lsn.is_none_or(|i| i <= *f)) {
            let above = Lsn(floor.0.saturating_add(1));
            if *cont_lsn <= above {
                return Next::Done(Step::Floor);
            }
            let Some(delta) = delta else {
                // Versions between the floor and here (if any) are in the
                // ancestor, below the branch point.
                return Next::Done(Step::Exhausted);
            };
            let start = delta.start_lsn().max(above);
            let lsns = start..*cont_lsn;
            *cont_lsn = start;
            match delta {
                DeltaSource::Memory(layer) => {
                    if layer.collect(key, lsns, out) {
                        return Next::Done(Step::Done);
                    }
                }
                DeltaSource::File(file) => {
                    return Next::Delta {
                        file: file.clone(),
                        lsns,
                    }
                }
            }
            continue;
        }
        let delta_wins = match (&delta, image_lsn) {
            (Some(d), Some(image_lsn)) => d.start_lsn() > image_lsn,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if delta_wins {
            let Some(delta) = delta else {
                return Next::Done(Step::Exhausted);
            };
            let start = delta.start_lsn();
            let lsns = start..*cont_lsn;
            *cont_lsn = start;
            match delta {
                DeltaSource::Memory(layer) => {
                    if layer.collect(key, lsns, out) {
                        return Next::Done(Step::Done);
                    }
                }
                DeltaSource::File(file) => {
                    return Next::Delta {
                        file: file.clone(),
                        lsns,
                    }
                }
            }
            continue;
        }
        let Some(image) = image else {
            return Next::Done(Step::Exhausted);
        };
        let newer = Lsn(image.desc().image_lsn().0 + 1)..*cont_lsn;
        let delta = match delta {
            Some(DeltaSource::Memory(layer)) => {
                if layer.collect(key, newer, out) {
                    return Next::Done(Step::Done);
                }
                None
            }
            Some(DeltaSource::File(file)) => Some((file.clone(), newer)),
            None => None,
        };
        return Next::Image {
            delta,
            image: image.clone(),
        };
    }
}

impl Timeline {
    /// The value of `key` at `lsn`. `lsn` must be within
    /// `gc_cutoff..=last_record_lsn` (use [`Timeline::wait_lsn`] first when
    /// ingest may be behind).
    pub fn get(&self, key: Key, lsn: Lsn) -> Result<Bytes, GetError> {
        self.check_readable(lsn)?;
        self.reconstruct_value(key, lsn, ReadPurpose::Request)
    }

    /// Number of blocks of a relation fork at `lsn`, or `None` if the
    /// relation has no size key there (never created, or not yet).
    pub fn get_rel_size(
        &self,
        rel: RelFileNode,
        fork: ForkNumber,
        lsn: Lsn,
    ) -> Result<Option<u32>, GetError> {
        let key = Key::rel_size(rel, fork);
        match self.get(key, lsn) {
            Ok(bytes) => {
                Value::decode_rel_size(&bytes)
                    .map(Some)
                    .ok_or_else(|| GetError::BadValue {
                        key,
                        lsn,
                        reason: format!("relation size of {} bytes, expected 4", bytes.len()),
                    })
            }
            Err(GetError::KeyNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key in `keys` that has a version at or below `lsn` (on this
    /// timeline or, below the branch point, its ancestors), sorted. Keys are
    /// never deleted, so callers that need "does it still exist" keep a
    /// directory value (e.g. [`Key::rel_dir`]) and consult it.
    pub fn list_keys(&self, keys: Range<Key>, lsn: Lsn) -> Result<Vec<Key>, GetError> {
        self.check_readable(lsn)?;
        self.list_keys_unchecked(&keys, lsn)
    }

    /// Reads of a branch below its branch point need the ancestor to hold
    /// everything up to that point; after a restart the ancestor may still
    /// be waiting for its WAL to be re-fed.
    fn check_caught_up(&self, lsn: Lsn) -> Result<(), GetError> {
        let last_record_lsn = self.last_record_lsn();
        if lsn > last_record_lsn {
            return Err(GetError::LsnAhead {
                timeline: self.id,
                lsn,
                last_record_lsn,
            });
        }
        Ok(())
    }

    pub(super) fn check_readable(&self, lsn: Lsn) -> Result<(), GetError> {
        let state = self.lsns.lock();
        if state.shutting_down {
            return Err(GetError::ShuttingDown);
        }
        if lsn < state.gc_cutoff {
            return Err(GetError::BelowGcCutoff {
                timeline: self.id,
                lsn,
                gc_cutoff: state.gc_cutoff,
            });
        }
        if lsn > state.last_record {
            return Err(GetError::LsnAhead {
                timeline: self.id,
                lsn,
                last_record_lsn: state.last_record,
            });
        }
        drop(state);
        let mut timeline = self;
        while let Some(ancestor) = &timeline.ancestor {
            ancestor.check_caught_up(timeline.ancestor_lsn)?;
            timeline = ancestor;
        }
        Ok(())
    }

    /// The read path proper, without the LSN bounds checks (used for the
    /// ancestor's data below a branch point and by image creation).
    /// `purpose` picks the records-applied histogram it is counted in.
    pub(super) fn reconstruct_value(
        &self,
        key: Key,
        lsn: Lsn,
        purpose: ReadPurpose,
    ) -> Result<Bytes, GetError> {
        let mut records = self.collect_versions(key, lsn)?;
        // Oldest first from here on.
        records.reverse();
        let base = match records.first() {
            Some((_, Value::Image(bytes))) => {
                let bytes = bytes.clone();
                records.remove(0);
                Some(bytes)
            }
            _ => None,
        };
        self.shared
            .stats
            .record_reconstruction(records.len(), purpose);
        let applied = records.len();
        let bytes = match (base, records.is_empty()) {
            (Some(bytes), true) => return Ok(bytes),
            (None, true) => return Err(GetError::KeyNotFound { key, lsn }),
            (base, false) => self
                .shared
                .redo
                .reconstruct(key, lsn, base, &records)
                .map_err(|source| GetError::Redo { key, lsn, source })?,
        };
        if policy::fill_after_read(applied, self.shared.config.materialize_after_records) {
            self.keep_in_open_layer(key, lsn, &bytes);
            if self
                .shared
                .materialized
                .insert(self.uid, key, lsn, bytes.clone())
            {
                self.shared.stats.record_materialized_fill(false);
            }
        }
        Ok(bytes)
    }

    /// Versions of `key` at or below `lsn`, newest first, down to and
    /// including the first will-init one or image (a stored image or a
    /// materialised one).
    fn collect_versions(&self, key: Key, lsn: Lsn) -> Result<Vec<(Lsn, Value)>, GetError> {
        let mut records = Vec::new();
        let mut cont_lsn = Lsn(lsn.0.saturating_add(1));
        let mut timeline = self;
        // The newest materialised image below `cont_lsn` seen so far, on
        // this timeline or (below the branch point) an ancestor.
        let mut floor: Option<(Lsn, Bytes)> = None;
        loop {
            if let Some((at, image)) = self.shared.materialized.get(timeline.uid, key) {
                if at < cont_lsn && floor.as_ref().is_none_or(|(f, _)| *f < at) {
                    floor = Some((at, image));
                }
            }
            let floor_lsn = floor.as_ref().map(|(at, _)| *at);
            match timeline.collect_own(key, &mut cont_lsn, floor_lsn, &mut records)? {
                Step::Done | Step::AbsentBelow => return Ok(records),
                Step::Floor => break,
                Step::Exhausted => match &timeline.ancestor {
                    Some(ancestor) => {
                        cont_lsn = cont_lsn.min(Lsn(timeline.ancestor_lsn.0.saturating_add(1)));
                        timeline = ancestor;
                    }
                    // Nothing older anywhere: with a floor, every version
                    // above it was collected.
                    None if floor.is_some() => break,
                    None => return Ok(records),
                },
            }
        }
        if let Some((at, image)) = floor {
            self.shared.stats.record_materialized_hit();
            records.push((at, Value::Image(image)));
        }
        Ok(records)
    }

    /// Collects versions below `cont_lsn` from this timeline's own layers,
    /// lowering `cont_lsn` as it goes. The layer map lock is held only to
    /// plan each step and to read in-memory layers; file reads happen
    /// without it, so ingest never waits for a cold read. The GC guard keeps
    /// the files planned here from being deleted meanwhile.
    fn collect_own(
        &self,
        key: Key,
        cont_lsn: &mut Lsn,
        floor: Option<Lsn>,
        out: &mut Vec<(Lsn, Value)>,
    ) -> Result<Step, GetError> {
        let _gc = self.gc_guard.read();
        loop {
            let next = {
                let map = self.layers.read();
                plan(&map, key, cont_lsn, floor, out)
            };
            match next {
                Next::Done(step) => return Ok(step),
                Next::Delta { file, lsns } => {
                    if self.collect_from_file(&file, key, lsns, out)? {
                        return Ok(Step::Done);
                    }
                }
                Next::Image { delta, image } => {
                    if let Some((file, lsns)) = delta {
                        if self.collect_from_file(&file, key, lsns, out)? {
                            return Ok(Step::Done);
                        }
                    }
                    return match self.image_value(&image, key)? {
                        Some(value) => {
                            out.push((image.desc().image_lsn(), value));
                            Ok(Step::Done)
                        }
                        None => Ok(Step::AbsentBelow),
                    };
                }
            }
        }
    }

    /// Pushes versions of `key` in `lsns` from a delta file, newest first;
    /// true if it reached a will-init version.
    fn collect_from_file(
        &self,
        handle: &LayerHandle,
        key: Key,
        lsns: Range<Lsn>,
        out: &mut Vec<(Lsn, Value)>,
    ) -> Result<bool, GetError> {
        if lsns.start >= lsns.end {
            return Ok(false);
        }
        let file = handle.load(self.shared.io.as_ref())?;
        for position in file.versions(key, lsns).rev() {
            let value = file.read_value(position, Some((&self.shared.cache, handle.uid())))?;
            let will_init = value.will_init();
            out.push((file.index()[position].lsn, value));
            if will_init {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The value of `key` in an image layer, if the image holds it.
    fn image_value(&self, handle: &LayerHandle, key: Key) -> Result<Option<Value>, GetError> {
        let file = handle.load(self.shared.io.as_ref())?;
        let lsn = handle.desc().image_lsn();
        let positions = file.versions(key, lsn..Lsn(lsn.0 + 1));
        if positions.is_empty() {
            return Ok(None);
        }
        Ok(Some(file.read_value(
            positions.start,
            Some((&self.shared.cache, handle.uid())),
        )?))
    }

    /// Opens and fully verifies every layer file of this timeline (not its
    /// ancestors); returns how many were checked or the first corrupt one.
    pub fn verify_layers(&self) -> Result<usize, crate::error::LayerFileError> {
        let files: Vec<_> = self.layers.read().files().cloned().collect();
        for handle in &files {
            handle.load(self.shared.io.as_ref())?.verify_all()?;
        }
        Ok(files.len())
    }

    pub(super) fn list_keys_unchecked(
        &self,
        keys: &Range<Key>,
        lsn: Lsn,
    ) -> Result<Vec<Key>, GetError> {
        let mut found = BTreeSet::new();
        let mut timeline = self;
        let mut max_lsn = lsn;
        loop {
            timeline.own_keys(keys, max_lsn, &mut found)?;
            match &timeline.ancestor {
                Some(ancestor) => {
                    max_lsn = max_lsn.min(timeline.ancestor_lsn);
                    timeline = ancestor;
                }
                None => return Ok(found.into_iter().collect()),
            }
        }
    }

    /// This timeline's keys. Only the open layer is scanned under the map
    /// lock (it changes under writers); frozen layers and files are scanned
    /// after it is released (the GC guard keeps the files), because a full
    /// listing (image creation lists every key) walks every index entry of
    /// every file: under the lock it held up the WAL writer for ~100 ms.
    fn own_keys(
        &self,
        keys: &Range<Key>,
        max_lsn: Lsn,
        found: &mut BTreeSet<Key>,
    ) -> Result<(), GetError> {
        let _gc = self.gc_guard.read();
        let mut from_memory = Vec::new();
        let (frozen, files) = {
            let map = self.layers.read();
            map.open.keys_at(keys, max_lsn, &mut from_memory);
            let frozen: Vec<Arc<InMemoryLayer>> = map.frozen.clone();
            let files: Vec<Arc<LayerHandle>> = map
                .files()
                .filter(|handle| {
                    let desc = handle.desc();
                    desc.lsn_range.start <= max_lsn
                        && desc.key_range.end > keys.start
                        && desc.key_range.start < keys.end
                })
                .cloned()
                .collect();
            (frozen, files)
        };
        for layer in &frozen {
            layer.keys_at(keys, max_lsn, &mut from_memory);
        }
        found.extend(from_memory);
        for handle in files {
            let file = handle.load(self.shared.io.as_ref())?;
            let index = file.index();
            let first = index.partition_point(|e| e.key < keys.start);
            for entry in index[first..].iter().take_while(|e| e.key < keys.end) {
                if entry.lsn <= max_lsn {
                    found.insert(entry.key);
                }
            }
        }
        Ok(())
    }
}
