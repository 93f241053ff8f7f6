//! CLI behaviour: help, init and the one-sentence errors for common
//! mistakes without a pageserver; and, against a real pageserver and
//! PostgreSQL 15 endpoint, the management commands (`--json` of each, tenant
//! and timeline delete, tenant config, timeline gc, sizes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::{lsn_value, psql, Sediment};
use serde_json::Value;

fn sediment(workdir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sediment"))
        .arg("--workdir")
        .arg(workdir)
        .args(args)
        .env_remove("SEDIMENT_WORKDIR")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["start"],
        &["stop"],
        &["status"],
        &["tenant"],
        &["tenant", "create"],
        &["tenant", "list"],
        &["timeline"],
        &["timeline", "list"],
        &["timeline", "branch"],
        &["endpoint"],
        &["endpoint", "start"],
        &["endpoint", "stop"],
        &["endpoint", "list"],
        &["tenant", "delete"],
        &["tenant", "attach"],
        &["tenant", "detach"],
        &["tenant", "config"],
        &["tenant", "config", "get"],
        &["tenant", "config", "set"],
        &["timeline", "delete"],
        &["timeline", "gc"],
        &["timeline", "diff"],
        &["table", "restore"],
        &["token"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = sediment(dir.path(), &args);
        assert!(output.status.success(), "{command:?}: {}", stderr(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{command:?}"
        );
    }
}

#[test]
fn commands_before_init_fail_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["start"][..],
        &["status"],
        &["tenant", "list"],
        &["endpoint", "list"],
    ] {
        let output = sediment(&dir.path().join("nothing"), args);
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(message.contains("not initialised"), "{args:?}: {message}");
        assert_eq!(message.trim().lines().count(), 1, "{message}");
    }
}

#[test]
fn init_writes_config_and_refuses_twice() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    let output = sediment(
        &work,
        &["--json", "init", "--http-port", "1", "--pg-port", "2"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["pageserver"], "127.0.0.1:1");
    let pageserver_toml = std::fs::read_to_string(work.join("pageserver/pageserver.toml")).unwrap();
    assert!(
        pageserver_toml.contains("listen_pg_addr = \"127.0.0.1:2\""),
        "{pageserver_toml}"
    );
    assert!(work.join("sediment.toml").exists());

    let again = sediment(&work, &["init"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already initialised"));

    // Nothing listens on port 1: API commands say so plainly.
    let output = sediment(&work, &["tenant", "list"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot reach the pageserver at"),
        "{}",
        stderr(&output)
    );
    let output = sediment(&work, &["timeline", "list"]);
    assert!(
        stderr(&output).contains("no default tenant"),
        "{}",
        stderr(&output)
    );
    let output = sediment(&work, &["endpoint", "start", "bad name!", "--lsn", "0/1"]);
    assert!(
        stderr(&output).contains("endpoint name"),
        "{}",
        stderr(&output)
    );
    let output = sediment(
        &work,
        &[
            "timeline",
            "branch",
            "--branch-name",
            "b",
            "--at",
            "2026-11-21 10:00:00+00",
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no default tenant"),
        "{}",
        stderr(&output)
    );
    let output = sediment(
        &work,
        &[
            "timeline",
            "branch",
            "--branch-name",
            "b",
            "--at",
            "x",
            "--ancestor-start-lsn",
            "0/1",
        ],
    );
    assert!(
        !output.status.success(),
        "--at and --ancestor-start-lsn conflict"
    );
    let output = sediment(&work, &["endpoint", "stop", "nosuch"]);
    assert!(
        stderr(&output).contains("no endpoint named nosuch"),
        "{}",
        stderr(&output)
    );
    let output = sediment(&work, &["--json", "status"]);
    assert!(output.status.success());
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["pageserver"]["running"], false);
}

#[test]
fn bad_pg_bin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = sediment(&dir.path().join("w"), &["init", "--pg-bin", "/nonexistent"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("PostgreSQL 15"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_mistakes_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["tenant", "delete"][..],
        &["--bogus", "status"],
        &["timeline", "gc", "a", "b"],
        &["tenant", "config", "set"],
        &["nosuchcommand"],
    ] {
        let output = sediment(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.trim().lines().count(), 1, "{args:?}: {message}");
        assert!(message.starts_with("error: "), "{args:?}: {message}");
        assert!(message.contains("--help"), "{args:?}: {message}");
    }
}

/// The management commands against a real pageserver and a writable
/// endpoint: `--json` of each, refusals while an endpoint runs or a child
/// branch exists, tenant config taking effect on GC, deletes that the API
/// confirms with 404, and one-line errors for bad input.
#[test]
fn management_commands_against_a_pageserver() {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (s, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = s.api();
    let main_id = s.timeline_id("main");

    // A writable endpoint on main streams WAL into it.
    let before_table = api.timeline(&tenant, &main_id)["last_record_lsn"]
        .as_str()
        .unwrap()
        .to_owned();
    let port = s.endpoint("ep1", &[]);
    psql(
        port,
        "CREATE TABLE t(id int, v text); INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g;",
    );
    registrations_and_human_output(&s, &api, &tenant, &main_id, port, &before_table);

    // Deleting under it is refused, by the CLI (naming the endpoint) and by
    // the API (409), and the endpoint keeps working.
    let refused = s.fails(&["timeline", "delete", "main"]);
    assert!(refused.contains("stop endpoint ep1"), "{refused}");
    let (code, body) = api.delete(&format!("/v1/tenant/{tenant}/timeline/{main_id}"));
    assert_eq!(code, 409, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("stop the endpoint"),
        "{body}"
    );
    let refused = s.fails(&["tenant", "delete", &tenant]);
    assert!(refused.contains("ep1"), "{refused}");
    let (code, body) = api.delete(&format!("/v1/tenant/{tenant}"));
    assert_eq!(code, 409, "{body}");
    psql(
        port,
        "INSERT INTO t SELECT g, 'y' FROM generate_series(1001, 1010) g;",
    );
    assert_eq!(psql(port, "SELECT count(*) FROM t").trim(), "1010");
    s.json(&["endpoint", "stop", "ep1"]);

    // Another program binds the port ep1 had while it is stopped: starting it
    // again without --port moves it to a free port instead of failing.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let moved = s.endpoint("ep1", &[]);
    assert_ne!(moved, port);
    assert_eq!(psql(moved, "SELECT count(*) FROM t").trim(), "1010");
    drop(squatter);
    s.json(&["endpoint", "stop", "ep1"]);

    // GC with the default retention keeps everything; with gc_horizon=0 and
    // no PITR window the cutoff moves to the head.
    let before = s.json(&["timeline", "gc", "main"]);
    for field in ["cutoff", "layers_removed", "bytes_removed", "layers_kept"] {
        assert!(!before[field].is_null(), "{field} missing: {before}");
    }
    let set = s.json(&[
        "tenant",
        "config",
        "set",
        "-c",
        "gc_horizon=0",
        "-c",
        "pitr_interval=0s",
    ]);
    assert_eq!(set["tenant_specific_overrides"]["gc_horizon"], 0, "{set}");
    let got = s.json(&["tenant", "config", "get"]);
    assert_eq!(got["tenant_specific_overrides"]["gc_horizon"], 0, "{got}");
    assert_eq!(
        got["tenant_specific_overrides"]["pitr_interval"], "0s",
        "{got}"
    );
    assert_eq!(got["effective_config"]["gc_horizon"], 0, "{got}");
    let text =
        String::from_utf8(s.cmd(&["tenant", "config", "get"]).output().unwrap().stdout).unwrap();
    assert!(text.contains("gc_horizon = 0"), "{text}");
    let after = s.json(&["timeline", "gc", "main"]);
    let head = s.branch_info("main")["last_record_lsn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(after["cutoff"].as_str().unwrap(), head, "{after}");
    assert!(
        lsn_value(after["cutoff"].as_str().unwrap())
            > lsn_value(before["cutoff"].as_str().unwrap()),
        "{before} {after}"
    );
    let info = api.timeline(&tenant, &main_id);
    assert_eq!(
        info["latest_gc_cutoff_lsn"].as_str().unwrap(),
        head,
        "{info}"
    );
    // Removing an override with `key=`.
    let unset = s.json(&["tenant", "config", "set", "-c", "pitr_interval="]);
    assert!(
        unset["tenant_specific_overrides"]["pitr_interval"].is_null(),
        "{unset}"
    );
    assert_eq!(
        unset["tenant_specific_overrides"]["gc_horizon"], 0,
        "{unset}"
    );

    // A branch with a child is not deleted.
    s.json(&["timeline", "branch", "--branch-name", "dev"]);
    let dev_id = s.timeline_id("dev");
    let refused = s.fails(&["timeline", "delete", "main"]);
    assert!(refused.contains("child branches (dev)"), "{refused}");

    // Sizes in `timeline list` and `status`.
    let list = s.json(&["timeline", "list"]);
    for row in list.as_array().unwrap() {
        assert!(row["current_logical_size"].as_u64().unwrap() > 0, "{row}");
        assert!(row["current_physical_size"].is_u64(), "{row}");
    }
    let text = String::from_utf8(s.cmd(&["timeline", "list"]).output().unwrap().stdout).unwrap();
    assert!(text.contains("logical ") && text.contains("iB"), "{text}");
    let status = s.json(&["status"]);
    let tenants = status["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{status}");
    assert_eq!(
        tenants[0]["timelines"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    assert!(
        tenants[0]["current_physical_size"].as_u64().unwrap() > 0,
        "{status}"
    );
    let tenants = s.json(&["tenant", "list"]);
    assert_eq!(tenants[0]["id"], tenant.as_str(), "{tenants}");

    // Delete the child: gone from the list, the API and the name mapping.
    let deleted = s.json(&["timeline", "delete", "dev"]);
    assert_eq!(deleted["deleted"], true, "{deleted}");
    assert_eq!(deleted["timeline_id"], dev_id.as_str(), "{deleted}");
    let list = s.json(&["timeline", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (code, _) = api.get(&format!("/v1/tenant/{tenant}/timeline/{dev_id}"));
    assert_eq!(code, 404);
    let again = s.fails(&["timeline", "delete", "dev"]);
    assert!(again.contains("no branch named \"dev\""), "{again}");
    // The name is free again.
    s.json(&["timeline", "branch", "--branch-name", "dev"]);
    assert_ne!(s.timeline_id("dev"), dev_id);

    // Tenant delete of a second tenant.
    let other = s.json(&["tenant", "create"]);
    let other = other["tenant_id"].as_str().unwrap().to_owned();
    let deleted = s.json(&["tenant", "delete", &other]);
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let (code, _) = api.get(&format!("/v1/tenant/{other}"));
    assert_eq!(code, 404);
    let tenants = s.json(&["tenant", "list"]);
    assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");
    let config = std::fs::read_to_string(s.workdir.join("sediment.toml")).unwrap();
    assert!(!config.contains(&other), "{config}");

    // Bad input: one sentence, non-zero exit.
    let cases: &[(&[&str], &str)] = &[
        (&["tenant", "delete", "xyz"], "not a tenant id"),
        (
            &["tenant", "delete", "00000000000000000000000000000001"],
            "does not exist",
        ),
        (&["timeline", "gc", "nosuch"], "no branch named"),
        (&["timeline", "delete", "nosuch"], "no branch named"),
        (&["tenant", "config", "set", "-c", "novalue"], "key=value"),
        (
            &["tenant", "config", "set", "-c", "no_such_setting=1"],
            "refused",
        ),
        (
            &[
                "tenant",
                "config",
                "get",
                "--tenant-id",
                "00000000000000000000000000000001",
            ],
            "not found",
        ),
        (
            &[
                "timeline",
                "branch",
                "--branch-name",
                "x",
                "--ancestor-start-lsn",
                "zz",
            ],
            "not an LSN",
        ),
        (
            &[
                "timeline",
                "branch",
                "--branch-name",
                "x",
                "--ancestor-branch-name",
                "nope",
            ],
            "no branch named",
        ),
        (
            &[
                "timeline",
                "list",
                "--tenant-id",
                "00000000000000000000000000000001",
            ],
            "not found",
        ),
    ];
    for (args, expected) in cases {
        let message = s.fails(args);
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(!message.contains("Error {"), "{args:?}: {message}");
    }

    // Every JSON document parses (checked by `json`); `start`/`stop` too.
    let stopped = s.json(&["stop"]);
    assert!(stopped["stopped"].is_i64(), "{stopped}");
    let down = s.fails(&["tenant", "list"]);
    assert!(down.contains("cannot reach the pageserver at"), "{down}");
    let started = s.json(&["start"]);
    assert!(started["pid"].is_u64(), "{started}");
    let list: Value = s.json(&["endpoint", "list"]);
    assert!(list.is_array(), "{list}");
    s.shutdown();
}

/// What the pageserver's endpoint list says, as (name, mode) pairs.
fn registered(api: &common::Api, tenant: &str) -> Vec<(String, String)> {
    let (code, body) = api.get(&format!("/v1/tenant/{tenant}/endpoint"));
    assert_eq!(code, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Endpoints registered with the pageserver by start, removed by stop
/// (also after the endpoint died), shown by `endpoint list`; `timeline
/// diff` as a table and `status` with the pageserver's own status.
fn registrations_and_human_output(
    s: &Sediment,
    api: &common::Api,
    tenant: &str,
    main_id: &str,
    writer_port: u16,
    before_table: &str,
) {
    let pair = |name: &str, mode: &str| (name.to_owned(), mode.to_owned());
    assert_eq!(registered(api, tenant), [pair("ep1", "writable")]);
    let lsn = psql(writer_port, "SELECT pg_current_wal_lsn()")
        .trim()
        .to_owned();
    api.wait_ingested(tenant, main_id, &lsn);
    s.endpoint("ro1", &["--lsn", &lsn, "--full"]);
    assert_eq!(
        registered(api, tenant),
        [pair("ep1", "writable"), pair("ro1", "read_only")]
    );
    let (_, listed) = api.get(&format!("/v1/tenant/{tenant}/endpoint"));
    let ro1 = &listed[1];
    assert_eq!(ro1["timeline_id"], main_id, "{listed}");
    assert_eq!(lsn_value(ro1["lsn"].as_str().unwrap()), lsn_value(&lsn));
    let pid = ro1["pid"].as_i64().unwrap();
    // A registration no local endpoint accounts for is listed as such.
    let (code, body) = api.put(
        &format!("/v1/tenant/{tenant}/timeline/{main_id}/endpoint/elsewhere"),
        &serde_json::json!({"mode": "read_only", "lsn": lsn, "port": 1}),
    );
    assert_eq!(code, 200, "{body}");
    let list = s.json(&["endpoint", "list"]);
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{list}");
    for entry in entries {
        assert_eq!(entry["registered"], true, "{entry}");
        assert_eq!(entry["local"], entry["name"] != "elsewhere", "{entry}");
    }
    let text = String::from_utf8(s.cmd(&["endpoint", "list"]).output().unwrap().stdout).unwrap();
    assert!(
        text.contains("elsewhere  registered on the pageserver only  read-only on branch main"),
        "{text}"
    );
    let (code, body) = api.delete(&format!(
        "/v1/tenant/{tenant}/timeline/{main_id}/endpoint/elsewhere"
    ));
    assert_eq!(code, 200, "{body}");
    // The read-only endpoint goes down behind the CLI's back (an immediate
    // shutdown, as a crash would); stopping it still removes its entry.
    assert!(pid > 0);
    let pgdata = s.endpoint_info("ro1")["pgdata"]
        .as_str()
        .unwrap()
        .to_owned();
    common::run_ok(
        common::as_postgres(&format!("{}/pg_ctl", common::PG_BIN)).args([
            "stop",
            "-m",
            "immediate",
            "-w",
            "-D",
            &pgdata,
        ]),
    );
    assert_eq!(s.endpoint_info("ro1")["running"], false);
    let text = String::from_utf8(s.cmd(&["endpoint", "list"]).output().unwrap().stdout).unwrap();
    assert!(
        text.contains("(still registered with the pageserver)"),
        "{text}"
    );
    s.json(&["endpoint", "stop", "ro1", "--destroy"]);
    assert_eq!(registered(api, tenant), [pair("ep1", "writable")]);

    // `timeline diff`: a table by default, the typed answer with --json.
    let text = String::from_utf8(
        s.cmd(&["timeline", "diff", "--from", before_table, "--to", &lsn])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let header = text.lines().nth(1).unwrap_or_default();
    assert!(
        header.split_whitespace().collect::<Vec<_>>()
            == ["CHANGE", "RELATION", "KIND", "PAGES", "BYTES", "BLOCKS"],
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("created") && l.contains("postgres:public.t ")),
        "{text}"
    );
    let diff = s.json(&["timeline", "diff", "--from", before_table, "--to", &lsn]);
    assert_eq!(diff["diff"]["to"].as_str().unwrap(), lsn, "{diff}");
    // `status`: the pageserver's own status as lines, typed in --json.
    let text = String::from_utf8(s.cmd(&["status"]).output().unwrap().stdout).unwrap();
    assert!(
        text.contains("\n  node id ") && text.contains("\n  native redo: "),
        "{text}"
    );
    assert!(!text.contains('{'), "{text}");
    let status = s.json(&["status"]);
    assert!(
        status["pageserver"]["status"]["native_redo_rmgrs"].is_array(),
        "{status}"
    );
}
