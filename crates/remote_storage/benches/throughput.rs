//! Upload and download throughput of [`remote_storage::Remote`] (retries,
//! size check after every put, CRC-32C check on verified downloads, bounded
//! concurrency) against the raw backend, from the same process, on a real
//! S3 server (SeaweedFS started here) and on the local directory backend.
//!
//! Run: `cargo bench -p remote_storage --bench throughput`
//! (`SEDIMENT_BENCH_MB=N` sets the data volume, default 256 MB).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use remote_storage::{ObjectStorage, Remote, RemoteConfig, RemotePath, S3Settings};
use testkit::s3::SeaweedS3;

const OBJECT_BYTES: usize = 8 * 1024 * 1024;
const CONCURRENCY: usize = 8;

fn volume_mb() -> usize {
    std::env::var("SEDIMENT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

async fn timed<F, Fut>(count: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(op)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let mb = (count * OBJECT_BYTES) as f64 / 1e6;
    mb / started.elapsed().as_secs_f64()
}

async fn run(label: &str, backend: Arc<dyn ObjectStorage>) {
    let count = (volume_mb() * 1024 * 1024 / OBJECT_BYTES).max(1);
    let data = Bytes::from(
        (0..OBJECT_BYTES)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    let crc = crc32c::crc32c(&data);
    let remote = Remote::new(Arc::clone(&backend));
    let path = |kind: &str, i: usize| RemotePath::new(format!("bench/{kind}/{i}")).unwrap();

    let raw_up = timed(count, |i| {
        let backend = Arc::clone(&backend);
        let data = data.clone();
        async move { backend.put(&path("raw", i), data).await.unwrap() }
    })
    .await;
    let remote_up = timed(count, |i| {
        let remote = remote.clone();
        let data = data.clone();
        async move { remote.put(&path("remote", i), data).await.unwrap() }
    })
    .await;
    let raw_down = timed(count, |i| {
        let backend = Arc::clone(&backend);
        async move {
            backend.get(&path("raw", i)).await.unwrap();
        }
    })
    .await;
    let remote_down = timed(count, |i| {
        let remote = remote.clone();
        async move {
            remote
                .get_verified(&path("remote", i), OBJECT_BYTES as u64, crc)
                .await
                .unwrap();
        }
    })
    .await;
    println!(
        "{label}: {count} x {} MB, {CONCURRENCY} in flight\n  upload   raw {raw_up:8.1} MB/s  Remote {remote_up:8.1} MB/s  ratio {:.2}\n  download raw {raw_down:8.1} MB/s  Remote(verified) {remote_down:8.1} MB/s  ratio {:.2}",
        OBJECT_BYTES / (1024 * 1024),
        remote_up / raw_up,
        remote_down / raw_down
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(run(
        "local directory",
        RemoteConfig::Local(dir.path().to_owned()).open().unwrap(),
    ));
    let s3 = SeaweedS3::start_new("bench").expect("weed mini starts");
    let settings = S3Settings {
        endpoint: Some(s3.endpoint()),
        region: Some(testkit::s3::REGION.into()),
        access_key_id: Some(testkit::s3::ACCESS_KEY_ID.into()),
        secret_access_key: Some(testkit::s3::SECRET_ACCESS_KEY.into()),
    };
    let backend = RemoteConfig::parse("s3://bench")
        .unwrap()
        .open_with(&settings)
        .unwrap();
    runtime.block_on(run("SeaweedFS S3", backend));
}
