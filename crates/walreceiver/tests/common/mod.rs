//! Shared helpers of the receiver tests: a PG15 cluster set up as a primary
//! with the pageserver as its synchronous standby, a recording sink, and
//! reading the server's own WAL files to compare against.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use testkit::PgCluster;
use walreceiver::{Lsn, ReceiverOptions, SinkError, WalSink};

/// A cluster whose commits wait for a standby named `pageserver`, keeping
/// all WAL so the test can read the segment files afterwards.
pub fn sync_cluster() -> PgCluster {
    PgCluster::builder()
        .settings(&[
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("synchronous_standby_names", "pageserver"),
            ("synchronous_commit", "on"),
        ])
        .retain_all_wal()
        .start()
        .unwrap()
}

/// Receiver options for `cluster` with fast retries.
pub fn options(cluster: &PgCluster) -> ReceiverOptions {
    let mut options = ReceiverOptions::new(cluster.connstr(), "pageserver_test");
    options.backoff_min = Duration::from_millis(50);
    options.backoff_max = Duration::from_millis(500);
    options.status_interval = Duration::from_millis(200);
    options
}

/// What a [`RecordingSink`] received.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Where the sink asked to resume.
    pub resume: Lsn,
    /// Contiguous bytes from `resume`.
    pub bytes: Vec<u8>,
    /// Every consume call's LSN and length, in order.
    pub calls: Vec<(Lsn, usize)>,
    /// A gap or an overlap, if one ever happened.
    pub violation: Option<String>,
}

impl Recorded {
    pub fn end(&self) -> Lsn {
        self.resume + self.bytes.len() as u64
    }
}

/// Records everything it consumes and checks contiguity.
pub struct RecordingSink(pub Arc<Mutex<Recorded>>);

impl RecordingSink {
    pub fn new(resume: Lsn) -> (Box<RecordingSink>, Arc<Mutex<Recorded>>) {
        let recorded = Arc::new(Mutex::new(Recorded {
            resume,
            ..Recorded::default()
        }));
        (Box::new(RecordingSink(recorded.clone())), recorded)
    }
}

impl WalSink for RecordingSink {
    fn resume_lsn(&self) -> Lsn {
        self.0.lock().resume
    }

    fn consume(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, SinkError> {
        let mut recorded = self.0.lock();
        recorded.calls.push((lsn, bytes.len()));
        let expected = recorded.end();
        if lsn != expected {
            let message = format!("consume at {lsn}, expected {expected}");
            recorded.violation = Some(message.clone());
            return Err(SinkError::failed(message));
        }
        recorded.bytes.extend_from_slice(bytes);
        Ok(recorded.end())
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`wait_until`] on the receiver's status, showing it on timeout.
pub fn wait_for_status(
    receiver: &walreceiver::WalReceiver,
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut(&walreceiver::ReceiverStatus) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = receiver.status();
        if condition(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server's WAL bytes `from..to`, read from its `pg_wal` segment files.
pub fn server_wal(cluster: &PgCluster, timeline: u32, from: Lsn, to: Lsn) -> Vec<u8> {
    let segment_size = cluster.wal_segment_size().unwrap();
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let name = at.wal_file_name(timeline, segment_size);
        let path = cluster.wal_dir().join(&name);
        let segment = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let offset = at.segment_offset(segment_size) as usize;
        let take = (segment.len() - offset).min((to - at) as usize);
        out.extend_from_slice(&segment[offset..offset + take]);
        at = at + take as u64;
    }
    out
}

/// Asserts the recorded bytes equal the server's WAL over `from..to` (both
/// inside what was recorded), naming the first differing LSN.
pub fn assert_matches_server(
    cluster: &PgCluster,
    timeline: u32,
    recorded: &Recorded,
    from: Lsn,
    to: Lsn,
) {
    assert!(
        recorded.resume <= from && to <= recorded.end(),
        "{from}..{to} not all recorded"
    );
    let ours = &recorded.bytes[(from - recorded.resume) as usize..(to - recorded.resume) as usize];
    let theirs = server_wal(cluster, timeline, from, to);
    if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!("WAL differs from the server's at {}", from + i as u64);
    }
    assert_eq!(ours.len(), theirs.len());
}

/// `flush_lsn` the server shows for our connection in pg_stat_replication.
pub fn server_flush_lsn(cluster: &PgCluster) -> Option<Lsn> {
    let text = cluster
        .psql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pageserver'")
        .ok()?;
    text.trim().parse().ok()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn store_dir(root: &Path) -> std::path::PathBuf {
    root.join("wal")
}
