//! The after-image oracle for the index access methods with their own
//! resource managers — HASH, GIN, GiST and SP-GiST — on real PostgreSQL 15
//! WAL: a cluster with `wal_consistency_checking = hash,gin,gist,spgist`
//! attaches the page after the change to every block of their records;
//! native redo of each record on the block's previous version must equal it
//! after masking, with no record type left unsupported.
//!
//! Written against PostgreSQL 15.18: from 15.19 on, a GiST VACUUM no longer
//! sets the (unused) `F_TUPLES_DELETED` page flag, so on such a server GiST
//! vacuum records differ in that bit (see `docs/redo.md`).
//!
//! The workload is small but aimed at the interesting paths of each method
//! (listed per function below); every record type that the workload is
//! meant to produce is asserted to have been checked at least once, so a
//! quiet workload cannot pass vacuously. Runs in well under two minutes.
//!
//! The bigger proof (each workload ×10, and PostgreSQL's own regression
//! suite) is run by hand with `pagectl redo-check`; see `docs/redo.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use postgres_wal::rmgr::RmgrId;
use postgres_wal::{Lsn, SegmentDecoder, WalConfig};
use redo::check::{rmgr_name, Checker};
use testkit::{workload, PgCluster};

/// HASH: bucket splits (small fill factor), overflow pages from duplicate
/// keys, squeeze and bucket cleanup by VACUUM, insert-time microvacuum of
/// killed tuples, metapage updates.
const HASH: &str = "
    CREATE TABLE o_hash (id int, k int);
    CREATE INDEX o_hash_k ON o_hash USING hash (k) WITH (fillfactor = 10);
    INSERT INTO o_hash SELECT g, g FROM generate_series(1, 3000) g;
    INSERT INTO o_hash SELECT g, 7 FROM generate_series(1, 1500) g;
    DELETE FROM o_hash WHERE k = 7 AND id % 10 <> 0;
    DELETE FROM o_hash WHERE id % 3 = 0 AND k > 7;
    VACUUM o_hash;
    INSERT INTO o_hash SELECT g, 99999 FROM generate_series(1, 800) g;
    DELETE FROM o_hash WHERE k = 99999 AND id % 2 = 0;
    SET enable_seqscan = off; SET enable_bitmapscan = off;
    SELECT count(*) FROM o_hash WHERE k = 99999;
    RESET enable_seqscan; RESET enable_bitmapscan;
    INSERT INTO o_hash SELECT g, 99999 FROM generate_series(1, 800) g;
    DELETE FROM o_hash;
    VACUUM o_hash;";

/// GIN: posting trees (few keys, many rows) with leaf recompression and
/// vacuum of data leaves, posting-tree page deletion, entry-tree splits,
/// and the fast-update pending list with its cleanup.
const GIN: &str = "
    CREATE TABLE o_gin (id int, arr int[], ts tsvector);
    CREATE INDEX o_gin_arr ON o_gin USING gin (arr) WITH (fastupdate = off);
    CREATE INDEX o_gin_ts ON o_gin USING gin (ts)
        WITH (fastupdate = on, gin_pending_list_limit = 64);
    INSERT INTO o_gin SELECT g, ARRAY[g % 3, g % 1000],
           to_tsvector('simple', 'w' || (g % 4) || ' v' || g)
      FROM generate_series(1, 12000) g;
    SELECT gin_clean_pending_list('o_gin_ts');
    DELETE FROM o_gin WHERE id % 2 = 0;
    DELETE FROM o_gin WHERE id BETWEEN 2000 AND 9000;
    VACUUM o_gin;
    INSERT INTO o_gin SELECT g, ARRAY[1, g], to_tsvector('simple', 'w1 late' || g)
      FROM generate_series(12001, 14000) g;
    VACUUM o_gin;";

/// GiST: page splits with NSN and follow-right, downlink updates, deletes,
/// VACUUM with empty-page deletion, then page reuse.
const GIST: &str = "
    CREATE TABLE o_gist (id int, p point, r int4range);
    CREATE INDEX o_gist_p ON o_gist USING gist (p);
    CREATE INDEX o_gist_r ON o_gist USING gist (r);
    INSERT INTO o_gist SELECT g, point(g % 100, g / 100), int4range(g, g + 10)
      FROM generate_series(1, 6000) g;
    DELETE FROM o_gist WHERE id % 3 = 0;
    DELETE FROM o_gist WHERE id BETWEEN 1000 AND 4000;
    VACUUM o_gist;
    VACUUM o_gist;
    INSERT INTO o_gist SELECT g, point(g % 100, g / 100), int4range(g, g + 3)
      FROM generate_series(1000, 4000) g;";

/// SP-GiST: quad-tree and radix-tree inserts (add leaf, move leafs,
/// picksplit, add node, split tuple), vacuum of leaves, redirects and the
/// root.
const SPGIST: &str = "
    CREATE TABLE o_spg (id int, p point, t text);
    CREATE INDEX o_spg_p ON o_spg USING spgist (p);
    CREATE INDEX o_spg_t ON o_spg USING spgist (t);
    INSERT INTO o_spg SELECT g, point(g % 100, g / 100), 'k' || md5((g % 3000)::text)
      FROM generate_series(1, 5000) g;
    INSERT INTO o_spg SELECT g, point(g % 7, g % 5), 'prefix/common/' || (g % 50) || '/' || g
      FROM generate_series(5001, 7000) g;
    DELETE FROM o_spg WHERE id % 3 = 0;
    DELETE FROM o_spg WHERE id BETWEEN 1000 AND 4000;
    VACUUM o_spg;
    INSERT INTO o_spg SELECT g, point(g % 100, g / 100), 'k' || md5(g::text)
      FROM generate_series(1000, 3000) g;
    DELETE FROM o_spg WHERE id > 6000;
    VACUUM o_spg;
    CREATE TABLE o_spg_small (p point);
    CREATE INDEX o_spg_small_p ON o_spg_small USING spgist (p);
    INSERT INTO o_spg_small SELECT point(g, g) FROM generate_series(1, 20) g;
    DELETE FROM o_spg_small WHERE p[0] > 5;
    VACUUM o_spg_small;";

/// The record types (rmgr, info & 0xF0) each workload must have checked.
const EXPECTED: &[(RmgrId, &[(u8, &str)])] = &[
    (
        RmgrId::Hash,
        &[
            (0x20, "INSERT"),
            (0x30, "ADD_OVFL_PAGE"),
            (0x40, "SPLIT_ALLOCATE_PAGE"),
            (0x60, "SPLIT_COMPLETE"),
            (0x80, "SQUEEZE_PAGE"),
            (0x90, "DELETE"),
            (0xA0, "SPLIT_CLEANUP"),
            (0xB0, "UPDATE_META_PAGE"),
        ],
    ),
    (
        RmgrId::Gin,
        &[
            (0x10, "CREATE_PTREE"),
            (0x20, "INSERT"),
            (0x60, "UPDATE_META_PAGE"),
            (0x70, "INSERT_LISTPAGE"),
            (0x80, "DELETE_LISTPAGE"),
            (0x90, "VACUUM_DATA_LEAF_PAGE"),
        ],
    ),
    (
        RmgrId::Gist,
        &[
            (0x00, "PAGE_UPDATE"),
            (0x30, "PAGE_SPLIT"),
            (0x60, "PAGE_DELETE"),
        ],
    ),
    (
        RmgrId::SpGist,
        &[
            (0x10, "ADD_LEAF"),
            (0x20, "MOVE_LEAFS"),
            (0x30, "ADD_NODE"),
            (0x50, "PICKSPLIT"),
            (0x60, "VACUUM_LEAF"),
            (0x70, "VACUUM_ROOT"),
            (0x80, "VACUUM_REDIRECT"),
        ],
    ),
];

/// Runs the workloads, then feeds the WAL to a [`Checker`]; also returns
/// the (rmgr id, info) pairs of records that had a block compared.
fn run(compression: &str) -> (Checker, BTreeSet<(u8, u8)>) {
    let cluster = PgCluster::builder()
        .settings(workload::REQUIRED_SETTINGS)
        .setting("wal_consistency_checking", "hash,gin,gist,spgist")
        .setting("wal_compression", compression)
        .setting("fsync", "off")
        .setting("synchronous_commit", "off")
        .setting("max_wal_size", "8GB")
        .setting("checkpoint_timeout", "1h")
        .setting("autovacuum", "off")
        .retain_all_wal()
        .start()
        .unwrap();
    for sql in [HASH, GIN, GIST, SPGIST] {
        cluster.psql(sql).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let wal = cluster.collect_wal(dir.path()).unwrap();
    drop(cluster);
    let mut decoder = SegmentDecoder::new(WalConfig {
        segment_size: wal.segment_size,
        system_id: None,
    });
    let mut checker = Checker::new();
    checker.keep_mismatches = usize::MAX;
    let mut seen = BTreeSet::new();
    for name in &wal.segments {
        let (_, start) = Lsn::from_wal_file_name(name, wal.segment_size).unwrap();
        let bytes = std::fs::read(wal.dir.join(name)).unwrap();
        decoder.add_segment(start, &bytes).unwrap();
        while let Some(record) = decoder.next_record().unwrap() {
            let before = checker.stats().get(&record.rmid).map_or(0, |s| s.checked);
            checker.feed(&record);
            let after = checker.stats().get(&record.rmid).map_or(0, |s| s.checked);
            if after > before {
                seen.insert((record.rmid, record.rmgr_info()));
            }
        }
    }
    (checker, seen)
}

fn assert_clean(compression: &str) {
    let (checker, seen) = run(compression);
    let mut report = BTreeMap::new();
    for (rmgr, types) in EXPECTED {
        let stats = checker
            .stats()
            .get(&(*rmgr as u8))
            .copied()
            .unwrap_or_default();
        report.insert(rmgr.name(), stats);
        for (info, name) in *types {
            assert!(
                seen.contains(&(*rmgr as u8, *info)),
                "{} {name} never checked",
                rmgr.name()
            );
        }
    }
    eprintln!("wal_compression={compression}: {report:#?}");
    for m in checker.mismatches().iter().take(20) {
        eprintln!("MISMATCH {} {m:?}", rmgr_name(m.rmid));
    }
    for (name, stats) in &report {
        assert_eq!(stats.mismatched, 0, "{name} mismatched");
        assert_eq!(stats.unsupported, 0, "{name} unsupported");
        assert!(stats.matched > 0, "{name} never matched");
    }
}

#[test]
fn hash_gin_gist_spgist_redo_matches_after_images() {
    assert_clean("zstd");
}
