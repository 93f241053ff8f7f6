//! Crash safety and corruption: torn or failed writes are never loaded as
//! valid, everything up to the disk-consistent LSN reads back after a
//! restart, and a flipped byte in any layer file is an error naming the
//! file, never wrong bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use postgres_wal::Lsn;
use storage::io::{Fault, FaultyIo, FileIo, MemoryFileIo, StdFileIo};
use storage::{
    BuiltinRedo, DerivedOp, GetError, Key, Repository, RepositoryConfig, RepositoryError,
    TimelineId, Value, WriteError,
};

const TL: TimelineId = TimelineId([1; 16]);

fn keys() -> Vec<Key> {
    (0..4).map(Key::twophase_file).collect()
}

/// The expected value of key `k` after batch `b` (batches 1..): every batch
/// writes an image for even batches and a byte patch for odd ones.
fn expected(k: usize, upto_batch: u64) -> Option<Vec<u8>> {
    let mut page: Option<Vec<u8>> = None;
    for b in 1..=upto_batch {
        match value(k, b) {
            Value::Image(bytes) => page = Some(bytes.to_vec()),
            Value::Derived(DerivedOp::WriteBytes { offset, bytes }) => {
                if let Some(p) = page.as_mut() {
                    p[offset as usize] = bytes[0];
                } else {
                    return None;
                }
            }
            _ => unreachable!(),
        }
    }
    page
}

fn value(k: usize, batch: u64) -> Value {
    if batch % 2 == 1 {
        Value::Image(Bytes::from(vec![(k as u8) ^ (batch as u8); 64]))
    } else {
        Value::Derived(DerivedOp::WriteBytes {
            offset: (batch % 64) as u32,
            bytes: Bytes::from(vec![0xEE ^ batch as u8]),
        })
    }
}

fn lsn_of(batch: u64) -> Lsn {
    Lsn(0x1000 * batch)
}

fn write_batch(repo: &Repository, batch: u64) -> Result<(), WriteError> {
    let timeline = repo.timeline(TL).unwrap();
    let mut writer = timeline.writer();
    for (k, key) in keys().into_iter().enumerate() {
        writer.put(key, lsn_of(batch), value(k, batch))?;
    }
    writer.finish(lsn_of(batch))
}

/// Checks every key at every batch LSN up to the timeline's disk-consistent LSN.
fn check_reads_back(repo: &Repository) -> u64 {
    let timeline = repo.timeline(TL).unwrap();
    let dcl = timeline.disk_consistent_lsn();
    assert_eq!(
        timeline.last_record_lsn(),
        dcl,
        "restart resumes at disk_consistent_lsn"
    );
    let batches = dcl.0 / 0x1000;
    let first = (timeline.gc_cutoff().0 / 0x1000).max(1);
    for b in first..=batches {
        for (k, key) in keys().into_iter().enumerate() {
            let got = timeline.get(key, lsn_of(b)).unwrap();
            assert_eq!(Some(got.to_vec()), expected(k, b), "key {k} batch {b}");
        }
    }
    batches
}

fn open_with(dir: &Path, io: Arc<dyn FileIo>) -> Repository {
    Repository::open_with(dir, RepositoryConfig::default(), io, Arc::new(BuiltinRedo)).unwrap()
}

/// Every fault at every write-side call of a flush, on a real directory:
/// the flush fails, the timeline refuses writes, and after reopening the
/// data up to the (old or new) disk-consistent LSN reads back.
#[test]
fn failed_flush_stops_writes_and_reopens_consistent() {
    let faults = [
        Fault::TornWrite { keep_bytes: 0 },
        Fault::TornWrite { keep_bytes: 100 },
        Fault::TornWrite { keep_bytes: 300 },
        Fault::FailFsync,
        Fault::FailRename,
        Fault::FailSyncDir,
    ];
    for fault in faults {
        for call in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            let faulty = Arc::new(FaultyIo::new(Arc::new(StdFileIo)));
            let repo = open_with(dir.path(), faulty.clone());
            repo.create_timeline(TL, 15, lsn_of(1)).unwrap();
            for b in 1..=3 {
                write_batch(&repo, b).unwrap();
                repo.timeline(TL).unwrap().freeze_and_flush().unwrap();
            }
            write_batch(&repo, 4).unwrap();
            faulty.arm(call, fault);
            let timeline = repo.timeline(TL).unwrap();
            let err = timeline.freeze_and_flush().expect_err("fault must surface");
            assert!(
                matches!(err, WriteError::Io { .. }),
                "{fault:?}@{call}: {err}"
            );
            assert!(timeline.broken_reason().is_some());
            assert!(matches!(
                write_batch(&repo, 5),
                Err(WriteError::Broken { .. })
            ));
            // Reads keep working from memory.
            assert_eq!(
                timeline.get(keys()[0], lsn_of(4)).unwrap().to_vec(),
                expected(0, 4).unwrap()
            );
            drop((timeline, repo));

            let repo = open_with(dir.path(), Arc::new(StdFileIo));
            let batches = check_reads_back(&repo);
            assert!((3..=4).contains(&batches), "{fault:?}@{call}: {batches}");
            assert_no_temp_files(&dir.path().join("timelines"));
            // The reopened timeline accepts the re-fed WAL.
            for b in batches + 1..=5 {
                write_batch(&repo, b).unwrap();
            }
            repo.timeline(TL).unwrap().freeze_and_flush().unwrap();
            assert_eq!(check_reads_back(&repo), 5);
        }
    }
}

fn assert_no_temp_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            !path.to_string_lossy().ends_with(".___temp"),
            "{path:?} left behind"
        );
        if path.is_dir() {
            assert_no_temp_files(&path);
        }
    }
}

/// Power loss after every single write-side call of a workload (simulated
/// disk): whatever reopens is consistent and holds at least what the last
/// successful flush reported durable.
#[test]
fn power_loss_at_every_step_keeps_flushed_data() {
    // Crash at call 0, 1, 2, ... until the workload runs to completion.
    for crash_at in 0.. {
        let memory = Arc::new(MemoryFileIo::new());
        let faulty = Arc::new(FaultyIo::new(memory.clone()));
        let dir = Path::new("/repo");
        let repo = open_with(dir, faulty.clone());
        repo.create_timeline(TL, 15, lsn_of(1)).unwrap();
        // Crash = the armed call fails and nothing after it happens.
        faulty.arm(crash_at, Fault::Crash { keep_bytes: 200 });
        let mut durable_batches = 0;
        for b in 1..=8 {
            if write_batch(&repo, b).is_err() {
                break;
            }
            if b % 2 == 0 {
                if repo.timeline(TL).unwrap().freeze_and_flush().is_err() {
                    break;
                }
                durable_batches = b;
            }
            if b == 6 {
                let timeline = repo.timeline(TL).unwrap();
                if timeline
                    .create_image_layer(Key::MIN..Key::MAX, lsn_of(5))
                    .is_err()
                {
                    break;
                }
                timeline.set_gc_cutoff(lsn_of(6)).ok();
                if repo.gc_timeline(TL).is_err() {
                    break;
                }
            }
        }
        drop(repo);
        memory.crash();
        let repo = open_with(dir, memory.clone());
        let batches = check_reads_back(&repo);
        assert!(
            batches >= durable_batches,
            "crash at {crash_at}: {batches} < {durable_batches}"
        );
        if !faulty.crashed() {
            assert!(crash_at > 20, "workload made only {crash_at} write calls");
            assert_eq!(batches, 8);
            break;
        }
    }
}

fn layer_files(dir: &Path) -> Vec<PathBuf> {
    let tl_dir = dir.join("timelines").join(TL.to_string());
    let mut files: Vec<PathBuf> = std::fs::read_dir(tl_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("delta_") || name.starts_with("image_")
        })
        .collect();
    files.sort();
    files
}

/// A repository with two delta layers and one image layer on disk.
fn populated_repo(dir: &Path) {
    let repo = Repository::open(dir, RepositoryConfig::default()).unwrap();
    repo.create_timeline(TL, 15, lsn_of(1)).unwrap();
    for b in 1..=4 {
        write_batch(&repo, b).unwrap();
        if b % 2 == 0 {
            repo.timeline(TL).unwrap().freeze_and_flush().unwrap();
        }
    }
    repo.timeline(TL)
        .unwrap()
        .create_image_layer(Key::MIN..Key::MAX, lsn_of(3))
        .unwrap();
    assert_eq!(layer_files(dir).len(), 3);
}

/// Reads every key at every LSN; returns how many reads failed, asserting
/// each failure names `file` and no read returns wrong bytes.
fn read_all_checking(dir: &Path, file: &Path) -> usize {
    let repo = Repository::open(dir, RepositoryConfig::default()).unwrap();
    let timeline = repo.timeline(TL).unwrap();
    let mut failures = 0;
    for b in 1..=4 {
        for (k, key) in keys().into_iter().enumerate() {
            match timeline.get(key, lsn_of(b)) {
                Ok(got) => assert_eq!(Some(got.to_vec()), expected(k, b), "wrong bytes"),
                Err(e) => {
                    assert!(matches!(e, GetError::Layer(_)), "{e}");
                    assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
                    failures += 1;
                }
            }
        }
    }
    failures
}

#[test]
fn flipped_byte_in_any_layer_file_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    populated_repo(dir.path());
    for file in layer_files(dir.path()) {
        let good = std::fs::read(&file).unwrap();
        // Every byte of the header and index, and a stride through the data.
        let positions: Vec<usize> = (0..good.len())
            .filter(|i| *i < 160 || *i + 300 > good.len() || i % 17 == 0)
            .collect();
        for i in positions {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&file, &bad).unwrap();
            let failures = read_all_checking(dir.path(), &file);
            if failures == 0 {
                // Only values shadowed by a newer image are never read; the
                // scrub must still find the flip.
                let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
                let err = repo
                    .timeline(TL)
                    .unwrap()
                    .verify_layers()
                    .expect_err(&format!("flip at {i} of {file:?} went unnoticed"));
                assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
            }
            if i < 128 {
                assert!(
                    failures > 0,
                    "header flip at {i} of {file:?} not reported on read"
                );
            }
        }
        std::fs::write(&file, &good).unwrap();
    }
}

#[test]
fn truncated_files_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    populated_repo(dir.path());
    for file in layer_files(dir.path()) {
        let good = std::fs::read(&file).unwrap();
        for len in [0, 10, 127, 128, good.len() / 2, good.len() - 1] {
            std::fs::write(&file, &good[..len]).unwrap();
            assert!(read_all_checking(dir.path(), &file) > 0);
        }
        std::fs::write(&file, &good).unwrap();
    }
    let metadata = dir
        .path()
        .join("timelines")
        .join(TL.to_string())
        .join("metadata");
    let good = std::fs::read(&metadata).unwrap();
    std::fs::write(&metadata, &good[..60]).unwrap();
    let err = Repository::open(dir.path(), RepositoryConfig::default()).unwrap_err();
    assert!(matches!(err, RepositoryError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("metadata"), "{err}");
}

/// Restart contract on the plain file system: data above the disk-consistent
/// LSN is gone, layer files above it are deleted, the rest reads back.
#[test]
fn restart_drops_everything_above_disk_consistent_lsn() {
    let dir = tempfile::tempdir().unwrap();
    {
        let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
        let timeline = repo.create_timeline(TL, 15, lsn_of(1)).unwrap();
        write_batch(&repo, 1).unwrap();
        write_batch(&repo, 2).unwrap();
        timeline.freeze_and_flush().unwrap();
        write_batch(&repo, 3).unwrap();
        // An image above the disk-consistent LSN is written but not committed.
        timeline
            .create_image_layer(Key::MIN..Key::MAX, lsn_of(3))
            .unwrap();
        assert_eq!(layer_files(dir.path()).len(), 2);
    }
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    assert_eq!(check_reads_back(&repo), 2);
    assert_eq!(
        layer_files(dir.path()).len(),
        1,
        "uncommitted image not deleted"
    );
    let timeline = repo.timeline(TL).unwrap();
    assert!(matches!(
        timeline.get(keys()[0], lsn_of(3)),
        Err(GetError::LsnAhead { .. })
    ));
}

/// Power loss at every write-side call of compaction (L0 → L1), image
/// creation and GC: whatever reopens reads every key at every LSN at or
/// above the persisted GC cutoff exactly as written, every listed layer
/// verifies, and no leftover of the interrupted work is served.
#[test]
fn power_loss_during_compaction_images_and_gc_loses_nothing() {
    let policy = storage::CompactionPolicy {
        compaction_threshold: 2,
        compaction_target_size: 1,
        image_creation_threshold: 1,
    };
    for crash_at in 0.. {
        let memory = Arc::new(MemoryFileIo::new());
        let faulty = Arc::new(FaultyIo::new(memory.clone()));
        let dir = Path::new("/repo");
        let repo = open_with(dir, faulty.clone());
        repo.create_timeline(TL, 15, lsn_of(1)).unwrap();
        for b in 1..=8 {
            write_batch(&repo, b).unwrap();
            repo.timeline(TL).unwrap().freeze_and_flush().unwrap();
        }
        faulty.arm(crash_at, Fault::Crash { keep_bytes: 100 });
        let timeline = repo.timeline(TL).unwrap();
        let ran = timeline.compact(&policy).is_ok()
            && timeline.set_gc_cutoff(lsn_of(7)).is_ok()
            && repo.gc_timeline(TL).is_ok();
        drop((timeline, repo));
        memory.crash();
        let repo = open_with(dir, memory.clone());
        assert_eq!(check_reads_back(&repo), 8, "crash at {crash_at}");
        let timeline = repo.timeline(TL).unwrap();
        assert_eq!(
            timeline.verify_layers().unwrap(),
            timeline.layer_files().len()
        );
        assert_no_temp_files_in(&memory, dir);
        if !faulty.crashed() {
            assert!(ran);
            assert!(crash_at > 10, "workload made only {crash_at} write calls");
            // The complete run compacted, made images and freed layers.
            let stats = timeline.layer_stats();
            assert_eq!(stats.l0_count, 0, "{stats:?}");
            assert!(stats.image_count > 0, "{stats:?}");
            break;
        }
    }
}

/// Torn writes and failed fsyncs/renames at every call of compaction: the
/// failing run reports an error, the timeline refuses further writes, and
/// a reopen reads everything back.
#[test]
fn faults_during_compaction_break_the_timeline_not_the_data() {
    let policy = storage::CompactionPolicy {
        compaction_threshold: 2,
        compaction_target_size: 1,
        image_creation_threshold: 1,
    };
    let faults = [
        Fault::TornWrite { keep_bytes: 50 },
        Fault::FailFsync,
        Fault::FailRename,
        Fault::FailSyncDir,
    ];
    for fault in faults {
        for at in 0.. {
            let memory = Arc::new(MemoryFileIo::new());
            let faulty = Arc::new(FaultyIo::new(memory.clone()));
            let dir = Path::new("/repo");
            let repo = open_with(dir, faulty.clone());
            repo.create_timeline(TL, 15, lsn_of(1)).unwrap();
            for b in 1..=6 {
                write_batch(&repo, b).unwrap();
                repo.timeline(TL).unwrap().freeze_and_flush().unwrap();
            }
            faulty.arm(at, fault);
            let timeline = repo.timeline(TL).unwrap();
            let result = timeline.compact(&policy);
            if !faulty.fired() {
                result.unwrap();
                break;
            }
            assert!(result.is_err(), "{fault:?} at {at} went unnoticed");
            assert!(matches!(
                write_batch(&repo, 7),
                Err(WriteError::Broken { .. })
            ));
            drop((timeline, repo));
            let repo = open_with(dir, memory.clone());
            assert_eq!(check_reads_back(&repo), 6, "{fault:?} at {at}");
        }
    }
}

fn assert_no_temp_files_in(io: &MemoryFileIo, dir: &Path) {
    let timeline_dir = dir.join("timelines").join(TL.to_string());
    for entry in io.list_dir(&timeline_dir).unwrap() {
        assert!(!entry.name.ends_with(".___temp"), "{}", entry.name);
    }
}
