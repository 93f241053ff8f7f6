//! Benchmark: WAL decoding throughput, ours against `pg_waldump`.
//!
//! `cargo bench -p pagectl --bench waldump_throughput -- [WAL_DIR]`
//!
//! Without `WAL_DIR` it makes one: a throwaway PostgreSQL 15 cluster (run as
//! the OS user `postgres`) with pgbench traffic. It then reports, over the
//! same files in the same run:
//! - in-process MB/s of the reader + stats (what `waldump --stats` does)
//!   and of full decoding (block data copied, every image restored);
//! - wall-clock of `pagectl waldump --stats DIR` and of
//!   `pg_waldump --stats=record` on the same segments (best of N runs,
//!   files in the page cache for both), as MB/s, and the ratio.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postgres_wal::decode::RecordLayout;
use postgres_wal::stats::WalStats;
use postgres_wal::{Lsn, SegmentDecoder, WalConfig};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const RUNS: usize = 5;

fn main() {
    let dir = match std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        Some(d) => PathBuf::from(d),
        None => make_wal(),
    };
    let files = segment_files(&dir);
    let seg_size = std::fs::metadata(&files[0]).unwrap().len();
    let segments: Vec<(Lsn, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let (_, lsn) = Lsn::from_wal_file_name(&name, seg_size).unwrap();
            (lsn, std::fs::read(f).unwrap())
        })
        .collect();
    // Only the stretch that holds valid WAL counts (later files may be
    // recycled segments full of stale bytes), and both tools get exactly
    // the files that hold it.
    let (_, end) = stats_in_process(&segments, seg_size);
    let valid_bytes = end.checked_sub(segments[0].0).unwrap();
    let used = usize::try_from(valid_bytes.div_ceil(seg_size)).unwrap();
    let files = &files[..used.min(files.len())];
    let segments = &segments[..files.len()];
    let mb = valid_bytes as f64 / 1e6;
    println!(
        "WAL: {:.1} MB of valid WAL in {} segments of {} MB in {}",
        mb,
        files.len(),
        seg_size >> 20,
        dir.display()
    );

    let (t, records) = best_of(|| stats_in_process(segments, seg_size).0);
    println!(
        "in-process stats decode:  {records} records, {:8.1} MB/s",
        mb / t.as_secs_f64()
    );
    let (t, _) = best_of(|| full_decode_in_process(segments, seg_size));
    println!(
        "in-process full decode:   {:8.1} MB/s (block data copied, images restored)",
        mb / t.as_secs_f64()
    );

    let ours = env!("CARGO_BIN_EXE_pagectl");
    let first = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let last = files[files.len() - 1]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let (t_ours, _) = best_of(|| {
        run_quiet(Command::new(ours).arg("waldump").arg("--stats").args(files));
        0
    });
    let (t_pg, _) = best_of(|| {
        run_quiet(
            Command::new(format!("{PG_BIN}/pg_waldump"))
                .arg("--stats=record")
                .arg("-p")
                .arg(&dir)
                .arg(&first)
                .arg(&last),
        );
        0
    });
    println!(
        "pagectl waldump --stats:  {:8.1} MB/s ({:?})",
        mb / t_ours.as_secs_f64(),
        t_ours
    );
    println!(
        "pg_waldump --stats=record:{:8.1} MB/s ({:?})",
        mb / t_pg.as_secs_f64(),
        t_pg
    );
    println!(
        "ratio (pg_waldump time / pagectl time): {:.2}x",
        t_pg.as_secs_f64() / t_ours.as_secs_f64()
    );
}

fn best_of(mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        out = std::hint::black_box(f());
        best = best.min(start.elapsed());
    }
    (best, out)
}

fn config(seg_size: u64) -> WalConfig {
    WalConfig {
        segment_size: seg_size,
        system_id: None,
    }
}

/// Reader + layout + stats over the segments; (records, end of valid WAL).
fn stats_in_process(segments: &[(Lsn, Vec<u8>)], seg_size: u64) -> (u64, Lsn) {
    let mut decoder = SegmentDecoder::new(config(seg_size));
    let mut stats = WalStats::new();
    'segments: for (lsn, bytes) in segments {
        decoder.add_segment(*lsn, bytes).unwrap();
        loop {
            match decoder.next_raw() {
                Ok(Some(raw)) => {
                    let layout = RecordLayout::parse(raw.bytes).unwrap();
                    stats.add(&layout, raw.start_lsn, raw.end_lsn);
                }
                Ok(None) => break,
                Err(_) => break 'segments,
            }
        }
    }
    (stats.total_count(), stats.end.unwrap_or(segments[0].0))
}

fn full_decode_in_process(segments: &[(Lsn, Vec<u8>)], seg_size: u64) -> u64 {
    let mut decoder = SegmentDecoder::new(config(seg_size));
    let mut n = 0;
    'segments: for (lsn, bytes) in segments {
        decoder.add_segment(*lsn, bytes).unwrap();
        loop {
            match decoder.next_record() {
                Ok(Some(r)) => n += r.blocks.len() as u64 + 1,
                Ok(None) => break,
                Err(_) => break 'segments,
            }
        }
    }
    n
}

fn run_quiet(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.stdout.is_empty(),
        "{cmd:?} printed nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no WAL segments in {}", dir.display());
    files
}

/// Runs pgbench against a fresh cluster and returns a copy of its pg_wal.
fn make_wal() -> PathBuf {
    let root = std::env::temp_dir().join(format!("waldump-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let run_as = pgproc::RunAs::detect().unwrap();
    let as_pg = |args: &[&str]| {
        let status = run_as
            .command(args[0])
            .args(&args[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?} failed");
    };
    let root_s = root.to_str().unwrap();
    run_as.chown(&root).unwrap();
    let data = format!("{root_s}/data");
    let initdb = format!("{PG_BIN}/initdb");
    let pg_ctl = format!("{PG_BIN}/pg_ctl");
    let pgbench = format!("{PG_BIN}/pgbench");
    as_pg(&[&initdb, "-D", &data]);
    // Keep every segment: the benchmark wants a long stretch of valid WAL.
    let opts = format!("-p 5497 -k {root_s} -c max_wal_size=1GB -c wal_keep_size=10GB");
    let log = format!("{root_s}/log");
    as_pg(&[&pg_ctl, "-D", &data, "-o", &opts, "-l", &log, "-w", "start"]);
    let conn = ["-h", root_s, "-p", "5497"];
    as_pg(
        &[
            &[pgbench.as_str(), "-i", "-s", "10"][..],
            &conn,
            &["postgres"],
        ]
        .concat(),
    );
    as_pg(
        &[
            &[pgbench.as_str(), "-c", "4", "-T", "20"][..],
            &conn,
            &["postgres"],
        ]
        .concat(),
    );
    as_pg(&[&pg_ctl, "-D", &data, "-m", "fast", "-w", "stop"]);
    PathBuf::from(format!("{data}/pg_wal"))
}
