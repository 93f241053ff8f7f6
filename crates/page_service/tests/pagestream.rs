//! `pagestream_v2` on a real socket against a timeline imported from a
//! stock `initdb`: pages equal the store's, pipelined requests are all
//! answered, sizes/existence/listing agree with the relation directory,
//! requests wait for an LSN ingest has not reached yet, and bad input gets
//! clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../datadir/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{postgres_dir, scratch};
use page_service::client::{ClientError, PageClient};
use page_service::pagestream::RelTag;
use page_service::{MapResolver, PageServiceConfig};
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::Lsn;
use storage::{Key, Repository, RepositoryConfig, TenantId, Timeline, TimelineId, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Fixture {
    _root: tempfile::TempDir,
    _repo: Repository,
    tenant: TenantId,
    timeline: Arc<Timeline>,
    lsn: Lsn,
    addr: String,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn fixture() -> Fixture {
    let root = scratch();
    let orig = postgres_dir(&root.path().join("orig"));
    datadir::run_initdb(common::PG_BIN.as_ref(), &orig).unwrap();
    let repo = Repository::open(&root.path().join("repo"), RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let stats = datadir::import_datadir(&timeline, &orig).unwrap();
    let tenant = TenantId::generate();
    let resolver = Arc::new(MapResolver::default());
    resolver.insert(tenant, timeline.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let config = PageServiceConfig {
        wait_lsn_timeout: Duration::from_millis(1500),
        ..PageServiceConfig::default()
    };
    tokio::spawn(page_service::serve(
        listener,
        resolver,
        config,
        shutdown.clone(),
    ));
    Fixture {
        _root: root,
        _repo: repo,
        tenant,
        timeline,
        lsn: stats.lsn,
        addr,
        _shutdown: shutdown.drop_guard(),
    }
}

/// `pg_class` of database 5 (`postgres`) in a fresh initdb.
fn pg_class() -> RelTag {
    RelTag {
        rel: RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: 1259,
        },
        fork: ForkNumber::Main,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_sizes_and_listing_match_the_store() {
    let f = fixture().await;
    let client = PageClient::connect(&f.addr, f.tenant, f.timeline.id())
        .await
        .unwrap();
    let listing = client.list_relations(f.lsn).await.unwrap();
    assert!(listing.len() > 100, "{} forks listed", listing.len());
    let class = listing.iter().find(|e| e.tag == pg_class()).unwrap();
    assert!(class.blocks > 1);
    assert_eq!(
        client.rel_size(pg_class(), f.lsn).await.unwrap(),
        class.blocks
    );
    assert!(client.rel_exists(pg_class(), f.lsn).await.unwrap());

    // Every page of every fork, pipelined through one connection: equal to
    // the store's bytes (or a zero page where the store has none).
    let mut calls = Vec::new();
    for entry in &listing {
        for blkno in 0..entry.blocks {
            let client = client.clone();
            let (tag, lsn) = (entry.tag, f.lsn);
            calls.push(tokio::spawn(async move {
                (tag, blkno, client.get_page(tag, blkno, lsn).await)
            }));
        }
    }
    let total = calls.len();
    let mut db5_bytes = 0u64;
    for call in calls {
        let (tag, blkno, page) = call.await.unwrap();
        let page = page.unwrap();
        let key = Key::rel_block(tag.rel, tag.fork, blkno);
        let expected = f
            .timeline
            .get(key, f.lsn)
            .unwrap_or_else(|_| Bytes::from(vec![0u8; BLCKSZ]));
        assert_eq!(page, expected, "{tag:?} block {blkno}");
        if tag.rel.db_node == 5 {
            db5_bytes += BLCKSZ as u64;
        }
    }
    assert!(total > 500, "{total} pages");
    assert_eq!(client.db_size(1663, 5, f.lsn).await.unwrap(), db5_bytes);

    // Ranges equal single pages.
    let range = client.get_pages(pg_class(), 0, 2, f.lsn).await.unwrap();
    assert_eq!(
        range[1],
        client.get_page(pg_class(), 1, f.lsn).await.unwrap()
    );

    // A relation that does not exist.
    let missing = RelTag {
        rel: RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: 999_999,
        },
        fork: ForkNumber::Main,
    };
    assert!(!client.rel_exists(missing, f.lsn).await.unwrap());
    match client.rel_size(missing, f.lsn).await {
        Err(ClientError::Server { sqlstate, message }) => {
            assert_eq!(sqlstate, "42P01");
            assert!(message.contains("999999"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The stream goes on after a failed request.
    assert!(client.rel_exists(pg_class(), f.lsn).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_ingest_then_time_out() {
    let f = fixture().await;
    let client = PageClient::connect(&f.addr, f.tenant, f.timeline.id())
        .await
        .unwrap();
    let future_lsn = Lsn(f.lsn.0 + 0x1000);
    let key = Key::rel_block(pg_class().rel, pg_class().fork, 0);
    let new_page = Bytes::from(vec![7u8; BLCKSZ]);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.get_page(pg_class(), 0, future_lsn).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "answered before ingest reached the LSN"
    );
    let mut writer = f.timeline.writer();
    writer
        .put(key, future_lsn, Value::Image(new_page.clone()))
        .unwrap();
    writer.finish(future_lsn).unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), new_page);

    // Never reached: a clear error after the server's timeout.
    let started = Instant::now();
    match client
        .get_page(pg_class(), 0, Lsn(f.lsn.0 + 0x100_0000))
        .await
    {
        Err(ClientError::Server { sqlstate, message }) => {
            assert_eq!(sqlstate, "22023");
            assert!(message.contains("timed out"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_malformed_messages_get_errors() {
    let f = fixture().await;
    match PageClient::connect(&f.addr, TenantId::generate(), f.timeline.id()).await {
        Err(ClientError::Server { sqlstate, .. }) => assert_eq!(sqlstate, "3D000"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("unknown tenant accepted"),
    }
    // A raw client sends a CopyData that does not decode: ErrorResponse,
    // then the server closes.
    let mut socket = tokio::net::TcpStream::connect(&f.addr).await.unwrap();
    let mut startup = Vec::new();
    let body = b"\0\x03\0\0user\0x\0\0";
    startup.extend_from_slice(&((4 + body.len()) as u32).to_be_bytes());
    startup.extend_from_slice(body);
    socket.write_all(&startup).await.unwrap();
    let query = format!("pagestream_v2 {} {}\0", f.tenant, f.timeline.id());
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((4 + query.len()) as u32).to_be_bytes());
    msg.extend_from_slice(query.as_bytes());
    msg.extend_from_slice(b"d\0\0\0\x07Zxyz");
    socket.write_all(&msg).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(answer.contains(&b'W'), "no CopyBothResponse");
    assert!(
        text.contains("malformed pagestream message"),
        "no clear error: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_base_backup_is_the_full_one_with_sparse_relations() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture().await;
    let client = PageClient::connect(&f.addr, f.tenant, f.timeline.id())
        .await
        .unwrap();
    let backup = client.lazy_basebackup(Some(f.lsn)).await.unwrap();
    assert_eq!(backup.lsn, f.lsn);
    let root = scratch();
    let lazy = root.path().join("lazy");
    std::fs::create_dir(&lazy).unwrap();
    datadir::lazy::write_lazy_datadir(
        &lazy,
        &backup.tar[..],
        backup.segments.iter().map(|s| datadir::lazy::SparseFile {
            path: &s.path,
            size_bytes: u64::from(s.blocks) * BLCKSZ as u64,
        }),
    )
    .unwrap();
    let full = root.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let mut tar = Vec::new();
    datadir::Basebackup::prepare(&f.timeline, Some(f.lsn))
        .unwrap()
        .write_tar(&mut tar)
        .unwrap();
    tar::Archive::new(&tar[..]).unpack(&full).unwrap();

    let full_files = common::relation_files(&full);
    let lazy_files = common::relation_files(&lazy);
    assert_eq!(
        full_files.keys().collect::<Vec<_>>(),
        lazy_files.keys().collect::<Vec<_>>()
    );
    let segments: std::collections::HashSet<&str> =
        backup.segments.iter().map(|s| s.path.as_str()).collect();
    let mut sparse_bytes = 0;
    for (path, full_bytes) in &full_files {
        let meta = std::fs::metadata(lazy.join(path)).unwrap();
        assert_eq!(meta.len(), full_bytes.len() as u64, "{path}");
        if segments.contains(path.as_str()) {
            assert_eq!(meta.blocks(), 0, "{path} is not sparse");
            sparse_bytes += meta.len();
        } else if !path.starts_with("pg_wal") && path != "global/pg_control" {
            // (pg_control and the checkpoint segment carry the time.)
            assert_eq!(&lazy_files[path], full_bytes, "{path}");
        }
    }
    assert!(sparse_bytes > 5 << 20, "{sparse_bytes} sparse bytes");
}
