//! Failover benchmark (not a test): kill -9 the leader's qluster and postmaster, time
//! until the new primary accepts its first write; min / median / max over
//! `QLUSTER_BENCH_KILLS` kills (default 20), for the default and a tuned config.
//!
//! Run: `cargo bench -p qluster --bench failover`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{sql, wait_until, Cluster};

const TUNED: &str = "cluster:\n  node-timeout: 800ms\n  heartbeat-interval: 50ms\n  pre-voting-timeout: 200ms\n  leader-voting-timeout: 200ms\n";

fn writable_leader(c: &Cluster) -> Option<usize> {
    match c.leaders()[..] {
        [l] if sql(c.nodes[l].db_port, "INSERT INTO probe VALUES (1)").is_ok() => Some(l),
        _ => None,
    }
}

fn is_standby(c: &Cluster, i: usize) -> bool {
    sql(c.nodes[i].db_port, "SELECT pg_is_in_recovery()")
        .map(|r| r == ["t"])
        .unwrap_or(false)
}

fn run(name: &str, extra: &str, kills: usize) {
    let mut c = Cluster::new(3, true, extra);
    wait_until(Duration::from_secs(120), "primary", || {
        c.leaders().first().is_some_and(|l| {
            sql(
                c.nodes[*l].db_port,
                "CREATE TABLE IF NOT EXISTS probe (v int)",
            )
            .is_ok()
        })
    });
    let mut leader = c.leaders()[0];
    let mut times = Vec::new();
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
            std::thread::sleep(Duration::from_millis(20));
        }
        times.push(t0.elapsed());
        c.start(victim);
    }
    times.sort();
    let ms = |d: Duration| d.as_millis();
    println!(
        "{name}: {} kills, failover min {} ms, median {} ms, max {} ms",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}

fn main() {
    let kills = std::env::var("QLUSTER_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // QLUSTER_BENCH_CONFIGS=tuned (or default) runs one of the two.
    let which = std::env::var("QLUSTER_BENCH_CONFIGS").unwrap_or_else(|_| "default,tuned".into());
    if which.contains("default") {
        run("default", "", kills);
    }
    if which.contains("tuned") {
        run("tuned", TUNED, kills);
    }
}
