//! A bounded cache of values read from layer files, shared by all timelines
//! of a repository, so hot reads do not go to disk and re-verify checksums.
//!
//! The same CLOCK structure ([`ClockCache`]) also holds the materialised
//! head images of [`crate::materialized`].
//!
//! Eviction is CLOCK (second chance): each hit sets a reference bit, the hand
//! clears bits and evicts the first entry whose bit is already clear. It
//! approximates LRU without reordering on every hit.

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::Mutex;

use crate::value::Value;

/// Cache key: a layer file's process-unique id and a byte offset in it.
pub type CacheKey = (u64, u64);

struct Slot<K, V> {
    key: K,
    value: V,
    size_bytes: usize,
    referenced: bool,
}

struct Inner<K, V> {
    slots: Vec<Slot<K, V>>,
    index: HashMap<K, usize>,
    hand: usize,
    used_bytes: usize,
}

/// A size-bounded CLOCK cache; the caller states each value's size.
pub struct ClockCache<K, V> {
    capacity_bytes: usize,
    inner: Mutex<Inner<K, V>>,
}

/// The cache of values read from layer files.
pub type PageCache = ClockCache<CacheKey, Value>;

impl PageCache {
    /// Inserts a value read from a layer file (values never change, so an
    /// existing entry is kept), evicting others to stay within capacity.
    pub fn insert(&self, key: CacheKey, value: Value) {
        let size_bytes = value.size_bytes() + 64;
        self.insert_sized(key, value, size_bytes, |_| false);
    }
}

impl<K: Hash + Eq + Copy, V: Clone> ClockCache<K, V> {
    /// A cache holding at most `capacity_bytes` of values (0 disables it).
    pub fn new(capacity_bytes: usize) -> ClockCache<K, V> {
        ClockCache {
            capacity_bytes,
            inner: Mutex::new(Inner {
                slots: Vec::new(),
                index: HashMap::new(),
                hand: 0,
                used_bytes: 0,
            }),
        }
    }

    /// The cached value, if present.
    pub fn get(&self, key: K) -> Option<V> {
        let mut inner = self.inner.lock();
        let slot_index = *inner.index.get(&key)?;
        let slot = &mut inner.slots[slot_index];
        slot.referenced = true;
        Some(slot.value.clone())
    }

    /// Inserts `value` accounted as `size_bytes`, evicting others to stay
    /// within capacity. An existing entry for `key` is replaced only when
    /// `replace(existing)` says so. Returns whether `value` was stored.
    pub fn insert_sized(
        &self,
        key: K,
        value: V,
        size_bytes: usize,
        replace: impl FnOnce(&V) -> bool,
    ) -> bool {
        if size_bytes > self.capacity_bytes {
            return false;
        }
        let mut inner = self.inner.lock();
        if let Some(&at) = inner.index.get(&key) {
            if !replace(&inner.slots[at].value) {
                return false;
            }
            let old = std::mem::replace(&mut inner.slots[at].size_bytes, size_bytes);
            inner.slots[at].value = value;
            inner.used_bytes = inner.used_bytes - old + size_bytes;
            // Shrink back within capacity; the replaced entry may go too,
            // which only costs a later miss.
            while inner.used_bytes > self.capacity_bytes {
                if !inner.evict_one() {
                    break;
                }
            }
            return true;
        }
        while inner.used_bytes + size_bytes > self.capacity_bytes {
            if !inner.evict_one() {
                break;
            }
        }
        let slot_index = inner.slots.len();
        inner.slots.push(Slot {
            key,
            value,
            size_bytes,
            referenced: false,
        });
        inner.index.insert(key, slot_index);
        inner.used_bytes += size_bytes;
        true
    }

    /// Drops everything (benchmarks measure cold reads with this).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.slots.clear();
        inner.index.clear();
        inner.hand = 0;
        inner.used_bytes = 0;
    }

    /// Bytes currently accounted to cached values.
    pub fn used_bytes(&self) -> usize {
        self.inner.lock().used_bytes
    }
}

impl<K: Hash + Eq + Copy, V> Inner<K, V> {
    /// Evicts one entry; false if the cache is empty.
    fn evict_one(&mut self) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
                continue;
            }
            let victim = self.slots.swap_remove(self.hand);
            self.index.remove(&victim.key);
            self.used_bytes -= victim.size_bytes;
            if let Some(moved) = self.slots.get(self.hand) {
                self.index.insert(moved.key, self.hand);
            }
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn value(n: usize) -> Value {
        Value::Image(Bytes::from(vec![0u8; n]))
    }

    #[test]
    fn stays_within_capacity_and_keeps_hot_entries() {
        let cache = PageCache::new(10 * (100 + 1 + 64));
        for i in 0..10 {
            cache.insert((1, i), value(100));
        }
        assert!(cache.get((1, 0)).is_some());
        for i in 10..15 {
            cache.insert((1, i), value(100));
        }
        assert!(cache.used_bytes() <= 10 * 165);
        assert!(
            cache.get((1, 0)).is_some(),
            "referenced entry was evicted first"
        );
        assert!(cache.get((1, 14)).is_some());
        cache.clear();
        assert!(cache.get((1, 14)).is_none());
    }

    #[test]
    fn replacement_is_conditional_and_keeps_the_bound() {
        let cache: ClockCache<u32, u64> = ClockCache::new(100);
        assert!(cache.insert_sized(1, 10, 40, |_| true));
        assert!(!cache.insert_sized(1, 5, 40, |old| *old < 5));
        assert_eq!(cache.get(1), Some(10));
        assert!(cache.insert_sized(1, 20, 60, |old| *old < 20));
        assert_eq!(cache.get(1), Some(20));
        assert!(cache.insert_sized(2, 30, 40, |_| true));
        assert!(cache.used_bytes() <= 100);
        assert_eq!(cache.get(2), Some(30));
    }

    #[test]
    fn oversized_values_are_not_cached() {
        let cache = PageCache::new(100);
        cache.insert((1, 1), value(1000));
        assert!(cache.get((1, 1)).is_none());
    }
}
