//! Frozen on-disk fixtures of format version 1 (`tests/fixtures/v1`): a
//! repository written by this crate, committed byte for byte. Reading them
//! must keep working, and today's writer must still produce the same
//! bytes, so a format change cannot slip in without a new version (see
//! `docs/storage-format.md`). Regenerate deliberately with
//! `STORAGE_REGENERATE_FIXTURES=1 cargo test -p storage --test fixtures --
//! --test-threads=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use storage::{
    DerivedOp, GetError, Key, RedoError, Repository, RepositoryConfig, TimelineId, Value,
};

const TL: TimelineId = TimelineId([0xAB; 16]);

fn rel() -> RelFileNode {
    RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 16384,
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// Writes the fixture repository into `dir`.
fn generate(dir: &Path) {
    let repo = Repository::open(dir, RepositoryConfig::default()).unwrap();
    let timeline = repo.create_timeline(TL, 15, Lsn(0x10)).unwrap();
    let block0 = Key::rel_block(rel(), ForkNumber::Main, 0);
    let mut writer = timeline.writer();
    writer
        .put(
            Key::checkpoint(),
            Lsn(0x10),
            Value::Image(Bytes::from_static(b"ckpt-v1")),
        )
        .unwrap();
    writer
        .put(block0, Lsn(0x10), Value::Image(Bytes::from(vec![0x11; 32])))
        .unwrap();
    writer
        .put(
            Key::rel_size(rel(), ForkNumber::Main),
            Lsn(0x10),
            Value::rel_size(1),
        )
        .unwrap();
    writer.finish(Lsn(0x10)).unwrap();
    let mut writer = timeline.writer();
    let patch = DerivedOp::WriteBytes {
        offset: 4,
        bytes: Bytes::from_static(b"PATCH"),
    };
    writer
        .put(block0, Lsn(0x20), Value::Derived(patch))
        .unwrap();
    let vm = DerivedOp::VmClearBits {
        flags: 1,
        slots: vec![3, 7],
    };
    writer
        .put(
            Key::rel_block(rel(), ForkNumber::VisibilityMap, 0),
            Lsn(0x20),
            Value::Derived(vm),
        )
        .unwrap();
    let rec = Value::WalRecord {
        will_init: true,
        rec: Bytes::from_static(b"opaque"),
    };
    writer.put(Key::twophase_file(700), Lsn(0x20), rec).unwrap();
    writer.finish(Lsn(0x20)).unwrap();
    timeline.freeze_and_flush().unwrap();
    timeline
        .create_image_layer(Key::db_relations_range(1663, 5), Lsn(0x10))
        .unwrap();
    timeline.set_gc_cutoff(Lsn(0x10)).unwrap();
}

/// Relative path → bytes of every file under `dir`.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((
                    path.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn writer_reproduces_the_v1_fixtures_byte_for_byte() {
    if std::env::var_os("STORAGE_REGENERATE_FIXTURES").is_some() {
        let _ = std::fs::remove_dir_all(fixture_dir());
        generate(&fixture_dir());
    }
    let scratch = tempfile::tempdir().unwrap();
    generate(scratch.path());
    let (expected, actual) = (files(&fixture_dir()), files(scratch.path()));
    assert_eq!(
        expected.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        actual.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((path, want), (_, got)) in expected.iter().zip(&actual) {
        assert!(
            want == got,
            "{path:?} differs from the committed v1 fixture"
        );
    }
}

#[test]
fn v1_fixtures_read_back() {
    let scratch = tempfile::tempdir().unwrap();
    for (path, bytes) in files(&fixture_dir()) {
        let target = scratch.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
    let repo = Repository::open(scratch.path(), RepositoryConfig::default()).unwrap();
    let timeline = repo.timeline(TL).unwrap();
    assert_eq!(timeline.disk_consistent_lsn(), Lsn(0x20));
    assert_eq!(timeline.gc_cutoff(), Lsn(0x10));
    assert_eq!(timeline.verify_layers().unwrap(), 2);
    assert_eq!(
        &timeline.get(Key::checkpoint(), Lsn(0x20)).unwrap()[..],
        b"ckpt-v1"
    );
    let block0 = timeline
        .get(Key::rel_block(rel(), ForkNumber::Main, 0), Lsn(0x20))
        .unwrap();
    assert_eq!(
        &block0[..],
        &[&[0x11; 4][..], b"PATCH", &[0x11; 23][..]].concat()[..]
    );
    assert_eq!(
        timeline
            .get_rel_size(rel(), ForkNumber::Main, Lsn(0x10))
            .unwrap(),
        Some(1)
    );
    // Derived op with no base, and a WAL record without native redo: typed errors.
    let vm = timeline.get(
        Key::rel_block(rel(), ForkNumber::VisibilityMap, 0),
        Lsn(0x20),
    );
    assert!(
        matches!(
            vm,
            Err(GetError::Redo {
                source: RedoError::NoBase { .. },
                ..
            })
        ),
        "{vm:?}"
    );
    let rec = timeline.get(Key::twophase_file(700), Lsn(0x20));
    assert!(
        matches!(
            rec,
            Err(GetError::Redo {
                source: RedoError::Unsupported { .. },
                ..
            })
        ),
        "{rec:?}"
    );
}
