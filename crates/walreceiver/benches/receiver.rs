//! Numbers for the receiver: raw store throughput (append + fsync), and
//! what being the synchronous standby costs a real PostgreSQL 15 primary
//! under pgbench, compared with no synchronous standby.
//!
//! `cargo bench -p walreceiver --bench receiver` (prints a small table).
//! The test clusters run with `fsync = off`, so the primary's own commits
//! are cheap and the receiver's fsync dominates the synchronous case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::PgCluster;
use walreceiver::{Lsn, ReceiverOptions, SinkError, WalReceiver, WalSink, WalStore};

const PGBENCH_SECS: &str = "10";

fn main() {
    store_throughput();
    store_sync_rate();
    sync_standby_cost();
}

/// Large appends with a sync every 1 MiB: streaming bandwidth of the store.
fn store_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    let chunk = vec![0x5Au8; 128 * 1024];
    let total_bytes: u64 = 512 * 1024 * 1024;
    let started = Instant::now();
    let mut lsn = Lsn(0x100_0000);
    let chunks = total_bytes / chunk.len() as u64;
    for i in 1..=chunks {
        store.append(lsn, &chunk).unwrap();
        lsn = lsn + chunk.len() as u64;
        if i % 8 == 0 {
            store.sync().unwrap();
        }
    }
    store.sync().unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "store: 128 KiB appends, sync per MiB: {:.0} MiB/s ({} MiB in {secs:.2} s)",
        total_bytes as f64 / 1048576.0 / secs,
        total_bytes / 1048576
    );
}

/// Small append + sync each time: the per-commit floor of a sync standby.
fn store_sync_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open(dir.path()).unwrap();
    let record = vec![0xA5u8; 200];
    let syncs = 2000;
    let mut lsn = Lsn(0x100_0000);
    let started = Instant::now();
    for _ in 0..syncs {
        store.append(lsn, &record).unwrap();
        lsn = lsn + record.len() as u64;
        store.sync().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "store: 200 B append + sync: {:.0} syncs/s, {:.3} ms each",
        syncs as f64 / secs,
        secs * 1000.0 / syncs as f64
    );
}

/// Counts bytes; the cheapest possible consumer.
struct CountingSink(Lsn, Arc<AtomicU64>);

impl WalSink for CountingSink {
    fn resume_lsn(&self) -> Lsn {
        self.0
    }
    fn consume(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, SinkError> {
        self.1.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(lsn + bytes.len() as u64)
    }
}

/// A cluster with pgbench tables (scale 10) and no synchronous standby yet.
fn cluster() -> PgCluster {
    let cluster = PgCluster::builder()
        .setting("max_wal_senders", "4")
        .start()
        .unwrap();
    cluster.pgbench(&["-i", "-s", "10", "-q"]).unwrap();
    cluster
}

fn sync_standby_cost() {
    for clients in ["1", "8"] {
        let baseline = {
            let cluster = cluster();
            cluster
                .pgbench_tps(&["-c", clients, "-j", "2", "-T", PGBENCH_SECS, "-n"])
                .unwrap()
        };
        let (tps, wal_bytes) = {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let _guard = runtime.enter();
            let dir = tempfile::tempdir().unwrap();
            // pgbench -i runs before the receiver exists, so the cluster
            // starts without synchronous standby and gets it afterwards.
            let cluster = cluster();
            let start = cluster.current_wal_lsn().unwrap();
            let bytes = Arc::new(AtomicU64::new(0));
            let sink = Box::new(CountingSink(start, bytes.clone()));
            let store = WalStore::open(dir.path()).unwrap();
            let receiver = WalReceiver::spawn(
                ReceiverOptions::new(cluster.connstr(), "bench"),
                store,
                sink,
            );
            while !receiver.status().connected {
                std::thread::sleep(Duration::from_millis(20));
            }
            cluster
                .psql("ALTER SYSTEM SET synchronous_standby_names = 'pageserver'; SELECT pg_reload_conf()")
                .unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let tps = cluster
                .pgbench_tps(&["-c", clients, "-j", "2", "-T", PGBENCH_SECS, "-n"])
                .unwrap();
            runtime.block_on(receiver.stop());
            (tps, bytes.load(Ordering::Relaxed))
        };
        let wal_mib_s = wal_bytes as f64 / 1048576.0 / PGBENCH_SECS.parse::<f64>().unwrap();
        println!(
            "pgbench tpcb-like -c {clients}: {baseline:.0} tps without sync standby, {tps:.0} tps with the receiver as sync standby ({:.0}%), WAL {wal_mib_s:.1} MiB/s",
            tps / baseline * 100.0
        );
    }
}
