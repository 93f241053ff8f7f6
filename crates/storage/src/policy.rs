//! Decisions as pure functions (STYLE §8): when to freeze the open layer,
//! which L0 deltas to compact and how to split them into L1 files, how to
//! partition the key space for image layers and which partitions need a
//! new image, which hot keys to materialise at the head, which files of an interrupted compaction to drop on open, and
//! which layers garbage collection may delete. The timeline executes them;
//! tests check them without any I/O.

use std::ops::Range;
use std::time::Duration;

use postgres_wal::Lsn;

use crate::key::Key;

/// When the open in-memory layer is frozen and flushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreezePolicy {
    /// Freeze once the open layer holds this many bytes of values.
    pub max_open_bytes: u64,
    /// Freeze once the open layer spans this many bytes of WAL.
    pub max_lsn_distance: u64,
    /// Freeze once the open layer is this old (and not empty).
    pub max_age: Duration,
}

impl Default for FreezePolicy {
    fn default() -> Self {
        FreezePolicy {
            max_open_bytes: 64 * 1024 * 1024,
            max_lsn_distance: 256 * 1024 * 1024,
            max_age: Duration::from_secs(600),
        }
    }
}

/// The open layer's state as the freeze policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct OpenLayerState {
    /// Bytes of values held.
    pub size_bytes: u64,
    /// First LSN the layer covers.
    pub start_lsn: Lsn,
    /// The timeline's last record LSN.
    pub last_record_lsn: Lsn,
    /// Time since the layer received its first value.
    pub age: Duration,
    /// Whether it holds any value.
    pub is_empty: bool,
}

/// Whether the open layer should be frozen now.
pub fn should_freeze(policy: &FreezePolicy, open: &OpenLayerState) -> bool {
    if open.is_empty {
        return false;
    }
    let lsn_distance = open
        .last_record_lsn
        .checked_sub(open.start_lsn)
        .unwrap_or(0);
    open.size_bytes >= policy.max_open_bytes
        || lsn_distance >= policy.max_lsn_distance
        || open.age >= policy.max_age
}

/// Whether a new image layer is due: once `threshold` delta layers sit
/// above the newest image layer, reads at the head walk that many files,
/// and GC cannot free any of them. `threshold` 0 disables image creation.
pub fn image_layer_due(deltas_above_newest_image: usize, threshold: usize) -> bool {
    threshold > 0 && deltas_above_newest_image >= threshold
}

/// When and how the timeline compacts and creates image layers
/// ([`crate::Timeline::compact`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Number of L0 delta files that triggers compaction into L1 files
    /// (at least 2 L0s are always compacted together: see
    /// [`pick_l0_for_compaction`]). 0 disables compaction.
    pub compaction_threshold: usize,
    /// Target size of one L1 delta file, and of the key range of one image
    /// partition (estimated at 8 KB per key).
    pub compaction_target_size: u64,
    /// A key partition gets a new image once this many delta LSN ranges
    /// hold versions of its keys above its newest image. 0 disables images.
    pub image_creation_threshold: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            compaction_threshold: 10,
            compaction_target_size: 128 * 1024 * 1024,
            image_creation_threshold: 3,
        }
    }
}

/// Estimated bytes of one key's value in an image (a page).
pub const IMAGE_BYTES_PER_KEY: u64 = 8192;

/// How many records written to a key since its last materialised image
/// make it due for a new one, for an image creation threshold `t` (0
/// disables materialising). `t - 1` rather than `t`: a key is refreshed
/// at the pass after it reaches `t - 1`, so a read between two passes
/// applies at most `t - 1` carried records plus what one pass period
/// added — within `t` for all but the hottest keys, which the next pass
/// refreshes again.
pub fn materialize_threshold(image_creation_threshold: usize) -> usize {
    match image_creation_threshold {
        0 => 0,
        t => (t - 1).max(1),
    }
}

/// The keys to materialise in one pass: those with at least `threshold`
/// records since their last image (`counts` as (key, records)), hottest
/// first (ties by key, so a pass is deterministic), at most `max_keys`.
/// `threshold` 0 disables.
pub fn keys_to_materialize(counts: &[(Key, u32)], threshold: usize, max_keys: usize) -> Vec<Key> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut due: Vec<(Key, u32)> = counts
        .iter()
        .filter(|(_, count)| *count as usize >= threshold)
        .copied()
        .collect();
    due.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    due.truncate(max_keys);
    due.into_iter().map(|(key, _)| key).collect()
}

/// Whether a read that applied `records_applied` records should store its
/// result as the key's materialised image (`threshold` 0 disables): the
/// next read of the page then starts from it.
pub fn fill_after_read(records_applied: usize, threshold: usize) -> bool {
    threshold > 0 && records_applied >= threshold
}

/// Which L0 deltas to compact: indices into `l0_lsn_ranges` (sorted by LSN
/// start, disjoint) of every L0 starting at or above `l1_end` (the end of
/// the newest L1 set), once there are at least `max(threshold, 2)` of
/// them. Compacting all of them keeps every L1 older than every L0, and
/// the result never overlaps an existing L1 set; at least two are needed
/// so the L1 range is strictly wider than any L0's, which is how an
/// interrupted compaction is told apart on open
/// ([`interrupted_compaction_garbage`]).
pub fn pick_l0_for_compaction(
    l0_lsn_ranges: &[Range<Lsn>],
    l1_end: Lsn,
    threshold: usize,
) -> Vec<usize> {
    let picked: Vec<usize> = (0..l0_lsn_ranges.len())
        .filter(|&i| l0_lsn_ranges[i].start >= l1_end)
        .collect();
    if threshold == 0 || picked.len() < threshold.max(2) {
        return Vec::new();
    }
    picked
}

/// Key ranges of the L1 files for versions whose sizes per key are
/// `key_sizes` (sorted by key, each key once): consecutive keys are grouped
/// until a group reaches `target_size`; all versions of a key stay in one
/// file. The ranges tile `Key::MIN..Key::MAX` (first starts at MIN, last
/// ends at MAX), which is how a complete set of L1 files is recognised.
pub fn split_l1(key_sizes: &[(Key, u64)], target_size: u64) -> Vec<Range<Key>> {
    let mut bounds = vec![Key::MIN];
    let mut acc = 0u64;
    for (i, (_, size)) in key_sizes.iter().enumerate() {
        acc = acc.saturating_add(*size);
        if acc >= target_size.max(1) {
            if let Some((next, _)) = key_sizes.get(i + 1) {
                bounds.push(*next);
            }
            acc = 0;
        }
    }
    bounds.push(Key::MAX);
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Partitions of the key space for image layers, from the keys that exist:
/// each holds about `target_size / IMAGE_BYTES_PER_KEY` keys; together
/// they tile `Key::MIN..Key::MAX`.
pub fn partition_keys(keys: &[Key], target_size: u64) -> Vec<Range<Key>> {
    let per = (target_size / IMAGE_BYTES_PER_KEY).max(1) as usize;
    let mut bounds = vec![Key::MIN];
    bounds.extend(keys.iter().skip(per).step_by(per).copied());
    bounds.push(Key::MAX);
    bounds.dedup();
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// What the image policy knows about one layer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Whether it is an image layer.
    pub is_image: bool,
    /// Keys it covers.
    pub key_range: Range<Key>,
    /// LSNs it covers (an image at L covers `L..L+1`).
    pub lsn_range: Range<Lsn>,
}

fn overlaps(a: &Range<Key>, b: &Range<Key>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Whether the union of `ranges` covers all of `target`.
fn covers(target: &Range<Key>, mut ranges: Vec<Range<Key>>) -> bool {
    ranges.sort_by_key(|r| r.start);
    let mut reached = target.start;
    for r in ranges {
        if r.start > reached {
            break;
        }
        reached = reached.max(r.end);
        if reached >= target.end {
            return true;
        }
    }
    reached >= target.end
}

/// The greatest LSN X such that images at or above X together cover all
/// of `part`; `None` if the images never cover it.
pub fn newest_full_image_lsn(part: &Range<Key>, layers: &[LayerInfo]) -> Option<Lsn> {
    let mut images: Vec<&LayerInfo> = layers
        .iter()
        .filter(|l| l.is_image && overlaps(&l.key_range, part))
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.lsn_range.start));
    let mut ranges = Vec::new();
    for image in images {
        ranges.push(image.key_range.clone());
        if covers(part, ranges.clone()) {
            return Some(image.lsn_range.start);
        }
    }
    None
}

/// Indices of the partitions that need a new image at `lsn`: those where
/// at least `threshold` distinct delta LSN ranges overlapping the
/// partition hold versions above its newest full image (and below or at
/// `lsn`), i.e. a read at `lsn` would walk that many delta levels.
pub fn partitions_needing_images(
    partitions: &[Range<Key>],
    layers: &[LayerInfo],
    threshold: usize,
    lsn: Lsn,
) -> Vec<usize> {
    if threshold == 0 {
        return Vec::new();
    }
    partitions
        .iter()
        .enumerate()
        .filter(|(_, part)| {
            let base = newest_full_image_lsn(part, layers);
            if base.is_some_and(|b| b >= lsn) {
                return false;
            }
            let mut ranges: Vec<&Range<Lsn>> = layers
                .iter()
                .filter(|l| !l.is_image && overlaps(&l.key_range, part))
                .filter(|l| l.lsn_range.start <= lsn)
                .filter(|l| base.is_none_or(|b| l.lsn_range.end.0.saturating_sub(1) > b.0))
                .map(|l| &l.lsn_range)
                .collect();
            ranges.sort_by_key(|r| (r.start, r.end));
            ranges.dedup();
            ranges.len() >= threshold
        })
        .map(|(i, _)| i)
        .collect()
}

/// Indices of the partitions whose history went quiet at `cutoff` and
/// would gain from an image there. Fewer deltas than the image threshold
/// never trigger an image at the head, so without this a burst of writes
/// followed by silence kept its old image and deltas forever. A partition
/// qualifies when:
/// - it has a full image of this timeline below `cutoff` (a partition
///   that only inherits would have its ancestor's pages copied in); images
///   above the cutoff, made at the head during the burst, do not help GC;
/// - no delta overlapping it lies wholly above `cutoff`: it is not being
///   written (under steady writes the head images do the job, and an
///   image at a moving cutoff every pass would rewrite it again and again);
/// - the deltas above its image that GC could then free (every record at
///   or below `cutoff`) hold at least half as many bytes as its image, so
///   a trickle of small writes does not rewrite it for little gain.
///
/// `sizes[i]` is the size in bytes of `layers[i]`; a layer overlapping
/// several partitions counts for each in equal shares.
pub fn partitions_quiet_below(
    partitions: &[Range<Key>],
    layers: &[LayerInfo],
    sizes: &[u64],
    cutoff: Lsn,
) -> Vec<usize> {
    let share = |layer: &LayerInfo, size: u64| {
        let overlapped = partitions
            .iter()
            .filter(|p| overlaps(&layer.key_range, p))
            .count();
        size / (overlapped.max(1) as u64)
    };
    partitions
        .iter()
        .enumerate()
        .filter(|(_, part)| {
            // Images above the cutoff (at the head) do not count: reads
            // between the cutoff and them still need what lies below.
            let at_or_below: Vec<LayerInfo> = layers
                .iter()
                .filter(|l| l.is_image && l.lsn_range.start <= cutoff)
                .cloned()
                .collect();
            let Some(base) = newest_full_image_lsn(part, &at_or_below) else {
                return false;
            };
            if base >= cutoff {
                return false;
            }
            let mut image_bytes = 0;
            let mut freeable_bytes = 0;
            for (layer, &size) in layers.iter().zip(sizes) {
                if !overlaps(&layer.key_range, part) {
                    continue;
                }
                let last_record = Lsn(layer.lsn_range.end.0.saturating_sub(1));
                if layer.is_image {
                    if layer.lsn_range.start == base {
                        image_bytes += share(layer, size);
                    }
                } else if layer.lsn_range.start > cutoff {
                    return false;
                } else if last_record > base && layer.lsn_range.end <= cutoff {
                    freeable_bytes += share(layer, size);
                }
            }
            freeable_bytes > 0 && freeable_bytes * 2 >= image_bytes
        })
        .map(|(i, _)| i)
        .collect()
}

/// Delta files to delete on open after a compaction was interrupted.
/// Compaction writes L1 files covering LSNs `[a, b)` that tile the key
/// space, then deletes the L0s inside `[a, b)`. So when deltas nest (one's
/// LSN range strictly inside another's): if the wider files tile
/// `Key::MIN..Key::MAX` they are complete and the narrower ones are stale
/// L0s; otherwise the wider ones are a partial L1 set (the L0s are all
/// still there, since deletion starts only after every L1 is durable).
pub fn interrupted_compaction_garbage(deltas: &[LayerInfo]) -> Vec<usize> {
    let mut garbage = std::collections::BTreeSet::new();
    for (i, wide) in deltas.iter().enumerate() {
        let r = &wide.lsn_range;
        let inner: Vec<usize> = deltas
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.lsn_range != *r && d.lsn_range.start >= r.start && d.lsn_range.end <= r.end
            })
            .map(|(j, _)| j)
            .collect();
        if inner.is_empty() {
            continue;
        }
        let group: Vec<usize> = deltas
            .iter()
            .enumerate()
            .filter(|(_, d)| d.lsn_range == *r)
            .map(|(j, _)| j)
            .collect();
        let ranges = group.iter().map(|&j| deltas[j].key_range.clone()).collect();
        if covers(&(Key::MIN..Key::MAX), ranges) {
            garbage.extend(inner);
        } else {
            garbage.insert(i);
        }
    }
    garbage.into_iter().collect()
}

/// What GC knows about one layer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcLayer {
    /// Whether it is an image layer.
    pub is_image: bool,
    /// Keys it covers.
    pub key_range: Range<Key>,
    /// LSNs it covers (an image at L covers `L..L+1`).
    pub lsn_range: Range<Lsn>,
}

/// Indices of the layers GC may delete. A layer is garbage when all of:
/// - every LSN it holds is below `cutoff`;
/// - newer image layers at or below both `cutoff` and `disk_consistent_lsn`
///   (so they survive a crash) together cover its whole key range: reads
///   at or above the cutoff stop at those images and never reach it;
/// - no retained LSN (a child's branch point) falls between the layer's
///   first LSN and the covering image for any key, since a read at such an
///   LSN would need it.
pub fn gc_garbage(
    layers: &[GcLayer],
    cutoff: Lsn,
    disk_consistent_lsn: Lsn,
    retain_lsns: &[Lsn],
) -> Vec<usize> {
    let horizon = cutoff.min(disk_consistent_lsn);
    layers
        .iter()
        .enumerate()
        .filter(|(_, layer)| layer.lsn_range.end <= cutoff)
        .filter(|(_, layer)| {
            let covering: Vec<Range<Key>> = layers
                .iter()
                .filter(|image| {
                    let image_lsn = image.lsn_range.start;
                    // An image at L holds every record at or below L, so it
                    // covers a delta ending at L + 1 but only strictly older
                    // images.
                    let covers_lsns = if layer.is_image {
                        image_lsn > layer.lsn_range.start
                    } else {
                        image_lsn.0 >= layer.lsn_range.end.0.saturating_sub(1)
                    };
                    image.is_image
                        && covers_lsns
                        && image_lsn <= horizon
                        && overlaps(&image.key_range, &layer.key_range)
                        && !retain_lsns
                            .iter()
                            .any(|r| *r >= layer.lsn_range.start && *r < image_lsn)
                })
                .map(|image| image.key_range.clone())
                .collect();
            covers(&layer.key_range, covering)
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(size_bytes: u64, start: u64, last: u64, age_s: u64) -> OpenLayerState {
        OpenLayerState {
            size_bytes,
            start_lsn: Lsn(start),
            last_record_lsn: Lsn(last),
            age: Duration::from_secs(age_s),
            is_empty: false,
        }
    }

    #[test]
    fn freezes_on_any_threshold_but_never_empty() {
        let p = FreezePolicy {
            max_open_bytes: 100,
            max_lsn_distance: 1000,
            max_age: Duration::from_secs(10),
        };
        assert!(!should_freeze(&p, &state(10, 0, 10, 1)));
        assert!(should_freeze(&p, &state(100, 0, 10, 1)));
        assert!(should_freeze(&p, &state(10, 0, 1000, 1)));
        assert!(should_freeze(&p, &state(10, 0, 10, 10)));
        let empty = OpenLayerState {
            is_empty: true,
            ..state(1000, 0, 5000, 100)
        };
        assert!(!should_freeze(&p, &empty));
    }

    fn delta(start: u64, end: u64) -> GcLayer {
        GcLayer {
            is_image: false,
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(start)..Lsn(end),
        }
    }

    fn image(lsn: u64) -> GcLayer {
        GcLayer {
            is_image: true,
            key_range: Key::MIN..Key::MAX,
            lsn_range: Lsn(lsn)..Lsn(lsn + 1),
        }
    }

    #[test]
    fn deletes_only_what_an_image_below_the_cutoff_covers() {
        let layers = [
            delta(1, 10),
            image(9),
            delta(10, 20),
            image(25),
            delta(20, 30),
        ];
        assert_eq!(gc_garbage(&layers, Lsn(30), Lsn(30), &[]), vec![0, 1, 2]);
        // Cutoff below the newer image: only the first delta is covered.
        assert_eq!(gc_garbage(&layers, Lsn(24), Lsn(30), &[]), vec![0]);
        // The image that would cover them is not durable yet.
        assert_eq!(gc_garbage(&layers, Lsn(30), Lsn(20), &[]), vec![0]);
    }

    #[test]
    fn keeps_what_a_branch_point_needs() {
        let layers = [delta(1, 10), delta(10, 20), image(25)];
        // A read at 15 needs both deltas: no image at or below 15.
        assert!(gc_garbage(&layers, Lsn(30), Lsn(30), &[Lsn(15)]).is_empty());
        assert_eq!(
            gc_garbage(&layers, Lsn(30), Lsn(30), &[Lsn(5), Lsn(24)]).len(),
            0
        );
        assert_eq!(
            gc_garbage(&layers, Lsn(30), Lsn(30), &[Lsn(25)]),
            vec![0, 1]
        );
    }

    #[test]
    fn image_layers_are_due_after_threshold_deltas() {
        assert!(!image_layer_due(2, 3));
        assert!(image_layer_due(3, 3));
        assert!(!image_layer_due(100, 0));
    }

    #[test]
    fn hot_keys_are_picked_hottest_first_within_the_budget() {
        assert_eq!(materialize_threshold(0), 0);
        assert_eq!(materialize_threshold(1), 1);
        assert_eq!(materialize_threshold(2), 1);
        assert_eq!(materialize_threshold(3), 2);
        let counts = [(k(1), 2), (k(2), 9), (k(3), 1), (k(4), 5), (k(5), 5)];
        assert_eq!(
            keys_to_materialize(&counts, 2, 10),
            vec![k(2), k(4), k(5), k(1)]
        );
        assert_eq!(keys_to_materialize(&counts, 5, 2), vec![k(2), k(4)]);
        assert!(keys_to_materialize(&counts, 0, 10).is_empty());
        assert!(keys_to_materialize(&counts, 10, 10).is_empty());
        assert!(fill_after_read(3, 3));
        assert!(!fill_after_read(2, 3));
        assert!(!fill_after_read(100, 0));
    }

    #[test]
    fn partial_key_coverage_is_not_enough() {
        let mut narrow = image(25);
        narrow.key_range = Key::MIN..Key::checkpoint();
        assert!(gc_garbage(&[delta(1, 10), narrow], Lsn(30), Lsn(30), &[]).is_empty());
    }

    fn k(n: u8) -> Key {
        let mut b = [0u8; crate::key::KEY_SIZE];
        b[17] = n;
        b[0] = 1;
        Key::from_bytes(b)
    }

    fn tiles(ranges: &[Range<Key>]) -> bool {
        ranges.first().is_some_and(|r| r.start == Key::MIN)
            && ranges.last().is_some_and(|r| r.end == Key::MAX)
            && ranges.windows(2).all(|w| w[0].end == w[1].start)
            && ranges.iter().all(|r| r.start < r.end)
    }

    #[test]
    fn l0_compaction_needs_two_and_the_threshold_above_the_l1s() {
        let ranges: Vec<Range<Lsn>> = (0..5u64).map(|i| Lsn(i * 10)..Lsn(i * 10 + 10)).collect();
        assert!(pick_l0_for_compaction(&ranges[..1], Lsn(0), 1).is_empty());
        assert_eq!(pick_l0_for_compaction(&ranges[..2], Lsn(0), 1), vec![0, 1]);
        assert!(pick_l0_for_compaction(&ranges, Lsn(0), 6).is_empty());
        assert_eq!(pick_l0_for_compaction(&ranges, Lsn(0), 5).len(), 5);
        // L0s older than the newest L1 set are never merged across it.
        assert_eq!(pick_l0_for_compaction(&ranges, Lsn(20), 3), vec![2, 3, 4]);
        assert!(pick_l0_for_compaction(&ranges, Lsn(0), 0).is_empty());
    }

    #[test]
    fn l1_split_keeps_keys_whole_and_tiles_the_key_space() {
        let sizes: Vec<(Key, u64)> = (0..10).map(|i| (k(i), 40)).collect();
        let split = split_l1(&sizes, 100);
        assert!(tiles(&split));
        assert_eq!(split.len(), 4); // 3 + 3 + 3 + 1 keys
        assert_eq!(split[1].start, k(3));
        assert_eq!(split_l1(&[], 100), vec![Key::MIN..Key::MAX]);
        assert_eq!(split_l1(&sizes, u64::MAX).len(), 1);
    }

    #[test]
    fn partitions_tile_with_bounded_keys() {
        let keys: Vec<Key> = (0..10).map(k).collect();
        let parts = partition_keys(&keys, 3 * IMAGE_BYTES_PER_KEY);
        assert!(tiles(&parts));
        for part in &parts {
            assert!(keys.iter().filter(|key| part.contains(key)).count() <= 3);
        }
        assert_eq!(partition_keys(&[], 1), vec![Key::MIN..Key::MAX]);
    }

    fn info(is_image: bool, keys: Range<Key>, lsns: Range<u64>) -> LayerInfo {
        LayerInfo {
            is_image,
            key_range: keys,
            lsn_range: Lsn(lsns.start)..Lsn(lsns.end),
        }
    }

    #[test]
    fn images_are_due_per_partition_by_delta_levels_above_the_image() {
        let parts = vec![Key::MIN..k(5), k(5)..Key::MAX];
        let mut layers = vec![
            info(false, k(0)..k(9), 1..10),
            info(false, k(0)..k(9), 10..20),
            info(false, k(6)..k(7), 20..30),
        ];
        assert_eq!(
            partitions_needing_images(&parts, &layers, 3, Lsn(30)),
            vec![1]
        );
        assert_eq!(
            partitions_needing_images(&parts, &layers, 2, Lsn(30)),
            vec![0, 1]
        );
        // An image at 25 over the second partition resets its count.
        layers.push(info(true, k(5)..Key::MAX, 25..26));
        assert!(partitions_needing_images(&parts, &layers, 2, Lsn(30))
            .iter()
            .all(|&p| p == 0));
        assert_eq!(newest_full_image_lsn(&parts[1], &layers), Some(Lsn(25)));
        // Two images at different LSNs covering halves: the older counts.
        layers.push(info(true, Key::MIN..k(2), 27..28));
        layers.push(info(true, k(2)..k(5), 26..27));
        assert_eq!(newest_full_image_lsn(&parts[0], &layers), Some(Lsn(26)));
        assert_eq!(
            partitions_needing_images(&parts, &[], 0, Lsn(30)),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn a_burst_then_silence_gets_one_image_at_the_cutoff_which_frees_the_rest() {
        let parts = vec![Key::MIN..k(5), k(5)..Key::MAX];
        // An image at 10 (100 bytes per partition), then three deltas (fewer
        // than a threshold of 4), the last still being written at 40.
        let mut layers = vec![
            info(true, Key::MIN..Key::MAX, 10..11),
            info(false, k(0)..k(9), 11..20),
            info(false, k(6)..k(7), 20..31),
            info(false, k(0)..k(9), 31..41),
        ];
        let mut sizes = vec![200, 120, 60, 100];
        assert!(partitions_needing_images(&parts, &layers, 4, Lsn(40)).is_empty());
        // The last delta lies wholly above 30: both partitions are written.
        assert!(partitions_quiet_below(&parts, &layers, &sizes, Lsn(30)).is_empty());
        // Once the cutoff reaches into it, both are quiet; the first frees
        // 60 bytes of deltas (half the one it shares), the second 60 + 60.
        assert_eq!(
            partitions_quiet_below(&parts, &layers, &sizes, Lsn(35)),
            vec![0, 1]
        );
        // A trickle is not worth an image: 10 bytes of deltas per partition.
        sizes[1] = 20;
        sizes[2] = 10;
        assert_eq!(
            partitions_quiet_below(&parts, &layers, &sizes, Lsn(35)),
            Vec::<usize>::new()
        );
        sizes[1] = 120;
        sizes[2] = 60;
        // An image at the cutoff lets GC free the old image and the deltas
        // below the cutoff, not the one reaching above it.
        layers.push(info(true, Key::MIN..Key::MAX, 35..36));
        sizes.push(200);
        let gc: Vec<GcLayer> = layers
            .iter()
            .map(|l| GcLayer {
                is_image: l.is_image,
                key_range: l.key_range.clone(),
                lsn_range: l.lsn_range.clone(),
            })
            .collect();
        assert_eq!(gc_garbage(&gc, Lsn(35), Lsn(40), &[]), vec![0, 1, 2]);
        // Afterwards nothing is quiet until written again.
        assert!(partitions_quiet_below(&parts, &layers, &sizes, Lsn(40)).is_empty());
        // An image at the head (made during the burst) does not stand in
        // for one at the cutoff: reads between the two need the history.
        let mut with_head_image = layers[..4].to_vec();
        with_head_image.push(info(true, Key::MIN..Key::MAX, 41..42));
        assert_eq!(
            partitions_quiet_below(&parts, &with_head_image, &sizes, Lsn(35)),
            vec![0, 1]
        );
        // No image of this timeline: an image would copy the ancestor's pages.
        assert!(partitions_quiet_below(&parts, &layers[1..4], &sizes[1..4], Lsn(45)).is_empty());
    }

    #[test]
    fn interrupted_compaction_keeps_one_copy() {
        let l0a = info(false, k(1)..k(9), 10..20);
        let l0b = info(false, k(2)..k(8), 20..30);
        let l1a = info(false, Key::MIN..k(5), 10..30);
        let l1b = info(false, k(5)..Key::MAX, 10..30);
        // Complete L1 set: the stale L0s go.
        let all = [l0a.clone(), l0b.clone(), l1a.clone(), l1b.clone()];
        assert_eq!(interrupted_compaction_garbage(&all), vec![0, 1]);
        // Partial L1 set: it goes, the L0s stay.
        let partial = [l0a.clone(), l0b.clone(), l1a.clone()];
        assert_eq!(interrupted_compaction_garbage(&partial), vec![2]);
        // A complete set whose L0s are gone (or a GC-thinned set): nothing.
        assert!(interrupted_compaction_garbage(&[l0a, l0b]).is_empty());
    }

    #[test]
    fn images_covering_halves_together_free_a_delta() {
        let layers = [
            GcLayer {
                is_image: false,
                key_range: k(0)..k(10),
                lsn_range: Lsn(1)..Lsn(10),
            },
            GcLayer {
                is_image: true,
                key_range: Key::MIN..k(5),
                lsn_range: Lsn(12)..Lsn(13),
            },
            GcLayer {
                is_image: true,
                key_range: k(5)..Key::MAX,
                lsn_range: Lsn(15)..Lsn(16),
            },
        ];
        assert_eq!(gc_garbage(&layers, Lsn(20), Lsn(20), &[]), vec![0]);
        // A branch point between the delta and one of the images pins it.
        assert!(gc_garbage(&layers, Lsn(20), Lsn(20), &[Lsn(14)]).is_empty());
        // One image not durable yet: not covered.
        assert!(gc_garbage(&layers, Lsn(20), Lsn(14), &[]).is_empty());
    }

    proptest::proptest! {
        /// Splits and partitions tile the key space for any key set and
        /// target, and every key lands in exactly one range.
        #[test]
        fn splits_and_partitions_always_tile(
            raw in proptest::collection::btree_set(0u8..255, 0..40),
            sizes in proptest::collection::vec(1u64..500, 40),
            target in 1u64..3000,
        ) {
            let keys: Vec<Key> = raw.iter().map(|n| k(*n)).collect();
            let key_sizes: Vec<(Key, u64)> = keys.iter().zip(&sizes).map(|(k, s)| (*k, *s)).collect();
            for ranges in [split_l1(&key_sizes, target), partition_keys(&keys, target * 100)] {
                proptest::prop_assert!(tiles(&ranges), "{ranges:?}");
                for key in &keys {
                    proptest::prop_assert_eq!(ranges.iter().filter(|r| r.contains(key)).count(), 1);
                }
            }
        }
    }
}
