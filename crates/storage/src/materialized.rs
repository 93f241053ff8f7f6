//! Materialised page images: a bounded, repository-wide cache of the newest
//! known image of a key on a timeline, so reads at (or near) the head apply
//! only the records above that image instead of every record since the
//! key's newest stored image.
//!
//! Why: stored images are built from flushed files, per key partition, once
//! enough delta *files* pile up; the open in-memory layer may hold minutes
//! of history for a hot page (an index leaf, a table's last page), and a
//! read at the head replays all of it. An entry `(timeline, key) → (C,
//! image)` is the value of `key` at LSN `C` on that timeline. History at or
//! below a timeline's last record never changes, so an entry never goes
//! stale; the timeline's uid is process-unique and a reopened repository
//! starts empty, so history lost in a crash (and re-fed differently) is
//! never served from here. A read at `lsn ≥ C` uses the entry exactly like
//! an image layer at `C` (see `timeline/read.rs`); a stored image newer
//! than `C` still wins.
//!
//! Filled (a) by [`crate::Timeline::materialize_hot`], which a background
//! task calls periodically: writers count records per key since the key was
//! last materialised ([`HotKeys`]) and the keys that reached the policy's
//! threshold ([`crate::policy::keys_to_materialize`]) are reconstructed at
//! the last record LSN, from a snapshot, with no lock held; (b) by the read
//! path after a reconstruction that applied many records
//! ([`crate::policy::fill_after_read`]).

use bytes::Bytes;
use postgres_wal::Lsn;

use crate::cache::ClockCache;
use crate::key::{Key, KeyMap};
use crate::value::Value;

/// Bytes accounted per entry besides the image (key, LSN, slot, index).
const ENTRY_OVERHEAD: usize = 96;

/// Keys whose record counts a timeline tracks at most; beyond that the
/// counts of keys with a single record are dropped (they are the least
/// likely to become hot), then everything if that is not enough.
pub const MAX_TRACKED_KEYS: usize = 1 << 20;

/// The repository-wide cache of materialised images, keyed by timeline uid
/// and key, holding the newest known `(lsn, image)` per key.
pub struct MaterializedCache {
    cache: ClockCache<(u64, Key), (Lsn, Bytes)>,
}

impl MaterializedCache {
    /// A cache of at most `capacity_bytes` (0 disables it).
    pub fn new(capacity_bytes: usize) -> MaterializedCache {
        MaterializedCache {
            cache: ClockCache::new(capacity_bytes),
        }
    }

    /// The newest materialised image of `key` on timeline `uid`.
    pub fn get(&self, uid: u64, key: Key) -> Option<(Lsn, Bytes)> {
        self.cache.get((uid, key))
    }

    /// Records the image of `key` at `lsn` on timeline `uid`, unless a
    /// newer (or equal) one is held. Returns whether it was stored.
    pub fn insert(&self, uid: u64, key: Key, lsn: Lsn, image: Bytes) -> bool {
        let size = image.len() + ENTRY_OVERHEAD;
        self.cache
            .insert_sized((uid, key), (lsn, image), size, |(held, _)| *held < lsn)
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// Bytes accounted to entries.
    pub fn used_bytes(&self) -> usize {
        self.cache.used_bytes()
    }
}

/// Per-timeline count of records written per key since the key was last
/// materialised or written with a value that initialises it (an image or a
/// will-init record: a read stops there anyway).
#[derive(Default)]
pub struct HotKeys {
    counts: KeyMap<u32>,
}

impl HotKeys {
    /// Counts one batch of writes.
    pub fn note_batch<'a>(&mut self, batch: impl Iterator<Item = (Key, &'a Value)>) {
        for (key, value) in batch {
            if value.will_init() {
                self.counts.remove(&key);
            } else {
                let count = self.counts.entry(key).or_insert(0);
                *count = count.saturating_add(1);
            }
        }
        if self.counts.len() > MAX_TRACKED_KEYS {
            self.counts.retain(|_, count| *count > 1);
            if self.counts.len() > MAX_TRACKED_KEYS {
                self.counts.clear();
            }
        }
    }

    /// Every tracked key with its count.
    pub fn counts(&self) -> Vec<(Key, u32)> {
        self.counts.iter().map(|(k, c)| (*k, *c)).collect()
    }

    /// Forgets the counts of keys about to be materialised.
    pub fn reset(&mut self, keys: &[Key]) {
        for key in keys {
            self.counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_image_per_key_and_timeline() {
        let cache = MaterializedCache::new(10_000);
        let k = Key::checkpoint();
        assert!(cache.insert(1, k, Lsn(20), Bytes::from_static(b"b")));
        assert!(!cache.insert(1, k, Lsn(10), Bytes::from_static(b"a")));
        assert!(!cache.insert(1, k, Lsn(20), Bytes::from_static(b"x")));
        assert_eq!(cache.get(1, k), Some((Lsn(20), Bytes::from_static(b"b"))));
        assert_eq!(cache.get(2, k), None);
        assert!(cache.insert(1, k, Lsn(30), Bytes::from_static(b"c")));
        assert_eq!(cache.get(1, k).map(|(l, _)| l), Some(Lsn(30)));
    }

    #[test]
    fn will_init_writes_reset_the_count() {
        let mut hot = HotKeys::default();
        let k = Key::checkpoint();
        let rec = Value::WalRecord {
            will_init: false,
            rec: Bytes::from_static(b"r"),
        };
        let image = Value::Image(Bytes::from_static(b"i"));
        hot.note_batch([(k, &rec), (k, &rec)].into_iter());
        assert_eq!(hot.counts(), vec![(k, 2)]);
        hot.note_batch([(k, &image), (k, &rec)].into_iter());
        assert_eq!(hot.counts(), vec![(k, 1)]);
        hot.reset(&[k]);
        assert!(hot.counts().is_empty());
    }
}
