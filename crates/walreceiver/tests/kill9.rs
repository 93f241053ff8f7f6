//! kill -9 of a process running the receiver: every flush position the
//! server saw reported must be in the store when it is reopened, and a new
//! receiver over that store continues without a gap.
//!
//! The receiver runs in a child process: this same test binary re-executed
//! with `WALRECEIVER_KILL9_*` variables, which make the ignored test
//! `child_runs_a_receiver_until_killed` run a receiver forever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use walreceiver::{Lsn, WalReceiver, WalStore};

const WAIT: Duration = Duration::from_secs(60);
const ENV_CONNSTR: &str = "WALRECEIVER_KILL9_CONNSTR";
const ENV_DIR: &str = "WALRECEIVER_KILL9_DIR";
const ENV_START: &str = "WALRECEIVER_KILL9_START";

#[test]
#[ignore = "runs only as the child of durable_flush_survives_kill_9"]
fn child_runs_a_receiver_until_killed() {
    let (Ok(connstr), Ok(dir), Ok(start)) = (
        std::env::var(ENV_CONNSTR),
        std::env::var(ENV_DIR),
        std::env::var(ENV_START),
    ) else {
        return;
    };
    let runtime = runtime();
    let _guard = runtime.enter();
    let start: Lsn = start.parse().unwrap();
    let (sink, _recorded) = RecordingSink::new(start);
    let store = WalStore::open(&PathBuf::from(dir)).unwrap();
    let mut options = walreceiver::ReceiverOptions::new(connstr, "pageserver_test");
    options.status_interval = Duration::from_millis(100);
    let _receiver = WalReceiver::spawn(options, store, sink);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn durable_flush_survives_kill_9() {
    let cluster = sync_cluster();
    let dir = tempfile::tempdir().unwrap();
    let store_path = store_dir(dir.path());
    let start = cluster.current_wal_lsn().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_runs_a_receiver_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(ENV_CONNSTR, cluster.connstr())
        .env(ENV_DIR, &store_path)
        .env(ENV_START, start.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    wait_until("the child's receiver to connect", WAIT, || {
        server_flush_lsn(&cluster).is_some()
    });

    // Commits in flight while the receiver dies.
    let bench = cluster
        .command("pgbench")
        .args(["-i", "-s", "2", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut bench = KillOnDrop(bench);
    std::thread::sleep(Duration::from_secs(2));
    let reported = server_flush_lsn(&cluster).unwrap();
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(reported > start, "nothing was streamed before the kill");

    let store = WalStore::open(&store_path).unwrap();
    let end = store.end_lsn().unwrap();
    assert!(
        end >= reported,
        "store ends at {end}, the server was told {reported}"
    );
    assert_eq!(store.start_lsn(), Some(start));

    // A new receiver over the recovered store: replays it and continues;
    // the waiting pgbench then finishes.
    let runtime = runtime();
    let _guard = runtime.enter();
    let (sink, recorded) = RecordingSink::new(start);
    let receiver = WalReceiver::spawn(options(&cluster), store, sink);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while bench.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "pgbench still waiting"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let switch = cluster.switch_wal().unwrap();
    wait_until("WAL up to the switch", WAIT, || {
        recorded.lock().end() >= switch
    });
    runtime.block_on(receiver.stop());
    let recorded = recorded.lock();
    assert!(recorded.violation.is_none(), "{:?}", recorded.violation);
    assert_matches_server(&cluster, 1, &recorded, start, switch);
}
