//! Postgres follows the leader, with three real `qluster` daemons each managing a real
//! PostgreSQL 15: replication, `kill -9` failover with rejoin, and fencing of a leader
//! cut off by a real (proxied) network partition. Every node's database wants passwords
//! (no `trust`), so replication, rewinds and clones here all run with them.
//!
//! `QLUSTER_KILL_LOOPS` sets the number of kill rounds (default 10, about 9 s each).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{checker, sql, wait_until, Cluster, PG_BIN, REPLICATION_PASSWORD, SUPERUSER_PASSWORD};

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
        .unwrap_or(10)
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

fn streaming(c: &Cluster, i: usize) -> bool {
    sql(
        c.nodes[i].db_port,
        "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
    )
    .is_ok_and(|r| r == ["1"])
}

/// Runs `query` through psql on `127.0.0.1:port` as `user`, with `password` or none
/// (`-w`: never prompt; no password file either), on a replication connection when
/// `replication`. Returns stdout, or stderr when refused.
fn psql_as(
    port: u16,
    user: &str,
    password: Option<&str>,
    replication: bool,
    query: &str,
) -> Result<String, String> {
    let mut conninfo = format!("host=127.0.0.1 port={port} user={user} dbname=postgres");
    if replication {
        conninfo.push_str(" replication=true");
    }
    let mut cmd = std::process::Command::new(format!("{PG_BIN}/psql"));
    cmd.args(["-XAtqw", "-d", &conninfo, "-c", query])
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGPASSFILE", "/nonexistent")
        .env_remove("PGPASSWORD");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// Issue #14 on every node: no `trust` in `pg_hba.conf`; a replication connection as
/// `qluster_replication` is refused without its password or with a wrong one and
/// accepted with it (`IDENTIFY_SYSTEM`); the superuser needs its password and may not
/// open replication connections; libpq's password file is private, and no password is
/// written into `postgresql.conf` or qluster's settings file.
fn assert_passwords_required(c: &Cluster) {
    use std::os::unix::fs::PermissionsExt;
    for n in &c.nodes {
        let pgdata = n.dir.join("pgdata");
        let hba = std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap();
        assert!(!hba.contains("trust"), "node {}: {hba}", n.id);
        assert!(hba.contains("scram-sha-256"), "node {}: {hba}", n.id);
        for conf in ["postgresql.conf", "qluster.conf", "postgresql.auto.conf"] {
            let text = std::fs::read_to_string(pgdata.join(conf)).unwrap_or_default();
            assert!(
                !text.contains(REPLICATION_PASSWORD) && !text.contains(SUPERUSER_PASSWORD),
                "node {}: a password in {conf}",
                n.id
            );
        }
        let passfile = n.dir.join("secrets").join("pgpass");
        let mode = std::fs::metadata(&passfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", passfile.display());

        let port = n.db_port;
        let repl = "qluster_replication";
        for wrong in [None, Some("wrong-password")] {
            let err = psql_as(port, repl, wrong, true, "IDENTIFY_SYSTEM").unwrap_err();
            assert!(
                err.contains("password"),
                "node {}: replication with {wrong:?}: {err}",
                n.id
            );
            let err = psql_as(port, "postgres", wrong, false, "SELECT 1").unwrap_err();
            assert!(err.contains("password"), "node {}: superuser: {err}", n.id);
        }
        let system = psql_as(
            port,
            repl,
            Some(REPLICATION_PASSWORD),
            true,
            "IDENTIFY_SYSTEM",
        )
        .unwrap_or_else(|e| panic!("node {}: IDENTIFY_SYSTEM refused: {e}", n.id));
        assert!(system.contains('|'), "node {}: {system}", n.id);
        let err = psql_as(
            port,
            "postgres",
            Some(SUPERUSER_PASSWORD),
            true,
            "IDENTIFY_SYSTEM",
        )
        .unwrap_err();
        assert!(err.contains("pg_hba.conf"), "node {}: {err}", n.id);
        assert_eq!(
            psql_as(
                port,
                "postgres",
                Some(SUPERUSER_PASSWORD),
                false,
                "SELECT 1"
            )
            .unwrap(),
            "1\n"
        );
    }
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
    // The standbys cloned and stream with the replication role's password.
    assert_passwords_required(&c);

    let mut times = Vec::new();
    let mut rejoins = Vec::new();
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
        let t1 = Instant::now();
        c.start(victim);
        wait_until(
            Duration::from_secs(120),
            "killed node rejoins as standby",
            || is_standby(&c, victim) && count(&c, victim) == Some(acked),
        );
        rejoins.push(t1.elapsed());
        eprintln!(
            "round {round}: node {} rejoined after {:?}",
            victim + 1,
            t1.elapsed()
        );
    }
    eprintln!("failover times (kill -> first accepted write): {times:?}");
    eprintln!("rejoin times (restart -> standby with every acknowledged row): {rejoins:?}");
    // Rewound and re-cloned nodes too (a base backup copies the primary's files).
    assert_passwords_required(&c);
    // A correct rewind leaves a standby that streams at once: none of them ever needed
    // the repair of a standby that cannot stream (which also costs a grace period).
    for node in &c.nodes {
        let log = std::fs::read_to_string(node.dir.join("qluster.log")).unwrap();
        let repairs: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("not streaming"))
            .collect();
        assert!(repairs.is_empty(), "node {}: {repairs:?}", node.id);
    }
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

/// Partition the leader from the others with the proxies (Raft, API and Postgres
/// replication links all cut): within node-timeout it stops answering as leader and its
/// Postgres stops accepting writes; the majority elects a leader whose Postgres accepts
/// writes; a checker writing to every database continuously never sees two accept
/// writes at overlapping moments; after healing, the old leader rejoins as a standby.
#[test]
fn partitioned_leader_is_fenced() {
    let _serial = serial();
    let c = Cluster::with_proxies(3, true, "");
    let old = setup(&c);
    wait_until(Duration::from_secs(120), "standbys streaming", || {
        (0..3)
            .filter(|i| *i != old)
            .all(|i| is_standby(&c, i) && streaming(&c, i))
    });
    let node_timeout = Duration::from_millis(600);
    // The daemons send from their own addresses, so a cut applies to both directions.
    let seen = c.proxies.as_ref().unwrap().seen_sources();
    assert_eq!(seen.len(), 3, "connections attributed to nodes {seen:?}");
    let checker = checker::Checker::start(&c);
    std::thread::sleep(Duration::from_millis(500));

    let t_cut = Instant::now();
    c.partition(old);
    // The old leader's /is-leader, polled directly (the test is not partitioned).
    let mut not_leader_after = None;
    while t_cut.elapsed() < Duration::from_secs(5) {
        if c.get(old, "/is-leader").0 != 200 {
            not_leader_after = Some(t_cut.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let not_leader_after = not_leader_after.expect("the cut-off leader still claims leadership");
    let new = wait_writable_leader(&c, Duration::from_secs(30));
    let new_writable_after = t_cut.elapsed();
    assert_ne!(new, old);
    assert_ne!(
        c.get(old, "/is-leader").0,
        200,
        "the cut-off node claims leadership"
    );
    std::thread::sleep(Duration::from_secs(2));

    c.heal();
    let t_heal = Instant::now();
    sql(c.nodes[new].db_port, "INSERT INTO probe VALUES (-1)").unwrap();
    wait_until(
        Duration::from_secs(90),
        "old leader rejoins as standby",
        || {
            is_standby(&c, old)
                && sql(
                    c.nodes[old].db_port,
                    "SELECT count(*) FROM probe WHERE v = -1",
                )
                .is_ok_and(|r| r == ["1"])
        },
    );
    let rejoined_after = t_heal.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let attempts = checker.stop(&c);

    let summary = checker::summarize(&attempts, c.nodes.len(), t_cut);
    eprintln!(
        "partition: old leader node {} not leader after {not_leader_after:?}, node {} \
         writable after {new_writable_after:?}, old rejoined {rejoined_after:?} after heal; \
         {summary}",
        old + 1,
        new + 1,
    );
    assert!(
        not_leader_after <= node_timeout,
        "still leader {not_leader_after:?} after the cut"
    );
    // Every write the old primary accepted was acknowledged within node-timeout of the cut.
    let last_old = checker::last_accepted(&attempts, old).expect("old primary took writes");
    assert!(
        last_old.saturating_duration_since(t_cut) <= node_timeout,
        "old primary accepted a write {:?} after the cut",
        last_old.saturating_duration_since(t_cut)
    );
    assert!(
        checker::last_accepted(&attempts, new).is_some_and(|t| t > t_cut),
        "the new primary never accepted a checker write"
    );
    if let Some((a, b)) = checker::overlapping_writers(&attempts) {
        panic!("two databases accepted writes at once: {a:?} and {b:?}");
    }
}

/// A standby that was down while the primary recycled the WAL it needs cannot stream.
/// pg_rewind finds nothing to do (it is on the primary's timeline), so the repair
/// re-clones it, and it streams again.
#[test]
fn standby_missing_wal_is_recloned() {
    let _serial = serial();
    let mut c = Cluster::new(3, true, "");
    let leader = setup(&c);
    let f = (0..3).find(|i| *i != leader).unwrap();
    wait_until(Duration::from_secs(120), "standby streaming", || {
        is_standby(&c, f) && streaming(&c, f)
    });
    c.kill9(f);
    let port = c.nodes[leader].db_port;
    sql(port, "ALTER SYSTEM SET wal_keep_size = 0").unwrap();
    sql(port, "SELECT pg_reload_conf()").unwrap();
    for k in 0..4 {
        sql(port, &format!("INSERT INTO probe VALUES ({k})")).unwrap();
        sql(port, "SELECT pg_switch_wal()").unwrap();
    }
    sql(port, "CHECKPOINT").unwrap();
    let rows = sql(port, "SELECT count(*) FROM probe").unwrap();
    let t0 = Instant::now();
    c.start(f);
    wait_until(
        Duration::from_secs(120),
        "re-cloned standby streams",
        || {
            is_standby(&c, f)
                && streaming(&c, f)
                && sql(c.nodes[f].db_port, "SELECT count(*) FROM probe").is_ok_and(|r| r == rows)
        },
    );
    eprintln!(
        "standby without WAL streaming again after {:?}",
        t0.elapsed()
    );
    let log = std::fs::read_to_string(c.nodes[f].dir.join("qluster.log")).unwrap();
    assert!(
        log.contains("re-cloning"),
        "the standby was never re-cloned"
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
