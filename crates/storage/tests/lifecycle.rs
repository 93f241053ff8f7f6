//! The layer lifecycle on a real file system: L0 deltas compacted into L1
//! files split by key range, image layers per key partition, GC that frees
//! space, sizes and reconstruction stats — with every read at every flushed
//! LSN above the cutoff, and at a child's branch point, unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use storage::{
    CompactionPolicy, DerivedOp, Key, Repository, RepositoryConfig, Timeline, TimelineId, Value,
};

const KEYS: u32 = 64;
const ROUNDS: u64 = 12;

fn rel() -> RelFileNode {
    RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 16384,
    }
}

fn block(n: u32) -> Key {
    Key::rel_block(rel(), ForkNumber::Main, n)
}

/// An 8 KB heap-like page (compressible, distinct per key).
fn page(n: u32) -> Bytes {
    let mut page = vec![0u8; 8192];
    for (i, chunk) in page.chunks_mut(128).enumerate() {
        chunk[..4].copy_from_slice(&n.to_le_bytes());
        chunk[4..8].copy_from_slice(&(i as u32).to_le_bytes());
    }
    Bytes::from(page)
}

/// Round 0 writes every page and the relation size; round r patches byte
/// r of every page. One flush per round: one L0 per round.
fn write_history(timeline: &Timeline) -> Vec<Lsn> {
    let mut flushed = Vec::new();
    for round in 0..=ROUNDS {
        let lsn = Lsn(0x1000 * (round + 1));
        let mut writer = timeline.writer();
        for n in 0..KEYS {
            let value = if round == 0 {
                Value::Image(page(n))
            } else {
                Value::Derived(DerivedOp::WriteBytes {
                    offset: 200 + round as u32,
                    bytes: Bytes::from(vec![round as u8; 1]),
                })
            };
            writer.put(block(n), lsn, value).unwrap();
        }
        if round == 0 {
            let size = Key::rel_size(rel(), ForkNumber::Main);
            writer.put(size, lsn, Value::rel_size(KEYS)).unwrap();
        }
        writer.finish(lsn).unwrap();
        timeline.freeze_and_flush().unwrap();
        flushed.push(lsn);
    }
    flushed
}

/// Rounds after the first history, compacting after each flush; returns
/// what the compactions did in total (images and L1s).
fn write_more(
    timeline: &Timeline,
    flushed: &mut Vec<Lsn>,
    policy: &CompactionPolicy,
) -> storage::CompactionResult {
    let mut total = storage::CompactionResult::default();
    for round in ROUNDS + 1..=ROUNDS + 10 {
        let lsn = Lsn(0x1000 * (round + 1));
        let mut writer = timeline.writer();
        for n in 0..KEYS {
            let value = Value::Derived(DerivedOp::WriteBytes {
                offset: 200 + round as u32,
                bytes: Bytes::from(vec![round as u8; 1]),
            });
            writer.put(block(n), lsn, value).unwrap();
        }
        writer.finish(lsn).unwrap();
        timeline.freeze_and_flush().unwrap();
        flushed.push(lsn);
        let result = timeline.compact(policy).unwrap();
        total.images_created += result.images_created;
        total.layers_created.extend(result.layers_created);
    }
    total
}

fn expected(n: u32, round: u64) -> Bytes {
    let mut p = page(n).to_vec();
    for r in 1..=round {
        p[200 + r as usize] = r as u8;
    }
    Bytes::from(p)
}

fn check_all(timeline: &Timeline, flushed: &[Lsn], from_round: usize) {
    for (round, lsn) in flushed.iter().enumerate().skip(from_round) {
        for n in (0..KEYS).step_by(7) {
            let got = timeline.get(block(n), *lsn).unwrap();
            assert!(got == expected(n, round as u64), "key {n} at {lsn} differs");
        }
    }
}

#[test]
fn compaction_images_and_gc_shrink_the_store_and_keep_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let main = repo
        .create_timeline(TimelineId([1; 16]), 15, Lsn(0x10))
        .unwrap();
    let mut flushed = write_history(&main);
    let head = *flushed.last().unwrap();
    let before = main.layer_stats();
    assert_eq!(before.l0_count, ROUNDS as usize + 1);
    assert_eq!((before.l1_count, before.image_count), (0, 0));
    // Compression: 64 pages of 8 KB in far fewer bytes.
    assert!(before.l0_bytes < 64 * 8192 / 2, "{before:?}");
    assert_eq!(
        main.logical_size_bytes(head).unwrap(),
        u64::from(KEYS) * 8192
    );
    // Only the forks the caller names count (its directories list).
    let listed = [(rel(), ForkNumber::Main)];
    assert_eq!(
        main.logical_size_bytes_of(head, listed).unwrap(),
        u64::from(KEYS) * 8192
    );
    assert_eq!(main.logical_size_bytes_of(head, []).unwrap(), 0);
    let never_written = (rel(), ForkNumber::Fsm);
    assert_eq!(
        main.logical_size_bytes_of(head, [never_written]).unwrap(),
        0
    );

    // A child branched in the middle of the history pins it.
    let branch_at = flushed[5];
    let child = repo
        .branch_timeline(TimelineId([2; 16]), main.id(), branch_at)
        .unwrap();

    // Before compaction a read at the head applies every round's record.
    repo.clear_page_cache();
    let stats0 = repo.stats().snapshot();
    main.get(block(3), head).unwrap();
    let stats1 = repo.stats().snapshot();
    assert_eq!(stats1.records_total - stats0.records_total, ROUNDS);

    // Compactions as a background task would run them: every 4 L0s.
    let policy = CompactionPolicy {
        compaction_threshold: 4,
        compaction_target_size: 16 * 1024,
        image_creation_threshold: 3,
    };
    let first = main.compact(&policy).unwrap();
    // 13 L0s at once: one L1 level, not yet enough levels for an image.
    assert_eq!(first.layers_removed.len(), ROUNDS as usize + 1);
    assert_eq!(first.images_created, 0);
    check_all(&main, &flushed, 0);
    let more = write_more(&main, &mut flushed, &policy);
    let head = *flushed.last().unwrap();
    let after = main.layer_stats();
    assert!(after.l0_count < 4, "{after:?}");
    assert!(after.l1_count >= 4, "L1s split by key range: {after:?}");
    assert!(more.images_created >= 1, "{more:?}");
    assert_eq!(after.image_count, more.images_created);
    check_all(&main, &flushed, 0);
    // With images at the head, a head read applies nothing.
    let stats2 = repo.stats().snapshot();
    main.get(block(3), head).unwrap();
    assert_eq!(repo.stats().snapshot().records_total, stats2.records_total);

    // GC below the head: what newer images cover goes, except what the
    // child's branch point needs (anything starting at or below it).
    main.set_gc_cutoff(head).unwrap();
    let pinned = repo.gc_timeline(main.id()).unwrap();
    assert!(!pinned.layers_removed.is_empty());
    assert!(
        pinned
            .layers_removed
            .iter()
            .all(|l| l.lsn_range.start > branch_at),
        "{pinned:?}"
    );
    assert_eq!(
        child.get(block(9), branch_at).unwrap(),
        expected(9, 5),
        "branch point still reads"
    );
    let physical = main.physical_size_bytes();
    repo.delete_timeline(child.id()).unwrap();
    let gc = repo.gc_timeline(main.id()).unwrap();
    assert!(!gc.layers_removed.is_empty(), "{gc:?}");
    assert!(gc.bytes_removed > 0);
    assert_eq!(main.physical_size_bytes(), physical - gc.bytes_removed);
    check_all(&main, &flushed, flushed.len() - 1);
    assert_eq!(
        main.logical_size_bytes(head).unwrap(),
        u64::from(KEYS) * 8192
    );
    let snapshot = repo.stats().snapshot();
    assert_eq!(snapshot.compaction_runs, 11);
    assert_eq!(
        snapshot.gc_bytes_removed,
        pinned.bytes_removed + gc.bytes_removed
    );

    // Everything survives a restart.
    let stats_before = main.layer_stats();
    drop((main, repo));
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let main = repo.timeline(TimelineId([1; 16])).unwrap();
    assert_eq!(main.layer_stats(), stats_before);
    check_all(&main, &flushed, flushed.len() - 1);
    assert_eq!(main.verify_layers().unwrap(), main.layer_files().len());
}

/// Issue #11, found from outside: a burst of writes (fewer deltas than the
/// image threshold above the last image) and then silence. The cutoff
/// passes the burst, yet without an image at the cutoff GC could free
/// neither the old image nor the deltas, and the store stayed at ~2.4× the
/// database for good. Now the next compaction writes one image at the
/// cutoff, GC frees what it hides, and further passes write nothing.
#[test]
fn a_burst_then_silence_is_collected_down_to_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let main = repo
        .create_timeline(TimelineId([3; 16]), 15, Lsn(0x10))
        .unwrap();
    let mut flushed = write_history(&main);
    let policy = CompactionPolicy {
        compaction_threshold: 100,
        compaction_target_size: 1 << 30,
        image_creation_threshold: 4,
    };
    // The image an import leaves, then a burst of three rounds of full
    // page images (as after a checkpoint): deltas worth freeing.
    main.create_image_layer(Key::MIN..Key::MAX, *flushed.last().unwrap())
        .unwrap();
    for round in ROUNDS + 1..=ROUNDS + 3 {
        let lsn = Lsn(0x1000 * (round + 1));
        let mut writer = main.writer();
        for n in 0..KEYS {
            writer
                .put(block(n), lsn, Value::Image(expected(n, round)))
                .unwrap();
        }
        writer.finish(lsn).unwrap();
        main.freeze_and_flush().unwrap();
        flushed.push(lsn);
    }
    let head = *flushed.last().unwrap();
    assert_eq!(main.compact(&policy).unwrap().images_created, 0);

    // Silence: the cutoff reaches the head. GC alone frees only the history
    // below the old image.
    main.set_gc_cutoff(head).unwrap();
    repo.gc_timeline(main.id()).unwrap();
    let stuck = main.layer_stats();
    assert_eq!((stuck.image_count, stuck.l0_count), (1, 3), "{stuck:?}");
    let stuck_bytes = main.physical_size_bytes();

    let quiet = main.compact(&policy).unwrap();
    assert_eq!(quiet.images_created, 1, "{quiet:?}");
    assert_eq!(quiet.layers_created[0].lsn_range.start, head);
    let gc = repo.gc_timeline(main.id()).unwrap();
    // The old image and every delta but the one ending just past the
    // cutoff (it holds the head's own records, which the new image has).
    assert_eq!(gc.layers_removed.len(), 3, "{gc:?}");
    let after = main.layer_stats();
    assert_eq!((after.image_count, after.l0_count), (1, 1), "{after:?}");
    assert!(main.physical_size_bytes() < stuck_bytes);
    check_all(&main, &flushed, flushed.len() - 1);
    // Nothing more to do until the partition is written again.
    assert_eq!(main.compact(&policy).unwrap().images_created, 0);
    assert!(repo
        .gc_timeline(main.id())
        .unwrap()
        .layers_removed
        .is_empty());
}

/// Issue #11: hot keys whose records sit in the open in-memory layer stay
/// shallow after the background pass even when the materialised cache is
/// far too small to hold them all (it evicts): the pass leaves the image
/// in the open layer itself, so a later read at the head applies at most
/// the image creation threshold's worth of records. Before the fix, an
/// evicted floor made such a read apply every record since the last image.
#[test]
fn hot_keys_in_the_open_layer_stay_shallow_when_the_cache_evicts() {
    const HOT: u32 = 200;
    const PUTS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let config = RepositoryConfig {
        // Room for a handful of 8 KB images only.
        materialized_cache_bytes: 64 * 1024,
        // Only the background pass fills (no read-time fills).
        materialize_after_records: 0,
        ..RepositoryConfig::default()
    };
    let repo = Repository::open(dir.path(), config).unwrap();
    let main = repo
        .create_timeline(TimelineId([3; 16]), 15, Lsn(0x10))
        .unwrap();
    let mut lsn = 0x100u64;
    {
        let mut writer = main.writer();
        for n in 0..HOT {
            writer
                .put(block(n), Lsn(lsn), Value::Image(page(n)))
                .unwrap();
            lsn += 8;
        }
        writer.finish(Lsn(lsn)).unwrap();
        lsn += 8;
    }
    // 1000 records on one key plus 5 on each of the others, all in the
    // open layer (never frozen here).
    let mut writer = main.writer();
    for i in 0..PUTS {
        let n = if i < 5 * u64::from(HOT) {
            (i % u64::from(HOT)) as u32
        } else {
            0
        };
        writer
            .put(
                block(n),
                Lsn(lsn),
                Value::Derived(DerivedOp::WriteBytes {
                    offset: 300 + (i % 1000) as u32,
                    bytes: Bytes::from(vec![(i % 251) as u8; 1]),
                }),
            )
            .unwrap();
        lsn += 8;
    }
    writer.finish(Lsn(lsn)).unwrap();
    let head = main.last_record_lsn();
    let expect: Vec<Bytes> = {
        // What the pages must read as (computed before any pass).
        (0..HOT)
            .map(|n| main.get(block(n), head).unwrap())
            .collect()
    };
    let result = main.materialize_hot(2, HOT as usize).unwrap();
    assert_eq!(result.materialized, HOT as usize, "{result:?}");

    let before = repo.stats().snapshot();
    for n in 0..HOT {
        assert_eq!(
            main.get(block(n), head).unwrap(),
            expect[n as usize],
            "block {n}"
        );
    }
    let after = repo.stats().snapshot();
    let applied: Vec<u64> = after
        .records_histogram
        .iter()
        .zip(&before.records_histogram)
        .map(|(a, b)| a - b)
        .collect();
    // Bucket 0 is "no record applied": every read starts at an image.
    assert_eq!(applied.iter().sum::<u64>(), u64::from(HOT), "{applied:?}");
    assert_eq!(
        applied[0],
        u64::from(HOT),
        "records applied per read: {applied:?}"
    );
    assert_eq!(after.records_total, before.records_total);
    // Reads below the images still see the history.
    let first_page = main.get(block(1), Lsn(0x100 + 8)).unwrap();
    assert_eq!(first_page, page(1));
}
