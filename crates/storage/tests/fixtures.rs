//! Frozen on-disk fixtures (`tests/fixtures/v1`, `tests/fixtures/v2`):
//! repositories written by this crate, committed byte for byte. Reading
//! both must keep working; today's writer must produce the v2 bytes
//! exactly, and the kept v1 encoder the v1 layer files, so a format change
//! cannot slip in without a new version (see `docs/storage-format.md`).
//! `fixtures/v2/corrupt/` holds a v2 layer with one flipped byte inside a
//! compressed value, which must be refused by name. Regenerate the v2 set
//! deliberately with `STORAGE_REGENERATE_FIXTURES=1 cargo test -p storage
//! --test fixtures -- --test-threads=1` (v1 can no longer be regenerated:
//! the writer produces v2).
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

fn v2_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2")
}

/// An 8 KB heap-like page: header, line pointers, repeated tuples.
fn heap_page() -> Bytes {
    let mut page = vec![0u8; 8192];
    page[..24].copy_from_slice(&[7; 24]);
    for (i, tuple) in page[1024..].chunks_mut(64).enumerate() {
        tuple[..8].copy_from_slice(&(i as u64).to_le_bytes());
        tuple[8..].fill(b'x');
    }
    Bytes::from(page)
}

/// The v2 fixture: the v1 history plus a compressible page at 0x30.
fn generate_v2(dir: &Path) {
    generate(dir);
    let repo = Repository::open(dir, RepositoryConfig::default()).unwrap();
    let timeline = repo.timeline(TL).unwrap();
    let mut writer = timeline.writer();
    writer
        .put(
            Key::rel_block(rel(), ForkNumber::Main, 1),
            Lsn(0x30),
            Value::Image(heap_page()),
        )
        .unwrap();
    writer.finish(Lsn(0x30)).unwrap();
    timeline.freeze_and_flush().unwrap();
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
fn v1_encoder_reproduces_the_v1_layer_files_byte_for_byte() {
    use storage::io::StdFileIo;
    use storage::layer::file::{encode_layer_version, LayerFile, LAYER_FORMAT_V1};
    let mut checked = 0;
    for (path, bytes) in files(&fixture_dir()) {
        let Some(desc) =
            storage::LayerDesc::parse_file_name(path.file_name().unwrap().to_str().unwrap())
        else {
            continue;
        };
        let file = LayerFile::open(&StdFileIo, &fixture_dir().join(&path), Some(&desc)).unwrap();
        assert_eq!(file.header().format_version, LAYER_FORMAT_V1);
        let values: Vec<_> = (0..file.index().len())
            .map(|p| (file.index()[p], file.read_value(p, None).unwrap()))
            .collect();
        let again = encode_layer_version(
            &desc,
            values.iter().map(|(e, v)| (e.key, e.lsn, v)),
            LAYER_FORMAT_V1,
        )
        .unwrap();
        assert!(
            again == bytes,
            "{path:?} differs from the v1 encoder's output"
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn writer_reproduces_the_v2_fixtures_byte_for_byte() {
    let timelines = |d: PathBuf| d.join("timelines");
    if std::env::var_os("STORAGE_REGENERATE_FIXTURES").is_some() {
        let _ = std::fs::remove_dir_all(timelines(v2_dir()));
        generate_v2(&v2_dir());
    }
    let scratch = tempfile::tempdir().unwrap();
    generate_v2(scratch.path());
    let (expected, actual) = (
        files(&timelines(v2_dir())),
        files(&timelines(scratch.path().to_owned())),
    );
    assert_eq!(
        expected.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        actual.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((path, want), (_, got)) in expected.iter().zip(&actual) {
        assert!(
            want == got,
            "{path:?} differs from the committed v2 fixture"
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

#[test]
fn v2_fixtures_read_back_and_compress() {
    use storage::layer::file::{LayerFile, LAYER_FORMAT_VERSION};
    let scratch = tempfile::tempdir().unwrap();
    for (path, bytes) in files(&v2_dir().join("timelines")) {
        let target = scratch.path().join("timelines").join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
    let repo = Repository::open(scratch.path(), RepositoryConfig::default()).unwrap();
    let timeline = repo.timeline(TL).unwrap();
    assert_eq!(timeline.disk_consistent_lsn(), Lsn(0x30));
    assert_eq!(timeline.verify_layers().unwrap(), 3);
    let page = timeline
        .get(Key::rel_block(rel(), ForkNumber::Main, 1), Lsn(0x30))
        .unwrap();
    assert_eq!(page, heap_page());
    let newest = timeline
        .layer_files()
        .into_iter()
        .max_by_key(|d| d.lsn_range.start)
        .unwrap();
    let path = timeline.dir().join(newest.file_name());
    let file = LayerFile::open(&storage::io::StdFileIo, &path, Some(&newest)).unwrap();
    assert_eq!(file.header().format_version, LAYER_FORMAT_VERSION);
    // The 8 KB page is stored compressed: the file is far smaller.
    assert!(std::fs::metadata(&path).unwrap().len() < 2048);
}

#[test]
fn corrupt_v2_fixture_is_refused_by_name() {
    use storage::layer::file::LayerFile;
    let dir = v2_dir().join("corrupt");
    if std::env::var_os("STORAGE_REGENERATE_FIXTURES").is_some() {
        // Flip one byte in the middle of the compressed page's frame.
        let source = files(&v2_dir().join("timelines"))
            .into_iter()
            .filter(|(p, _)| p.to_str().unwrap().contains("delta_"))
            .max_by_key(|(p, _)| p.clone())
            .unwrap();
        let mut bytes = source.1;
        let at = 128 + 40;
        bytes[at] ^= 0x10;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(source.0.file_name().unwrap()), bytes).unwrap();
    }
    let (name, _) = files(&dir).pop().unwrap();
    let desc = storage::LayerDesc::parse_file_name(name.to_str().unwrap()).unwrap();
    let path = dir.join(&name);
    let file = LayerFile::open(&storage::io::StdFileIo, &path, Some(&desc)).unwrap();
    let err = (0..file.index().len())
        .map(|p| file.read_value(p, None))
        .find_map(Result::err)
        .expect("the flipped byte must be detected");
    assert!(err.to_string().contains(&desc.file_name()), "{err}");
}
