//! One timeline as the management API shows it: a storage timeline plus the
//! tenant it belongs to, reported as `TimelineInfo`.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use postgres_wal::Lsn;

use crate::commit_times::CommitTimes;
use crate::ids::{TenantId, TimelineId};
use crate::wal_source::{ActiveSource, IngestCounters};

/// The only PostgreSQL major version this pageserver serves.
pub const PG_VERSION: u32 = 15;

/// How long a logical size computed at an older LSN is served while the
/// head moves (see `Timeline::logical_size_bytes`).
const LOGICAL_SIZE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// A computed logical size.
#[derive(Clone, Copy, Debug)]
struct LogicalSize {
    lsn: Lsn,
    bytes: u64,
    computed: std::time::Instant,
}

/// A timeline loaded in memory.
pub struct Timeline {
    tenant_id: TenantId,
    storage: Arc<storage::Timeline>,
    /// Logical size at an LSN, computed on demand and reused while the head
    /// does not move or for [`LOGICAL_SIZE_MAX_AGE`] (computing it walks
    /// every relation).
    logical_size: Mutex<Option<LogicalSize>>,
    /// The endpoint streaming WAL into this timeline, with its receiver.
    wal_source: Mutex<Option<ActiveSource>>,
    /// Serialises attach and detach of the WAL source (they await I/O).
    wal_source_lock: Arc<tokio::sync::Mutex<()>>,
    /// Ingest progress counters, shared with the receiver's sink.
    ingest_counters: Arc<IngestCounters>,
    /// Commit time ↔ LSN samples, fed by the receiver's sink.
    commit_times: Arc<CommitTimes>,
    /// What the last uploaded index makes durable remotely, layers and WAL
    /// objects (0: none yet).
    remote_consistent_lsn: std::sync::atomic::AtomicU64,
    /// Human name given at creation ([`crate::branch_names`]), written to
    /// disk before the timeline exists and never changed.
    branch_name: Option<String>,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("tenant_id", &self.tenant_id)
            .field("timeline_id", &self.id())
            .finish()
    }
}

impl Timeline {
    /// Wraps a storage timeline.
    /// Its commit-time samples live in `<tenant>/commit_times/<id>.bin`; an
    /// unreadable file only costs the time lookups (logged, started empty).
    pub fn new(tenant_id: TenantId, storage: Arc<storage::Timeline>) -> Timeline {
        let tenant_dir = storage
            .dir()
            .parent()
            .and_then(Path::parent)
            .unwrap_or(storage.dir());
        let branch_name = crate::branch_names::read(tenant_dir, storage.id());
        let path = tenant_dir
            .join("commit_times")
            .join(format!("{}.bin", storage.id()));
        let commit_times = CommitTimes::open(&path).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "cannot read commit times; starting empty");
            CommitTimes::empty(&path)
        });
        Timeline {
            commit_times: Arc::new(commit_times),
            remote_consistent_lsn: std::sync::atomic::AtomicU64::new(0),
            branch_name,
            tenant_id,
            storage,
            logical_size: Mutex::new(None),
            wal_source: Mutex::new(None),
            wal_source_lock: Arc::new(tokio::sync::Mutex::new(())),
            ingest_counters: Arc::new(IngestCounters::default()),
        }
    }

    /// The timeline id.
    pub fn id(&self) -> TimelineId {
        self.storage.id()
    }

    /// The tenant it belongs to.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The storage timeline (reads, writes, base backups).
    pub fn storage(&self) -> &Arc<storage::Timeline> {
        &self.storage
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.storage.dir()
    }

    /// Parent timeline id, if this is a branch.
    pub fn ancestor_timeline_id(&self) -> Option<TimelineId> {
        self.storage.ancestor().map(|(id, _)| id)
    }

    /// `Active`, or `Broken` after a failed write.
    pub fn state_name(&self) -> &'static str {
        if self.storage.broken_reason().is_some() {
            "Broken"
        } else {
            "Active"
        }
    }

    /// Whether it serves reads and branches.
    pub fn is_active(&self) -> bool {
        self.storage.broken_reason().is_none()
    }

    /// Last LSN that is fully ingested.
    pub fn last_record_lsn(&self) -> Lsn {
        self.storage.last_record_lsn()
    }

    /// Serialises WAL source changes.
    pub fn wal_source_lock(&self) -> &Arc<tokio::sync::Mutex<()>> {
        &self.wal_source_lock
    }

    /// The current WAL source's connection string.
    pub fn wal_source_connstr(&self) -> Option<String> {
        self.wal_source
            .lock()
            .as_ref()
            .map(|active| active.file.connstr.clone())
    }

    /// Replaces the WAL source, returning the previous one (still running:
    /// the caller stops it).
    pub fn set_wal_source(&self, source: Option<ActiveSource>) -> Option<ActiveSource> {
        std::mem::replace(&mut *self.wal_source.lock(), source)
    }

    /// The WAL durable in the local store, as its receiver last published
    /// it, with the source's stream start and the head it continued
    /// (`None` without a running source).
    pub fn durable_wal(&self) -> Option<(Arc<walreceiver::ReadView>, Lsn, Option<Lsn>)> {
        let source = self.wal_source.lock();
        let active = source.as_ref()?;
        let view = active.receiver.durable_view()?;
        Some((view, active.file.start_lsn, active.file.head_lsn))
    }

    /// Lets the WAL receiver drop local WAL below `lsn` (it is in layer files).
    pub fn truncate_wal_store_before(&self, lsn: Lsn) {
        if let Some(active) = self.wal_source.lock().as_ref() {
            active.receiver.truncate_store_before(lsn);
        }
    }

    /// The human name given at creation, if any.
    pub fn branch_name(&self) -> Option<String> {
        self.branch_name.clone()
    }

    /// Commit time samples.
    pub fn commit_times(&self) -> &Arc<CommitTimes> {
        &self.commit_times
    }

    /// Ingest counters.
    pub fn ingest_counters(&self) -> Arc<IngestCounters> {
        Arc::clone(&self.ingest_counters)
    }

    /// Logical size at the head ([`crate::storage_ops::logical_size_bytes`]),
    /// recomputed at most every [`LOGICAL_SIZE_MAX_AGE`] while the head
    /// moves: the computation reads every relation's size, and under steady
    /// writes it made each timeline info call cost milliseconds (a client
    /// polling `last_record_lsn` paid it every time). Exact once the head
    /// has stood still that long.
    fn logical_size_bytes(&self) -> Option<u64> {
        let head = self.last_record_lsn();
        if let Some(cached) = *self.logical_size.lock() {
            if cached.lsn == head || cached.computed.elapsed() < LOGICAL_SIZE_MAX_AGE {
                return Some(cached.bytes);
            }
        }
        let bytes = crate::storage_ops::logical_size_bytes(&self.storage, head).ok()?;
        *self.logical_size.lock() = Some(LogicalSize {
            lsn: head,
            bytes,
            computed: std::time::Instant::now(),
        });
        Some(bytes)
    }

    /// What the last uploaded (or downloaded) index makes durable in remote
    /// storage: the end of its WAL objects, or its `disk_consistent_lsn`
    /// without any; `None` if nothing was uploaded.
    pub fn remote_consistent_lsn(&self) -> Option<Lsn> {
        let lsn = self
            .remote_consistent_lsn
            .load(std::sync::atomic::Ordering::Relaxed);
        (lsn != 0).then_some(Lsn(lsn))
    }

    /// Records what the last uploaded index covers.
    pub fn set_remote_consistent_lsn(&self, lsn: Lsn) {
        self.remote_consistent_lsn
            .store(lsn.0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The `TimelineInfo` the API returns.
    pub fn info(&self) -> TimelineInfo {
        let ancestor = self.storage.ancestor();
        let prev = self.storage.prev_record_lsn();
        let source = self
            .wal_source
            .lock()
            .as_ref()
            .map(|active| (active.file.connstr.clone(), active.receiver.status()));
        TimelineInfo {
            tenant_id: self.tenant_id.to_string(),
            timeline_id: self.id().to_string(),
            ancestor_timeline_id: ancestor.map(|(id, _)| id.to_string()),
            ancestor_lsn: ancestor.map(|(_, lsn)| lsn),
            last_record_lsn: self.last_record_lsn(),
            prev_record_lsn: prev.is_valid().then_some(prev),
            disk_consistent_lsn: self.storage.disk_consistent_lsn(),
            remote_consistent_lsn: self.remote_consistent_lsn(),
            remote_consistent_lsn_visible: self.remote_consistent_lsn(),
            latest_gc_cutoff_lsn: self.storage.gc_cutoff(),
            initdb_lsn: self.storage.initdb_lsn(),
            current_logical_size: self.logical_size_bytes(),
            current_physical_size: Some(crate::storage_ops::physical_size_bytes(&self.storage)),
            wal_source_connstr: source.as_ref().map(|(connstr, _)| connstr.clone()),
            last_received_msg_lsn: source
                .as_ref()
                .and_then(|(_, status)| status.last_received_msg_lsn),
            last_received_msg_ts: source
                .as_ref()
                .and_then(|(_, status)| status.last_received_msg_ts),
            wal_receiver_error: source
                .as_ref()
                .and_then(|(_, status)| status.last_error.clone()),
            state: self.state_name().to_owned(),
            broken_reason: self.storage.broken_reason(),
            corruption_error: None,
            pg_version: self.storage.pg_version(),
            branch_name: self.branch_name(),
        }
    }
}

/// `TimelineInfo` of the management API (shared with the CLI).
pub use api_types::TimelineInfo;
