//! Branching end to end, with real processes: the `sediment` CLI, the
//! `pageserver` daemon and stock PostgreSQL 15 endpoints whose WAL streams
//! into the pageserver (synchronous standby `pageserver`).
//!
//! 1. pgbench on a writable `main`; consistent samples (LSN, total balance,
//!    history rows) taken while pgbench runs; branches and endpoints at each
//!    sampled LSN show exactly those values; a branch of a branch, written
//!    to, keeps both histories apart; a restarted writable endpoint shows
//!    everything committed before.
//! 2. kill -9 of the pageserver in the middle of pgbench: pgbench completes
//!    after a restart and a branch at the head holds every transaction.
//! 3. After the WAL-rich `testkit::workload` pieces, `pg_dump` of a branch at
//!    the head equals `pg_dump` of the server it came from.
//! 4. Bad input gets a clear error: branch points outside the history, an
//!    unknown ancestor, a second writable endpoint, a WAL source that is
//!    not PostgreSQL 15 or is unreachable.
//!
//! `SEDIMENT_LONG=1` runs pgbench for 60 s instead of 30 s;
//! `SEDIMENT_PGBENCH_SECS=N` sets it directly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lsn_value, psql, psql_db, Sediment};
use serde_json::{json, Value};

fn pgbench_secs() -> u64 {
    if let Some(secs) = std::env::var("SEDIMENT_PGBENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return secs;
    }
    if std::env::var("SEDIMENT_LONG").is_ok_and(|v| v == "1") {
        60
    } else {
        30
    }
}

fn pgbench_command(port: u16, args: &[&str]) -> Command {
    let mut command = common::client("pgbench", port);
    command
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
        .args(args)
        .arg("postgres");
    command
}

fn spawn_pgbench(port: u16, args: &[&str]) -> Child {
    pgbench_command(port, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a spawned pgbench; returns its stdout, failing on error.
fn finish_pgbench(child: Child) -> String {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "pgbench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// What pgbench says it committed: "number of transactions actually
/// processed: N/M" (or "N" without a target).
fn processed(output: &str) -> u64 {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed:"))
        .unwrap_or_else(|| panic!("no processed count in {output}"));
    line.trim().split('/').next().unwrap().parse().unwrap()
}

/// One consistent observation of the pgbench tables.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    lsn: String,
    /// `clock_timestamp()` under the locks: every commit before it is in
    /// the sample, none after it.
    time: String,
    balance: i64,
    history: i64,
}

/// Takes a sample while pgbench may be running: SHARE locks on the tables
/// every pgbench transaction writes wait for the transactions in flight and
/// hold off new ones, so the insert LSN read under them separates exactly
/// the committed transactions the query sees from the later ones.
fn sample(port: u16) -> Sample {
    let row = psql(
        port,
        "BEGIN;
         LOCK TABLE pgbench_accounts, pgbench_history IN SHARE MODE;
         SELECT pg_current_wal_insert_lsn(),
                to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                (SELECT sum(abalance) FROM pgbench_accounts),
                (SELECT count(*) FROM pgbench_history);
         COMMIT;",
    );
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(fields.len(), 4, "{row}");
    Sample {
        lsn: fields[0].to_owned(),
        time: fields[1].to_owned(),
        balance: fields[2].parse().unwrap(),
        history: fields[3].parse().unwrap(),
    }
}

/// (sum of balances, history rows) as an endpoint sees them.
fn values(port: u16) -> (i64, i64) {
    let row = psql(
        port,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history)",
    );
    let (balance, history) = row.split_once('|').unwrap();
    (balance.parse().unwrap(), history.parse().unwrap())
}

fn notes(port: u16) -> Vec<String> {
    psql(port, "SELECT v FROM note ORDER BY v")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn branches_at_sampled_lsns_show_exactly_what_was_committed() {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let main_timeline = sediment.timeline_id("main");

    let main = sediment.endpoint("main", &[]);
    let listed = sediment.json(&["endpoint", "list"]);
    assert_eq!(listed[0]["writable"], true, "{listed}");
    let init = pgbench_command(main, &["-i", "-q", "-s", "10"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");

    let secs = pgbench_secs();
    let interval = Duration::from_secs((secs / 4).clamp(3, 10));
    let mut samples = vec![sample(main)];
    let mut bench = spawn_pgbench(main, &["-c", "4", "-j", "2", "-T", &secs.to_string()]);
    let started = Instant::now();
    loop {
        std::thread::sleep(interval);
        if bench.try_wait().unwrap().is_some() {
            break;
        }
        samples.push(sample(main));
        assert!(started.elapsed() < Duration::from_secs(secs + 600));
    }
    let bench_output = finish_pgbench(bench);
    samples.push(sample(main));
    assert!(samples.len() >= 4, "{samples:?}");
    eprintln!("pgbench: {bench_output}\nsamples: {samples:#?}");

    // Every difference is collected with its LSN before failing: the
    // pattern says more than the first one.
    let mut failures = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        api.wait_ingested(&tenant, &main_timeline, &s.lsn);
        let branch = format!("at{i}");
        let created = sediment.json(&[
            "timeline",
            "branch",
            "--branch-name",
            &branch,
            "--ancestor-start-lsn",
            &s.lsn,
        ]);
        assert_eq!(created["timeline"]["ancestor_lsn"], json!(s.lsn));

        let read_only = sediment.endpoint(&format!("ro{i}"), &["--lsn", &s.lsn]);
        let seen = values(read_only);
        if seen != (s.balance, s.history) {
            failures.push(format!(
                "read-only endpoint on main at {}: {seen:?}, expected {s:?}",
                s.lsn
            ));
        }
        sediment.json(&["endpoint", "stop", &format!("ro{i}"), "--destroy"]);

        let writable = sediment.endpoint(&format!("rw{i}"), &["--branch-name", &branch]);
        let seen = values(writable);
        if seen != (s.balance, s.history) {
            failures.push(format!(
                "writable endpoint on branch {branch} at {}: {seen:?}, expected {s:?}",
                s.lsn
            ));
        }
        sediment.json(&["endpoint", "stop", &format!("rw{i}"), "--destroy"]);

        // The same point found by time (`--at`) for a middle and the last sample.
        if i == 1 || i + 1 == samples.len() {
            let by_time = format!("time{i}");
            let created = sediment.json(&[
                "timeline",
                "branch",
                "--branch-name",
                &by_time,
                "--at",
                &s.time,
            ]);
            let lsn = created["timeline"]["ancestor_lsn"]
                .as_str()
                .unwrap()
                .to_owned();
            let reader = sediment.endpoint(
                &format!("tm{i}"),
                &["--branch-name", &by_time, "--lsn", &lsn],
            );
            let seen = values(reader);
            if seen != (s.balance, s.history) {
                failures.push(format!(
                    "branch --at {} (LSN {lsn}): {seen:?}, expected {s:?}",
                    s.time
                ));
            }
            sediment.json(&["endpoint", "stop", &format!("tm{i}"), "--destroy"]);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    branch_of_branch_keeps_histories_apart(&sediment, &samples[1]);

    // main itself is untouched by all of that.
    assert_eq!(
        values(main),
        (
            samples.last().unwrap().balance,
            samples.last().unwrap().history
        )
    );
    assert_eq!(psql(main, "SELECT to_regclass('note') IS NULL"), "t");
    let stopped = sediment.json(&["endpoint", "stop", "main"]);
    let ingested = stopped["last_record_lsn"].as_str().unwrap();
    assert!(lsn_value(ingested) > lsn_value(&samples.last().unwrap().lsn));
    // Started again, main is rebuilt from the pageserver with everything.
    let main = sediment.endpoint("main", &[]);
    assert_eq!(
        values(main),
        (
            samples.last().unwrap().balance,
            samples.last().unwrap().history
        )
    );
    sediment.shutdown();
}

/// Branch `at1` is written to, stopped, branched again (`at1-child`) and
/// restarted; each side then writes its own row.
fn branch_of_branch_keeps_histories_apart(sediment: &Sediment, at1: &Sample) {
    let parent = sediment.endpoint("parent", &["--branch-name", "at1"]);
    psql(
        parent,
        "CREATE TABLE note (v text);
         INSERT INTO note VALUES ('at1 first');
         UPDATE pgbench_accounts SET abalance = abalance + 1000 WHERE aid = 1;",
    );
    let stopped = sediment.json(&["endpoint", "stop", "parent"]);
    assert!(stopped["last_record_lsn"].is_string(), "{stopped}");
    let child = sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        "at1-child",
        "--ancestor-branch-name",
        "at1",
    ]);
    assert_eq!(
        child["timeline"]["ancestor_lsn"],
        stopped["last_record_lsn"]
    );

    // A restarted writable endpoint is a fresh data directory from the
    // pageserver: it must show what was committed before the stop.
    let parent = sediment.endpoint("parent", &["--branch-name", "at1"]);
    assert_eq!(notes(parent), ["at1 first"]);
    assert_eq!(values(parent), (at1.balance + 1000, at1.history));
    psql(parent, "INSERT INTO note VALUES ('at1 second')");

    let child = sediment.endpoint("child", &["--branch-name", "at1-child"]);
    assert_eq!(notes(child), ["at1 first"]);
    assert_eq!(values(child), (at1.balance + 1000, at1.history));
    psql(child, "INSERT INTO note VALUES ('child only')");
    assert_eq!(notes(child), ["at1 first", "child only"]);
    assert_eq!(notes(parent), ["at1 first", "at1 second"]);

    let tree = sediment.json(&["timeline", "list"]);
    let row = tree
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["branch"] == "at1-child")
        .unwrap();
    assert_eq!(row["depth"], 2, "{tree}");
    for name in ["child", "parent"] {
        sediment.json(&["endpoint", "stop", name, "--destroy"]);
    }
    // What each wrote is in its own branch after the stops, too.
    let child = sediment.endpoint("child-again", &["--branch-name", "at1-child"]);
    assert_eq!(notes(child), ["at1 first", "child only"]);
    sediment.json(&["endpoint", "stop", "child-again", "--destroy"]);
}

#[test]
fn pageserver_killed_mid_pgbench_loses_no_acknowledged_commit() {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let main_timeline = sediment.timeline_id("main");
    let main = sediment.endpoint("main", &[]);
    let init = pgbench_command(main, &["-i", "-q", "-s", "1"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");

    // Enough transactions that pgbench is still running when the kill lands
    // on a fast machine (4,000 once finished inside the old fixed 3 s wait);
    // the kill waits for a little history instead of a fixed time.
    let (clients, per_client) = (4, 5000);
    let bench = spawn_pgbench(
        main,
        &[
            "--no-vacuum",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-t",
            &per_client.to_string(),
        ],
    );
    let waiting_since = std::time::Instant::now();
    let mut before = values(main).1;
    while before < 300 && waiting_since.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        before = values(main).1;
    }
    let pid = nix::unistd::Pid::from_raw(sediment.pageserver_pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(pid, None);
    // Commits wait for the synchronous standby meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        before < clients * per_client,
        "pgbench finished before the kill; make it longer"
    );
    common::run_ok(&mut sediment.cmd(&["start"]));
    let output = finish_pgbench(bench);
    let committed = processed(&output);
    assert_eq!(
        committed,
        u64::try_from(clients * per_client).unwrap(),
        "{output}"
    );

    // Everything acknowledged is durable in the pageserver; wait for ingest
    // to catch up with it, then branch at the head.
    let flushed = psql(main, "SELECT pg_current_wal_flush_lsn()");
    api.wait_ingested(&tenant, &main_timeline, &flushed);
    let branch = sediment.json(&["timeline", "branch", "--branch-name", "after-kill"]);
    let at = branch["timeline"]["ancestor_lsn"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = sediment.endpoint("check", &["--branch-name", "after-kill", "--lsn", &at]);
    let rows = u64::try_from(values(endpoint).1).unwrap();
    assert!(
        rows >= committed,
        "branch at {at} has {rows} pgbench_history rows, pgbench committed {committed}"
    );
    assert_eq!(values(endpoint), values(main));

    // WAL the pageserver never saw: with it down, commits that do not wait
    // for it (synchronous_commit = local) exist only in the endpoint's WAL.
    // The stop fails while the pageserver is away; once it is back, a
    // second stop runs the postmaster once more to hand that WAL over.
    sediment.json(&["endpoint", "stop", "check", "--destroy"]);
    let pid = nix::unistd::Pid::from_raw(sediment.pageserver_pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    psql(
        main,
        "SET synchronous_commit = local; CREATE TABLE unseen AS SELECT generate_series(1, 100) AS x;",
    );
    let refused = run_fail(&sediment, &["endpoint", "stop", "main"]);
    assert!(
        refused.contains("cannot reach the pageserver at"),
        "{refused}"
    );
    let again = run_fail(&sediment, &["endpoint", "start", "main"]);
    assert!(again.contains("not stopped cleanly"), "{again}");
    common::run_ok(&mut sediment.cmd(&["start"]));
    sediment.json(&["endpoint", "stop", "main"]);
    let main = sediment.endpoint("main", &[]);
    assert_eq!(psql(main, "SELECT count(*) FROM unseen"), "100");
    sediment.shutdown();
}

/// A writable endpoint runs with `fsync = off`: its data directory is
/// disposable, every acknowledged commit is on the pageserver's disk. Here
/// its host "crashes" mid-pgbench (every process of the server killed at
/// once) and its data directory is lost with everything in it; `endpoint
/// stop` and `endpoint start` bring it back from the pageserver with every
/// acknowledged transaction, each whole.
#[test]
fn endpoint_losing_its_data_directory_mid_pgbench_loses_no_acknowledged_commit() {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, _tenant) = Sediment::running_with_tenant(scratch.path());
    let main = sediment.endpoint("main", &[]);
    assert_eq!(psql(main, "SHOW fsync"), "off");
    let init = pgbench_command(main, &["-i", "-q", "-s", "1"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let bench = spawn_pgbench(main, &["--no-vacuum", "-c", "4", "-j", "2", "-t", "5000"]);
    let waiting_since = Instant::now();
    while values(main).1 < 300 && waiting_since.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }

    let pgdata = sediment.workdir.join("endpoints/main/pgdata");
    let postmaster: i32 = std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The whole server at once, children first-found so none outlives the
    // postmaster long enough to send anything more.
    let mut server = children_of(postmaster);
    server.push(postmaster);
    for pid in &server {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let output = bench.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let committed = processed(&stdout);
    assert!(
        committed < 20_000,
        "pgbench finished before the kill: {stdout}"
    );
    std::fs::remove_dir_all(&pgdata).unwrap();

    let stopped = sediment
        .cmd(&["endpoint", "stop", "main"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stopped.status.success(), "{stderr}");
    assert!(stderr.contains("did not shut down cleanly"), "{stderr}");
    let main = sediment.endpoint("main", &[]);
    let row = psql(
        main,
        "SELECT (SELECT count(*) FROM pgbench_history),
                (SELECT sum(abalance) FROM pgbench_accounts),
                (SELECT sum(bbalance) FROM pgbench_branches),
                (SELECT sum(tbalance) FROM pgbench_tellers),
                (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
    );
    let fields: Vec<i64> = row.split('|').map(|f| f.parse().unwrap()).collect();
    assert!(
        u64::try_from(fields[0]).unwrap() >= committed,
        "{} history rows after the crash, pgbench had {committed} acknowledged",
        fields[0]
    );
    // Every transaction is there whole or not at all.
    assert!(fields[1..].iter().all(|&sum| sum == fields[1]), "{row}");
    sediment.shutdown();
}

/// Processes whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, not ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<i32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// The settings a writable endpoint gets, for a testkit cluster that plays
/// one (see `endpoint/config.rs`).
fn writable_settings(wcc: &str) -> Vec<(&'static str, String)> {
    vec![
        ("wal_level", "replica".into()),
        ("max_wal_senders", "10".into()),
        ("max_replication_slots", "10".into()),
        ("wal_compression", "zstd".into()),
        ("wal_consistency_checking", wcc.into()),
        ("synchronous_standby_names", "pageserver".into()),
        ("max_prepared_transactions", "10".into()),
        ("wal_keep_size", "256MB".into()),
    ]
}

/// `pg_dump` with the `setval` lines taken out and returned apart: a
/// sequence logs values ahead (32 at a time), so after a crash — or on a
/// branch, which starts like after one — it legitimately stands further on.
fn dump_without_setval(port: u16, db: &str) -> (String, Vec<String>) {
    let dump = common::pg_dump(port, db, &["--no-unlogged-table-data"]);
    let (setvals, rest): (Vec<&str>, Vec<&str>) = dump
        .lines()
        .partition(|l| l.starts_with("SELECT pg_catalog.setval("));
    (
        rest.join("\n"),
        setvals.into_iter().map(str::to_owned).collect(),
    )
}

#[test]
fn pg_dump_of_a_branch_equals_its_source_after_rich_workloads() {
    use testkit::workload;
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let main_timeline = sediment.timeline_id("main");
    let (_, status) = api.get("/v1/status");
    let wcc = status["wal_consistency_checking"]
        .as_str()
        .unwrap_or("all")
        .to_owned();

    // The source: a testkit cluster on main's head playing the writable
    // endpoint, so the shared workload functions can drive it.
    let root = testkit::PgTempDir::new().unwrap();
    common::base_backup(
        sediment.pg_port,
        &tenant,
        &main_timeline,
        None,
        &root.path().join("data"),
    );
    let settings = writable_settings(&wcc);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut source = testkit::PgCluster::builder()
        .settings(&settings)
        .adopt(root, "data")
        .unwrap();
    source.start().unwrap();
    // The base backup lets TCP clients in with a password only.
    let connstr = source.set_superuser_password("branching-test").unwrap();
    common::remember_password(source.port(), "branching-test");
    let wal_source = format!("/v1/tenant/{tenant}/timeline/{main_timeline}/wal_source");
    let (code, answer) = api.put(&wal_source, &json!({"connstr": connstr}));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["wal_source_connstr"], json!(connstr));

    workload::pgbench_init(&source, 1).unwrap();
    workload::pgbench_run(&source, 5, 4).unwrap();
    workload::index_kinds(&source).unwrap();
    workload::copy_in(&source).unwrap();
    workload::vacuums(&source).unwrap();
    workload::databases(&source).unwrap();
    workload::truncates(&source).unwrap();
    workload::sequences(&source).unwrap();
    workload::toast(&source).unwrap();
    workload::two_phase(&source).unwrap();
    workload::many_subtransactions(&source).unwrap();
    workload::unlogged_tables(&source).unwrap();
    workload::multixacts(&source).unwrap();
    source
        .psql("CREATE DATABASE kept STRATEGY = wal_log")
        .unwrap();
    source
        .psql_db(
            "kept",
            "CREATE TABLE k AS SELECT g FROM generate_series(1, 1000) g",
        )
        .unwrap();

    let flushed: String = source
        .query_scalar("SELECT pg_current_wal_flush_lsn()")
        .unwrap();
    api.wait_ingested(&tenant, &main_timeline, &flushed);
    let branch = sediment.json(&["timeline", "branch", "--branch-name", "copy"]);
    let at = branch["timeline"]["ancestor_lsn"]
        .as_str()
        .unwrap()
        .to_owned();
    let copy = sediment.endpoint("copy", &["--branch-name", "copy"]);

    let databases = "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1";
    let listed = source.psql(databases).unwrap();
    assert_eq!(psql(copy, databases), listed.trim());
    for db in listed.lines().filter(|l| !l.is_empty()) {
        let (expected, expected_setval) = dump_without_setval(source.port(), db);
        let (actual, actual_setval) = dump_without_setval(copy, db);
        assert!(
            expected == actual,
            "pg_dump of {db} differs between the source and branch copy at {at}:\n{}",
            first_difference(&expected, &actual)
        );
        assert_eq!(
            expected_setval.len(),
            actual_setval.len(),
            "sequences of {db}"
        );
    }
    assert_eq!(psql_db(copy, "kept", "SELECT count(*) FROM k"), "1000");
    let (code, answer) = api.delete(&wal_source);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["wal_source_connstr"], Value::Null);
    sediment.shutdown();
}

/// The first differing line of two dumps, with its neighbours.
fn first_difference(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let window = |lines: &[&str]| lines[at.saturating_sub(3)..(at + 4).min(lines.len())].join("\n");
    format!(
        "line {at}\n--- source ---\n{}\n--- branch ---\n{}",
        window(&a),
        window(&b)
    )
}

#[test]
fn bad_branch_points_writers_and_wal_sources_are_refused_clearly() {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let main_timeline = sediment.timeline_id("main");
    let main = sediment.endpoint("main", &[]);
    psql(main, "CREATE TABLE t AS SELECT 1 AS x");
    let flushed = psql(main, "SELECT pg_current_wal_flush_lsn()");
    api.wait_ingested(&tenant, &main_timeline, &flushed);

    // Branch points outside main's history, and unknown ancestors.
    let beyond = sediment.fails(&[
        "timeline",
        "branch",
        "--branch-name",
        "b1",
        "--ancestor-start-lsn",
        "FF/0",
    ]);
    assert!(
        beyond.contains("406") && beyond.contains("beyond"),
        "{beyond}"
    );
    let before = sediment.fails(&[
        "timeline",
        "branch",
        "--branch-name",
        "b2",
        "--ancestor-start-lsn",
        "0/1",
    ]);
    assert!(before.contains("406"), "{before}");
    let info = api.timeline(&tenant, &main_timeline);
    let cutoff = lsn_value(info["latest_gc_cutoff_lsn"].as_str().unwrap());
    if cutoff > 8 {
        let below = format!("{:X}/{:X}", (cutoff - 8) >> 32, (cutoff - 8) & 0xFFFF_FFFF);
        let refused = sediment.fails(&[
            "timeline",
            "branch",
            "--branch-name",
            "b3",
            "--ancestor-start-lsn",
            &below,
        ]);
        assert!(refused.contains("GC cutoff"), "{refused}");
    }
    let unknown = sediment.fails(&[
        "timeline",
        "branch",
        "--branch-name",
        "b4",
        "--ancestor-branch-name",
        "nope",
    ]);
    assert!(unknown.contains("no branch named"), "{unknown}");
    let (code, answer) = api.post(
        &format!("/v1/tenant/{tenant}/timeline"),
        &json!({"new_timeline_id": "11".repeat(16), "ancestor_timeline_id": "22".repeat(16)}),
    );
    assert_eq!(code, 404, "{answer}");
    let at = sediment.fails(&[
        "timeline",
        "branch",
        "--branch-name",
        "b5",
        "--at",
        "2026-11-21 10:00:00+00",
    ]);
    // Today is after that: no commit this branch knows is that old.
    assert!(at.contains("before the oldest commit"), "{at}");
    let branches: Vec<Value> = sediment
        .json(&["timeline", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["branch"].clone())
        .collect();
    assert_eq!(branches, [json!("main")], "refused branches must not exist");

    // One writable endpoint per branch; read-only ones are fine.
    let second = sediment.fails(&["endpoint", "start", "second"]);
    assert!(second.contains("already running read-write"), "{second}");
    let side = sediment.json(&["timeline", "branch", "--branch-name", "side"]);
    let side_timeline = sediment.timeline_id("side");
    let side_start = side["timeline"]["ancestor_lsn"].as_str().unwrap();
    let side_reader = sediment.endpoint(
        "side-reader",
        &["--branch-name", "side", "--lsn", side_start],
    );

    // WAL sources: not PostgreSQL (the page service), nothing listening,
    // unknown timeline.
    let side_source = format!("/v1/tenant/{tenant}/timeline/{side_timeline}/wal_source");
    let page_service = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        sediment.pg_port
    );
    let (code, answer) = api.put(&side_source, &json!({"connstr": page_service}));
    assert_eq!(code, 400, "page service as WAL source: {answer}");
    assert!(answer["msg"].is_string(), "{answer}");
    let nothing = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        common::free_port()
    );
    let (code, answer) = api.put(&side_source, &json!({"connstr": nothing}));
    assert_eq!(code, 400, "unreachable WAL source: {answer}");
    let (code, answer) = api.put(
        &format!(
            "/v1/tenant/{tenant}/timeline/{}/wal_source",
            "33".repeat(16)
        ),
        &json!({"connstr": page_service}),
    );
    assert_eq!(code, 404, "{answer}");
    assert_eq!(
        api.timeline(&tenant, &side_timeline)["wal_source_connstr"],
        Value::Null
    );

    // The pageserver's own defence: a branch already streaming from one
    // server refuses another, and the CLI stops the postgres it started.
    // (Endpoints take passwords only: the reader's replication role.)
    let replication = sediment.endpoint_info("side-reader")["replication_password"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader = format!(
        "host=127.0.0.1 port={side_reader} user=sediment_replication password={replication} dbname=postgres"
    );
    let (code, answer) = api.put(&side_source, &json!({"connstr": reader}));
    assert_eq!(code, 200, "{answer}");
    let refused = run_fail(
        &sediment,
        &["endpoint", "start", "side-writer", "--branch-name", "side"],
    );
    assert!(refused.contains("409"), "{refused}");
    assert!(
        !sediment
            .json(&["endpoint", "list"])
            .to_string()
            .contains("side-writer"),
        "a refused endpoint is cleaned up"
    );
    let (code, answer) = api.delete(&side_source);
    assert_eq!(code, 200, "{answer}");
    let side_writer = sediment.endpoint("side-writer", &["--branch-name", "side"]);
    assert_eq!(psql(side_writer, "SELECT x FROM t"), "1");
    // Branching right at a just-written LSN waits for ingest, not fails.
    let lsn = psql(
        main,
        "CREATE TABLE late AS SELECT 42 AS v; SELECT pg_current_wal_insert_lsn()",
    );
    sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        "late",
        "--ancestor-start-lsn",
        &lsn,
    ]);
    let late = sediment.endpoint("late-reader", &["--branch-name", "late", "--lsn", &lsn]);
    assert_eq!(psql(late, "SELECT v FROM late"), "42");
    sediment.shutdown();
}

/// A failing CLI command's stderr (may be two sentences: the refusal and
/// what was cleaned up).
fn run_fail(sediment: &Sediment, args: &[&str]) -> String {
    common::run_fail(&mut sediment.cmd(args))
}
