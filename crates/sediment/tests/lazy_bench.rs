//! Benchmark of lazy endpoints (issue 13), not in the default run:
//!
//! ```text
//! cargo test --release -p sediment --test lazy_bench -- --ignored --nocapture
//! ```
//!
//! `LAZY_BENCH_SCALE` (default 70, ~1 GB) and `LAZY_BENCH_SECS` (default
//! 180) size the pgbench database and its history; `LAZY_BENCH_TPS_SECS`
//! (default 20) is each pgbench -S run. `LAZY_BENCH_FULL=0` skips the
//! `--full` endpoints (each a whole copy of the database: at -s 700 the
//! disk may not hold them next to the base backup and the PITR copy).
//!
//! 1. `pgbench -i -s SCALE` on a writable endpoint; a base backup of it
//!    (`pg_basebackup -X stream`) and `pg_receivewal` into a WAL archive,
//!    both for PostgreSQL's own point-in-time recovery; then `SECS` of
//!    `pgbench -c 4`, the LSN at two thirds of it recorded.
//! 2. Page cache dropped, then: from the CLI call (`timeline branch` at that
//!    LSN + `endpoint start` on the branch) to accepting connections, lazy
//!    and `--full` (with `SEDIMENT_START_TIMINGS=1`: the phases print);
//!    next to PostgreSQL's PITR of the same point (copy of the base backup,
//!    `recovery_target_lsn`, replay from the archive, until promoted). The
//!    ratio PITR / lazy is printed (goal ≥ 10).
//! 3. `pgbench -S` tps, cold (page cache dropped, right after start) and
//!    warm, on a read-only lazy endpoint at that LSN and a `--full` one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{as_postgres, give_to_postgres, psql, run_ok, Sediment, PG_BIN};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best effort: needs root; without it the runs are warm-cache numbers.
fn drop_caches() {
    let _ = Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_err() {
        eprintln!("note: cannot drop the page cache (not root?)");
    }
}

fn pgbench(port: u16, args: &[&str]) -> Command {
    let mut command = common::client("pgbench", port);
    command
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
        .args(args)
        .arg("postgres");
    command
}

fn tps(port: u16, secs: u64) -> f64 {
    let out = run_ok(&mut pgbench(
        port,
        &["-n", "-S", "-c", "4", "-j", "2", "-T", &secs.to_string()],
    ));
    out.lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Seconds from the CLI call (branch + endpoint start) to connections.
fn branch_and_start(sediment: &Sediment, name: &str, lsn: &str, extra: &[&str]) -> (f64, u16) {
    drop_caches();
    let begun = Instant::now();
    sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        name,
        "--ancestor-start-lsn",
        lsn,
    ]);
    let mut args = vec!["endpoint", "start", name, "--branch-name", name];
    args.extend_from_slice(extra);
    let output = sediment
        .cmd(&["--json"])
        .args(&args)
        .env("SEDIMENT_START_TIMINGS", "1")
        .output()
        .unwrap();
    let took = begun.elapsed().as_secs_f64();
    assert!(output.status.success(), "{output:?}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let started: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        took,
        u16::try_from(started["port"].as_u64().unwrap()).unwrap(),
    )
}

/// PostgreSQL's own PITR to `lsn`: copy the base backup, replay the
/// archive to the target, promote. Seconds until it is out of recovery.
fn pitr(base: &Path, archive: &Path, dest: &Path, lsn: &str, password: &str) -> f64 {
    drop_caches();
    let port = common::free_port();
    let begun = Instant::now();
    run_ok(Command::new("cp").arg("-a").arg(base).arg(dest));
    // The endpoint's settings stay (recovery refuses lower values of
    // max_prepared_transactions and friends than the primary had); ours go
    // last in postgresql.auto.conf, which wins: no synchronous standby, no
    // archiving, no replication source, a port of its own.
    let mut auto = std::fs::read_to_string(dest.join("postgresql.auto.conf")).unwrap_or_default();
    auto.push_str(&format!(
        "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         synchronous_standby_names = ''\narchive_mode = off\nprimary_conninfo = ''\n\
         restore_command = 'cp {}/%f %p'\nrecovery_target_lsn = '{lsn}'\n\
         recovery_target_action = 'promote'\n",
        dest.display(),
        archive.display()
    ));
    std::fs::write(dest.join("postgresql.auto.conf"), auto).unwrap();
    std::fs::write(dest.join("recovery.signal"), "").unwrap();
    give_to_postgres(dest);
    // Inside the data directory: the scratch directory is root's.
    let log = dest.join("pitr.log");
    let started = as_postgres(&format!("{PG_BIN}/pg_ctl"))
        .arg("-D")
        .arg(dest)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "600", "start"])
        .status()
        .unwrap();
    assert!(
        started.success(),
        "PITR did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The copy has the endpoint's roles and passwords, on a port of its own.
    let in_recovery = || {
        let mut command = common::client("psql", port);
        command.env("PGPASSWORD", password).args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT pg_is_in_recovery()",
        ]);
        run_ok(&mut command)
    };
    while in_recovery().trim() != "f" {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = begun.elapsed().as_secs_f64();
    run_ok(
        as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(dest)
            .args(["-m", "immediate", "stop"]),
    );
    took
}

/// Streams the endpoint's WAL into `archive` as its replication role (the
/// only role its `pg_hba.conf` lets replicate).
fn receive_wal(port: u16, archive: &Path, replication: &str) -> Child {
    std::fs::create_dir_all(archive).unwrap();
    give_to_postgres(archive);
    as_postgres(&format!("{PG_BIN}/pg_receivewal"))
        .args(["-h", "127.0.0.1", "-U", "sediment_replication"])
        .args(["-p", &port.to_string()])
        .env("PGPASSWORD", replication)
        .arg("-D")
        .arg(archive)
        .args(["--no-loop", "--no-sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
#[ignore = "benchmark: minutes and ~3 GB of disk; see the module docs"]
fn lazy_start_vs_pitr_and_tps() {
    let _serial = common::serial();
    let scale = env_u64("LAZY_BENCH_SCALE", 70);
    let secs = env_u64("LAZY_BENCH_SECS", 180);
    let tps_secs = env_u64("LAZY_BENCH_TPS_SECS", 20);
    let with_full = env_u64("LAZY_BENCH_FULL", 1) != 0;
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    // `--full`: the PITR baseline must not depend on lazy fill.
    let main = sediment.endpoint("main", &["--full"]);
    let begun = Instant::now();
    run_ok(&mut pgbench(main, &["-i", "-q", "-s", &scale.to_string()]));
    println!(
        "pgbench -i -s {scale}: {:.1} s",
        begun.elapsed().as_secs_f64()
    );

    let info = sediment.endpoint_info("main");
    let password = info["password"].as_str().unwrap().to_owned();
    let replication = info["replication_password"].as_str().unwrap().to_owned();
    let base = scratch.path().join("base");
    run_ok(
        Command::new(format!("{PG_BIN}/pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "sediment_replication"])
            .args(["-p", &main.to_string()])
            .env("PGPASSWORD", &replication)
            .arg("-D")
            .arg(&base)
            .args(["-X", "stream", "-c", "fast", "--no-sync", "--no-manifest"]),
    );
    let archive = scratch.path().join("archive");
    let mut receiver = receive_wal(main, &archive, &replication);
    let mut history = pgbench(main, &["-c", "4", "-j", "2", "-T", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(secs * 2 / 3));
    let lsn = psql(main, "SELECT pg_current_wal_lsn()").trim().to_owned();
    assert!(history.wait().unwrap().success());
    psql(
        main,
        "SELECT pg_switch_wal(); CREATE TABLE after_history (x int);",
    );
    std::thread::sleep(Duration::from_secs(2));
    // The child is pg_receivewal itself (no `runuser` in between): SIGINT
    // makes it finish the segment and exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(receiver.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let _ = receiver.wait();
    let timeline = sediment.timeline_id("main");
    sediment.api().wait_ingested(&tenant, &timeline, &lsn);
    println!("history: {secs} s of pgbench -c 4; target LSN {lsn}");

    let (lazy_secs, lazy_port) = branch_and_start(&sediment, "pitr-lazy", &lsn, &[]);
    let full_secs =
        with_full.then(|| branch_and_start(&sediment, "pitr-full", &lsn, &["--full"]).0);
    let pitr_dir = scratch.path().join("pitr");
    let pitr_secs = pitr(&base, &archive, &pitr_dir, &lsn, &password);
    // A whole copy of the database: give the disk back before the next runs.
    let _ = std::fs::remove_dir_all(&pitr_dir);
    let count = "SELECT count(*) FROM pgbench_accounts";
    assert_eq!(psql(lazy_port, count).trim(), (scale * 100_000).to_string());
    let full_text = full_secs.map_or("not run".to_owned(), |s| format!("{s:.2} s"));
    println!("CLI call to accepting connections at {lsn}: lazy {lazy_secs:.2} s, full {full_text}");
    println!(
        "PostgreSQL PITR of the same point: {pitr_secs:.2} s; PITR / lazy = {:.1}x",
        pitr_secs / lazy_secs
    );
    let started = if with_full {
        &["pitr-lazy", "pitr-full", "main"][..]
    } else {
        &["pitr-lazy", "main"][..]
    };
    for name in started {
        sediment.json(&["endpoint", "stop", name]);
    }

    let read_only: &[(&str, &[&str])] = if with_full {
        &[("ro-lazy", &[]), ("ro-full", &["--full"])]
    } else {
        &[("ro-lazy", &[])]
    };
    for &(name, extra) in read_only {
        drop_caches();
        let mut args = vec!["--lsn", lsn.as_str()];
        args.extend_from_slice(extra);
        let port = sediment.endpoint(name, &args);
        let cold = tps(port, tps_secs);
        let warm = tps(port, tps_secs);
        println!("pgbench -S -c 4 {tps_secs} s on {name}: cold {cold:.0} tps, warm {warm:.0} tps");
        sediment.json(&["endpoint", "stop", name]);
    }
    sediment.shutdown();
}
