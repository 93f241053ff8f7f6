//! Storage benchmarks: ingest throughput, read latency by history depth
//! (hot and cold cache), and branch creation time against timeline size.
//!
//! Run with `cargo bench -p storage`; criterion prints MiB/s for the put
//! groups and time per operation for the others.
// A benchmark whose setup fails has nothing to measure: panicking is right.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::Lsn;
use storage::{DerivedOp, Key, Repository, RepositoryConfig, Timeline, TimelineId, Value};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh_id() -> TimelineId {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    TimelineId(bytes)
}

fn block_key(n: u32) -> Key {
    let rel = RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 16384 + n / 100_000,
    };
    Key::rel_block(rel, ForkNumber::Main, n % 100_000)
}

/// Puts `count` values of `value` under distinct keys, one batch per
/// `per_batch` values, starting after the timeline's last record.
fn ingest(timeline: &Timeline, count: u32, value: &Value, per_batch: u32) {
    let mut lsn = timeline.last_record_lsn().0;
    let mut n = 0;
    while n < count {
        lsn += 64;
        let mut writer = timeline.writer();
        for _ in 0..per_batch.min(count - n) {
            writer.put(block_key(n), Lsn(lsn), value.clone()).unwrap();
            n += 1;
        }
        writer.finish(Lsn(lsn)).unwrap();
    }
}

/// Ingest including writing the delta layer files (freeze and flush at the
/// end of every measured round), so the number is end-to-end.
fn bench_put(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let mut group = c.benchmark_group("put");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let cases = [
        (
            "8KiB_images",
            Value::Image(Bytes::from(vec![7u8; BLCKSZ])),
            4096u32,
        ),
        (
            "100B_records",
            Value::WalRecord {
                will_init: false,
                rec: Bytes::from(vec![7u8; 99]),
            },
            200_000u32,
        ),
    ];
    for (name, value, count) in cases {
        let bytes = u64::from(count) * value.size_bytes() as u64;
        group.throughput(Throughput::Bytes(bytes));
        let timeline = repo.create_timeline(fresh_id(), 15, Lsn(1)).unwrap();
        group.bench_function(BenchmarkId::new("with_flush", name), |b| {
            b.iter_custom(|iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    ingest(&timeline, count, &value, 8);
                    timeline.freeze_and_flush().unwrap();
                }
                started.elapsed()
            })
        });
        // Into the open in-memory layer only (a fresh timeline per round,
        // created and deleted outside the measurement).
        group.bench_function(BenchmarkId::new("memory_only", name), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let scratch = repo.create_timeline(fresh_id(), 15, Lsn(1)).unwrap();
                    let started = Instant::now();
                    ingest(&scratch, count, &value, 8);
                    total += started.elapsed();
                    repo.delete_timeline(scratch.id()).unwrap();
                }
                total
            })
        });
    }
    group.finish();
}

/// A timeline where each of `keys` keys has `depth` versions: an image, then
/// `depth - 1` small records, flushed to a delta file every 10 versions.
fn history(repo: &Repository, keys: u32, depth: u32) -> std::sync::Arc<Timeline> {
    let timeline = repo.create_timeline(fresh_id(), 15, Lsn(1)).unwrap();
    for version in 0..depth {
        let value = if version == 0 {
            Value::Image(Bytes::from(vec![0u8; BLCKSZ]))
        } else {
            Value::Derived(DerivedOp::WriteBytes {
                offset: version % BLCKSZ as u32,
                bytes: Bytes::from_static(&[1]),
            })
        };
        ingest(&timeline, keys, &value, keys);
        if version % 10 == 9 {
            timeline.freeze_and_flush().unwrap();
        }
    }
    timeline.freeze_and_flush().unwrap();
    timeline
}

fn bench_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let mut group = c.benchmark_group("get");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    const KEYS: u32 = 100;
    for depth in [1u32, 10, 100] {
        let timeline = history(&repo, KEYS, depth);
        let lsn = timeline.last_record_lsn();
        let mut n = 0u32;
        group.bench_function(BenchmarkId::new("hot", depth), |b| {
            b.iter(|| {
                n = (n + 1) % KEYS;
                black_box(timeline.get(block_key(n), lsn).unwrap())
            })
        });
        group.bench_function(BenchmarkId::new("cold", depth), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    n = (n + 1) % KEYS;
                    repo.clear_page_cache();
                    let started = Instant::now();
                    black_box(timeline.get(block_key(n), lsn).unwrap());
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// Branch creation must not depend on how much data the ancestor holds.
fn bench_branch(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let mut group = c.benchmark_group("branch");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let value = Value::Image(Bytes::from_static(b"8 bytes!"));
    for keys in [1_000u32, 1_000_000] {
        let timeline = repo.create_timeline(fresh_id(), 15, Lsn(1)).unwrap();
        ingest(&timeline, keys, &value, 1000);
        timeline.freeze_and_flush().unwrap();
        let lsn = timeline.last_record_lsn();
        group.bench_function(BenchmarkId::new("keys", keys), |b| {
            b.iter(|| {
                repo.branch_timeline(fresh_id(), timeline.id(), lsn)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_put, bench_get, bench_branch);
criterion_main!(benches);
