//! Acceptance test of the WAL decoder: real PostgreSQL 15 WAL from the
//! full-coverage workload, decoded by `pagectl waldump --stats --json` and by
//! `pg_waldump --stats=record`, must give the same records per resource
//! manager and record type — same count, same record bytes, same FPI bytes —
//! with no decoding error.
//!
//! One test per configuration: `wal_compression` off / pglz / lz4 / zstd,
//! and `wal_consistency_checking = all`. Three of them also vary something
//! else the decoder must handle: 1 MB segments (far more records crossing
//! segment boundaries), `wal_level = logical` (extra record types and
//! payloads), data checksums (hint-bit FPIs). They share a two-slot gate so that at
//! most two servers run at once on a small CI machine.
//!
//! Knobs: `SEDIMENT_PGBENCH_SECS` (default 30) shortens the pgbench phase for
//! local iteration; `SEDIMENT_ACCEPTANCE_PARALLEL` (default 2) sets the gate;
//! `SEDIMENT_KEEP_TMP=1` keeps the cluster and WAL directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use testkit::waldump::{self, WalStatRow};
use testkit::{workload, PgCluster};

fn pgbench_secs() -> u32 {
    std::env::var("SEDIMENT_PGBENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// A counting gate: at most N configurations hold a running server at once.
struct Gate {
    busy: Mutex<usize>,
    freed: Condvar,
}

static GATE: Gate = Gate {
    busy: Mutex::new(0),
    freed: Condvar::new(),
};

struct GateSlot;

impl Gate {
    fn enter(&'static self) -> GateSlot {
        let limit = std::env::var("SEDIMENT_ACCEPTANCE_PARALLEL")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2usize)
            .max(1);
        // A panicking holder poisons the mutex; the count is still right.
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= limit {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        GateSlot
    }
}

impl Drop for GateSlot {
    fn drop(&mut self) {
        let mut busy = GATE.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy -= 1;
        GATE.freed.notify_one();
    }
}

/// Runs the workload under `settings`, collects its WAL and compares the
/// two decoders' statistics.
fn check(label: &str, settings: &[(&str, &str)], initdb_args: &[&str]) {
    let _slot = GATE.enter();
    let started = Instant::now();
    let mut cluster = PgCluster::builder()
        .settings(workload::REQUIRED_SETTINGS)
        .settings(settings)
        .initdb_args(initdb_args)
        .retain_all_wal()
        .start()
        .unwrap();
    workload::full_coverage(&cluster, pgbench_secs()).unwrap();
    // Decode in place (the consistency-checking run writes gigabytes):
    // after the seal, stopping the server keeps the files as they are; its
    // shutdown checkpoint goes to a later segment that is not passed on.
    let wal = cluster.seal_wal().unwrap();
    cluster.stop().unwrap();
    let workload_secs = started.elapsed().as_secs_f64();
    assert!(!wal.segments.is_empty(), "[{label}] no WAL segments");

    let expected = waldump::pg_waldump_stats(cluster.install(), &wal).unwrap();
    let (actual, stderr) = pagectl_stats(&wal.paths());
    let mismatches = waldump::compare_stats(&expected.rows, &actual);
    let total: u64 = actual.iter().map(|r| r.count).sum();
    eprintln!(
        "[{label}] {} segments, {} records of {} types (pg_waldump {}), workload {workload_secs:.0} s, total {:.0} s",
        wal.segments.len(),
        total,
        actual.len(),
        expected.total_count,
        started.elapsed().as_secs_f64()
    );
    assert!(
        mismatches.is_empty(),
        "[{label}] pagectl waldump disagrees with pg_waldump on {} record types:\n{}",
        mismatches.len(),
        waldump::format_mismatches(&mismatches)
    );
    assert!(
        stderr.trim().is_empty(),
        "[{label}] pagectl waldump reported a decoding problem: {stderr}"
    );
    assert_eq!(total, expected.total_count, "[{label}]");
}

/// `pagectl waldump --stats --json SEGMENT...` → rows and stderr.
fn pagectl_stats(segments: &[PathBuf]) -> (Vec<WalStatRow>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pagectl"))
        .args(["waldump", "--stats", "--json"])
        .args(segments)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "pagectl waldump failed ({}): {stderr}",
        output.status
    );
    let rows: Vec<WalStatRow> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "pagectl JSON unreadable: {e}: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (rows, stderr)
}

#[test]
fn wal_compression_off() {
    // Records cross a segment boundary sixteen times as often.
    check("off", &[("wal_compression", "off")], &["--wal-segsize=1"]);
}

#[test]
fn wal_compression_pglz() {
    // Logical adds Heap/TRUNCATE, Heap2/NEW_CID and old-tuple payloads.
    check(
        "pglz",
        &[("wal_compression", "pglz"), ("wal_level", "logical")],
        &[],
    );
}

#[test]
fn wal_compression_lz4() {
    check("lz4", &[("wal_compression", "lz4")], &[]);
}

#[test]
fn wal_compression_zstd_with_checksums() {
    // Data checksums make hint-bit changes WAL-logged (XLOG/FPI_FOR_HINT).
    check(
        "zstd",
        &[("wal_compression", "zstd")],
        &["--data-checksums"],
    );
}

#[test]
fn consistency_checking_all() {
    check("wcc", &[("wal_consistency_checking", "all")], &[]);
}
