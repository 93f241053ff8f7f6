//! The coverage workload runs cleanly on a real PostgreSQL 15 and leaves the
//! expected objects behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use testkit::{waldump, workload, PgCluster};

#[test]
fn full_coverage_runs_and_writes_every_index_kind() {
    let cluster = PgCluster::builder()
        .settings(workload::REQUIRED_SETTINGS)
        .retain_all_wal()
        .start()
        .unwrap();
    let before = cluster.current_wal_lsn().unwrap();
    workload::full_coverage(&cluster, 2).unwrap();
    let after = cluster.current_wal_lsn().unwrap();
    assert!(after.0 - before.0 > 50 * 1024 * 1024, "{before} -> {after}");

    let methods = cluster
        .psql(
            "SELECT DISTINCT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_am am ON am.oid = c.relam WHERE c.relname LIKE 'cov_idx%' ORDER BY 1",
        )
        .unwrap();
    assert_eq!(methods, "brin\nbtree\ngin\ngist\nhash\nspgist\n");
    let prepared: i64 = cluster
        .query_scalar("SELECT count(*) FROM pg_prepared_xacts")
        .unwrap();
    assert_eq!(prepared, 0);
    let two_phase = cluster.psql("SELECT x FROM cov_2pc ORDER BY x").unwrap();
    assert_eq!(two_phase, "1\n3\n");
    // 100 exception blocks, every tenth rolled back; 70 savepoints committed
    // with s60..s70 rolled back (59 rows); the aborted batch: 0.
    let subxact_rows: i64 = cluster
        .query_scalar("SELECT count(*) FROM cov_subxact")
        .unwrap();
    assert_eq!(subxact_rows, 90 + 59);
    let copied: i64 = cluster
        .query_scalar("SELECT count(*) FROM cov_copy")
        .unwrap();
    assert_eq!(copied, 15000);
    let toast_bytes: i64 = cluster
        .query_scalar(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'cov_toast'",
        )
        .unwrap();
    assert!(toast_bytes > 1_000_000, "{toast_bytes}");
    let databases: i64 = cluster
        .query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'cov_%'")
        .unwrap();
    assert_eq!(databases, 0);

    let fingerprints = workload::table_fingerprints(&cluster, "postgres").unwrap();
    assert!(fingerprints.contains_key("public.cov_toast"));
    assert!(fingerprints.contains_key("public.pgbench_accounts"));
    assert!(!fingerprints.contains_key("public.cov_unlogged"));
    let dest = tempfile::tempdir().unwrap();
    let wal = cluster.collect_wal(dest.path()).unwrap();
    let stats = waldump::pg_waldump_stats(cluster.install(), &wal).unwrap();
    assert_eq!(
        stats.rows.iter().map(|r| r.count).sum::<u64>(),
        stats.total_count
    );
    let keys: Vec<String> = stats.rows.iter().map(|r| r.key()).collect();
    // The record types the workload promises; a missing one means a step
    // silently stopped exercising what the decoder and redo tests rely on.
    let missing: Vec<&str> = EXPECTED_RECORD_TYPES
        .iter()
        .copied()
        .filter(|k| !keys.iter().any(|key| key == k))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?}; got {keys:?}");
}

const EXPECTED_RECORD_TYPES: &[&str] = &[
    "XLOG/CHECKPOINT_ONLINE",
    "XLOG/SWITCH",
    "XLOG/FPI",
    "XLOG/RESTORE_POINT",
    "XLOG/BACKUP_END",
    "Transaction/COMMIT",
    "Transaction/ABORT",
    "Transaction/PREPARE",
    "Transaction/COMMIT_PREPARED",
    "Transaction/ABORT_PREPARED",
    "Transaction/ASSIGNMENT",
    "Storage/CREATE",
    "Storage/TRUNCATE",
    "Database/CREATE_FILE_COPY",
    "Database/CREATE_WAL_LOG",
    "Database/DROP",
    "Tablespace/CREATE",
    "Tablespace/DROP",
    "MultiXact/CREATE_ID",
    "RelMap/UPDATE",
    "Heap2/MULTI_INSERT",
    "Heap2/VISIBLE",
    "Heap/INSERT",
    "Heap/HOT_UPDATE",
    "Heap/HEAP_CONFIRM",
    "Heap/INPLACE",
    "Btree/SPLIT_L",
    "Btree/DEDUP",
    "Btree/UNLINK_PAGE",
    "Hash/SPLIT_PAGE",
    "Hash/SQUEEZE_PAGE",
    "Gin/INSERT_LISTPAGE",
    "Gin/SPLIT",
    "Gist/PAGE_SPLIT",
    "Sequence/LOG",
    "SPGist/PICKSPLIT",
    "BRIN/REVMAP_EXTEND",
    "CommitTs/ZEROPAGE",
    "Generic/Generic",
    "LogicalMessage/MESSAGE",
    "ReplicationOrigin/SET",
    "ReplicationOrigin/DROP",
];
