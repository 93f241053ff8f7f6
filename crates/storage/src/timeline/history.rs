//! Which keys have stored versions in an LSN range: the index-only walk
//! behind "what changed between two points" (`timeline diff`).
//!
//! It reads layer *indexes* (and the in-memory layers), never values, and
//! reconstructs nothing: the cost is proportional to the number of versions
//! in the range, not to the size of the database. Image layers are skipped:
//! an image written by compaction restates values, it does not change them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use postgres_wal::Lsn;

use super::Timeline;
use crate::error::GetError;
use crate::key::Key;
use crate::layer::memory::InMemoryLayer;
use crate::layer::LayerHandle;

/// One stored version of a key: where and how big it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    /// The key.
    pub key: Key,
    /// The LSN of the version.
    pub lsn: Lsn,
    /// Its stored size in bytes (encoded value).
    pub bytes: u64,
}

impl Timeline {
    /// Every stored version of keys in `keys` with an LSN in `lsns`
    /// (half-open), on this timeline and, below the branch point, its
    /// ancestors; sorted by (key, LSN), each version once. `lsns.start` must
    /// be at or above the GC cutoff and `lsns.end - 1` at or below the last
    /// record, as for reads.
    pub fn versions_in(
        &self,
        keys: Range<Key>,
        lsns: Range<Lsn>,
    ) -> Result<Vec<StoredVersion>, GetError> {
        if lsns.start >= lsns.end || keys.start >= keys.end {
            return Ok(Vec::new());
        }
        self.check_readable(lsns.start)?;
        self.check_readable(Lsn(lsns.end.0 - 1))?;
        let mut found = BTreeMap::new();
        let mut timeline = self;
        let mut range = lsns;
        loop {
            timeline.own_versions(&keys, range.clone(), &mut found)?;
            let Some(ancestor) = &timeline.ancestor else {
                break;
            };
            // The ancestor's history counts only up to the branch point.
            let end = range
                .end
                .min(Lsn(timeline.ancestor_lsn.0.saturating_add(1)));
            if range.start >= end {
                break;
            }
            range = range.start..end;
            timeline = ancestor;
        }
        Ok(found
            .into_iter()
            .map(|((key, lsn), bytes)| StoredVersion { key, lsn, bytes })
            .collect())
    }

    /// This timeline's own versions: the open layer under the map lock (it
    /// changes under writers; walked without sorting), frozen layers and
    /// files after it is released (the GC guard keeps the files), so a long
    /// history never holds up the WAL writer.
    fn own_versions(
        &self,
        keys: &Range<Key>,
        lsns: Range<Lsn>,
        found: &mut BTreeMap<(Key, Lsn), u64>,
    ) -> Result<(), GetError> {
        let _gc = self.gc_guard.read();
        let mut note = |key: Key, lsn: Lsn, value: &crate::value::Value| {
            found.insert((key, lsn), value.size_bytes() as u64);
        };
        let (frozen, files) = {
            let map = self.layers.read();
            map.open.for_each_version_in(keys, &lsns, &mut note);
            let frozen: Vec<Arc<InMemoryLayer>> = map.frozen.clone();
            let files: Vec<Arc<LayerHandle>> = map
                .deltas
                .iter()
                .filter(|d| {
                    let desc = d.desc();
                    desc.lsn_range.start < lsns.end
                        && lsns.start < desc.lsn_range.end
                        && desc.key_range.start < keys.end
                        && keys.start < desc.key_range.end
                })
                .cloned()
                .collect();
            (frozen, files)
        };
        for layer in &frozen {
            layer.for_each_version_in(keys, &lsns, &mut note);
        }
        for handle in files {
            let file = handle.load(self.shared.io.as_ref())?;
            let index = file.index();
            let end_of_values = file.header().index_offset;
            let first = index.partition_point(|e| e.key < keys.start);
            for (position, entry) in index.iter().enumerate().skip(first) {
                if entry.key >= keys.end {
                    break;
                }
                if lsns.contains(&entry.lsn) {
                    let next = index.get(position + 1).map_or(end_of_values, |n| n.offset);
                    found.insert((entry.key, entry.lsn), next.saturating_sub(entry.offset));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Repository, RepositoryConfig, TimelineId, Value};

    fn put(timeline: &Timeline, key: Key, lsn: u64, bytes: &[u8]) {
        let mut writer = timeline.writer();
        writer
            .put(key, Lsn(lsn), Value::Image(bytes.to_vec().into()))
            .unwrap();
        writer.finish(Lsn(lsn)).unwrap();
    }

    #[test]
    fn versions_in_files_memory_and_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
        let main = repo
            .create_timeline(TimelineId::generate(), 15, Lsn(0x100))
            .unwrap();
        let (k1, k2, outside) = (Key::control_file(), Key::checkpoint(), Key::db_dir());
        put(&main, k1, 0x100, b"a");
        put(&main, outside, 0x110, b"x");
        put(&main, k2, 0x120, b"bb");
        main.freeze_and_flush().unwrap(); // these versions are in a file now
        put(&main, k1, 0x130, b"ccc"); // and this one in memory
        let keys = k1.min(k2)..k1.max(k2).next();
        let all = main
            .versions_in(keys.clone(), Lsn(0x100)..Lsn(0x131))
            .unwrap();
        let found: Vec<(Key, Lsn)> = all.iter().map(|v| (v.key, v.lsn)).collect();
        let mut expected = vec![(k1, Lsn(0x100)), (k1, Lsn(0x130)), (k2, Lsn(0x120))];
        expected.sort();
        assert_eq!(found, expected);
        assert!(all.iter().all(|v| v.bytes > 0));
        // (0x100, 0x130]: the first version is excluded.
        let later = main
            .versions_in(keys.clone(), Lsn(0x101)..Lsn(0x131))
            .unwrap();
        assert_eq!(later.len(), 2);
        // A branch at 0x120 (readable from there) sees its ancestor's versions up to the branch
        // point only, plus its own.
        let branch = repo
            .branch_timeline(TimelineId::generate(), main.id(), Lsn(0x120))
            .unwrap();
        put(&branch, k2, 0x140, b"d");
        let on_branch = branch.versions_in(keys, Lsn(0x120)..Lsn(0x141)).unwrap();
        let lsns: Vec<Lsn> = on_branch.iter().map(|v| v.lsn).collect();
        assert_eq!(lsns, vec![Lsn(0x120), Lsn(0x140)]);
    }
}
