//! Base backup throughput: import a fresh `initdb` cluster once, then time
//! planning and writing the whole tar (to a sink) at its LSN, with and
//! without a manifest. Needs PostgreSQL 15 in /usr/lib/postgresql/15/bin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use postgres_wal::Lsn;
use storage::{Repository, RepositoryConfig, TimelineId};

fn basebackup(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("datadir-bench-")
        .tempdir()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let stats = datadir::bootstrap(
        &timeline,
        Path::new("/usr/lib/postgresql/15/bin"),
        scratch.path(),
    )
    .unwrap();
    let size = datadir::Basebackup::prepare(&timeline, Some(stats.lsn))
        .unwrap()
        .total_size_bytes();

    let mut group = c.benchmark_group("basebackup_initdb");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(size));
    group.bench_function("tar", |b| {
        b.iter(|| {
            let backup = datadir::Basebackup::prepare(&timeline, Some(stats.lsn)).unwrap();
            backup.write_tar(std::io::sink()).unwrap();
        })
    });
    group.bench_function("tar_with_manifest", |b| {
        b.iter(|| {
            let backup = datadir::Basebackup::prepare(&timeline, Some(stats.lsn)).unwrap();
            backup.write_tar_with_manifest(std::io::sink()).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, basebackup);
criterion_main!(benches);
