//! Where the receiver's threads run, against a real PostgreSQL 15 primary:
//! the streaming thread, whose fsyncs every commit waits for, on the CPUs
//! it was given, in the real-time class; the sink and trim threads it
//! starts on every CPU, in the normal class. A binary
//! of its own, so no other test's receiver threads are in the process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use threadsched::{current_thread_cpus, format_cpu_list, CpuSet};
use walreceiver::{Placement, WalReceiver, WalStore};

const WAIT: Duration = Duration::from_secs(60);

/// The `/proc` directories of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|task| task.unwrap().path())
        .filter(|task| {
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            comm.trim() == name
        })
        .collect()
}

/// The scheduling policy of every thread of this process named `name`
/// (field 41 of its `stat`: 0 normal, 1 `SCHED_FIFO`).
fn threads_policy(name: &str) -> Vec<u32> {
    threads_named(name)
        .iter()
        .map(|task| {
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            // Fields after the command name (which may hold spaces) start at 3.
            let after_name = stat.rsplit_once(')').unwrap().1;
            after_name
                .split_whitespace()
                .nth(41 - 3)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// The `Cpus_allowed_list` of every thread of this process named `name`.
fn threads_cpus(name: &str) -> Vec<String> {
    threads_named(name)
        .iter()
        .map(|task| {
            let status = std::fs::read_to_string(task.join("status")).unwrap();
            let list = status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .unwrap();
            list.trim().to_owned()
        })
        .collect()
}

#[test]
fn the_streaming_thread_runs_on_its_cpus_and_the_sink_everywhere() {
    let cluster = sync_cluster();
    let runtime = runtime();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let allowed = current_thread_cpus().unwrap();
    let last = *allowed.iter().next_back().unwrap();
    let start = cluster.current_wal_lsn().unwrap();
    let (sink, recorded) = RecordingSink::new(start);
    let store = WalStore::open(&store_dir(dir.path())).unwrap();
    let mut opts = options(&cluster);
    opts.placement = Placement::Cpus(CpuSet::from([last]));
    let receiver = WalReceiver::spawn(opts, store, sink);
    wait_until("connection", WAIT, || receiver.status().connected);
    // Commits still return: the pinned thread streams and syncs.
    cluster
        .psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i")
        .unwrap();
    let end = cluster.switch_wal().unwrap();
    wait_until("WAL up to the switch", WAIT, || {
        recorded.lock().end() >= end
    });

    assert_eq!(threads_cpus("wal-stream"), [last.to_string()]);
    let everywhere = format_cpu_list(&allowed);
    for name in ["wal-sink", "wal-trim"] {
        assert_eq!(threads_cpus(name), [everywhere.as_str()], "{name}");
        assert_eq!(threads_policy(name), [0], "{name}");
    }
    // Pinned, it preempts instead of waiting (where the process may).
    // SAFETY: no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        assert_eq!(threads_policy("wal-stream"), [1]);
    }
    runtime.block_on(receiver.stop());
}
