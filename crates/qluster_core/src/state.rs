//! The replicated cluster state machine: node map, settings, database settings, read-only
//! query ids and the bounded event log.
//!
//! It is pure: [`ClusterState::apply`] takes a committed [`Command`] and mutates the state
//! deterministically, so every node that applies the same log holds the same state. Raft
//! membership (voters / learners) is changed by the same log entry that carries the
//! command (a conf-change entry whose context is the command), so the map and the Raft
//! configuration never disagree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, ConfigPatch};

/// Node identifier (Raft id). 0 is never a valid node.
pub type NodeId = u64;

/// Most events kept; older ones are dropped.
pub const MAX_EVENTS: usize = 1000;

/// Role of a node in the map. The leader is a `Replica` in the state; the map shown to
/// clients marks the current Raft leader as `Leader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// Raft learner: receives the log, never votes.
    Listener,
    /// Voter whose database streams from the primary.
    Replica,
    /// The current leader (only in views, never stored).
    Leader,
    /// Kept in the map, out of votes and out of the replica set.
    Down,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Node {
    pub id: NodeId,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
    pub role: NodeRole,
}

impl Node {
    /// `ip:api-port`, when the port is known.
    pub fn api_addr(&self) -> Option<String> {
        self.api_port.map(|p| join_host_port(&self.ip, p))
    }

    /// `ip:db-port`, when the port is known.
    pub fn db_addr(&self) -> Option<String> {
        self.db_port.map(|p| join_host_port(&self.ip, p))
    }
}

/// `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Database settings shared by every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbConfig {
    /// Set once the first primary has created the database: from then on a leader with
    /// an empty data directory must clone, never `initdb` (that would lose the data).
    #[serde(default)]
    pub initialized: bool,
    /// Number of standbys that must confirm a commit (`ANY k`); 0 = asynchronous.
    pub synchronous_standbys: u32,
    /// postgresql.conf settings every node runs with.
    pub parameters: BTreeMap<String, String>,
}

impl Default for DbConfig {
    fn default() -> Self {
        let parameters = [
            ("wal_level", "replica"),
            ("hot_standby", "on"),
            ("wal_log_hints", "on"),
            ("max_wal_senders", "16"),
            ("max_replication_slots", "16"),
            ("wal_keep_size", "256MB"),
            ("listen_addresses", "'*'"),
            ("shared_preload_libraries", "'pg_stat_statements'"),
            ("compute_query_id", "on"),
            // A standby retries its primary quickly after a failover.
            ("wal_retrieve_retry_interval", "'500ms'"),
        ];
        Self {
            initialized: false,
            synchronous_standbys: 0,
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// One cluster event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 time the entry was proposed (taken from the entry, so every node agrees).
    pub time: String,
    pub term: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    pub kind: String,
    pub message: String,
}

/// A change to the cluster state, carried by one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    /// A node won an election; its database becomes the primary once this is applied.
    LeaderElected { node: NodeId },
    /// Add a listener (Raft learner) with the next free id.
    AddNode {
        ip: String,
        db_port: Option<u16>,
        api_port: Option<u16>,
    },
    /// Make a listener a voter with its ports.
    UpgradeNode {
        node: NodeId,
        db_port: u16,
        api_port: u16,
    },
    /// Remove a node from the cluster.
    RemoveNode { node: NodeId, reason: String },
    /// Keep a node in the map but out of votes and out of the replica set.
    NodeDown { node: NodeId },
    /// Change cluster settings.
    SetConfig { patch: ConfigPatch },
    /// Change database settings (synchronous replication count).
    SetSynchronous { standbys: u32 },
    /// The first primary created the database.
    DbInitialized,
    /// The leader's database finished its promotion and accepts writes.
    PrimaryReady { node: NodeId },
    /// Add query ids observed to never write WAL.
    AddReadonly { query_ids: Vec<String> },
    /// Forget query ids that were observed to write WAL.
    RemoveReadonly { query_ids: Vec<String> },
    /// The primary `node` starts (`alone: true`) or stops acknowledging commits without
    /// any standby (asynchronous fallback). While set, only that node may be promoted:
    /// the commits it acknowledged alone exist nowhere else.
    AcknowledgeAlone { node: NodeId, alone: bool },
}

/// What membership change (if any) a command implies for Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    AddLearner(NodeId),
    AddVoter(NodeId),
    Remove(NodeId),
    /// Demote a voter to learner (node-down).
    Demote(NodeId),
}

/// Why a command cannot be applied; the daemon maps these onto HTTP codes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(NodeId),
    #[error("{0}")]
    Precondition(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
}

/// The replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub nodes: BTreeMap<NodeId, Node>,
    pub config: ClusterConfig,
    pub db_config: DbConfig,
    /// Leader whose `LeaderElected` entry was applied last, with its term.
    pub leader: Option<(NodeId, u64)>,
    /// Leader whose database finished its promotion, with the term it did so in: only
    /// such a node is named as the primary to clients (`/db-config`).
    #[serde(default)]
    pub primary: Option<(NodeId, u64)>,
    pub readonly: BTreeSet<String>,
    pub events: VecDeque<Event>,
    pub next_node_id: NodeId,
    /// A primary that may have acknowledged commits no standby holds (see
    /// [`Command::AcknowledgeAlone`]); no other node is promoted while this is set.
    #[serde(default)]
    pub acknowledged_alone: Option<NodeId>,
}

impl ClusterState {
    /// State every founding node starts from; identical on all of them because it is a
    /// function of the (shared) founding peer list.
    pub fn bootstrap(peers: Vec<Node>, config: ClusterConfig) -> Self {
        let next_node_id = peers.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        Self {
            nodes: peers.into_iter().map(|n| (n.id, n)).collect(),
            config,
            db_config: DbConfig::default(),
            leader: None,
            primary: None,
            readonly: BTreeSet::new(),
            events: VecDeque::new(),
            next_node_id,
            acknowledged_alone: None,
        }
    }

    /// Ids of voting nodes.
    pub fn voters(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.role == NodeRole::Replica)
            .map(|n| n.id)
            .collect()
    }

    /// Checks a command against the current state before it is proposed, and says which
    /// membership change it needs. Apply re-checks, since the state may move in between.
    pub fn validate(&self, command: &Command) -> Result<Option<MembershipChange>, StateError> {
        match command {
            Command::LeaderElected { .. }
            | Command::AddReadonly { .. }
            | Command::RemoveReadonly { .. }
            | Command::SetSynchronous { .. }
            | Command::DbInitialized
            | Command::AcknowledgeAlone { .. }
            | Command::PrimaryReady { .. } => Ok(None),
            Command::AddNode {
                ip,
                db_port,
                api_port,
            } => {
                if ip.is_empty() {
                    return Err(StateError::Precondition("empty ip".into()));
                }
                if *db_port == Some(0) || *api_port == Some(0) {
                    return Err(StateError::InvalidConfig("ports must be 1-65535".into()));
                }
                Ok(Some(MembershipChange::AddLearner(self.next_node_id)))
            }
            Command::UpgradeNode { db_port: 0, .. } | Command::UpgradeNode { api_port: 0, .. } => {
                Err(StateError::InvalidConfig("ports must be 1-65535".into()))
            }
            Command::UpgradeNode { node, .. } => match self.node(*node)?.role {
                NodeRole::Listener => Ok(Some(MembershipChange::AddVoter(*node))),
                role => Err(StateError::Precondition(format!(
                    "node {node} is {role:?}, only a listener can be upgraded"
                ))),
            },
            Command::RemoveNode { node, .. } => {
                let target = self.node(*node)?;
                if target.role == NodeRole::Replica && self.voters().len() <= 1 {
                    return Err(StateError::Precondition(
                        "cannot remove the last voter".into(),
                    ));
                }
                Ok(Some(MembershipChange::Remove(*node)))
            }
            Command::NodeDown { node } => match self.node(*node)?.role {
                NodeRole::Replica if self.voters().len() <= 1 => Err(StateError::Precondition(
                    "cannot mark the last voter down".into(),
                )),
                NodeRole::Replica => Ok(Some(MembershipChange::Demote(*node))),
                NodeRole::Down => Err(StateError::Precondition(format!(
                    "node {node} is already down"
                ))),
                _ => Ok(None),
            },
            Command::SetConfig { patch } => self
                .config
                .patched(patch)
                .and_then(|c| c.validate_for(self.voters().len()))
                .map(|_| None)
                .map_err(|e| StateError::InvalidConfig(e.to_string())),
        }
    }

    fn node(&self, id: NodeId) -> Result<&Node, StateError> {
        self.nodes.get(&id).ok_or(StateError::UnknownNode(id))
    }

    /// Applies a committed command. `term` and `time` come from the entry so the result is
    /// the same on every node. Returns the node a membership command concerns.
    pub fn apply(
        &mut self,
        command: &Command,
        term: u64,
        time: &str,
    ) -> Result<Option<Node>, StateError> {
        self.validate(command)?;
        let (kind, node, message, result) = match command {
            Command::LeaderElected { node } => {
                self.leader = Some((*node, term));
                (
                    "election",
                    Some(*node),
                    format!("node {node} leads term {term}"),
                    None,
                )
            }
            Command::AddNode {
                ip,
                db_port,
                api_port,
            } => {
                let id = self.next_node_id;
                self.next_node_id += 1;
                let new = Node {
                    id,
                    ip: ip.clone(),
                    db_port: *db_port,
                    api_port: *api_port,
                    role: NodeRole::Listener,
                };
                self.nodes.insert(id, new.clone());
                (
                    "membership",
                    Some(id),
                    format!("listener {id} added at {ip}"),
                    Some(new),
                )
            }
            Command::UpgradeNode {
                node,
                db_port,
                api_port,
            } => {
                let n = self
                    .nodes
                    .get_mut(node)
                    .ok_or(StateError::UnknownNode(*node))?;
                n.role = NodeRole::Replica;
                n.db_port = Some(*db_port);
                n.api_port = Some(*api_port);
                let n = n.clone();
                (
                    "membership",
                    Some(*node),
                    format!("node {node} upgraded to voter"),
                    Some(n),
                )
            }
            Command::RemoveNode { node, reason } => {
                let removed = self.nodes.remove(node);
                if self.leader.map(|(l, _)| l) == Some(*node) {
                    self.leader = None;
                }
                // Removing the node that acknowledged alone is the operator accepting
                // the loss of those commits: other nodes may be promoted again.
                if self.acknowledged_alone == Some(*node) {
                    self.acknowledged_alone = None;
                }
                (
                    "membership",
                    Some(*node),
                    format!("node {node} removed ({reason})"),
                    removed,
                )
            }
            Command::NodeDown { node } => {
                let n = self
                    .nodes
                    .get_mut(node)
                    .ok_or(StateError::UnknownNode(*node))?;
                n.role = NodeRole::Down;
                let n = n.clone();
                (
                    "node-down",
                    Some(*node),
                    format!("node {node} marked down"),
                    Some(n),
                )
            }
            Command::SetConfig { patch } => {
                self.config = self
                    .config
                    .patched(patch)
                    .map_err(|e| StateError::InvalidConfig(e.to_string()))?;
                let text = serde_json::to_string(patch).unwrap_or_default();
                ("config", None, format!("config changed: {text}"), None)
            }
            Command::SetSynchronous { standbys } => {
                self.db_config.synchronous_standbys = *standbys;
                (
                    "db-config",
                    None,
                    format!("synchronous standbys: ANY {standbys}"),
                    None,
                )
            }
            Command::PrimaryReady { node } => {
                self.primary = Some((*node, term));
                (
                    "primary",
                    Some(*node),
                    format!("node {node} is the primary in term {term}"),
                    None,
                )
            }
            Command::AcknowledgeAlone { node, alone } => {
                if *alone {
                    self.acknowledged_alone = Some(*node);
                    (
                        "db-config",
                        Some(*node),
                        format!(
                            "node {node} acknowledges commits without a standby; \
                             only it may be promoted until a standby caught up"
                        ),
                        None,
                    )
                } else if self.acknowledged_alone == Some(*node) {
                    self.acknowledged_alone = None;
                    (
                        "db-config",
                        Some(*node),
                        format!("a standby caught up with node {node}; commits wait for it"),
                        None,
                    )
                } else {
                    return Ok(None);
                }
            }
            Command::DbInitialized => {
                self.db_config.initialized = true;
                ("db-config", None, "database initialized".to_string(), None)
            }
            Command::AddReadonly { query_ids } => {
                self.readonly.extend(query_ids.iter().cloned());
                return Ok(None);
            }
            Command::RemoveReadonly { query_ids } => {
                for q in query_ids {
                    self.readonly.remove(q);
                }
                return Ok(None);
            }
        };
        self.push_event(Event {
            time: time.to_string(),
            term,
            node,
            kind: kind.to_string(),
            message,
        });
        Ok(result)
    }

    /// Records an event, dropping the oldest beyond [`MAX_EVENTS`].
    pub fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// The map as clients see it: the current Raft leader shown with role `leader`.
    pub fn view_nodes(&self, raft_leader: Option<NodeId>) -> Vec<Node> {
        self.nodes
            .values()
            .map(|n| {
                let mut n = n.clone();
                if Some(n.id) == raft_leader && n.role == NodeRole::Replica {
                    n.role = NodeRole::Leader;
                }
                n
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> ClusterState {
        let peers = (1..=3)
            .map(|id| Node {
                id,
                ip: "127.0.0.1".into(),
                db_port: Some(5000 + id as u16),
                api_port: Some(6000 + id as u16),
                role: NodeRole::Replica,
            })
            .collect();
        ClusterState::bootstrap(peers, ClusterConfig::default())
    }

    const T: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn acknowledged_alone_is_set_cleared_by_its_node_and_by_removal() {
        let mut s = three();
        let alone = |node, alone| Command::AcknowledgeAlone { node, alone };
        s.apply(&alone(1, true), 2, T).unwrap();
        assert_eq!(s.acknowledged_alone, Some(1));
        // Only the node that acknowledged alone can clear it.
        s.apply(&alone(2, false), 2, T).unwrap();
        assert_eq!(s.acknowledged_alone, Some(1));
        s.apply(&alone(1, false), 2, T).unwrap();
        assert_eq!(s.acknowledged_alone, None);
        s.apply(&alone(1, true), 3, T).unwrap();
        let remove = Command::RemoveNode {
            node: 1,
            reason: "test".into(),
        };
        s.apply(&remove, 3, T).unwrap();
        assert_eq!(s.acknowledged_alone, None, "removal accepts the loss");
        // A state saved before the field existed still loads.
        let mut json = serde_json::to_value(&s).unwrap();
        json.as_object_mut().unwrap().remove("acknowledged_alone");
        let old: ClusterState = serde_json::from_value(json).unwrap();
        assert_eq!(old.acknowledged_alone, None);
    }

    #[test]
    fn listener_then_voter_then_removed() {
        let mut s = three();
        let add = Command::AddNode {
            ip: "10.0.0.4".into(),
            db_port: None,
            api_port: None,
        };
        assert_eq!(s.validate(&add), Ok(Some(MembershipChange::AddLearner(4))));
        let n = s.apply(&add, 2, T).unwrap().unwrap();
        assert_eq!((n.id, n.role), (4, NodeRole::Listener));
        assert_eq!(s.voters(), vec![1, 2, 3], "listeners never vote");
        let up = Command::UpgradeNode {
            node: 4,
            db_port: 1,
            api_port: 2,
        };
        assert_eq!(s.validate(&up), Ok(Some(MembershipChange::AddVoter(4))));
        s.apply(&up, 2, T).unwrap();
        assert_eq!(s.voters(), vec![1, 2, 3, 4]);
        assert!(s.validate(&up).is_err(), "a voter cannot be upgraded again");
        s.apply(
            &Command::RemoveNode {
                node: 4,
                reason: "test".into(),
            },
            2,
            T,
        )
        .unwrap();
        assert!(!s.nodes.contains_key(&4));
        assert_eq!(s.events.len(), 3);
    }

    #[test]
    fn unknown_node_is_reported() {
        let s = three();
        assert_eq!(
            s.validate(&Command::NodeDown { node: 9 }),
            Err(StateError::UnknownNode(9))
        );
    }

    #[test]
    fn node_down_demotes_and_leaves_votes() {
        let mut s = three();
        let c = Command::NodeDown { node: 2 };
        assert_eq!(s.validate(&c), Ok(Some(MembershipChange::Demote(2))));
        s.apply(&c, 1, T).unwrap();
        assert_eq!(s.voters(), vec![1, 3]);
        assert_eq!(s.nodes[&2].role, NodeRole::Down);
        assert!(s.validate(&c).is_err());
    }

    #[test]
    fn last_voter_cannot_be_removed() {
        let mut s = three();
        s.apply(
            &Command::RemoveNode {
                node: 1,
                reason: String::new(),
            },
            1,
            T,
        )
        .unwrap();
        s.apply(
            &Command::RemoveNode {
                node: 2,
                reason: String::new(),
            },
            1,
            T,
        )
        .unwrap();
        let err = s.validate(&Command::RemoveNode {
            node: 3,
            reason: String::new(),
        });
        assert!(matches!(err, Err(StateError::Precondition(_))));
    }

    #[test]
    fn events_are_bounded() {
        let mut s = three();
        for _ in 0..MAX_EVENTS + 10 {
            s.apply(&Command::LeaderElected { node: 1 }, 1, T).unwrap();
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
    }

    #[test]
    fn leader_shown_in_view_only() {
        let s = three();
        let view = s.view_nodes(Some(2));
        assert_eq!(view[1].role, NodeRole::Leader);
        assert_eq!(s.nodes[&2].role, NodeRole::Replica);
    }

    #[test]
    fn invalid_config_patch_is_refused_at_apply() {
        let mut s = three();
        let patch = ConfigPatch {
            heartbeat_interval: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        assert!(matches!(
            s.apply(&Command::SetConfig { patch }, 1, T),
            Err(StateError::InvalidConfig(_))
        ));
    }
}
