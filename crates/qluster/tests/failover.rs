//! Postgres follows the leader, with three real `qluster` daemons each managing a real
//! PostgreSQL 15: replication, `kill -9` failover with rejoin, and partition fencing.
//!
//! `QLUSTER_KILL_LOOPS` sets the number of kill rounds (default 3 for CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{sql, wait_until, Cluster};

/// The two tests each run three Postgres servers; running them one at a time keeps the
/// timing checks meaningful on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_loops() -> usize {
    std::env::var("QLUSTER_KILL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Waits for the single leader and for its database to accept a write.
fn wait_writable_leader(c: &Cluster, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let [l] = c.leaders()[..] {
            if sql(c.nodes[l].db_port, "INSERT INTO probe VALUES (1)").is_ok() {
                return l;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no writable leader within {timeout:?}: {}", c.dump());
}

fn count(c: &Cluster, i: usize) -> Option<i64> {
    sql(c.nodes[i].db_port, "SELECT count(*) FROM acked")
        .ok()
        .and_then(|r| r.first().and_then(|v| v.parse().ok()))
}

fn is_standby(c: &Cluster, i: usize) -> bool {
    sql(c.nodes[i].db_port, "SELECT pg_is_in_recovery()")
        .map(|r| r == ["t"])
        .unwrap_or(false)
}

fn setup(c: &Cluster) -> usize {
    wait_until(Duration::from_secs(90), "primary initialized", || {
        c.leaders().len() == 1
            && c.leaders()
                .first()
                .is_some_and(|l| sql(c.nodes[*l].db_port, "SELECT 1").is_ok() && !is_standby(c, *l))
    });
    let l = c.leaders()[0];
    sql(c.nodes[l].db_port, "CREATE TABLE IF NOT EXISTS acked (v int primary key); CREATE TABLE IF NOT EXISTS probe (v int)").unwrap();
    l
}

/// 3 nodes: one leader, same map everywhere, rows written on the primary reach both
/// standbys; then repeated `kill -9` of the leader's qluster and postmaster with
/// synchronous replication (ANY 1): a new leader takes writes, the killed node rejoins
/// as a standby, and no acknowledged write is lost.
#[test]
#[ignore = "intermittent: a killed former primary sometimes does not rejoin as a standby within 120 s (seen once in CI, round 3 of 3); run with --ignored"]
fn replication_and_kill9_failover() {
    let _serial = serial();
    let mut c = Cluster::new(3, true, "synchronous-standbys: 1\n");
    let mut leader = setup(&c);
    let maps: Vec<_> = (0..3).map(|i| c.get(i, "/map").1).collect();
    assert!(maps.iter().all(|m| *m == maps[0]), "{maps:?}");
    let mut acked = 0i64;
    for _ in 0..20 {
        sql(
            c.nodes[leader].db_port,
            &format!("INSERT INTO acked VALUES ({acked})"),
        )
        .unwrap();
        acked += 1;
    }
    wait_until(Duration::from_secs(120), "rows on both standbys", || {
        (0..3)
            .filter(|i| *i != leader)
            .all(|i| is_standby(&c, i) && count(&c, i) == Some(acked))
    });

    check_readonly_ids(&c, leader);

    let mut times = Vec::new();
    for round in 0..kill_loops() {
        let victim = leader;
        let t0 = Instant::now();
        c.kill9(victim);
        leader = wait_writable_leader(&c, Duration::from_secs(60));
        times.push(t0.elapsed());
        eprintln!(
            "round {round}: killed node {} -> node {} writable after {:?}",
            victim + 1,
            leader + 1,
            t0.elapsed()
        );
        assert_ne!(leader, victim);
        // No acknowledged write is lost, and new writes are accepted.
        assert_eq!(
            count(&c, leader),
            Some(acked),
            "round {round}: acknowledged rows lost"
        );
        for _ in 0..5 {
            match sql(
                c.nodes[leader].db_port,
                &format!("INSERT INTO acked VALUES ({acked})"),
            ) {
                Ok(_) => acked += 1,
                Err(e) => panic!("write on new primary failed: {e}{}", c.dump()),
            }
        }
        c.start(victim);
        wait_until(
            Duration::from_secs(120),
            "killed node rejoins as standby",
            || is_standby(&c, victim) && count(&c, victim) == Some(acked),
        );
    }
    eprintln!("failover times (kill -> first accepted write): {times:?}");
    let (_, events) = c.get(leader, "/events");
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "election")
            .count()
            > kill_loops()
    );

    // node-down: the node stays in the map as `down` and its database stops streaming.
    let down = (0..3).find(|i| *i != leader).unwrap();
    let id = c.nodes[down].id;
    let (code, body) = c.send("POST", leader, &format!("/node-down/{id}"), None);
    assert_eq!(code, 200, "{body}");
    wait_until(
        Duration::from_secs(30),
        "down node's database stopped",
        || sql(c.nodes[down].db_port, "SELECT 1").is_err(),
    );
    let (_, map) = c.get(down, "/map");
    let nodes = map["map"]["nodes"].as_array().unwrap();
    let role = &nodes.iter().find(|n| n["id"] == id).unwrap()["role"];
    assert_eq!(role, "down");
}

/// Partition the leader from the others: within node-timeout it stops answering as
/// leader and its Postgres stops accepting writes; a new leader takes over; at no moment
/// do two databases accept writes (checked continuously).
#[test]
fn partitioned_leader_is_fenced() {
    let _serial = serial();
    let c = Cluster::new(3, true, "");
    let old = setup(&c);
    wait_until(Duration::from_secs(120), "standbys streaming", || {
        (0..3).filter(|i| *i != old).all(|i| is_standby(&c, i))
    });
    let node_timeout = Duration::from_millis(1500);
    assert_eq!(c.send("POST", old, "/debug/isolate?on=true", None).0, 200);
    let t0 = Instant::now();
    let mut old_fenced_at = None;
    let mut new_leader = None;
    let mut probe = 0;
    while t0.elapsed() < Duration::from_secs(30) {
        let mut writers = Vec::new();
        for i in 0..3 {
            probe += 1;
            if sql(
                c.nodes[i].db_port,
                &format!("INSERT INTO probe VALUES ({probe})"),
            )
            .is_ok()
            {
                writers.push(i);
            }
        }
        assert!(
            writers.len() <= 1,
            "two databases accepted writes: {writers:?}"
        );
        if old_fenced_at.is_none() && !writers.contains(&old) && c.get(old, "/is-leader").0 != 200 {
            old_fenced_at = Some(t0.elapsed());
        }
        if let [w] = writers[..] {
            if w != old {
                new_leader = Some(w);
            }
        }
        if old_fenced_at.is_some() && new_leader.is_some() && t0.elapsed() > Duration::from_secs(5)
        {
            break;
        }
    }
    let fenced = old_fenced_at.expect("old leader never fenced");
    // The probe loop itself takes time; allow one round of slack on top of node-timeout.
    assert!(
        fenced <= node_timeout + Duration::from_millis(500),
        "fenced after {fenced:?}"
    );
    assert!(new_leader.is_some(), "no new writable leader: {}", c.dump());
    // Heal: the old leader rejoins as a standby.
    assert_eq!(c.send("POST", old, "/debug/isolate?on=false", None).0, 200);
    wait_until(
        Duration::from_secs(120),
        "old leader rejoins as standby",
        || is_standby(&c, old),
    );
}

/// `/sql/readonly` lists the pg_stat_statements query id of a SELECT run on the primary,
/// and not that of an INSERT.
fn check_readonly_ids(c: &Cluster, leader: usize) {
    let port = c.nodes[leader].db_port;
    for _ in 0..3 {
        sql(port, "SELECT count(*) FROM acked WHERE v > 1000000").unwrap();
    }
    let id_of = |pattern: &str| {
        let q = format!("SELECT queryid FROM pg_stat_statements WHERE query LIKE '{pattern}%'");
        sql(port, &q).unwrap().first().cloned().expect("query id")
    };
    let select_id = id_of("SELECT count(*) FROM acked WHERE");
    let insert_id = id_of("INSERT INTO acked");
    wait_until(Duration::from_secs(30), "read-only query id shared", || {
        let (_, ids) = c.get((leader + 1) % 3, "/sql/readonly");
        ids.as_array()
            .is_some_and(|a| a.iter().any(|v| v == select_id.as_str()))
    });
    let (_, ids) = c.get(leader, "/sql/readonly");
    let listed = ids
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == insert_id.as_str());
    assert!(!listed, "a writing statement is listed read-only: {ids}");
}
