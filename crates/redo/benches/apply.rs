//! Native redo throughput on real PostgreSQL 15 WAL (the committed fixture
//! under `tests/fixtures/`): every (previous page, record, block) step the
//! oracle checks, replayed single-threaded. Reports records/s via
//! criterion's element throughput.
//!
//! `cargo bench -p redo --bench apply`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postgres_wal::record::DecodedRecord;
use postgres_wal::{decode_segments, Lsn, WalConfig};

const SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// (base page, record index, block id) for every block with a
/// consistency-check image and a known previous version.
fn steps(records: &[DecodedRecord]) -> Vec<(Vec<u8>, usize, u8)> {
    let mut versions: HashMap<_, Vec<u8>> = HashMap::new();
    let mut steps = Vec::new();
    for (i, record) in records.iter().enumerate() {
        for block in &record.blocks {
            let key = (block.rel, block.fork, block.blkno);
            let Some(image) = &block.image else { continue };
            if !image.apply {
                if let Some(base) = versions.get(&key) {
                    steps.push((base.clone(), i, block.block_id));
                }
            }
            versions.insert(key, image.page.clone());
        }
    }
    steps
}

fn load_fixture() -> Vec<DecodedRecord> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let name = "000000010000000000000002";
    let compressed = std::fs::read(dir.join(format!("{name}.wal.zst"))).unwrap();
    let mut bytes = zstd::decode_all(compressed.as_slice()).unwrap();
    bytes.resize(SEGMENT_SIZE as usize, 0);
    let (_, start) = Lsn::from_wal_file_name(name, SEGMENT_SIZE).unwrap();
    let config = WalConfig {
        segment_size: SEGMENT_SIZE,
        system_id: None,
    };
    decode_segments([(start, bytes.as_slice())], config).0
}

fn bench_apply(c: &mut Criterion) {
    let records = load_fixture();
    let steps = steps(&records);
    let mut group = c.benchmark_group("redo");
    group.throughput(Throughput::Elements(steps.len() as u64));
    group.sample_size(20);
    group.bench_function("apply_fixture_blocks", |b| {
        let mut page = vec![0u8; postgres_wal::record::BLCKSZ];
        b.iter(|| {
            for (base, index, block_id) in &steps {
                page.copy_from_slice(base);
                redo::apply(&mut page, &records[*index], *block_id).unwrap();
            }
        });
    });
    group.bench_function("copy_only_baseline", |b| {
        let mut page = vec![0u8; postgres_wal::record::BLCKSZ];
        b.iter(|| {
            for (base, _, _) in &steps {
                page.copy_from_slice(base);
                std::hint::black_box(&page);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
