//! The end-to-end check of ingest against real PostgreSQL 15: a server
//! started from a base backup of a bootstrapped timeline runs a workload;
//! its WAL is ingested; servers started from base backups at several LSNs
//! of the result must show exactly what the source showed at those LSNs,
//! and must never hand out an xid or oid the source already used.
//!
//! Two cases: the endpoint configuration Sediment uses
//! (`wal_consistency_checking` = the managers without native redo, and
//! `full_page_writes = off`, so every page change is redone natively), and
//! `all` (every page change carries its after-image; full-page writes on,
//! as on a stock server attached as a WAL source).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use postgres_wal::Lsn;
use testkit::workload;
use testkit::PgCluster;
use walingest::WalIngest;

/// What the source showed at one point of the workload.
struct Point {
    name: &'static str,
    lsn: Lsn,
    /// Fingerprints of every permanent table, per database.
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

fn snapshot(cluster: &PgCluster, name: &'static str, dbs: &[&str]) -> Point {
    let tables = dbs
        .iter()
        .map(|db| {
            (
                db.to_string(),
                workload::table_fingerprints(cluster, db).unwrap(),
            )
        })
        .collect();
    // Every change above is committed; the insert position is at or after
    // its commit record and before anything that follows.
    let lsn: String = cluster
        .query_scalar("SELECT pg_current_wal_insert_lsn()")
        .unwrap();
    Point {
        name,
        lsn: lsn.parse().unwrap(),
        tables,
    }
}

fn schema_dump(cluster: &PgCluster, db: &str) -> String {
    let mut command = cluster.command("pg_dump");
    command.args(["--schema-only", "--no-sync", "-d", db]);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Queries answered through each kind of index (sequential scans off), so
/// index pages that table fingerprints never read are checked too.
fn index_probes(cluster: &PgCluster) -> Vec<String> {
    let has_cov_idx: bool = cluster
        .query_scalar("SELECT to_regclass('cov_idx') IS NOT NULL")
        .unwrap();
    let mut queries = vec![
        "SELECT count(*), sum(aid) FROM pgbench_accounts WHERE aid BETWEEN 1000 AND 90000",
        "SELECT count(*), sum(id) FROM kept_probe WHERE id > 10",
    ];
    if has_cov_idx {
        queries.extend([
            "SELECT count(*), sum(id) FROM cov_idx WHERE id BETWEEN 100 AND 8000",
            "SELECT count(*) FROM cov_idx WHERE t = md5('21') OR t = md5('22') OR t = md5('7001')",
            "SELECT count(*), sum(id) FROM cov_idx WHERE arr @> ARRAY[42]",
            "SELECT count(*) FROM cov_idx WHERE ts @@ to_tsquery('simple', 'word7')",
            "SELECT count(*), sum(id) FROM cov_idx WHERE r && int4range(100, 6000)",
            "SELECT count(*) FROM cov_idx WHERE p <@ box '((0,0),(300,40))'",
            "SELECT count(*) FROM cov_idx WHERE t ~>=~ 'a' AND t ~<~ 'b'",
            "SELECT count(*) FROM cov_idx WHERE id BETWEEN 7000 AND 9000",
        ]);
    }
    queries
        .iter()
        .map(|q| {
            let sql = format!("SET enable_seqscan = off; {q}");
            cluster.psql(&sql).unwrap()
        })
        .collect()
}

/// PostgreSQL's own structure checks on every permanent heap and btree
/// index: no corruption reported, every heap tuple found in its indexes.
fn amcheck(cluster: &PgCluster) {
    cluster
        .psql("CREATE EXTENSION IF NOT EXISTS amcheck")
        .unwrap();
    let corrupt: i64 = cluster
        .query_scalar(
            "SELECT count(*) FROM pg_class c, verify_heapam(c.oid)
              WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence = 'p'",
        )
        .unwrap();
    assert_eq!(corrupt, 0, "verify_heapam reports corruption");
    cluster
        .psql(
            "SELECT bt_index_check(c.oid, true)
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_am a ON a.oid = c.relam
              WHERE a.amname = 'btree' AND c.relpersistence = 'p' AND i.indisvalid",
        )
        .unwrap();
}

/// Every built-in index kind built, grown past page splits, updated,
/// deleted from and vacuumed: `workload::index_kinds` at a quarter of its
/// size (with hash, GIN, GiST and SP-GiST imaged on every change, the full
/// size makes gigabytes of WAL).
fn index_kinds(cluster: &PgCluster) {
    cluster
        .psql(
            "CREATE TABLE cov_idx (id int, t text, arr int[], r int4range, p point, ts tsvector);
             INSERT INTO cov_idx SELECT g, md5(g::text), ARRAY[g % 100, g % 7, g],
                    int4range(g, g + 10), point(g % 1000, g / 1000),
                    to_tsvector('simple', md5(g::text) || ' word' || (g % 50))
               FROM generate_series(1, 5000) g;
             CREATE INDEX cov_idx_btree ON cov_idx USING btree (id);
             CREATE INDEX cov_idx_hash ON cov_idx USING hash (t);
             CREATE INDEX cov_idx_gin ON cov_idx USING gin (arr);
             CREATE INDEX cov_idx_gin_ts ON cov_idx USING gin (ts) WITH (fastupdate = on);
             CREATE INDEX cov_idx_gist ON cov_idx USING gist (r);
             CREATE INDEX cov_idx_gist_p ON cov_idx USING gist (p);
             CREATE INDEX cov_idx_spgist ON cov_idx USING spgist (p);
             CREATE INDEX cov_idx_spgist_t ON cov_idx USING spgist (t);
             CREATE INDEX cov_idx_brin ON cov_idx USING brin (id) WITH (pages_per_range = 4);
             INSERT INTO cov_idx SELECT g, md5(g::text), ARRAY[g % 100, g], int4range(g, g + 3),
                    point(g % 500, g / 500), to_tsvector('simple', 'later ' || g)
               FROM generate_series(5001, 10000) g;
             UPDATE cov_idx SET t = md5(t), arr = arr || 0 WHERE id % 5 = 0;
             DELETE FROM cov_idx WHERE id % 3 = 0;
             DELETE FROM cov_idx WHERE id BETWEEN 500 AND 3000;
             VACUUM cov_idx;
             SELECT brin_summarize_new_values('cov_idx_brin');
             SELECT gin_clean_pending_list('cov_idx_gin_ts');",
        )
        .unwrap();
}

fn settings<'a>(wcc: &'a str, full_page_writes: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![
        ("wal_level", "replica"),
        ("wal_consistency_checking", wcc),
        ("full_page_writes", full_page_writes),
        ("max_prepared_transactions", "10"),
        ("max_wal_size", "4GB"),
        ("checkpoint_timeout", "1h"),
        ("wal_keep_size", "1TB"),
    ];
    if wcc.is_empty() {
        settings.retain(|(name, _)| *name != "wal_consistency_checking");
    }
    settings
}

/// Extra objects the shared workload drops again: databases made by both
/// strategies that survive, and a prepared transaction left open.
fn lasting_objects(cluster: &PgCluster) {
    cluster
        .psql(
            "CREATE DATABASE keep_wal_log STRATEGY = wal_log;
             CREATE DATABASE keep_file_copy STRATEGY = file_copy;",
        )
        .unwrap();
    for db in ["keep_wal_log", "keep_file_copy"] {
        cluster
            .psql_db(
                db,
                "CREATE TABLE kept (id int PRIMARY KEY, v text);
                 INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
                 DELETE FROM kept WHERE id % 10 = 0;",
            )
            .unwrap();
    }
}

fn leave_prepared(cluster: &PgCluster) {
    cluster
        .psql(
            "CREATE TABLE kept_probe AS SELECT g AS id FROM generate_series(1, 5000) g;
             CREATE INDEX ON kept_probe (id);
             CREATE TABLE left_open (x int);
             INSERT INTO left_open VALUES (1);
             BEGIN; INSERT INTO left_open VALUES (2); PREPARE TRANSACTION 'left_open';",
        )
        .unwrap();
}

/// The cases run one after the other: each runs several servers, and the
/// machine is small.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the source, ingests its WAL, checks every point.
fn replay_case(wcc: &str, full_page_writes: &str, full: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let began = std::time::Instant::now();
    let store = common::bootstrap();
    let timeline = &store.timeline;
    let settings = settings(wcc, full_page_writes);
    let mut source = common::cluster_at(timeline, store.initdb_lsn, &settings);
    source.start().unwrap();

    let mut points = Vec::new();
    let scale = if full { 2 } else { 1 };
    workload::pgbench_init(&source, scale).unwrap();
    workload::pgbench_run(&source, if full { 5 } else { 2 }, 4).unwrap();
    points.push(snapshot(&source, "after pgbench", &["postgres"]));

    if full {
        index_kinds(&source);
        workload::copy_in(&source).unwrap();
        workload::vacuums(&source).unwrap();
    } else {
        // `vacuums` needs the tables of the two steps above.
        source
            .psql(
                "CREATE TABLE small_idx AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 3000) g;
                 CREATE INDEX ON small_idx USING gist (int4range(id, id + 1));
                 CREATE INDEX ON small_idx (t);
                 DELETE FROM small_idx WHERE id % 4 = 0;
                 VACUUM small_idx;
                 VACUUM FULL pg_class;
                 VACUUM FULL pgbench_branches;",
            )
            .unwrap();
    }
    workload::databases(&source).unwrap();
    workload::truncates(&source).unwrap();
    workload::sequences(&source).unwrap();
    if full {
        // Covered once is enough; with every page imaged these are slow.
        workload::tablespaces(&source).unwrap();
        workload::toast(&source).unwrap();
    }
    lasting_objects(&source);
    let all_dbs = ["postgres", "keep_wal_log", "keep_file_copy"];
    points.push(snapshot(&source, "after DDL", &all_dbs));

    workload::two_phase(&source).unwrap();
    workload::many_subtransactions(&source).unwrap();
    workload::unlogged_tables(&source).unwrap();
    workload::multixacts(&source).unwrap();
    if full {
        workload::misc_resource_managers(&source).unwrap();
    }
    leave_prepared(&source);
    let last_xid: u64 = source.query_scalar("SELECT txid_current()").unwrap();
    let max_oid: u32 = source
        .query_scalar("SELECT max(oid)::int8 FROM pg_class")
        .unwrap();
    points.push(snapshot(&source, "end", &all_dbs));
    let source_schema = schema_dump(&source, "postgres");
    let source_probes = index_probes(&source);
    if full {
        source.stop().unwrap();
    } else {
        // The light case ends in a crash: the WAL stops wherever the kill
        // left it, with no shutdown checkpoint; every commit is in it.
        source.stop_immediate().unwrap();
    }

    eprintln!("{wcc:?}: workload done in {:?}", began.elapsed());
    let mut ingest = WalIngest::new(timeline).unwrap();
    // With after-images on every block, native redo is checked against them
    // as they are ingested (on a sample of records: each check reads a page).
    let check_every = (wcc == "all").then_some(7);
    let ingested = common::ingest_wal_dir(timeline, &mut ingest, &source.wal_dir(), check_every);
    let stats = ingest.stats();
    eprintln!(
        "{wcc:?}: ingested {} records ({} MB): {stats:?}",
        ingested.records,
        ingested.bytes / 1_000_000
    );
    assert!(stats.native_records_stored > 0 || wcc == "all");
    if wcc == "all" {
        assert!(stats.native_checks > 5_000, "{stats:?}");
        assert_eq!(
            stats.image_mismatches, 0,
            "native redo disagrees with PostgreSQL"
        );
    }
    assert!(stats.images_stored > 0);

    eprintln!("{wcc:?}: ingested after {:?}", began.elapsed());
    for point in &points {
        let lsn = common::record_end_at_or_before(&ingested.record_ends, point.lsn);
        let mut restored = common::cluster_at(timeline, lsn, &settings);
        restored.start().unwrap_or_else(|e| {
            panic!(
                "{}: start at {lsn}: {e}\n{}",
                point.name,
                restored.log_tail(40)
            )
        });
        for (db, expected) in &point.tables {
            let actual = workload::table_fingerprints(&restored, db).unwrap();
            assert_eq!(&actual, expected, "{} ({lsn}): tables of {db}", point.name);
        }
        if point.name == "end" {
            check_end_state(&restored, &source_schema, last_xid, max_oid);
            assert_eq!(index_probes(&restored), source_probes, "index scans");
            amcheck(&restored);
        }
        restored.stop().unwrap();
    }
}

/// At the end: same schema, the prepared transaction is still there and
/// commits, and new ids are above every id the source used.
fn check_end_state(restored: &PgCluster, source_schema: &str, last_xid: u64, max_oid: u32) {
    assert_eq!(schema_dump(restored, "postgres"), source_schema);
    let prepared = restored.psql("SELECT gid FROM pg_prepared_xacts").unwrap();
    assert_eq!(prepared.trim(), "left_open");
    restored.psql("COMMIT PREPARED 'left_open'").unwrap();
    let rows: i64 = restored
        .query_scalar("SELECT count(*) FROM left_open")
        .unwrap();
    assert_eq!(rows, 2);
    let new_xid: u64 = restored.query_scalar("SELECT txid_current()").unwrap();
    assert!(new_xid > last_xid, "new xid {new_xid} <= used {last_xid}");
    restored.psql("CREATE TABLE after_restore (x int)").unwrap();
    let new_oid: u32 = restored
        .query_scalar("SELECT oid::int8 FROM pg_class WHERE relname = 'after_restore'")
        .unwrap();
    assert!(new_oid > max_oid, "new oid {new_oid} <= used {max_oid}");
    // Each kept database answers with its data.
    for db in ["keep_wal_log", "keep_file_copy"] {
        let count: i64 = restored
            .query_scalar_db(db, "SELECT count(*) FROM kept")
            .unwrap();
        assert_eq!(count, 2700, "{db}");
    }
}

#[test]
fn replay_with_native_redo_matches_postgres() {
    replay_case(&redo::wal_consistency_checking_value(), "off", true);
}

#[test]
fn replay_with_all_after_images_matches_postgres() {
    replay_case("all", "on", false);
}
