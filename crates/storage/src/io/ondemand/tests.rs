use std::sync::atomic::AtomicUsize;

use postgres_wal::Lsn;

use super::*;
use crate::io::StdFileIo;
use crate::{BuiltinRedo, Key, Repository, RepositoryConfig, TimelineId, Value};

/// Serves files copied aside before eviction ("the remote"), counting calls.
#[derive(Debug, Default)]
struct CopyDownloader {
    calls: AtomicUsize,
}

impl LayerDownloader for CopyDownloader {
    fn download(&self, _path: &Path, marker: &EvictedMarker) -> io::Result<Vec<u8>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Slow enough that concurrent readers overlap.
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::read(&marker.source)
    }
}

fn open(dir: &Path, downloader: &Arc<CopyDownloader>) -> (OnDemandIo, Repository) {
    let io = OnDemandIo::new(Arc::new(StdFileIo), downloader.clone());
    let repo = Repository::open_with(
        dir,
        RepositoryConfig::default(),
        Arc::new(io.clone()),
        Arc::new(BuiltinRedo),
    )
    .unwrap();
    (io, repo)
}

/// Evicts every layer file of `repo`, copying each into `aside`.
fn evict_all(io: &OnDemandIo, repo: &Repository, aside: &Path) -> u64 {
    let mut freed = 0;
    for timeline in repo.list_timelines() {
        for desc in timeline.layer_files() {
            let path = timeline.dir().join(desc.file_name());
            let data = std::fs::read(&path).unwrap();
            let copy = aside.join(desc.file_name());
            std::fs::write(&copy, &data).unwrap();
            let marker = EvictedMarker {
                file_size: data.len() as u64,
                crc32c: crc32c::crc32c(&data),
                source: copy.to_str().unwrap().to_owned(),
            };
            freed += io.evict(&path, &marker).unwrap();
            assert!(io.is_evicted(&path));
        }
    }
    freed
}

fn key(i: u32) -> Key {
    let rel = postgres_wal::record::RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 16384,
    };
    Key::rel_block(rel, postgres_wal::record::ForkNumber::Main, i)
}

#[test]
fn evicted_layers_read_back_after_restart_and_download_once() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    let downloader = Arc::new(CopyDownloader::default());
    let (io, repo) = open(dir.path(), &downloader);
    let id = TimelineId::generate();
    let timeline = repo.create_timeline(id, 15, Lsn(0x100)).unwrap();
    for i in 0..8u32 {
        let mut writer = timeline.writer();
        let lsn = Lsn(0x200 + u64::from(i) * 0x10);
        writer
            .put(key(i), lsn, Value::Image(vec![i as u8; 100].into()))
            .unwrap();
        writer.finish(lsn).unwrap();
    }
    timeline.freeze_and_flush().unwrap();
    let freed = evict_all(&io, &repo, aside.path());
    assert!(freed > 0);
    drop((timeline, repo, io));

    // Reopened: the evicted layer is still in the map; nothing downloaded
    // until a read, then once however many readers race.
    let (io, repo) = open(dir.path(), &downloader);
    let timeline = repo.timeline(id).unwrap();
    assert!(timeline.physical_size_bytes() > 0);
    assert_eq!(downloader.calls.load(Ordering::SeqCst), 0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..8u32 {
                    let page = timeline.get(key(i), Lsn(0x270)).unwrap();
                    assert_eq!(&page[..], &vec![i as u8; 100][..]);
                }
            });
        }
    });
    assert_eq!(downloader.calls.load(Ordering::SeqCst), 1);
    assert_eq!(io.counters().count.load(Ordering::Relaxed), 1);
    let path = timeline.dir().join(timeline.layer_files()[0].file_name());
    assert!(!io.is_evicted(&path));
    assert!(!marker_path(&path).exists());
}

#[test]
fn a_corrupt_download_is_refused_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    let downloader = Arc::new(CopyDownloader::default());
    let (io, repo) = open(dir.path(), &downloader);
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn(0x100))
        .unwrap();
    let mut writer = timeline.writer();
    writer
        .put(key(1), Lsn(0x200), Value::Image(vec![7; 100].into()))
        .unwrap();
    writer.finish(Lsn(0x200)).unwrap();
    timeline.freeze_and_flush().unwrap();
    evict_all(&io, &repo, aside.path());
    repo.clear_page_cache();
    // The remote copy rots: one byte flipped.
    let name = timeline.layer_files()[0].file_name();
    let copy = aside.path().join(&name);
    let mut data = std::fs::read(&copy).unwrap();
    data[10] ^= 0xff;
    std::fs::write(&copy, &data).unwrap();
    let error = timeline.get(key(1), Lsn(0x200)).unwrap_err().to_string();
    assert!(error.contains("CRC-32C"), "{error}");
    assert!(io.is_evicted(&timeline.dir().join(&name)));
}

#[test]
fn markers_round_trip_and_bad_ones_are_refused() {
    let marker = EvictedMarker {
        file_size: 12345,
        crc32c: 0xdead_beef,
        source: "tenants/a/timelines/b/layer-00000001".into(),
    };
    assert_eq!(EvictedMarker::decode(&marker.encode()).unwrap(), marker);
    for bad in [&b""[..], b"junk\n", b"sediment-evicted-layer v1\nsize x\n"] {
        assert!(EvictedMarker::decode(bad).is_err());
    }
}

#[test]
fn page_cache_hits_count_as_uses() {
    let dir = tempfile::tempdir().unwrap();
    let aside = tempfile::tempdir().unwrap();
    let downloader = Arc::new(CopyDownloader::default());
    let (io, repo) = open(dir.path(), &downloader);
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn(0x100))
        .unwrap();
    let mut writer = timeline.writer();
    writer
        .put(key(1), Lsn(0x200), Value::Image(vec![7; 100].into()))
        .unwrap();
    writer.finish(Lsn(0x200)).unwrap();
    timeline.freeze_and_flush().unwrap();
    let path = timeline.dir().join(timeline.layer_files()[0].file_name());
    timeline.get(key(1), Lsn(0x200)).unwrap();
    let first = io.last_access_micros(&path);
    assert!(first > 0);
    // Evicted, so only the page cache can answer without a download.
    evict_all(&io, &repo, aside.path());
    std::thread::sleep(std::time::Duration::from_millis(5));
    let page = timeline.get(key(1), Lsn(0x200)).unwrap();
    assert_eq!(&page[..], &[7; 100][..]);
    assert_eq!(
        downloader.calls.load(Ordering::SeqCst),
        0,
        "not served from the page cache"
    );
    assert!(
        io.last_access_micros(&path) > first,
        "the cache hit was not counted"
    );
}
