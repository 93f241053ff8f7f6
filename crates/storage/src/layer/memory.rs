//! In-memory layers: the open layer that receives a timeline's writes, and
//! frozen layers (no longer written) waiting to become delta files.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::time::Instant;

use postgres_wal::Lsn;

use crate::key::Key;
use crate::value::Value;

/// Versions with LSNs in `start_lsn..end_lsn`, sorted by (key, lsn).
pub struct InMemoryLayer {
    start_lsn: Lsn,
    /// `Lsn::MAX` while open; set when frozen.
    end_lsn: Lsn,
    /// The timeline's `prev_record_lsn` when this layer was frozen.
    prev_record_lsn: Lsn,
    entries: BTreeMap<(Key, Lsn), Value>,
    size_bytes: u64,
    first_put: Option<Instant>,
}

impl InMemoryLayer {
    /// An empty open layer starting at `start_lsn`.
    pub fn new(start_lsn: Lsn) -> InMemoryLayer {
        InMemoryLayer {
            start_lsn,
            end_lsn: Lsn::MAX,
            prev_record_lsn: Lsn::INVALID,
            entries: BTreeMap::new(),
            size_bytes: 0,
            first_put: None,
        }
    }

    /// First LSN covered.
    pub fn start_lsn(&self) -> Lsn {
        self.start_lsn
    }

    /// End of the LSN range (exclusive); `Lsn::MAX` while open.
    pub fn end_lsn(&self) -> Lsn {
        self.end_lsn
    }

    /// Bytes of values held.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Whether any version is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the first version arrived.
    pub fn first_put(&self) -> Option<Instant> {
        self.first_put
    }

    /// Adds (or replaces) a version. The caller guarantees `lsn` is in range.
    pub fn put(&mut self, key: Key, lsn: Lsn, value: Value) {
        debug_assert!(lsn >= self.start_lsn && lsn < self.end_lsn);
        self.size_bytes += value.size_bytes() as u64;
        self.first_put.get_or_insert_with(Instant::now);
        self.entries.insert((key, lsn), value);
    }

    /// Replaces the newest version of `key` at or below `at` with `image`,
    /// the value of the key at `at`, unless that version is already an
    /// image or the layer holds no version of the key in range. Exact for
    /// every read at or above that version's LSN (they see the same
    /// value), and reads below it never use it. Returns whether it
    /// replaced a version.
    ///
    /// This is how a materialised image survives eviction from the
    /// materialised cache: the chain of records ends in the layer itself.
    pub fn replace_newest_with_image(&mut self, key: Key, at: Lsn, image: bytes::Bytes) -> bool {
        let range = (
            Bound::Included((key, self.start_lsn)),
            Bound::Included((key, at)),
        );
        if at < self.start_lsn {
            return false;
        }
        let Some((_, value)) = self.entries.range_mut(range).next_back() else {
            return false;
        };
        if matches!(value, Value::Image(_)) {
            return false;
        }
        let old = value.size_bytes() as u64;
        *value = Value::Image(image);
        self.size_bytes = self.size_bytes.saturating_sub(old) + value.size_bytes() as u64;
        true
    }

    /// Ends the LSN range at `end_lsn` (exclusive); no more puts.
    /// `prev_record_lsn` is recorded so that flushing can persist it.
    pub fn freeze(&mut self, end_lsn: Lsn, prev_record_lsn: Lsn) {
        debug_assert!(self.entries.keys().all(|(_, lsn)| *lsn < end_lsn));
        self.end_lsn = end_lsn;
        self.prev_record_lsn = prev_record_lsn;
    }

    /// The `prev_record_lsn` recorded at freeze time.
    pub fn prev_record_lsn(&self) -> Lsn {
        self.prev_record_lsn
    }

    /// Pushes versions of `key` with LSN in `lsns` onto `out`, newest first,
    /// stopping after the first that initialises the value. Returns whether
    /// it stopped there.
    pub fn collect(&self, key: Key, lsns: Range<Lsn>, out: &mut Vec<(Lsn, Value)>) -> bool {
        let range = (
            Bound::Included((key, lsns.start)),
            Bound::Excluded((key, lsns.end)),
        );
        if lsns.start >= lsns.end {
            return false;
        }
        for ((_, lsn), value) in self.entries.range(range).rev() {
            out.push((*lsn, value.clone()));
            if value.will_init() {
                return true;
            }
        }
        false
    }

    /// Keys in `keys` with a version at or below `max_lsn`.
    pub fn keys_at(&self, keys: &Range<Key>, max_lsn: Lsn, out: &mut Vec<Key>) {
        if keys.start >= keys.end {
            return;
        }
        let range = (
            Bound::Included((keys.start, Lsn(0))),
            Bound::Excluded((keys.end, Lsn(0))),
        );
        let mut last = None;
        for ((key, lsn), _) in self.entries.range(range) {
            if *lsn <= max_lsn && last != Some(*key) {
                out.push(*key);
                last = Some(*key);
            }
        }
    }

    /// All versions in (key, lsn) order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, Lsn, &Value)> {
        self.entries.iter().map(|((k, l), v)| (*k, *l, v))
    }

    /// Smallest and largest key held.
    pub fn key_bounds(&self) -> Option<(Key, Key)> {
        let first = self.entries.keys().next()?.0;
        let last = self.entries.keys().next_back()?.0;
        Some((first, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn collect_stops_at_will_init_and_respects_range() {
        let mut layer = InMemoryLayer::new(Lsn(1));
        let k = Key::checkpoint();
        let rec = |b: &'static [u8]| {
            Value::Derived(crate::value::DerivedOp::WriteBytes {
                offset: 0,
                bytes: Bytes::from_static(b),
            })
        };
        layer.put(k, Lsn(1), rec(b"a"));
        layer.put(k, Lsn(2), Value::Image(Bytes::from_static(b"img")));
        layer.put(k, Lsn(3), rec(b"b"));
        layer.put(Key::control_file(), Lsn(3), rec(b"other"));
        let mut out = Vec::new();
        assert!(layer.collect(k, Lsn(0)..Lsn(10), &mut out));
        assert_eq!(out.iter().map(|(l, _)| l.0).collect::<Vec<_>>(), vec![3, 2]);
        out.clear();
        assert!(!layer.collect(k, Lsn(0)..Lsn(2), &mut out));
        assert_eq!(out.len(), 1);
        let mut keys = Vec::new();
        layer.keys_at(&(Key::MIN..Key::MAX), Lsn(2), &mut keys);
        assert_eq!(keys, vec![k]);
    }

    #[test]
    fn replace_newest_with_image_touches_only_the_newest_record_at_or_below() {
        let mut layer = InMemoryLayer::new(Lsn(10));
        let k = Key::checkpoint();
        let other = Key::control_file();
        let rec = |b: &'static [u8]| Value::WalRecord {
            will_init: false,
            rec: Bytes::from_static(b),
        };
        layer.put(k, Lsn(10), rec(b"a"));
        layer.put(k, Lsn(12), rec(b"b"));
        layer.put(k, Lsn(14), rec(b"c"));
        layer.put(other, Lsn(11), rec(b"x"));
        let before = layer.size_bytes();
        // Below the layer or for an absent key: nothing to replace.
        assert!(!layer.replace_newest_with_image(k, Lsn(9), Bytes::from_static(b"I")));
        assert!(!layer.replace_newest_with_image(Key::MIN, Lsn(20), Bytes::from_static(b"I")));
        // At 13 the newest version is the one at 12.
        assert!(layer.replace_newest_with_image(k, Lsn(13), Bytes::from_static(b"IMAGE")));
        assert_eq!(layer.size_bytes(), before - 2 + 6);
        let mut out = Vec::new();
        assert!(layer.collect(k, Lsn(0)..Lsn(20), &mut out));
        assert_eq!(
            out,
            vec![
                (Lsn(14), rec(b"c")),
                (Lsn(12), Value::Image(Bytes::from_static(b"IMAGE")))
            ]
        );
        // Older versions stay for reads below the image.
        out.clear();
        assert!(!layer.collect(k, Lsn(0)..Lsn(12), &mut out));
        assert_eq!(out, vec![(Lsn(10), rec(b"a"))]);
        // An image is never replaced again.
        assert!(!layer.replace_newest_with_image(k, Lsn(13), Bytes::from_static(b"J")));
    }
}
