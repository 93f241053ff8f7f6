//! Commit latency with the layer lifecycle running (issue #11): `pgbench
//! -c 4` on a writable endpoint, per-transaction latencies from pgbench's
//! log, with compaction and GC effectively off (periods of 1000 days) and
//! then with them running every 1 s / 2 s (`pitr_interval` 10 s, image
//! creation after 2 deltas), alternating quiet/busy rounds so drift on a
//! shared machine hits both. Prints p50/p99 of each and the p99 ratio (the
//! issue asks ≤ 1.2) and the background runs the busy rounds did.
//!
//! `cargo bench -p sediment --bench lifecycle` (release build of sediment
//! and pageserver). `SEDIMENT_BENCH_SCALE` (default 10),
//! `SEDIMENT_BENCH_SECS` (seconds per round, default 20) and
//! `SEDIMENT_BENCH_ROUNDS` (quiet/busy pairs, default 2) size the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;

use common::Sediment;
use serde_json::{json, Value};

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
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn configure(sediment: &Sediment, tenant: &str, mut settings: Value) {
    settings["tenant_id"] = json!(tenant);
    let (status, answer) = sediment.api().put("/v1/tenant/config", &settings);
    assert_eq!(status, 200, "{answer}");
}

/// Runs pgbench -c 4 for `secs` with a per-transaction log under `dir`;
/// returns the latencies in milliseconds.
fn round(port: u16, secs: u64, dir: &Path, label: &str) -> Vec<f64> {
    let prefix = dir.join(label);
    let output = common::client("pgbench", port)
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
        .args(["-c", "4", "-j", "2", "-T", &secs.to_string(), "-l"])
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg("postgres")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(label) {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            // client_id transaction_no time_us script_no epoch epoch_us
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|f| f.parse::<f64>().ok())
            {
                latencies.push(us / 1000.0);
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
    latencies
}

fn background_runs(sediment: &Sediment) -> String {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", sediment.http_port))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("pageserver_background_runs_total")
                || l.starts_with("pageserver_gc_layers_removed_total")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn main() {
    let scale = env_u64("SEDIMENT_BENCH_SCALE", 10);
    let secs = env_u64("SEDIMENT_BENCH_SECS", 20);
    let rounds = env_u64("SEDIMENT_BENCH_ROUNDS", 2);
    let scratch = common::scratch();
    let (sediment, tenant) = Sediment::running_with_tenant(scratch.path());
    // Flushes run in both modes: only compaction and GC differ.
    let quiet = json!({
        "compaction_period": "1000days", "gc_period": "1000days", "checkpoint_timeout": "2s",
    });
    let busy = json!({
        "compaction_period": "1s", "gc_period": "2s", "pitr_interval": "10s",
        "gc_horizon": 1, "image_creation_threshold": 2, "checkpoint_timeout": "2s",
    });
    configure(&sediment, &tenant, quiet.clone());
    let main = sediment.endpoint("main", &[]);
    let init = common::client("pgbench", main)
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &main.to_string()])
        .args(["-i", "-q", "-s", &scale.to_string(), "postgres"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let logs = tempfile::tempdir().unwrap();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        configure(&sediment, &tenant, quiet.clone());
        without.extend(round(main, secs, logs.path(), "quiet"));
        configure(&sediment, &tenant, busy.clone());
        with.extend(round(main, secs, logs.path(), "busy"));
    }
    without.sort_by(f64::total_cmp);
    with.sort_by(f64::total_cmp);
    let (p99_without, p99_with) = (percentile(&without, 99.0), percentile(&with, 99.0));
    println!(
        "pgbench -c 4, scale {scale}, {rounds} x {secs} s per mode\n\
         without compaction/GC: n={} p50={:.2} ms p99={p99_without:.2} ms\n\
         with compaction/GC:    n={} p50={:.2} ms p99={p99_with:.2} ms\n\
         p99 ratio with/without: {:.2} (target <= 1.2)\n\
         background: {}",
        without.len(),
        percentile(&without, 50.0),
        with.len(),
        percentile(&with, 50.0),
        p99_with / p99_without,
        background_runs(&sediment),
    );
    sediment.shutdown();
}
