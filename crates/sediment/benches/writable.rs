//! Writable endpoints, measured end to end with real processes.
//!
//! 1. Ingest lag under `pgbench -c 4`: repeatedly reads the endpoint's WAL
//!    flush LSN and times how long until the pageserver's `last_record_lsn`
//!    reaches it (what a branch at "now" has to wait for); also the byte
//!    distance between the two at each sample. Prints p50/p90/p99/max, and
//!    the time of the probe itself (one timeline info call, which computes
//!    the logical size at the new head): a lag is known only to within it.
//!    Next to it, PostgreSQL's own measurement: `pg_stat_replication`'s
//!    `replay_lag` and `flush_lag` for the pageserver's connection, sampled
//!    every 20 ms by one `psql \watch`. The walsender times each WAL
//!    position from its local flush to the standby's report that it was
//!    flushed / applied (the receiver reports `apply` = the timeline's last
//!    record as soon as it moves), so no probe's latency is in it.
//! 2. Time to a running endpoint at a past LSN (`sediment endpoint start
//!    --lsn`: base backup from the pageserver + postmaster start) next to
//!    `pg_basebackup -X stream -c fast` of the live primary alone (which
//!    does not even include starting the copy). Median of three each.
//!
//! `cargo bench -p sediment --bench writable` (release build of sediment and
//! pageserver). `SEDIMENT_BENCH_SCALE` (default 10) and
//! `SEDIMENT_BENCH_SECS` (default 30) size the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{lsn_value, psql, Sediment, PG_BIN};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(label: &str, unit: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "{label}: n={} p50={:.1}{unit} p90={:.1}{unit} p99={:.1}{unit} max={:.1}{unit}",
        values.len(),
        percentile(&values, 50.0),
        percentile(&values, 90.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(f64::NAN),
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let scale = env_u64("SEDIMENT_BENCH_SCALE", 10);
    let secs = env_u64("SEDIMENT_BENCH_SECS", 30);
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let timeline = sediment.timeline_id("main");
    let main = sediment.endpoint("main", &[]);
    let pgbench = |args: &[&str]| {
        let mut command = common::client("pgbench", main);
        command
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &main.to_string()])
            .args(args)
            .arg("postgres");
        command
    };
    let init = pgbench(&["-i", "-q", "-s", &scale.to_string()])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");

    let mut bench = pgbench(&["-c", "4", "-j", "2", "-T", &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // PostgreSQL's own lag figures, from one long-lived psql.
    let mut watch = common::client("psql", main)
        .args(["-X", "-A", "-t", "-q", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &main.to_string(), "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = watch.stdin.take().unwrap();
        stdin
            .write_all(
                b"SELECT extract(epoch FROM replay_lag) * 1000, \
                 extract(epoch FROM flush_lag) * 1000 FROM pg_stat_replication;\n\\watch 0.02\n",
            )
            .unwrap();
    }
    let (mut lag_ms, mut lag_kib) = (Vec::new(), Vec::new());
    // The probe's own cost: a lag is known only to within one API call.
    let (mut call_ms, mut caught_up_at_first_poll) = (Vec::new(), 0usize);
    let mut past_lsn = None;
    let started = Instant::now();
    while bench.try_wait().unwrap().is_none() {
        let target = psql(main, "SELECT pg_current_wal_flush_lsn()");
        let asked = Instant::now();
        let mut first_poll = true;
        loop {
            let called = Instant::now();
            let info = api.timeline(&tenant, &timeline);
            call_ms.push(called.elapsed().as_secs_f64() * 1000.0);
            let head = lsn_value(info["last_record_lsn"].as_str().unwrap());
            if first_poll {
                lag_kib.push(lsn_value(&target).saturating_sub(head) as f64 / 1024.0);
                caught_up_at_first_poll += usize::from(head >= lsn_value(&target));
                first_poll = false;
            }
            if head >= lsn_value(&target) {
                lag_ms.push(asked.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            assert!(asked.elapsed() < Duration::from_secs(120), "ingest stalled");
            std::thread::sleep(Duration::from_millis(2));
        }
        if past_lsn.is_none() && started.elapsed() > Duration::from_secs(secs / 2) {
            past_lsn = Some(target);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = bench.wait_with_output().unwrap();
    watch.kill().unwrap();
    let watched = watch.wait_with_output().unwrap();
    let (mut replay_ms, mut flush_ms) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&watched.stdout).lines() {
        // `replay|flush`; a figure is empty (NULL) until the first reply
        // that covers a timed position.
        let mut figures = line.split('|').map(|f| f.parse::<f64>().ok());
        if let (Some(replay), Some(flush)) = (figures.next(), figures.next()) {
            replay_ms.extend(replay);
            flush_ms.extend(flush);
        }
    }
    let tps = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("tps ?")
        .to_owned();
    println!("pgbench -c 4 -T {secs} on scale {scale}: {tps}");
    summary(
        "ingest lag (flush on primary -> last_record_lsn)",
        " ms",
        lag_ms,
    );
    let samples = lag_kib.len();
    summary("ingest distance at sample time", " KiB", lag_kib);
    println!(
        "caught up at the first poll: {caught_up_at_first_poll} of {samples} samples \
         (their lag is the probe's own time)"
    );
    summary("probe: one timeline info call", " ms", call_ms);
    summary(
        "ingest lag as PostgreSQL measures it (pg_stat_replication.replay_lag, every 20 ms)",
        " ms",
        replay_ms,
    );
    summary(
        "commit wait as PostgreSQL measures it (pg_stat_replication.flush_lag)",
        " ms",
        flush_ms,
    );

    let past = past_lsn.expect("no mid-run LSN sampled");
    let mut endpoint_secs = Vec::new();
    for attempt in 0..3 {
        let name = format!("past{attempt}");
        let begun = Instant::now();
        sediment.endpoint(&name, &["--lsn", &past]);
        endpoint_secs.push(begun.elapsed().as_secs_f64());
        sediment.json(&["endpoint", "stop", &name, "--destroy"]);
    }
    let mut basebackup_secs = Vec::new();
    let replication = sediment.endpoint_info("main")["replication_password"]
        .as_str()
        .unwrap()
        .to_owned();
    for attempt in 0..3 {
        let dest = scratch.path().join(format!("pg-basebackup-{attempt}"));
        let begun = Instant::now();
        common::run_ok(
            // Replication is for the endpoint's replication role only.
            Command::new(format!("{PG_BIN}/pg_basebackup"))
                .args(["-h", "127.0.0.1", "-U", "sediment_replication"])
                .args(["-p", &main.to_string()])
                .env("PGPASSWORD", &replication)
                .arg("-D")
                .arg(&dest)
                .args(["-X", "stream", "-c", "fast", "--no-sync", "--no-manifest"]),
        );
        basebackup_secs.push(begun.elapsed().as_secs_f64());
        std::fs::remove_dir_all(&dest).unwrap();
    }
    println!(
        "running endpoint at past LSN {past} (sediment endpoint start --lsn): median {:.2} s {endpoint_secs:.2?}",
        median(endpoint_secs.clone())
    );
    println!(
        "pg_basebackup -X stream -c fast of the live primary (no start): median {:.2} s {basebackup_secs:.2?}",
        median(basebackup_secs.clone())
    );
    sediment.shutdown();
}
