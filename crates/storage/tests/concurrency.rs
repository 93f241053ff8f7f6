//! Readers racing a writer that freezes, flushes, creates image layers and
//! moves the GC cutoff: every read at a readable LSN returns exactly the
//! value written at or below it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use postgres_wal::Lsn;
use storage::{GetError, Key, Repository, RepositoryConfig, TimelineId, Value};

const KEYS: u32 = 16;

/// Key `k` is rewritten at every LSN that is a multiple of `k + 1`; its
/// value is the LSN it was written at.
fn expected(k: u32, lsn: u64) -> Option<u64> {
    let step = u64::from(k) + 1;
    (lsn >= step).then(|| lsn - lsn % step)
}

#[test]
fn readers_see_consistent_values_during_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId([1; 16]), 15, Lsn(1))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|seed| {
            let (timeline, done) = (timeline.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut x = seed as u64 + 1;
                while !done.load(Ordering::Relaxed) {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let last = timeline.last_record_lsn().0;
                    let cutoff = timeline.gc_cutoff().0;
                    if last <= cutoff {
                        continue;
                    }
                    let lsn = cutoff + (x >> 33) % (last - cutoff + 1);
                    let k = (x % u64::from(KEYS)) as u32;
                    match timeline.get(Key::twophase_file(k), Lsn(lsn)) {
                        Ok(v) => {
                            let got = u64::from_le_bytes(v[..].try_into().unwrap());
                            assert_eq!(Some(got), expected(k, lsn), "key {k} at {lsn}");
                        }
                        Err(GetError::KeyNotFound { .. }) => assert_eq!(expected(k, lsn), None),
                        // The cutoff moved between choosing the LSN and reading.
                        Err(GetError::BelowGcCutoff { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for lsn in 1..=600u64 {
        let mut writer = timeline.writer();
        for k in 0..KEYS {
            if lsn % (u64::from(k) + 1) == 0 {
                let value = Value::Image(Bytes::copy_from_slice(&lsn.to_le_bytes()));
                writer.put(Key::twophase_file(k), Lsn(lsn), value).unwrap();
            }
        }
        writer.finish(Lsn(lsn)).unwrap();
        if lsn % 50 == 0 {
            timeline.freeze_and_flush().unwrap();
        }
        if lsn % 150 == 0 {
            timeline
                .create_image_layer(Key::MIN..Key::MAX, Lsn(lsn - 10))
                .unwrap();
            timeline.set_gc_cutoff(Lsn(lsn - 20)).unwrap();
            repo.gc_timeline(timeline.id()).unwrap();
        }
        if lsn % 100 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    done.store(true, Ordering::Relaxed);
    let total: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(total > 100, "readers made only {total} reads");
}

/// A file system whose file writes and opens take `delay` (a slow disk, or
/// layer files that must be downloaded first).
#[derive(Debug)]
struct SlowIo {
    inner: storage::io::StdFileIo,
    delay: Duration,
}

impl storage::io::FileIo for SlowIo {
    fn write_file(&self, path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
        std::thread::sleep(self.delay);
        self.inner.write_file(path, data)
    }
    fn read_file(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
        std::thread::sleep(self.delay);
        self.inner.read_file(path)
    }
    fn open_read(&self, path: &std::path::Path) -> std::io::Result<Arc<dyn storage::io::ReadAt>> {
        std::thread::sleep(self.delay);
        self.inner.open_read(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &std::path::Path) -> std::io::Result<Vec<storage::io::DirEntry>> {
        self.inner.list_dir(dir)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(dir)
    }
}

/// A writer keeps writing (and freezing by policy) while flushes,
/// compaction, image creation (which lists every key of every layer) and GC
/// run in other threads on a disk whose every file write and open takes
/// 100 ms: no batch waits for a file, and readers see exactly what was
/// written.
#[test]
fn writers_never_wait_for_layer_files() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(100);
    let io = Arc::new(SlowIo {
        inner: storage::io::StdFileIo,
        delay,
    });
    let config = RepositoryConfig {
        freeze: storage::FreezePolicy {
            max_open_bytes: 5000,
            ..storage::FreezePolicy::default()
        },
        max_frozen_layers: 10_000,
        ..RepositoryConfig::default()
    };
    let repo = Arc::new(
        Repository::open_with(dir.path(), config, io, Arc::new(storage::BuiltinRedo)).unwrap(),
    );
    let timeline = repo
        .create_timeline(TimelineId([1; 16]), 15, Lsn(1))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let background = |work: fn(&Repository, &storage::Timeline)| {
        let (repo, timeline, done) = (repo.clone(), timeline.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                work(&repo, &timeline);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let workers = [
        background(|_, t| t.flush_frozen().unwrap()),
        background(|_, t| {
            let policy = storage::CompactionPolicy {
                compaction_threshold: 3,
                compaction_target_size: 1 << 20,
                image_creation_threshold: 2,
            };
            t.compact(&policy).unwrap();
        }),
        background(|repo, t| {
            let cutoff = Lsn(t.disk_consistent_lsn().0.saturating_sub(40));
            if cutoff > t.gc_cutoff() {
                t.set_gc_cutoff(cutoff).unwrap();
            }
            repo.gc_timeline(t.id()).unwrap();
        }),
        background(|_, t| {
            let (last, cutoff) = (t.last_record_lsn().0, t.gc_cutoff().0);
            if last == 0 {
                // No batch finished yet: LSN 1 would be ahead of the head.
                return;
            }
            for lsn in [cutoff.max(1), (cutoff + last) / 2, last] {
                for k in 0..KEYS {
                    match t.get(Key::twophase_file(k), Lsn(lsn)) {
                        Ok(v) => {
                            let got = u64::from_le_bytes(v[..].try_into().unwrap());
                            assert_eq!(Some(got), expected(k, lsn), "key {k} at {lsn}");
                        }
                        Err(GetError::KeyNotFound { .. }) => {
                            assert_eq!(expected(k, lsn), None)
                        }
                        Err(GetError::BelowGcCutoff { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }),
    ];
    let mut latencies = Vec::new();
    let started = std::time::Instant::now();
    let mut lsn = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        lsn += 1;
        let batch_started = std::time::Instant::now();
        let mut writer = timeline.writer();
        for k in 0..KEYS {
            if lsn.is_multiple_of(u64::from(k) + 1) {
                let value = Value::Image(Bytes::copy_from_slice(&lsn.to_le_bytes()));
                writer.put(Key::twophase_file(k), Lsn(lsn), value).unwrap();
            }
        }
        writer.finish(Lsn(lsn)).unwrap();
        latencies.push(batch_started.elapsed());
        std::thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let stats = timeline.layer_stats();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    // The background work did happen, with many slow file writes...
    assert!(stats.l1_count + stats.image_count > 0, "{stats:?}");
    assert!(repo.stats().snapshot().compaction_runs > 1);
    // ...and no batch ever waited for one.
    assert!(
        p99 < delay / 3,
        "p99 batch latency {p99:?} over {} batches",
        latencies.len()
    );
    assert!(max < delay, "max batch latency {max:?}");
}

/// Listing keys (image creation lists every key of every layer) opens
/// layer files, which may be slow; it must not hold the layer map
/// meanwhile, or the WAL writer's next batch waits for the disk (#16: a
/// listing under the map lock held ingest up for ~100 ms).
#[test]
fn listing_keys_never_holds_up_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(300);
    let io = Arc::new(SlowIo {
        inner: storage::io::StdFileIo,
        delay,
    });
    let repo = Repository::open_with(
        dir.path(),
        RepositoryConfig::default(),
        io,
        Arc::new(storage::BuiltinRedo),
    )
    .unwrap();
    let timeline = repo
        .create_timeline(TimelineId([2; 16]), 15, Lsn(1))
        .unwrap();
    let put = |k: u32, lsn: u64| {
        let mut writer = timeline.writer();
        let value = Value::Image(Bytes::copy_from_slice(&lsn.to_le_bytes()));
        writer.put(Key::twophase_file(k), Lsn(lsn), value).unwrap();
        writer.finish(Lsn(lsn)).unwrap();
    };
    // Three layer files, none opened yet.
    for lsn in 1..=3 {
        put(lsn as u32, lsn);
        timeline.freeze_and_flush().unwrap();
    }
    let lister = {
        let timeline = timeline.clone();
        std::thread::spawn(move || timeline.list_keys(Key::MIN..Key::MAX, Lsn(3)).unwrap())
    };
    // The lister is inside its first open by now.
    std::thread::sleep(delay / 3);
    let started = std::time::Instant::now();
    put(9, 4);
    let waited = started.elapsed();
    let keys = lister.join().unwrap();
    assert_eq!(keys, (1..=3).map(Key::twophase_file).collect::<Vec<_>>());
    assert!(
        waited < delay / 3,
        "a batch waited {waited:?} for a listing's file opens"
    );
}
