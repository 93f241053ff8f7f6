//! Storage benchmarks: ingest throughput, read latency by history depth
//! (hot and cold cache) before and after compaction + image layers, layer
//! bytes with and without compression on pgbench-like heap pages, and
//! branch creation time against timeline size.
//!
//! Run with `cargo bench -p storage`; criterion prints MiB/s for the put
//! groups and time per operation for the others. The compression group
//! also prints the bytes on disk per format version (`cargo bench -p
//! storage -- compression`); `cargo bench -p storage -- get` compares
//! `get/cold/<depth>` with `get_compacted/cold/<depth>`.
// A benchmark whose setup fails has nothing to measure: panicking is right.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::Lsn;
use storage::{
    CompactionPolicy, DerivedOp, Key, Repository, RepositoryConfig, Timeline, TimelineId, Value,
};

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
/// `depth - 1` small records, flushed to a delta file every 10 versions;
/// with a policy, compaction (and image creation) runs after every flush
/// as the pageserver's background task would.
fn history_with(
    repo: &Repository,
    keys: u32,
    depth: u32,
    policy: Option<&CompactionPolicy>,
) -> std::sync::Arc<Timeline> {
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
            if let Some(policy) = policy {
                timeline.compact(policy).unwrap();
            }
        }
    }
    timeline.freeze_and_flush().unwrap();
    if let Some(policy) = policy {
        timeline.compact(policy).unwrap();
    }
    timeline
}

fn bench_get(c: &mut Criterion) {
    bench_get_with(c, "get", None);
    let policy = CompactionPolicy {
        compaction_threshold: 3,
        compaction_target_size: 256 * 1024,
        image_creation_threshold: 3,
    };
    bench_get_with(c, "get_compacted", Some(&policy));
}

fn bench_get_with(c: &mut Criterion, name: &str, policy: Option<&CompactionPolicy>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    const KEYS: u32 = 100;
    for depth in [1u32, 10, 100, 400] {
        let timeline = history_with(&repo, KEYS, depth, policy);
        let lsn = timeline.last_record_lsn();
        let before = repo.stats().snapshot().records_total;
        timeline.get(block_key(0), lsn).unwrap();
        let applied = repo.stats().snapshot().records_total - before;
        let stats = timeline.layer_stats();
        eprintln!(
            "{name} depth {depth}: {applied} records applied per head read; layers {stats:?}"
        );
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

/// An 8 KB page shaped like a pgbench_accounts heap page: page header,
/// line pointers, then ~61 tuples (header, aid, bid, abalance, 84-byte
/// blank filler) from the end.
fn heap_page(page_no: u32) -> Bytes {
    let mut page = vec![0u8; BLCKSZ];
    let tuple_len = 24 + 4 + 4 + 4 + 85;
    let tuples = (BLCKSZ - 24) / (tuple_len + 4);
    page[..8].copy_from_slice(&u64::from(page_no).wrapping_mul(0x9E37_79B9).to_le_bytes());
    for t in 0..tuples {
        let at = BLCKSZ - (t + 1) * tuple_len;
        let lp = 24 + t * 4;
        page[lp..lp + 4].copy_from_slice(&((at as u32) | ((tuple_len as u32) << 17)).to_le_bytes());
        let aid = page_no * tuples as u32 + t as u32;
        let tuple = &mut page[at..at + tuple_len];
        tuple[..4].copy_from_slice(&(1000 + aid / 7).to_le_bytes()); // xmin
        tuple[24..28].copy_from_slice(&aid.to_le_bytes());
        tuple[28..32].copy_from_slice(&(aid / 100_000 + 1).to_le_bytes());
        let balance = (aid.wrapping_mul(2_654_435_761) % 10_000) as i32 - 5000;
        tuple[32..36].copy_from_slice(&balance.to_le_bytes());
        tuple[36] = 0xAB; // short varlena header
        tuple[37..].fill(b' ');
    }
    Bytes::from(page)
}

/// Layer bytes with format v1 (raw) and v2 (zstd per value) for 2048
/// pgbench-like heap pages, and the time to encode each.
fn bench_compression(c: &mut Criterion) {
    use storage::layer::file::{encode_layer_version, LAYER_FORMAT_V1, LAYER_FORMAT_VERSION};
    use storage::{LayerDesc, LayerKind};
    let values: Vec<(Key, Lsn, Value)> = (0..2048u32)
        .map(|n| (block_key(n), Lsn(10), Value::Image(heap_page(n))))
        .collect();
    let desc = LayerDesc {
        kind: LayerKind::Delta,
        key_range: Key::MIN..Key::MAX,
        lsn_range: Lsn(10)..Lsn(11),
    };
    let encode = |version| {
        encode_layer_version(&desc, values.iter().map(|(k, l, v)| (*k, *l, v)), version).unwrap()
    };
    let (v1, v2) = (
        encode(LAYER_FORMAT_V1).len(),
        encode(LAYER_FORMAT_VERSION).len(),
    );
    eprintln!(
        "compression: 2048 heap pages = {} bytes raw; layer v1 {v1} bytes, v2 {v2} bytes ({:.2}x smaller)",
        2048 * BLCKSZ,
        v1 as f64 / v2 as f64
    );
    let mut group = c.benchmark_group("compression");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes((2048 * BLCKSZ) as u64));
    for (name, version) in [
        ("encode_v1", LAYER_FORMAT_V1),
        ("encode_v2", LAYER_FORMAT_VERSION),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(encode(version))));
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

criterion_group!(
    benches,
    bench_put,
    bench_get,
    bench_compression,
    bench_branch
);
criterion_main!(benches);
