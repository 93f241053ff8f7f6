//! The receiver loop: replay the store into the sink, then connect, stream,
//! write and sync WAL, report positions, and reconnect with exponential
//! backoff until stopped.
//!
//! The task owns the connection and the store's [`Writer`]: it reads every
//! message already received, appends their WAL, syncs once and reports the
//! new flush position, as PostgreSQL's walreceiver does. The flush position
//! reported to the server is what was synced, never more. The sink lives on
//! a blocking thread of `pipeline`.
//!
//! The task runs on its own thread (`wal-stream`, a current-thread tokio
//! runtime, so its blocking writes and fsyncs delay nothing else) raised
//! above the process's priority like the sink thread: every commit of an
//! endpoint waits for it (to take the WAL off the socket, sync it and send
//! the flush position back), and on the shared runtime's workers it queued
//! behind whatever else they ran. By default it runs on the CPUs that take
//! the store's disk's completion interrupts ([`crate::placement`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;

use parking_lot::Mutex;
use postgres_wal::Lsn;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::connstr::ConnectionConfig;
use crate::error::{ReceiverError, SinkError};
use crate::pipeline::{self, Pipeline, Positions, Progress, SharedView, Writer};
use crate::placement::{self, Placement};
use crate::protocol::{self, ReplicationMessage, StandbyPositions};
use crate::store::{ReadView, WalStore};

/// After this long without any message, ask the server for a keepalive.
const QUIET_BEFORE_PING: Duration = Duration::from_secs(30);
/// After this long without any message, give up on the connection.
const QUIET_BEFORE_RECONNECT: Duration = Duration::from_secs(60);

/// What `IDENTIFY_SYSTEM` and the startup parameters said about a WAL source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The cluster's system identifier (from `pg_control`).
    pub system_id: u64,
    /// The server's current timeline.
    pub timeline: u32,
    /// The server's current WAL flush position.
    pub xlogpos: Lsn,
    /// `server_version`, e.g. `15.18 (Debian 15.18-1.pgdg120+1)`.
    pub server_version: String,
}

/// Where received WAL goes. Called on a blocking thread (never on the async
/// runtime), in LSN order, only with bytes already durable in the store.
pub trait WalSink: Send + 'static {
    /// Where the consumer needs WAL from (e.g. the timeline's last_record_lsn
    /// / decoder position).
    fn resume_lsn(&self) -> Lsn;
    /// Consume durable bytes starting at `lsn` (contiguous with the previous
    /// call). Returns the LSN applied so far (reported as the standby's apply
    /// position). An Err stops the receiver (status shows it).
    fn consume(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, SinkError>;
}

/// How to reach the WAL source and how to behave on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverOptions {
    /// libpq `key=value` string or `postgresql://` URL.
    pub connstr: String,
    /// Physical replication slot (created if missing).
    pub slot_name: String,
    /// Our `application_name`: what `synchronous_standby_names` must name
    /// (takes precedence over one in `connstr`).
    pub application_name: String,
    /// Refuse a source whose system id differs.
    pub expected_system_id: Option<u64>,
    /// Send a standby status update at least this often.
    pub status_interval: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Which CPUs the streaming thread (whose fsyncs commits wait for) runs
    /// on; see [`crate::placement`].
    pub placement: Placement,
}

impl ReceiverOptions {
    /// Options with the defaults: application name `pageserver`, status every
    /// second, reconnect after 100 ms doubling up to 10 s.
    pub fn new(connstr: impl Into<String>, slot_name: impl Into<String>) -> ReceiverOptions {
        ReceiverOptions {
            connstr: connstr.into(),
            slot_name: slot_name.into(),
            application_name: "pageserver".to_owned(),
            expected_system_id: None,
            status_interval: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            placement: Placement::default(),
        }
    }
}

/// A snapshot of what the receiver is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStatus {
    /// The loop is still running (false after `stop` or a fatal error).
    pub running: bool,
    /// Streaming from the source right now.
    pub connected: bool,
    /// End of WAL of the last message received (data or keepalive).
    pub last_received_msg_lsn: Option<Lsn>,
    /// When that message arrived, in microseconds since the Unix epoch.
    pub last_received_msg_ts: Option<u64>,
    /// Received and appended to the store (not yet durable; the server is
    /// told only `flush_lsn`, as both its write and flush position).
    pub write_lsn: Lsn,
    /// Durable in the store: what is reported as the standby's flush LSN.
    pub flush_lsn: Lsn,
    /// Consumed by the sink.
    pub apply_lsn: Lsn,
    /// The most recent error (cleared once streaming starts again).
    pub last_error: Option<String>,
    /// How many times a connection failed or ended and was retried.
    pub reconnects: u64,
    /// The source as of the last successful connection.
    pub source: Option<SourceInfo>,
}

/// Handle of a running receiver loop. Dropping it without [`WalReceiver::stop`]
/// still tells the loop to stop (it winds down in the background).
pub struct WalReceiver {
    status: Arc<Mutex<ReceiverStatus>>,
    progress: Arc<Mutex<Option<Arc<Progress>>>>,
    view: Arc<Mutex<Option<SharedView>>>,
    truncate_before: Arc<Mutex<Option<Lsn>>>,
    cancel: CancellationToken,
    /// Resolves when the loop has ended (sent or dropped by its thread).
    done: Option<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for WalReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReceiver")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Drop for WalReceiver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl WalReceiver {
    /// Starts the loop on a thread of its own (call from within a tokio
    /// runtime, which it falls back to if no thread can be started):
    /// first feeds the sink what the store holds from `sink.resume_lsn()` to
    /// the store's end (replay after a restart), then connects and streams
    /// from the store's end (or `resume_lsn()` if the store is empty),
    /// appends + syncs each batch, feeds the sink, reports flush = durable
    /// end. Reconnects with exponential backoff (min..max) on any connection
    /// error; version/system-id mismatch also retried but visible in status.
    ///
    /// The sink sees the replayed range and then the new WAL strictly in
    /// order, but streaming does not wait for the replay: the sink thread
    /// reads the store, so the endpoint's commits only ever wait for fsync.
    pub fn spawn(opts: ReceiverOptions, store: WalStore, sink: Box<dyn WalSink>) -> WalReceiver {
        let status = Arc::new(Mutex::new(ReceiverStatus {
            running: true,
            ..ReceiverStatus::default()
        }));
        let progress = Arc::new(Mutex::new(None));
        let view = Arc::new(Mutex::new(None));
        let truncate_before = Arc::new(Mutex::new(None));
        let cancel = CancellationToken::new();
        let state = LoopState {
            opts,
            status: status.clone(),
            progress_slot: progress.clone(),
            view_slot: view.clone(),
            truncate_before: truncate_before.clone(),
            cancel: cancel.clone(),
        };
        let done = run_on_own_thread(state, store, sink);
        WalReceiver {
            status,
            progress,
            view,
            truncate_before,
            cancel,
            done: Some(done),
        }
    }

    /// Current status.
    pub fn status(&self) -> ReceiverStatus {
        let mut status = self.status.lock().clone();
        if let Some(progress) = self.progress.lock().as_ref() {
            let positions = *progress.positions.borrow();
            status.flush_lsn = positions.flush;
            status.apply_lsn = positions.apply;
        }
        status
    }

    /// The store's files as of its last sync: WAL that is durable locally,
    /// readable without waiting for the writer (the uploader of remote WAL
    /// reads it). `None` before the receiver has started its threads.
    /// Files the writer truncates later fail to read (the caller skips).
    pub fn durable_view(&self) -> Option<Arc<ReadView>> {
        let slot = self.view.lock();
        let shared = slot.as_ref()?;
        let view = shared.lock().clone();
        Some(view)
    }

    /// Lets the store drop whole files below `lsn` (WAL the consumer has made
    /// durable elsewhere). Applied by the writer after its next sync.
    pub fn truncate_store_before(&self, lsn: Lsn) {
        let mut request = self.truncate_before.lock();
        *request = Some(request.map_or(lsn, |old| old.max(lsn)));
    }

    /// Graceful stop: closes the connection, lets the writer and the sink
    /// finish what was already received, returns when the loop has ended.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

/// Runs the loop on a `wal-stream` thread of its own (see the module doc).
/// If the OS refuses the thread or its runtime, the receiver stops with
/// that error: its writes block, so it cannot share a runtime's workers.
fn run_on_own_thread(
    state: LoopState,
    store: WalStore,
    sink: Box<dyn WalSink>,
) -> oneshot::Receiver<()> {
    let (done_tx, done) = oneshot::channel();
    // Taken back if the thread cannot start.
    let work = Arc::new(Mutex::new(Some((state, store, sink, done_tx))));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let started = runtime.map_err(|e| e.to_string()).and_then(|runtime| {
        let thread_work = work.clone();
        std::thread::Builder::new()
            .name("wal-stream".to_owned())
            .spawn(move || {
                pipeline::raise_thread_priority();
                let taken = thread_work.lock().take();
                if let Some((state, store, sink, done_tx)) = taken {
                    runtime.block_on(state.run(store, sink));
                    let _ = done_tx.send(());
                }
            })
            .map_err(|e| e.to_string())
    });
    if let Err(error) = started {
        let taken = work.lock().take();
        if let Some((state, _, _, done_tx)) = taken {
            state.finish(Some(format!(
                "cannot start the WAL streaming thread: {error}"
            )));
            let _ = done_tx.send(());
        }
    }
    done
}

/// Connects once, checks the version (and the system id if given), and
/// returns what `IDENTIFY_SYSTEM` said. Used to refuse a bad WAL source up
/// front.
pub async fn probe(
    connstr: &str,
    expected_system_id: Option<u64>,
) -> Result<SourceInfo, ReceiverError> {
    let config = ConnectionConfig::parse(connstr)?;
    let application_name = config
        .application_name
        .clone()
        .unwrap_or_else(|| "pageserver-probe".to_owned());
    let mut connection = Connection::connect(&config, &application_name).await?;
    let result = identify(&mut connection, expected_system_id).await;
    connection.terminate().await;
    result
}

/// Version check + `IDENTIFY_SYSTEM` + system id check.
async fn identify(
    connection: &mut Connection,
    expected_system_id: Option<u64>,
) -> Result<SourceInfo, ReceiverError> {
    let server_version = connection.server_version().unwrap_or_default().to_owned();
    check_version(connection.address(), &server_version)?;
    let identity = connection.identify_system().await?;
    if let Some(expected) = expected_system_id {
        if expected != identity.system_id {
            return Err(ReceiverError::SystemIdMismatch {
                address: connection.address().to_owned(),
                expected,
                actual: identity.system_id,
            });
        }
    }
    Ok(SourceInfo {
        system_id: identity.system_id,
        timeline: identity.timeline,
        xlogpos: identity.xlogpos,
        server_version,
    })
}

/// Accepts PostgreSQL 15.x only: WAL formats differ between major versions.
fn check_version(address: &str, server_version: &str) -> Result<(), ReceiverError> {
    let major = server_version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or_default();
    if major == "15" {
        return Ok(());
    }
    Err(ReceiverError::VersionMismatch {
        address: address.to_owned(),
        version: if server_version.is_empty() {
            "of unknown version".to_owned()
        } else {
            server_version.to_owned()
        },
    })
}

/// Everything the loop task owns besides store and sink.
struct LoopState {
    opts: ReceiverOptions,
    status: Arc<Mutex<ReceiverStatus>>,
    progress_slot: Arc<Mutex<Option<Arc<Progress>>>>,
    view_slot: Arc<Mutex<Option<SharedView>>>,
    truncate_before: Arc<Mutex<Option<Lsn>>>,
    cancel: CancellationToken,
}

/// How a streaming session ended without an error.
enum SessionEnd {
    /// Stop was requested, or a thread failed.
    Stopped,
    /// The server ended the stream (CopyDone); reconnect.
    ServerEnded,
}

impl LoopState {
    async fn run(self, store: WalStore, sink: Box<dyn WalSink>) {
        let prepared =
            match tokio::task::spawn_blocking(move || pipeline::prepare(store, sink)).await {
                Ok(Ok(prepared)) => prepared,
                Ok(Err(error)) => return self.finish(Some(error.to_string())),
                Err(join) => return self.finish(Some(format!("replay panicked: {join}"))),
            };
        let stream_from = prepared.stream_from;
        let store_dir = prepared.store.dir().to_owned();
        let progress = Progress::new(
            prepared.positions,
            prepared.sink_from,
            self.truncate_before.clone(),
        );
        *self.progress_slot.lock() = Some(progress.clone());
        let (pipeline, mut writer) = match Pipeline::start(prepared, progress.clone()) {
            Ok(started) => started,
            Err(error) => return self.finish(Some(format!("cannot start WAL threads: {error}"))),
        };
        *self.view_slot.lock() = Some(pipeline.view.clone());
        self.stream_until_stopped(&mut writer, &progress, stream_from, &store_dir)
            .await;
        // What was received last becomes durable too (the walsender may
        // resend it, but need not on a source that went away).
        if writer.has_unsynced() {
            if let Err(error) = writer.sync_and_release() {
                progress.fail(Err(error.into()));
            }
        }
        self.status.lock().connected = false;
        let finishing = progress.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.finish(writer, &finishing)).await;
        let failure = progress.failure.lock().take();
        let error = match failure {
            Some(Err(error)) => Some(error.to_string()),
            _ => None,
        };
        self.finish(error);
    }

    fn finish(&self, error: Option<String>) {
        let mut status = self.status.lock();
        status.running = false;
        status.connected = false;
        if let Some(progress) = self.progress_slot.lock().as_ref() {
            let positions = *progress.positions.borrow();
            status.flush_lsn = positions.flush;
            status.apply_lsn = positions.apply;
        }
        if let Some(error) = error {
            tracing::error!("WAL receiver stopped: {error}");
            status.last_error = Some(error);
        }
    }

    async fn stream_until_stopped(
        &self,
        writer: &mut Writer,
        progress: &Arc<Progress>,
        start: Lsn,
        store_dir: &std::path::Path,
    ) {
        let mut next_lsn = start;
        self.status.lock().write_lsn = start;
        let mut backoff = self.opts.backoff_min;
        let mut placed = None;
        loop {
            let now = placement::place_streaming_thread(&self.opts.placement, store_dir);
            if placed.as_ref() != Some(&now) {
                let cpus = now.cpus.as_ref().map_or("every CPU".to_owned(), |cpus| {
                    format!("CPU {}", threadsched::format_cpu_list(cpus))
                });
                tracing::info!(store = %store_dir.display(), reason = %now.reason,
                    "WAL streaming thread runs on {cpus}");
                placed = Some(now);
            }
            let before = next_lsn;
            let outcome = self.session(writer, progress, &mut next_lsn).await;
            self.status.lock().connected = false;
            let reason = match outcome {
                Ok(SessionEnd::Stopped) => return,
                Ok(SessionEnd::ServerEnded) => "the server ended the stream".to_owned(),
                Err(error) if error.is_fatal() => {
                    progress.fail(Err(error));
                    return;
                }
                Err(error) => error.to_string(),
            };
            if next_lsn > before {
                backoff = self.opts.backoff_min;
            }
            tracing::warn!(retry_in = ?backoff, "WAL receiver: {reason}");
            {
                let mut status = self.status.lock();
                status.last_error = Some(reason);
                status.reconnects += 1;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = progress.failed.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2)
                .min(self.opts.backoff_max)
                .max(self.opts.backoff_min);
        }
    }

    /// One connection: identify, slot, START_REPLICATION, then stream.
    async fn session(
        &self,
        writer: &mut Writer,
        progress: &Arc<Progress>,
        next_lsn: &mut Lsn,
    ) -> Result<SessionEnd, ReceiverError> {
        let config = ConnectionConfig::parse(&self.opts.connstr)?;
        let connect = Connection::connect(&config, &self.opts.application_name);
        let mut connection = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(SessionEnd::Stopped),
            connection = connect => connection?,
        };
        let setup = async {
            let source = identify(&mut connection, self.opts.expected_system_id).await?;
            connection
                .create_physical_slot(&self.opts.slot_name)
                .await?;
            connection
                .start_replication(&self.opts.slot_name, *next_lsn, source.timeline)
                .await?;
            Ok::<_, ReceiverError>(source)
        };
        let source = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(SessionEnd::Stopped),
            source = setup => source?,
        };
        tracing::info!(address = connection.address(), from = %next_lsn, timeline = source.timeline, "WAL receiver streaming");
        {
            let mut status = self.status.lock();
            status.connected = true;
            status.last_error = None;
            status.source = Some(source);
        }
        let mut stream = Streaming {
            state: self,
            connection,
            writer,
            progress,
            next_lsn,
            last_message: Instant::now(),
        };
        let outcome = stream.run().await;
        stream.connection.terminate().await;
        outcome
    }
}

/// The CopyBoth phase of one session.
struct Streaming<'a> {
    state: &'a LoopState,
    connection: Connection,
    writer: &'a mut Writer,
    progress: &'a Arc<Progress>,
    next_lsn: &'a mut Lsn,
    last_message: Instant,
}

/// What woke the streaming loop.
enum Event {
    Stop,
    PositionsChanged,
    Tick,
    Message(Result<Option<bytes::Bytes>, ReceiverError>),
}

impl Streaming<'_> {
    async fn run(&mut self) -> Result<SessionEnd, ReceiverError> {
        let mut positions: watch::Receiver<Positions> = self.progress.positions.subscribe();
        let mut ticker = tokio::time::interval(
            self.state
                .opts
                .status_interval
                .max(Duration::from_millis(10)),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A first report right away: a synchronous standby counts only once
        // it has reported a flush position.
        self.send_status(false).await?;
        loop {
            let event = tokio::select! {
                biased;
                _ = self.state.cancel.cancelled() => Event::Stop,
                _ = self.progress.failed.cancelled() => Event::Stop,
                changed = positions.changed() => match changed {
                    Ok(()) => Event::PositionsChanged,
                    Err(_) => Event::Stop,
                },
                message = self.connection.read_copy_data() => Event::Message(message),
                _ = ticker.tick() => Event::Tick,
            };
            match event {
                Event::Stop => return Ok(SessionEnd::Stopped),
                Event::PositionsChanged => {
                    positions.borrow_and_update();
                    self.send_status(false).await?;
                }
                Event::Tick => self.on_tick().await?,
                Event::Message(message) => {
                    let ended = self.on_messages(message, &mut positions).await?;
                    if ended {
                        return Ok(SessionEnd::ServerEnded);
                    }
                }
            }
        }
    }

    /// Handles `first` and every message already received after it, then
    /// syncs what they carried once and reports the new flush position.
    /// Returns whether the server ended the stream.
    async fn on_messages(
        &mut self,
        first: Result<Option<bytes::Bytes>, ReceiverError>,
        positions: &mut watch::Receiver<Positions>,
    ) -> Result<bool, ReceiverError> {
        let mut next = Some(first);
        let mut ended = false;
        while let Some(message) = next.take() {
            match message? {
                Some(payload) => self.on_message(payload).await?,
                None => {
                    ended = true;
                    break;
                }
            }
            if self.writer.must_sync() {
                self.sync_and_report(positions).await?;
            }
            if self.state.cancel.is_cancelled() || self.progress.failed.is_cancelled() {
                break;
            }
            // Not waiting: `None` when nothing more is buffered or readable.
            next = self.connection.read_copy_data().now_or_never();
        }
        if self.writer.has_unsynced() {
            self.sync_and_report(positions).await?;
        }
        Ok(ended)
    }

    /// Syncs the appended WAL, sends the new flush position right away
    /// (marking the change seen, so it is not sent twice), then lets the
    /// sink read it.
    async fn sync_and_report(
        &mut self,
        positions: &mut watch::Receiver<Positions>,
    ) -> Result<(), ReceiverError> {
        self.writer.sync()?;
        positions.borrow_and_update();
        let sent = self.send_status(false).await;
        self.writer.release()?;
        sent
    }

    async fn on_tick(&mut self) -> Result<(), ReceiverError> {
        let quiet = self.last_message.elapsed();
        if quiet >= QUIET_BEFORE_RECONNECT {
            return Err(ReceiverError::Timeout {
                address: self.connection.address().to_owned(),
                what: "any message from the walsender",
            });
        }
        self.send_status(quiet >= QUIET_BEFORE_PING).await
    }

    async fn on_message(&mut self, payload: bytes::Bytes) -> Result<(), ReceiverError> {
        let message = protocol::parse(payload).map_err(|reason| ReceiverError::Protocol {
            address: self.connection.address().to_owned(),
            reason,
        })?;
        self.last_message = Instant::now();
        match message {
            ReplicationMessage::XLogData { start, data, .. } => {
                self.on_wal(start, data)?;
            }
            ReplicationMessage::Keepalive {
                wal_end,
                reply_requested,
            } => {
                self.note_received(wal_end);
                if reply_requested {
                    self.send_status(false).await?;
                }
            }
        }
        Ok(())
    }

    fn on_wal(&mut self, start: Lsn, mut data: bytes::Bytes) -> Result<(), ReceiverError> {
        let expected = *self.next_lsn;
        if start > expected {
            return Err(ReceiverError::Discontinuity {
                address: self.connection.address().to_owned(),
                expected,
                got: start,
            });
        }
        // A resend of bytes we already have: keep only the new part.
        let overlap = usize::try_from(expected - start).unwrap_or(usize::MAX);
        if overlap >= data.len() {
            return Ok(());
        }
        let _ = data.split_to(overlap);
        let end = expected + data.len() as u64;
        self.writer.append(expected, &data)?;
        *self.next_lsn = end;
        self.note_received(end);
        self.state.status.lock().write_lsn = end;
        Ok(())
    }

    fn note_received(&self, lsn: Lsn) {
        let mut status = self.state.status.lock();
        status.last_received_msg_lsn = Some(lsn);
        status.last_received_msg_ts = Some(protocol::unix_micros(SystemTime::now()));
    }

    async fn send_status(&mut self, reply_requested: bool) -> Result<(), ReceiverError> {
        let positions = *self.progress.positions.borrow();
        // "write" promises the bytes survive a crash of this process (as a
        // standby's write to the OS would); only synced bytes do here, so
        // `synchronous_commit = remote_write` gets the flush position too.
        let report = StandbyPositions {
            write: positions.flush,
            flush: positions.flush,
            apply: positions.apply,
        };
        let payload = protocol::standby_status_update(report, SystemTime::now(), reply_requested);
        self.connection.send_copy_data(payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_15_is_accepted() {
        for good in [
            "15.18 (Debian 15.18-1.pgdg120+1)",
            "15.0",
            "15devel",
            "15beta2",
        ] {
            assert!(check_version("h:1", good).is_ok(), "{good}");
        }
        for bad in ["16.2", "14.11", "150.1", "1.5", "", "PostgreSQL 15"] {
            assert!(check_version("h:1", bad).is_err(), "{bad}");
        }
        let message = check_version("127.0.0.1:55432", "16.2")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "WAL source at 127.0.0.1:55432 is PostgreSQL 16.2, this pageserver needs 15"
        );
    }
}
