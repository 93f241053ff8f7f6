//! Native redo against stock PostgreSQL 15, measured in one run on real
//! clusters (`cargo bench -p redo --bench vs_postgres`):
//!
//! 1. WAL bytes per pgbench transaction with `wal_consistency_checking`
//!    unset, set to [`redo::wal_consistency_checking_value`] (what an
//!    endpoint runs with) and set to `all`: the cost of the after-images we
//!    still need for non-native managers.
//! 2. Records/s of native decode + redo versus Postgres crash recovery of the
//!    *same* WAL: a crashed cluster replays from its one checkpoint, the log
//!    gives the replayed range and elapsed time, and we redo that range from a
//!    copy of its segments, single-threaded, holding every page in memory.
//!
//! `REDO_BENCH_SECS` (default 20) sets the pgbench duration of each run.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::{Lsn, SegmentDecoder, WalConfig};
use testkit::{workload, PgCluster};

const SCALE: u32 = 5;
const CLIENTS: &str = "4";

fn bench_secs() -> Result<u32> {
    match std::env::var("REDO_BENCH_SECS") {
        Ok(value) => value
            .parse()
            .with_context(|| format!("REDO_BENCH_SECS={value:?} is not a number of seconds")),
        Err(_) => Ok(20),
    }
}

/// A cluster tuned so that the only checkpoint during a measured run is the
/// one we issue before it: first touches then always carry a full-page image,
/// the same in every configuration.
fn start_cluster(wal_consistency_checking: Option<&str>) -> Result<PgCluster> {
    let mut builder = PgCluster::builder()
        .setting("wal_compression", "zstd")
        .setting("full_page_writes", "on")
        .setting("checkpoint_timeout", "1h")
        .setting("max_wal_size", "10GB")
        .setting("shared_buffers", "256MB");
    if let Some(value) = wal_consistency_checking {
        builder = builder.setting("wal_consistency_checking", value);
    }
    builder.start().context("starting a PostgreSQL 15 cluster")
}

/// `pgbench -i -s 5`, then a CHECKPOINT so the timed run starts clean.
fn prepare(cluster: &PgCluster) -> Result<()> {
    workload::pgbench_init(cluster, SCALE).context("pgbench -i")?;
    cluster.checkpoint().context("CHECKPOINT")
}

/// Runs `pgbench -c 4 -j 2 -T secs`; returns transactions processed.
fn run_pgbench(cluster: &PgCluster, secs: u32) -> Result<u64> {
    let secs = secs.to_string();
    let output = cluster
        .pgbench(&["-c", CLIENTS, "-j", "2", "-T", &secs])
        .context("pgbench run")?;
    parse_transactions(&output)
        .ok_or_else(|| anyhow!("pgbench output has no transaction count:\n{output}"))
}

fn parse_transactions(output: &str) -> Option<u64> {
    let rest = output
        .lines()
        .find_map(|line| line.strip_prefix("number of transactions actually processed: "))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One configuration's WAL volume over the timed pgbench run.
struct WalVolume {
    label: &'static str,
    setting: String,
    bytes: u64,
    transactions: u64,
}

impl WalVolume {
    fn per_txn(&self) -> f64 {
        self.bytes as f64 / self.transactions.max(1) as f64
    }
}

fn measure_wal_volume(
    label: &'static str,
    setting: Option<String>,
    secs: u32,
) -> Result<WalVolume> {
    eprintln!("[wal volume] {label}: starting");
    let cluster = start_cluster(setting.as_deref())?;
    prepare(&cluster)?;
    let before = cluster.current_wal_lsn()?;
    let transactions = run_pgbench(&cluster, secs)?;
    let after = cluster.current_wal_lsn()?;
    let bytes = after
        .checked_sub(before)
        .ok_or_else(|| anyhow!("WAL position went backwards: {before} -> {after}"))?;
    Ok(WalVolume {
        label,
        setting: setting.unwrap_or_else(|| "(unset)".to_owned()),
        bytes,
        transactions,
    })
}

fn print_wal_volumes(volumes: &[WalVolume]) {
    println!();
    println!("== WAL bytes per pgbench transaction (scale {SCALE}, -c {CLIENTS}, wal_compression=zstd) ==");
    println!(
        "{:<10} {:>14} {:>10} {:>12} {:>8}  wal_consistency_checking",
        "config", "WAL bytes", "txns", "bytes/txn", "ratio"
    );
    let base = volumes.first().map_or(1.0, WalVolume::per_txn);
    for v in volumes {
        println!(
            "{:<10} {:>14} {:>10} {:>12.1} {:>8.3}  {}",
            v.label,
            v.bytes,
            v.transactions,
            v.per_txn(),
            v.per_txn() / base,
            v.setting
        );
    }
}

/// What the recovering server logged about its redo pass.
struct RecoveryLog {
    start: Lsn,
    done: Lsn,
    elapsed_secs: f64,
}

fn parse_recovery_log(log: &str) -> Result<RecoveryLog> {
    let starts = log
        .lines()
        .rev()
        .find_map(|line| line.split("redo starts at ").nth(1))
        .ok_or_else(|| anyhow!("server log has no 'redo starts at' line"))?;
    let done_line = log
        .lines()
        .rev()
        .find_map(|line| line.split("redo done at ").nth(1))
        .ok_or_else(|| anyhow!("server log has no 'redo done at' line"))?;
    let start = first_word(starts).parse().context("redo start LSN")?;
    let done = first_word(done_line).parse().context("redo done LSN")?;
    let elapsed = done_line
        .split("elapsed: ")
        .nth(1)
        .map(first_word)
        .ok_or_else(|| anyhow!("'redo done' line has no elapsed time: {done_line}"))?;
    let elapsed_secs = elapsed
        .parse()
        .with_context(|| format!("elapsed time {elapsed:?}"))?;
    Ok(RecoveryLog {
        start,
        done,
        elapsed_secs,
    })
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}

/// Copies every WAL segment file in `pg_wal` to `dest`; returns their names,
/// ascending. Recovery may recycle them, so this happens before restart.
fn copy_segments(wal_dir: &Path, dest: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(wal_dir).with_context(|| format!("reading {wal_dir:?}"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            std::fs::copy(wal_dir.join(&name), dest.join(&name))
                .with_context(|| format!("copying segment {name}"))?;
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The crashed run: WAL copied out, then Postgres's own recovery timed.
struct CrashRun {
    recovery: RecoveryLog,
    segments: Vec<(Lsn, Vec<u8>)>,
    segment_size: u64,
    _wal_copy: tempfile::TempDir,
}

fn crash_and_recover(secs: u32) -> Result<CrashRun> {
    eprintln!("[recovery] vanilla cluster: pgbench, then crash");
    let mut cluster = start_cluster(None)?;
    prepare(&cluster)?;
    let segment_size = cluster.wal_segment_size()?;
    run_pgbench(&cluster, secs)?;
    cluster.stop_immediate().context("immediate stop")?;
    let wal_copy = tempfile::tempdir().context("temp dir for WAL")?;
    let names = copy_segments(&cluster.wal_dir(), wal_copy.path())?;
    eprintln!("[recovery] {} segments copied; restarting", names.len());
    cluster.start().context("restart (crash recovery)")?;
    let log = std::fs::read_to_string(cluster.log_file())
        .with_context(|| format!("reading {:?}", cluster.log_file()))?;
    let recovery = parse_recovery_log(&log)?;
    let segments = load_range(wal_copy.path(), &names, segment_size, &recovery)?;
    Ok(CrashRun {
        recovery,
        segments,
        segment_size,
        _wal_copy: wal_copy,
    })
}

/// Reads the segments covering [start, done] into memory, so file I/O stays
/// out of the timed native pass.
fn load_range(
    dir: &Path,
    names: &[String],
    segment_size: u64,
    recovery: &RecoveryLog,
) -> Result<Vec<(Lsn, Vec<u8>)>> {
    let first = recovery.start.segment_start(segment_size);
    let last = recovery.done.segment_start(segment_size);
    let mut segments = Vec::new();
    for name in names {
        let (_, start) = Lsn::from_wal_file_name(name, segment_size)
            .ok_or_else(|| anyhow!("bad segment name {name}"))?;
        if start >= first && start <= last {
            let bytes = std::fs::read(dir.join(name)).with_context(|| format!("reading {name}"))?;
            segments.push((start, bytes));
        }
    }
    let expected = (last.0 - first.0) / segment_size + 1;
    if segments.len() as u64 != expected {
        bail!(
            "need {expected} segments for {}..{}, found {}",
            recovery.start,
            recovery.done,
            segments.len()
        );
    }
    Ok(segments)
}

type BlockKey = (RelFileNode, ForkNumber, u32);

/// Counts from the native pass.
#[derive(Default)]
struct NativeRun {
    records: u64,
    blocks_applied: u64,
    images_restored: u64,
    no_base: u64,
    apply_errors: u64,
    first_error: Option<String>,
    pages_held: usize,
    secs: f64,
}

/// Decodes [start, done] and redoes every block reference, timed.
fn native_redo(run: &CrashRun) -> Result<NativeRun> {
    let mut stats = NativeRun::default();
    let mut versions: HashMap<BlockKey, Vec<u8>> = HashMap::new();
    let mut decoder = SegmentDecoder::new(WalConfig {
        segment_size: run.segment_size,
        system_id: None,
    });
    let (start, done) = (run.recovery.start, run.recovery.done);
    let began = Instant::now();
    'segments: for (segment_start, bytes) in &run.segments {
        decoder.add_segment(*segment_start, bytes)?;
        while let Some(record) = decoder.next_record()? {
            if record.start_lsn < start {
                continue;
            }
            stats.records += 1;
            for block in &record.blocks {
                redo_block(&mut versions, &mut stats, &record, block);
            }
            // `done` is the last record replayed; what follows is the torn
            // end of WAL, which would not decode.
            if record.start_lsn >= done {
                break 'segments;
            }
        }
    }
    stats.secs = began.elapsed().as_secs_f64();
    stats.pages_held = versions.len();
    Ok(stats)
}

fn redo_block(
    versions: &mut HashMap<BlockKey, Vec<u8>>,
    stats: &mut NativeRun,
    record: &postgres_wal::record::DecodedRecord,
    block: &postgres_wal::record::DecodedBlock,
) {
    let key = (block.rel, block.fork, block.blkno);
    let restores = block.image.as_ref().is_some_and(|image| image.apply);
    let page = if restores || block.will_init {
        versions.entry(key).or_insert_with(|| vec![0u8; BLCKSZ])
    } else {
        match versions.get_mut(&key) {
            Some(page) => page,
            None => {
                stats.no_base += 1;
                return;
            }
        }
    };
    match redo::apply(page, record, block.block_id) {
        Ok(()) if restores => stats.images_restored += 1,
        Ok(()) => stats.blocks_applied += 1,
        Err(error) => {
            stats.apply_errors += 1;
            stats.first_error.get_or_insert_with(|| {
                format!(
                    "{} at {}: {error}",
                    redo::check::rmgr_name(record.rmid),
                    record.start_lsn
                )
            });
            // Content unknown from here on.
            versions.remove(&key);
        }
    }
}

fn print_recovery(run: &CrashRun, native: &NativeRun) {
    let recovery = &run.recovery;
    let pg_rate = native.records as f64 / recovery.elapsed_secs.max(0.01);
    let native_rate = native.records as f64 / native.secs.max(1e-9);
    let wal_bytes = recovery.done.0.saturating_sub(recovery.start.0);
    println!();
    println!(
        "== Redo of the same WAL: {}..{} ({} records, {:.1} MB) ==",
        recovery.start,
        recovery.done,
        native.records,
        wal_bytes as f64 / 1e6
    );
    println!("{:<34} {:>10} {:>14}", "replayer", "seconds", "records/s");
    println!(
        "{:<34} {:>10.2} {:>14.0}",
        "postgres crash recovery (log)", recovery.elapsed_secs, pg_rate
    );
    println!(
        "{:<34} {:>10.2} {:>14.0}",
        "native decode+redo (1 thread)", native.secs, native_rate
    );
    println!("native / postgres: {:.2}x", native_rate / pg_rate);
    println!(
        "native: {} blocks redone, {} images restored, {} no base, {} apply errors, {} pages held",
        native.blocks_applied,
        native.images_restored,
        native.no_base,
        native.apply_errors,
        native.pages_held
    );
    if let Some(error) = &native.first_error {
        println!("first apply error: {error}");
    }
    println!(
        "note: postgres's elapsed time includes reading WAL files and writing dirty buffers \
         it evicts; native runs on segments already in memory."
    );
}

fn main() -> Result<()> {
    let secs = bench_secs()?;
    let native_value = redo::wal_consistency_checking_value();
    let volumes = vec![
        measure_wal_volume("vanilla", None, secs)?,
        measure_wal_volume("endpoint", Some(native_value), secs)?,
        measure_wal_volume("all", Some("all".to_owned()), secs)?,
    ];
    let crash = crash_and_recover(secs)?;
    eprintln!("[recovery] native pass");
    let native = native_redo(&crash)?;
    print_wal_volumes(&volumes);
    print_recovery(&crash, &native);
    Ok(())
}
