//! Failover benchmark (not a test), three real daemons and PostgreSQL 15:
//! - kill -9 of the leader's qluster and postmaster → first write the new primary
//!   accepts (min / median / max over `QLUSTER_BENCH_KILLS` kills, default 20);
//! - rejoin: restart of the killed node → it is a standby again;
//! - switchover: `POST /leader?node=N` while a client commits every 50 ms through a
//!   multi-host read-write connection string → the largest gap between its commits;
//!
//! for the default settings and for qluster's previous defaults, next to Patroni's
//! numbers measured earlier on this machine with Patroni's defaults.
//!
//! Run: `cargo bench -p qluster --bench failover`
//! (`QLUSTER_BENCH_CONFIGS=default` runs only the defaults.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::writer::Writer;
use common::{sql, wait_until, Cluster};

/// Patroni with its defaults, measured earlier on this machine (3 nodes, etcd): kill -9
/// of the leader → first accepted write, and the write gap of a planned switchover.
const PATRONI_FAILOVER: Duration = Duration::from_millis(27_800);
const PATRONI_SWITCHOVER_GAP: Duration = Duration::from_millis(1_380);

/// qluster's defaults before the sub-second ones.
const PREVIOUS: &str = "cluster:\n  node-timeout: 1500ms\n  heartbeat-interval: 100ms\n  pre-voting-timeout: 500ms\n  leader-voting-timeout: 500ms\n";

fn writable_leader(c: &Cluster) -> Option<usize> {
    match c.leaders()[..] {
        [l] if sql(c.nodes[l].db_port, "INSERT INTO probe VALUES (1)").is_ok() => Some(l),
        _ => None,
    }
}

fn is_standby(c: &Cluster, i: usize) -> bool {
    sql(c.nodes[i].db_port, "SELECT pg_is_in_recovery()").is_ok_and(|r| r == ["t"])
}

fn stats(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_millis();
    format!(
        "min {} ms, median {} ms, max {} ms (n={})",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn run(name: &str, extra: &str, kills: usize) {
    let mut c = Cluster::with_proxies(3, true, extra);
    wait_until(Duration::from_secs(120), "primary", || {
        c.leaders().first().is_some_and(|l| {
            sql(
                c.nodes[*l].db_port,
                "CREATE TABLE IF NOT EXISTS probe (v int); \
                 CREATE TABLE IF NOT EXISTS acked (v int primary key)",
            )
            .is_ok()
        })
    });
    let mut leader = c.leaders()[0];
    let (mut failovers, mut rejoins) = (Vec::new(), Vec::new());
    for _ in 0..kills {
        wait_until(Duration::from_secs(180), "all standbys", || {
            (0..3).filter(|i| *i != leader).all(|i| is_standby(&c, i))
        });
        let victim = leader;
        let t0 = Instant::now();
        c.kill9(victim);
        loop {
            if let Some(l) = writable_leader(&c) {
                leader = l;
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "no failover");
            std::thread::sleep(Duration::from_millis(10));
        }
        failovers.push(t0.elapsed());
        let t1 = Instant::now();
        c.start(victim);
        wait_until(Duration::from_secs(180), "rejoin", || {
            is_standby(&c, victim)
        });
        rejoins.push(t1.elapsed());
    }
    // Switchovers under a steady client.
    let writer = Writer::start(&c);
    std::thread::sleep(Duration::from_secs(1));
    let mut gaps = Vec::new();
    for _ in 0..5 {
        wait_until(Duration::from_secs(180), "all standbys", || {
            (0..3).filter(|i| *i != leader).all(|i| is_standby(&c, i))
        });
        let target = (leader + 1) % 3;
        let t0 = Instant::now();
        let (code, body) = c.send(
            "POST",
            leader,
            &format!("/leader?node={}", c.nodes[target].id),
            None,
        );
        assert_eq!(code, 200, "{body}");
        std::thread::sleep(Duration::from_secs(2));
        gaps.push(writer.snapshot().largest_gap(t0, Instant::now()));
        leader = target;
    }
    writer.stop(&c);
    println!("{name}: kill -9 failover {}", stats(failovers.clone()));
    println!("{name}: rejoin {}", stats(rejoins));
    println!("{name}: switchover write gap {}", stats(gaps.clone()));
    println!(
        "{name}: median failover {:?} (Patroni {PATRONI_FAILOVER:?}); median switchover gap {:?} (Patroni {PATRONI_SWITCHOVER_GAP:?})",
        median(failovers),
        median(gaps)
    );
}

fn main() {
    let kills = std::env::var("QLUSTER_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let which =
        std::env::var("QLUSTER_BENCH_CONFIGS").unwrap_or_else(|_| "default,previous".into());
    if which.contains("default") {
        run("default", "", kills);
    }
    if which.contains("previous") {
        run("previous defaults", PREVIOUS, kills);
    }
}
