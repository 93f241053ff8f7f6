//! The consensus core of one node: a raft-rs `RawNode` (pre-vote and check-quorum on)
//! over [`DurableStorage`], plus the [`ClusterState`] it drives.
//!
//! No network and no clock: the caller ticks it every [`crate::config::TICK`], feeds it
//! the messages it receives, and after each call takes an [`Output`] with the messages to
//! send and the entries applied. This is the raft-rs `Ready` protocol: persist entries
//! and hard state before sending the messages that depend on them, then apply committed
//! entries.

use std::path::Path;

use protobuf::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot,
};
use raft::{RawNode, StateRole};
use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, RaftTiming};
use crate::state::{ClusterState, Command, MembershipChange, Node, NodeId, StateError};
use crate::storage::{DurableStorage, StoreError};

/// Applied entries between two log compactions.
pub const DEFAULT_COMPACT_EVERY: u64 = 500;

/// Failures of the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("this node is not the leader")]
    NotLeader,
    #[error("the cluster state is not known yet (node not bootstrapped)")]
    NotBootstrapped,
    #[error("another membership change is in flight")]
    ChangeInFlight,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("corrupt log entry {index}: {reason}")]
    CorruptEntry { index: u64, reason: String },
}

/// What one log entry carries: the command and when it was proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub time: String,
    pub command: Command,
}

/// One applied entry and its outcome.
#[derive(Debug, Clone)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub command: Option<Command>,
    pub result: Result<Option<Node>, StateError>,
}

/// What the caller must do after a step: send `messages`, and note `applied`.
#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<Message>,
    pub applied: Vec<Applied>,
}

/// One node's Raft instance and replicated state.
pub struct Core {
    id: NodeId,
    raw: RawNode<DurableStorage>,
    state: Option<ClusterState>,
    applied: u64,
    timing: RaftTiming,
    announced_term: u64,
    compact_every: u64,
    pending_retime: bool,
    /// The term of the election this node started to lead again after rebuilding its
    /// Raft node for new timeouts (see [`Core::reelecting`]).
    reelecting_term: Option<u64>,
    /// Set when membership changed: a joining node can only install a snapshot whose
    /// membership names it (raft-rs ignores others), so one is taken right away.
    snapshot_due: bool,
    logger: slog::Logger,
}

fn raft_config(id: NodeId, timing: RaftTiming, applied: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: timing.election_ticks,
        heartbeat_tick: timing.heartbeat_ticks,
        min_election_tick: timing.election_ticks,
        max_election_tick: timing.max_election_ticks,
        applied,
        pre_vote: true,
        check_quorum: true,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

/// The snapshot every founding node installs: index 1, term 1, all peers voting.
pub fn bootstrap_snapshot(peers: Vec<Node>, config: ClusterConfig) -> Result<Snapshot, CoreError> {
    bootstrap_snapshot_of(ClusterState::bootstrap(peers, config))
}

/// The bootstrap snapshot for a given initial state (its replicas are the voters).
pub fn bootstrap_snapshot_of(state: ClusterState) -> Result<Snapshot, CoreError> {
    let conf = ConfState {
        voters: state.voters(),
        ..Default::default()
    };
    let data = serde_json::to_vec(&state).map_err(|e| CoreError::CorruptEntry {
        index: 1,
        reason: e.to_string(),
    })?;
    let mut snap = Snapshot::default();
    snap.set_data(data.into());
    let meta = snap.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    meta.set_conf_state(conf);
    Ok(snap)
}

impl Core {
    /// Opens the node's storage in `dir`. When it is empty and `bootstrap` is given (a
    /// founding member), installs the bootstrap snapshot; a joining node starts empty and
    /// receives a snapshot from the leader.
    pub fn open(
        id: NodeId,
        dir: &Path,
        bootstrap: Option<Snapshot>,
        logger: slog::Logger,
    ) -> Result<Core, CoreError> {
        let mut storage = DurableStorage::open(dir)?;
        if !storage.is_initialized() {
            if let Some(snap) = bootstrap {
                storage.apply_snapshot(snap)?;
            }
        }
        let snapshot = storage.latest_snapshot().clone();
        let applied = snapshot.get_metadata().index;
        let state = if applied > 0 {
            Some(decode_state(&snapshot)?)
        } else {
            None
        };
        let config = state.as_ref().map(|s| s.config.clone()).unwrap_or_default();
        let timing = config.raft_timing();
        let raw = RawNode::new(&raft_config(id, timing, applied), storage, &logger)?;
        Ok(Core {
            id,
            raw,
            state,
            applied,
            timing,
            announced_term: 0,
            compact_every: DEFAULT_COMPACT_EVERY,
            pending_retime: false,
            reelecting_term: None,
            snapshot_due: false,
            logger,
        })
    }

    /// Sets how many applied entries trigger a snapshot (tests use small values).
    pub fn set_compact_every(&mut self, entries: u64) {
        self.compact_every = entries.max(1);
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The Raft leader this node knows of (0 = none).
    pub fn leader_id(&self) -> NodeId {
        self.raw.raft.leader_id
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    /// True once this node leads and its `LeaderElected` entry for the current term has
    /// been applied: only then may its database become the primary.
    pub fn leadership_confirmed(&self) -> bool {
        self.is_leader()
            && self.state.as_ref().and_then(|s| s.leader) == Some((self.id, self.term()))
    }

    /// True while this node, a leader until it rebuilt its Raft node for new timeouts,
    /// is winning its own election back (no other leader is known in that term). Its
    /// write lease may stand meanwhile: its followers granted it their votes, and any
    /// other candidate needs a full node-timeout of silence first.
    pub fn reelecting(&self) -> bool {
        self.reelecting_term == Some(self.term())
            && (self.leader_id() == 0 || self.leader_id() == self.id)
    }

    pub fn state(&self) -> Option<&ClusterState> {
        self.state.as_ref()
    }

    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Voters of the current Raft configuration.
    pub fn raft_voters(&self) -> Vec<NodeId> {
        let mut v: Vec<_> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        v.sort_unstable();
        v
    }

    /// Learners of the current Raft configuration.
    pub fn raft_learners(&self) -> Vec<NodeId> {
        let mut v: Vec<_> = self
            .raw
            .raft
            .prs()
            .conf()
            .learners()
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// On the leader: how many voters (itself included) hold the entry at `index`.
    pub fn replicated_count(&self, index: u64) -> usize {
        let voters = self.raw.raft.prs().conf().voters().ids();
        self.raw
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| voters.contains(**id) && pr.matched >= index)
            .count()
    }

    /// Whether a membership change is proposed but not applied yet.
    pub fn membership_change_pending(&self) -> bool {
        self.raw.raft.pending_conf_index > self.applied
    }

    /// Recent log entries still held (for `/info`), oldest first.
    pub fn recent_entries(&self, max: usize) -> Vec<(u64, u64, Option<Payload>)> {
        let log = self.raw.store().log_entries();
        let start = log.len().saturating_sub(max);
        log[start..]
            .iter()
            .map(|e| (e.index, e.term, entry_payload(e).ok().flatten()))
            .collect()
    }

    pub fn tick(&mut self) -> bool {
        self.raw.tick()
    }

    /// Feeds a message received from a peer.
    pub fn step(&mut self, msg: Message) -> Result<(), CoreError> {
        match self.raw.step(msg) {
            // Stale or foreign messages are expected on a real network; not an error.
            Err(raft::Error::StepPeerNotFound) | Err(raft::Error::StepLocalMsg) => Ok(()),
            other => Ok(other?),
        }
    }

    /// Starts a leadership transfer to `to` (switchover).
    pub fn transfer_leader(&mut self, to: NodeId) {
        self.raw.transfer_leader(to);
    }

    /// Campaigns now (used to speed up the first election of a fresh cluster).
    pub fn campaign(&mut self) -> Result<(), CoreError> {
        Ok(self.raw.campaign()?)
    }

    /// Broadcasts a heartbeat; followers that are behind answer and get re-sent appends.
    pub fn ping(&mut self) {
        self.raw.ping();
    }

    /// Proposes a command on the leader; returns the index it will be committed at.
    pub fn propose(&mut self, command: Command, time: &str) -> Result<u64, CoreError> {
        if !self.is_leader() {
            return Err(CoreError::NotLeader);
        }
        let state = self.state.as_ref().ok_or(CoreError::NotBootstrapped)?;
        let change = state.validate(&command)?;
        let payload = Payload {
            time: time.to_string(),
            command,
        };
        let bytes = serde_json::to_vec(&payload).map_err(|e| CoreError::CorruptEntry {
            index: 0,
            reason: e.to_string(),
        })?;
        match change {
            None => self.raw.propose(vec![], bytes)?,
            Some(change) => {
                if self.membership_change_pending() {
                    return Err(CoreError::ChangeInFlight);
                }
                self.raw.propose_conf_change(bytes, conf_change(change))?;
            }
        }
        Ok(self.raw.raft.raft_log.last_index())
    }

    /// Runs the Ready cycle: persists, collects messages, applies committed entries.
    pub fn process_ready(&mut self, now: &str) -> Result<Output, CoreError> {
        self.announce_leadership(now);
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut ready = self.raw.ready();
        out.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            self.install_snapshot(snap)?;
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(committed, &mut out)?;
        self.raw.mut_store().append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().set_hard_state(hs.clone())?;
        }
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed, &mut out)?;
        self.raw.advance_apply();
        self.maybe_compact()?;
        Ok(out)
    }

    fn announce_leadership(&mut self, now: &str) {
        if self.is_leader() && self.announced_term != self.term() && self.state.is_some() {
            let term = self.term();
            // Dropped only if leadership is lost meanwhile; the next leader announces itself.
            let _ = self.propose(Command::LeaderElected { node: self.id }, now);
            self.announced_term = term;
        }
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), CoreError> {
        let state = decode_state(&snap)?;
        self.applied = snap.get_metadata().index;
        self.raw.mut_store().apply_snapshot(snap)?;
        if self.state.as_ref().map(|s| &s.config) != Some(&state.config) {
            self.timing = state.config.raft_timing();
        }
        self.state = Some(state);
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut Output) -> Result<(), CoreError> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            self.applied = entry.index;
            let payload = entry_payload(&entry)?;
            let Some(payload) = payload else {
                continue; // empty entry a new leader appends
            };
            let result = self.apply_payload(&entry, &payload)?;
            out.applied.push(Applied {
                index: entry.index,
                term: entry.term,
                command: Some(payload.command),
                result,
            });
        }
        Ok(())
    }

    fn apply_payload(
        &mut self,
        entry: &Entry,
        payload: &Payload,
    ) -> Result<Result<Option<Node>, StateError>, CoreError> {
        let Some(state) = self.state.as_mut() else {
            return Err(CoreError::NotBootstrapped);
        };
        let result = state.apply(&payload.command, entry.term, &payload.time);
        if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            let cc: ConfChangeV2 = ConfChangeV2::parse_from_bytes(&entry.data).map_err(|e| {
                CoreError::CorruptEntry {
                    index: entry.index,
                    reason: e.to_string(),
                }
            })?;
            // The state refused the command (it became invalid between proposal and
            // commit): leave the Raft membership unchanged too, so the two never disagree.
            if result.is_ok() {
                match self.raw.apply_conf_change(&cc) {
                    Ok(cs) => {
                        self.raw.mut_store().set_conf_state(cs);
                        self.snapshot_due = true;
                    }
                    Err(e) => slog::warn!(self.logger, "conf change refused"; "err" => %e),
                }
            }
        }
        if let Command::SetConfig { .. } = payload.command {
            self.retime()?;
        }
        Ok(result)
    }

    /// Applies new Raft timing after a config change. raft-rs fixes timeouts at
    /// construction, so the node is rebuilt from its (fully persisted) storage at the end
    /// of this Ready cycle (see [`Core::maybe_compact`]).
    fn retime(&mut self) -> Result<(), CoreError> {
        let Some(state) = self.state.as_ref() else {
            return Ok(());
        };
        let timing = state.config.raft_timing();
        if timing == self.timing {
            return Ok(());
        }
        self.timing = timing;
        self.pending_retime = true;
        Ok(())
    }

    /// Rebuilds the Raft node with the new timing. A rebuilt node is a follower; a leader
    /// then starts a leadership-transfer election for itself right away (no pre-vote, and
    /// followers grant it although they heard a leader recently), so the cluster has its
    /// leader back within a round trip instead of after a node-timeout of silence.
    fn rebuild(&mut self) -> Result<(), CoreError> {
        let was_leader = self.is_leader();
        let storage = self.raw.mut_store().take();
        let config = raft_config(self.id, self.timing, self.applied);
        self.raw = RawNode::new(&config, storage, &self.logger)?;
        self.announced_term = 0;
        if was_leader {
            let mut m = Message::default();
            m.set_msg_type(raft::prelude::MessageType::MsgTimeoutNow);
            m.from = self.id;
            m.to = self.id;
            m.term = self.term();
            self.raw.raft.step(m)?;
            self.reelecting_term = Some(self.term());
        }
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), CoreError> {
        if self.pending_retime {
            self.pending_retime = false;
            self.rebuild()?;
        }
        let base = self.raw.store().latest_snapshot().get_metadata().index;
        if self.applied >= base + self.compact_every || (self.snapshot_due && self.applied > base) {
            self.snapshot_due = false;
            if let Some(state) = self.state.as_ref() {
                let data = serde_json::to_vec(state).map_err(|e| CoreError::CorruptEntry {
                    index: self.applied,
                    reason: e.to_string(),
                })?;
                let applied = self.applied;
                self.raw.mut_store().compact(applied, data)?;
            }
        }
        Ok(())
    }
}

fn conf_change(change: MembershipChange) -> ConfChangeV2 {
    let (kind, node) = match change {
        MembershipChange::AddLearner(n) | MembershipChange::Demote(n) => {
            (ConfChangeType::AddLearnerNode, n)
        }
        MembershipChange::AddVoter(n) => (ConfChangeType::AddNode, n),
        MembershipChange::Remove(n) => (ConfChangeType::RemoveNode, n),
    };
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = node;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    cc
}

/// The payload of an entry: normal entries carry it as data, membership entries as the
/// entry's context. Empty entries (leader no-ops) have none.
pub fn entry_payload(entry: &Entry) -> Result<Option<Payload>, CoreError> {
    let corrupt = |reason: String| CoreError::CorruptEntry {
        index: entry.index,
        reason,
    };
    let bytes = match entry.get_entry_type() {
        EntryType::EntryNormal => entry.data.to_vec(),
        // raft-rs stores the proposal context in the entry, next to the encoded change.
        EntryType::EntryConfChangeV2 => entry.context.to_vec(),
        EntryType::EntryConfChange => return Ok(None),
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

fn decode_state(snap: &Snapshot) -> Result<ClusterState, CoreError> {
    serde_json::from_slice(&snap.data).map_err(|e| CoreError::CorruptEntry {
        index: snap.get_metadata().index,
        reason: format!("snapshot: {e}"),
    })
}
