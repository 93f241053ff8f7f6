//! GetPage@LSN over `pagestream_v2`: throughput and latency, hot and cold,
//! shallow and deep history, through the real server and client on a
//! loopback socket.
//!
//! ```text
//! cargo bench -p page_service --bench getpage
//! ```
//!
//! The timeline is synthetic: one relation of `PAGES` distinct 8 KiB page
//! images. "Shallow": one version of every page in one layer. "Deep": the
//! same pages rewritten `DEEP_VERSIONS` times, each round flushed to its
//! own layer file, read at the LSN of the first round, so every read goes
//! past every newer layer. (Versions are page images, not WAL records: the
//! redo cost of long delta chains is the redo crate's bench.) "Hot": the
//! pages were read before and sit in the store's page cache. "Cold": the
//! store's page cache was cleared first (the OS page cache is not dropped:
//! other work shares this machine).
//!
//! Latency: one request in flight. Throughput: `IN_FLIGHT` requests in
//! flight on one connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use page_service::client::PageClient;
use page_service::pagestream::RelTag;
use page_service::{MapResolver, PageServiceConfig};
use postgres_wal::record::{ForkNumber, RelFileNode, BLCKSZ};
use postgres_wal::Lsn;
use storage::{Key, Repository, RepositoryConfig, TenantId, TimelineId, Value};

const PAGES: u32 = 8192;
const DEEP_VERSIONS: u64 = 24;
const IN_FLIGHT: usize = 64;

fn tag() -> RelTag {
    RelTag {
        rel: RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: 16384,
        },
        fork: ForkNumber::Main,
    }
}

fn page(blkno: u32, version: u64) -> Bytes {
    let mut page = vec![0u8; BLCKSZ];
    for (i, chunk) in page.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &(u64::from(blkno) * 1_000_003 + version * 7 + i as u64).to_le_bytes(),
        );
    }
    Bytes::from(page)
}

struct Setup {
    repo: Repository,
    tenant: TenantId,
    timeline: TimelineId,
    read_lsn: Lsn,
}

fn build(dir: &std::path::Path, versions: u64) -> Setup {
    let repo = Repository::open(dir, RepositoryConfig::default()).unwrap();
    let timeline = repo
        .create_timeline(TimelineId::generate(), 15, Lsn::INVALID)
        .unwrap();
    let t = tag();
    let mut read_lsn = Lsn::INVALID;
    for v in 0..versions {
        let lsn = Lsn(0x100_0000 + (v + 1) * 0x10_0000);
        let mut writer = timeline.writer();
        for blkno in 0..PAGES {
            writer
                .put(
                    Key::rel_block(t.rel, t.fork, blkno),
                    lsn,
                    Value::Image(page(blkno, v)),
                )
                .unwrap();
        }
        writer.finish(lsn).unwrap();
        timeline.freeze_and_flush().unwrap();
        if v == 0 {
            read_lsn = lsn;
        }
    }
    Setup {
        tenant: TenantId::generate(),
        timeline: timeline.id(),
        repo,
        read_lsn,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

async fn measure(label: &str, client: &PageClient, lsn: Lsn, clear: &dyn Fn()) {
    let t = tag();
    // Latency, one in flight.
    clear();
    let mut lat = Vec::with_capacity(PAGES as usize);
    for blkno in 0..PAGES {
        let started = Instant::now();
        let p = client.get_page(t, blkno, lsn).await.unwrap();
        lat.push(started.elapsed());
        assert_eq!(p.len(), BLCKSZ);
    }
    lat.sort();
    // Throughput, IN_FLIGHT in flight.
    clear();
    let started = Instant::now();
    let rounds = 2u32;
    let mut tasks = Vec::new();
    for w in 0..IN_FLIGHT {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut blkno = w as u32;
            while blkno < PAGES * rounds {
                client.get_page(t, blkno % PAGES, lsn).await.unwrap();
                blkno += IN_FLIGHT as u32;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<16} p50 {:>7.1} µs  p99 {:>7.1} µs  (1 in flight)   throughput {:>8.0} pages/s ({IN_FLIGHT} in flight)",
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
        f64::from(PAGES * rounds) / secs,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    for (name, versions) in [("shallow", 1), ("deep", DEEP_VERSIONS)] {
        let setup = build(&root.path().join(name), versions);
        let resolver = Arc::new(MapResolver::default());
        resolver.insert(setup.tenant, setup.repo.timeline(setup.timeline).unwrap());
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(page_service::serve(
                listener,
                resolver,
                PageServiceConfig::default(),
                shutdown.clone(),
            ));
            let client = PageClient::connect(&addr, setup.tenant, setup.timeline)
                .await
                .unwrap();
            let repo = &setup.repo;
            measure(&format!("{name} cold"), &client, setup.read_lsn, &|| {
                repo.clear_page_cache()
            })
            .await;
            measure(&format!("{name} hot"), &client, setup.read_lsn, &|| {}).await;
            shutdown.cancel();
        });
    }
}
