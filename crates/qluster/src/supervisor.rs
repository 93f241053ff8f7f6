//! The Postgres supervisor: makes this node's database follow the cluster.
//!
//! Every few hundred milliseconds (and on every status change) it observes the local
//! database, asks the pure policy ([`qluster_core::db_policy::decide`]) what it should
//! be, and carries that out: initdb or promote on the leader, base backup / pg_rewind /
//! restart on followers, immediate stop when a primary loses leadership or its lease.
//! On the leader it also collects read-only query ids from `pg_stat_statements`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qluster_core::db_policy::{decide, Decision, Observed, View};
use qluster_core::{ClusterState, Command, NodeId, NodeRole};
use tokio::sync::oneshot;

use crate::driver::{DriverHandle, Request, Status};
use crate::postgres::{kill_postmaster_tree, primary_running, PgError, PgSettings, Postgres};
use crate::watchdog::Lease;

/// A standby that has not streamed for this long is rewound or re-cloned. Longer than
/// a failover (the primary it follows may be changing), short enough that a standby
/// which can never stream is repaired promptly.
const STREAM_GRACE: Duration = Duration::from_secs(10);
const LOOP_INTERVAL: Duration = Duration::from_millis(200);
/// How long a new leader waits for a standby's WAL position before promoting without
/// it. Only voters heard from within node-timeout are asked at all, so a dead or cut-off
/// node costs nothing; a live one gets this long even on a loaded host.
const WAL_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a new leader that holds its promotion says why.
const HOLD_LOG_EVERY: Duration = Duration::from_secs(2);
/// In asynchronous mode a primary still waits for one standby (`ANY 1 (*)`) while any
/// standby streams; only after none has streamed for this long, and while it holds the
/// write lease, does it fall back to acknowledging alone (see the README's rules).
const ASYNC_FALLBACK_AFTER: Duration = Duration::from_secs(3);

/// One standby's answer to a WAL position probe.
enum Probe {
    Standby(NodeId, u64),
    /// Answered, but is no standby or has no data: holds no commit the others lack.
    NoStandby,
    /// No answer in time, or its database is down: its WAL is unknown.
    Unknown,
}

/// WAL position of the local database.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct WalPosition {
    pub lsn: u64,
    pub in_recovery: bool,
}

/// The local database, when this daemon manages one.
pub struct LocalDb {
    pub pg: Option<Postgres>,
    /// False while the database could not serve as primary (no data, being rewound or
    /// cloned): the driver then does not start elections.
    pub can_lead: std::sync::atomic::AtomicBool,
    /// This node's write lease (set by the driver).
    pub lease: Arc<Lease>,
}

fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

impl LocalDb {
    /// Current WAL position (received/replayed on a standby, written on a primary).
    pub async fn wal_position(&self) -> Result<WalPosition, PgError> {
        let Some(pg) = &self.pg else {
            return Ok(WalPosition {
                lsn: 0,
                in_recovery: true,
            });
        };
        let client = pg.connect().await?;
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), \
                 CASE WHEN pg_is_in_recovery() THEN \
                   greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text \
                 ELSE pg_current_wal_lsn()::text END",
                &[],
            )
            .await?;
        let in_recovery: bool = row.get(0);
        let lsn: Option<String> = row.get(1);
        Ok(WalPosition {
            lsn: lsn.as_deref().and_then(parse_lsn).unwrap_or(0),
            in_recovery,
        })
    }

    fn observe(&self) -> Observed {
        let Some(pg) = &self.pg else {
            return Observed::Stopped;
        };
        if !postmaster_alive(pg) {
            Observed::Stopped
        } else if pg.is_standby_configured() {
            Observed::Standby
        } else {
            Observed::Primary
        }
    }
}

fn postmaster_alive(pg: &Postgres) -> bool {
    pg.running_postmaster().is_some()
}

/// Fencing, separate from the supervisor so a slow action there never delays it: a
/// postmaster running as primary on a node whose write lease has ended is killed with
/// its children within one poll interval. The watchdog process does the same on its
/// own, so this also holds while the daemon is frozen or dead.
pub async fn fence(db: Arc<LocalDb>, lease: Arc<Lease>) {
    let Some(pg) = db.pg.clone() else { return };
    loop {
        if !lease.may_write() {
            if let Some(pid) = primary_running(&pg.data_dir) {
                kill_postmaster_tree(pid);
                tracing::warn!("fenced: killed primary postmaster {pid} (no write lease)");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The supervisor task's state.
pub struct Supervisor {
    db: Arc<LocalDb>,
    driver: DriverHandle,
    http: reqwest::Client,
    not_streaming_since: Option<Instant>,
    /// Set when a standby was stopped because it could not stream: the next start
    /// rewinds (or re-clones) it first.
    needs_repair: bool,
    /// Repairs since the standby last streamed: from the second on, the standby is
    /// re-cloned without trying pg_rewind again.
    repairs: u32,
    /// The WAL receiver seen streaming at the previous check. Only the same receiver
    /// seen twice counts as streaming: one that the primary refuses (missing WAL) shows
    /// "streaming" for a moment on every retry.
    receiver_pid: Option<i32>,
    failed_starts: u32,
    /// When a held promotion last logged why.
    promote_hold_logged: Option<Instant>,
    last_readonly_scan: Instant,
    readonly_interval: Duration,
    writers: HashSet<String>,
    /// Since when this primary has seen no streaming standby.
    no_standby_since: Option<Instant>,
    /// Asynchronous mode degraded to acknowledging without any standby.
    async_fallback: bool,
    /// While the log says this node acknowledged alone: the WAL position every commit
    /// so acknowledged lies below, taken once `ANY 1` is back in force. A standby that
    /// flushed past it holds them all, and the flag is cleared.
    alone_clear_lsn: Option<u64>,
}

fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

impl Supervisor {
    pub fn new(
        db: Arc<LocalDb>,
        driver: DriverHandle,
        http: reqwest::Client,
        readonly_interval: Duration,
    ) -> Self {
        Supervisor {
            db,
            driver,
            http,
            not_streaming_since: None,
            needs_repair: false,
            repairs: 0,
            receiver_pid: None,
            failed_starts: 0,
            promote_hold_logged: None,
            last_readonly_scan: Instant::now(),
            readonly_interval,
            writers: HashSet::new(),
            no_standby_since: None,
            async_fallback: false,
            alone_clear_lsn: None,
        }
    }

    pub async fn run(mut self) {
        let mut rx = self.driver.status.clone();
        loop {
            let status = rx.borrow_and_update().clone();
            if let Err(e) = self.reconcile(&status).await {
                tracing::warn!("postgres supervisor: {e}");
            }
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep(LOOP_INTERVAL) => {}
            }
        }
    }

    fn view(&self, status: &Status, state: &ClusterState) -> View {
        let primary_addr = state
            .leader
            .filter(|(id, _)| *id != status.id)
            .and_then(|(id, _)| state.nodes.get(&id))
            .and_then(|n| n.db_addr());
        View {
            map_role: state.nodes.get(&status.id).map(|n| n.role),
            is_raft_leader: status.is_leader,
            may_write: self.db.lease.may_write(),
            primary_addr,
            observed: self.db.observe(),
        }
    }

    async fn reconcile(&mut self, status: &Status) -> Result<(), PgError> {
        let Some(pg) = self.db.pg.clone() else {
            return Ok(());
        };
        let Some(state) = status.state.as_ref() else {
            return Ok(());
        };
        let view = self.view(status, state);
        let ready = pg.has_data() || !state.db_config.initialized;
        self.db
            .can_lead
            .store(ready, std::sync::atomic::Ordering::SeqCst);
        match decide(&view) {
            Decision::Stop => {
                if view.observed != Observed::Stopped {
                    tracing::warn!(
                        "stopping postgres (role {:?}, leader {})",
                        view.map_role,
                        status.is_leader
                    );
                    pg.stop_immediate().await?;
                }
                Ok(())
            }
            Decision::Hold => Ok(()),
            Decision::BePrimary => self.be_primary(&pg, status, state, view.observed).await,
            Decision::FollowPrimary(addr) => {
                self.follow(&pg, status.id, state, &addr, view.observed)
                    .await
            }
        }
    }

    fn settings(state: &ClusterState, primary: Option<(String, u16)>) -> PgSettings {
        Self::settings_with(state, primary, state.db_config.synchronous_standbys)
    }

    fn settings_with(
        state: &ClusterState,
        primary: Option<(String, u16)>,
        synchronous_standbys: u32,
    ) -> PgSettings {
        PgSettings {
            parameters: state.db_config.parameters.clone(),
            primary,
            synchronous_standbys,
        }
    }

    /// Primary settings with the synchronous count in force: the configured `ANY k`, or
    /// in asynchronous mode `ANY 1` unless degraded (no standby streams, see
    /// [`Self::track_standbys`]). Why: a primary that acknowledged alone while cut off
    /// would lose those commits at failover; waiting for one standby closes that hole.
    fn primary_settings(&self, state: &ClusterState) -> PgSettings {
        let configured = state.db_config.synchronous_standbys;
        let k = if configured == 0 && !self.async_fallback {
            1
        } else {
            configured
        };
        Self::settings_with(state, None, k)
    }

    /// Tracks whether any standby streams from this primary, and in asynchronous mode
    /// decides the deliberate fallback to acknowledging alone (logged both ways). The
    /// fallback needs the write lease: a primary cut off from the quorum never falls
    /// back, so its unreplicated commits stay unacknowledged until it is fenced.
    ///
    /// The fallback is first written to the cluster log ([`Command::AcknowledgeAlone`]):
    /// only once a quorum accepted it are commits acknowledged alone, and while it is
    /// logged no other node is promoted. It is cleared once `ANY 1` is in force again and
    /// a standby flushed past every commit acknowledged alone.
    async fn track_standbys(
        &mut self,
        pg: &Postgres,
        status: &Status,
        state: &ClusterState,
    ) -> Result<(), PgError> {
        let client = pg.connect().await?;
        let row = client
            .query_one(
                "SELECT count(*), \
                 coalesce(max(flush_lsn), '0/0')::text, pg_current_wal_lsn()::text \
                 FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )
            .await?;
        let streaming: i64 = row.get(0);
        let flushed = parse_lsn(&row.get::<_, String>(1)).unwrap_or(0);
        let current = parse_lsn(&row.get::<_, String>(2)).unwrap_or(u64::MAX);
        if state.acknowledged_alone == Some(status.id) && !self.async_fallback {
            // `ANY 1` was written and reloaded by an earlier round; commits from now on
            // wait for a standby, so `current` bounds every commit acknowledged alone.
            let target = *self.alone_clear_lsn.get_or_insert(current);
            if streaming > 0 && flushed >= target {
                tracing::info!("a standby flushed past the commits acknowledged alone");
                self.propose(Command::AcknowledgeAlone {
                    node: status.id,
                    alone: false,
                })
                .await;
            }
        } else {
            self.alone_clear_lsn = None;
        }
        if streaming > 0 {
            self.no_standby_since = None;
            if self.async_fallback {
                tracing::info!("a standby streams again: commits wait for one standby");
                self.async_fallback = false;
                self.alone_clear_lsn = None;
            }
            return Ok(());
        }
        let since = *self.no_standby_since.get_or_insert_with(Instant::now);
        if !self.async_fallback
            && state.db_config.synchronous_standbys == 0
            && since.elapsed() >= ASYNC_FALLBACK_AFTER
            && self.db.lease.may_write()
        {
            // Logged first: a primary cut off from the quorum cannot log it, so it never
            // acknowledges alone, and once logged no other node can be promoted.
            let logged = self
                .propose(Command::AcknowledgeAlone {
                    node: status.id,
                    alone: true,
                })
                .await;
            if logged && self.db.lease.may_write() {
                tracing::warn!(
                    "no standby has streamed for {:?}: acknowledging commits without a \
                     standby (asynchronous fallback; no other node is promoted until a \
                     standby caught up)",
                    since.elapsed()
                );
                self.async_fallback = true;
            }
        }
        Ok(())
    }

    async fn be_primary(
        &mut self,
        pg: &Postgres,
        status: &Status,
        state: &ClusterState,
        observed: Observed,
    ) -> Result<(), PgError> {
        match observed {
            Observed::Primary => {
                if let Err(e) = self.track_standbys(pg, status, state).await {
                    tracing::warn!("could not read pg_stat_replication: {e}");
                }
                if pg.write_settings(&self.primary_settings(state))? {
                    pg.reload().await?;
                }
                if !state.db_config.initialized {
                    // A bootstrap cut short (daemon restarted after initdb).
                    self.finish_bootstrap(pg).await?;
                }
                self.announce_primary(status, state).await;
                self.scan_readonly(pg, state).await;
                Ok(())
            }
            Observed::Stopped if !pg.has_data() => {
                if state.db_config.initialized {
                    tracing::error!(
                        "leader has no data but the cluster database exists; handing over"
                    );
                    self.hand_over(status, state).await;
                    return Ok(());
                }
                pg.initdb().await?;
                // No standby exists yet: the bootstrap commits must not wait for one.
                pg.write_settings(&Self::settings(state, None))?;
                pg.start().await?;
                self.finish_bootstrap(pg).await
            }
            Observed::Stopped => {
                // Start as a standby and promote, so the primary always opens a new
                // timeline and any divergent standby is detected and rewound.
                pg.mark_standby()?;
                pg.write_settings(&self.primary_settings(state))?;
                pg.mark_standby()?;
                pg.start().await?;
                self.promote_if_best(pg, status, state).await
            }
            Observed::Standby => self.promote_if_best(pg, status, state).await,
        }
    }

    /// The rest of the bootstrap on the first primary: the replication role standbys
    /// clone and stream with, `pg_stat_statements`, and the log entry saying the cluster
    /// database exists. Every step may run again.
    async fn finish_bootstrap(&mut self, pg: &Postgres) -> Result<(), PgError> {
        pg.create_replication_role().await?;
        let client = pg.connect().await?;
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await?;
        if self.propose(Command::DbInitialized).await {
            tracing::info!("initialized the cluster database as primary");
        }
        Ok(())
    }

    /// Promotes, unless another reachable standby holds more WAL: then hands leadership
    /// to it, so a synchronously acknowledged commit is never lost in a failover.
    async fn promote_if_best(
        &mut self,
        pg: &Postgres,
        status: &Status,
        state: &ClusterState,
    ) -> Result<(), PgError> {
        if let Some(alone) = state.acknowledged_alone.filter(|n| *n != status.id) {
            // Node `alone` acknowledged commits no standby holds: only it may become
            // the primary. Hand leadership to it once it is reachable; until then hold.
            if status.reachable.contains(&alone) {
                tracing::warn!("node {alone} acknowledged commits alone; handing leadership over");
                let _ = self
                    .driver
                    .requests
                    .send(Request::TransferLeader { to: alone })
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            } else {
                self.log_hold(&format!(
                    "node {alone} acknowledged commits alone and is unreachable; not promoting"
                ));
            }
            return Ok(());
        }
        let mine = self.db.wal_position().await?.lsn;
        let (best, unknown) = self.best_other_standby(status, state).await;
        // Every acknowledged commit is on the old primary and on k standbys. Unless at
        // most k-1 other standbys' WAL is unknown, one of them may hold a commit this
        // node lacks: wait (the next round asks again) rather than lose it.
        let k = state.db_config.synchronous_standbys.max(1) as usize;
        if unknown >= k {
            self.log_hold(&format!(
                "the WAL of {unknown} standby(s) is unknown (commits wait for {k}); not promoting yet"
            ));
            return Ok(());
        }
        if let Some((id, lsn)) = best {
            if lsn > mine {
                tracing::warn!("node {id} has more WAL ({lsn} > {mine}); handing leadership over");
                let _ = self
                    .driver
                    .requests
                    .send(Request::TransferLeader { to: id })
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(());
            }
        }
        self.promote_hold_logged = None;
        // A new primary starts safe (waiting for one standby); the fallback clock starts.
        self.async_fallback = false;
        self.no_standby_since = Some(Instant::now());
        // Primary settings first: a promoted server must never run a moment without
        // `synchronous_standby_names`, or it would acknowledge unreplicated commits.
        pg.write_settings(&self.primary_settings(state))?;
        pg.reload().await?;
        pg.promote().await?;
        tracing::info!("promoted to primary in term {}", status.term);
        self.announce_primary(status, state).await;
        Ok(())
    }

    fn log_hold(&mut self, why: &str) {
        if self
            .promote_hold_logged
            .is_none_or(|t| t.elapsed() >= HOLD_LOG_EVERY)
        {
            tracing::warn!("{why}");
            self.promote_hold_logged = Some(Instant::now());
        }
    }

    /// The reachable standby voter with the most WAL, if any, and how many other
    /// voters' WAL is unknown. Every reachable voter is asked at once, each for at most
    /// [`WAL_PROBE_TIMEOUT`]; one not heard from within node-timeout, one that does not
    /// answer in time and one whose database is down count as unknown. The previous
    /// primary is not counted: what it acknowledged is also on the standbys.
    async fn best_other_standby(
        &self,
        status: &Status,
        state: &ClusterState,
    ) -> (Option<(NodeId, u64)>, usize) {
        let old_primary = state.primary.map(|(id, _)| id);
        let mut probes = tokio::task::JoinSet::new();
        let mut unknown = 0;
        for node in state.nodes.values() {
            if node.id == status.id || node.role != NodeRole::Replica {
                continue;
            }
            let counts = Some(node.id) != old_primary;
            let Some(addr) = node.api_addr() else {
                continue;
            };
            if !status.reachable.contains(&node.id) {
                unknown += usize::from(counts);
                continue;
            }
            let (http, id) = (self.http.clone(), node.id);
            probes.spawn(async move {
                let resp = http
                    .get(format!("http://{addr}/wal-lsn"))
                    .timeout(WAL_PROBE_TIMEOUT)
                    .send()
                    .await;
                let resp = match resp {
                    Ok(r) if r.status().is_success() => r,
                    _ => return (counts, Probe::Unknown),
                };
                let probe = match resp.json::<WalPosition>().await {
                    Ok(pos) if pos.in_recovery && pos.lsn > 0 => Probe::Standby(id, pos.lsn),
                    Ok(_) => Probe::NoStandby,
                    Err(_) => Probe::Unknown,
                };
                (counts, probe)
            });
        }
        let mut best: Option<(NodeId, u64)> = None;
        while let Some(done) = probes.join_next().await {
            match done {
                Ok((_, Probe::Standby(id, lsn))) => {
                    if best.is_none_or(|(_, l)| lsn > l) {
                        best = Some((id, lsn));
                    }
                }
                Ok((counts, Probe::Unknown)) => unknown += usize::from(counts),
                Ok((_, Probe::NoStandby)) => {}
                Err(_) => unknown += 1,
            }
        }
        (best, unknown)
    }

    async fn hand_over(&self, status: &Status, state: &ClusterState) {
        if let (Some((id, _)), _) = self.best_other_standby(status, state).await {
            let _ = self
                .driver
                .requests
                .send(Request::TransferLeader { to: id })
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn follow(
        &mut self,
        pg: &Postgres,
        me: NodeId,
        state: &ClusterState,
        addr: &str,
        observed: Observed,
    ) -> Result<(), PgError> {
        let Some((host, port)) = split_addr(addr) else {
            return Ok(());
        };
        let settings = Self::settings(state, Some((host.clone(), port)));
        match observed {
            Observed::Standby => {
                if pg.write_settings(&settings)? {
                    pg.reload().await?;
                    self.not_streaming_since = None;
                }
                self.check_streaming(pg).await
            }
            Observed::Primary => Ok(()), // the policy stops a primary first
            // The commits this node acknowledged alone exist nowhere else: keep its data
            // as it is (no rewind, no clone) until it is the primary again.
            Observed::Stopped if state.acknowledged_alone == Some(me) && pg.has_data() => Ok(()),
            Observed::Stopped => {
                if !pg.has_data() {
                    tracing::info!("cloning from primary {addr}");
                    pg.base_backup(&host, port).await?;
                } else if self.needs_repair && self.repairs >= 2 {
                    self.reclone(pg, &host, port).await?;
                } else if !pg.is_standby_configured()
                    || self.needs_repair
                    || self.failed_starts >= 2
                {
                    self.rewind_or_clone(pg, &host, port).await?;
                }
                pg.write_settings(&settings)?;
                pg.mark_standby()?;
                match pg.start().await {
                    Ok(()) => self.failed_starts = 0,
                    Err(e) => {
                        self.failed_starts += 1;
                        return Err(e);
                    }
                }
                self.not_streaming_since = None;
                Ok(())
            }
        }
    }

    async fn rewind_or_clone(
        &mut self,
        pg: &Postgres,
        host: &str,
        port: u16,
    ) -> Result<(), PgError> {
        // An unreachable source fails here, before anything is wiped for a re-clone.
        pg.checkpoint_source(host, port).await?;
        tracing::info!("rewinding from {host}:{port}");
        match pg.rewind(host, port).await {
            Ok(true) => {}
            // A standby on the primary's timeline that could not stream is missing WAL
            // the primary no longer has: only a re-clone helps.
            Ok(false) if self.needs_repair => {
                tracing::warn!("nothing to rewind, yet the standby could not stream; re-cloning");
                pg.base_backup(host, port).await?;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("pg_rewind failed ({e}); re-cloning");
                pg.base_backup(host, port).await?;
            }
        }
        self.failed_starts = 0;
        self.needs_repair = false;
        Ok(())
    }

    /// Re-clones from the primary (after a rewind did not make the standby stream).
    async fn reclone(&mut self, pg: &Postgres, host: &str, port: u16) -> Result<(), PgError> {
        // An unreachable source fails here, before the data directory is wiped.
        pg.checkpoint_source(host, port).await?;
        tracing::warn!("still not streaming after a rewind; re-cloning from {host}:{port}");
        pg.base_backup(host, port).await?;
        self.failed_starts = 0;
        self.needs_repair = false;
        Ok(())
    }

    /// A standby that cannot stream (diverged timeline, missing WAL) is rewound or
    /// re-cloned after a grace period.
    async fn check_streaming(&mut self, pg: &Postgres) -> Result<(), PgError> {
        let pid: Option<i32> = match pg.connect().await {
            Ok(c) => c
                .query_opt(
                    "SELECT pid FROM pg_stat_wal_receiver WHERE status = 'streaming'",
                    &[],
                )
                .await
                .ok()
                .flatten()
                .and_then(|row| row.try_get(0).ok()),
            Err(_) => None,
        };
        let streaming = pid.is_some() && pid == self.receiver_pid;
        self.receiver_pid = pid;
        if streaming {
            self.not_streaming_since = None;
            self.repairs = 0;
            return Ok(());
        }
        let since = *self.not_streaming_since.get_or_insert_with(Instant::now);
        if since.elapsed() < STREAM_GRACE {
            return Ok(());
        }
        tracing::warn!("standby not streaming for {:?}; repairing", since.elapsed());
        // Stopped, it is rewound (or re-cloned) and restarted by the next round.
        self.needs_repair = true;
        self.repairs += 1;
        self.not_streaming_since = None;
        pg.stop_immediate().await
    }

    /// Collects statements that never wrote WAL from `pg_stat_statements` and shares them
    /// through the cluster log.
    async fn scan_readonly(&mut self, pg: &Postgres, state: &ClusterState) {
        if self.last_readonly_scan.elapsed() < self.readonly_interval {
            return;
        }
        self.last_readonly_scan = Instant::now();
        let Ok(client) = pg.connect().await else {
            return;
        };
        let rows = client
            .query(
                "SELECT queryid::text, wal_records FROM pg_stat_statements WHERE queryid IS NOT NULL",
                &[],
            )
            .await;
        let Ok(rows) = rows else { return };
        let mut add = Vec::new();
        for row in rows {
            let id: String = row.get(0);
            let wal: i64 = row.get(1);
            if wal > 0 {
                self.writers.insert(id);
            } else if !state.readonly.contains(&id) && !self.writers.contains(&id) {
                add.push(id);
            }
        }
        let remove: Vec<String> = state
            .readonly
            .iter()
            .filter(|id| self.writers.contains(*id))
            .cloned()
            .collect();
        if !add.is_empty() {
            self.propose(Command::AddReadonly { query_ids: add }).await;
        }
        if !remove.is_empty() {
            self.propose(Command::RemoveReadonly { query_ids: remove })
                .await;
        }
    }

    /// Proposes a command and waits for it; returns whether it was applied.
    async fn propose(&self, command: Command) -> bool {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .driver
            .requests
            .send(Request::Propose { command, reply: tx })
            .await;
        if sent.is_err() {
            return false;
        }
        match rx.await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!("proposal failed: {e}");
                false
            }
            Err(_) => false,
        }
    }

    /// Tells the cluster that this leader's database is a writable primary, once per
    /// term, so clients are routed to it only from now on.
    async fn announce_primary(&self, status: &Status, state: &ClusterState) {
        if state.primary != Some((status.id, status.term)) {
            self.propose(Command::PrimaryReady { node: status.id })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_parses() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("garbage"), None);
    }

    #[test]
    fn addresses_split() {
        assert_eq!(
            split_addr("127.0.0.1:5432"),
            Some(("127.0.0.1".into(), 5432))
        );
        assert_eq!(split_addr("[::1]:5432"), Some(("::1".into(), 5432)));
        assert_eq!(split_addr("nope"), None);
    }
}
