//! The leader's write lease: the rule that keeps two databases from accepting writes.
//!
//! Raft's check-quorum makes a partitioned leader step down only after up to two election
//! timeouts, while the majority side may elect a new leader after one. So the old
//! leader's database must stop earlier: a leader keeps its primary only while it has heard
//! from a quorum of voters (itself included) within `lease = node-timeout * 3 / 4`.
//! Followers that last heard it at time `t` cannot elect anyone before `t + node-timeout`,
//! and the new leader promotes only after its election entry commits, so the old primary
//! is fenced first, with a quarter of node-timeout to spare for stopping Postgres.

use std::collections::HashMap;
use std::time::Duration;

use crate::state::NodeId;

/// Fraction of node-timeout a leader's lease lasts (numerator, denominator).
const LEASE_FRACTION: (u32, u32) = (3, 4);

/// Lease length for a given node-timeout.
pub fn lease_duration(node_timeout: Duration) -> Duration {
    node_timeout * LEASE_FRACTION.0 / LEASE_FRACTION.1
}

/// Whether a quorum of `voters` was heard from within `lease_ms` of `now_ms`.
/// `last_heard_ms` holds, per peer, when a message of the current term last arrived;
/// the leader itself always counts.
pub fn holds_quorum(
    self_id: NodeId,
    voters: &[NodeId],
    last_heard_ms: &HashMap<NodeId, u64>,
    now_ms: u64,
    lease_ms: u64,
) -> bool {
    if voters.is_empty() {
        return false;
    }
    let fresh = voters
        .iter()
        .filter(|id| {
            **id == self_id
                || last_heard_ms
                    .get(id)
                    .is_some_and(|t| now_ms.saturating_sub(*t) < lease_ms)
        })
        .count();
    fresh > voters.len() / 2
}

/// When the lease ends, in the same clock as `last_heard_ms` (`None`: no quorum was ever
/// heard). The quorum-th freshest contact (the leader itself counting as `now_ms`) plus
/// `lease_ms`: until then a voter quorum has heard from this leader within the lease.
pub fn lease_expiry(
    self_id: NodeId,
    voters: &[NodeId],
    last_heard_ms: &HashMap<NodeId, u64>,
    now_ms: u64,
    lease_ms: u64,
) -> Option<u64> {
    if voters.is_empty() {
        return None;
    }
    let mut heard: Vec<u64> = voters
        .iter()
        .filter_map(|id| {
            if *id == self_id {
                Some(now_ms)
            } else {
                last_heard_ms.get(id).copied()
            }
        })
        .collect();
    heard.sort_unstable_by(|a, b| b.cmp(a));
    let quorum = voters.len() / 2 + 1;
    heard.get(quorum - 1).map(|t| t + lease_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_leader_loses_lease() {
        let heard: HashMap<_, _> = [(2, 1000), (3, 1000)].into_iter().collect();
        assert!(holds_quorum(1, &[1, 2, 3], &heard, 1500, 1125));
        assert!(!holds_quorum(1, &[1, 2, 3], &heard, 2200, 1125));
    }

    #[test]
    fn one_fresh_peer_of_two_is_enough_in_three() {
        let heard: HashMap<_, _> = [(2, 2000), (3, 0)].into_iter().collect();
        assert!(holds_quorum(1, &[1, 2, 3], &heard, 2100, 1125));
    }

    #[test]
    fn four_voters_need_three() {
        let heard: HashMap<_, _> = [(2, 2000), (3, 0), (4, 0)].into_iter().collect();
        assert!(!holds_quorum(1, &[1, 2, 3, 4], &heard, 2100, 1125));
    }

    #[test]
    fn expiry_is_the_quorum_th_freshest_contact_plus_lease() {
        let heard: HashMap<_, _> = [(2, 1000), (3, 400)].into_iter().collect();
        assert_eq!(lease_expiry(1, &[1, 2, 3], &heard, 1500, 1125), Some(2125));
        let heard: HashMap<_, _> = [(2, 1000), (3, 400), (4, 900)].into_iter().collect();
        assert_eq!(
            lease_expiry(1, &[1, 2, 3, 4], &heard, 1500, 100),
            Some(1000)
        );
        assert_eq!(lease_expiry(1, &[1, 2, 3], &HashMap::new(), 5, 100), None);
        assert_eq!(lease_expiry(1, &[1], &HashMap::new(), 5, 100), Some(105));
    }

    #[test]
    fn lease_is_shorter_than_node_timeout() {
        assert!(lease_duration(Duration::from_secs(2)) < Duration::from_secs(2));
    }
}
