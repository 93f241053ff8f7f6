//! qluster's core: everything about the cluster that needs no network, no clock and no
//! processes, so it can be tested deterministically.
//!
//! - [`config`]: cluster settings and their mapping onto Raft timing.
//! - [`state`]: the replicated state machine (node map, settings, database settings,
//!   read-only query ids, events).
//! - [`storage`]: the durable Raft log, hard state and snapshots (fsync, compaction).
//! - [`node`]: one node's Raft instance (raft-rs, pre-vote + check-quorum) driving the
//!   state machine through the `Ready` protocol.
//! - [`lease`]: when a leader may let its database accept writes.
//! - [`db_policy`]: what a node's Postgres should be, given the node's view of the cluster.

pub mod config;
pub mod db_policy;
pub mod lease;
pub mod node;
pub mod state;
pub mod storage;

pub use config::{ClusterConfig, ConfigPatch};
pub use node::{Core, CoreError, Output};
pub use state::{ClusterState, Command, Node, NodeId, NodeRole};

/// A logger that drops everything (raft-rs requires one).
pub fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}
