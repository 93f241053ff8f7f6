//! The after-image oracle on real PostgreSQL 15 WAL: a cluster running with
//! `wal_consistency_checking = all` attaches to every heap/btree/sequence
//! record the page as it is after the change; native redo of each record on
//! the block's previous version must equal it after masking.
//!
//! Workload: pgbench (init + `REDO_ORACLE_PGBENCH_SECS` s, default 60, with
//! 4 clients at 60 tps), bulk deletes + VACUUM + VACUUM FREEZE, HOT chains and
//! pruning, btree splits / deduplication / page deletion, COPY, sequences,
//! row locks and multixacts from concurrent sessions, TOAST, generic WAL
//! (bloom), BRIN. Run once with
//! `wal_compression = off` and once with `zstd`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;

use postgres_wal::rmgr::RmgrId;
use postgres_wal::{Lsn, SegmentDecoder, WalConfig};
use redo::check::{rmgr_name, Checker};
use redo::NATIVE_RMGRS;
use testkit::{workload, PgCluster};

fn pgbench_secs() -> u32 {
    std::env::var("REDO_ORACLE_PGBENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn heap_and_btree_churn(cluster: &PgCluster) {
    cluster
        .psql(
            "CREATE TABLE oracle_hot (id int PRIMARY KEY, n int, pad text) WITH (fillfactor = 50);
             INSERT INTO oracle_hot SELECT g, 0, repeat('p', 40) FROM generate_series(1, 2000) g;
             UPDATE oracle_hot SET n = n + 1;
             UPDATE oracle_hot SET n = n + 1;
             UPDATE oracle_hot SET n = n + 1 WHERE id % 3 = 0;
             SELECT count(*) FROM oracle_hot WHERE n > 0;
             UPDATE oracle_hot SET pad = repeat('q', 60) WHERE id % 5 = 0;
             CREATE TABLE oracle_bulk (id int, grp int GENERATED ALWAYS AS (id % 10) STORED,
                                       t text DEFAULT 'bulk row');
             COPY oracle_bulk (id) FROM PROGRAM 'seq 1 8000';
             CREATE INDEX oracle_bulk_id ON oracle_bulk (id);
             CREATE INDEX oracle_bulk_grp ON oracle_bulk (grp);
             COPY oracle_bulk (id) FROM PROGRAM 'seq 8001 12000';
             DELETE FROM oracle_bulk WHERE id % 4 <> 0;
             VACUUM oracle_bulk;
             DELETE FROM oracle_bulk WHERE id < 10000;
             VACUUM oracle_bulk;
             VACUUM oracle_bulk;
             COPY oracle_bulk (id) FROM PROGRAM 'seq 1 3000';
             VACUUM (FREEZE) oracle_bulk;
             VACUUM (FREEZE) oracle_hot;
             UPDATE oracle_hot SET n = -1 WHERE id < 100;
             DELETE FROM oracle_hot WHERE id > 1900;",
        )
        .unwrap();
}

/// Two sessions share-lock the same rows at once: the second locker turns
/// xmax into a MultiXact.
fn concurrent_share_locks(cluster: &PgCluster) {
    cluster
        .psql(
            "CREATE TABLE oracle_locks (id int PRIMARY KEY, v int);
             INSERT INTO oracle_locks SELECT g, 0 FROM generate_series(1, 200) g;",
        )
        .unwrap();
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                cluster
                    .psql(
                        "BEGIN;
                         SELECT count(*) FROM (SELECT * FROM oracle_locks FOR SHARE) s;
                         SELECT pg_sleep(1.5);
                         COMMIT;",
                    )
                    .unwrap();
            });
        }
    });
    cluster
        .psql(
            "BEGIN;
             SELECT count(*) FROM (SELECT * FROM oracle_locks WHERE id < 50 FOR KEY SHARE) s;
             UPDATE oracle_locks SET v = v + 1 WHERE id < 20;
             COMMIT;",
        )
        .unwrap();
}

/// Generic WAL (bloom index build, inserts, vacuum).
fn generic_wal(cluster: &PgCluster) {
    cluster
        .psql(
            "CREATE EXTENSION IF NOT EXISTS bloom;
             CREATE TABLE oracle_bloom (a int, b int GENERATED ALWAYS AS (a % 13) STORED);
             COPY oracle_bloom (a) FROM PROGRAM 'seq 1 3000';
             CREATE INDEX oracle_bloom_idx ON oracle_bloom USING bloom (a, b);
             INSERT INTO oracle_bloom (a) SELECT generate_series(3001, 3500);
             DELETE FROM oracle_bloom WHERE a % 4 = 0;
             VACUUM oracle_bloom;",
        )
        .unwrap();
}

/// BRIN: build, summarize new ranges, in-range updates, desummarize.
fn brin_wal(cluster: &PgCluster) {
    cluster
        .psql(
            "CREATE TABLE oracle_brin (id int, v int GENERATED ALWAYS AS (id * 2) STORED);
             COPY oracle_brin (id) FROM PROGRAM 'seq 1 8000';
             CREATE INDEX oracle_brin_idx ON oracle_brin USING brin (id, v)
               WITH (pages_per_range = 2);
             COPY oracle_brin (id) FROM PROGRAM 'seq 8001 12000';
             INSERT INTO oracle_brin (id) SELECT generate_series(12001, 12300);
             SELECT brin_summarize_new_values('oracle_brin_idx');
             UPDATE oracle_brin SET id = -id WHERE id % 500 = 0;
             SELECT brin_desummarize_range('oracle_brin_idx', 0);
             SELECT brin_desummarize_range('oracle_brin_idx', 10);
             VACUUM oracle_brin;
             SELECT brin_summarize_range('oracle_brin_idx', 0);",
        )
        .unwrap();
}

fn run_oracle(compression: &str) -> Checker {
    let cluster = PgCluster::builder()
        .settings(workload::REQUIRED_SETTINGS)
        .setting("wal_consistency_checking", "all")
        .setting("wal_compression", compression)
        // WAL content does not depend on these; they only make it cheaper.
        .setting("fsync", "off")
        .setting("synchronous_commit", "off")
        .setting("max_wal_size", "8GB")
        .setting("checkpoint_timeout", "1h")
        .setting("shared_buffers", "256MB")
        .retain_all_wal()
        .start()
        .unwrap();
    workload::pgbench_init(&cluster, 1).unwrap();
    // Rate-limited: every record carries an 8 kB image, so an unthrottled
    // run writes gigabytes of WAL on a fast machine.
    let secs = pgbench_secs().to_string();
    cluster
        .pgbench(&["-c", "4", "-j", "2", "-T", &secs, "-R", "60"])
        .unwrap();
    heap_and_btree_churn(&cluster);
    concurrent_share_locks(&cluster);
    workload::copy_in(&cluster).unwrap();
    workload::sequences(&cluster).unwrap();
    workload::toast(&cluster).unwrap();
    workload::multixacts(&cluster).unwrap();
    generic_wal(&cluster);
    brin_wal(&cluster);

    let dir = tempfile::tempdir().unwrap();
    let wal = cluster.collect_wal(dir.path()).unwrap();
    drop(cluster);
    // Stream: one segment in memory at a time, records fed as decoded.
    let mut decoder = SegmentDecoder::new(WalConfig {
        segment_size: wal.segment_size,
        system_id: None,
    });
    let mut checker = Checker::new();
    let mut records = 0usize;
    for name in &wal.segments {
        let (_, start) = Lsn::from_wal_file_name(name, wal.segment_size).unwrap();
        let bytes = std::fs::read(wal.dir.join(name)).unwrap();
        decoder.add_segment(start, &bytes).unwrap();
        while let Some(record) = decoder.next_record().unwrap() {
            checker.feed(&record);
            records += 1;
        }
    }
    report(compression, records, &checker);
    checker
}

fn report(compression: &str, records: usize, checker: &Checker) {
    eprintln!("wal_compression={compression}: {records} records");
    eprintln!(
        "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "rmgr", "records", "checked", "matched", "mismatch", "unsupp", "no_base", "restored"
    );
    for (rmid, s) in checker.stats() {
        eprintln!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            rmgr_name(*rmid),
            s.records_checked,
            s.checked,
            s.matched,
            s.mismatched,
            s.unsupported,
            s.no_base,
            s.restored
        );
    }
    for m in checker.mismatches() {
        eprintln!("MISMATCH {m:?}");
    }
}

fn assert_native_clean(checker: &Checker) {
    for rmgr in NATIVE_RMGRS {
        let stats = checker
            .stats()
            .get(&(*rmgr as u8))
            .copied()
            .unwrap_or_default();
        assert_eq!(stats.mismatched, 0, "{} mismatched", rmgr.name());
        assert_eq!(stats.unsupported, 0, "{} unsupported", rmgr.name());
    }
    // This workload has no hash, GIN, GiST or SP-GiST index: those managers
    // are exercised (and required to be checked) by `oracle_index_ams.rs`.
    let exercised_elsewhere = [
        RmgrId::Xlog,
        RmgrId::Hash,
        RmgrId::Gin,
        RmgrId::Gist,
        RmgrId::SpGist,
    ];
    for rmgr in NATIVE_RMGRS
        .iter()
        .filter(|r| !exercised_elsewhere.contains(*r))
    {
        let stats = checker
            .stats()
            .get(&(*rmgr as u8))
            .copied()
            .unwrap_or_default();
        assert!(stats.matched > 0, "{} was never checked", rmgr.name());
    }
}

#[test]
fn native_redo_matches_after_images_without_compression() {
    assert_native_clean(&run_oracle("off"));
}

#[test]
fn native_redo_matches_after_images_with_zstd() {
    assert_native_clean(&run_oracle("zstd"));
}
