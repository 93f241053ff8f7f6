//! The receiver against a real PostgreSQL 15 primary that names the
//! pageserver as its synchronous standby.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use walreceiver::{probe, ReceiverError, WalReceiver, WalStore};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn probe_reports_the_system_and_refuses_a_wrong_one() {
    let cluster = sync_cluster();
    let runtime = runtime();
    let expected: u64 = cluster
        .query_scalar("SELECT system_identifier FROM pg_control_system()")
        .unwrap();
    let info = runtime.block_on(probe(&cluster.connstr(), None)).unwrap();
    assert_eq!(info.system_id, expected);
    assert_eq!(info.timeline, 1);
    assert!(
        info.server_version.starts_with("15."),
        "{}",
        info.server_version
    );
    assert!(info.xlogpos.is_valid());

    // Over TCP too, with the right id given.
    let info = runtime
        .block_on(probe(&cluster.tcp_connstr(), Some(expected)))
        .unwrap();
    assert_eq!(info.system_id, expected);

    let error = runtime
        .block_on(probe(&cluster.connstr(), Some(expected + 1)))
        .unwrap_err();
    assert!(matches!(error, ReceiverError::SystemIdMismatch { actual, .. } if actual == expected));
    assert!(error.to_string().contains("system id"), "{error}");

    let error = runtime
        .block_on(probe("host=127.0.0.1 port=1 connect_timeout=2", None))
        .unwrap_err();
    assert!(matches!(error, ReceiverError::Connect { .. }), "{error}");
}

#[test]
fn streamed_wal_equals_the_servers_files_byte_for_byte() {
    let cluster = sync_cluster();
    let runtime = runtime();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let start = cluster.current_wal_lsn().unwrap();
    let (sink, recorded) = RecordingSink::new(start);
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    let receiver = WalReceiver::spawn(options(&cluster), store, sink);
    wait_until("connection", WAIT, || receiver.status().connected);

    // Every commit below waits for the receiver's flush report.
    testkit::workload::pgbench_init(&cluster, 1).unwrap();
    cluster.pgbench(&["-c", "4", "-T", "3", "-n"]).unwrap();
    let end = cluster.switch_wal().unwrap();
    wait_until("WAL up to the switch", WAIT, || {
        recorded.lock().end() >= end
    });

    let status = receiver.status();
    assert!(status.flush_lsn >= end, "{status:?}");
    assert!(status.apply_lsn >= end, "{status:?}");
    assert!(status.last_received_msg_ts.is_some());
    assert_eq!(status.reconnects, 0, "{status:?}");
    runtime.block_on(receiver.stop());

    let recorded = recorded.lock();
    assert!(recorded.violation.is_none(), "{:?}", recorded.violation);
    assert!(end - start > 1_000_000, "only {} bytes of WAL", end - start);
    assert_matches_server(&cluster, 1, &recorded, start, end);
    // The store holds the same bytes durably (and perhaps more: a stop
    // does not wait for the sink to catch up).
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    assert!(store.end_lsn().unwrap() >= recorded.end());
    let stored = store.read(start, recorded.bytes.len()).unwrap();
    assert!(
        stored == recorded.bytes,
        "the store differs from what the sink got"
    );
}

/// Kills a spawned client if the test fails before it exits.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn commits_wait_for_the_receiver_and_a_restart_replays_the_store() {
    let cluster = sync_cluster();
    let runtime = runtime();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let start = cluster.current_wal_lsn().unwrap();
    let (sink, recorded) = RecordingSink::new(start);
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    let receiver = WalReceiver::spawn(options(&cluster), store, sink);
    wait_until("connection", WAIT, || receiver.status().connected);
    cluster
        .psql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 10000)")
        .unwrap();
    let committed = cluster.current_wal_lsn().unwrap();
    // The server's view of our flush position is exactly what we reported.
    wait_until("server sees our flush LSN", WAIT, || {
        let ours = receiver.status().flush_lsn;
        ours >= committed && server_flush_lsn(&cluster) == Some(ours)
    });
    runtime.block_on(receiver.stop());
    let first_end = recorded.lock().end();
    assert!(first_end >= committed);

    // With no standby flushing, a commit does not return.
    let insert = cluster
        .command("psql")
        .args(["-X", "-q", "-c", "INSERT INTO t VALUES (-1)"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut insert = ChildGuard(insert);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        insert.0.try_wait().unwrap().is_none(),
        "commit returned without a standby"
    );

    // A new receiver over the reopened store, with a consumer that resumes
    // in the middle of what the store holds: it gets the stored tail
    // replayed, then new WAL, and the waiting commit completes.
    let resume = start + (first_end - start) / 2;
    let (sink, replayed) = RecordingSink::new(resume);
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    assert!(store.end_lsn().unwrap() >= first_end);
    let receiver = WalReceiver::spawn(options(&cluster), store, sink);
    let deadline = std::time::Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = insert.0.try_wait().unwrap() {
            break exit;
        }
        assert!(std::time::Instant::now() < deadline, "commit still waiting");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success());
    let end = cluster.switch_wal().unwrap();
    wait_until("WAL up to the switch", WAIT, || {
        replayed.lock().end() >= end
    });
    runtime.block_on(receiver.stop());

    let replayed = replayed.lock();
    assert!(replayed.violation.is_none(), "{:?}", replayed.violation);
    assert_eq!(replayed.calls[0].0, resume);
    assert_matches_server(&cluster, 1, &replayed, resume, end);
}

#[test]
fn receiver_reconnects_across_server_restarts_without_gaps() {
    let mut cluster = sync_cluster();
    let runtime = runtime();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let start = cluster.current_wal_lsn().unwrap();
    let (sink, recorded) = RecordingSink::new(start);
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    let receiver = WalReceiver::spawn(options(&cluster), store, sink);
    wait_until("connection", WAIT, || receiver.status().connected);
    testkit::workload::pgbench_init(&cluster, 1).unwrap();

    cluster.restart().unwrap();
    wait_for_status(
        &receiver,
        "reconnect after a fast restart",
        WAIT,
        |status| status.connected && status.reconnects >= 1,
    );
    cluster.pgbench(&["-c", "2", "-T", "2", "-n"]).unwrap();

    // A crash in the middle of a workload, then crash recovery.
    let bench = cluster
        .command("pgbench")
        .args(["-c", "2", "-T", "30", "-n"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let bench = ChildGuard(bench);
    std::thread::sleep(Duration::from_secs(2));
    let reconnects = receiver.status().reconnects;
    cluster.stop_immediate().unwrap();
    drop(bench);
    cluster.start().unwrap();
    wait_for_status(&receiver, "reconnect after a crash", WAIT, |status| {
        status.connected && status.reconnects > reconnects
    });
    cluster.pgbench(&["-c", "2", "-T", "2", "-n"]).unwrap();
    let end = cluster.switch_wal().unwrap();
    wait_until("WAL up to the switch", WAIT, || {
        recorded.lock().end() >= end
    });
    runtime.block_on(receiver.stop());

    let recorded = recorded.lock();
    assert!(recorded.violation.is_none(), "{:?}", recorded.violation);
    assert_matches_server(&cluster, 1, &recorded, start, end);
}

/// Fails once it has seen `limit` bytes.
struct FailingSink {
    resume: walreceiver::Lsn,
    seen: usize,
    limit: usize,
}

impl walreceiver::WalSink for FailingSink {
    fn resume_lsn(&self) -> walreceiver::Lsn {
        self.resume
    }

    fn consume(
        &mut self,
        lsn: walreceiver::Lsn,
        bytes: &[u8],
    ) -> Result<walreceiver::Lsn, walreceiver::SinkError> {
        self.seen += bytes.len();
        if self.seen > self.limit {
            return Err(walreceiver::SinkError::from("record at the end is bad"));
        }
        Ok(lsn + bytes.len() as u64)
    }
}

#[test]
fn wrong_system_is_retried_visibly_and_a_failing_sink_stops_the_receiver() {
    let cluster = PgClusterWithoutSync::start();
    let cluster = &cluster.0;
    let runtime = runtime();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let start = cluster.current_wal_lsn().unwrap();

    let mut wrong = options(cluster);
    wrong.expected_system_id = Some(42);
    let (sink, _) = RecordingSink::new(start);
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    let receiver = WalReceiver::spawn(wrong, store, sink);
    wait_for_status(&receiver, "a visible mismatch", WAIT, |status| {
        status.reconnects >= 2
            && !status.connected
            && status.running
            && status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("this timeline belongs to system id 42"))
    });
    runtime.block_on(receiver.stop());

    // Small store files, so that truncation has whole files to drop.
    let store = WalStore::open_with_file_size(&store_dir(dir.path()), 256 * 1024).unwrap();
    let sink = Box::new(FailingSink {
        resume: start,
        seen: 0,
        limit: 6 * 1024 * 1024,
    });
    let receiver = WalReceiver::spawn(options(cluster), store, sink);
    wait_for_status(&receiver, "connection", WAIT, |status| status.connected);
    // Files hold frames of up to 1 MiB, so the first file ends below 1.3
    // MiB and lies wholly below this point once the writer is past it.
    receiver.truncate_store_before(start + 2 * 1024 * 1024);
    testkit::workload::pgbench_init(cluster, 2).unwrap();
    wait_for_status(&receiver, "the sink's failure", WAIT, |status| {
        !status.running
    });
    let status = receiver.status();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("record at the end is bad")),
        "{status:?}"
    );
    assert!(!status.connected);
    runtime.block_on(receiver.stop());
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    let store_start = store.start_lsn().unwrap();
    assert!(
        store_start >= start && store_start <= start + 2 * 1024 * 1024,
        "store starts at {store_start}, streaming started at {start}"
    );
}

/// A cluster with no synchronous standby (commits never wait).
struct PgClusterWithoutSync(testkit::PgCluster);

impl PgClusterWithoutSync {
    fn start() -> Self {
        Self(
            testkit::PgCluster::builder()
                .setting("max_wal_senders", "10")
                .start()
                .unwrap(),
        )
    }
}

/// Records like [`RecordingSink`], but sleeps in every call while `slow`.
struct SlowSink {
    inner: RecordingSink,
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl walreceiver::WalSink for SlowSink {
    fn resume_lsn(&self) -> walreceiver::Lsn {
        self.inner.resume_lsn()
    }

    fn consume(
        &mut self,
        lsn: walreceiver::Lsn,
        bytes: &[u8],
    ) -> Result<walreceiver::Lsn, walreceiver::SinkError> {
        if self.slow.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1000));
        }
        self.inner.consume(lsn, bytes)
    }
}

#[test]
fn a_slow_consumer_does_not_hold_back_commits() {
    let cluster = sync_cluster();
    let runtime = runtime();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let start = cluster.current_wal_lsn().unwrap();
    let (inner, recorded) = RecordingSink::new(start);
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sink = Box::new(SlowSink {
        inner: *inner,
        slow: slow.clone(),
    });
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    let receiver = WalReceiver::spawn(options(&cluster), store, sink);
    wait_until("connection", WAIT, || receiver.status().connected);

    // Every commit of this waits for the flush report, none for ingest.
    testkit::workload::pgbench_init(&cluster, 2).unwrap();
    let committed = cluster.current_wal_lsn().unwrap();
    let status = receiver.status();
    assert!(status.flush_lsn >= committed, "{status:?}");
    assert!(
        status.flush_lsn - status.apply_lsn > 4 * 1024 * 1024,
        "ingest was not behind: {status:?}"
    );
    // The server sees the same: flushed far ahead of applied.
    let lag: i64 = cluster
        .query_scalar(
            "SELECT (flush_lsn - replay_lsn)::bigint FROM pg_stat_replication \
             WHERE application_name = 'pageserver'",
        )
        .unwrap();
    assert!(lag > 1024 * 1024, "server-side lag {lag}");

    // Stopping does not wait for the consumer to catch up.
    let stopping = std::time::Instant::now();
    runtime.block_on(receiver.stop());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopping.elapsed()
    );
    let first = std::mem::take(&mut *recorded.lock());
    assert!(first.violation.is_none(), "{:?}", first.violation);
    slow.store(false, std::sync::atomic::Ordering::Relaxed);

    // The next receiver replays what the first consumer missed, then streams.
    let resume = first.end();
    let (sink, recorded) = RecordingSink::new(resume);
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    assert!(store.end_lsn().unwrap() >= committed);
    let receiver = WalReceiver::spawn(options(&cluster), store, sink);
    cluster
        .psql("INSERT INTO pgbench_history VALUES (1, 1, 1, 1, now())")
        .unwrap();
    let end = cluster.switch_wal().unwrap();
    wait_until("ingest to catch up", WAIT, || recorded.lock().end() >= end);
    runtime.block_on(receiver.stop());
    let recorded = recorded.lock();
    assert!(recorded.violation.is_none(), "{:?}", recorded.violation);
    assert_matches_server(&cluster, 1, &first, start, resume);
    assert_matches_server(&cluster, 1, &recorded, resume, end);
}
