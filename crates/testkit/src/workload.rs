//! Reusable WAL-rich workloads for the decoder, redo and pageserver tests.
//!
//! [`full_coverage`] aims to make PostgreSQL 15 write (nearly) every kind of
//! WAL record a real installation produces: pgbench traffic, every built-in
//! index access method (build, insert, split, vacuum), COPY in its three
//! forms, VACUUM / VACUUM FULL / CLUSTER, both CREATE DATABASE strategies,
//! tablespaces, TRUNCATE, sequences, TOAST, two-phase commit, more than 64
//! subtransactions, unlogged tables, multixacts, logical messages,
//! replication origins, relation-map updates and generic WAL (bloom).
//!
//! Each step is its own function so a test can run just the part it needs.
//! Start the cluster with [`REQUIRED_SETTINGS`].

use crate::cluster::PgCluster;
use crate::error::Result;

/// Settings [`full_coverage`] needs: prepared transactions for the 2PC step
/// and commit timestamps so the `CommitTs` resource manager writes records.
pub const REQUIRED_SETTINGS: &[(&str, &str)] = &[
    ("max_prepared_transactions", "10"),
    ("track_commit_timestamp", "on"),
];

/// pgbench scale used by [`full_coverage`] (5 = 500,000 accounts).
pub const PGBENCH_SCALE: u32 = 5;

/// Runs every step below in order, then a CHECKPOINT. `pgbench_secs` is the
/// duration of the concurrent pgbench phase (0 skips it).
pub fn full_coverage(cluster: &PgCluster, pgbench_secs: u32) -> Result<()> {
    pgbench_init(cluster, PGBENCH_SCALE)?;
    pgbench_run(cluster, pgbench_secs, 4)?;
    index_kinds(cluster)?;
    copy_in(cluster)?;
    vacuums(cluster)?;
    databases(cluster)?;
    tablespaces(cluster)?;
    truncates(cluster)?;
    sequences(cluster)?;
    toast(cluster)?;
    two_phase(cluster)?;
    many_subtransactions(cluster)?;
    unlogged_tables(cluster)?;
    multixacts(cluster)?;
    misc_resource_managers(cluster)?;
    cluster.checkpoint()
}

/// `pgbench -i -s SCALE` (quiet).
pub fn pgbench_init(cluster: &PgCluster, scale: u32) -> Result<()> {
    cluster
        .pgbench(&["-i", "-q", "-s", &scale.to_string()])
        .map(drop)
}

/// `pgbench -c CLIENTS -j 2 -T SECS`; returns tps (0 when `secs` is 0).
pub fn pgbench_run(cluster: &PgCluster, secs: u32, clients: u32) -> Result<f64> {
    if secs == 0 {
        return Ok(0.0);
    }
    let clients = clients.to_string();
    let secs = secs.to_string();
    cluster.pgbench_tps(&["-c", &clients, "-j", "2", "-T", &secs])
}

/// Builds one index of every built-in access method (btree, hash, gin, gist,
/// spgist, brin), then inserts, updates, deletes and vacuums through them so
/// their insert/split/vacuum records appear too, not just the build.
pub fn index_kinds(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE TABLE cov_idx (id int, t text, arr int[], r int4range, p point, ts tsvector);
         INSERT INTO cov_idx SELECT g, md5(g::text), ARRAY[g % 100, g % 7, g],
                int4range(g, g + 10), point(g % 1000, g / 1000),
                to_tsvector('simple', md5(g::text) || ' word' || (g % 50))
           FROM generate_series(1, 20000) g;
         CREATE INDEX cov_idx_btree ON cov_idx USING btree (id);
         CREATE INDEX cov_idx_hash ON cov_idx USING hash (t);
         CREATE INDEX cov_idx_gin ON cov_idx USING gin (arr);
         CREATE INDEX cov_idx_gin_ts ON cov_idx USING gin (ts) WITH (fastupdate = on);
         CREATE INDEX cov_idx_gist ON cov_idx USING gist (r);
         CREATE INDEX cov_idx_gist_p ON cov_idx USING gist (p);
         CREATE INDEX cov_idx_spgist ON cov_idx USING spgist (p);
         CREATE INDEX cov_idx_spgist_t ON cov_idx USING spgist (t);
         CREATE INDEX cov_idx_brin ON cov_idx USING brin (id) WITH (pages_per_range = 4);
         CREATE INDEX CONCURRENTLY cov_idx_conc ON cov_idx (t, id);
         INSERT INTO cov_idx SELECT g, md5(g::text), ARRAY[g % 100, g], int4range(g, g + 3),
                point(g % 500, g / 500), to_tsvector('simple', 'later ' || g)
           FROM generate_series(20001, 40000) g;
         UPDATE cov_idx SET t = md5(t), arr = arr || 0 WHERE id % 5 = 0;
         DELETE FROM cov_idx WHERE id % 3 = 0;
         -- A dense range empties whole index pages: page deletion records.
         DELETE FROM cov_idx WHERE id BETWEEN 2000 AND 12000;
         VACUUM cov_idx;
         SELECT brin_summarize_new_values('cov_idx_brin');
         SELECT gin_clean_pending_list('cov_idx_gin_ts');
         REINDEX INDEX cov_idx_hash;",
    )?;
    Ok(())
}

/// COPY FROM STDIN (client data), FROM PROGRAM, FROM a server file, and
/// COPY FREEZE into a table created in the same transaction.
pub fn copy_in(cluster: &PgCluster) -> Result<()> {
    let mut script =
        String::from("CREATE TABLE cov_copy (id int, payload text);\nCOPY cov_copy FROM STDIN;\n");
    for id in 1..=5000 {
        script.push_str(&format!("{id}\tpayload number {id}\n"));
    }
    script.push_str("\\.\n");
    cluster.psql(&script)?;
    let file = cluster.make_dir("copy")?.join("rows.tsv");
    let file = file.display().to_string().replace('\'', "''");
    cluster.psql(&format!(
        "COPY cov_copy (id) FROM PROGRAM 'seq 5001 10000';
         COPY (SELECT g, 'from file ' || g FROM generate_series(10001, 15000) g) TO '{file}';
         COPY cov_copy FROM '{file}';
         BEGIN;
         CREATE TABLE cov_copy_frozen (id int);
         COPY cov_copy_frozen FROM PROGRAM 'seq 1 5000' WITH (FREEZE);
         COMMIT;"
    ))?;
    Ok(())
}

/// Plain, FREEZE and FULL vacuums, CLUSTER, ANALYZE, and a VACUUM FULL of a
/// mapped catalog (a relation-map update).
pub fn vacuums(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "VACUUM pgbench_accounts;
         VACUUM (FREEZE, VERBOSE false) pgbench_tellers;
         VACUUM FULL pgbench_branches;
         VACUUM FULL cov_copy;
         CLUSTER cov_idx USING cov_idx_btree;
         VACUUM FULL pg_class;
         ANALYZE;",
    )?;
    Ok(())
}

/// CREATE DATABASE with both PG15 strategies, some work inside each, DROP.
pub fn databases(cluster: &PgCluster) -> Result<()> {
    for strategy in ["wal_log", "file_copy"] {
        let name = format!("cov_db_{strategy}");
        cluster.psql(&format!("CREATE DATABASE {name} STRATEGY = {strategy}"))?;
        cluster.psql_db(
            &name,
            "CREATE TABLE inside (x int PRIMARY KEY, y text);
             INSERT INTO inside SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
        )?;
        cluster.psql(&format!("DROP DATABASE {name}"))?;
    }
    Ok(())
}

/// CREATE/DROP TABLESPACE, a table and a database in it.
pub fn tablespaces(cluster: &PgCluster) -> Result<()> {
    let location = cluster.make_dir("tblspc")?.display().to_string();
    cluster.psql(&format!(
        "CREATE TABLESPACE cov_ts LOCATION '{}';
         CREATE TABLE cov_ts_table (x int) TABLESPACE cov_ts;
         INSERT INTO cov_ts_table SELECT generate_series(1, 1000);
         CREATE DATABASE cov_ts_db TABLESPACE cov_ts STRATEGY = file_copy;
         ALTER TABLE cov_ts_table SET TABLESPACE pg_default;
         DROP DATABASE cov_ts_db;
         DROP TABLE cov_ts_table;
         DROP TABLESPACE cov_ts;",
        location.replace('\'', "''")
    ))?;
    Ok(())
}

/// TRUNCATE (new relfilenode), TRUNCATE in the creating transaction, and a
/// VACUUM that truncates trailing empty pages (an smgr truncate record).
pub fn truncates(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE TABLE cov_trunc AS SELECT g AS x FROM generate_series(1, 10000) g;
         TRUNCATE cov_trunc;
         INSERT INTO cov_trunc SELECT generate_series(1, 100);
         BEGIN;
         CREATE TABLE cov_trunc_same (x int);
         INSERT INTO cov_trunc_same SELECT generate_series(1, 1000);
         TRUNCATE cov_trunc_same;
         COMMIT;
         CREATE TABLE cov_shrink AS SELECT g AS x FROM generate_series(1, 20000) g;
         DELETE FROM cov_shrink WHERE x > 100;
         VACUUM cov_shrink;",
    )?;
    Ok(())
}

/// Sequences: nextval (one record per 32 values), setval, RESTART, serial
/// columns, and a PG15 unlogged sequence.
pub fn sequences(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE SEQUENCE cov_seq;
         SELECT count(nextval('cov_seq')) FROM generate_series(1, 200);
         SELECT setval('cov_seq', 1000000);
         ALTER SEQUENCE cov_seq RESTART WITH 7 INCREMENT BY 3;
         SELECT nextval('cov_seq');
         CREATE TABLE cov_serial (id bigserial PRIMARY KEY, v text);
         INSERT INTO cov_serial (v) SELECT md5(g::text) FROM generate_series(1, 500) g;
         CREATE UNLOGGED SEQUENCE cov_seq_unlogged;
         SELECT nextval('cov_seq_unlogged');
         DROP SEQUENCE cov_seq;",
    )?;
    Ok(())
}

/// TOAST: ~100 kB random (incompressible, EXTERNAL storage) values, highly
/// compressible ones, then updates and deletes of both.
pub fn toast(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE TABLE cov_toast (id int PRIMARY KEY, raw text, squeezed text);
         ALTER TABLE cov_toast ALTER COLUMN raw SET STORAGE EXTERNAL;
         INSERT INTO cov_toast
           SELECT g,
                  (SELECT string_agg(md5(random()::text || g || i), '')
                     FROM generate_series(1, 3200) i),
                  repeat('compressible ' || g, 20000)
             FROM generate_series(1, 20) g;
         UPDATE cov_toast SET raw = raw || 'x' WHERE id % 2 = 0;
         UPDATE cov_toast SET squeezed = 'short' WHERE id % 3 = 0;
         DELETE FROM cov_toast WHERE id % 5 = 0;
         VACUUM cov_toast;",
    )?;
    Ok(())
}

/// Two-phase commit: one prepared transaction committed, one rolled back,
/// and one that lives across a checkpoint (its state file is written).
pub fn two_phase(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE TABLE cov_2pc (x int);
         BEGIN; INSERT INTO cov_2pc VALUES (1); PREPARE TRANSACTION 'cov_commit';
         COMMIT PREPARED 'cov_commit';
         BEGIN; INSERT INTO cov_2pc VALUES (2); PREPARE TRANSACTION 'cov_abort';
         ROLLBACK PREPARED 'cov_abort';
         BEGIN; INSERT INTO cov_2pc VALUES (3); PREPARE TRANSACTION 'cov_across';
         CHECKPOINT;
         COMMIT PREPARED 'cov_across';",
    )?;
    Ok(())
}

/// More than 64 subtransactions with xids in one transaction (forcing
/// `XLOG_XACT_ASSIGNMENT`): plpgsql exception blocks, some rolled back, and
/// 70 nested SAVEPOINTs, committed once and aborted once.
pub fn many_subtransactions(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE TABLE cov_subxact (x int);
         DO $$
         BEGIN
           FOR i IN 1..100 LOOP
             BEGIN
               INSERT INTO cov_subxact VALUES (i);
               IF i % 10 = 0 THEN RAISE EXCEPTION 'roll back subtransaction %', i; END IF;
             EXCEPTION WHEN raise_exception THEN NULL;
             END;
           END LOOP;
         END $$;",
    )?;
    for finish in ["COMMIT", "ROLLBACK"] {
        let mut script = String::from("BEGIN;\n");
        for level in 1..=70 {
            script.push_str(&format!(
                "SAVEPOINT s{level}; INSERT INTO cov_subxact VALUES ({level});\n"
            ));
        }
        script.push_str("ROLLBACK TO SAVEPOINT s60;\n");
        script.push_str(finish);
        script.push_str(";\n");
        cluster.psql(&script)?;
    }
    Ok(())
}

/// Unlogged tables (only their init forks are WAL-logged), their indexes,
/// and SET LOGGED, which WAL-logs the whole table.
pub fn unlogged_tables(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE UNLOGGED TABLE cov_unlogged (id int PRIMARY KEY, v text);
         INSERT INTO cov_unlogged SELECT g, md5(g::text) FROM generate_series(1, 10000) g;
         CREATE INDEX cov_unlogged_hash ON cov_unlogged USING hash (v);
         CREATE INDEX cov_unlogged_gist ON cov_unlogged USING gist (int4range(id, id + 1));
         UPDATE cov_unlogged SET v = 'changed' WHERE id % 7 = 0;
         CREATE UNLOGGED TABLE cov_unlogged_later (x int);
         INSERT INTO cov_unlogged_later SELECT generate_series(1, 1000);
         ALTER TABLE cov_unlogged_later SET LOGGED;",
    )?;
    Ok(())
}

/// A multixact: a row share-locked by a transaction and then updated by
/// its subtransaction has two lockers.
pub fn multixacts(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "CREATE TABLE cov_locks (id int PRIMARY KEY, v int);
         INSERT INTO cov_locks SELECT g, 0 FROM generate_series(1, 10) g;
         BEGIN;
         SELECT count(*) FROM (SELECT * FROM cov_locks WHERE id <= 5 FOR SHARE) s;
         SAVEPOINT a;
         UPDATE cov_locks SET v = v + 1 WHERE id <= 5;
         RELEASE SAVEPOINT a;
         COMMIT;
         BEGIN;
         SELECT count(*) FROM (SELECT * FROM cov_locks FOR KEY SHARE) s;
         SAVEPOINT b;
         SELECT count(*) FROM (SELECT * FROM cov_locks FOR NO KEY UPDATE) s;
         COMMIT;",
    )?;
    Ok(())
}

/// Records the steps above do not reach: logical messages, replication
/// origins, a restore point, backup start/stop, speculative insertion
/// (`ON CONFLICT`), generic WAL (bloom, when installed), DDL churn.
pub fn misc_resource_managers(cluster: &PgCluster) -> Result<()> {
    cluster.psql(
        "SELECT pg_logical_emit_message(true, 'sediment', 'transactional');
         SELECT pg_logical_emit_message(false, 'sediment', 'not transactional');
         SELECT pg_replication_origin_create('cov_origin');
         SELECT pg_replication_origin_advance('cov_origin', '0/1000');
         SELECT pg_replication_origin_drop('cov_origin');
         SELECT pg_create_restore_point('cov_restore_point');
         SELECT pg_backup_start('cov_backup', true);
         SELECT lsn FROM pg_backup_stop(false);
         CREATE TABLE cov_upsert (k int PRIMARY KEY, n int);
         INSERT INTO cov_upsert SELECT g, 0 FROM generate_series(1, 100) g;
         INSERT INTO cov_upsert SELECT g, 1 FROM generate_series(50, 150) g
           ON CONFLICT (k) DO UPDATE SET n = cov_upsert.n + excluded.n;
         INSERT INTO cov_upsert VALUES (1000, 0) ON CONFLICT DO NOTHING;
         CREATE TABLE cov_ddl (a int);
         ALTER TABLE cov_ddl ADD COLUMN b text DEFAULT 'x';
         ALTER TABLE cov_ddl ALTER COLUMN a TYPE bigint;
         DROP TABLE cov_ddl;",
    )?;
    let has_bloom: bool = cluster
        .query_scalar("SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'bloom'")?;
    if has_bloom {
        cluster.psql(
            "CREATE EXTENSION IF NOT EXISTS bloom;
             CREATE TABLE cov_bloom (a int, b int);
             INSERT INTO cov_bloom SELECT g, g % 13 FROM generate_series(1, 5000) g;
             CREATE INDEX cov_bloom_idx ON cov_bloom USING bloom (a, b);
             INSERT INTO cov_bloom SELECT g, g % 11 FROM generate_series(5001, 8000) g;
             DELETE FROM cov_bloom WHERE a % 4 = 0;
             VACUUM cov_bloom;",
        )?;
    }
    Ok(())
}

/// A content hash of every permanent user table in `dbname`: table name
/// (`schema.table`) → md5 of its rows as text, sorted. Two clusters (say, the
/// original and an endpoint started from a pageserver at the same LSN) hold
/// the same data exactly when their fingerprints are equal. Unlogged and
/// temporary tables are left out: they are legitimately empty after a crash
/// or in a base backup.
pub fn table_fingerprints(
    cluster: &PgCluster,
    dbname: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let tables = cluster.psql_db(
        dbname,
        "SELECT format('%I.%I', n.nspname, c.relname)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p'
            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%'
          ORDER BY 1",
    )?;
    let mut fingerprints = std::collections::BTreeMap::new();
    for table in tables.lines().filter(|l| !l.is_empty()) {
        let hash: String = cluster.query_scalar_db(
            dbname,
            &format!(
                "SELECT md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) FROM {table} r"
            ),
        )?;
        fingerprints.insert(table.to_owned(), hash);
    }
    Ok(fingerprints)
}
