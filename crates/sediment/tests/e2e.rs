//! End to end with real processes: `sediment init`, `start`, `tenant create`;
//! a base backup of `main` at its initdb LSN, fetched by stock
//! `pg_basebackup` from the page service, starts a stock postmaster whose
//! `postgres` database dumps identically to a fresh initdb cluster's; after a
//! pageserver restart everything is back and the base backup's relation
//! files are byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{
    as_postgres, base_backup, ensure_pageserver_built, free_port, give_to_postgres, relation_files,
    run_ok, Postgres, Sediment, PG_BIN,
};
use serde_json::json;

fn fresh_initdb_dump(scratch: &Path) -> (String, String) {
    let pgdata = scratch.join("fresh");
    std::fs::create_dir_all(&pgdata).unwrap();
    give_to_postgres(scratch);
    run_ok(
        as_postgres(&format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(&pgdata)
            .args([
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--no-instructions",
                "--no-sync",
            ])
            .env("LC_ALL", "C.UTF-8"),
    );
    let server = Postgres::start(&pgdata, free_port());
    (server.dump(), server.catalog())
}

#[test]
fn init_start_tenant_basebackup_restart() {
    let _serial = common::serial();
    ensure_pageserver_built();
    // Postgres runs as another OS user and must reach the endpoint dirs.
    let scratch = common::scratch();
    let sediment = Sediment::init(scratch.path());
    let pg_port = sediment.pg_port;
    // A second init refuses to overwrite.
    assert!(!sediment.cmd(&["init"]).output().unwrap().status.success());
    run_ok(&mut sediment.cmd(&["start"]));

    // Bad settings and ids are refused by the pageserver with its message.
    let refused = sediment
        .cmd(&["tenant", "create", "-c", "no_such_setting=1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no_such_setting"));
    let refused = sediment
        .cmd(&["tenant", "create", "--tenant-id", "xyz"])
        .output()
        .unwrap();
    // The CLI checks the id before asking the pageserver.
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a tenant id"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let created = sediment.json(&[
        "tenant",
        "create",
        "--set-default",
        "-c",
        "gc_horizon=1048576",
    ]);
    let tenant = created["tenant_id"].as_str().unwrap().to_owned();
    let timeline = created["timeline_id"].as_str().unwrap().to_owned();
    let initdb_lsn = created["timeline"]["last_record_lsn"]
        .as_str()
        .unwrap()
        .to_owned();

    // A branch is metadata only; the tree shows it under main.
    let branch = sediment.json(&["timeline", "branch", "--branch-name", "dev"]);
    assert_eq!(branch["timeline"]["ancestor_lsn"], json!(initdb_lsn));
    let refused = sediment
        .cmd(&[
            "timeline",
            "branch",
            "--branch-name",
            "x",
            "--ancestor-start-lsn",
            "FF/0",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("406"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let tenants_before = sediment.json(&["tenant", "list"]);
    let timelines_before = sediment.json(&["timeline", "list"]);
    assert_eq!(timelines_before[0]["branch"], "main");
    assert_eq!(timelines_before[1]["branch"], "dev");
    assert_eq!(timelines_before[1]["depth"], 1);
    assert_eq!(timelines_before[1]["ancestor_timeline_id"], json!(timeline));

    // Base backup at the initdb LSN starts a stock postmaster.
    let first = scratch.path().join("bb1");
    base_backup(pg_port, &tenant, &timeline, Some(&initdb_lsn), &first);
    let first_files = relation_files(&first);
    assert!(
        first_files.len() > 100,
        "only {} relation files",
        first_files.len()
    );
    let dump = {
        let server = Postgres::start(&first, free_port());
        let databases = server.psql("SELECT datname FROM pg_database ORDER BY datname");
        assert_eq!(
            databases.lines().collect::<Vec<_>>(),
            ["postgres", "template0", "template1"]
        );
        (server.dump(), server.catalog())
    };
    let fresh = fresh_initdb_dump(scratch.path());
    assert!(dump.0.contains("PostgreSQL database dump complete"));
    assert_eq!(
        dump.0, fresh.0,
        "pg_dump differs from a fresh initdb cluster's"
    );
    assert!(dump.1.lines().count() > 3000, "catalog listing too short");
    assert_eq!(
        dump.1, fresh.1,
        "catalog differs from a fresh initdb cluster's"
    );

    // The CLI's own endpoint does the same.
    let endpoint = sediment.json(&["endpoint", "start", "ro", "--lsn", &initdb_lsn]);
    let port = u16::try_from(endpoint["port"].as_u64().unwrap()).unwrap();
    let read_only = run_ok(common::client("psql", port).args([
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-p",
        &port.to_string(),
        "-c",
        "SHOW default_transaction_read_only",
    ]));
    assert_eq!(read_only.trim(), "on");
    // A second endpoint on the branch reads through to main.
    let on_branch = sediment.json(&[
        "endpoint",
        "start",
        "ro-dev",
        "--branch-name",
        "dev",
        "--lsn",
        &initdb_lsn,
    ]);
    let port = u16::try_from(on_branch["port"].as_u64().unwrap()).unwrap();
    let count = run_ok(common::client("psql", port).args([
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-p",
        &port.to_string(),
        "-c",
        "SELECT count(*) FROM pg_database",
    ]));
    assert_eq!(count.trim(), "3");
    let listed = sediment.json(&["endpoint", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["running"], true);
    run_ok(&mut sediment.cmd(&["endpoint", "stop", "ro", "--destroy"]));
    run_ok(&mut sediment.cmd(&["endpoint", "stop", "ro-dev", "--destroy"]));
    assert_eq!(sediment.json(&["endpoint", "list"]), json!([]));

    // Restart: everything comes back, and the backup is byte-identical.
    run_ok(&mut sediment.cmd(&["stop"]));
    assert!(!sediment
        .cmd(&["tenant", "list"])
        .output()
        .unwrap()
        .status
        .success());
    run_ok(&mut sediment.cmd(&["start"]));
    assert_eq!(sediment.json(&["tenant", "list"]), tenants_before);
    assert_eq!(sediment.json(&["timeline", "list"]), timelines_before);
    let second = scratch.path().join("bb2");
    base_backup(pg_port, &tenant, &timeline, Some(&initdb_lsn), &second);
    let second_files = relation_files(&second);
    assert_eq!(
        first_files.keys().collect::<Vec<_>>(),
        second_files.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first_files {
        assert!(bytes == &second_files[name], "{name} differs after restart");
    }
    run_ok(&mut sediment.cmd(&["stop"]));
}
