//! Remote storage throughput against a real S3 server (SeaweedFS): upload
//! MB/s of a ~1 GiB tenant and the time to attach it on another pageserver,
//! next to the raw object-store throughput of the same bytes from the same
//! process (sequential puts, as the uploader does; gets 8 at a time).
//! Attach is lazy (indexes only), so the time to read one page and then
//! every page afterwards (each layer downloaded on first read) is printed
//! too. Prints one line per number and the ratios.
//!
//! Run (about 2–4 minutes; needs `weed`, ~4 GB of disk):
//!
//! ```text
//! SEDIMENT_BENCH_MB=1024 cargo test -p pageserver --test remote_bench -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{test_conf, TestServer};
use futures::StreamExt;
use remote_storage::{Remote, RemoteConfig, RemotePath, S3Settings};
use serde_json::json;
use testkit::s3::SeaweedS3;

const PAGE: usize = 8192;

fn settings(s3: &SeaweedS3) -> S3Settings {
    S3Settings {
        endpoint: Some(s3.endpoint()),
        region: Some(testkit::s3::REGION.into()),
        access_key_id: Some(testkit::s3::ACCESS_KEY_ID.into()),
        secret_access_key: Some(testkit::s3::SECRET_ACCESS_KEY.into()),
    }
}

/// Incompressible pages (xorshift), so layer bytes are what is moved.
fn page(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(PAGE);
    while out.len() < PAGE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn key_of(blkno: u32) -> storage::Key {
    let rel = postgres_wal::record::RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 900_000,
    };
    storage::Key::rel_block(rel, postgres_wal::record::ForkNumber::Main, blkno)
}

/// Writes `mb` MiB of pages into the timeline's storage, flushing as it goes.
fn fill(storage: &storage::Timeline, mb: usize) {
    let pages = mb * 1024 * 1024 / PAGE;
    let mut lsn = storage.last_record_lsn();
    for batch in 0..pages / 256 {
        lsn = postgres_wal::Lsn(lsn.0 + 0x100);
        let mut writer = storage.writer();
        for i in 0..256 {
            let blkno = u32::try_from(batch * 256 + i).unwrap();
            let key = key_of(blkno);
            let value = storage::Value::Image(page(u64::from(blkno) * 7919 + 1).into());
            writer.put(key, lsn, value).unwrap();
        }
        writer.finish(lsn).unwrap();
        if batch % 512 == 511 {
            storage.freeze_and_flush().unwrap();
        }
    }
    storage.freeze_and_flush().unwrap();
}

async fn location(server: &TestServer, tenant: &str, mode: &str, generation: u32) {
    let (status, body) = server
        .call(
            "PUT",
            &format!("/v1/tenant/{tenant}/location_config"),
            Some(json!({"tenant_id": tenant, "mode": mode, "generation": generation})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn layer_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.starts_with("delta_") || name.starts_with("image_")) && !name.contains('.')
        })
        .collect()
}

#[test]
#[ignore = "benchmark: ~1 GiB through a real S3 server"]
fn upload_and_attach_throughput_vs_raw_object_store() {
    let s3 = SeaweedS3::start_new("bench").expect("weed mini starts");
    // The in-process pageservers read S3 settings from the environment; set
    // before any runtime thread exists.
    for (key, value) in s3.env() {
        std::env::set_var(key, value);
    }
    let mb: usize = std::env::var("SEDIMENT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(&s3, mb));
}

async fn bench(s3: &SeaweedS3, mb: usize) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut conf = test_conf();
    conf.remote_storage = Some("s3://bench/ps".into());
    let a = TestServer::start_with(&dir.path().join("a"), conf.clone()).await;
    let (status, body) = a
        .call("POST", "/v1/tenant", Some(json!({"generation": 1})))
        .await;
    assert_eq!(status, 201, "{body}");
    let tenant = body.as_str().unwrap().to_owned();
    let timeline = common::hex_id();
    let (status, body) = a
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/timeline"),
            Some(json!({"new_timeline_id": timeline})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Uploads paused (stale) while filling, so the upload is timed alone.
    location(&a, &tenant, "AttachedStale", 1).await;
    let storage = {
        let t = a.manager().get(tenant.parse().unwrap()).unwrap();
        t.timeline(timeline.parse().unwrap())
            .unwrap()
            .storage()
            .clone()
    };
    let started = Instant::now();
    let filler = storage.clone();
    tokio::task::spawn_blocking(move || fill(&filler, mb))
        .await
        .unwrap();
    eprintln!(
        "filled {mb} MiB in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let layers = layer_files(storage.dir());
    let bytes: u64 = layers
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let total_mb = bytes as f64 / (1024.0 * 1024.0);

    let started = Instant::now();
    location(&a, &tenant, "AttachedSingle", 1).await;
    loop {
        let info = a.timeline_info(&tenant, &timeline).await;
        if info["remote_consistent_lsn"] == info["disk_consistent_lsn"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "upload too slow"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let upload = started.elapsed().as_secs_f64();

    // Raw: the same bytes, sequential puts from this process.
    let raw = Remote::new(
        RemoteConfig::parse("s3://bench/raw")
            .unwrap()
            .open_with(&settings(s3))
            .unwrap(),
    );
    let mut names = Vec::new();
    let started = Instant::now();
    for (i, path) in layers.iter().enumerate() {
        let data = Bytes::from(tokio::fs::read(path).await.unwrap());
        let name = RemotePath::new(format!("raw/{i}")).unwrap();
        raw.put(&name, data).await.unwrap();
        names.push(name);
    }
    let raw_put = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let got: u64 = futures::stream::iter(names.iter())
        .map(|name| {
            let raw = &raw;
            async move { raw.get(name).await.unwrap().len() as u64 }
        })
        .buffer_unordered(8)
        .fold(0, |a, b| async move { a + b })
        .await;
    let raw_get = started.elapsed().as_secs_f64();
    assert_eq!(got, bytes);

    // Attach on a second pageserver (generation 2).
    let b = TestServer::start_with(&dir.path().join("b"), conf).await;
    let started = Instant::now();
    let (status, body) = b
        .call(
            "POST",
            &format!("/v1/tenant/{tenant}/attach"),
            Some(json!({"generation": 2, "config": {}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    loop {
        let (_, info) = b.call("GET", &format!("/v1/tenant/{tenant}"), None).await;
        match info["attachment_status"]["slug"].as_str() {
            Some("attached") => break,
            Some("maybe") => {}
            _ => panic!("attach failed: {info}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attach = started.elapsed().as_secs_f64();

    // The attach is lazy: reads download. One page, then every page.
    let b_storage = {
        let t = b.manager().get(tenant.parse().unwrap()).unwrap();
        t.timeline(timeline.parse().unwrap())
            .unwrap()
            .storage()
            .clone()
    };
    let (first_read, all_read) = tokio::task::spawn_blocking(move || {
        // The first read downloads the one layer holding the page.
        let lsn = b_storage.last_record_lsn();
        let started = Instant::now();
        let blkno = u32::try_from(mb * 1024 * 1024 / PAGE / 2).unwrap();
        let page = b_storage.get(key_of(blkno), lsn).unwrap();
        assert_eq!(&page[..], &self::page(u64::from(blkno) * 7919 + 1)[..]);
        let first = started.elapsed().as_secs_f64();
        let keys = b_storage
            .list_keys(storage::Key::MIN..storage::Key::MAX, lsn)
            .unwrap();
        for key in keys {
            b_storage.get(key, lsn).unwrap();
        }
        (first, started.elapsed().as_secs_f64())
    })
    .await
    .unwrap();

    eprintln!("layers: {} files, {total_mb:.0} MiB", layers.len());
    eprintln!(
        "upload: {upload:.1} s = {:.1} MiB/s; raw sequential put: {raw_put:.1} s = {:.1} MiB/s; ratio {:.2}",
        total_mb / upload,
        total_mb / raw_put,
        raw_put / upload
    );
    eprintln!(
        "attach: {attach:.1} s = {:.1} MiB/s; raw get x8: {raw_get:.1} s = {:.1} MiB/s; ratio {:.2}",
        total_mb / attach,
        total_mb / raw_get,
        raw_get / attach
    );
    eprintln!(
        "after attach: first page read {first_read:.2} s; every page read (downloads every layer on demand) {all_read:.1} s = {:.1} MiB/s",
        total_mb / all_read
    );
    a.stop().await;
    b.stop().await;
}
