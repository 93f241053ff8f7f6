//! The Raft driver: one task that owns the [`Core`], ticks it, feeds it the messages the
//! transport receives, serves proposals from the API, hands outgoing messages to the
//! transport and publishes a [`Status`] for everything else to read.
//!
//! An API write waits here until its entry is applied (committed by a voter majority) and
//! held by `replication-factor` voters, or answers "unknown outcome" (531) at a deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qluster_core::config::TICK;
use qluster_core::lease;
use qluster_core::node::{Applied, Payload};
use qluster_core::state::{Event, StateError};
use qluster_core::{ClusterState, Command, Core, CoreError, Node, NodeId};
use raft::prelude::Message;
use raft::StateRole;
use tokio::sync::{mpsc, oneshot, watch};

use crate::supervisor::LocalDb;
use crate::transport::Transport;
use crate::watchdog::Lease;

/// Local (not replicated) events kept for `/rpc`.
const MAX_LOCAL_EVENTS: usize = 500;
/// How long an API write may wait for its entry.
const PROPOSAL_DEADLINE: Duration = Duration::from_secs(10);

/// What the rest of the daemon may read about this node.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub id: NodeId,
    pub term: u64,
    /// Raft leader known to this node (0 = none).
    pub leader_id: NodeId,
    pub raft_role: String,
    pub is_leader: bool,
    pub leadership_confirmed: bool,
    pub holds_lease: bool,
    /// Peers a message arrived from within node-timeout.
    pub reachable: std::collections::BTreeSet<NodeId>,
    pub state: Option<ClusterState>,
    pub applied: u64,
    pub commit: u64,
    pub local_events: VecDeque<Event>,
}

/// Why a proposal failed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader")]
    NotLeader,
    #[error("another membership or configuration change is in flight")]
    InFlight,
    #[error("the cluster state is not known yet")]
    NotBootstrapped,
    #[error(transparent)]
    State(StateError),
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Internal(String),
}

/// A log entry as `/info` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogView {
    pub index: u64,
    pub term: u64,
    /// The entry's payload; `{}` for entries without one (a new leader's empty entry).
    pub payload: serde_json::Value,
}

/// Requests the API sends to the driver.
pub enum Request {
    Propose {
        command: Command,
        reply: oneshot::Sender<Result<Option<Node>, ProposeError>>,
    },
    TransferLeader {
        to: NodeId,
    },
    Logs {
        reply: oneshot::Sender<Vec<LogView>>,
    },
}

struct Pending {
    index: u64,
    term: u64,
    is_change: bool,
    deadline: Instant,
    result: Option<Result<Option<Node>, StateError>>,
    reply: oneshot::Sender<Result<Option<Node>, ProposeError>>,
}

/// Handles for talking to the driver.
#[derive(Clone)]
pub struct DriverHandle {
    pub requests: mpsc::Sender<Request>,
    /// Peer messages with the time their request arrived (the lease counts from then).
    pub inbound: mpsc::Sender<(Instant, Vec<Message>)>,
    pub status: watch::Receiver<Arc<Status>>,
}

pub struct Driver {
    core: Core,
    db: Arc<LocalDb>,
    /// The end of this node's write lease, shared with the fence and the watchdog.
    lease: Arc<Lease>,
    transport: Transport,
    requests: mpsc::Receiver<Request>,
    inbound: mpsc::Receiver<(Instant, Vec<Message>)>,
    status_tx: watch::Sender<Arc<Status>>,
    pending: Vec<Pending>,
    last_heard: HashMap<NodeId, Instant>,
    /// When this node last became leader: autoremove counts silence from then at the
    /// earliest, since a follower only hears from the leader and candidates.
    leading_since: Instant,
    started: Instant,
    local_events: VecDeque<Event>,
    last_role: (StateRole, u64, NodeId),
    ticks_since_retry: u64,
    /// The lease deadline last set, kept (not extended) while re-electing itself.
    kept_deadline: Option<Instant>,
}

/// An entry's payload as a JSON object (`{}` when it has none).
fn payload_object(payload: Option<Payload>) -> serde_json::Value {
    payload
        .and_then(|p| serde_json::to_value(p).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}))
}

/// A vote request of an ordinary election (not a leadership transfer).
fn is_election_vote(m: &Message) -> bool {
    use raft::prelude::MessageType;
    matches!(
        m.get_msg_type(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    ) && m.context.as_ref() != raft::CAMPAIGN_TRANSFER
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Driver {
    pub fn new(
        core: Core,
        transport: Transport,
        db: Arc<LocalDb>,
        lease: Arc<Lease>,
    ) -> (Driver, DriverHandle) {
        let (req_tx, requests) = mpsc::channel(256);
        let (in_tx, inbound) = mpsc::channel(4096);
        let (status_tx, status) = watch::channel(Arc::new(Status::default()));
        let driver = Driver {
            core,
            db,
            lease,
            transport,
            requests,
            inbound,
            status_tx,
            pending: Vec::new(),
            last_heard: HashMap::new(),
            leading_since: Instant::now(),
            started: Instant::now(),
            local_events: VecDeque::new(),
            last_role: (StateRole::Follower, 0, 0),
            ticks_since_retry: 0,
            kept_deadline: None,
        };
        let handle = DriverHandle {
            requests: req_tx,
            inbound: in_tx,
            status,
        };
        (driver, handle)
    }

    /// Runs until a storage failure (which the caller treats as fatal: restart and
    /// recover from disk, never continue on a failed fsync).
    pub async fn run(mut self) -> Result<(), CoreError> {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish();
        loop {
            tokio::select! {
                _ = ticker.tick() => self.on_tick(),
                Some((at, msgs)) = self.inbound.recv() => self.on_messages(at, msgs)?,
                Some(req) = self.requests.recv() => self.on_request(req),
            }
            self.cycle()?;
        }
    }

    fn on_tick(&mut self) {
        // A follower whose database cannot serve as primary (no data, being rewound or
        // cloned) lets its election timer stand still: it votes but never campaigns.
        let can_lead = self.db.can_lead.load(std::sync::atomic::Ordering::SeqCst);
        if can_lead || self.core.role() != StateRole::Follower {
            self.core.tick();
        }
        self.ticks_since_retry += 1;
        let retry = self
            .core
            .state()
            .map(|s| s.config.replication_retry_interval)
            .unwrap_or(Duration::from_millis(500));
        if self.core.is_leader()
            && self.ticks_since_retry * TICK.as_millis() as u64 >= retry.as_millis() as u64
        {
            // Re-probe followers: a heartbeat answer from a lagging follower makes the
            // leader resend the entries it is missing.
            self.ticks_since_retry = 0;
            self.core.ping();
        }
    }

    fn on_messages(&mut self, arrived: Instant, msgs: Vec<Message>) -> Result<(), CoreError> {
        // After a pause of this process, a message may be older than its arrival time.
        let now = arrived
            .checked_sub(self.lease.pause_discount())
            .unwrap_or(self.started);
        let quiet = self.in_startup_quiet_period();
        for m in msgs {
            if quiet && is_election_vote(&m) {
                continue;
            }
            if m.term >= self.core.term() {
                self.last_heard.insert(m.from, now);
            }
            let from = m.from;
            self.core.step(m)?;
            if from == self.core.leader_id() {
                self.lease.note_leader_contact();
            }
        }
        Ok(())
    }

    /// A restarted daemon has forgotten when it last heard the leader, so raft-rs would
    /// grant votes at once; the old leader's lease counts on this node's promise not to
    /// vote before `node-timeout` of silence. So for one node-timeout after start it
    /// grants none (leadership transfers, which the leader itself starts, excepted).
    fn in_startup_quiet_period(&self) -> bool {
        let node_timeout = self
            .core
            .state()
            .map(|s| s.config.node_timeout)
            .unwrap_or_default();
        self.started.elapsed() < node_timeout
    }

    fn on_request(&mut self, req: Request) {
        match req {
            Request::Propose { command, reply } => self.propose(command, reply),
            Request::TransferLeader { to } => self.core.transfer_leader(to),
            Request::Logs { reply } => {
                let logs = self
                    .core
                    .recent_entries(100)
                    .into_iter()
                    .map(|(index, term, payload)| LogView {
                        index,
                        term,
                        payload: payload_object(payload),
                    })
                    .collect();
                let _ = reply.send(logs);
            }
        }
    }

    fn propose(
        &mut self,
        command: Command,
        reply: oneshot::Sender<Result<Option<Node>, ProposeError>>,
    ) {
        let is_change = !matches!(
            command,
            Command::AddReadonly { .. }
                | Command::RemoveReadonly { .. }
                | Command::LeaderElected { .. }
                | Command::DbInitialized
                | Command::AcknowledgeAlone { .. }
        );
        if is_change && self.pending.iter().any(|p| p.is_change) {
            let _ = reply.send(Err(ProposeError::InFlight));
            return;
        }
        let term = self.core.term();
        match self.core.propose(command, &now_text()) {
            Ok(index) => self.pending.push(Pending {
                index,
                term,
                is_change,
                deadline: Instant::now() + PROPOSAL_DEADLINE,
                result: None,
                reply,
            }),
            Err(e) => {
                let err = match e {
                    CoreError::NotLeader => ProposeError::NotLeader,
                    CoreError::ChangeInFlight => ProposeError::InFlight,
                    CoreError::NotBootstrapped => ProposeError::NotBootstrapped,
                    CoreError::State(s) => ProposeError::State(s),
                    CoreError::Raft(raft::Error::ProposalDropped) => ProposeError::NotLeader,
                    other => ProposeError::Internal(other.to_string()),
                };
                let _ = reply.send(Err(err));
            }
        }
    }

    fn cycle(&mut self) -> Result<(), CoreError> {
        let out = self.core.process_ready(&now_text())?;
        self.transport.send(out.messages);
        self.note_applied(out.applied);
        self.track_role();
        let deadline = if self.core.leadership_confirmed() {
            self.lease_deadline()
        } else if self.core.reelecting() {
            self.kept_deadline
        } else {
            None
        };
        self.kept_deadline = deadline;
        self.lease.set(deadline);
        self.autoremove();
        self.publish();
        // Answered only after the status shows what they applied: an API handler reads
        // the state right after its proposal resolves (`POST /config` returns it).
        self.resolve_pending();
        Ok(())
    }

    fn note_applied(&mut self, applied: Vec<Applied>) {
        for a in applied {
            if let Some(Command::UpgradeNode { .. } | Command::AddNode { .. }) = &a.command {
                self.transport.refresh(self.core.state());
            }
            if let Some(p) = self.pending.iter_mut().find(|p| p.index == a.index) {
                if p.term == a.term {
                    p.result = Some(a.result);
                }
            }
        }
        self.transport.refresh(self.core.state());
    }

    fn resolve_pending(&mut self) {
        let applied = self.core.applied_index();
        let now = Instant::now();
        let required = self.required_replicas();
        let mut keep = Vec::new();
        for p in self.pending.drain(..) {
            let outcome = match &p.result {
                Some(result) => {
                    let held =
                        !self.core.is_leader() || self.core.replicated_count(p.index) >= required;
                    held.then(|| result.clone().map_err(ProposeError::State))
                }
                None if applied >= p.index => Some(Err(ProposeError::Unknown(
                    "the entry was replaced by another leader's log".into(),
                ))),
                None => None,
            };
            match outcome {
                Some(o) => {
                    let _ = p.reply.send(o);
                }
                None if now >= p.deadline => {
                    let _ = p.reply.send(Err(ProposeError::Unknown(format!(
                        "entry {} not acknowledged by {required} nodes in time",
                        p.index
                    ))));
                }
                None => keep.push(p),
            }
        }
        self.pending = keep;
    }

    fn required_replicas(&self) -> usize {
        let voters = self.core.raft_voters().len();
        self.core
            .state()
            .map(|s| s.config.required_replicas(voters))
            .unwrap_or(1)
            .min(voters.max(1))
    }

    /// When this node's write lease ends: only a confirmed leader has one, lasting until
    /// `lease` after the moment a voter quorum had last heard from it.
    fn lease_deadline(&self) -> Option<Instant> {
        let state = self.core.state()?;
        let base = self.started;
        let heard: HashMap<NodeId, u64> = self
            .last_heard
            .iter()
            .map(|(id, t)| (*id, t.duration_since(base).as_millis() as u64))
            .collect();
        let lease_ms = lease::lease_duration(state.config.node_timeout).as_millis() as u64;
        let expiry = lease::lease_expiry(
            self.core.id(),
            &self.core.raft_voters(),
            &heard,
            Instant::now().duration_since(base).as_millis() as u64,
            lease_ms,
        )?;
        Some(base + Duration::from_millis(expiry))
    }

    fn track_role(&mut self) {
        let now_role = (self.core.role(), self.core.term(), self.core.leader_id());
        if now_role == self.last_role {
            return;
        }
        let (role, term, leader) = now_role;
        if role == StateRole::Leader && self.last_role.0 != StateRole::Leader {
            // Peers never heard from start now (for the lease and autoremove).
            let now = Instant::now();
            self.leading_since = now;
            for id in self
                .core
                .raft_voters()
                .into_iter()
                .chain(self.core.raft_learners())
            {
                self.last_heard.entry(id).or_insert(now);
            }
        }
        self.last_role = now_role;
        self.local_event(
            "raft",
            format!("role {role:?}, term {term}, leader {leader}"),
        );
    }

    fn autoremove(&mut self) {
        if !self.core.is_leader() || self.core.membership_change_pending() {
            return;
        }
        let Some(state) = self.core.state() else {
            return;
        };
        let config = &state.config;
        if !config.autoremove_enabled || state.nodes.len() as u64 <= config.autoremove_minimum {
            return;
        }
        if self.pending.iter().any(|p| p.is_change) {
            return;
        }
        let now = Instant::now();
        let me = self.core.id();
        let since = self.leading_since;
        let stale = state.nodes.keys().copied().find(|id| {
            *id != me
                && self
                    .last_heard
                    .get(id)
                    .is_some_and(|t| now.duration_since((*t).max(since)) > config.node_timeout)
        });
        if let Some(node) = stale {
            let command = Command::RemoveNode {
                node,
                reason: "autoremove: unseen for node-timeout".into(),
            };
            if self.core.propose(command, &now_text()).is_ok() {
                self.last_heard.remove(&node);
                self.local_event("autoremove", format!("proposed removal of node {node}"));
            }
        }
    }

    fn local_event(&mut self, kind: &str, message: String) {
        tracing::info!(kind, "{message}");
        self.local_events.push_back(Event {
            time: now_text(),
            term: self.core.term(),
            node: Some(self.core.id()),
            kind: kind.to_string(),
            message,
        });
        while self.local_events.len() > MAX_LOCAL_EVENTS {
            self.local_events.pop_front();
        }
    }

    fn publish(&mut self) {
        let holds_lease = self.lease.may_write();
        let node_timeout = self
            .core
            .state()
            .map(|s| s.config.node_timeout)
            .unwrap_or_default();
        let reachable: std::collections::BTreeSet<NodeId> = self
            .last_heard
            .iter()
            .filter(|(_, t)| t.elapsed() < node_timeout)
            .map(|(id, _)| *id)
            .collect();
        let current = self.status_tx.borrow().clone();
        let changed = current.term != self.core.term()
            || current.applied != self.core.applied_index()
            || current.leader_id != self.core.leader_id()
            || current.is_leader != self.core.is_leader()
            || current.holds_lease != holds_lease
            || current.reachable != reachable
            || current.commit != self.core.commit_index()
            || current.local_events.len() != self.local_events.len()
            || current.leadership_confirmed != self.core.leadership_confirmed();
        if !changed {
            return;
        }
        let status = Status {
            id: self.core.id(),
            term: self.core.term(),
            leader_id: self.core.leader_id(),
            raft_role: format!("{:?}", self.core.role()),
            is_leader: self.core.is_leader(),
            leadership_confirmed: self.core.leadership_confirmed(),
            holds_lease,
            reachable,
            state: self.core.state().cloned(),
            applied: self.core.applied_index(),
            commit: self.core.commit_index(),
            local_events: self.local_events.clone(),
        };
        let _ = self.status_tx.send(Arc::new(status));
    }
}
