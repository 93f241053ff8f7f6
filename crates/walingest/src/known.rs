//! What ingest remembers between records: relation sizes and the directory
//! values (relations per database, databases, SLRU segments, prepared
//! transactions), loaded from the store on first use and kept current as
//! records change them.
//!
//! Ingest is the only writer of a timeline, so after loading, the cache is
//! the truth; changed entries are marked dirty and written once at the end of
//! each record ([`Known::flush`]). When a record fails, the whole cache is
//! dropped and reloads from what was actually stored.

use std::collections::{BTreeSet, HashMap};

use datadir::layout::{self, GLOBAL_TABLESPACE_OID};
use postgres_wal::record::{ForkNumber, RelFileNode};
use storage::{Key, SlruKind, Value};

use crate::batch::Batch;
use crate::IngestError;

type RelFork = (RelFileNode, ForkNumber);

/// The maps looked up for every block of every record: hashed like the
/// store's key maps rather than with SipHash.
type FastMap<K, V> = HashMap<K, V, storage::key::KeyHashBuilder>;

/// Cached state; see the module docs. `rel_sizes` holds sizes of existing
/// forks only (every insert follows a creation or an existence check, and
/// dropping a fork or a database removes its sizes).
#[derive(Default)]
pub(crate) struct Known {
    rel_sizes: FastMap<RelFork, u32>,
    rel_dirs: FastMap<(u32, u32), BTreeSet<(u32, ForkNumber)>>,
    db_dir: Option<BTreeSet<(u32, u32)>>,
    slru_dirs: FastMap<SlruKind, BTreeSet<u32>>,
    slru_sizes: FastMap<(SlruKind, u32), u32>,
    twophase_dir: Option<BTreeSet<u32>>,
    dirty: Dirty,
}

/// What changed during the current record: a handful of entries at most,
/// kept in vectors that keep their capacity from record to record (a set
/// per kind, taken and dropped per record, was a visible part of ingest).
#[derive(Default)]
struct Dirty {
    rel_sizes: DirtyList<RelFork>,
    rel_dirs: DirtyList<(u32, u32)>,
    db_dir: bool,
    slru_dirs: DirtyList<SlruKind>,
    slru_sizes: DirtyList<(SlruKind, u32)>,
    twophase_dir: bool,
}

/// A small set with linear membership tests.
struct DirtyList<T>(Vec<T>);

impl<T> Default for DirtyList<T> {
    fn default() -> Self {
        DirtyList(Vec::new())
    }
}

impl<T: PartialEq + Copy> DirtyList<T> {
    fn insert(&mut self, item: T) {
        if !self.0.contains(&item) {
            self.0.push(item);
        }
    }

    fn remove(&mut self, item: &T) {
        self.0.retain(|x| x != item);
    }

    fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.0.retain(keep);
    }

    /// The entries, emptying the list but keeping its buffer.
    fn drain(&mut self) -> std::vec::Drain<'_, T> {
        self.0.drain(..)
    }
}

impl Known {
    // ---- relations -------------------------------------------------------

    fn rel_dir(
        &mut self,
        b: &mut Batch<'_>,
        spc: u32,
        db: u32,
    ) -> Result<&mut BTreeSet<(u32, ForkNumber)>, IngestError> {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.rel_dirs.entry((spc, db)) {
            let key = Key::rel_dir(spc, db);
            let rels = match b.read(key)? {
                Some(bytes) => layout::decode_rel_dir(&bytes)
                    .ok_or_else(|| b.bad_stored(key, "relation list"))?,
                None => Vec::new(),
            };
            entry.insert(rels.into_iter().collect());
        }
        Ok(self.rel_dirs.entry((spc, db)).or_default())
    }

    /// Whether the fork is listed in its database's relation directory.
    pub fn rel_exists(
        &mut self,
        b: &mut Batch<'_>,
        rel: RelFileNode,
        fork: ForkNumber,
    ) -> Result<bool, IngestError> {
        // A known size means the fork exists (sizes are only kept for
        // existing forks and dropped with them): one lookup for the blocks
        // of every record instead of a directory and a tree.
        if self.rel_sizes.contains_key(&(rel, fork)) {
            return Ok(true);
        }
        Ok(self
            .rel_dir(b, rel.spc_node, rel.db_node)?
            .contains(&(rel.rel_node, fork)))
    }

    /// Blocks in the fork; 0 for a fork that does not exist.
    pub fn rel_size(
        &mut self,
        b: &mut Batch<'_>,
        rel: RelFileNode,
        fork: ForkNumber,
    ) -> Result<u32, IngestError> {
        if let Some(&size) = self.rel_sizes.get(&(rel, fork)) {
            return Ok(size);
        }
        if !self.rel_exists(b, rel, fork)? {
            return Ok(0);
        }
        let key = Key::rel_size(rel, fork);
        let size = match b.read(key)? {
            Some(bytes) => {
                Value::decode_rel_size(&bytes).ok_or_else(|| b.bad_stored(key, "relation size"))?
            }
            None => 0,
        };
        self.rel_sizes.insert((rel, fork), size);
        Ok(size)
    }

    pub fn set_rel_size(&mut self, rel: RelFileNode, fork: ForkNumber, blocks: u32) {
        self.rel_sizes.insert((rel, fork), blocks);
        self.dirty.rel_sizes.insert((rel, fork));
    }

    /// Creates the fork if it does not exist (empty, as `smgrcreate` does);
    /// an existing fork keeps its contents. Returns whether it was created.
    pub fn create_rel(
        &mut self,
        b: &mut Batch<'_>,
        rel: RelFileNode,
        fork: ForkNumber,
    ) -> Result<bool, IngestError> {
        if self.rel_exists(b, rel, fork)? {
            return Ok(false);
        }
        self.rel_dir(b, rel.spc_node, rel.db_node)?
            .insert((rel.rel_node, fork));
        self.dirty.rel_dirs.insert((rel.spc_node, rel.db_node));
        self.set_rel_size(rel, fork, 0);
        if rel.spc_node != GLOBAL_TABLESPACE_OID {
            // A database directory appears in a tablespace with its first
            // relation there; no WAL record announces it.
            self.add_db(b, rel.spc_node, rel.db_node)?;
        }
        Ok(true)
    }

    /// Removes every fork of `rel` (`smgrdounlinkall`).
    pub fn drop_rel(&mut self, b: &mut Batch<'_>, rel: RelFileNode) -> Result<(), IngestError> {
        let dir = self.rel_dir(b, rel.spc_node, rel.db_node)?;
        let before = dir.len();
        dir.retain(|(rel_node, _)| *rel_node != rel.rel_node);
        if dir.len() != before {
            self.dirty.rel_dirs.insert((rel.spc_node, rel.db_node));
        }
        for fork in ALL_FORKS {
            self.rel_sizes.remove(&(rel, fork));
            self.dirty.rel_sizes.remove(&(rel, fork));
        }
        Ok(())
    }

    /// The forks of one database.
    pub fn rels_of_db(
        &mut self,
        b: &mut Batch<'_>,
        spc: u32,
        db: u32,
    ) -> Result<Vec<(u32, ForkNumber)>, IngestError> {
        Ok(self.rel_dir(b, spc, db)?.iter().copied().collect())
    }

    /// Replaces a database's relation list wholesale (create/drop database).
    pub fn set_rels_of_db(
        &mut self,
        spc: u32,
        db: u32,
        rels: impl IntoIterator<Item = (u32, ForkNumber)>,
    ) {
        self.rel_dirs.insert((spc, db), rels.into_iter().collect());
        self.rel_sizes
            .retain(|(rel, _), _| (rel.spc_node, rel.db_node) != (spc, db));
        self.dirty
            .rel_sizes
            .retain(|(rel, _)| (rel.spc_node, rel.db_node) != (spc, db));
        self.dirty.rel_dirs.insert((spc, db));
    }

    // ---- databases -------------------------------------------------------

    fn db_dir(&mut self, b: &mut Batch<'_>) -> Result<&mut BTreeSet<(u32, u32)>, IngestError> {
        if self.db_dir.is_none() {
            let key = Key::db_dir();
            let dbs = match b.read(key)? {
                Some(bytes) => layout::decode_db_dir(&bytes)
                    .ok_or_else(|| b.bad_stored(key, "database list"))?,
                None => Vec::new(),
            };
            self.db_dir = Some(dbs.into_iter().collect());
        }
        Ok(self.db_dir.get_or_insert_with(BTreeSet::new))
    }

    pub fn add_db(&mut self, b: &mut Batch<'_>, spc: u32, db: u32) -> Result<(), IngestError> {
        if self.db_dir(b)?.insert((spc, db)) {
            self.dirty.db_dir = true;
        }
        Ok(())
    }

    pub fn remove_db(&mut self, b: &mut Batch<'_>, spc: u32, db: u32) -> Result<(), IngestError> {
        if self.db_dir(b)?.remove(&(spc, db)) {
            self.dirty.db_dir = true;
        }
        Ok(())
    }

    /// Every database stored in tablespace `spc`.
    pub fn dbs_in_tablespace(
        &mut self,
        b: &mut Batch<'_>,
        spc: u32,
    ) -> Result<Vec<u32>, IngestError> {
        Ok(self
            .db_dir(b)?
            .iter()
            .filter(|(s, _)| *s == spc)
            .map(|(_, db)| *db)
            .collect())
    }

    // ---- SLRUs -----------------------------------------------------------

    fn slru_dir(
        &mut self,
        b: &mut Batch<'_>,
        kind: SlruKind,
    ) -> Result<&mut BTreeSet<u32>, IngestError> {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.slru_dirs.entry(kind) {
            let key = Key::slru_dir(kind);
            let segments = match b.read(key)? {
                Some(bytes) => layout::decode_u32_list(&bytes)
                    .ok_or_else(|| b.bad_stored(key, "SLRU segment list"))?,
                None => Vec::new(),
            };
            entry.insert(segments.into_iter().collect());
        }
        Ok(self.slru_dirs.entry(kind).or_default())
    }

    pub fn slru_segments(
        &mut self,
        b: &mut Batch<'_>,
        kind: SlruKind,
    ) -> Result<Vec<u32>, IngestError> {
        Ok(self.slru_dir(b, kind)?.iter().copied().collect())
    }

    /// Pages in an SLRU segment; 0 if the segment does not exist.
    pub fn slru_segment_size(
        &mut self,
        b: &mut Batch<'_>,
        kind: SlruKind,
        segno: u32,
    ) -> Result<u32, IngestError> {
        if !self.slru_dir(b, kind)?.contains(&segno) {
            return Ok(0);
        }
        if let Some(&size) = self.slru_sizes.get(&(kind, segno)) {
            return Ok(size);
        }
        let key = Key::slru_segment_size(kind, segno);
        let size = match b.read(key)? {
            Some(bytes) => Value::decode_rel_size(&bytes)
                .ok_or_else(|| b.bad_stored(key, "SLRU segment size"))?,
            None => 0,
        };
        self.slru_sizes.insert((kind, segno), size);
        Ok(size)
    }

    /// Makes the segment at least `pages` long, creating it if needed.
    pub fn extend_slru_segment(
        &mut self,
        b: &mut Batch<'_>,
        kind: SlruKind,
        segno: u32,
        pages: u32,
    ) -> Result<(), IngestError> {
        let current = self.slru_segment_size(b, kind, segno)?;
        if self.slru_dir(b, kind)?.insert(segno) {
            self.dirty.slru_dirs.insert(kind);
        }
        if pages > current {
            self.slru_sizes.insert((kind, segno), pages);
            self.dirty.slru_sizes.insert((kind, segno));
        }
        Ok(())
    }

    /// Deletes a segment file.
    pub fn remove_slru_segment(
        &mut self,
        b: &mut Batch<'_>,
        kind: SlruKind,
        segno: u32,
    ) -> Result<(), IngestError> {
        if self.slru_dir(b, kind)?.remove(&segno) {
            self.dirty.slru_dirs.insert(kind);
        }
        self.slru_sizes.remove(&(kind, segno));
        self.dirty.slru_sizes.remove(&(kind, segno));
        Ok(())
    }

    // ---- two-phase -------------------------------------------------------

    fn twophase_dir(&mut self, b: &mut Batch<'_>) -> Result<&mut BTreeSet<u32>, IngestError> {
        if self.twophase_dir.is_none() {
            let key = Key::twophase_dir();
            let xids = match b.read(key)? {
                Some(bytes) => layout::decode_u32_list(&bytes)
                    .ok_or_else(|| b.bad_stored(key, "two-phase list"))?,
                None => Vec::new(),
            };
            self.twophase_dir = Some(xids.into_iter().collect());
        }
        Ok(self.twophase_dir.get_or_insert_with(BTreeSet::new))
    }

    pub fn add_twophase(&mut self, b: &mut Batch<'_>, xid: u32) -> Result<(), IngestError> {
        if self.twophase_dir(b)?.insert(xid) {
            self.dirty.twophase_dir = true;
        }
        Ok(())
    }

    pub fn remove_twophase(&mut self, b: &mut Batch<'_>, xid: u32) -> Result<(), IngestError> {
        if self.twophase_dir(b)?.remove(&xid) {
            self.dirty.twophase_dir = true;
        }
        Ok(())
    }

    // ---- writing ---------------------------------------------------------

    /// Puts every value changed since the last flush into `b`.
    pub fn flush(&mut self, b: &mut Batch<'_>) -> Result<(), IngestError> {
        let dirty = &mut self.dirty;
        for (rel, fork) in dirty.rel_sizes.drain() {
            if let Some(&size) = self.rel_sizes.get(&(rel, fork)) {
                b.put(Key::rel_size(rel, fork), Value::rel_size(size))?;
            }
        }
        for (spc, db) in dirty.rel_dirs.drain() {
            if let Some(rels) = self.rel_dirs.get(&(spc, db)) {
                let rels: Vec<_> = rels.iter().copied().collect();
                b.put(Key::rel_dir(spc, db), image(layout::encode_rel_dir(&rels)))?;
            }
        }
        if std::mem::take(&mut dirty.db_dir) {
            if let Some(dbs) = &self.db_dir {
                let dbs: Vec<_> = dbs.iter().copied().collect();
                b.put(Key::db_dir(), image(layout::encode_db_dir(&dbs)))?;
            }
        }
        for kind in dirty.slru_dirs.drain() {
            if let Some(segments) = self.slru_dirs.get(&kind) {
                let segments: Vec<_> = segments.iter().copied().collect();
                b.put(
                    Key::slru_dir(kind),
                    image(layout::encode_u32_list(&segments)),
                )?;
            }
        }
        for (kind, segno) in dirty.slru_sizes.drain() {
            if let Some(&size) = self.slru_sizes.get(&(kind, segno)) {
                b.put(Key::slru_segment_size(kind, segno), Value::rel_size(size))?;
            }
        }
        if std::mem::take(&mut dirty.twophase_dir) {
            if let Some(xids) = &self.twophase_dir {
                let xids: Vec<_> = xids.iter().copied().collect();
                b.put(Key::twophase_dir(), image(layout::encode_u32_list(&xids)))?;
            }
        }
        Ok(())
    }
}

/// Every fork, in fork-number order.
pub(crate) const ALL_FORKS: [ForkNumber; 4] = [
    ForkNumber::Main,
    ForkNumber::Fsm,
    ForkNumber::VisibilityMap,
    ForkNumber::Init,
];

pub(crate) fn image(bytes: Vec<u8>) -> Value {
    Value::Image(bytes.into())
}
