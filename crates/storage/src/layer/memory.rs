//! In-memory layers: the open layer that receives a timeline's writes, and
//! frozen layers (no longer written) waiting to become delta files.
//!
//! Layout (issue #16: a tree node per record made the layer, and the
//! allocator, most of ingest's time):
//!
//! ```text
//! values:  [v0 v1 v2 v3 v4 ...]          chunks of VALUE_CHUNK, append-only
//! index:   key A -> [(lsn 10, 0) (lsn 14, 3)]   sorted by LSN
//!          key B -> [(lsn 12, 1)]
//!          key C -> [(lsn 12, 2) (lsn 20, 4)]
//! ```
//!
//! A put appends its value to `values` and its (LSN, slot) to the key's
//! version list: WAL arrives in LSN order, so that is a push onto the end
//! (an LSN below the newest, which a writer batch may put, is inserted in
//! place). The only allocations are a value chunk every `VALUE_CHUNK`
//! puts and a key's list growing (amortised doubling, per key rather than
//! per record). Key order, which only flushing and key listing need, is
//! established by sorting the keys then.

use std::ops::Range;
use std::time::Instant;

use postgres_wal::Lsn;

use crate::key::{Key, KeyMap};
use crate::value::Value;

/// Values per chunk of the value arena: big enough that chunk allocation
/// is rare (a chunk is about 160 KB).
const VALUE_CHUNK: usize = 4096;

/// One version of a key: its LSN and the slot of its value in the arena.
#[derive(Clone, Copy, Debug)]
struct Version {
    lsn: Lsn,
    slot: u32,
}

/// Append-only storage of values, addressed by slot.
#[derive(Default)]
struct ValueArena {
    chunks: Vec<Vec<Value>>,
    len: usize,
}

impl ValueArena {
    fn push(&mut self, value: Value) -> u32 {
        let slot = self.len;
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < VALUE_CHUNK => chunk.push(value),
            _ => {
                // The first chunk grows by doubling, so that the open layer
                // of an idle timeline (a few values) stays small; later
                // chunks are allocated whole.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(VALUE_CHUNK)
                };
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
        // More than 4 G versions would need far more memory than any
        // freeze policy lets an open layer hold.
        u32::try_from(slot).unwrap_or(u32::MAX)
    }

    fn get(&self, slot: u32) -> &Value {
        let slot = slot as usize;
        &self.chunks[slot / VALUE_CHUNK][slot % VALUE_CHUNK]
    }

    fn get_mut(&mut self, slot: u32) -> &mut Value {
        let slot = slot as usize;
        &mut self.chunks[slot / VALUE_CHUNK][slot % VALUE_CHUNK]
    }
}

/// Versions with LSNs in `start_lsn..end_lsn`: per key, sorted by LSN (see
/// the module doc for the layout).
pub struct InMemoryLayer {
    start_lsn: Lsn,
    /// `Lsn::MAX` while open; set when frozen.
    end_lsn: Lsn,
    /// The timeline's `prev_record_lsn` when this layer was frozen.
    prev_record_lsn: Lsn,
    values: ValueArena,
    index: KeyMap<Vec<Version>>,
    /// Smallest and largest key held.
    key_bounds: Option<(Key, Key)>,
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
            values: ValueArena::default(),
            index: KeyMap::default(),
            key_bounds: None,
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

    /// Bytes of values held ([`Value::size_bytes`] of each version held;
    /// a replaced version no longer counts).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Whether any version is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// When the first version arrived.
    pub fn first_put(&self) -> Option<Instant> {
        self.first_put
    }

    /// Adds (or replaces) a version. The caller guarantees `lsn` is in range.
    pub fn put(&mut self, key: Key, lsn: Lsn, value: Value) {
        debug_assert!(lsn >= self.start_lsn && lsn < self.end_lsn);
        if self.first_put.is_none() {
            self.first_put = Some(Instant::now());
        }
        self.size_bytes += value.size_bytes() as u64;
        let versions = self.index.entry(key).or_default();
        let position = match versions.last() {
            // The common case: WAL arrives in LSN order.
            None => 0,
            Some(last) if last.lsn < lsn => versions.len(),
            _ => match versions.binary_search_by_key(&lsn, |v| v.lsn) {
                Ok(found) => {
                    let old = std::mem::replace(self.values.get_mut(versions[found].slot), value);
                    self.size_bytes = self.size_bytes.saturating_sub(old.size_bytes() as u64);
                    return;
                }
                Err(position) => position,
            },
        };
        let slot = self.values.push(value);
        versions.insert(position, Version { lsn, slot });
        self.key_bounds = Some(match self.key_bounds {
            None => (key, key),
            Some((first, last)) => (first.min(key), last.max(key)),
        });
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
        if at < self.start_lsn {
            return false;
        }
        let Some(versions) = self.index.get(&key) else {
            return false;
        };
        let below = versions.partition_point(|v| v.lsn <= at);
        let Some(newest) = below.checked_sub(1).map(|i| versions[i]) else {
            return false;
        };
        let value = self.values.get_mut(newest.slot);
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
        debug_assert!(self
            .index
            .values()
            .all(|versions| versions.last().is_none_or(|v| v.lsn < end_lsn)));
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
        if lsns.start >= lsns.end {
            return false;
        }
        let Some(versions) = self.index.get(&key) else {
            return false;
        };
        // Reads at the head, the usual case, start from the newest version.
        let end = match versions.last() {
            Some(last) if last.lsn < lsns.end => versions.len(),
            _ => versions.partition_point(|v| v.lsn < lsns.end),
        };
        for version in versions[..end].iter().rev() {
            if version.lsn < lsns.start {
                break;
            }
            let value = self.values.get(version.slot);
            out.push((version.lsn, value.clone()));
            if value.will_init() {
                return true;
            }
        }
        false
    }

    /// Keys in `keys` with a version at or below `max_lsn`, in no
    /// particular order.
    pub fn keys_at(&self, keys: &Range<Key>, max_lsn: Lsn, out: &mut Vec<Key>) {
        if keys.start >= keys.end {
            return;
        }
        let listed = self.index.iter().filter(|(key, versions)| {
            keys.contains(key) && versions.first().is_some_and(|v| v.lsn <= max_lsn)
        });
        out.extend(listed.map(|(key, _)| *key));
    }

    /// All versions in (key, lsn) order. Sorts the keys first (a frozen
    /// layer is iterated once, when it is flushed).
    pub fn iter(&self) -> impl Iterator<Item = (Key, Lsn, &Value)> {
        let mut keys: Vec<(&Key, &Vec<Version>)> = self.index.iter().collect();
        keys.sort_unstable_by_key(|(key, _)| **key);
        keys.into_iter().flat_map(move |(key, versions)| {
            versions
                .iter()
                .map(move |v| (*key, v.lsn, self.values.get(v.slot)))
        })
    }

    /// Smallest and largest key held.
    pub fn key_bounds(&self) -> Option<(Key, Key)> {
        self.key_bounds
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

    #[test]
    fn values_stay_addressable_across_arena_chunks() {
        let mut layer = InMemoryLayer::new(Lsn(1));
        let count = 3 * VALUE_CHUNK as u64 + 17;
        let key = |i: u64| Key::slru_block(crate::key::SlruKind::Clog, 0, (i % 7) as u32);
        for i in 0..count {
            let bytes = Bytes::copy_from_slice(&i.to_le_bytes());
            layer.put(key(i), Lsn(1 + i), Value::Image(bytes));
        }
        for i in [0, 1, VALUE_CHUNK as u64 - 1, VALUE_CHUNK as u64, count - 1] {
            let mut out = Vec::new();
            assert!(layer.collect(key(i), Lsn(1 + i)..Lsn(2 + i), &mut out));
            let expected = Value::Image(Bytes::copy_from_slice(&i.to_le_bytes()));
            assert_eq!(out, vec![(Lsn(1 + i), expected)]);
        }
        assert_eq!(layer.iter().count() as u64, count);
        assert_eq!(layer.size_bytes(), count * 9);
    }

    /// The layer against a map of (key, lsn) → value, the layout it
    /// replaced: puts in any LSN order (a writer batch may), same-LSN
    /// replacement, image replacement, then every reader.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Clone, Debug)]
        enum Op {
            Put {
                key: u8,
                lsn: u64,
                image: bool,
                len: u8,
            },
            Replace {
                key: u8,
                at: u64,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u8..6, 10u64..60, any::<bool>(), 0u8..5)
                    .prop_map(|(key, lsn, image, len)| Op::Put { key, lsn, image, len }),
                1 => (0u8..6, 0u64..70).prop_map(|(key, at)| Op::Replace { key, at }),
            ]
        }

        fn key(n: u8) -> Key {
            Key::slru_block(crate::key::SlruKind::Clog, 0, u32::from(n))
        }

        fn value(image: bool, len: u8) -> Value {
            let bytes = Bytes::from(vec![len; usize::from(len)]);
            if image {
                Value::Image(bytes)
            } else {
                Value::WalRecord {
                    will_init: false,
                    rec: bytes,
                }
            }
        }

        proptest! {
            #[test]
            fn layer_matches_a_sorted_map(ops in prop::collection::vec(op(), 0..80)) {
                let mut layer = InMemoryLayer::new(Lsn(10));
                let mut model: BTreeMap<(Key, Lsn), Value> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Put { key: k, lsn, image, len } => {
                            layer.put(key(k), Lsn(lsn), value(image, len));
                            model.insert((key(k), Lsn(lsn)), value(image, len));
                        }
                        Op::Replace { key: k, at } => {
                            let image = Bytes::from_static(b"replaced");
                            let newest = (at >= 10)
                                .then(|| {
                                    model
                                        .range((key(k), Lsn(10))..=(key(k), Lsn(at)))
                                        .next_back()
                                        .map(|(at, v)| (*at, v.clone()))
                                })
                                .flatten();
                            let expected = match newest {
                                Some((slot, Value::WalRecord { .. })) => {
                                    model.insert(slot, Value::Image(image.clone()));
                                    true
                                }
                                _ => false,
                            };
                            prop_assert_eq!(
                                layer.replace_newest_with_image(key(k), Lsn(at), image),
                                expected
                            );
                        }
                    }
                }
                let size: usize = model.values().map(Value::size_bytes).sum();
                prop_assert_eq!(layer.size_bytes(), size as u64);
                prop_assert_eq!(layer.is_empty(), model.is_empty());
                let all: Vec<_> = layer.iter().map(|(k, l, v)| (k, l, v.clone())).collect();
                let expected: Vec<_> = model.iter().map(|((k, l), v)| (*k, *l, v.clone())).collect();
                prop_assert_eq!(all, expected);
                let bounds = model.keys().next().map(|(first, _)| *first)
                    .zip(model.keys().next_back().map(|(last, _)| *last));
                prop_assert_eq!(layer.key_bounds(), bounds);
                for k in 0..6 {
                    for (start, end) in [(0, 70), (10, 30), (25, 26), (40, 40), (30, 60)] {
                        let mut got = Vec::new();
                        let stopped = layer.collect(key(k), Lsn(start)..Lsn(end), &mut got);
                        let mut want = Vec::new();
                        let mut want_stopped = false;
                        if start < end {
                            for ((_, lsn), v) in model.range((key(k), Lsn(start))..(key(k), Lsn(end))).rev() {
                                want.push((*lsn, v.clone()));
                                if v.will_init() {
                                    want_stopped = true;
                                    break;
                                }
                            }
                        }
                        prop_assert_eq!(got, want);
                        prop_assert_eq!(stopped, want_stopped);
                    }
                }
                for max_lsn in [10, 25, 60] {
                    let range = key(1)..key(4);
                    let mut got = Vec::new();
                    layer.keys_at(&range, Lsn(max_lsn), &mut got);
                    got.sort();
                    let mut want: Vec<Key> = model
                        .keys()
                        .filter(|(k, l)| range.contains(k) && l.0 <= max_lsn)
                        .map(|(k, _)| *k)
                        .collect();
                    want.dedup();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
