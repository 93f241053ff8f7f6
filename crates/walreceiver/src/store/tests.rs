//! Store tests: fixed cases, and a property test that runs random appends,
//! syncs, reads, truncations and crashes (with torn or garbage tails past the
//! durable end) against a model of what must be there.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use proptest::prelude::*;

use super::*;

const SMALL_FILE_BYTES: u64 = 4096;

fn pattern(lsn: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((lsn + i) * 31 % 251) as u8)
        .collect()
}

#[test]
fn empty_store_then_append_anywhere_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    assert_eq!(store.start_lsn(), None);
    assert_eq!(store.end_lsn(), None);
    assert_eq!(store.sync().unwrap(), Lsn::INVALID);

    let start = Lsn(0x0100_0028);
    store.append(start, &pattern(start.0, 100)).unwrap();
    assert_eq!(store.start_lsn(), Some(start));
    assert_eq!(store.end_lsn(), Some(start + 100));
    // Readable before sync, from the buffer.
    assert_eq!(store.read(start + 10, 5).unwrap(), pattern(start.0 + 10, 5));
    assert_eq!(store.sync().unwrap(), start + 100);
    drop(store);

    let store = WalStore::open(dir.path()).unwrap();
    assert_eq!(store.start_lsn(), Some(start));
    assert_eq!(store.end_lsn(), Some(start + 100));
    assert_eq!(store.read(start, 1000).unwrap(), pattern(start.0, 100));
    assert!(store.read(start + 100, 10).unwrap().is_empty());
}

#[test]
fn rejects_gaps_overlaps_and_reads_outside() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    store.append(Lsn(1000), &[1; 10]).unwrap();
    assert!(matches!(
        store.append(Lsn(1011), &[1]),
        Err(StoreError::NotContiguous {
            expected: Lsn(1010),
            got: Lsn(1011)
        })
    ));
    assert!(matches!(
        store.append(Lsn(1005), &[1]),
        Err(StoreError::NotContiguous { .. })
    ));
    assert!(matches!(
        store.read(Lsn(999), 1),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(matches!(
        store.read(Lsn(1011), 1),
        Err(StoreError::OutOfRange { .. })
    ));
    // The refused appends changed nothing.
    store.append(Lsn(1010), &[2; 5]).unwrap();
    assert_eq!(store.end_lsn(), Some(Lsn(1015)));
}

#[test]
fn unsynced_bytes_are_lost_on_crash_but_synced_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    store.append(Lsn(500), &pattern(500, 300)).unwrap();
    assert_eq!(store.sync().unwrap(), Lsn(800));
    store.append(Lsn(800), &pattern(800, 300)).unwrap();
    drop(store); // a crash: the buffered 300 bytes never reached the file
    let store = WalStore::open(dir.path()).unwrap();
    assert_eq!(store.end_lsn(), Some(Lsn(800)));
    assert_eq!(store.read(Lsn(500), 1000).unwrap(), pattern(500, 300));
}

#[test]
fn large_appends_are_split_into_frames_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open_with_file_size(dir.path(), 2 * 1024 * 1024).unwrap();
    let len = 5 * MAX_FRAME_PAYLOAD_BYTES + 123;
    let data = pattern(0x10, len);
    store.append(Lsn(0x10), &data).unwrap();
    store.sync().unwrap();
    assert!(store.files.len() >= 2, "{} files", store.files.len());
    drop(store);
    let store = WalStore::open_with_file_size(dir.path(), 2 * 1024 * 1024).unwrap();
    assert_eq!(store.read(Lsn(0x10), usize::MAX).unwrap(), data);
}

#[test]
fn truncate_before_removes_whole_files_only_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    let mut lsn = Lsn(0);
    for _ in 0..10 {
        store.append(lsn, &pattern(lsn.0, 3000)).unwrap();
        store.sync().unwrap();
        lsn = lsn + 3000;
    }
    let starts: Vec<Lsn> = store.files.iter().map(|f| f.start).collect();
    assert!(starts.len() >= 3);
    // Just below the third file's start: only the first file goes.
    store.truncate_before(Lsn(starts[2].0 - 1)).unwrap();
    assert_eq!(store.start_lsn(), Some(starts[1]));
    // Past the end: everything but the newest file goes.
    store.truncate_before(Lsn(u64::MAX)).unwrap();
    assert_eq!(store.start_lsn(), starts.last().copied());
    assert_eq!(store.end_lsn(), Some(lsn));
    drop(store);
    let store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    assert_eq!(store.start_lsn(), starts.last().copied());
    assert_eq!(store.end_lsn(), Some(lsn));
}

/// Detached files leave the store at once but the disk only when removed;
/// until then (a crash, a failed removal) they are valid older files, and
/// the next open starts from the oldest again.
#[test]
fn detached_files_stay_valid_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    let mut lsn = Lsn(0);
    let mut data = Vec::new();
    for _ in 0..10 {
        let bytes = pattern(lsn.0, 3000);
        store.append(lsn, &bytes).unwrap();
        store.sync().unwrap();
        data.extend_from_slice(&bytes);
        lsn = lsn + 3000;
    }
    let starts: Vec<Lsn> = store.files.iter().map(|f| f.start).collect();
    assert!(starts.len() >= 3);
    assert!(store.detach_before(Lsn(0)).unwrap().is_none());
    let detached = store.detach_before(Lsn(u64::MAX)).unwrap().unwrap();
    assert_eq!(store.start_lsn(), starts.last().copied());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), starts.len());
    drop(store);
    let reopened = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    assert_eq!(reopened.start_lsn(), Some(starts[0]));
    assert_eq!(reopened.read(Lsn(0), usize::MAX).unwrap(), data);
    drop(reopened);
    detached.remove().unwrap();
    let reopened = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    assert_eq!(reopened.start_lsn(), starts.last().copied());
    assert_eq!(reopened.end_lsn(), Some(lsn));
}

#[test]
fn damage_in_an_older_file_is_an_error_not_a_silent_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    for i in 0..4u64 {
        store
            .append(Lsn(i * 3000), &pattern(i * 3000, 3000))
            .unwrap();
        store.sync().unwrap();
    }
    let first = store.files[0].path.clone();
    drop(store);
    let file = OpenOptions::new().write(true).open(&first).unwrap();

    // A damaged payload: found when the frame is read.
    file.write_all_at(&[0xFF; 8], 100).unwrap();
    let store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    assert!(matches!(
        store.read(Lsn(0), 10_000),
        Err(StoreError::Corrupt { .. })
    ));
    drop(store);

    // A damaged header: found when the store is opened.
    file.write_all_at(&[0xFF; 4], 0).unwrap();
    assert!(matches!(
        WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn reset_empties_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    store.append(Lsn(100), &[7; 50]).unwrap();
    store.sync().unwrap();
    store.reset().unwrap();
    assert_eq!(store.end_lsn(), None);
    store.append(Lsn(9000), &[8; 10]).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = WalStore::open(dir.path()).unwrap();
    assert_eq!(store.start_lsn(), Some(Lsn(9000)));
    assert_eq!(store.read(Lsn(9000), 100).unwrap(), vec![8; 10]);
}

#[test]
fn a_failed_fsync_poisons_the_store_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    store.append(Lsn(100), &pattern(100, 50)).unwrap();
    assert_eq!(store.sync().unwrap(), Lsn(150));
    store.append(Lsn(150), &pattern(150, 50)).unwrap();
    store.fail_next_sync = true;
    assert!(matches!(store.sync(), Err(StoreError::Io { .. })));
    // No retry-and-carry-on: everything that changes the store refuses.
    assert_eq!(store.durable_end_lsn(), Some(Lsn(150)));
    assert!(matches!(store.sync(), Err(StoreError::Poisoned(_))));
    assert!(matches!(
        store.append(Lsn(200), &[1]),
        Err(StoreError::Poisoned(_))
    ));
    assert!(matches!(
        store.truncate_before(Lsn(0)),
        Err(StoreError::Poisoned(_))
    ));
    drop(store);
    // Reopening starts from what the files hold; the durable part is there.
    let store = WalStore::open(dir.path()).unwrap();
    assert!(store.end_lsn().unwrap() >= Lsn(150));
    assert_eq!(store.read(Lsn(100), 50).unwrap(), pattern(100, 50));
}

/// How a simulated crash leaves the newest file.
#[derive(Debug, Clone)]
enum Crash {
    /// Written frames stay (the page cache survived), buffered bytes go.
    Drop,
    /// The file is cut at a point between the durable end and its size.
    CutTail(f64),
    /// Bytes past the durable end are overwritten (zeros or junk).
    GarbageTail(f64, u8),
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Sync,
    /// Writes buffered bytes to the file without fsync (as a big append does).
    WriteOut,
    Read(f64, usize),
    TruncateBefore(f64),
    Reopen(Crash),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let crash = prop_oneof![
        Just(Crash::Drop),
        (0.0..1.0f64).prop_map(Crash::CutTail),
        ((0.0..1.0f64), any::<u8>()).prop_map(|(at, byte)| Crash::GarbageTail(at, byte)),
    ];
    prop_oneof![
        6 => (1usize..3000).prop_map(Op::Append),
        3 => Just(Op::Sync),
        2 => Just(Op::WriteOut),
        2 => ((0.0..1.0f64), 1usize..10_000).prop_map(|(at, max)| Op::Read(at, max)),
        1 => (0.0..1.2f64).prop_map(Op::TruncateBefore),
        2 => crash.prop_map(Op::Reopen),
    ]
}

/// What must be in the store: `bytes` from `start`, of which the first
/// `durable` are durable.
struct Model {
    start: u64,
    bytes: Vec<u8>,
    durable: usize,
}

impl Model {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    fn lsn_at(&self, fraction: f64) -> u64 {
        self.start + (self.bytes.len() as f64 * fraction) as u64
    }
}

/// Damages the newest file past its durable length, as a crash may.
fn inflict(store: &WalStore, crash: &Crash) {
    let Some(file) = store.files.last() else {
        return;
    };
    let durable_end = store.durable_end.unwrap_or_default();
    let durable_bytes = file
        .frames
        .iter()
        .take_while(|frame| frame.end() <= durable_end)
        .last()
        .map_or(0, |frame| frame.payload_offset + u64::from(frame.len));
    let size = file.size_bytes;
    let at = |fraction: f64| durable_bytes + ((size - durable_bytes) as f64 * fraction) as u64;
    let handle = OpenOptions::new().write(true).open(&file.path).unwrap();
    match *crash {
        Crash::Drop => {}
        Crash::CutTail(fraction) => handle.set_len(at(fraction)).unwrap(),
        Crash::GarbageTail(fraction, byte) => {
            let from = at(fraction);
            let junk = vec![byte; (size - from) as usize + 64];
            handle.write_all_at(&junk, from).unwrap();
        }
    }
}

fn check_contents(store: &WalStore, model: &Model) {
    assert_eq!(store.end_lsn().map(|l| l.0), Some(model.end()));
    assert_eq!(store.start_lsn().map(|l| l.0), Some(model.start));
    let all = store.read(Lsn(model.start), usize::MAX).unwrap();
    assert!(all == model.bytes, "store contents differ from the model");
}

fn run(dir: &Path, ops: &[Op]) {
    let mut store = WalStore::open_with_file_size(dir, SMALL_FILE_BYTES).unwrap();
    let mut model: Option<Model> = None;
    for op in ops {
        match op {
            Op::Append(len) => {
                let lsn = model.as_ref().map_or(0x2000_0000, Model::end);
                let data = pattern(lsn, *len);
                store.append(Lsn(lsn), &data).unwrap();
                let model = model.get_or_insert(Model {
                    start: lsn,
                    bytes: Vec::new(),
                    durable: 0,
                });
                model.bytes.extend_from_slice(&data);
            }
            Op::Sync => {
                let end = store.sync().unwrap();
                if let Some(model) = &mut model {
                    assert_eq!(end.0, model.end());
                    model.durable = model.bytes.len();
                }
            }
            Op::WriteOut => store.guard(WalStore::write_pending).unwrap(),
            Op::Read(fraction, max) => {
                if let Some(model) = &model {
                    let from = model.lsn_at(*fraction);
                    let got = store.read(Lsn(from), *max).unwrap();
                    let offset = (from - model.start) as usize;
                    let want = &model.bytes[offset..(offset + max).min(model.bytes.len())];
                    assert!(got == want, "read at {from:#x} max {max}");
                }
            }
            Op::TruncateBefore(fraction) => {
                if let Some(model) = &mut model {
                    let before = model.start + ((model.bytes.len() as f64) * fraction) as u64;
                    store.truncate_before(Lsn(before)).unwrap();
                    let new_start = store.start_lsn().unwrap().0;
                    assert!(new_start >= model.start);
                    assert!(new_start <= before.max(model.start) || new_start <= model.end());
                    if before < model.end() {
                        assert!(
                            new_start <= before.max(model.start),
                            "removed a file holding {before:#x}"
                        );
                    }
                    let cut = (new_start - model.start) as usize;
                    model.bytes.drain(..cut);
                    model.durable = model.durable.saturating_sub(cut);
                    model.start = new_start;
                }
            }
            Op::Reopen(crash) => {
                inflict(&store, crash);
                drop(store);
                store = WalStore::open_with_file_size(dir, SMALL_FILE_BYTES).unwrap();
                if let Some(m) = &mut model {
                    match store.end_lsn() {
                        None => {
                            assert_eq!(m.durable, 0, "durable bytes lost");
                            model = None;
                        }
                        Some(end) => {
                            let kept = (end.0 - m.start) as usize;
                            assert!(
                                kept >= m.durable,
                                "durable end {:#x} lost",
                                m.start + m.durable as u64
                            );
                            assert!(kept <= m.bytes.len(), "bytes that were never written");
                            m.bytes.truncate(kept);
                            m.durable = kept;
                        }
                    }
                }
            }
        }
        if let Some(model) = &model {
            check_contents(&store, model);
        } else {
            assert_eq!(store.end_lsn(), None);
        }
    }
}

proptest! {
    /// Whatever a file holds, opening the store gives a store or an error,
    /// and what it serves is only ever whole, valid frames.
    #[test]
    fn arbitrary_file_contents_never_panic(
        junk in prop::collection::vec(any::<u8>(), 0..200),
        prefix_frames in 0usize..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
        for i in 0..prefix_frames as u64 {
            store.append(Lsn(64 + i * 10), &pattern(64 + i * 10, 10)).unwrap();
            store.sync().unwrap();
        }
        let path = dir.path().join(file_name(Lsn(64)));
        drop(store);
        // The junk right after the frames, in place of the zero-filled tail.
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        bytes.truncate(prefix_frames * (FRAME_HEADER_BYTES + 10));
        bytes.extend_from_slice(&junk);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(store) = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES) {
            let end = store.end_lsn().unwrap_or(Lsn(64));
            prop_assert!(end >= Lsn(64 + prefix_frames as u64 * 10));
            if let Some(start) = store.start_lsn() {
                let all = store.read(start, usize::MAX).unwrap();
                prop_assert_eq!(&all[..prefix_frames * 10], &pattern(64, prefix_frames * 10)[..]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model_across_crashes(ops in prop::collection::vec(op_strategy(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &ops);
    }
}

/// Read views taken between syncs keep serving exactly what was durable when
/// they were taken, across many frames (several shared frame chunks) and
/// while the writer goes on appending; and agree with the store's own reads.
#[test]
fn read_views_serve_what_was_durable_when_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    let start = 1000u64;
    let step = 7usize;
    let count = FRAME_CHUNK * 2 + 100;
    let mut views = Vec::new();
    for i in 0..count {
        let lsn = start + (i * step) as u64;
        store.append(Lsn(lsn), &pattern(lsn, step)).unwrap();
        store.sync().unwrap();
        if i % 500 == 0 || i + 1 == count {
            views.push((lsn + step as u64, store.read_view()));
        }
    }
    let all = pattern(start, count * step);
    for (end, view) in &views {
        assert_eq!(view.end_lsn(), Some(Lsn(*end)));
        let len = (*end - start) as usize;
        assert_eq!(view.read(Lsn(start), usize::MAX).unwrap(), &all[..len]);
        // From inside a frame of a later chunk.
        let from = start + len as u64 / 2 + 3;
        let expected = &all[(from - start) as usize..len];
        assert_eq!(view.read(Lsn(from), usize::MAX).unwrap(), expected);
        assert!(view.read(Lsn(*end + 1), 10).is_err());
    }
    assert_eq!(
        store.read(Lsn(start), usize::MAX).unwrap(),
        views
            .last()
            .unwrap()
            .1
            .read(Lsn(start), usize::MAX)
            .unwrap()
    );
    assert!(ReadView::default().read(Lsn(start), 1).is_err());
}

/// A store on a simulated disk ([`fileio::MemoryFileIo`]) behind a fault
/// injector ([`fileio::FaultyIo`]).
fn simulated_disk() -> (Arc<fileio::MemoryFileIo>, Arc<fileio::FaultyIo>) {
    let memory = Arc::new(fileio::MemoryFileIo::new());
    let faulty = Arc::new(fileio::FaultyIo::new(memory.clone()));
    (memory, faulty)
}

#[test]
fn failed_fsync_refuses_until_reopened_and_reopen_keeps_only_the_durable() {
    let (memory, faulty) = simulated_disk();
    let dir = Path::new("/disk/wal");
    let mut store = WalStore::open_with_io(faulty.clone(), dir, SMALL_FILE_BYTES).unwrap();
    // Several files: roll-overs fsync the full file and the directory.
    store.append(Lsn(1000), &pattern(1000, 10_000)).unwrap();
    assert_eq!(store.sync().unwrap(), Lsn(11_000));
    store.append(Lsn(11_000), &pattern(11_000, 500)).unwrap();
    faulty.arm(0, fileio::Fault::FailFsync);
    assert!(matches!(store.sync(), Err(StoreError::Io { .. })));
    assert!(faulty.fired());
    assert_eq!(store.durable_end_lsn(), Some(Lsn(11_000)));
    // Poisoned: nothing that writes is tried again, not even after the
    // disk recovered.
    assert!(matches!(store.sync(), Err(StoreError::Poisoned(_))));
    assert!(matches!(
        store.append(Lsn(11_500), &[1]),
        Err(StoreError::Poisoned(_))
    ));
    assert!(matches!(
        store.truncate_before(Lsn(5000)),
        Err(StoreError::Poisoned(_))
    ));
    drop(store);
    // The kernel dropped the pages the failed fsync was about.
    memory.crash();
    let mut store = WalStore::open_with_io(faulty.clone(), dir, SMALL_FILE_BYTES).unwrap();
    assert_eq!(store.start_lsn(), Some(Lsn(1000)));
    assert_eq!(store.end_lsn(), Some(Lsn(11_000)));
    assert_eq!(
        store.read(Lsn(1000), usize::MAX).unwrap(),
        pattern(1000, 10_000)
    );
    // Reopened, it works again from the durable end.
    store.append(Lsn(11_000), &pattern(11_000, 700)).unwrap();
    assert_eq!(store.sync().unwrap(), Lsn(11_700));
    drop(store);
    memory.crash();
    let store = WalStore::open_with_io(faulty, dir, SMALL_FILE_BYTES).unwrap();
    assert_eq!(
        store.read(Lsn(1000), usize::MAX).unwrap(),
        pattern(1000, 10_700)
    );
}

#[test]
fn torn_write_poisons_and_recovery_cuts_at_the_last_complete_frame() {
    let (memory, faulty) = simulated_disk();
    let dir = Path::new("/disk/wal");
    let mut store = WalStore::open_with_io(faulty.clone(), dir, DEFAULT_FILE_SIZE_BYTES).unwrap();
    store.append(Lsn(0x100), &pattern(0x100, 300)).unwrap();
    store.sync().unwrap();
    store
        .append(Lsn(0x100 + 300), &pattern(0x100 + 300, 200))
        .unwrap();
    store.sync().unwrap();
    let path = dir.join(file_name(Lsn(0x100)));
    // The file is zero-filled a step ahead of its first frame; the frames
    // come first.
    let written = memory.read_file(&path).unwrap();
    assert_eq!(
        written.len() as u64,
        (FRAME_HEADER_BYTES + 300) as u64 + PREALLOCATE_STEP_BYTES
    );
    let complete = written[..2 * FRAME_HEADER_BYTES + 500].to_vec();
    assert!(written[complete.len()..].iter().all(|&b| b == 0));
    // The third frame reaches the disk only partly: its header and 50
    // bytes of its payload.
    store
        .append(Lsn(0x100 + 500), &pattern(0x100 + 500, 400))
        .unwrap();
    faulty.arm(
        0,
        fileio::Fault::TornWrite {
            keep_bytes: FRAME_HEADER_BYTES + 50,
        },
    );
    assert!(matches!(store.sync(), Err(StoreError::Io { .. })));
    assert!(matches!(store.sync(), Err(StoreError::Poisoned(_))));
    let torn = memory.read_file(&path).unwrap();
    let torn_end = complete.len() + FRAME_HEADER_BYTES + 50;
    assert!(torn[complete.len()..torn_end].iter().any(|&b| b != 0));
    assert!(torn[torn_end..].iter().all(|&b| b == 0));
    drop(store);
    let mut store = WalStore::open_with_io(faulty.clone(), dir, DEFAULT_FILE_SIZE_BYTES).unwrap();
    assert_eq!(store.end_lsn(), Some(Lsn(0x100 + 500)));
    assert_eq!(memory.read_file(&path).unwrap(), complete);
    assert_eq!(
        store.read(Lsn(0x100), usize::MAX).unwrap(),
        pattern(0x100, 500)
    );
    // The cut is durable: a crash now does not bring the torn bytes back.
    store
        .append(Lsn(0x100 + 500), &pattern(0x100 + 500, 10))
        .unwrap();
    store.sync().unwrap();
    drop(store);
    memory.crash();
    let store = WalStore::open_with_io(faulty, dir, DEFAULT_FILE_SIZE_BYTES).unwrap();
    assert_eq!(
        store.read(Lsn(0x100), usize::MAX).unwrap(),
        pattern(0x100, 510)
    );
}

#[test]
fn a_crash_loses_exactly_the_unsynced_appends() {
    let (memory, faulty) = simulated_disk();
    let dir = Path::new("/disk/wal");
    let mut store = WalStore::open_with_io(faulty.clone(), dir, SMALL_FILE_BYTES).unwrap();
    let mut end = 5000u64;
    for len in [100, 5000, 1, 9000] {
        store.append(Lsn(end), &pattern(end, len)).unwrap();
        end += len as u64;
        assert_eq!(store.sync().unwrap(), Lsn(end));
    }
    // The read view, taken after the last sync, reads from the disk.
    let view = store.read_view();
    // Written out (a big append) and buffered, but not synced.
    store
        .append(Lsn(end), &pattern(end, MAX_FRAME_PAYLOAD_BYTES + 10))
        .unwrap();
    assert_eq!(view.read(Lsn(5000), usize::MAX).unwrap().len(), 14_101);
    drop(store);
    memory.crash();
    let store = WalStore::open_with_io(faulty, dir, SMALL_FILE_BYTES).unwrap();
    assert_eq!(store.end_lsn(), Some(Lsn(end)));
    assert_eq!(
        store.read(Lsn(5000), usize::MAX).unwrap(),
        pattern(5000, 14_101)
    );
}

#[test]
fn the_newest_file_is_zero_filled_a_step_ahead_of_its_appends() {
    let (memory, faulty) = simulated_disk();
    let dir = Path::new("/disk/wal");
    let file_size = 4 * PREALLOCATE_STEP_BYTES;
    let mut store = WalStore::open_with_io(faulty, dir, file_size).unwrap();
    let chunk = 64 * 1024;
    let mut lsn = Lsn(0x1000);
    let first = dir.join(file_name(lsn));
    let mut frames_end = 0u64;
    while frames_end + (FRAME_HEADER_BYTES + chunk) as u64 <= file_size {
        store.append(lsn, &pattern(lsn.0, chunk)).unwrap();
        assert_eq!(store.sync().unwrap(), lsn + chunk as u64);
        lsn = lsn + chunk as u64;
        frames_end += (FRAME_HEADER_BYTES + chunk) as u64;
        let len = memory.read_file(&first).unwrap().len() as u64;
        assert!(
            len >= frames_end,
            "{len} bytes hold the frames ({frames_end})"
        );
        assert!(
            len <= (frames_end + PREALLOCATE_STEP_BYTES)
                .min(file_size)
                .max(frames_end),
            "{len} bytes: zero-filled more than a step ahead of {frames_end}"
        );
    }
    // One more frame goes past the roll-over size (never zero-filled past
    // it); the one after starts a new file, and the full file ends at its
    // last frame.
    for _ in 0..2 {
        store.append(lsn, &pattern(lsn.0, chunk)).unwrap();
        store.sync().unwrap();
        lsn = lsn + chunk as u64;
    }
    frames_end += (FRAME_HEADER_BYTES + chunk) as u64;
    assert_eq!(memory.read_file(&first).unwrap().len() as u64, frames_end);
    assert_eq!(
        store.read(Lsn(0x1000), usize::MAX).unwrap().len() as u64,
        lsn.0 - 0x1000
    );
}

#[test]
fn unsynced_bytes_count_what_the_next_sync_makes_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    assert_eq!(store.unsynced_bytes(), 0);
    let start = Lsn(0x0100_0000);
    store.append(start, &pattern(start.0, 100)).unwrap();
    assert_eq!(store.unsynced_bytes(), 100);
    store.sync().unwrap();
    assert_eq!(store.unsynced_bytes(), 0);
    // Across a file boundary.
    let next = start + 100;
    store.append(next, &pattern(next.0, 5000)).unwrap();
    assert_eq!(store.unsynced_bytes(), 5000);
    drop(store);
    // Reopening keeps only what was synced: nothing waits.
    let store = WalStore::open_with_file_size(dir.path(), SMALL_FILE_BYTES).unwrap();
    assert_eq!(store.unsynced_bytes(), 0);
}
