//! Decisions as pure functions (STYLE §8): when to freeze the open layer,
//! and which layers garbage collection may delete. The timeline executes
//! them; tests check them without any I/O.

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
/// - a newer image layer at or below both `cutoff` and `disk_consistent_lsn`
///   (so it survives a crash) covers its whole key range: reads at or above
///   the cutoff stop at that image and never reach this layer;
/// - no retained LSN (a child's branch point) falls between the layer's
///   first LSN and that image, since a read at such an LSN would need it.
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
            layers.iter().any(|image| {
                let image_lsn = image.lsn_range.start;
                // An image at L holds every record at or below L, so it covers
                // a delta ending at L + 1 but only strictly older images.
                let covers_lsns = if layer.is_image {
                    image_lsn > layer.lsn_range.start
                } else {
                    image_lsn.0 >= layer.lsn_range.end.0.saturating_sub(1)
                };
                image.is_image
                    && covers_lsns
                    && image_lsn <= horizon
                    && image.key_range.start <= layer.key_range.start
                    && image.key_range.end >= layer.key_range.end
                    && !retain_lsns
                        .iter()
                        .any(|r| *r >= layer.lsn_range.start && *r < image_lsn)
            })
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
    fn partial_key_coverage_is_not_enough() {
        let mut narrow = image(25);
        narrow.key_range = Key::MIN..Key::checkpoint();
        assert!(gc_garbage(&[delta(1, 10), narrow], Lsn(30), Lsn(30), &[]).is_empty());
    }
}
