//! Frozen real-PostgreSQL-15 WAL: one segment per fixture under
//! `tests/fixtures/`, written with `wal_consistency_checking = all` and
//! `wal_compression = off`, stored zstd-compressed and named by its
//! segment file name. Replaying every record on the block's image-less
//! predecessor must give the record's after-image after masking; a
//! corrupted after-image must be caught.
//!
//! Regenerate (needs PostgreSQL 15): `cargo test -p redo --test fixtures --
//! --ignored regenerate_fixtures`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use postgres_wal::record::DecodedRecord;
use postgres_wal::rmgr::RmgrId;
use postgres_wal::{decode_segments, Lsn, WalConfig};
use redo::check::Checker;

const SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture: (segment start LSN, decoded records).
fn fixtures() -> Vec<(String, Vec<DecodedRecord>)> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wal.zst"))
        .collect();
    names.sort();
    for name in names {
        let segment_name = name.trim_end_matches(".wal.zst");
        let (_, start) = Lsn::from_wal_file_name(segment_name, SEGMENT_SIZE).unwrap();
        let compressed = std::fs::read(fixture_dir().join(&name)).unwrap();
        let mut bytes = zstd::decode_all(compressed.as_slice()).unwrap();
        bytes.resize(SEGMENT_SIZE as usize, 0);
        let config = WalConfig {
            segment_size: SEGMENT_SIZE,
            system_id: None,
        };
        let (records, _end) = decode_segments([(start, bytes.as_slice())], config);
        out.push((name, records));
    }
    assert!(
        !out.is_empty(),
        "no fixtures in {}",
        fixture_dir().display()
    );
    out
}

#[test]
fn every_fixture_record_redoes_to_its_after_image() {
    for (name, records) in fixtures() {
        let mut checker = Checker::new();
        for record in &records {
            checker.feed(record);
        }
        assert_eq!(
            checker.total_mismatched(),
            0,
            "{name}: {:?}",
            checker.mismatches()
        );
        for rmgr in [RmgrId::Heap, RmgrId::Heap2, RmgrId::Btree, RmgrId::Sequence] {
            let stats = checker
                .stats()
                .get(&(rmgr as u8))
                .copied()
                .unwrap_or_default();
            assert!(
                stats.matched > 0,
                "{name}: no {} record checked",
                rmgr.name()
            );
            assert_eq!(stats.unsupported, 0, "{name}: {}", rmgr.name());
        }
    }
}

#[test]
fn a_corrupted_after_image_is_reported_as_a_mismatch() {
    let (_, mut records) = fixtures().remove(0);
    // Flip a byte of tuple data (never masked) in the image of the last
    // heap insert: the oracle must notice.
    let target = records
        .iter_mut()
        .rev()
        .find(|r| r.rmid == RmgrId::Heap as u8 && r.rmgr_info() & 0x70 == 0)
        .expect("a heap insert");
    let image = target.blocks[0].image.as_mut().expect("check image");
    let page = &mut image.page;
    let lp = u32::from_le_bytes(page[24..28].try_into().unwrap());
    let item = (lp & 0x7FFF) as usize;
    page[item + 24] ^= 0xFF;
    let mut checker = Checker::new();
    for record in &records {
        checker.feed(record);
    }
    assert_eq!(checker.total_mismatched(), 1);
    assert_eq!(checker.mismatches()[0].rmgr, "Heap");
}

/// Real records with corrupted bodies, applied to real pages (each record's
/// own after-image): redo must return `Ok` or `Err`, never panic.
#[test]
fn mutated_real_records_never_panic() {
    let (_, records) = fixtures().remove(0);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut applied = 0;
    for record in records.iter().filter(|r| !r.blocks.is_empty()) {
        for _ in 0..4 {
            let mut mutated = record.clone();
            let target = (next() % 3) as usize;
            let bytes = match target {
                0 => &mut mutated.main_data,
                _ => &mut mutated.blocks[0].data,
            };
            if !bytes.is_empty() {
                for _ in 0..=(next() % 3) {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            if next() % 4 == 0 {
                let len = bytes.len();
                bytes.truncate((next() as usize) % (len + 1));
            }
            for block in &mutated.blocks {
                let Some(image) = &block.image else { continue };
                let mut page = image.page.clone();
                let _ = redo::apply(&mut page, &mutated, block.block_id);
                applied += 1;
            }
        }
    }
    assert!(applied > 1000);
}

#[test]
#[ignore = "needs PostgreSQL 15; rewrites tests/fixtures"]
fn regenerate_fixtures() {
    use testkit::PgCluster;
    // Uncompressed images: successive images of a page are nearly equal, so
    // the file-level zstd below shrinks them far better than per-image zstd.
    let cluster = PgCluster::builder()
        .setting("wal_consistency_checking", "all")
        .setting("wal_compression", "off")
        .retain_all_wal()
        .start()
        .unwrap();
    cluster
        .psql("CREATE TABLE fx (id int PRIMARY KEY, grp int, t text) WITH (fillfactor = 70)")
        .unwrap();
    cluster.checkpoint().unwrap();
    cluster.switch_wal().unwrap();
    let workload_segment: String = cluster
        .query_scalar("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
        .unwrap();
    cluster
        .psql(
            "CREATE INDEX fx_grp ON fx (grp);
             INSERT INTO fx SELECT g, g % 3, 'x' FROM generate_series(1, 700) g;
             UPDATE fx SET grp = grp WHERE id % 2 = 0;
             UPDATE fx SET t = 'moved' WHERE id % 7 = 0;
             DELETE FROM fx WHERE id <= 400;
             VACUUM fx;
             VACUUM (FREEZE) fx;
             BEGIN; SELECT count(*) FROM (SELECT * FROM fx WHERE id < 20 FOR SHARE) s;
             SAVEPOINT a; UPDATE fx SET grp = 9 WHERE id < 10; COMMIT;
             CREATE SEQUENCE fx_seq; SELECT nextval('fx_seq'); SELECT setval('fx_seq', 500);
             COPY fx (id) FROM PROGRAM 'seq 5000 5100';",
        )
        .unwrap();
    let last: String = cluster
        .query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    assert_eq!(
        workload_segment, last,
        "fixture workload must fit one segment"
    );
    let segment = std::fs::read(cluster.wal_dir().join(&last)).unwrap();
    let used = segment.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let compressed = zstd::encode_all(&segment[..used], 19).unwrap();
    std::fs::create_dir_all(fixture_dir()).unwrap();
    std::fs::write(fixture_dir().join(format!("{last}.wal.zst")), compressed).unwrap();
}
