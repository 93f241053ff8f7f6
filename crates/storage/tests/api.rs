//! The public API's contract: typed errors for bad input, waiting for LSNs,
//! branching rules, image layers and GC.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use storage::{
    FreezePolicy, GetError, Key, Repository, RepositoryConfig, RepositoryError, TimelineId, Value,
    WaitLsnError, WriteError,
};

fn id(n: u8) -> TimelineId {
    TimelineId([n; 16])
}

fn image(byte: u8) -> Value {
    Value::Image(Bytes::from(vec![byte; 8]))
}

fn put(timeline: &storage::Timeline, key: Key, lsn: u64, value: Value) {
    let mut writer = timeline.writer();
    writer.put(key, Lsn(lsn), value).unwrap();
    writer.finish(Lsn(lsn)).unwrap();
}

fn repo() -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    (dir, repo)
}

#[test]
fn unknown_and_duplicate_timelines_are_typed_errors() {
    let (_dir, repo) = repo();
    assert!(
        matches!(repo.timeline(id(9)), Err(RepositoryError::TimelineNotFound(t)) if t == id(9))
    );
    assert!(matches!(
        repo.branch_timeline(id(2), id(9), Lsn(1)),
        Err(RepositoryError::TimelineNotFound(_))
    ));
    assert!(matches!(
        repo.delete_timeline(id(9)),
        Err(RepositoryError::TimelineNotFound(_))
    ));
    repo.create_timeline(id(1), 15, Lsn(1)).unwrap();
    assert!(matches!(
        repo.create_timeline(id(1), 15, Lsn(1)),
        Err(RepositoryError::TimelineExists(_))
    ));
}

#[test]
fn reads_outside_the_readable_range_are_refused() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    let key = Key::checkpoint();
    put(&main, key, 0x10, image(1));
    put(&main, key, 0x20, image(2));
    assert!(matches!(
        main.get(key, Lsn(0x21)),
        Err(GetError::LsnAhead { .. })
    ));
    assert!(matches!(
        main.get(Key::control_file(), Lsn(0x20)),
        Err(GetError::KeyNotFound { .. })
    ));
    main.set_gc_cutoff(Lsn(0x18)).unwrap();
    assert!(matches!(
        main.get(key, Lsn(0x17)),
        Err(GetError::BelowGcCutoff { .. })
    ));
    assert_eq!(main.get(key, Lsn(0x18)).unwrap(), Bytes::from(vec![1; 8]));
    assert!(matches!(
        main.set_gc_cutoff(Lsn(0x10)),
        Err(WriteError::GcCutoffOutOfRange { .. })
    ));
    assert!(matches!(
        main.set_gc_cutoff(Lsn(0x30)),
        Err(WriteError::GcCutoffOutOfRange { .. })
    ));
}

#[test]
fn writes_must_advance() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    put(&main, Key::checkpoint(), 0x10, image(1));
    let mut writer = main.writer();
    assert!(matches!(
        writer.put(Key::checkpoint(), Lsn(0x10), image(2)),
        Err(WriteError::LsnNotAdvancing { .. })
    ));
    assert!(matches!(
        writer.put(Key::checkpoint(), Lsn::MAX, image(2)),
        Err(WriteError::InvalidLsn { .. })
    ));
    writer.put(Key::checkpoint(), Lsn(0x30), image(2)).unwrap();
    assert!(matches!(
        writer.finish(Lsn(0x20)),
        Err(WriteError::FinishBelowPut { .. })
    ));
    // The refused batch left nothing behind.
    assert_eq!(main.last_record_lsn(), Lsn(0x10));
    assert!(matches!(
        main.writer().finish(Lsn(0x8)),
        Err(WriteError::LsnNotAdvancing { .. })
    ));
}

#[test]
fn branching_rules() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    let key = Key::checkpoint();
    put(&main, key, 0x10, image(1));
    put(&main, key, 0x20, image(2));
    put(&main, key, 0x30, image(3));
    main.set_gc_cutoff(Lsn(0x15)).unwrap();
    assert!(matches!(
        repo.branch_timeline(id(2), id(1), Lsn(0x31)),
        Err(RepositoryError::BranchBeyondHead { .. })
    ));
    assert!(matches!(
        repo.branch_timeline(id(2), id(1), Lsn(0x14)),
        Err(RepositoryError::BranchBelowGcCutoff { .. })
    ));
    let child = repo.branch_timeline(id(2), id(1), Lsn(0x20)).unwrap();
    assert_eq!(child.ancestor(), Some((id(1), Lsn(0x20))));
    assert_eq!(
        (child.last_record_lsn(), child.gc_cutoff()),
        (Lsn(0x20), Lsn(0x20))
    );
    assert_eq!(child.get(key, Lsn(0x20)).unwrap(), Bytes::from(vec![2; 8]));
    // The child diverges; the parent is unaffected.
    put(&child, key, 0x28, image(9));
    assert!(matches!(
        child.get(key, Lsn(0x30)),
        Err(GetError::LsnAhead { .. })
    ));
    assert_eq!(child.get(key, Lsn(0x28)).unwrap(), Bytes::from(vec![9; 8]));
    assert_eq!(main.get(key, Lsn(0x30)).unwrap(), Bytes::from(vec![3; 8]));
    // A grandchild reads through two ancestors.
    let grandchild = repo.branch_timeline(id(3), id(2), Lsn(0x20)).unwrap();
    assert_eq!(
        grandchild.get(key, Lsn(0x20)).unwrap(),
        Bytes::from(vec![2; 8])
    );
    assert!(matches!(
        repo.delete_timeline(id(1)),
        Err(RepositoryError::HasChildren { .. })
    ));
    repo.delete_timeline(id(3)).unwrap();
    repo.delete_timeline(id(2)).unwrap();
    repo.delete_timeline(id(1)).unwrap();
    assert!(repo.list_timelines().is_empty());
}

#[test]
fn wait_lsn_wakes_on_ingest_and_times_out() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    let err = main
        .wait_lsn(Lsn(0x10), Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, WaitLsnError::Timeout { .. }));
    let writer_side = main.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        put(&writer_side, Key::checkpoint(), 0x10, image(1));
    });
    let started = Instant::now();
    main.wait_lsn(Lsn(0x10), Duration::from_secs(10)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    handle.join().unwrap();
    let waiter = main.clone();
    let handle = std::thread::spawn(move || waiter.wait_lsn(Lsn(0x99), Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(20));
    repo.shutdown();
    assert_eq!(handle.join().unwrap(), Err(WaitLsnError::ShuttingDown));
}

#[test]
fn relation_sizes_and_key_listing() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    let rel = RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 16384,
    };
    let mut writer = main.writer();
    writer
        .put(
            Key::rel_size(rel, ForkNumber::Main),
            Lsn(0x10),
            Value::rel_size(2),
        )
        .unwrap();
    writer
        .put(
            Key::rel_block(rel, ForkNumber::Main, 0),
            Lsn(0x10),
            image(0),
        )
        .unwrap();
    writer
        .put(
            Key::rel_block(rel, ForkNumber::Main, 1),
            Lsn(0x10),
            image(1),
        )
        .unwrap();
    writer
        .put(Key::rel_dir(1663, 5), Lsn(0x10), image(7))
        .unwrap();
    writer.finish(Lsn(0x10)).unwrap();
    assert_eq!(
        main.get_rel_size(rel, ForkNumber::Main, Lsn(0x10)).unwrap(),
        Some(2)
    );
    assert_eq!(
        main.get_rel_size(rel, ForkNumber::Fsm, Lsn(0x10)).unwrap(),
        None
    );
    put(&main, Key::rel_size(rel, ForkNumber::Fsm), 0x20, image(0));
    assert!(matches!(
        main.get_rel_size(rel, ForkNumber::Fsm, Lsn(0x20)),
        Err(GetError::BadValue { .. })
    ));
    let blocks = main
        .list_keys(Key::rel_block_range(rel, ForkNumber::Main), Lsn(0x10))
        .unwrap();
    assert_eq!(
        blocks,
        vec![
            Key::rel_block(rel, ForkNumber::Main, 0),
            Key::rel_block(rel, ForkNumber::Main, 1)
        ]
    );
    let all = main
        .list_keys(Key::db_relations_range(1663, 5), Lsn(0x20))
        .unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
}

/// With an image layer, a read at or above it never needs older layers, so
/// GC deletes them; reads at the cutoff and at a child's branch point still
/// return the right bytes.
#[test]
fn image_layers_let_gc_delete_history() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    let key = Key::checkpoint();
    for i in 1..=6u64 {
        put(&main, key, 0x10 * i, image(i as u8));
        main.freeze_and_flush().unwrap();
    }
    let child = repo.branch_timeline(id(2), id(1), Lsn(0x20)).unwrap();
    main.create_image_layer(Key::MIN..Key::MAX, Lsn(0x40))
        .unwrap();
    main.set_gc_cutoff(Lsn(0x50)).unwrap();
    let before = main.layer_files().len();
    let result = repo.gc_timeline(id(1)).unwrap();
    // Deltas 0x30.. and 0x40.. are covered by the image; 0x10 and 0x20 are
    // needed by the child's branch point.
    assert_eq!(result.layers_removed.len(), 2, "{result:?}");
    assert_eq!(main.layer_files().len(), before - 2);
    assert_eq!(main.get(key, Lsn(0x50)).unwrap(), Bytes::from(vec![5; 8]));
    assert_eq!(main.get(key, Lsn(0x60)).unwrap(), Bytes::from(vec![6; 8]));
    assert_eq!(child.get(key, Lsn(0x20)).unwrap(), Bytes::from(vec![2; 8]));
    // Once the child is gone, its branch point no longer pins history.
    repo.delete_timeline(id(2)).unwrap();
    let result = repo.gc_timeline(id(1)).unwrap();
    assert_eq!(result.layers_removed.len(), 2, "{result:?}");
    assert_eq!(main.get(key, Lsn(0x50)).unwrap(), Bytes::from(vec![5; 8]));
}

/// The freeze policy freezes on its own when the open layer grows; writers
/// never flush until more than `max_frozen_layers` frozen layers wait
/// (back-pressure), and `flush_if_due` flushes what is frozen.
#[test]
fn freeze_policy_freezes_and_backpressure_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let config = RepositoryConfig {
        freeze: FreezePolicy {
            max_open_bytes: 1000,
            ..FreezePolicy::default()
        },
        max_frozen_layers: 4,
        ..RepositoryConfig::default()
    };
    let repo = Arc::new(Repository::open(dir.path(), config).unwrap());
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    let value = || Value::Image(Bytes::from(vec![1; 100]));
    let initial = main.disk_consistent_lsn();
    for i in 1..=40u64 {
        put(&main, Key::twophase_file(i as u32), 0x10 * i, value());
    }
    // Four freezes, no file written by the writer.
    assert_eq!(main.frozen_layer_count(), 4);
    assert!(main.wait_frozen(Duration::from_millis(1)));
    assert!(main.layer_files().is_empty());
    assert_eq!(main.disk_consistent_lsn(), initial);
    for i in 41..=50u64 {
        put(&main, Key::twophase_file(i as u32), 0x10 * i, value());
    }
    // The fifth freeze went over the limit: that writer flushed all five.
    assert_eq!(main.frozen_layer_count(), 0);
    assert!(!main.wait_frozen(Duration::from_millis(10)));
    assert_eq!(main.layer_files().len(), 5);
    assert_eq!(main.disk_consistent_lsn(), Lsn(0x10 * 50));
    // A background flusher waiting for work wakes on the next freeze.
    let waiter = {
        let main = main.clone();
        std::thread::spawn(move || main.wait_frozen(Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(20));
    main.freeze().unwrap();
    put(&main, Key::twophase_file(999), 0x10 * 50 + 1, value());
    main.freeze().unwrap();
    assert!(waiter.join().unwrap());
    main.flush_frozen().unwrap();
    assert_eq!(main.disk_consistent_lsn(), Lsn(0x10 * 50 + 1));
    for i in 52..=65u64 {
        put(&main, Key::twophase_file(i as u32), 0x10 * i, value());
    }
    assert_eq!(main.frozen_layer_count(), 1);
    main.flush_if_due().unwrap();
    assert_eq!(main.frozen_layer_count(), 0);
    assert_eq!(main.disk_consistent_lsn(), Lsn(0x10 * 61));
}

/// Minimal executor: polls a future on this thread, parking between wakes.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl std::task::Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_secs(1));
    }
}

#[test]
fn async_wait_lsn_resolves_on_ingest_and_on_shutdown() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    let writer_side = main.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        put(&writer_side, Key::checkpoint(), 0x10, image(1));
        put(&writer_side, Key::checkpoint(), 0x20, image(2));
    });
    assert_eq!(block_on(main.wait_lsn_async(Lsn(0x20))), Ok(()));
    handle.join().unwrap();
    assert_eq!(
        main.get(Key::checkpoint(), Lsn(0x20)).unwrap(),
        Bytes::from(vec![2; 8])
    );
    let repo = Arc::new(repo);
    let stopper = repo.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stopper.shutdown();
    });
    assert_eq!(
        block_on(main.wait_lsn_async(Lsn(0x99))),
        Err(WaitLsnError::ShuttingDown)
    );
    handle.join().unwrap();
}

/// Regression (found by the model test): after a restart, a branch whose
/// ancestor lost WAL above its disk-consistent LSN must not answer reads
/// below the branch point until the ancestor is re-fed that far, even where
/// the branch itself holds an image layer.
#[test]
fn branch_reads_wait_for_ancestor_refeed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::checkpoint();
    {
        let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
        let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
        put(&main, key, 0x10, image(1));
        main.freeze_and_flush().unwrap();
        put(&main, key, 0x20, image(2)); // not flushed: lost on restart
        let child = repo.branch_timeline(id(2), id(1), Lsn(0x20)).unwrap();
        put(&child, Key::control_file(), 0x30, image(3));
        child.freeze_and_flush().unwrap();
    }
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let (main, child) = (repo.timeline(id(1)).unwrap(), repo.timeline(id(2)).unwrap());
    assert_eq!(main.last_record_lsn(), Lsn(0x10));
    match child.get(key, Lsn(0x30)) {
        Err(GetError::LsnAhead { timeline, .. }) => assert_eq!(timeline, id(1)),
        other => panic!("read through a lagging ancestor: {other:?}"),
    }
    assert!(child
        .create_image_layer(Key::MIN..Key::MAX, Lsn(0x20))
        .is_err());
    assert!(matches!(
        child.wait_lsn(Lsn(0x30), Duration::from_millis(10)),
        Err(WaitLsnError::Timeout { .. })
    ));
    // The WAL source re-feeds the ancestor; the branch becomes readable.
    put(&main, key, 0x20, image(2));
    child
        .wait_lsn(Lsn(0x30), Duration::from_millis(10))
        .unwrap();
    assert_eq!(child.get(key, Lsn(0x30)).unwrap(), Bytes::from(vec![2; 8]));
    assert_eq!(
        child.get(Key::control_file(), Lsn(0x30)).unwrap(),
        Bytes::from(vec![3; 8])
    );
}

#[test]
fn image_policy_creates_images_after_enough_deltas() {
    let (_dir, repo) = repo();
    let main = repo.create_timeline(id(1), 15, Lsn(0x10)).unwrap();
    for i in 1..=3u64 {
        put(&main, Key::checkpoint(), 0x10 * i, image(i as u8));
        main.freeze_and_flush().unwrap();
        assert_eq!(main.create_image_layer_if_due(3).unwrap().is_some(), i == 3);
    }
    assert_eq!(main.create_image_layer_if_due(3).unwrap(), None);
    assert_eq!(main.create_image_layer_if_due(0).unwrap(), None);
    assert_eq!(
        main.get(Key::checkpoint(), Lsn(0x30)).unwrap(),
        Bytes::from(vec![3; 8])
    );
}
