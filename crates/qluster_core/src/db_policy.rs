//! What a node's Postgres should be, decided from the node's view of the cluster.
//!
//! Pure: the daemon gathers a [`View`], calls [`decide`], and its Postgres supervisor
//! carries the decision out. The rules:
//! - a node that is not in the map, or is `down`, runs no database (never streams);
//! - the leader's database is the primary only once its leadership for the current term
//!   is committed and while it holds the write lease ([`crate::lease`]);
//! - a primary that loses leadership or its lease is stopped at once (fencing), and
//!   later rejoins as a standby (rewound or re-cloned);
//! - every other node streams from the primary named by the last committed election.

use crate::state::NodeRole;

/// What the local database currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Primary,
    Standby,
    Stopped,
}

/// The node's view of the cluster that the decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// This node's role in the committed map (`None`: not a member).
    pub map_role: Option<NodeRole>,
    pub is_raft_leader: bool,
    /// This node holds the write lease. The daemon grants it only to a leader whose
    /// election entry is committed, and keeps it (never extends it) while that leader
    /// re-elects itself to apply new timeouts.
    pub may_write: bool,
    /// `host:port` of the database of the leader of the last committed election, when
    /// that is another node.
    pub primary_addr: Option<String>,
    pub observed: Observed,
}

/// What the supervisor should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run as primary (promote a standby, or initialize an empty cluster).
    BePrimary,
    /// Run as a standby of this primary (rewind or re-clone if it was a primary).
    FollowPrimary(String),
    /// Stop the database now.
    Stop,
    /// Leave it as it is (for example while an election is in progress).
    Hold,
}

pub fn decide(view: &View) -> Decision {
    let member = matches!(
        view.map_role,
        Some(NodeRole::Replica | NodeRole::Listener | NodeRole::Leader)
    );
    if !member {
        return Decision::Stop;
    }
    if view.may_write {
        return Decision::BePrimary;
    }
    if view.observed == Observed::Primary {
        return Decision::Stop;
    }
    if view.is_raft_leader {
        // Leading but not yet confirmed: keep the standby as it is until we may promote.
        return Decision::Hold;
    }
    match &view.primary_addr {
        Some(addr) => Decision::FollowPrimary(addr.clone()),
        None => Decision::Hold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower() -> View {
        View {
            map_role: Some(NodeRole::Replica),
            is_raft_leader: false,
            may_write: false,
            primary_addr: Some("10.0.0.1:5432".into()),
            observed: Observed::Standby,
        }
    }

    #[test]
    fn follower_streams_from_primary() {
        assert_eq!(
            decide(&follower()),
            Decision::FollowPrimary("10.0.0.1:5432".into())
        );
    }

    #[test]
    fn primary_that_lost_leadership_is_stopped() {
        let v = View {
            observed: Observed::Primary,
            ..follower()
        };
        assert_eq!(decide(&v), Decision::Stop);
    }

    #[test]
    fn leader_without_lease_is_fenced() {
        let v = View {
            is_raft_leader: true,
            may_write: false,
            observed: Observed::Primary,
            ..follower()
        };
        assert_eq!(decide(&v), Decision::Stop);
    }

    #[test]
    fn new_leader_waits_for_confirmation_before_promoting() {
        let v = View {
            is_raft_leader: true,
            ..follower()
        };
        assert_eq!(decide(&v), Decision::Hold);
        let v = View {
            may_write: true,
            ..v
        };
        assert_eq!(decide(&v), Decision::BePrimary);
    }

    #[test]
    fn down_node_never_streams() {
        let v = View {
            map_role: Some(NodeRole::Down),
            ..follower()
        };
        assert_eq!(decide(&v), Decision::Stop);
    }
}
