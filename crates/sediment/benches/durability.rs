//! What durability on the pageserver costs a writer, measured against stock
//! PostgreSQL 15 on the same machine in the same run.
//!
//! Three servers with the same settings that matter (`synchronous_commit =
//! on`, `wal_level = replica`, `wal_compression = zstd`, `shared_buffers =
//! 128MB`, no `wal_consistency_checking`; printed at start). Each makes a
//! commit durable with one fsync on its critical path:
//!
//! - **endpoint**: a writable sediment endpoint; its commits wait until the
//!   pageserver (its synchronous standby) reports the commit record fsynced.
//!   It runs with `fsync = off` and `full_page_writes = off` as every
//!   endpoint does: its data directory is disposable, rebuilt from the
//!   pageserver on every start, and the pageserver redoes every page change
//!   natively, so neither a local fsync nor torn-page images protect
//!   anything;
//! - **solo**: a vanilla primary with no standby at all;
//! - **sync**: a vanilla primary with a stock synchronous standby
//!   (`pg_basebackup`'d, streaming, named in `synchronous_standby_names`).
//!
//! Part A: `pgbench -c 4 -j 2` (scale `SEDIMENT_BENCH_SCALE`, default 20) on
//! each, interleaved (endpoint, solo, sync, endpoint, solo, sync, ...), a
//! CHECKPOINT before every run; tps of each and the ratios endpoint/solo
//! and endpoint/sync. A fourth run per round, the endpoint with
//! `synchronous_commit = local` sessions (still streaming to the pageserver,
//! not waiting for it), splits the endpoint's cost into the commit wait and
//! the rest (walsender, ingest on the same cores).
//!
//! Part B, the index workload: a table with a jsonb GIN, a tsvector GIN, a
//! tsrange GiST, a point SP-GiST and a hash index (20,000 rows), CHECKPOINT,
//! then `pgbench -n -c 4 -j 2` of single-row inserts on the endpoint and on
//! the sync primary, interleaved; WAL bytes per transaction (LSN distance /
//! transactions pgbench processed), tps, and the ratios.
//!
//! `cargo bench -p sediment --bench durability` (release build of sediment and
//! pageserver). `SEDIMENT_BENCH_SECS` (default 30) is each run's duration,
//! `SEDIMENT_BENCH_ROUNDS` (default 2) the number of interleaved rounds. On a
//! loaded machine (or under `nice`) only the ratios are indicative.
//! `SEDIMENT_BENCH_SKIP_B=1` runs part A only. It first prints what an
//! fdatasync costs this disk back to back and after a short idle (see
//! `main`), and after a short idle on the CPU that takes the disk's
//! completion interrupts and on another one. `SEDIMENT_BENCH_CPU=1` also
//! prints, for every run of part A, where the machine's CPU went: per
//! Postgres process kind (backend, walsender, walwriter, ...), per
//! pageserver thread, and pgbench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{lsn_value, Sediment};
use testkit::{PgCluster, PgClusterBuilder, PgInstall, PgTempDir};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The settings of a writable endpoint that decide what a commit costs, set
/// the same on the vanilla servers, except `fsync` and `full_page_writes`:
/// on for them, whose data directory is all they have (testkit defaults to
/// `fsync = off`).
const VANILLA_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("wal_level", "replica"),
    ("wal_compression", "zstd"),
    ("shared_buffers", "128MB"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("wal_keep_size", "256MB"),
    ("max_prepared_transactions", "10"),
];

/// Settings printed for every server so a reader can check like is compared
/// with like.
const SHOWN: &[&str] = &[
    "fsync",
    "synchronous_commit",
    "synchronous_standby_names",
    "wal_level",
    "wal_compression",
    "wal_consistency_checking",
    "full_page_writes",
    "shared_buffers",
    "wal_sync_method",
    "max_wal_size",
    "checkpoint_timeout",
    "commit_delay",
    "data_checksums",
    "wal_log_hints",
    "track_commit_timestamp",
    "wal_writer_delay",
];

/// Where pgbench and psql go: everything over TCP to 127.0.0.1 so the client
/// path is the same for all servers.
enum Server<'a> {
    Endpoint(u16),
    /// The endpoint, with sessions that do not wait for the pageserver
    /// (`synchronous_commit = local`): what streaming costs without the wait.
    EndpointLocal(u16),
    Vanilla(&'a PgCluster),
}

impl Server<'_> {
    fn command(&self, tool: &str) -> Command {
        match self {
            Server::Endpoint(port) => common::client(tool, *port),
            Server::EndpointLocal(port) => {
                let mut command = common::client(tool, *port);
                command.env("PGOPTIONS", "-c synchronous_commit=local");
                command
            }
            Server::Vanilla(cluster) => {
                let mut command = cluster.command(tool);
                command.env("PGHOST", "127.0.0.1");
                command
            }
        }
    }

    /// Runs `sql` fed on stdin (so VACUUM in a script works).
    fn psql(&self, sql: &str) -> String {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .command("psql")
            .args(["-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn pgbench_init(&self, scale: &str) {
        common::run_ok(
            self.command("pgbench")
                .args(["-i", "-q", "-s", scale])
                .arg("postgres"),
        );
    }

    /// Runs pgbench; returns (tps, transactions processed).
    fn pgbench(&self, args: &[&str]) -> (f64, u64) {
        let out = common::run_ok(self.command("pgbench").args(args).arg("postgres"));
        let tps = testkit::pgbench::parse_tps(&out).expect("pgbench printed no tps");
        let transactions = out
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|rest| rest.split(['/', ' ']).next()?.parse().ok())
            .expect("pgbench printed no transaction count");
        (tps, transactions)
    }

    fn show_settings(&self, label: &str) {
        let mut line = format!("{label:>8}:");
        for name in SHOWN {
            let value = self.psql(&format!("SHOW {name};"));
            line.push_str(&format!(" {name}={value:?}"));
        }
        println!("{line}");
    }
}

/// A vanilla primary with the endpoint's settings.
fn vanilla_primary() -> PgCluster {
    PgClusterBuilder::default()
        .settings(VANILLA_SETTINGS)
        .start()
        .expect("start vanilla primary")
}

/// A stock synchronous standby of `primary`: `pg_basebackup`, streaming
/// replication as `application_name = standby1`, same settings; the primary
/// then waits for it on commit. Returns the standby (and its directory).
fn sync_standby(primary: &PgCluster) -> PgCluster {
    let install = PgInstall::detect().unwrap();
    let root = PgTempDir::new_for(&install).unwrap();
    let data = primary.basebackup(&root, "standby").unwrap();
    std::fs::write(data.join("standby.signal"), b"").unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres application_name=standby1",
        primary.port()
    );
    let mut settings: Vec<(&str, &str)> = VANILLA_SETTINGS.to_vec();
    settings.push(("primary_conninfo", &conninfo));
    settings.push(("hot_standby", "on"));
    let mut standby = PgClusterBuilder::default()
        .settings(&settings)
        .adopt(root, "standby")
        .unwrap();
    standby.start().unwrap();
    primary
        .append_config("\nsynchronous_standby_names = 'standby1'\n")
        .unwrap();
    primary.psql("SELECT pg_reload_conf()").unwrap();
    wait_sync(&Server::Vanilla(primary), "standby1");
    standby
}

/// Waits until `name` is a synchronous standby of `server`.
fn wait_sync(server: &Server<'_>, name: &str) {
    let started = Instant::now();
    loop {
        let state = server.psql(&format!(
            "SELECT coalesce(max(sync_state), 'none') FROM pg_stat_replication \
             WHERE application_name = '{name}' AND state = 'streaming'"
        ));
        if state == "sync" {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} never became a synchronous standby (state {state})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CPU ticks (user + system, all threads) per kind of process on the
/// machine: Postgres processes by their title's kind (`postgres: walsender`),
/// pageserver threads by thread name, anything else by command name.
fn cpu_by_kind() -> std::collections::BTreeMap<String, u64> {
    let mut ticks = std::collections::BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in procs.flatten() {
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim().to_owned();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Children that exited (a session's backend, pgbench) count in
        // their parent's cutime/cstime.
        if let Some(children) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| stat_ticks(&stat, 13..15))
            .filter(|t| *t > 0)
        {
            let parent = if title.starts_with("postgres: ") || comm != "postgres" {
                comm.clone()
            } else {
                "postgres: postmaster".to_owned()
            };
            *ticks
                .entry(format!("{parent} (exited children)"))
                .or_insert(0) += children;
        }
        let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let Some(used) = stat_ticks(&stat, 11..13) else {
                continue;
            };
            let Some((name_part, _)) = stat.rsplit_once(") ") else {
                continue;
            };
            let thread = name_part.split_once('(').map_or("", |(_, n)| n);
            let kind = if comm == "pageserver" {
                format!("pageserver/{thread}")
            } else if let Some(rest) = title.strip_prefix("postgres: ") {
                // "postgres: walsender postgres 127.0.0.1(1234) streaming 0/1"
                // and "postgres: postgres postgres 127.0.0.1(1234) idle": the
                // kind is the first word unless that is the user (a backend).
                let word = rest.split_whitespace().next().unwrap_or("");
                let kinds = [
                    "walsender",
                    "walwriter",
                    "checkpointer",
                    "background",
                    "autovacuum",
                    "startup",
                    "walreceiver",
                    "logger",
                    "archiver",
                    "stats",
                    "logical",
                ];
                if kinds.contains(&word) {
                    format!("postgres: {word}")
                } else {
                    "postgres: backend".to_owned()
                }
            } else {
                comm.clone()
            };
            *ticks.entry(kind).or_insert(0) += used;
        }
    }
    ticks
}

/// The sum of the given fields of a `/proc/.../stat` line, counted from the
/// field after the parenthesised name (state = 0, utime = 11, stime = 12,
/// cutime = 13, cstime = 14).
fn stat_ticks(stat: &str, fields: std::ops::Range<usize>) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(") ")?;
    let values: Vec<&str> = rest.split_whitespace().collect();
    values
        .get(fields)?
        .iter()
        .map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Prints what each kind used between two [`cpu_by_kind`] snapshots, as a
/// share of one core, largest first.
fn print_cpu(before: &std::collections::BTreeMap<String, u64>, elapsed: Duration) {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let after = cpu_by_kind();
    let mut used: Vec<(f64, &String)> = after
        .iter()
        .map(|(kind, t)| {
            let spent = t.saturating_sub(before.get(kind).copied().unwrap_or(0));
            (spent as f64 / hz / elapsed.as_secs_f64() * 100.0, kind)
        })
        .filter(|(share, _)| *share >= 0.5)
        .collect();
    used.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = used.iter().map(|u| u.0).sum();
    let line: Vec<String> = used.iter().map(|(s, k)| format!("{k} {s:.1}%")).collect();
    println!(
        "    cpu (% of one core, total {total:.0}%): {}",
        line.join(", ")
    );
}

/// Mean fdatasync time (µs) of a 512-byte append to a zero-filled file in
/// `dir`, `count` times, each after `idle` without I/O.
fn append_sync_micros(dir: &Path, count: u32, idle: Duration) -> f64 {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe");
    let file = std::fs::File::create(&path).unwrap();
    file.write_all_at(&vec![0u8; 4 << 20], 0).unwrap();
    file.sync_all().unwrap();
    let data = [7u8; 512];
    let mut total = Duration::ZERO;
    for i in 0..count {
        if !idle.is_zero() {
            std::thread::sleep(idle);
        }
        let started = Instant::now();
        file.write_all_at(&data, u64::from(i) * 512).unwrap();
        file.sync_data().unwrap();
        total += started.elapsed();
    }
    let _ = std::fs::remove_file(&path);
    total.as_secs_f64() * 1e6 / f64::from(count)
}

/// Where the disk's completion interrupts land, and what an fdatasync after
/// 0.3 ms idle costs on a thread there and on one elsewhere: why the
/// pageserver pins its WAL streaming thread (`walreceiver::placement`).
fn print_interrupt_cpu_effect(dir: &Path) {
    use threadsched::{format_cpu_list, CpuSet};
    use walreceiver::placement::{self, KernelViews};
    let allowed = threadsched::current_thread_cpus().unwrap();
    let near = placement::interrupt_cpus(dir, &KernelViews::default())
        .ok()
        .and_then(|found| placement::choose(&found.interrupts, &allowed));
    let Some(near) = near else {
        println!("disk: its completion interrupts reach every CPU; the WAL streaming thread is not pinned");
        return;
    };
    let far = allowed.difference(&near).next().copied();
    let on = |cpus: CpuSet| {
        let dir = dir.to_owned();
        std::thread::spawn(move || {
            threadsched::pin_current_thread(&cpus).unwrap();
            append_sync_micros(&dir, 300, Duration::from_micros(300))
        })
        .join()
        .unwrap()
    };
    let near_micros = on(near.clone());
    let far_micros = far.map(|cpu| on([cpu].into()));
    println!(
        "disk: completion interrupts on CPU {}: fdatasync after 0.3 ms idle {near_micros:.0} µs there, {} µs on CPU {}",
        format_cpu_list(&near),
        far_micros.map_or("-".to_owned(), |micros| format!("{micros:.0}")),
        far.map_or("-".to_owned(), |cpu| cpu.to_string()),
    );
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The index workload's table, built once per server, then CHECKPOINT.
const INDEX_SETUP: &str = "
    DROP TABLE IF EXISTS idx_bench;
    CREATE TABLE idx_bench (id bigint, doc jsonb, body tsvector, during tsrange, spot point, tag text);
    INSERT INTO idx_bench
      SELECT g, jsonb_build_object('k', g, 'tags', jsonb_build_array(g % 100, g % 7)),
             to_tsvector('simple', md5(g::text) || ' word' || (g % 50)),
             tsrange('2026-01-01'::timestamp + make_interval(secs => g),
                     '2026-01-01'::timestamp + make_interval(secs => g + g % 1000)),
             point(g % 1000, g / 1000), md5(g::text)
        FROM generate_series(1, 20000) g;
    CREATE INDEX idx_bench_doc ON idx_bench USING gin (doc);
    CREATE INDEX idx_bench_body ON idx_bench USING gin (body);
    CREATE INDEX idx_bench_during ON idx_bench USING gist (during);
    CREATE INDEX idx_bench_spot ON idx_bench USING spgist (spot);
    CREATE INDEX idx_bench_tag ON idx_bench USING hash (tag);
    VACUUM ANALYZE idx_bench;";

/// One pgbench transaction of the index workload: a single-row insert that
/// touches all five indexes.
const INDEX_SCRIPT: &str = "\\set id random(20001, 1000000000)
INSERT INTO idx_bench VALUES (:id, jsonb_build_object('k', :id, 'tags', jsonb_build_array(:id % 100, :id % 7)), to_tsvector('simple', md5(:id::text) || ' word' || (:id % 50)), tsrange('2026-01-01'::timestamp + make_interval(secs => :id % 100000), '2026-01-01'::timestamp + make_interval(secs => :id % 100000 + :id % 1000)), point(:id % 1000, :id % 997), md5(:id::text));
";

fn script_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("index_insert.sql");
    std::fs::write(&path, INDEX_SCRIPT).unwrap();
    // pgbench for a vanilla server runs as the postgres OS user.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// One run of the index workload: (tps, WAL bytes per transaction).
fn index_run(server: &Server<'_>, script: &Path, secs: &str) -> (f64, f64) {
    server.psql("CHECKPOINT");
    let before = lsn_value(&server.psql("SELECT pg_current_wal_lsn()"));
    let (tps, transactions) = server.pgbench(&[
        "-n",
        "-c",
        "4",
        "-j",
        "2",
        "-T",
        secs,
        "-f",
        script.to_str().unwrap(),
    ]);
    let after = lsn_value(&server.psql("SELECT pg_current_wal_lsn()"));
    (tps, (after - before) as f64 / transactions.max(1) as f64)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let scale = env_u64("SEDIMENT_BENCH_SCALE", 20).to_string();
    let secs = env_u64("SEDIMENT_BENCH_SECS", 30).to_string();
    let rounds = env_u64("SEDIMENT_BENCH_ROUNDS", 2).max(1);
    let show_cpu = env_u64("SEDIMENT_BENCH_CPU", 0) == 1;
    let scratch = common::scratch();
    let (sediment, _tenant) = Sediment::running_with_tenant(scratch.path());
    let endpoint_port = sediment.endpoint("main", &[]);
    let endpoint = Server::Endpoint(endpoint_port);
    wait_sync(&endpoint, "pageserver");
    let solo_cluster = vanilla_primary();
    let sync_cluster = vanilla_primary();
    let _standby = sync_standby(&sync_cluster);
    let solo = Server::Vanilla(&solo_cluster);
    let sync = Server::Vanilla(&sync_cluster);
    let endpoint_local = Server::EndpointLocal(endpoint_port);
    let servers = [
        ("endpoint", &endpoint),
        ("solo", &solo),
        ("sync", &sync),
        ("ep-local", &endpoint_local),
    ];

    println!("settings (SHOW on each server):");
    for (label, server) in &servers[..3] {
        server.show_settings(label);
    }
    let wcc = endpoint.psql("SHOW wal_consistency_checking");
    println!(
        "endpoint wal_consistency_checking: {:?} ({})",
        wcc,
        if wcc.is_empty() {
            "empty, as vanilla"
        } else {
            "NOT empty"
        }
    );

    // What a wake-up costs here: on the 2-vCPU VM these figures were taken
    // on, an fdatasync after 0.3 ms without I/O took about ten times as
    // long as one back to back (573 vs 59 µs). A commit pays such a cost
    // at every hop that sleeps and wakes, and an endpoint's commit has more
    // of them (backend, walsender, pageserver, walsender, backend) than a
    // solo primary's, whose backend fsyncs itself.
    println!(
        "disk: fdatasync of a 512-byte append {:.0} µs back to back, {:.0} µs after 0.3 ms idle",
        append_sync_micros(scratch.path(), 2000, Duration::ZERO),
        append_sync_micros(scratch.path(), 300, Duration::from_micros(300)),
    );
    print_interrupt_cpu_effect(scratch.path());

    // Part A: pgbench TPC-B, interleaved.
    for (_, server) in &servers[..3] {
        server.pgbench_init(&scale);
    }
    let mut tps: [Vec<f64>; 4] = Default::default();
    for round in 1..=rounds {
        for (index, (label, server)) in servers.iter().enumerate() {
            server.psql("CHECKPOINT");
            let cpu_before = show_cpu.then(cpu_by_kind);
            let started = Instant::now();
            let (run_tps, _) = server.pgbench(&["-c", "4", "-j", "2", "-T", &secs]);
            println!("A round {round} {label:>8}: {run_tps:.1} tps");
            if let Some(before) = &cpu_before {
                print_cpu(before, started.elapsed());
            }
            tps[index].push(run_tps);
        }
    }
    let [ep, so, sy, local] = [mean(&tps[0]), mean(&tps[1]), mean(&tps[2]), mean(&tps[3])];
    println!("A: pgbench -c 4 -j 2 -T {secs} scale {scale}, mean of {rounds} interleaved rounds");
    println!(
        "A: endpoint {ep:.1} tps, vanilla solo {so:.1} tps, vanilla + sync standby {sy:.1} tps"
    );
    println!(
        "A: endpoint / solo = {:.3} (goal >= 0.9), endpoint / sync standby = {:.3}",
        ep / so,
        ep / sy
    );
    println!(
        "A: endpoint with synchronous_commit = local {local:.1} tps: local / solo = {:.3}, endpoint / local = {:.3}",
        local / so,
        ep / local
    );

    if env_u64("SEDIMENT_BENCH_SKIP_B", 0) == 1 {
        sediment.shutdown();
        return;
    }
    // Part B: the index workload on the endpoint and the sync primary.
    let script = script_file(scratch.path());
    for server in [&endpoint, &sync] {
        server.psql(INDEX_SETUP);
    }
    let (mut ep_runs, mut sy_runs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for (label, server, runs) in [
            ("endpoint", &endpoint, &mut ep_runs),
            ("sync", &sync, &mut sy_runs),
        ] {
            let (run_tps, wal) = index_run(server, &script, &secs);
            println!(
                "B round {round} {label:>8}: {run_tps:.1} tps, {wal:.0} WAL bytes/transaction"
            );
            runs.push((run_tps, wal));
        }
    }
    let avg = |runs: &[(f64, f64)]| {
        (
            mean(&runs.iter().map(|r| r.0).collect::<Vec<_>>()),
            mean(&runs.iter().map(|r| r.1).collect::<Vec<_>>()),
        )
    };
    let ((ep_tps, ep_wal), (sy_tps, sy_wal)) = (avg(&ep_runs), avg(&sy_runs));
    println!("B: index workload (jsonb GIN, tsvector GIN, tsrange GiST, point SP-GiST, hash), single-row inserts, -c 4 -j 2 -T {secs}");
    println!("B: endpoint {ep_tps:.1} tps {ep_wal:.0} B/xact; vanilla + sync standby {sy_tps:.1} tps {sy_wal:.0} B/xact");
    println!(
        "B: WAL/xact endpoint / vanilla = {:.3} (goal <= 1.05), tps endpoint / vanilla = {:.3} (goal >= 0.9)",
        ep_wal / sy_wal,
        ep_tps / sy_tps
    );
    sediment.shutdown();
}
