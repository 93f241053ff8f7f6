//! In-memory layers: the open layer that receives a timeline's writes, and
//! frozen layers (no longer written) waiting to become delta files.
//!
//! Layout (issue #16: a tree node per record, then a vector per key, made
//! the layer and the allocator most of ingest's time):
//!
//! ```text
//! arena:  [0: A@10 ·] [1: B@12 ·] [2: C@12 ·] [3: A@14 →0] [4: C@20 →2] ...
//! index:  key A -> newest 3, oldest LSN 10
//!         key B -> newest 1, oldest LSN 12
//!         key C -> newest 4, oldest LSN 12
//! ```
//!
//! Every version is one entry of an append-only arena: its LSN, its value
//! and the slot of the key's next older version. The index maps a key to
//! its newest version, so a key's versions form a chain, newest first. WAL
//! arrives in LSN order, so a put appends an entry and moves the key's head
//! (an LSN below the newest, which a writer batch may put, is spliced into
//! the chain in place). The only allocations are an arena chunk every
//! `VALUE_CHUNK` puts and the index (and list of keys) growing. Reads at the
//! head, the usual case, start at the newest version; a read further back
//! walks the chain.
//! Key order, which only flushing and key listing need, is established
//! then: flushing sorts the keys and places every entry by its key's rank in
//! one pass over the arena (each entry carries its key's number).

use std::ops::Range;
use std::time::Instant;

use postgres_wal::Lsn;

use crate::key::{Key, KeyMap};
use crate::value::Value;

/// Versions per chunk of the arena: big enough that chunk allocation is
/// rare (a chunk is about 240 KB).
const VALUE_CHUNK: usize = 4096;

/// No older version: the end of a chain.
const NO_SLOT: u32 = u32::MAX;

/// One version of a key.
struct Entry {
    lsn: Lsn,
    value: Value,
    /// Slot of the key's next older version, or [`NO_SLOT`].
    older: u32,
    /// The key's number: its place in [`InMemoryLayer::keys`]. Lets
    /// [`InMemoryLayer::iter`] order the versions from one pass over the
    /// arena instead of walking every chain (it fits in padding).
    key_no: u32,
}

/// A key's versions: its newest entry, that entry's LSN (kept here so that
/// appending a version, the common case, does not read an old entry, long
/// out of cache, from the arena) and the LSN of its oldest.
#[derive(Clone, Copy, Debug)]
struct Chain {
    newest: u32,
    /// The key's number (see [`Entry::key_no`]), here for the same reason
    /// as `newest_lsn`.
    key_no: u32,
    newest_lsn: Lsn,
    oldest_lsn: Lsn,
}

/// Append-only storage of versions, addressed by slot.
#[derive(Default)]
struct Arena {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

impl Arena {
    fn push(&mut self, entry: Entry) -> u32 {
        let slot = self.len;
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < VALUE_CHUNK => chunk.push(entry),
            _ => {
                // The first chunk grows by doubling, so that the open layer
                // of an idle timeline (a few values) stays small; later
                // chunks are allocated whole.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(VALUE_CHUNK)
                };
                chunk.push(entry);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
        // Slots stay below NO_SLOT: 4 G versions would need far more memory
        // than any freeze policy lets an open layer hold.
        u32::try_from(slot).unwrap_or(NO_SLOT - 1)
    }

    /// Every entry, in slot order.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flatten()
    }

    fn get(&self, slot: u32) -> &Entry {
        let slot = slot as usize;
        &self.chunks[slot / VALUE_CHUNK][slot % VALUE_CHUNK]
    }

    fn get_mut(&mut self, slot: u32) -> &mut Entry {
        let slot = slot as usize;
        &mut self.chunks[slot / VALUE_CHUNK][slot % VALUE_CHUNK]
    }

    /// The slots of a chain, newest first.
    fn chain(&self, newest: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(newest), |&slot| {
            let older = self.get(slot).older;
            (older != NO_SLOT).then_some(older)
        })
    }
}

/// Versions with LSNs in `start_lsn..end_lsn`: per key, a chain newest
/// first (see the module doc for the layout).
pub struct InMemoryLayer {
    start_lsn: Lsn,
    /// `Lsn::MAX` while open; set when frozen.
    end_lsn: Lsn,
    /// The timeline's `prev_record_lsn` when this layer was frozen.
    prev_record_lsn: Lsn,
    arena: Arena,
    index: KeyMap<Chain>,
    /// Every key held, in the order they first arrived (numbered so).
    keys: Vec<Key>,
    /// Whether some version arrived below its key's newest and was spliced
    /// into the chain: the key's versions are then not in LSN order in the
    /// arena.
    spliced: bool,
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
            arena: Arena::default(),
            index: KeyMap::default(),
            keys: Vec::new(),
            spliced: false,
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
        let size = value.size_bytes() as u64;
        let chain = match self.index.entry(key) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                // Below NO_SLOT for the same reason as the slots.
                let key_no = u32::try_from(self.keys.len()).unwrap_or(NO_SLOT - 1);
                self.keys.push(key);
                let slot = self.arena.push(Entry {
                    lsn,
                    value,
                    older: NO_SLOT,
                    key_no,
                });
                vacant.insert(Chain {
                    newest: slot,
                    key_no,
                    newest_lsn: lsn,
                    oldest_lsn: lsn,
                });
                self.size_bytes += size;
                self.key_bounds = Some(match self.key_bounds {
                    None => (key, key),
                    Some((first, last)) => (first.min(key), last.max(key)),
                });
                return;
            }
            std::collections::hash_map::Entry::Occupied(occupied) => occupied.into_mut(),
        };
        let key_no = chain.key_no;
        // The common case: WAL arrives in LSN order.
        if chain.newest_lsn < lsn {
            chain.newest = self.arena.push(Entry {
                lsn,
                value,
                older: chain.newest,
                key_no,
            });
            chain.newest_lsn = lsn;
            self.size_bytes += size;
            return;
        }
        // Find the newest version at or below `lsn` and the one above it.
        let mut newer = None;
        let mut at = chain.newest;
        while at != NO_SLOT {
            let entry = self.arena.get_mut(at);
            if entry.lsn == lsn {
                let old = std::mem::replace(&mut entry.value, value);
                self.size_bytes = (self.size_bytes + size).saturating_sub(old.size_bytes() as u64);
                return;
            }
            if entry.lsn < lsn {
                break;
            }
            newer = Some(at);
            at = entry.older;
        }
        let slot = self.arena.push(Entry {
            lsn,
            value,
            older: at,
            key_no,
        });
        self.spliced = true;
        self.size_bytes += size;
        if at == NO_SLOT {
            chain.oldest_lsn = lsn;
        }
        match newer {
            Some(newer) => self.arena.get_mut(newer).older = slot,
            None => {
                chain.newest = slot;
                chain.newest_lsn = lsn;
            }
        }
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
        let Some(chain) = self.index.get(&key) else {
            return false;
        };
        let Some(slot) = self
            .arena
            .chain(chain.newest)
            .find(|&slot| self.arena.get(slot).lsn <= at)
        else {
            return false;
        };
        let value = &mut self.arena.get_mut(slot).value;
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
            .all(|chain| self.arena.get(chain.newest).lsn < end_lsn));
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
        let Some(chain) = self.index.get(&key) else {
            return false;
        };
        for slot in self.arena.chain(chain.newest) {
            let entry = self.arena.get(slot);
            if entry.lsn >= lsns.end {
                continue;
            }
            if entry.lsn < lsns.start {
                break;
            }
            out.push((entry.lsn, entry.value.clone()));
            if entry.value.will_init() {
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
        let listed = self
            .index
            .iter()
            .filter(|(key, chain)| keys.contains(key) && chain.oldest_lsn <= max_lsn);
        out.extend(listed.map(|(key, _)| *key));
    }

    /// Every version of a key in `keys` with an LSN in `lsns`, in no
    /// particular order: no sort, and chains of other keys are not walked
    /// (cheap enough to run under the layer map lock on the open layer).
    pub fn for_each_version_in(
        &self,
        keys: &Range<Key>,
        lsns: &Range<Lsn>,
        mut visit: impl FnMut(Key, Lsn, &Value),
    ) {
        for (key, chain) in self.index.iter().filter(|(key, _)| keys.contains(key)) {
            for slot in self.arena.chain(chain.newest) {
                let entry = self.arena.get(slot);
                if entry.lsn < lsns.start {
                    break;
                }
                if entry.lsn < lsns.end {
                    visit(*key, entry.lsn, &entry.value);
                }
            }
        }
    }

    /// All versions in (key, lsn) order (a frozen layer is iterated once,
    /// when it is flushed).
    ///
    /// The order comes from one pass over the arena: the keys are sorted,
    /// then each entry's slot is placed by its key's rank (a counting sort,
    /// stable, so a key's versions stay in arena order, which is LSN order
    /// unless one was spliced in). Walking each key's chain instead cost a
    /// dependent cache miss per version, a quarter of a flush's encoding
    /// time; these loads are independent of each other.
    pub fn iter(&self) -> impl Iterator<Item = (Key, Lsn, &Value)> {
        let mut by_key: Vec<(Key, u32)> = (self.keys.iter().copied()).zip(0..).collect();
        by_key.sort_unstable_by_key(|&(key, _)| key);
        let mut rank = vec![0u32; self.keys.len()];
        for (place, &(_, no)) in (0..).zip(&by_key) {
            rank[no as usize] = place;
        }
        // Where each rank's run of slots starts, then fill them in.
        let mut next = vec![0u32; self.keys.len() + 1];
        for entry in self.arena.entries() {
            next[rank[entry.key_no as usize] as usize + 1] += 1;
        }
        for place in 1..next.len() {
            next[place] += next[place - 1];
        }
        let mut ordered = vec![(0u32, 0u32); self.arena.len];
        for (slot, entry) in self.arena.entries().enumerate() {
            let at = &mut next[rank[entry.key_no as usize] as usize];
            ordered[*at as usize] = (entry.key_no, slot as u32);
            *at += 1;
        }
        if self.spliced {
            for run in ordered.chunk_by_mut(|a, b| a.0 == b.0) {
                run.sort_unstable_by_key(|&(_, slot)| self.arena.get(slot).lsn);
            }
        }
        ordered.into_iter().map(move |(key_no, slot)| {
            let entry = self.arena.get(slot);
            (self.keys[key_no as usize], entry.lsn, &entry.value)
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
