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
