//! initdb → import → base backup tar → stock postgres starts without redo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{postgres_dir, scratch, untar, Postgres};
use datadir::{import_datadir, run_initdb, Basebackup};
use postgres_wal::Lsn;
use storage::{Repository, RepositoryConfig, TimelineId};

#[test]
fn imported_initdb_cluster_starts_from_its_base_backup_without_redo() {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();

    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let stats = import_datadir(&timeline, &orig).unwrap();
    assert!(stats.relation_pages > 100, "{stats:?}");
    assert_eq!(stats.databases, 3);
    // initdb's own cluster has no passwordless TCP either.
    let mut methods = hba_methods(&orig);
    methods.sort();
    assert_eq!(
        methods,
        [
            "peer",
            "peer",
            "scram-sha-256",
            "scram-sha-256",
            "scram-sha-256",
            "scram-sha-256"
        ]
    );

    let backup = Basebackup::prepare(&timeline, Some(stats.lsn)).unwrap();
    assert!(backup.checkpoint_lsn() >= stats.lsn);
    let mut tar_bytes = Vec::new();
    backup.write_tar(&mut tar_bytes).unwrap();

    let sockets = postgres_dir(&root.path().join("sock-orig"));
    let original = Postgres::start(&orig, &sockets, 5432);
    let original_dump = original.dump("postgres");
    let original_digest = original.catalog_digest("template1");
    original.stop();

    let restored_dir = root.path().join("restored");
    untar(&tar_bytes, &restored_dir);
    let sockets = postgres_dir(&root.path().join("sock-restored"));
    // No trust: peer on the socket (how this test gets in), passwords over
    // TCP.
    let methods = hba_methods(&restored_dir);
    assert!(methods.contains(&"peer".to_owned()), "{methods:?}");
    assert!(
        methods.iter().all(|m| m == "peer" || m == "scram-sha-256"),
        "{methods:?}"
    );
    let restored = Postgres::start(&restored_dir, &sockets, 5432);
    let log = restored.log_text();
    assert!(!log.contains("redo starts"), "WAL replayed:\n{log}");
    assert!(
        !log.contains("database system was not properly shut down"),
        "{log}"
    );
    assert_eq!(restored.databases(), ["postgres", "template0", "template1"]);
    assert_eq!(restored.dump("postgres"), original_dump);
    assert_eq!(restored.catalog_digest("template1"), original_digest);
    // The started cluster is writable: new WAL goes after our checkpoint.
    restored.psql(
        "postgres",
        "CREATE TABLE t AS SELECT generate_series(1, 1000) AS i",
    );
    assert_eq!(
        restored.psql("postgres", "SELECT count(*) FROM t").trim(),
        "1000"
    );
}

/// The authentication method of every rule in `pgdata/pg_hba.conf`.
fn hba_methods(pgdata: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap();
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            // local: type db user method; host: type db user address method.
            let at = if words[0] == "local" { 3 } else { 4 };
            words[at].to_owned()
        })
        .collect()
}

/// Files of a tar archive by path.
fn tar_files(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(bytes).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(path, data);
    }
    out
}

#[test]
fn base_backup_is_identical_after_reopening_the_store() {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let repo_dir = root.path().join("repo");
    let id = TimelineId::generate();
    let (lsn, before) = {
        let repo = Repository::open(&repo_dir, RepositoryConfig::default()).unwrap();
        let timeline = repo.create_timeline(id, 15, Lsn::INVALID).unwrap();
        let lsn = import_datadir(&timeline, &orig).unwrap().lsn;
        let mut tar_bytes = Vec::new();
        Basebackup::prepare(&timeline, Some(lsn))
            .unwrap()
            .write_tar(&mut tar_bytes)
            .unwrap();
        repo.shutdown();
        (lsn, tar_files(&tar_bytes))
    };
    let repo = Repository::open(&repo_dir, RepositoryConfig::default()).unwrap();
    let timeline = repo.timeline(id).unwrap();
    let mut tar_bytes = Vec::new();
    Basebackup::prepare(&timeline, Some(lsn))
        .unwrap()
        .write_tar(&mut tar_bytes)
        .unwrap();
    let after = tar_files(&tar_bytes);

    // Everything but the two files stamped with the backup time is equal.
    let stable = |files: &std::collections::BTreeMap<String, Vec<u8>>| {
        files
            .iter()
            .filter(|(path, _)| {
                path.as_str() != "global/pg_control" && !path.starts_with("pg_wal/")
            })
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(stable(&before), stable(&after));
    // And every relation file equals the one initdb wrote.
    let original = common::relation_files(&orig);
    for (path, data) in &original {
        let name = path.rsplit('/').next().unwrap();
        if name == "pg_control" || name == "pg_internal.init" {
            continue;
        }
        assert_eq!(after.get(path), Some(data), "{path} differs from initdb's");
    }
}

#[test]
fn pg_control_round_trips_and_backup_control_reads_as_shut_down() {
    use postgres_wal::control::{ControlFile, DbState, CATALOG_VERSION_NO};

    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let bytes = std::fs::read(orig.join("global/pg_control")).unwrap();
    let control = ControlFile::parse(&bytes).unwrap();
    assert_eq!(control.serialize(), bytes, "serialize(parse(x)) != x");
    assert_eq!(control.catalog_version_no, CATALOG_VERSION_NO);
    assert_eq!(control.state, DbState::Shutdowned);
    assert_eq!(control.xlog_seg_size, 16 * 1024 * 1024);
    let original_data = controldata(&orig);
    assert!(original_data.contains(&format!(
        "Database system identifier:           {}",
        control.system_identifier
    )));
    assert!(original_data.contains(&format!(
        "Latest checkpoint location:           {}",
        Lsn(control.checkpoint)
    )));

    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let lsn = import_datadir(&timeline, &orig).unwrap().lsn;
    let backup = Basebackup::prepare(&timeline, Some(lsn)).unwrap();
    let mut tar_bytes = Vec::new();
    backup.write_tar(&mut tar_bytes).unwrap();
    let restored = root.path().join("restored");
    untar(&tar_bytes, &restored);
    let restored_data = controldata(&restored);
    assert!(restored_data.contains("Database cluster state:               shut down"));
    assert!(restored_data.contains(&format!(
        "Latest checkpoint location:           {}",
        backup.checkpoint_lsn()
    )));
    assert!(restored_data.contains(&format!(
        "Latest checkpoint's REDO location:    {}",
        backup.checkpoint_lsn()
    )));

    // Reading before the import or beyond the last record is a clear error.
    let err = Basebackup::prepare(&timeline, Some(Lsn(lsn.0 + 0x1000))).unwrap_err();
    assert!(err.to_string().contains("not readable"), "{err}");
}

fn controldata(pgdata: &std::path::Path) -> String {
    let mut command = datadir::bootstrap::postgres_command(&common::bin("pg_controldata")).unwrap();
    command.arg("-D").arg(pgdata);
    common::run(command)
}

#[test]
fn user_data_survives_and_unlogged_tables_start_empty() {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let sockets = postgres_dir(&root.path().join("sock-orig"));
    let original = Postgres::start(&orig, &sockets, 5432);
    original.psql("postgres", "CREATE DATABASE app");
    original.psql(
        "app",
        "CREATE TABLE kept AS SELECT i, md5(i::text) AS t FROM generate_series(1, 20000) i; \
         CREATE INDEX ON kept (t); \
         CREATE UNLOGGED TABLE scratch AS SELECT i FROM generate_series(1, 5000) i; \
         CREATE INDEX ON scratch (i)",
    );
    original.psql("app", "VACUUM ANALYZE");
    let expected = original.psql("app", "SELECT sum(i), count(DISTINCT t) FROM kept");
    original.stop();
    drop(original);

    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let stats = import_datadir(&timeline, &orig).unwrap();
    assert_eq!(stats.databases, 4);
    let backup = Basebackup::prepare(&timeline, None).unwrap();
    let mut tar_bytes = Vec::new();
    backup.write_tar(&mut tar_bytes).unwrap();
    let files = tar_files(&tar_bytes);
    assert!(files.keys().any(|p| p.ends_with("_init")), "no init forks");

    let restored_dir = root.path().join("restored");
    untar(&tar_bytes, &restored_dir);
    let sockets = postgres_dir(&root.path().join("sock-restored"));
    let restored = Postgres::start(&restored_dir, &sockets, 5432);
    assert!(!restored.log_text().contains("redo starts"));
    assert_eq!(
        restored.psql("app", "SELECT sum(i), count(DISTINCT t) FROM kept"),
        expected
    );
    let check = "SET enable_seqscan = off; SELECT count(*) FROM kept WHERE t = md5('77')";
    assert_eq!(restored.psql("app", check).trim().lines().last(), Some("1"));
    assert_eq!(
        restored.psql("app", "SELECT count(*) FROM scratch").trim(),
        "0"
    );
    restored.psql(
        "app",
        "INSERT INTO scratch VALUES (1); INSERT INTO kept VALUES (0, 'x')",
    );
    assert_eq!(
        restored.psql("app", "SELECT count(*) FROM scratch").trim(),
        "1"
    );
}

#[test]
fn prepared_transactions_survive_the_round_trip() {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let sockets = postgres_dir(&root.path().join("sock-orig"));
    let settings = "-c max_prepared_transactions=4";
    let original = Postgres::start_with(&orig, &sockets, 5432, settings);
    original.psql("postgres", "CREATE TABLE t (i int)");
    original.psql(
        "postgres",
        "BEGIN; INSERT INTO t VALUES (42); PREPARE TRANSACTION 'held'",
    );
    original.stop();
    drop(original);
    assert!(std::fs::read_dir(orig.join("pg_twophase")).unwrap().count() > 0);

    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    import_datadir(&timeline, &orig).unwrap();
    let mut tar_bytes = Vec::new();
    Basebackup::prepare(&timeline, None)
        .unwrap()
        .write_tar(&mut tar_bytes)
        .unwrap();
    let restored_dir = root.path().join("restored");
    untar(&tar_bytes, &restored_dir);
    let sockets = postgres_dir(&root.path().join("sock-restored"));
    let restored = Postgres::start_with(&restored_dir, &sockets, 5432, settings);
    assert!(!restored.log_text().contains("redo starts"));
    assert_eq!(
        restored
            .psql("postgres", "SELECT gid FROM pg_prepared_xacts")
            .trim(),
        "held"
    );
    assert_eq!(
        restored.psql("postgres", "SELECT count(*) FROM t").trim(),
        "0"
    );
    restored.psql("postgres", "COMMIT PREPARED 'held'");
    assert_eq!(
        restored.psql("postgres", "SELECT sum(i) FROM t").trim(),
        "42"
    );
}

/// Backs up `timeline` at `lsn`, starts it and returns the running server.
fn start_backup(
    root: &std::path::Path,
    timeline: &storage::Timeline,
    lsn: Lsn,
    name: &str,
) -> Postgres {
    let mut tar_bytes = Vec::new();
    Basebackup::prepare(timeline, Some(lsn))
        .unwrap()
        .write_tar(&mut tar_bytes)
        .unwrap();
    let dir = root.join(name);
    untar(&tar_bytes, &dir);
    let sockets = postgres_dir(&root.join(format!("sock-{name}")));
    let pg = Postgres::start(&dir, &sockets, 5432);
    assert!(!pg.log_text().contains("redo starts"), "{}", pg.log_text());
    pg
}

#[test]
fn every_stored_lsn_serves_its_own_version_of_the_cluster() {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let first = import_datadir(&timeline, &orig).unwrap().lsn;

    // Work on a cluster started from the backup, shut it down cleanly and
    // store its files as the next version: its WAL continued after our
    // synthesised checkpoint, so the new checkpoint LSN is higher.
    let worked = start_backup(root.path(), &timeline, first, "worked");
    worked.psql(
        "postgres",
        "CREATE TABLE later AS SELECT generate_series(1, 3000) AS i",
    );
    worked.stop();
    let second = import_datadir(&timeline, &worked.pgdata).unwrap().lsn;
    drop(worked);
    assert!(second > first, "{second} <= {first}");

    let old = start_backup(root.path(), &timeline, first, "at-first");
    let missing = "SELECT count(*) FROM pg_class WHERE relname = 'later'";
    assert_eq!(old.psql("postgres", missing).trim(), "0");
    let new = start_backup(root.path(), &timeline, second, "at-second");
    assert_eq!(
        new.psql("postgres", "SELECT sum(i) FROM later").trim(),
        "4501500"
    );
}

#[test]
fn tablespaces_come_back_as_directories_under_pg_tblspc() {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    let location = postgres_dir(&root.path().join("spc"));
    run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let sockets = postgres_dir(&root.path().join("sock-orig"));
    let original = Postgres::start(&orig, &sockets, 5432);
    original.psql(
        "postgres",
        &format!("CREATE TABLESPACE extra LOCATION '{}'", location.display()),
    );
    original.psql(
        "postgres",
        "CREATE TABLE far TABLESPACE extra AS SELECT generate_series(1, 500) AS i",
    );
    original.stop();
    drop(original);

    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    import_datadir(&timeline, &orig).unwrap();
    // The restored cluster must read its own copy, not the old location.
    std::fs::remove_dir_all(&location).unwrap();
    let restored = start_backup(
        root.path(),
        &timeline,
        timeline.last_record_lsn(),
        "restored",
    );
    assert_eq!(
        restored.psql("postgres", "SELECT sum(i) FROM far").trim(),
        "125250"
    );
    restored.psql("postgres", "INSERT INTO far VALUES (1)");
}
