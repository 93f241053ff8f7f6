//! `timeline diff` and `table restore` end to end, on one pageserver and
//! one writable endpoint (real PostgreSQL 15):
//!
//! 1. Between two recorded LSNs: insert into `a`, update `b`, drop `c`,
//!    create `d`. The diff names exactly those tables with those kinds, and
//!    its page counts equal the number of differing 8 KiB pages between the
//!    relation files of two `--full` read-only endpoints at the two points.
//! 2. `table restore` after `DROP TABLE` (by LSN), `TRUNCATE` (by time) and
//!    a bad `UPDATE` of `t` while `o` keeps changing: `t`'s checksum equals
//!    the one recorded at the point, `o` keeps its newest rows; `--as`
//!    restores next to the live table; bad input gets one-sentence errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{psql, Sediment};
use serde_json::Value;

const PAGE: usize = 8192;

fn flush_lsn(port: u16) -> String {
    psql(port, "SELECT pg_current_wal_flush_lsn()")
        .trim()
        .to_owned()
}

#[test]
fn diff_and_restore() {
    let _serial = common::serial();
    let dir = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(dir.path());
    let timeline = sediment.timeline_id("main");
    let api = sediment.api();
    let port = sediment.endpoint("w", &[]);
    let started = std::time::Instant::now();
    diff_names_changes_and_counts_pages(&sediment, &api, &tenant, &timeline, port);
    eprintln!("diff part: {:?}", started.elapsed());
    let started = std::time::Instant::now();
    restore_brings_tables_back(&sediment, &api, &tenant, &timeline, port);
    eprintln!("restore part: {:?}", started.elapsed());
    sediment.shutdown();
}

fn diff_names_changes_and_counts_pages(
    sediment: &Sediment,
    api: &common::Api,
    tenant: &str,
    timeline: &str,
    port: u16,
) {
    psql(
        port,
        "CREATE TABLE a (id int PRIMARY KEY, v int);
         CREATE TABLE b (id int, v int);
         CREATE TABLE c (id int);
         INSERT INTO a SELECT g, g FROM generate_series(1, 100) g;
         INSERT INTO b SELECT g, g FROM generate_series(1, 3000) g;
         INSERT INTO c SELECT g FROM generate_series(1, 100) g;
         CREATE TABLE untouched (id int);
         INSERT INTO untouched VALUES (1);",
    );
    let from = flush_lsn(port);
    psql(
        port,
        "INSERT INTO a SELECT g, g FROM generate_series(101, 400) g;
         UPDATE b SET v = v + 1 WHERE id % 500 = 0;
         DROP TABLE c;
         CREATE TABLE d (id int);
         INSERT INTO d SELECT g FROM generate_series(1, 50) g;",
    );
    let to = flush_lsn(port);
    api.wait_ingested(tenant, timeline, &to);

    let started = std::time::Instant::now();
    let out = sediment.json(&[
        "timeline", "diff", "--branch", "main", "--from", &from, "--to", &to,
    ]);
    eprintln!("timeline diff: {:?}", started.elapsed());
    let relations = out["diff"]["relations"].as_array().unwrap().clone();
    let user: BTreeMap<String, &Value> = relations
        .iter()
        .filter(|r| r["system"] == false && r["schema"] == "public")
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
        .collect();
    let tables: BTreeMap<&str, &str> = user
        .iter()
        .filter(|(_, r)| r["relkind"] == "r")
        .map(|(name, r)| (name.as_str(), r["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tables,
        BTreeMap::from([
            ("a", "changed"),
            ("b", "changed"),
            ("c", "dropped"),
            ("d", "created")
        ]),
        "{out:#}"
    );
    assert_eq!(user["a_pkey"]["change"], "changed", "{out:#}");
    assert!(
        relations.iter().any(|r| r["name"] == "pg_class"),
        "catalogs changed too: {out:#}"
    );
    let text = String::from_utf8(
        sediment
            .cmd(&["timeline", "diff", "--from", &from])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // A table: a header, then change and relation in the first columns.
    assert!(
        text.contains("CHANGE") && text.contains("RELATION"),
        "{text}"
    );
    assert!(
        text.lines().any(|line| line
            .split_whitespace()
            .take(2)
            .eq(["dropped", "postgres:public.c"])),
        "{text}"
    );

    // Page images at both points, through the pageserver: two --full
    // read-only endpoints; count differing pages of each relation file.
    sediment.endpoint("at-from", &["--lsn", &from, "--full"]);
    sediment.endpoint("at-to", &["--lsn", &to, "--full"]);
    for name in ["a", "b", "a_pkey", "d"] {
        let r = user[name];
        let path = |endpoint: &str| {
            sediment.workdir.join(format!(
                "endpoints/{endpoint}/pgdata/base/{}/{}",
                r["database_oid"], r["file_node"]
            ))
        };
        let before = std::fs::read(path("at-from")).unwrap_or_default();
        let after = std::fs::read(path("at-to")).unwrap();
        let pages = before.len().max(after.len()) / PAGE;
        let differing = (0..pages)
            .filter(|p| before.get(p * PAGE..(p + 1) * PAGE) != after.get(p * PAGE..(p + 1) * PAGE))
            .count();
        assert!(differing > 0, "{name}");
        assert_eq!(
            r["pages_changed"].as_u64().unwrap(),
            differing as u64,
            "{name}: {r}"
        );
    }
    for endpoint in ["at-from", "at-to"] {
        common::run_ok(&mut sediment.cmd(&["endpoint", "stop", endpoint, "--destroy"]));
    }
    let bad = sediment.fails(&["timeline", "diff", "--from", &to, "--to", &from]);
    assert!(bad.contains("must be below"), "{bad}");
}

const CHECKSUM: &str =
    "SELECT count(*) || ':' || md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t";

fn restore_brings_tables_back(
    sediment: &Sediment,
    api: &common::Api,
    tenant: &str,
    timeline: &str,
    port: u16,
) {
    psql(
        port,
        "CREATE TABLE t (id serial PRIMARY KEY, v text);
         CREATE INDEX t_v ON t (v);
         INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 500) g;
         CREATE TABLE o (id int);",
    );
    let good = psql(port, CHECKSUM);
    let point = flush_lsn(port);
    api.wait_ingested(tenant, timeline, &point);
    let restore = |args: &[&str]| {
        let mut all = vec!["table", "restore"];
        all.extend_from_slice(args);
        let started = std::time::Instant::now();
        let out = sediment.json(&all);
        eprintln!("table restore {args:?}: {:?}", started.elapsed());
        assert_eq!(out["rows"], 500, "{out}");
        out
    };
    let other_moves = |n: i32| {
        psql(port, &format!("INSERT INTO o VALUES ({n})"));
    };

    // DROP TABLE, restored by LSN; o keeps its newest rows.
    other_moves(1);
    psql(port, "DROP TABLE t");
    other_moves(2);
    restore(&["t", "--lsn", &point]);
    assert_eq!(psql(port, CHECKSUM), good);
    assert_eq!(
        psql(port, "SELECT string_agg(id::text, ',' ORDER BY id) FROM o"),
        "1,2"
    );
    let indexes = psql(port, "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 't'");
    assert_eq!(indexes, "t_pkey,t_v");

    // TRUNCATE, restored by time.
    let restored_at = flush_lsn(port);
    api.wait_ingested(tenant, timeline, &restored_at);
    std::thread::sleep(Duration::from_millis(1100));
    let time = psql(
        port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(1100));
    psql(port, "TRUNCATE t");
    other_moves(3);
    restore(&["t", "--at", &time]);
    assert_eq!(psql(port, CHECKSUM), good);

    // A bad UPDATE, restored by LSN; and --as next to the live table.
    psql(port, "UPDATE t SET v = 'oops'");
    other_moves(4);
    let out = restore(&["t", "--lsn", &point, "--as", "t_old"]);
    assert_eq!(out["restored_as"], "public.t_old");
    assert_eq!(psql(port, "SELECT count(*) FROM t WHERE v = 'oops'"), "500");
    assert_eq!(psql(port, &CHECKSUM.replace("FROM t", "FROM t_old")), good);
    let renamed = psql(port, "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 't_old'");
    assert_eq!(renamed, "t_old_pkey,t_old_v");
    restore(&["t", "--lsn", &point]);
    assert_eq!(psql(port, CHECKSUM), good);
    assert_eq!(
        psql(port, "SELECT string_agg(id::text, ',' ORDER BY id) FROM o"),
        "1,2,3,4"
    );

    // Clear refusals; the temporary endpoints are gone.
    let missing = sediment.fails(&["table", "restore", "nosuch", "--lsn", &point]);
    assert!(missing.contains("does not exist at"), "{missing}");
    let taken = sediment.fails(&["table", "restore", "t", "--lsn", &point, "--as", "o"]);
    assert!(taken.contains("already exists"), "{taken}");
    psql(port, "CREATE TABLE r (tid int REFERENCES t (id))");
    let fk = sediment.fails(&["table", "restore", "t", "--lsn", &point]);
    assert!(fk.contains("foreign key") && fk.contains("--as"), "{fk}");
    common::run_ok(&mut sediment.cmd(&["timeline", "branch", "--branch-name", "side"]));
    let idle = sediment.fails(&["table", "restore", "t", "--lsn", &point, "--branch", "side"]);
    assert!(idle.contains("no running writable endpoint"), "{idle}");
    let list = sediment.json(&["endpoint", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}
