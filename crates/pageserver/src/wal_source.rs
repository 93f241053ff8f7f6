//! A timeline's WAL source: the Postgres endpoint whose WAL streams into it.
//!
//! Attaching a source (`PUT .../wal_source`) probes it (PostgreSQL 15, the
//! timeline's own cluster), persists it under
//! `<tenant>/wal_sources/<timeline_id>.json` and starts a
//! [`walreceiver::WalReceiver`] that keeps the endpoint's WAL durable in
//! `<tenant>/wal/<timeline_id>/` and feeds it to ingest through an
//! [`IngestSink`]. The standby flush position the endpoint sees is what that
//! local WAL store has fsynced, so with `synchronous_standby_names` naming
//! the pageserver a commit returns only once it survives a pageserver crash.
//!
//! Where streaming starts:
//! - a new attachment streams from where a base backup at the timeline's
//!   head put its synthesised shutdown checkpoint
//!   ([`postgres_wal::synth::checkpoint_position`]): the endpoint's WAL
//!   begins with that record. Before the store is reset for the new source,
//!   the timeline is flushed, so nothing ingested lives only in the old store.
//! - an attachment with `resume` (the endpoint continues the timeline's own
//!   stream, e.g. after its tenant was attached from remote storage on a
//!   new disk) streams from the timeline's head itself.
//! - after a pageserver restart, ingest resumes at the timeline's
//!   `last_record_lsn` (its `disk_consistent_lsn` after a restart) from the
//!   local store, and streaming resumes at the store's end.
//!
//! A record ingest cannot apply puts the timeline into the Broken state; the
//! receiver then stops, and commits on a synchronous endpoint wait rather
//! than being acknowledged on top of a corrupt timeline. Why ingest stopped
//! is an [`IngestFailure`]; what each kind does to the timeline (Broken or
//! not) and to the receiver is decided in one place,
//! [`IngestFailure::into_sink_error`]: a shutdown (pageserver stopping,
//! timeline being deleted) stops the receiver quietly and never marks the
//! timeline Broken.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postgres_wal::control::ControlFile;
use postgres_wal::reader::{WalConfig, WalStreamDecoder};
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};
use storage::Key;
use walingest::{IngestError, WalIngest};
use walreceiver::{Placement, ReceiverOptions, SinkError, WalReceiver, WalSink, WalStore};

use crate::commit_times::CommitTimes;
use crate::ids::TimelineId;

/// `application_name` the pageserver connects with; endpoints name it in
/// `synchronous_standby_names`.
pub const APPLICATION_NAME: &str = "pageserver";

/// Directory (under the tenant) of persisted WAL sources.
const SOURCES_DIR: &str = "wal_sources";
/// Directory (under the tenant) of local WAL stores.
const STORES_DIR: &str = "wal";

/// What is persisted about a timeline's WAL source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalSourceFile {
    /// libpq connection string of the endpoint.
    pub connstr: String,
    /// Where streaming started when the source was attached.
    pub start_lsn: Lsn,
    /// The timeline's head (flushed to layers) when the source was
    /// attached: the stream at `start_lsn` continues it, the bytes between
    /// hold no record of ours. Lets remote WAL start at `start_lsn` while
    /// the layers end here. Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_lsn: Option<Lsn>,
}

/// Why a WAL source cannot be attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalSourceError {
    /// The source is unusable (unreachable, not PG15, another cluster, behind).
    #[error("{0}")]
    BadSource(String),
    /// The timeline already streams from another source.
    #[error("timeline {timeline} already streams WAL from {connstr:?}; detach it first")]
    Conflict {
        /// The timeline.
        timeline: TimelineId,
        /// Its current source, without the password.
        connstr: String,
    },
    /// The timeline cannot take WAL (broken, shutting down).
    #[error("{0}")]
    NotActive(String),
    /// Local files could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A running receiver and the source it streams from.
pub struct ActiveSource {
    /// The persisted description.
    pub file: WalSourceFile,
    /// The receiver task.
    pub receiver: WalReceiver,
}

impl std::fmt::Debug for ActiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSource")
            .field("connstr", &self.file.connstr)
            .finish_non_exhaustive()
    }
}

/// Paths of one timeline's WAL source files.
#[derive(Debug, Clone)]
pub struct SourcePaths {
    /// The persisted [`WalSourceFile`].
    pub file: PathBuf,
    /// The local WAL store directory.
    pub store: PathBuf,
}

impl SourcePaths {
    /// Paths for `timeline` under `tenant_dir`.
    pub fn new(tenant_dir: &Path, timeline: TimelineId) -> SourcePaths {
        SourcePaths {
            file: tenant_dir
                .join(SOURCES_DIR)
                .join(format!("{timeline}.json")),
            store: tenant_dir.join(STORES_DIR).join(timeline.to_string()),
        }
    }

    /// The persisted source, if any.
    pub fn read(&self) -> std::io::Result<Option<WalSourceFile>> {
        match std::fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Persists `file` durably.
    pub fn write(&self, file: &WalSourceFile) -> std::io::Result<()> {
        if let Some(parent) = self.file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
        fileio::replace_file(&self.file, &bytes)
    }

    /// Forgets the source and its local WAL.
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.file) {
            Ok(()) => {
                if let Some(parent) = self.file.parent() {
                    fileio::sync_dir(parent)?;
                }
            }
            // Nothing attached (the directory may not exist either).
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        remove_dir_if_exists(&self.store)
    }
}

fn remove_dir_if_exists(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// What a new attachment needs to know about the timeline's cluster.
#[derive(Debug, Clone, Copy)]
pub struct ClusterFacts {
    /// `pg_control`'s system identifier.
    pub system_id: u64,
    /// WAL segment size.
    pub segment_size: u64,
}

/// Reads the cluster facts from the stored `pg_control` at `lsn`.
pub fn cluster_facts(timeline: &storage::Timeline, lsn: Lsn) -> Result<ClusterFacts, String> {
    let bytes = timeline
        .get(Key::control_file(), lsn)
        .map_err(|error| format!("cannot read the timeline's pg_control: {error}"))?;
    let control = ControlFile::parse(&bytes)
        .map_err(|error| format!("the timeline's pg_control is unreadable: {error}"))?;
    let segment_size = match u64::from(control.xlog_seg_size) {
        0 => postgres_wal::lsn::DEFAULT_WAL_SEGMENT_SIZE,
        size => size,
    };
    Ok(ClusterFacts {
        system_id: control.system_identifier,
        segment_size,
    })
}

/// Physical replication slot the pageserver uses on the endpoint.
pub fn slot_name(timeline: TimelineId) -> String {
    format!("sediment_{timeline}")
}

/// `connstr` with `connect_timeout` (whole seconds, at least 1) added
/// unless it sets one itself: how the tenant's
/// `walreceiver_connect_timeout` reaches the receiver.
pub fn with_connect_timeout(connstr: &str, timeout: Option<Duration>) -> String {
    let Some(timeout) = timeout else {
        return connstr.to_owned();
    };
    if connstr.contains("connect_timeout") {
        return connstr.to_owned();
    }
    let seconds = timeout.as_secs().max(1);
    let trimmed = connstr.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let separator = if trimmed.contains('?') { '&' } else { '?' };
        format!("{trimmed}{separator}connect_timeout={seconds}")
    } else {
        format!("{trimmed} connect_timeout={seconds}")
    }
}

/// What the tenant's and the pageserver's settings say about a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverSettings {
    /// The tenant's `walreceiver_connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// The pageserver's `wal_stream_cpus`.
    pub placement: Placement,
}

/// Receiver settings for a source.
pub fn receiver_options(
    connstr: &str,
    timeline: TimelineId,
    system_id: u64,
    settings: &ReceiverSettings,
) -> ReceiverOptions {
    ReceiverOptions {
        connstr: with_connect_timeout(connstr, settings.connect_timeout),
        slot_name: slot_name(timeline),
        application_name: APPLICATION_NAME.to_owned(),
        expected_system_id: Some(system_id),
        status_interval: Duration::from_secs(1),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(5),
        placement: settings.placement.clone(),
    }
}

/// Counters shared between the sink (on the receiver's blocking thread) and
/// the API.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Records ingested since the receiver started.
    pub records: std::sync::atomic::AtomicU64,
    /// WAL bytes consumed since the receiver started.
    pub bytes: std::sync::atomic::AtomicU64,
    /// Blocks whose native redo was compared with a consistency-check image.
    pub native_checks: std::sync::atomic::AtomicU64,
    /// Those comparisons that disagreed.
    pub image_mismatches: std::sync::atomic::AtomicU64,
}

/// Why ingest stopped consuming WAL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestFailure {
    /// The pageserver or the timeline is shutting down (stop, delete):
    /// nothing is wrong with the WAL or the data; ingest resumes from the
    /// local WAL store after a restart.
    #[error("WAL ingest stopped: shutting down")]
    ShuttingDown,
    /// The WAL does not decode: retrying fails the same way.
    #[error("cannot decode WAL: {0}")]
    Undecodable(String),
    /// The record cannot be applied (unsupported, malformed, or it builds
    /// on stored state that does not parse): retrying fails the same way.
    #[error("cannot ingest the WAL record at {lsn}: {source}")]
    Unappliable {
        /// Where the record starts.
        lsn: postgres_wal::Lsn,
        /// What ingest said.
        source: IngestError,
    },
    /// Reading or writing the store failed (I/O, a corrupt layer file, a
    /// write the store refused).
    #[error("storage failed while ingesting the WAL record at {lsn}: {source}")]
    Storage {
        /// Where the record starts.
        lsn: postgres_wal::Lsn,
        /// What ingest said.
        source: IngestError,
    },
}

impl IngestFailure {
    /// Classifies an ingest error of the record at `lsn`.
    pub fn from_ingest(lsn: postgres_wal::Lsn, error: IngestError) -> IngestFailure {
        use storage::{GetError, WriteError};
        match &error {
            IngestError::Storage(WriteError::ShuttingDown)
            | IngestError::Read(GetError::ShuttingDown | GetError::Cancelled) => {
                IngestFailure::ShuttingDown
            }
            IngestError::Storage(_) | IngestError::Read(_) => {
                IngestFailure::Storage { lsn, source: error }
            }
            _ => IngestFailure::Unappliable { lsn, source: error },
        }
    }

    /// Whether the timeline must be marked Broken: every failure but a
    /// shutdown (a storage failure leaves what is stored in doubt, a WAL
    /// problem repeats on every retry; either way acknowledging more
    /// commits on top would be wrong).
    pub fn breaks_timeline(&self) -> bool {
        !matches!(self, IngestFailure::ShuttingDown)
    }

    /// The one place a failure becomes a timeline state and a receiver
    /// outcome: Broken (with this message as the reason) and a receiver
    /// error shown in the timeline's `wal_receiver_error`, or, on
    /// shutdown, a quiet stop.
    pub fn into_sink_error(self, timeline: &storage::Timeline) -> SinkError {
        if !self.breaks_timeline() {
            tracing::info!(timeline_id = %timeline.id(), "WAL ingest stopped: shutting down");
            return SinkError::ShuttingDown;
        }
        let reason = self.to_string();
        tracing::error!(timeline_id = %timeline.id(), %reason, "WAL ingest stopped; timeline is broken");
        timeline.set_broken(reason.clone());
        SinkError::from(reason)
    }
}

/// Feeds durable WAL through the decoder into ingest.
pub struct IngestSink {
    timeline: Arc<storage::Timeline>,
    decoder: WalStreamDecoder,
    ingest: WalIngest,
    resume: Lsn,
    counters: Arc<IngestCounters>,
    commit_times: Arc<CommitTimes>,
}

impl IngestSink {
    /// A sink whose decoder starts at `resume` (a record start or a page
    /// boundary at or after the timeline's last record).
    pub fn new(
        timeline: Arc<storage::Timeline>,
        resume: Lsn,
        facts: ClusterFacts,
        counters: Arc<IngestCounters>,
        commit_times: Arc<CommitTimes>,
    ) -> Result<IngestSink, IngestError> {
        let mut ingest = WalIngest::new(&timeline)?;
        // Free when endpoints run with the reduced consistency-checking list
        // (native managers' records carry no after-image); a canary when an
        // endpoint runs with `all`.
        ingest.set_check_native(true);
        let decoder = WalStreamDecoder::new(
            resume,
            WalConfig {
                segment_size: facts.segment_size,
                system_id: Some(facts.system_id),
            },
        );
        Ok(IngestSink {
            timeline,
            decoder,
            ingest,
            resume,
            counters,
            commit_times,
        })
    }

    fn fail(&self, failure: IngestFailure) -> SinkError {
        failure.into_sink_error(&self.timeline)
    }

    /// Records every commit of the WAL just ingested (each one, so that a
    /// time lookup lands exactly between two commits rather than on a batch
    /// boundary), once per batch of WAL rather than after every record.
    fn record_commit_times(&mut self) {
        for commit in self.ingest.take_commits() {
            if let Err(error) = self.commit_times.record(commit.lsn, commit.unix_micros) {
                tracing::warn!(timeline_id = %self.timeline.id(), %error,
                    "cannot record a commit time");
            }
        }
    }
}

impl WalSink for IngestSink {
    fn resume_lsn(&self) -> Lsn {
        self.resume
    }

    fn consume(&mut self, _lsn: Lsn, bytes: &[u8]) -> Result<Lsn, SinkError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.counters.bytes.fetch_add(bytes.len() as u64, Relaxed);
        // The records of one read off the socket become visible together;
        // a long read (replaying the local store after a restart) is
        // decoded on a second thread and written run by run.
        let mut ingested = walingest::Ingested::default();
        let outcome =
            self.ingest
                .ingest_bytes(&self.timeline, &mut self.decoder, bytes, &mut ingested);
        self.counters.records.fetch_add(ingested.records, Relaxed);
        if let Err(error) = outcome {
            let failure = match error {
                walingest::FeedError::Decode(error) => {
                    IngestFailure::Undecodable(error.to_string())
                }
                walingest::FeedError::Ingest { lsn, source } => {
                    IngestFailure::from_ingest(lsn, source)
                }
            };
            self.record_commit_times();
            return Err(self.fail(failure));
        }
        self.record_commit_times();
        let stats = self.ingest.stats();
        self.counters
            .native_checks
            .store(stats.native_checks, Relaxed);
        if stats.image_mismatches > self.counters.image_mismatches.load(Relaxed) {
            tracing::error!(timeline_id = %self.timeline.id(), mismatches = stats.image_mismatches,
                "native redo disagrees with a consistency-check image (the image was stored)");
        }
        self.counters
            .image_mismatches
            .store(stats.image_mismatches, Relaxed);
        Ok(self.timeline.last_record_lsn())
    }
}

/// Starts the receiver for a persisted source (new or after a restart).
/// `fresh` attachments reset the local store first.
pub fn spawn_receiver(
    timeline: &Arc<storage::Timeline>,
    paths: &SourcePaths,
    file: &WalSourceFile,
    counters: Arc<IngestCounters>,
    commit_times: Arc<CommitTimes>,
    settings: &ReceiverSettings,
) -> Result<WalReceiver, WalSourceError> {
    let head = timeline.last_record_lsn();
    let facts = cluster_facts(timeline, head).map_err(WalSourceError::NotActive)?;
    let store = WalStore::open(&paths.store).map_err(|error| WalSourceError::Io {
        what: format!("cannot open the local WAL store {}", paths.store.display()),
        source: std::io::Error::other(error.to_string()),
    })?;
    // Ingest resumes at the timeline's head, unless the stream starts later
    // (a new attachment streams from the synthesised checkpoint, which lies
    // at or after the head).
    let stream_start = store.start_lsn().unwrap_or(file.start_lsn);
    let resume = head.max(stream_start);
    let sink = IngestSink::new(Arc::clone(timeline), resume, facts, counters, commit_times)
        .map_err(|error| WalSourceError::NotActive(format!("cannot start ingest: {error}")))?;
    let options = receiver_options(&file.connstr, timeline.id(), facts.system_id, settings);
    Ok(WalReceiver::spawn(options, store, Box::new(sink)))
}

/// A connection string without its password, for messages and logs (the
/// endpoint's replication password travels in it). Handles `key=value`
/// strings, quoted or not, and `postgres://user:password@host` URIs.
pub fn redact_password(connstr: &str) -> String {
    if let Some((scheme, rest)) = connstr.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info
                    .split_once(':')
                    .map_or(user_info, |(user, _)| user);
                format!("{user}@{host}")
            }
            None => authority.to_owned(),
        };
        let tail = tail
            .split(['?', '&'])
            .filter(|part| !part.is_empty() && !part.starts_with("password="))
            .collect::<Vec<_>>();
        let (path, params) = match tail.split_first() {
            Some((first, params)) if first.starts_with('/') => (*first, params),
            _ => ("", tail.as_slice()),
        };
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        return format!("{scheme}://{authority}{path}{query}");
    }
    let mut kept = Vec::new();
    let mut rest = connstr.trim_start();
    while !rest.is_empty() {
        let (key, after_key) = rest.split_once('=').unwrap_or((rest, ""));
        let key = key.trim();
        let after_key = after_key.trim_start();
        // The value: quoted (with \' and \\ escapes) or up to whitespace.
        let value_len = if let Some(quoted) = after_key.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let end = !escaped && c == '\'';
                    escaped = !escaped && c == '\\';
                    end
                })
                .map_or(after_key.len(), |(i, _)| i + 2)
        } else {
            after_key
                .find(char::is_whitespace)
                .unwrap_or(after_key.len())
        };
        let (value, after_value) = after_key.split_at(value_len.min(after_key.len()));
        if key != "password" {
            kept.push(format!("{key}={value}"));
        }
        rest = after_value.trim_start();
    }
    kept.join(" ")
}

/// Attaches `connstr` as the WAL source of `timeline` (a timeline of the
/// tenant in `tenant_dir`) and starts streaming. Attaching the source the
/// timeline already streams from is a no-op.
///
/// Streaming starts where a base backup at the timeline's head put its
/// synthesised checkpoint, unless `resume`: then the endpoint continues the
/// very WAL the timeline holds (it streamed into it before, e.g. to a
/// pageserver whose disk was lost and whose tenant was attached from remote
/// storage), and streaming starts at the head itself, the end of the last
/// record ingested.
pub async fn attach(
    tenant_dir: &Path,
    timeline: &crate::timeline::Timeline,
    connstr: &str,
    resume: bool,
    settings: &ReceiverSettings,
) -> Result<(), WalSourceError> {
    let started = std::time::Instant::now();
    let _serial = timeline.wal_source_lock().lock().await;
    if let Some(current) = timeline.wal_source_connstr() {
        if current == connstr {
            return Ok(());
        }
        return Err(WalSourceError::Conflict {
            timeline: timeline.id(),
            connstr: redact_password(&current),
        });
    }
    if let Some(reason) = timeline.storage().broken_reason() {
        return Err(WalSourceError::NotActive(format!(
            "timeline {} is broken: {reason}",
            timeline.id()
        )));
    }
    let storage = Arc::clone(timeline.storage());
    let head = storage.last_record_lsn();
    let facts = cluster_facts(&storage, head).map_err(WalSourceError::NotActive)?;
    let facts_read = started.elapsed();
    let info = walreceiver::probe(connstr, Some(facts.system_id))
        .await
        .map_err(|error| {
            WalSourceError::BadSource(format!(
                "WAL source {:?}: {error}",
                redact_password(connstr)
            ))
        })?;
    let start_lsn = if resume {
        head
    } else {
        postgres_wal::synth::checkpoint_position(head, facts.segment_size).map_err(|error| {
            WalSourceError::NotActive(format!("no stream start after {head}: {error}"))
        })?
    };
    if info.xlogpos < start_lsn {
        return Err(WalSourceError::BadSource(format!(
            "WAL source {connstr:?} is at {}, behind the timeline's head {head}: it was not started from this branch",
            info.xlogpos
        )));
    }
    let probed = started.elapsed();
    let paths = SourcePaths::new(tenant_dir, timeline.id());
    let file = WalSourceFile {
        connstr: connstr.to_owned(),
        start_lsn,
        head_lsn: Some(head),
    };
    // Everything ingested so far goes to layer files before the old local
    // WAL is dropped: after this, the store only holds the new source's WAL.
    let prepare_paths = paths.clone();
    let prepare_file = file.clone();
    let prepare_storage = Arc::clone(&storage);
    tokio::task::spawn_blocking(move || -> Result<(), WalSourceError> {
        prepare_storage.freeze_and_flush().map_err(|error| {
            WalSourceError::NotActive(format!("cannot flush the timeline: {error}"))
        })?;
        remove_dir_if_exists(&prepare_paths.store).map_err(|source| WalSourceError::Io {
            what: format!("cannot reset {}", prepare_paths.store.display()),
            source,
        })?;
        prepare_paths
            .write(&prepare_file)
            .map_err(|source| WalSourceError::Io {
                what: format!("cannot persist {}", prepare_paths.file.display()),
                source,
            })
    })
    .await
    .map_err(|error| WalSourceError::NotActive(format!("attach task failed: {error}")))??;
    let prepared = started.elapsed();
    let receiver = spawn_receiver(
        &storage,
        &paths,
        &file,
        timeline.ingest_counters(),
        Arc::clone(timeline.commit_times()),
        settings,
    )?;
    // Cumulative milliseconds after each step: where a slow attach waited.
    tracing::info!(timeline_id = %timeline.id(), connstr = %redact_password(connstr), %start_lsn, resume,
        facts_ms = facts_read.as_millis(), probed_ms = probed.as_millis(),
        prepared_ms = prepared.as_millis(), total_ms = started.elapsed().as_millis(),
        "WAL source attached");
    timeline.set_wal_source(Some(ActiveSource { file, receiver }));
    Ok(())
}

/// Stops streaming from the timeline's WAL source and forgets it. The
/// timeline is flushed first, so the local WAL is no longer needed.
pub async fn detach(
    tenant_dir: &Path,
    timeline: &crate::timeline::Timeline,
) -> Result<(), WalSourceError> {
    let _serial = timeline.wal_source_lock().lock().await;
    if let Some(active) = timeline.set_wal_source(None) {
        active.receiver.stop().await;
    }
    let paths = SourcePaths::new(tenant_dir, timeline.id());
    let storage = Arc::clone(timeline.storage());
    tokio::task::spawn_blocking(move || -> Result<(), WalSourceError> {
        if storage.broken_reason().is_none() {
            storage.freeze_and_flush().map_err(|error| {
                WalSourceError::NotActive(format!("cannot flush the timeline: {error}"))
            })?;
        }
        paths.remove().map_err(|source| WalSourceError::Io {
            what: format!("cannot remove {}", paths.file.display()),
            source,
        })
    })
    .await
    .map_err(|error| WalSourceError::NotActive(format!("detach task failed: {error}")))?
}

/// Restarts the receiver of a source persisted before a restart.
///
/// A branch's history below its branch point may still be only in its
/// parent's local WAL store, which the parent's own receiver replays first;
/// so the receiver starts once every ancestor has caught up to the branch
/// point. Until then the source's lock is held, so an attach request waits
/// instead of resetting a store that still holds unreplayed WAL.
pub fn resume(
    tenant_dir: &Path,
    timeline: &Arc<crate::timeline::Timeline>,
    cancel: tokio_util::sync::CancellationToken,
    settings: ReceiverSettings,
) -> Result<(), WalSourceError> {
    let paths = SourcePaths::new(tenant_dir, timeline.id());
    let file = match paths.read() {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(()),
        Err(source) => {
            return Err(WalSourceError::Io {
                what: format!("cannot read {}", paths.file.display()),
                source,
            })
        }
    };
    let Ok(serial) = Arc::clone(timeline.wal_source_lock()).try_lock_owned() else {
        return Err(WalSourceError::NotActive(
            "the WAL source is being changed".to_owned(),
        ));
    };
    let timeline = Arc::clone(timeline);
    tokio::spawn(async move {
        let _serial = serial;
        let storage = Arc::clone(timeline.storage());
        let caught_up = tokio::select! {
            () = cancel.cancelled() => false,
            waited = storage.wait_lsn_async(storage.last_record_lsn()) => waited.is_ok(),
        };
        if !caught_up {
            return; // shutting down
        }
        match spawn_receiver(
            &storage,
            &paths,
            &file,
            timeline.ingest_counters(),
            Arc::clone(timeline.commit_times()),
            &settings,
        ) {
            Ok(receiver) => {
                tracing::info!(timeline_id = %timeline.id(), connstr = %redact_password(&file.connstr), "WAL source resumed");
                timeline.set_wal_source(Some(ActiveSource { file, receiver }));
            }
            Err(error) => {
                tracing::error!(timeline_id = %timeline.id(), %error, "cannot resume the WAL source");
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        let cases = [
            (
                "host=h port=5 user=u password=s3cret dbname=d",
                "host=h port=5 user=u dbname=d",
            ),
            ("password='a b\\' c' host=h", "host=h"),
            ("host=h password = 'x'", "host=h"),
            (
                "postgres://u:s3cret@h:5/d?sslmode=disable&password=s3cret",
                "postgres://u@h:5/d?sslmode=disable",
            ),
            ("postgresql://h/d?password=s3cret", "postgresql://h/d"),
        ];
        for (connstr, redacted) in cases {
            assert_eq!(redact_password(connstr), redacted, "{connstr}");
        }
    }

    use super::*;

    #[test]
    fn connect_timeout_is_added_unless_the_connstr_sets_one() {
        let t = Some(Duration::from_secs(7));
        assert_eq!(
            with_connect_timeout("host=h port=1", t),
            "host=h port=1 connect_timeout=7"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@h:1/db", t),
            "postgres://u@h:1/db?connect_timeout=7"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?a=b", t),
            "postgres://h/db?a=b&connect_timeout=7"
        );
        assert_eq!(
            with_connect_timeout("host=h connect_timeout=2", t),
            "host=h connect_timeout=2"
        );
        assert_eq!(with_connect_timeout("host=h", None), "host=h");
        let parsed =
            walreceiver::connstr::ConnectionConfig::parse(&with_connect_timeout("host=h", t));
        assert_eq!(parsed.map(|c| c.connect_timeout).ok().flatten(), t);
    }

    #[test]
    fn only_a_shutdown_leaves_the_timeline_unbroken() {
        use storage::{GetError, WriteError};
        let lsn = postgres_wal::Lsn(0x1000);
        for shutdown in [
            IngestError::Storage(WriteError::ShuttingDown),
            IngestError::Read(GetError::ShuttingDown),
            IngestError::Read(GetError::Cancelled),
        ] {
            let failure = IngestFailure::from_ingest(lsn, shutdown);
            assert!(matches!(failure, IngestFailure::ShuttingDown), "{failure}");
            assert!(!failure.breaks_timeline());
        }
        let unappliable = IngestFailure::from_ingest(
            lsn,
            IngestError::Malformed {
                lsn,
                reason: "bad".into(),
            },
        );
        assert!(matches!(unappliable, IngestFailure::Unappliable { .. }));
        assert!(unappliable.breaks_timeline());
        let storage = IngestFailure::from_ingest(
            lsn,
            IngestError::Storage(WriteError::Io {
                path: "x".into(),
                source: std::io::Error::other("disk"),
            }),
        );
        assert!(matches!(storage, IngestFailure::Storage { .. }));
        assert!(storage.breaks_timeline());
        assert!(IngestFailure::Undecodable("x".into()).breaks_timeline());
    }

    #[test]
    fn a_shutdown_stops_the_receiver_quietly_and_a_failure_breaks_the_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let repo =
            storage::Repository::open(dir.path(), storage::RepositoryConfig::default()).unwrap();
        let timeline = repo
            .create_timeline(
                storage::TimelineId::generate(),
                15,
                postgres_wal::Lsn::INVALID,
            )
            .unwrap();
        let quiet = IngestFailure::ShuttingDown.into_sink_error(&timeline);
        assert!(matches!(quiet, SinkError::ShuttingDown));
        assert_eq!(timeline.broken_reason(), None);
        let failed = IngestFailure::Undecodable("garbage".into()).into_sink_error(&timeline);
        assert!(matches!(failed, SinkError::Failed(_)));
        assert!(timeline.broken_reason().unwrap().contains("garbage"));
    }
}
