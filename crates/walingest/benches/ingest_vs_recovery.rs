//! Ingest rate against PostgreSQL's own crash recovery of the same WAL
//! (`cargo bench -p walingest --bench ingest_vs_recovery`).
//!
//! A server started from a base backup of a bootstrapped timeline (the way
//! an endpoint starts, `wal_consistency_checking` = the managers without
//! native redo) runs `pgbench -i`, a CHECKPOINT, then pgbench for
//! `INGEST_BENCH_SECS` (default 20) and is killed. Postgres restarts and
//! replays from that checkpoint; its log gives the range and the elapsed
//! redo time. We ingest the WAL before the checkpoint untimed, then time
//! ingesting the same range into the store twice: with the default freeze
//! policy (frozen layers written by a background thread, as the
//! pageserver's flusher does, fsync included) and with
//! flushing deferred to after the run (Postgres's figure likewise excludes
//! writing its dirty buffers).
//!
//! Postgres recovers three times from copies of the crashed data directory
//! and its best figures count; the deferred-flush ingest likewise runs
//! three times, into copies of the same repository, and its best figures
//! count.
//!
//! The timed part is ingested the way a receiver catching up does
//! ([`WalIngest::ingest_bytes`] on long stretches: records decoded on a
//! second thread while this one applies them) and, flush deferred, also
//! the way a streaming receiver does (128 KiB reads, one thread).
//!
//! On a loaded machine wall time mostly measures the scheduler, so CPU
//! time is compared too: Postgres logs its startup process's (user +
//! system, from `getrusage`, 10 ms resolution), and ours is the whole
//! process's (`getrusage`, every thread: decoding, applying and, with the
//! default policy, flushing).
//!
//! To profile only the timed ingest, run the bench under
//! `perf record --delay=-1 --control=fifo:CTL` with
//! `INGEST_BENCH_PERF_CTL=CTL`: profiling is enabled around the timed
//! records of the first deferred-flush run only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use postgres_wal::lsn::DEFAULT_WAL_SEGMENT_SIZE;
use postgres_wal::{Lsn, WalConfig, WalStreamDecoder};
use storage::Timeline;
use testkit::workload;
use walingest::WalIngest;

const SCALE: u32 = 5;
/// Runs of Postgres's recovery and of the deferred-flush ingest; each
/// side's best elapsed and best CPU time count (one run's figure swings by
/// a third with what else the machine does).
const RUNS: usize = 3;
/// Bytes fed to the decoder at a time.
const FEED_CHUNK_BYTES: usize = 128 * 1024;

fn bench_secs() -> u32 {
    std::env::var("INGEST_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Postgres's redo pass, from its log.
struct Recovery {
    start: Lsn,
    done: Lsn,
    elapsed_secs: f64,
    /// User + system CPU time of the redo pass.
    cpu_secs: f64,
}

fn parse_recovery_log(log: &str) -> Result<Recovery> {
    let after = |marker: &str| {
        log.lines()
            .rev()
            .find_map(|line| line.split(marker).nth(1).map(str::to_owned))
            .ok_or_else(|| anyhow!("server log has no {marker:?} line"))
    };
    let first_word = |s: &str| s.split_whitespace().next().unwrap_or("").to_owned();
    let starts = after("redo starts at ")?;
    let done = after("redo done at ")?;
    let elapsed = done
        .split("elapsed: ")
        .nth(1)
        .map(first_word)
        .ok_or_else(|| anyhow!("no elapsed time in {done:?}"))?;
    let cpu = |marker: &str| -> Result<f64> {
        done.split(marker)
            .nth(1)
            .map(first_word)
            .ok_or_else(|| anyhow!("no {marker:?} in {done:?}"))?
            .parse()
            .context("CPU time")
    };
    Ok(Recovery {
        start: first_word(&starts).parse().context("redo start")?,
        done: first_word(&done).parse().context("redo done")?,
        elapsed_secs: elapsed.parse().context("elapsed")?,
        cpu_secs: cpu("user: ")? + cpu("system: ")?,
    })
}

/// Crash recovery of the stopped `cluster`, [`RUNS`] times from copies of
/// the same crashed data directory: the fastest elapsed and the smallest
/// CPU time.
fn best_recovery(cluster: &mut testkit::PgCluster) -> Result<Recovery> {
    let data = cluster.data_dir().to_path_buf();
    let crashed = cluster.root_dir().join("crashed");
    let copy = |from: &Path, to: &Path| -> Result<()> {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "cp -a {} {}",
            from.display(),
            to.display()
        );
        Ok(())
    };
    copy(&data, &crashed)?;
    let mut best: Option<Recovery> = None;
    for run in 0..RUNS {
        if run > 0 {
            std::fs::remove_dir_all(&data)?;
            copy(&crashed, &data)?;
        }
        cluster.start().context("crash recovery")?;
        let log = std::fs::read_to_string(cluster.log_file())?;
        let recovery = parse_recovery_log(&log)?;
        cluster.stop()?;
        eprintln!(
            "[postgres] recovery run {}: {:.2} s elapsed, {:.2} s CPU",
            run + 1,
            recovery.elapsed_secs,
            recovery.cpu_secs
        );
        best = Some(match best {
            None => recovery,
            Some(b) => Recovery {
                elapsed_secs: b.elapsed_secs.min(recovery.elapsed_secs),
                cpu_secs: b.cpu_secs.min(recovery.cpu_secs),
                ..b
            },
        });
    }
    best.ok_or_else(|| anyhow!("no recovery run"))
}

/// Every WAL segment of `dir`, in memory, ascending.
fn read_segments(dir: &Path) -> Result<Vec<(Lsn, Vec<u8>)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some((_, start)) = Lsn::from_wal_file_name(name, DEFAULT_WAL_SEGMENT_SIZE) {
            segments.push((start, std::fs::read(&path)?));
        }
    }
    segments.sort_by_key(|(start, _)| *start);
    Ok(segments)
}

/// On-CPU time of the calling thread, in seconds (Linux).
/// CPU time (user + system) of the whole process, ended threads included.
#[allow(unsafe_code)]
fn process_cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the whole struct it is given a pointer to.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Writes `command` ("enable" / "disable") to perf's control FIFO named by
/// `INGEST_BENCH_PERF_CTL`, if set.
fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("INGEST_BENCH_PERF_CTL") {
        if let Err(e) = std::fs::write(&path, format!("{command}\n")) {
            eprintln!("[perf] {path}: {e}");
        }
    }
}

/// The timed part of the ingest.
struct Timed {
    records: u64,
    bytes: u64,
    secs: f64,
    /// CPU time of the process (all its threads) during `secs`.
    cpu_secs: f64,
}

/// Ingests everything; records starting at or after `timed_from` are timed.
/// The untimed part goes record by record; from the first timed record on,
/// the rest of each segment goes to [`WalIngest::ingest_bytes`] at once
/// (decoded on a second thread) if `pipelined`, else in chunks the size a
/// WAL receiver reads off its socket.
fn ingest(
    timeline: &Timeline,
    segments: &[(Lsn, Vec<u8>)],
    timed_from: Lsn,
    profile: bool,
    pipelined: bool,
) -> Result<Timed> {
    let start = timeline.last_record_lsn();
    let mut ingest = WalIngest::new(timeline)?;
    let mut decoder = WalStreamDecoder::new(start, WalConfig::default());
    let mut timed = Timed {
        records: 0,
        bytes: 0,
        secs: 0.0,
        cpu_secs: 0.0,
    };
    let mut began: Option<Instant> = None;
    let mut cpu_began = 0.0;
    let mut counted = walingest::Ingested::default();
    'segments: for (segment_start, bytes) in segments {
        if segment_start.0 + DEFAULT_WAL_SEGMENT_SIZE <= start.0 {
            continue;
        }
        let from = start.0.saturating_sub(segment_start.0) as usize;
        let mut rest = &bytes[from..];
        // Record by record until the timed part starts. Fed in chunks the
        // size a WAL receiver reads off its socket, not a whole 16 MB
        // segment at once (which made the decoder's buffer that large and
        // copying into it a tenth of the timed work).
        while began.is_none() && !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(FEED_CHUNK_BYTES));
            rest = after;
            decoder.feed_bytes(chunk);
            loop {
                match decoder.poll_raw() {
                    Ok(Some(raw)) => {
                        if raw.start_lsn >= timed_from {
                            if began.is_none() {
                                if profile {
                                    perf_control("enable");
                                }
                                began = Some(Instant::now());
                                cpu_began = process_cpu_secs();
                            }
                            timed.records += 1;
                            timed.bytes += raw.bytes.len() as u64;
                        }
                        ingest
                            .buffer_record(timeline, &raw)
                            .with_context(|| format!("record at {}", raw.start_lsn))?;
                    }
                    Ok(None) => break,
                    Err(e) if e.is_end_of_wal() => break 'segments,
                    Err(e) => return Err(e.into()),
                }
            }
            // What a WAL receiver does after each read off its socket.
            ingest.write_buffered(timeline)?;
        }
        let pieces = if pipelined {
            rest.chunks(rest.len().max(1))
        } else {
            rest.chunks(FEED_CHUNK_BYTES)
        };
        for piece in pieces {
            match ingest.ingest_bytes(timeline, &mut decoder, piece, &mut counted) {
                Ok(()) => {}
                Err(walingest::FeedError::Decode(e)) if e.is_end_of_wal() => break 'segments,
                Err(e) => return Err(e.into()),
            }
        }
    }
    ingest.write_buffered(timeline)?;
    timed.secs = began.map_or(0.0, |t| t.elapsed().as_secs_f64());
    timed.cpu_secs = process_cpu_secs() - cpu_began;
    timed.records += counted.records;
    timed.bytes += counted.record_bytes;
    if profile {
        perf_control("disable");
    }
    eprintln!("[ingest] {:?}", ingest.stats());
    Ok(timed)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Copies a directory tree (a flushed, idle repository).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Ingests into `timeline`; returns the timed part, the final flush time
/// and the timeline's file bytes after it.
fn ingest_and_flush(
    timeline: &Timeline,
    segments: &[(Lsn, Vec<u8>)],
    timed_from: Lsn,
    profile: bool,
    pipelined: bool,
) -> Result<(Timed, f64, u64)> {
    // Frozen layers are written by a background thread, as the
    // pageserver's flusher does (without one the ingesting thread writes
    // them itself once `max_frozen_layers` wait).
    let done = std::sync::atomic::AtomicBool::new(false);
    let timed = std::thread::scope(|scope| {
        let flusher = scope.spawn(|| -> Result<()> {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if timeline.wait_frozen(std::time::Duration::from_millis(50)) {
                    timeline.flush_frozen()?;
                }
            }
            Ok(())
        });
        let timed = ingest(timeline, segments, timed_from, profile, pipelined);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let flushed = flusher
            .join()
            .map_err(|_| anyhow!("the flusher thread panicked"));
        let timed = timed?;
        flushed??;
        Ok::<_, anyhow::Error>(timed)
    })?;
    let flush = Instant::now();
    timeline.freeze_and_flush()?;
    let flush_secs = flush.elapsed().as_secs_f64();
    Ok((timed, flush_secs, dir_size(timeline.dir())))
}

fn report(label: &str, timed: &Timed, recovery: &Recovery) {
    let wal_mb = timed.bytes as f64 / 1e6;
    let ours_rate = timed.records as f64 / timed.secs.max(1e-6);
    let pg_rate = timed.records as f64 / recovery.elapsed_secs.max(0.01);
    let ours_cpu_rate = timed.records as f64 / timed.cpu_secs.max(1e-6);
    let pg_cpu_rate = timed.records as f64 / recovery.cpu_secs.max(0.01);
    println!(
        "{label:<44} {:>6.2} s {:>9.0} rec/s {:>7.1} MB/s  ({:.2}x postgres)",
        timed.secs,
        ours_rate,
        wal_mb / timed.secs.max(1e-6),
        ours_rate / pg_rate
    );
    println!(
        "{:<44} {:>6.2} s {:>9.0} rec/s CPU time ({:.2}x postgres's CPU rate)",
        "",
        timed.cpu_secs,
        ours_cpu_rate,
        ours_cpu_rate / pg_cpu_rate
    );
}

fn main() -> Result<()> {
    let secs = bench_secs();
    let store = common::bootstrap();
    let timeline = &store.timeline;
    // Copies of the bootstrapped repository for the runs with flushing
    // deferred (the freeze policy is per repository).
    let copies = [(); 1 + RUNS].map(|()| {
        tempfile::Builder::new()
            .prefix("walingest-bench-")
            .tempdir()
            .expect("temporary directory")
    });
    for copy in &copies {
        copy_tree(store.dir.path(), copy.path())?;
    }
    let wcc = redo::wal_consistency_checking_value();
    let settings = [
        ("wal_consistency_checking", wcc.as_str()),
        ("checkpoint_timeout", "1h"),
        ("max_wal_size", "10GB"),
        ("wal_keep_size", "1TB"),
        ("shared_buffers", "256MB"),
    ];
    let mut cluster = common::cluster_at(timeline, store.initdb_lsn, &settings);
    cluster.start()?;
    eprintln!("[source] pgbench -i -s {SCALE}, CHECKPOINT, pgbench {secs}s, crash");
    workload::pgbench_init(&cluster, SCALE)?;
    cluster.checkpoint()?;
    workload::pgbench_run(&cluster, secs, 4)?;
    cluster.stop_immediate()?;
    let segments = read_segments(&cluster.wal_dir())?;
    let recovery = best_recovery(&mut cluster)?;

    let (default_run, default_flush, stored) =
        ingest_and_flush(timeline, &segments, recovery.start, false, true)?;
    let deferred = storage::RepositoryConfig {
        freeze: storage::FreezePolicy {
            max_open_bytes: u64::MAX,
            max_lsn_distance: u64::MAX,
            max_age: std::time::Duration::from_secs(3600),
        },
        ..storage::RepositoryConfig::default()
    };
    let deferred_timeline = |copy: &tempfile::TempDir| -> Result<_> {
        let repo = storage::Repository::open_with(
            copy.path(),
            deferred.clone(),
            std::sync::Arc::new(storage::io::StdFileIo),
            std::sync::Arc::new(walingest::NativeRedo),
        )?;
        let timeline = repo.timeline(timeline.id())?;
        Ok((repo, timeline))
    };
    let (_repo, one_thread) = deferred_timeline(&copies[0])?;
    let (one_thread_run, _, _) =
        ingest_and_flush(&one_thread, &segments, recovery.start, false, false)?;
    let mut deferred_run: Option<Timed> = None;
    let mut deferred_flush = 0.0;
    for (run, copy) in copies[1..].iter().enumerate() {
        let (_repo, pipelined) = deferred_timeline(copy)?;
        // Profiled (when asked) in the first run only.
        let (timed, flush, _) =
            ingest_and_flush(&pipelined, &segments, recovery.start, run == 0, true)?;
        eprintln!(
            "[ingest] deferred-flush run {}: {:.2} s elapsed, {:.2} s CPU",
            run + 1,
            timed.secs,
            timed.cpu_secs
        );
        deferred_flush = flush;
        deferred_run = Some(match deferred_run {
            None => timed,
            Some(best) => Timed {
                secs: best.secs.min(timed.secs),
                cpu_secs: best.cpu_secs.min(timed.cpu_secs),
                ..best
            },
        });
    }
    let deferred_run = deferred_run.ok_or_else(|| anyhow!("no deferred-flush run"))?;
    let wal_mb = default_run.bytes as f64 / 1e6;
    println!(
        "replayed range {}..{}: {} records, {:.1} MB of record bytes",
        recovery.start, recovery.done, default_run.records, wal_mb
    );
    report(
        "sediment ingest, default policy + flusher",
        &default_run,
        &recovery,
    );
    report(
        &format!("sediment ingest, flush deferred (best of {RUNS})"),
        &deferred_run,
        &recovery,
    );
    report(
        "sediment ingest, flush deferred, one thread",
        &one_thread_run,
        &recovery,
    );
    println!(
        "{:<44} {:>6.2} s {:>9.0} rec/s {:>7.1} MB/s",
        format!("postgres crash recovery (its log, best of {RUNS})"),
        recovery.elapsed_secs,
        default_run.records as f64 / recovery.elapsed_secs.max(0.01),
        wal_mb / recovery.elapsed_secs.max(0.01)
    );
    println!(
        "{:<44} {:>6.2} s {:>9.0} rec/s CPU time (user + system)",
        "",
        recovery.cpu_secs,
        default_run.records as f64 / recovery.cpu_secs.max(0.01),
    );
    println!(
        "final flush: {default_flush:.2} s (default policy), {deferred_flush:.2} s (deferred); \
         timeline files after ingesting everything since initdb: {:.1} MB",
        stored as f64 / 1e6
    );
    Ok(())
}
