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
    // The store holds the same bytes durably.
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    assert_eq!(store.read(start, usize::MAX).unwrap(), recorded.bytes);
}
