//! Simulated-network tests of the consensus core: several [`Core`]s in one process, a
//! network that can drop messages and cut links, simulated time in ticks. Each test
//! names the Raft rule (Ongaro & Ousterhout, "In Search of an Understandable Consensus
//! Algorithm", extended version) or qluster rule it checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};

use qluster_core::config::{ClusterConfig, TICK};
use qluster_core::lease;
use qluster_core::node::bootstrap_snapshot;
use qluster_core::{discard_logger, Command, Core, Node, NodeId, NodeRole};
use rand::{Rng, SeedableRng};

struct Sim {
    nodes: BTreeMap<NodeId, Option<Core>>,
    dirs: BTreeMap<NodeId, tempfile::TempDir>,
    cut: HashSet<(NodeId, NodeId)>,
    drop_rate: f64,
    rng: rand::rngs::StdRng,
    now_ms: u64,
    last_heard: HashMap<NodeId, HashMap<NodeId, u64>>,
    /// Leaders observed per term, to check election safety at every step.
    leaders_by_term: HashMap<u64, HashSet<NodeId>>,
}

fn peers(n: u64) -> Vec<Node> {
    (1..=n)
        .map(|id| Node {
            id,
            ip: "127.0.0.1".into(),
            db_port: Some(5000 + id as u16),
            api_port: Some(6000 + id as u16),
            role: NodeRole::Replica,
        })
        .collect()
}

const NOW: &str = "2026-01-01T00:00:00Z";

impl Sim {
    fn new(n: u64, seed: u64) -> Sim {
        let mut sim = Sim {
            nodes: BTreeMap::new(),
            dirs: BTreeMap::new(),
            cut: HashSet::new(),
            drop_rate: 0.0,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            now_ms: 0,
            last_heard: HashMap::new(),
            leaders_by_term: HashMap::new(),
        };
        for id in 1..=n {
            sim.dirs.insert(id, tempfile::tempdir().unwrap());
            sim.start(id, true);
        }
        sim
    }

    fn start(&mut self, id: NodeId, founding: bool) {
        let snap =
            founding.then(|| bootstrap_snapshot(peers(3), ClusterConfig::default()).unwrap());
        let dir = self.dirs.get(&id).unwrap().path().to_path_buf();
        let mut core = Core::open(id, &dir, snap, discard_logger()).unwrap();
        core.set_compact_every(20);
        self.nodes.insert(id, Some(core));
    }

    fn add_empty(&mut self, id: NodeId) {
        self.dirs.insert(id, tempfile::tempdir().unwrap());
        self.start(id, false);
    }

    fn crash(&mut self, id: NodeId) {
        self.nodes.insert(id, None);
    }

    fn isolate(&mut self, id: NodeId) {
        for other in self.nodes.keys().copied().collect::<Vec<_>>() {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn core(&mut self, id: NodeId) -> &mut Core {
        self.nodes.get_mut(&id).unwrap().as_mut().unwrap()
    }

    /// One tick on every node, then deliver messages until the network is quiet.
    fn step(&mut self) {
        self.now_ms += TICK.as_millis() as u64;
        let ids: Vec<_> = self.nodes.keys().copied().collect();
        let mut inflight = Vec::new();
        for id in &ids {
            if let Some(core) = self.nodes.get_mut(id).unwrap().as_mut() {
                core.tick();
                inflight.extend(core.process_ready(NOW).unwrap().messages);
            }
        }
        for _ in 0..50 {
            if inflight.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for msg in inflight.drain(..) {
                let (from, to) = (msg.from, msg.to);
                if self.cut.contains(&(from, to)) || self.rng.random_bool(self.drop_rate) {
                    continue;
                }
                let Some(Some(core)) = self.nodes.get_mut(&to) else {
                    continue;
                };
                if msg.term >= core.term() {
                    self.last_heard
                        .entry(to)
                        .or_default()
                        .insert(from, self.now_ms);
                }
                core.step(msg).unwrap();
                next.extend(core.process_ready(NOW).unwrap().messages);
            }
            inflight = next;
        }
        self.record_leaders();
    }

    fn record_leaders(&mut self) {
        for (id, core) in &self.nodes {
            if let Some(core) = core {
                if core.is_leader() {
                    let set = self.leaders_by_term.entry(core.term()).or_default();
                    set.insert(*id);
                    assert_eq!(
                        set.len(),
                        1,
                        "election safety: two leaders in term {}",
                        core.term()
                    );
                }
            }
        }
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms / TICK.as_millis() as u64 {
            self.step();
        }
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, c)| c.as_ref().filter(|c| c.is_leader()).map(|_| *id))
            .collect()
    }

    fn wait_leader(&mut self, exclude: &[NodeId], max_ms: u64) -> NodeId {
        for _ in 0..max_ms / 10 {
            self.step();
            let leaders: Vec<_> = self
                .leaders()
                .into_iter()
                .filter(|l| !exclude.contains(l))
                .collect();
            if let [l] = leaders[..] {
                if self.core(l).leadership_confirmed() {
                    return l;
                }
            }
        }
        panic!("no leader within {max_ms} ms");
    }

    fn propose(&mut self, leader: NodeId, cmd: Command) -> u64 {
        let idx = self.core(leader).propose(cmd, NOW).unwrap();
        for _ in 0..200 {
            self.step();
            if self.core(leader).applied_index() >= idx {
                return idx;
            }
        }
        panic!("entry {idx} never applied");
    }

    fn holds_lease(&mut self, id: NodeId) -> bool {
        let now = self.now_ms;
        let heard = self.last_heard.get(&id).cloned().unwrap_or_default();
        let core = self.core(id);
        let lease_ms =
            lease::lease_duration(ClusterConfig::default().node_timeout).as_millis() as u64;
        lease::holds_quorum(id, &core.raft_voters(), &heard, now, lease_ms)
    }
}

fn readonly(tag: &str) -> Command {
    Command::AddReadonly {
        query_ids: vec![tag.to_string()],
    }
}

/// Raft §5.2 (election safety + liveness): a fresh cluster elects exactly one leader.
#[test]
fn fresh_cluster_elects_one_leader() {
    let mut sim = Sim::new(3, 1);
    let leader = sim.wait_leader(&[], 10_000);
    sim.run(1000);
    assert_eq!(sim.leaders(), vec![leader]);
}

/// Raft §5.4.3 (state machine safety): all nodes apply the same commands, even with
/// 20% message loss.
#[test]
fn lossy_network_keeps_state_machines_identical() {
    let mut sim = Sim::new(3, 2);
    sim.drop_rate = 0.2;
    let leader = sim.wait_leader(&[], 20_000);
    for i in 0..10 {
        let leader_now = sim.wait_leader(&[], 20_000);
        let _ = leader;
        sim.propose(leader_now, readonly(&format!("q{i}")));
    }
    sim.drop_rate = 0.0;
    sim.run(2000);
    let states: Vec<_> = (1..=3)
        .map(|id| sim.core(id).state().unwrap().readonly.clone())
        .collect();
    assert_eq!(states[0].len(), 10);
    assert!(states.iter().all(|s| *s == states[0]));
}

/// Raft §6.2 check-quorum + qluster's write lease: an isolated leader loses its lease
/// before the majority side confirms a new leader, so two primaries never overlap.
#[test]
fn isolated_leader_loses_lease_before_new_leader_is_confirmed() {
    let mut sim = Sim::new(3, 3);
    let old = sim.wait_leader(&[], 10_000);
    sim.run(500);
    assert!(sim.holds_lease(old));
    sim.isolate(old);
    let mut lease_lost_at = None;
    let mut new_confirmed_at = None;
    for _ in 0..1000 {
        sim.step();
        if lease_lost_at.is_none() && !sim.holds_lease(old) {
            lease_lost_at = Some(sim.now_ms);
        }
        let others: Vec<_> = sim.leaders().into_iter().filter(|l| *l != old).collect();
        if let [l] = others[..] {
            if sim.core(l).leadership_confirmed() {
                new_confirmed_at = Some(sim.now_ms);
                break;
            }
        }
    }
    let (lost, confirmed) = (lease_lost_at.unwrap(), new_confirmed_at.unwrap());
    assert!(
        lost < confirmed,
        "lease lost at {lost} ms, new leader at {confirmed} ms"
    );
    // Check-quorum: the isolated node stops being Raft leader too.
    sim.run(4000);
    assert!(!sim.core(old).is_leader());
    sim.heal();
    sim.run(3000);
    assert_eq!(sim.leaders().len(), 1);
}

/// Raft §5.4 (durability): a crashed node restarts from its own disk with its log and
/// vote, catches up, and compacted logs are served as snapshots (§7).
#[test]
fn restart_from_disk_and_catch_up_by_snapshot() {
    let mut sim = Sim::new(3, 4);
    let leader = sim.wait_leader(&[], 10_000);
    sim.propose(leader, readonly("before"));
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    sim.run(300);
    sim.crash(victim);
    for i in 0..60 {
        sim.propose(leader, readonly(&format!("while-down-{i}")));
    }
    sim.start(victim, true);
    assert!(sim.core(victim).state().is_some());
    sim.run(3000);
    let got = sim.core(victim).state().unwrap().readonly.clone();
    assert!(
        got.contains("before") && got.contains("while-down-59"),
        "{}",
        got.len()
    );
}

/// Raft §4.2.1 (learners) and §4.1 (one membership change at a time): a listener gets
/// the log but never counts towards quorum; a second change while one is in flight is
/// refused.
#[test]
fn listener_receives_log_but_does_not_count_for_quorum() {
    let mut sim = Sim::new(3, 5);
    let leader = sim.wait_leader(&[], 10_000);
    sim.add_empty(4);
    let add = Command::AddNode {
        ip: "127.0.0.1".into(),
        db_port: None,
        api_port: None,
    };
    let idx = sim.core(leader).propose(add, NOW).unwrap();
    let second = Command::AddNode {
        ip: "127.0.0.2".into(),
        db_port: None,
        api_port: None,
    };
    assert!(matches!(
        sim.core(leader).propose(second, NOW),
        Err(qluster_core::CoreError::ChangeInFlight)
    ));
    sim.run(2000);
    assert!(sim.core(leader).applied_index() >= idx);
    assert_eq!(sim.core(leader).raft_learners(), vec![4]);
    sim.propose(leader, readonly("seen-by-listener"));
    sim.run(500);
    assert!(sim
        .core(4)
        .state()
        .unwrap()
        .readonly
        .contains("seen-by-listener"));
    // With two of three voters gone, the listener cannot help form a quorum.
    let followers: Vec<_> = (1..=3).filter(|id| *id != leader).collect();
    for f in &followers {
        sim.crash(*f);
    }
    let idx = sim
        .core(leader)
        .propose(readonly("no-quorum"), NOW)
        .unwrap();
    sim.run(1000);
    assert!(
        sim.core(leader).commit_index() < idx,
        "a learner must not make a quorum"
    );
}

/// qluster rule: a node marked down is demoted out of the voters and is never elected.
#[test]
fn node_down_is_never_elected() {
    let mut sim = Sim::new(3, 6);
    let leader = sim.wait_leader(&[], 10_000);
    let down = (1..=3).find(|id| *id != leader).unwrap();
    sim.propose(leader, Command::NodeDown { node: down });
    sim.run(500);
    assert!(!sim.core(leader).raft_voters().contains(&down));
    // Kill the leader: only the remaining voter plus... with 2 voters left, both needed;
    // restart the old leader so a quorum exists, and check the down node never leads.
    for _ in 0..3 {
        sim.crash(leader);
        sim.run(3000);
        assert!(!sim.leaders().contains(&down));
        sim.start(leader, true);
        let l = sim.wait_leader(&[], 20_000);
        assert_ne!(l, down);
    }
}

/// qluster rule: a config change goes through the log and takes effect on every node.
#[test]
fn config_change_reaches_every_node() {
    let mut sim = Sim::new(3, 7);
    let leader = sim.wait_leader(&[], 10_000);
    let patch = serde_json::from_str(r#"{"node-timeout":"2s","autoremove-enabled":true}"#).unwrap();
    sim.propose(leader, Command::SetConfig { patch });
    sim.run(500);
    for id in 1..=3 {
        let c = &sim.core(id).state().unwrap().config;
        assert_eq!(c.node_timeout, std::time::Duration::from_secs(2));
        assert!(c.autoremove_enabled);
    }
    // Nodes were rebuilt with the new timing and still elect a leader.
    let l = sim.wait_leader(&[], 20_000);
    sim.propose(l, readonly("after-retime"));
}

/// qluster rule: new timeouts apply without an outage. The leader rebuilds its Raft node
/// and wins its own election back at once (a leadership-transfer election), so it leads
/// again with its election committed within a few ticks, and no other node ever leads.
#[test]
fn timing_change_keeps_the_leader() {
    let mut sim = Sim::new(3, 8);
    let leader = sim.wait_leader(&[], 10_000);
    sim.run(500);
    for timeout in ["1s", "300ms", "2s"] {
        let patch = serde_json::from_str(&format!(r#"{{"node-timeout":"{timeout}"}}"#)).unwrap();
        let term = sim.core(leader).term();
        sim.propose(leader, Command::SetConfig { patch });
        let mut back_after = None;
        for step in 0..100 {
            sim.step();
            let others: Vec<_> = sim.leaders().into_iter().filter(|l| *l != leader).collect();
            assert!(others.is_empty(), "{others:?} led after the change");
            let core = sim.core(leader);
            if core.term() > term && core.leadership_confirmed() {
                back_after = Some(step);
                break;
            }
        }
        let ticks = back_after.expect("the leader did not lead again");
        assert!(ticks <= 10, "leader back after {ticks} ticks");
    }
}
