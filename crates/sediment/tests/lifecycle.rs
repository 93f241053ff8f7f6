//! The layer lifecycle end to end (issue #11), with real processes: the
//! `sediment` CLI, the `pageserver` daemon and stock PostgreSQL 15.
//!
//! Default run (small scale, short periods: compaction every 1 s, GC every
//! 2 s):
//! 1. pgbench on `main` with samples taken while it runs; after several
//!    background compaction and GC cycles the GC cutoff has moved, layer
//!    files were deleted, a branch made at the start reads exactly what was
//!    sampled there, every sample above the cutoff reads back exactly, one
//!    below it is refused; sizes and metrics report the work.
//! 2. kill -9 of the pageserver at random moments while the background
//!    task flushes, compacts and collects: every restart serves the same
//!    bytes at a recorded LSN.
//!
//! Full size (`#[ignore]`, minutes to tens of minutes):
//! `cargo test -p sediment --test lifecycle -- --ignored --nocapture`
//! runs the numbers: pgbench -s 50 and 10 min of -c 4 with
//! `pitr_interval` 1 min (physical size of main ≤ 1.0× the databases; a
//! branch that only scanned `pgbench_accounts` ≤ 10% of them, base backups
//! at the head after 1 and after 10 minutes within 1.2× of each other), and
//! 20 kills.
//! `SEDIMENT_LIFECYCLE_SCALE`, `SEDIMENT_LIFECYCLE_SECS` and
//! `SEDIMENT_LIFECYCLE_KILLS` override the sizes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lsn_value, psql, Sediment};
use serde_json::{json, Value};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

fn pgbench_init(port: u16, scale: u64) {
    let output = pgbench_command(port, &["-i", "-q", "-s", &scale.to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A consistent observation of the pgbench tables and the LSN separating
/// the transactions it sees from later ones (SHARE locks wait for the
/// writers in flight and hold off new ones).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    lsn: String,
    balance: i64,
    history: i64,
}

fn sample(port: u16) -> Sample {
    let row = psql(
        port,
        "BEGIN;
         LOCK TABLE pgbench_accounts, pgbench_history IN SHARE MODE;
         SELECT pg_current_wal_insert_lsn(),
                (SELECT sum(abalance) FROM pgbench_accounts),
                (SELECT count(*) FROM pgbench_history);
         COMMIT;",
    );
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(fields.len(), 3, "{row}");
    Sample {
        lsn: fields[0].to_owned(),
        balance: fields[1].parse().unwrap(),
        history: fields[2].parse().unwrap(),
    }
}

fn values(port: u16) -> (i64, i64) {
    let row = psql(
        port,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history)",
    );
    let (balance, history) = row.split_once('|').unwrap();
    (balance.parse().unwrap(), history.parse().unwrap())
}

/// Sets tenant settings through the API and checks they read back.
fn configure(sediment: &Sediment, tenant: &str, settings: Value) {
    let api = sediment.api();
    let mut body = settings.clone();
    body["tenant_id"] = json!(tenant);
    let (status, answer) = api.put("/v1/tenant/config", &body);
    assert_eq!(status, 200, "{answer}");
    let (status, config) = api.get(&format!("/v1/tenant/{tenant}/config"));
    assert_eq!(status, 200, "{config}");
    for (key, value) in settings.as_object().unwrap() {
        assert_eq!(&config["tenant_specific_overrides"][key], value, "{config}");
        assert_eq!(&config["effective_config"][key], value, "{config}");
    }
}

/// Settings for the lean runs: every background period short.
fn short_periods(pitr: &str) -> Value {
    json!({
        "compaction_period": "1s",
        "gc_period": "2s",
        "pitr_interval": pitr,
        "gc_horizon": 1,
        "checkpoint_timeout": "1s",
        "checkpoint_distance": 4 * 1024 * 1024,
        "image_creation_threshold": 2,
    })
}

/// A metric's value (summed over label sets matching `selector`).
fn metric(sediment: &Sediment, name: &str, selector: &str) -> f64 {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", sediment.http_port))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(selector))
        .filter(|line| line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sum of `pg_database_size` over the endpoint's databases.
fn database_bytes(port: u16) -> u64 {
    psql(
        port,
        "SELECT sum(pg_database_size(datname))::bigint FROM pg_database WHERE datallowconn",
    )
    .parse()
    .unwrap()
}

/// Waits (up to `limit`) until `check` holds for the timeline info.
fn wait_for(
    sediment: &Sediment,
    tenant: &str,
    timeline: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let api = sediment.api();
    let started = Instant::now();
    loop {
        let info = api.timeline(tenant, timeline);
        if check(&info) {
            return info;
        }
        assert!(started.elapsed() < limit, "{what}: {info}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn background_compaction_and_gc_keep_every_retained_point_exact() {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    configure(&sediment, &tenant, short_periods("10s"));
    let main = sediment.endpoint("main", &[]);
    let timeline = sediment.timeline_id("main");
    pgbench_init(main, 2);
    let first = sample(main);
    api.wait_ingested(&tenant, &timeline, &first.lsn);
    sediment.json(&[
        "timeline",
        "branch",
        "--branch-name",
        "start",
        "--ancestor-start-lsn",
        &first.lsn,
    ]);

    let bench = spawn_pgbench(main, &["-c", "4", "-j", "2", "-T", "12"]);
    let mut samples = Vec::new();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(2));
        samples.push(sample(main));
    }
    finish_pgbench(bench);
    let last = sample(main);
    api.wait_ingested(&tenant, &timeline, &last.lsn);

    // Several compaction and GC cycles: the cutoff follows pitr_interval
    // (10 s) past the first samples, and GC deletes what images cover.
    wait_for(
        &sediment,
        &tenant,
        &timeline,
        Duration::from_secs(90),
        "GC cutoff never passed the second sample",
        |info| {
            lsn_value(info["latest_gc_cutoff_lsn"].as_str().unwrap()) > lsn_value(&samples[1].lsn)
        },
    );
    let started = Instant::now();
    while metric(&sediment, "pageserver_gc_layers_removed_total", "") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "GC never deleted a layer file"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        metric(
            &sediment,
            "pageserver_background_runs_total",
            "kind=\"compaction\",outcome=\"ok\""
        ) >= 3.0
    );
    assert!(
        metric(
            &sediment,
            "pageserver_background_runs_total",
            "kind=\"gc\",outcome=\"ok\""
        ) >= 2.0
    );
    assert!(
        metric(
            &sediment,
            "pageserver_background_runs_total",
            "kind=\"image\""
        ) >= 1.0
    );
    assert!(metric(&sediment, "pageserver_gc_bytes_removed_total", "") > 0.0);
    assert_eq!(
        metric(
            &sediment,
            "pageserver_background_runs_total",
            "outcome=\"error\""
        ),
        0.0
    );
    assert!(metric(&sediment, "pageserver_layers", "level=\"image\"") >= 1.0);

    // A longer pitr_interval takes effect live: the cutoff stops where it
    // is (commits older than the window are not known), so the points
    // above it stay readable while they are checked one by one.
    configure(&sediment, &tenant, short_periods("1h"));
    std::thread::sleep(Duration::from_secs(3));
    let info = api.timeline(&tenant, &timeline);
    let cutoff = lsn_value(info["latest_gc_cutoff_lsn"].as_str().unwrap());
    let mut failures = Vec::new();
    // The branch point stays exact however far the cutoff moved.
    let start = sediment.endpoint("start", &["--branch-name", "start"]);
    if values(start) != (first.balance, first.history) {
        failures.push(format!(
            "branch at {}: {:?}, expected {first:?}",
            first.lsn,
            values(start)
        ));
    }
    sediment.json(&["endpoint", "stop", "start", "--destroy"]);
    // Every recorded point above the cutoff reads back exactly.
    let retained: Vec<&Sample> = samples
        .iter()
        .chain([&last])
        .filter(|s| lsn_value(&s.lsn) >= cutoff)
        .collect();
    assert!(!retained.is_empty(), "cutoff {info} passed every sample");
    for (i, s) in retained.iter().enumerate() {
        let name = format!("ro{i}");
        let port = sediment.endpoint(&name, &["--lsn", &s.lsn]);
        if values(port) != (s.balance, s.history) {
            failures.push(format!(
                "main at {}: {:?}, expected {s:?}",
                s.lsn,
                values(port)
            ));
        }
        sediment.json(&["endpoint", "stop", &name, "--destroy"]);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Below the cutoff, branching is refused with the reason.
    let refused = sediment.fails(&[
        "timeline",
        "branch",
        "--branch-name",
        "too-old",
        "--ancestor-start-lsn",
        &samples[0].lsn,
    ]);
    assert!(refused.contains("GC cutoff"), "{refused}");

    // Sizes: the model counts main's snapshot, its retained WAL and the
    // branch's; the physical size is what the layer files hold.
    let (status, size) = api.get(&format!("/v1/tenant/{tenant}/size"));
    assert_eq!(status, 200, "{size}");
    let info = api.timeline(&tenant, &timeline);
    let logical = info["current_logical_size"].as_u64().unwrap();
    let physical = info["current_physical_size"].as_u64().unwrap();
    let model = size["size"].as_u64().unwrap();
    assert!(
        model >= logical,
        "size {model} below the logical size {logical}: {size}"
    );
    let databases = database_bytes(main);
    eprintln!(
        "main: physical {physical} B, logical {logical} B, databases {databases} B, \
         physical/databases {:.2}, tenant size {model} B",
        physical as f64 / databases as f64
    );
    let (status, synthetic) = api.get(&format!("/v1/tenant/{tenant}/synthetic_size"));
    assert_eq!(status, 200, "{synthetic}");
    assert_eq!(synthetic["size"], size["size"]);
    sediment.shutdown();
}

/// Recorded bytes of every relation file at `lsn` (base backup from the
/// page service).
fn files_at(sediment: &Sediment, tenant: &str, timeline: &str, lsn: &str) -> Vec<(String, u32)> {
    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("backup");
    common::base_backup(sediment.pg_port, tenant, timeline, Some(lsn), &target);
    common::relation_files(&target)
        .into_iter()
        .map(|(name, bytes)| (name, crc32(&bytes)))
        .collect()
}

/// Seconds a base backup of the timeline at `lsn` takes (once ingested).
fn basebackup_secs(sediment: &Sediment, tenant: &str, timeline: &str, lsn: &str) -> f64 {
    sediment.api().wait_ingested(tenant, timeline, lsn);
    let dest = tempfile::tempdir().unwrap();
    let started = Instant::now();
    common::base_backup(
        sediment.pg_port,
        tenant,
        timeline,
        Some(lsn),
        &dest.path().join("b"),
    );
    started.elapsed().as_secs_f64()
}

/// Cumulative counts of `pageserver_reconstruct_records` buckets, as
/// (upper bound, count) with `u64::MAX` for `+Inf`.
fn reconstruct_buckets(sediment: &Sediment) -> Vec<(u64, f64)> {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", sediment.http_port))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("pageserver_reconstruct_records_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                u64::MAX
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.parse().ok()?))
        })
        .collect()
}

/// The bucket bound holding the 99th percentile of the reconstructions
/// counted between two snapshots of [`reconstruct_buckets`].
fn p99_records(before: &[(u64, f64)], after: &[(u64, f64)]) -> u64 {
    let diff: Vec<(u64, f64)> = after
        .iter()
        .zip(before)
        .map(|((bound, a), (_, b))| (*bound, a - b))
        .collect();
    let total = diff.last().map_or(0.0, |(_, count)| *count);
    diff.iter()
        .find(|(_, count)| *count >= total * 0.99)
        .map_or(0, |(bound, _)| *bound)
}

/// A bucket bound for the log (`+Inf` for the overflow bucket).
fn bucket_text(bound: u64) -> String {
    if bound == u64::MAX {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

/// Layer files under `dir` by kind: (L0-or-L1 deltas, images, bytes), and
/// a one-line listing for the log.
fn layer_summary(dir: &std::path::Path) -> String {
    let mut names = Vec::new();
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.starts_with("delta_") || name.starts_with("image_") {
                bytes += entry.metadata().map_or(0, |m| m.len());
                names.push(name);
            }
        }
    }
    let deltas: Vec<&String> = names.iter().filter(|n| n.starts_with("delta_")).collect();
    let mut lsn_ranges: Vec<&str> = deltas
        .iter()
        .filter_map(|n| n.split_once("__").map(|(_, l)| l))
        .collect();
    lsn_ranges.sort_unstable();
    lsn_ranges.dedup();
    format!(
        "{} deltas in {} LSN ranges, {} images, {} MB",
        deltas.len(),
        lsn_ranges.len(),
        names.len() - deltas.len(),
        bytes >> 20
    )
}

/// A checksum that keeps the comparison small (FNV-1a, 32 bits).
fn crc32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// A pseudo-random delay in `0..limit_ms` (the clock's nanoseconds).
fn random_ms(limit_ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos.wrapping_mul(2_654_435_761)) % limit_ms
}

fn kill_pageserver(sediment: &Sediment) {
    let pid = nix::unistd::Pid::from_raw(sediment.pageserver_pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    // Wait until it is gone, so the restart does not find it alive.
    let started = Instant::now();
    while nix::sys::signal::kill(pid, None).is_ok()
        && std::fs::read(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !String::from_utf8_lossy(&stat).contains(") Z "))
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kills_serve_identical_data(kills: u64) {
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let mut settings = short_periods("30s");
    settings["gc_period"] = json!("1s");
    configure(&sediment, &tenant, settings);
    // Free ports, not the CLI's default from 55432 up: another test run on
    // the machine may hold those.
    let main_port = common::free_port().to_string();
    let main = sediment.endpoint("main", &["--port", &main_port]);
    let timeline = sediment.timeline_id("main");
    pgbench_init(main, 1);
    for round in 0..kills {
        finish_pgbench(spawn_pgbench(main, &["-c", "2", "-T", "2"]));
        let recorded = sample(main);
        api.wait_ingested(&tenant, &timeline, &recorded.lsn);
        let before = files_at(&sediment, &tenant, &timeline, &recorded.lsn);
        // Writes keep flushes, image creation and GC busy while it dies.
        let bench = spawn_pgbench(main, &["-c", "2", "-T", "2"]);
        std::thread::sleep(Duration::from_millis(300 + random_ms(1500)));
        kill_pageserver(&sediment);
        common::run_ok(&mut sediment.cmd(&["start"]));
        finish_pgbench(bench);
        api.wait_ingested(&tenant, &timeline, &recorded.lsn);
        let after = files_at(&sediment, &tenant, &timeline, &recorded.lsn);
        assert!(
            before == after,
            "round {round}: the files at {} changed across a kill",
            recorded.lsn
        );
    }
    let last = sample(main);
    api.wait_ingested(&tenant, &timeline, &last.lsn);
    let reader_port = common::free_port().to_string();
    let reader = sediment.endpoint("reader", &["--lsn", &last.lsn, "--port", &reader_port]);
    assert_eq!(values(reader), (last.balance, last.history));
    sediment.shutdown();
}

#[test]
fn pageserver_killed_during_background_work_serves_identical_data() {
    kills_serve_identical_data(env_u64("SEDIMENT_LIFECYCLE_KILLS", 3));
}

/// `cargo test -p sediment --test lifecycle -- --ignored --nocapture
/// twenty_kills`.
#[test]
#[ignore = "20 kills take several minutes"]
fn twenty_kills_during_background_work_serve_identical_data() {
    kills_serve_identical_data(env_u64("SEDIMENT_LIFECYCLE_KILLS", 20));
}

/// The full-size numbers. `cargo test -p sediment --test lifecycle
/// -- --ignored --nocapture full_size` (about 15 minutes; scale and seconds
/// from `SEDIMENT_LIFECYCLE_SCALE` / `SEDIMENT_LIFECYCLE_SECS`; a quick
/// reproduction is SCALE=10 SECS=150, ~9 min). The branch bound needs the
/// compressed layer format (storage v2). Asserts, besides sizes: base backup
/// at the head after the run ≤ 1.2× the one after 1 min, and p99 records
/// applied per reconstructed page (from `pageserver_reconstruct_records`,
/// over each base backup) ≤ the default `image_creation_threshold` (3).
/// Prints the layer files at both points (deltas, LSN ranges, images).
///
/// Known to fail the base-backup and p99 bounds (diagnosis, 2026-12-04,
/// SCALE=10 SECS=150): a head read replays every record of the page since
/// its newest image, and images are only built from flushed layers once
/// `image_creation_threshold` delta *layers* sit above them, while the
/// open layer may hold 64 MiB of values / 256 MiB of WAL / 10 min. With the
/// defaults: 2.09 s → 13.97 s, p99 > 128 records at both points, 1 delta
/// file after the run (nothing flushed during pgbench). With
/// `SEDIMENT_LIFECYCLE_CHECKPOINT_MIB=16` (and a 10 s timeout) the late
/// backup took 4.10 s with p99 ≤ 8 records. The bound needs depth counted
/// in records per key, not layers (e.g. materialized head images).
///
/// With materialised head images (storage `materialized`, rebuilt every
/// background tick; 2026-12-04, SCALE=10 SECS=150, debug build, loaded
/// machine): 11.87 s (p99 ≤ 8) after 1 min, 4.09 s (p99 bucket +Inf) after
/// 150 s — the time bound holds, the p99 bound does not. The histogram is
/// repository-wide, so reconstructions by concurrent image creation and the
/// materialising pass itself are counted with the backup's; separating
/// them (a per-request count) is the next step.
///
/// Separated since (`pageserver_reconstruct_records` now counts client reads
/// only; background work goes to `pageserver_background_reconstruct_records`;
/// same scale, CI running alongside): 2.01 s (p99 ≤ 8) after 1 min, 2.41 s
/// (p99 bucket +Inf) after 150 s with 0 delta files and 4 image layers — so
/// the long chains are in the open in-memory layer and the materialising
/// pass does not cover them; the background-work hypothesis is disproved.
/// Next: log, per base backup, the keys that applied > 128 records (key
/// kind, relation, records in the open layer vs the newest materialised
/// entry) to see which pages the pass misses (its 2000-keys-per-pass cap,
/// the per-key counter reset, or keys read through an ancestor).
///
/// Cause found (2026-12-04): the materialised cache (128 MiB) is smaller
/// than the pages pgbench keeps touching (~16k accounts pages plus indexes
/// and history); the clock evicted floors, the pass had reset their
/// counters, and a read then replayed every record since the last image
/// layer. Fix: the pass (and a read that applied ≥ 3 records) also puts
/// the image in place of the key's newest record in the open layer, so the
/// chain ends in the layer whatever the cache evicts. Same scale, debug
/// build: 1.81 s (p99 ≤ 2 records) after 1 min, 0.77 s (p99 ≤ 1 record)
/// after 150 s; main physical 0.13× the databases (179.7 MB), scan branch
/// 334 B; test passes (393 s). Layer files peak at 368 MB before GC (the
/// images in deltas), GC brings main back to 23 MB. With the open layer
/// flushed before measuring (as now): 1.36 s (p99 ≤ 1) → 1.37 s (p99 ≤ 2),
/// main physical 59.8 MB = 0.34× the databases (177.5 MB), scan branch
/// 904 B; passes (506 s).
#[test]
#[ignore = "pgbench -s 50 and 10 minutes of -c 4"]
fn full_size_main_stays_within_the_database_and_a_scan_branch_within_ten_percent() {
    let scale = env_u64("SEDIMENT_LIFECYCLE_SCALE", 50);
    let secs = env_u64("SEDIMENT_LIFECYCLE_SECS", 600);
    let _serial = common::serial();
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    let api = sediment.api();
    let mut settings = json!({"pitr_interval": "1m", "gc_horizon": 1, "gc_period": "10s", "compaction_period": "5s"});
    // Diagnosis knob: head reads replay the open layer's history, which
    // the freeze policy (default 256 MiB / 10 min) bounds.
    if let Some(mib) = std::env::var("SEDIMENT_LIFECYCLE_CHECKPOINT_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        settings["checkpoint_distance"] = json!(mib << 20);
        settings["checkpoint_timeout"] = json!("10s");
    }
    configure(&sediment, &tenant, settings.clone());
    let main = sediment.endpoint("main", &[]);
    let timeline = sediment.timeline_id("main");
    pgbench_init(main, scale);
    // Base backups at the head after 1 minute and after the whole run take
    // about as long: reads do not replay ever longer histories.
    finish_pgbench(spawn_pgbench(main, &["-c", "4", "-j", "2", "-T", "60"]));
    let early_lsn = sample(main).lsn;
    eprintln!("after 1 min: {}", layer_summary(&sediment.workdir));
    let before = reconstruct_buckets(&sediment);
    let early = basebackup_secs(&sediment, &tenant, &timeline, &early_lsn);
    let early_p99 = p99_records(&before, &reconstruct_buckets(&sediment));
    let early_p99_text = bucket_text(early_p99);
    let rest = secs.saturating_sub(60).max(1).to_string();
    finish_pgbench(spawn_pgbench(main, &["-c", "4", "-j", "2", "-T", &rest]));
    let last = sample(main);
    eprintln!("after {secs} s: {}", layer_summary(&sediment.workdir));
    let before = reconstruct_buckets(&sediment);
    let late = basebackup_secs(&sediment, &tenant, &timeline, &last.lsn);
    let late_p99 = p99_records(&before, &reconstruct_buckets(&sediment));
    let late_p99_text = bucket_text(late_p99);
    eprintln!(
        "base backup at the head: {early:.2} s (p99 ≤ {early_p99_text} records) after 1 min, \
         {late:.2} s (p99 ≤ {late_p99_text} records) after {secs} s"
    );
    // Every bound is checked at the end, so one miss still reports the rest.
    let mut misses = Vec::new();
    if late > early * 1.2 {
        misses.push(format!(
            "base backup {late:.2} s vs {early:.2} s after 1 min"
        ));
    }
    // Default image_creation_threshold (3), which has a histogram bucket
    // of its own (0,1,2,3,4,8,...).
    for (when, p99) in [("1 min", early_p99), ("the end", late_p99)] {
        if p99 > 3 {
            misses.push(format!(
                "p99 records per reconstructed page at {when}: bucket le={} > 3",
                bucket_text(p99)
            ));
        }
    }
    api.wait_ingested(&tenant, &timeline, &last.lsn);
    let databases = database_bytes(main);
    // The physical size counts layer files only; with the default
    // checkpoint_timeout (10 min) the whole run could still sit in the open
    // in-memory layer (its WAL in the local WAL store) when it is measured,
    // which made main look 0.11x the databases. Flush it first: a short
    // checkpoint_timeout from here on, and wait for disk_consistent_lsn.
    settings["checkpoint_timeout"] = json!("10s");
    configure(&sediment, &tenant, settings);
    wait_for(
        &sediment,
        &tenant,
        &timeline,
        Duration::from_secs(300),
        "open layer flushed",
        |info| lsn_value(info["disk_consistent_lsn"].as_str().unwrap()) >= lsn_value(&last.lsn),
    );

    // A branch whose endpoint only scans, then stops.
    sediment.json(&["timeline", "branch", "--branch-name", "scan"]);
    let scan = sediment.endpoint("scan", &["--branch-name", "scan"]);
    psql(scan, "SELECT sum(abalance) FROM pgbench_accounts");
    sediment.json(&["endpoint", "stop", "scan"]);
    let scan_timeline = sediment.timeline_id("scan");

    // GC after the pitr window: wait for the cutoff to pass the last sample
    // and a few more GC periods.
    wait_for(
        &sediment,
        &tenant,
        &timeline,
        Duration::from_secs(600),
        "GC cutoff",
        |info| lsn_value(info["latest_gc_cutoff_lsn"].as_str().unwrap()) >= lsn_value(&last.lsn),
    );
    std::thread::sleep(Duration::from_secs(60));
    let physical = api.timeline(&tenant, &timeline)["current_physical_size"]
        .as_u64()
        .unwrap();
    let branch = api.timeline(&tenant, &scan_timeline)["current_physical_size"]
        .as_u64()
        .unwrap();
    eprintln!(
        "databases {databases} B; main physical {physical} B ({:.2}x); scan branch {branch} B ({:.1}%)",
        physical as f64 / databases as f64,
        100.0 * branch as f64 / databases as f64
    );
    if physical > databases {
        misses.push(format!("main {physical} B > databases {databases} B"));
    }
    if branch * 10 > databases {
        misses.push(format!("scan branch {branch} B > 10% of {databases} B"));
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
    sediment.shutdown();
}
