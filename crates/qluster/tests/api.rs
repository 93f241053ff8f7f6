//! The REST API against three real `qluster` processes (consensus only, no Postgres):
//! one leader, identical maps, membership listener → voter → removed, error codes,
//! autoremove, the API token on every mutating call. Peers reach each other through
//! partitionable proxies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{free_port, wait_until, Cluster, API_TOKEN};

#[test]
fn api_membership_and_errors() {
    let mut c = Cluster::with_proxies(3, false, "");
    let leader = c.wait_leader(Duration::from_secs(30));
    let follower = (0..3).find(|i| *i != leader).unwrap();

    // /map is the same on all nodes.
    wait_until(Duration::from_secs(10), "identical maps", || {
        let maps: Vec<_> = (0..3).map(|i| c.get(i, "/map").1).collect();
        maps[0]["map"]["leader"].is_u64() && maps.iter().all(|m| *m == maps[0])
    });
    let (code, map) = c.get(follower, "/map");
    assert_eq!(code, 200);
    assert_eq!(map["map"]["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(map["config"]["node-timeout"], "600ms");

    // Unknown config field → 400; a write to a follower → 417 naming the leader.
    let (code, body) = c.send("POST", leader, "/config", Some(r#"{"bogus": 1}"#));
    assert_eq!(code, 400, "{body}");
    let (code, body) = c.send(
        "POST",
        follower,
        "/config",
        Some(r#"{"autoremove-minimum": 5}"#),
    );
    assert_eq!(code, 417, "{body}");
    let leader_addr = format!("{}:{}", c.nodes[leader].ip, c.nodes[leader].peer_api_port);
    assert_eq!(body["leader"], leader_addr.as_str());
    let (code, _) = c.send("POST", follower, "/node?ip=127.0.0.1&role=listener", None);
    assert_eq!(code, 417);

    // A config change goes through the log and reaches every node.
    let (code, body) = c.send(
        "POST",
        leader,
        "/config",
        Some(r#"{"autoremove-minimum": 5}"#),
    );
    assert_eq!(code, 200, "{body}");
    wait_until(Duration::from_secs(10), "config on all nodes", || {
        (0..3).all(|i| c.get(i, "/config").1["autoremove-minimum"] == 5)
    });

    // Unknown node → 410; missing parameter → 400.
    assert_eq!(c.send("DELETE", leader, "/node/99", None).0, 410);
    assert_eq!(c.send("POST", leader, "/node-down/99", None).0, 410);
    assert_eq!(
        c.send("PATCH", leader, "/node/99?db-port=1&api-port=2", None)
            .0,
        410
    );
    assert_eq!(c.send("POST", leader, "/node?role=listener", None).0, 400);

    // Listener: a fourth daemon joins, learns the map, then becomes a voter and is removed.
    let (api4, db4) = (free_port(), free_port());
    let path = format!("/node?ip=127.0.0.1&role=listener&api-port={api4}&db-port={db4}");
    let (code, node) = c.send("POST", leader, &path, None);
    assert_eq!(code, 200, "{node}");
    assert_eq!(node["role"], "listener");
    let id4 = node["id"].as_u64().unwrap();
    add_joining_node(&mut c, id4, api4, db4);
    wait_until(Duration::from_secs(20), "listener receives the map", || {
        let m = c.get(3, "/map");
        m.0 == 200 && m.1["map"]["nodes"].as_array().map(|n| n.len()) == Some(4)
    });
    let up = format!("/node/{id4}?db-port={db4}&api-port={api4}");
    let (code, body) = c.send("PATCH", leader, &up, None);
    assert_eq!(code, 200, "{body}");
    let (_, map) = c.get(leader, "/map");
    let n4 = map["map"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id4)
        .cloned()
        .unwrap();
    assert_eq!(n4["role"], "replica");
    let (code, body) = c.send("DELETE", leader, &format!("/node/{id4}"), None);
    assert_eq!(code, 200, "{body}");
    let (_, map) = c.get(leader, "/map");
    assert_eq!(map["map"]["nodes"].as_array().unwrap().len(), 3);

    // The leader cannot be removed before a switchover; switchover moves leadership.
    let leader_id = c.nodes[leader].id;
    assert_eq!(
        c.send("DELETE", leader, &format!("/node/{leader_id}"), None)
            .0,
        412
    );
    let target = c.nodes[follower].id;
    let (code, body) = c.send("POST", leader, &format!("/leader?node={target}"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(c.wait_leader(Duration::from_secs(20)), follower);

    // Events record elections, membership and config changes.
    let (_, events) = c.get(follower, "/events");
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for k in ["election", "membership", "config"] {
        assert!(kinds.iter().any(|x| x == k), "missing {k} in {kinds:?}");
    }

    // 420: cut the leader off so its membership change cannot commit, then try another.
    let leader = c.wait_leader(Duration::from_secs(20));
    for i in (0..3).filter(|i| *i != leader) {
        c.partition(i);
    }
    let http = c.http.clone();
    let url = c.url(leader, "/node?ip=127.0.0.9&role=listener");
    let first = std::thread::spawn(move || {
        http.post(url)
            .bearer_auth(API_TOKEN)
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(200));
    let (code, body) = c.send("POST", leader, "/node?ip=127.0.0.8&role=listener", None);
    assert!(
        code == 420 || code == 417 || code == 530,
        "second change: {code} {body}"
    );
    assert_eq!(code, 420, "{body}");
    let first = first.join().unwrap().unwrap();
    assert_eq!(first, 531, "the cut-off change has an unknown outcome");
}

/// Every mutating call (POST/PATCH/DELETE, peers' `POST /raft` included) without the
/// API token, or with a wrong one, is refused with 401 and changes nothing; reads stay
/// open; with the token the same calls work, and a follower forwards a switchover to the
/// leader with its own token. (That the cluster elects at all shows peers send it: `/raft`
/// refuses batches without it.)
#[test]
fn mutating_calls_need_the_api_token() {
    let c = Cluster::new(3, false, "");
    let leader = c.wait_leader(Duration::from_secs(30));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let follower_id = c.nodes[follower].id;
    let (_, map_before) = c.get(leader, "/map");

    let mutating: Vec<(&str, String, Option<&str>)> = vec![
        (
            "POST",
            "/config".into(),
            Some(r#"{"autoremove-minimum": 7}"#),
        ),
        ("POST", format!("/leader?node={follower_id}"), None),
        ("POST", "/node?ip=127.0.0.5&role=listener".into(), None),
        (
            "PATCH",
            format!("/node/{follower_id}?db-port=1&api-port=2"),
            None,
        ),
        ("DELETE", format!("/node/{follower_id}"), None),
        ("POST", format!("/node-down/{follower_id}"), None),
        ("POST", "/raft".into(), Some("")),
    ];
    let wrong = "test-token-5f2a9c81d4e7b037";
    let short = &API_TOKEN[..API_TOKEN.len() - 1];
    for (method, path, body) in &mutating {
        for token in [None, Some(wrong), Some(short), Some("")] {
            let (code, answer) = c.send_as(token, method, leader, path, *body);
            assert_eq!(code, 401, "{method} {path} with {token:?}: {answer}");
            assert!(answer["msg"].is_string(), "{answer}");
        }
    }
    // Nothing changed: the same members with the same roles, the same settings. (The
    // leader is not compared: a loaded host may hold an election of its own.)
    std::thread::sleep(Duration::from_millis(500));
    let (_, map_after) = c.get(leader, "/map");
    assert_eq!(members(&map_after), members(&map_before), "{map_after}");
    assert_eq!(map_after["config"], map_before["config"]);

    // Reads need no token.
    for path in ["/map", "/config", "/db-config", "/info", "/events", "/rpc"] {
        assert_eq!(c.send_as(None, "GET", leader, path, None).0, 200, "{path}");
    }
    assert_eq!(c.send_as(None, "GET", follower, "/map", None).0, 200);
    for path in ["/leader", "/is-leader"] {
        let (code, body) = c.send_as(None, "GET", leader, path, None);
        assert!([200, 417, 530].contains(&code), "{path}: {code} {body}");
    }

    // With the token: a garbage Raft batch reaches its handler (400), a config change
    // is made, and a switchover sent to a follower is forwarded to the leader.
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let follower_id = c.nodes[follower].id;
    let (code, _) = c.send_as(Some(API_TOKEN), "POST", leader, "/raft", Some("xx"));
    assert_eq!(code, 400);
    let (code, body) = c.send(
        "POST",
        leader,
        "/config",
        Some(r#"{"autoremove-minimum": 7}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["autoremove-minimum"], 7);
    let other = (0..3).find(|i| *i != leader && *i != follower).unwrap();
    let (code, body) = c.send("POST", other, &format!("/leader?node={follower_id}"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(c.wait_leader(Duration::from_secs(20)), follower);
}

/// `(id, role)` of every member in a `/map` answer, the leader counted as a replica.
fn members(map: &serde_json::Value) -> Vec<(u64, String)> {
    let nodes = map["map"]["nodes"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<(u64, String)> = nodes
        .iter()
        .map(|n| {
            let role = n["role"].as_str().unwrap_or_default();
            let role = if role == "leader" { "replica" } else { role };
            (n["id"].as_u64().unwrap_or_default(), role.to_string())
        })
        .collect();
    out.sort();
    out
}

/// Autoremove with four voters and `autoremove-minimum: 3`: a follower killed and never
/// restarted is removed once unseen for node-timeout (on every node's map); a second
/// one is kept, since removing it would take the cluster to the minimum.
#[test]
fn autoremove_down_to_the_minimum() {
    let node_timeout = Duration::from_millis(600);
    let mut c = Cluster::new(4, false, "");
    let leader = c.wait_leader(Duration::from_secs(30));
    let on = r#"{"autoremove-enabled": true, "autoremove-minimum": 3}"#;
    let (code, body) = c.send("POST", leader, "/config", Some(on));
    assert_eq!(code, 200, "{body}");
    let ids_on = |c: &Cluster, i: usize| -> Vec<u64> {
        let (_, map) = c.get(i, "/map");
        let nodes = map["map"]["nodes"].as_array().cloned().unwrap_or_default();
        nodes.iter().filter_map(|n| n["id"].as_u64()).collect()
    };
    // Every node is heard from: nothing is removed while all are up.
    std::thread::sleep(node_timeout * 2);
    assert_eq!(ids_on(&c, leader).len(), 4);

    let victim = (0..4).find(|i| *i != leader).unwrap();
    let victim_id = c.nodes[victim].id;
    let t0 = Instant::now();
    c.kill9(victim);
    wait_until(Duration::from_secs(15), "dead node autoremoved", || {
        !ids_on(&c, leader).contains(&victim_id)
    });
    let removed_after = t0.elapsed();
    assert!(
        removed_after + Duration::from_millis(200) >= node_timeout,
        "removed after only {removed_after:?}"
    );
    let live: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    wait_until(Duration::from_secs(10), "removal on every map", || {
        live.iter().all(|i| ids_on(&c, *i).len() == 3)
    });
    let (_, events) = c.get(leader, "/events");
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "membership"
                && e["message"].as_str().unwrap().contains("autoremove")),
        "{events}"
    );

    // At the minimum: a second dead node stays in the map (the survivors keep a quorum).
    let second = (0..4).find(|i| *i != leader && *i != victim).unwrap();
    let second_id = c.nodes[second].id;
    c.kill9(second);
    std::thread::sleep(node_timeout * 4);
    assert!(ids_on(&c, leader).contains(&second_id));
    assert_eq!(ids_on(&c, leader).len(), 3);
    assert_eq!(c.leaders(), vec![leader]);
    eprintln!("autoremove: node {victim_id} removed {removed_after:?} after kill -9");
}

/// `POST /config` with every duration at and just beyond its bounds: values within are
/// accepted and the cluster keeps one leader (the same one: new timeouts apply without
/// an election outage); values beyond, an absurd `200000000000y`, a replication factor
/// above the voters and a port 0 are refused with 400. `/info` payloads are objects and
/// an oversized body gets a JSON 413.
#[test]
fn config_bounds_and_spec_shapes() {
    let c = Cluster::new(3, false, "");
    let leader = c.wait_leader(Duration::from_secs(30));
    let post = |body: &str| c.send("POST", leader, "/config", Some(body));
    let accepted = [
        r#"{"node-timeout": "200ms"}"#,
        r#"{"node-timeout": "60s", "heartbeat-interval": "10s"}"#,
        r#"{"heartbeat-interval": "10ms"}"#,
        r#"{"pre-voting-timeout": "10ms", "leader-voting-timeout": "10ms"}"#,
        r#"{"pre-voting-timeout": "60s", "leader-voting-timeout": "60s"}"#,
        r#"{"replication-retry-interval": "10ms"}"#,
        r#"{"replication-retry-interval": "60s"}"#,
        r#"{"replication-factor": 3, "quorum-replication": false}"#,
    ];
    for body in accepted {
        let (code, answer) = post(body);
        assert_eq!(code, 200, "{body}: {answer}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            c.wait_leader(Duration::from_secs(5)),
            leader,
            "after {body}"
        );
    }
    let refused = [
        r#"{"node-timeout": "199ms"}"#,
        r#"{"node-timeout": "60001ms"}"#,
        r#"{"node-timeout": "200000000000y"}"#,
        r#"{"heartbeat-interval": "9ms"}"#,
        r#"{"heartbeat-interval": "10001ms"}"#,
        r#"{"heartbeat-interval": "20s"}"#,
        r#"{"pre-voting-timeout": "9ms"}"#,
        r#"{"leader-voting-timeout": "61s"}"#,
        r#"{"replication-retry-interval": "0s"}"#,
        r#"{"replication-retry-interval": "1h"}"#,
        r#"{"replication-factor": 4}"#,
        r#"{"replication-factor": 401}"#,
    ];
    for body in refused {
        let (code, answer) = post(body);
        assert_eq!(code, 400, "{body}: {answer}");
        assert!(answer["msg"].is_string(), "{answer}");
    }
    let back = r#"{"node-timeout": "600ms", "heartbeat-interval": "50ms", "pre-voting-timeout": "100ms", "leader-voting-timeout": "100ms", "replication-retry-interval": "500ms"}"#;
    assert_eq!(post(back).0, 200);
    assert_eq!(c.wait_leader(Duration::from_secs(5)), leader);

    let (code, body) = c.send("PATCH", leader, "/node/2?db-port=0&api-port=7000", None);
    assert_eq!(code, 400, "{body}");
    let (code, body) = c.send(
        "POST",
        leader,
        "/node?ip=127.0.0.1&role=listener&api-port=0",
        None,
    );
    assert_eq!(code, 400, "{body}");

    let (code, info) = c.get(leader, "/info");
    assert_eq!(code, 200);
    let logs = info["logs"].as_array().unwrap();
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|l| l["payload"].is_object()), "{info}");

    let big = format!(r#"{{"x": "{}"}}"#, "a".repeat(3 << 20));
    let (code, body) = c.send("POST", leader, "/config", Some(&big));
    assert_eq!(code, 413);
    assert!(body["msg"].is_string(), "{body}");
}

fn add_joining_node(c: &mut Cluster, id: u64, api: u16, db: u16) {
    let dir = c.root.path().join(format!("node{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("qluster.yaml");
    let yaml = format!(
        "node-id: {id}\nip: 127.0.0.1\napi-port: {api}\ndb-port: {db}\ndata-dir: {}\nmanage-postgres: false\n{}",
        dir.display(),
        common::secrets_yaml()
    );
    common::write_config(&config, &yaml);
    c.nodes.push(common::NodeProc {
        id,
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
        api_port: api,
        db_port: db,
        peer_api_port: api,
        peer_db_port: db,
        dir,
        config,
        child: None,
    });
    let i = c.nodes.len() - 1;
    c.start(i);
}
