//! Shared by the replay test and the ingest benchmark: a storage timeline
//! bootstrapped with initdb, real PostgreSQL 15 servers started from its
//! base backups, and feeding a server's `pg_wal` through [`WalIngest`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use postgres_wal::lsn::DEFAULT_WAL_SEGMENT_SIZE;
use postgres_wal::{Lsn, WalConfig, WalStreamDecoder};
use storage::io::StdFileIo;
use storage::{Repository, RepositoryConfig, Timeline, TimelineId};
use testkit::{PgCluster, PgInstall, PgTempDir};
use walingest::{NativeRedo, WalIngest};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A repository with one timeline holding a fresh initdb.
pub struct Store {
    pub repo: Repository,
    pub timeline: Arc<Timeline>,
    pub initdb_lsn: Lsn,
    /// The repository directory (deleted on drop).
    pub dir: tempfile::TempDir,
}

pub fn bootstrap() -> Store {
    bootstrap_with(RepositoryConfig::default())
}

/// [`bootstrap`] with a chosen repository configuration.
pub fn bootstrap_with(config: RepositoryConfig) -> Store {
    let dir = tempfile::Builder::new()
        .prefix("walingest-repo-")
        .tempdir()
        .unwrap();
    let repo = Repository::open_with(
        dir.path(),
        config,
        Arc::new(StdFileIo),
        Arc::new(NativeRedo),
    )
    .unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let scratch = PgTempDir::new().unwrap();
    let stats = datadir::bootstrap(&timeline, Path::new(PG_BIN), scratch.path()).unwrap();
    Store {
        repo,
        timeline,
        initdb_lsn: stats.lsn,
        dir,
    }
}

/// A stopped cluster whose data directory is the timeline's base backup at
/// `lsn`, configured with `settings`.
pub fn cluster_at(timeline: &Timeline, lsn: Lsn, settings: &[(&str, &str)]) -> PgCluster {
    let backup = datadir::Basebackup::prepare(timeline, Some(lsn)).unwrap();
    let mut tar = Vec::new();
    backup.write_tar(&mut tar).unwrap();
    let install = PgInstall::detect().unwrap();
    let root = PgTempDir::new_for(&install).unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    tar::Archive::new(&tar[..]).unpack(&data).unwrap();
    PgCluster::builder()
        .settings(settings)
        .adopt(root, "data")
        .unwrap()
}

/// What feeding a WAL directory produced.
pub struct Ingested {
    pub records: u64,
    pub bytes: u64,
    /// End LSN of every ingested record, ascending.
    pub record_ends: Vec<Lsn>,
}

/// Reads `pg_wal` segment files from the one holding the timeline's last
/// record on and ingests every record up to the end of the WAL. With
/// `check_every = Some(n)`, native redo is checked against after-images on
/// every n-th record (checking costs a page read per block).
pub fn ingest_wal_dir(
    timeline: &Timeline,
    ingest: &mut WalIngest,
    wal_dir: &Path,
    check_every: Option<u64>,
) -> Ingested {
    let segment_size = DEFAULT_WAL_SEGMENT_SIZE;
    let start = timeline.last_record_lsn();
    let mut segments: Vec<(Lsn, std::path::PathBuf)> = std::fs::read_dir(wal_dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_owned();
            let (_, lsn) = Lsn::from_wal_file_name(&name, segment_size)?;
            Some((lsn, path))
        })
        .filter(|(lsn, _)| lsn.0 + segment_size > start.0)
        .collect();
    segments.sort();
    let mut decoder = WalStreamDecoder::new(start, WalConfig::default());
    let mut out = Ingested {
        records: 0,
        bytes: 0,
        record_ends: Vec::new(),
    };
    let mut ends_decoder = WalStreamDecoder::new(start, WalConfig::default());
    let mut expected_start = start.segment_start(segment_size);
    for (segment_start, path) in segments {
        assert_eq!(segment_start, expected_start, "WAL segments are contiguous");
        expected_start = Lsn(segment_start.0 + segment_size);
        let bytes = std::fs::read(&path).unwrap();
        let from = start.0.saturating_sub(segment_start.0) as usize;
        if check_every.is_none() {
            // The whole segment at once, decoded on a second thread as a
            // receiver catching up does; the record ends from a second pass.
            let mut ingested = walingest::Ingested::default();
            let outcome =
                ingest.ingest_bytes(timeline, &mut decoder, &bytes[from..], &mut ingested);
            out.records += ingested.records;
            out.bytes += ingested.record_bytes;
            let at_end = record_ends(&mut ends_decoder, &bytes[from..], &mut out.record_ends);
            match outcome {
                Ok(()) => assert!(!at_end, "the WAL ended for one decoder only"),
                Err(walingest::FeedError::Decode(e)) if e.is_end_of_wal() => {
                    assert!(at_end, "the WAL ended for one decoder only");
                    break;
                }
                Err(e) => panic!("ingest: {e}"),
            }
            continue;
        }
        decoder.feed_bytes(&bytes[from..]);
        loop {
            match decoder.poll_raw() {
                Ok(Some(raw)) => {
                    if let Some(n) = check_every {
                        ingest.set_check_native(out.records.is_multiple_of(n));
                    }
                    ingest
                        .buffer_record(timeline, &raw)
                        .unwrap_or_else(|e| panic!("ingest of record at {}: {e}", raw.start_lsn));
                    out.records += 1;
                    out.bytes += raw.bytes.len() as u64;
                    out.record_ends.push(raw.end_lsn);
                }
                Ok(None) => break,
                Err(e) if e.is_end_of_wal() => {
                    ingest.write_buffered(timeline).unwrap();
                    return out;
                }
                Err(e) => panic!("decoding WAL: {e}"),
            }
        }
        // A segment's records written as batches, as a WAL receiver
        // writes what each read off its socket brought.
        ingest.write_buffered(timeline).unwrap();
    }
    assert_eq!(out.records, out.record_ends.len() as u64);
    out
}

/// Pushes the end of every record of `bytes` onto `ends`; true at the end
/// of the WAL.
fn record_ends(decoder: &mut WalStreamDecoder, bytes: &[u8], ends: &mut Vec<Lsn>) -> bool {
    decoder.feed_bytes(bytes);
    loop {
        match decoder.poll_raw() {
            Ok(Some(raw)) => ends.push(raw.end_lsn),
            Ok(None) => return false,
            Err(e) if e.is_end_of_wal() => return true,
            Err(e) => panic!("decoding WAL: {e}"),
        }
    }
}

/// The last record end at or below `lsn`.
pub fn record_end_at_or_before(ends: &[Lsn], lsn: Lsn) -> Lsn {
    let index = ends.partition_point(|end| *end <= lsn);
    assert!(index > 0, "no record ends at or before {lsn}");
    ends[index - 1]
}
