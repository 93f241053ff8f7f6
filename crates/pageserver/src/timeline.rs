//! One timeline as the pageserver serves it: its identity and ancestry
//! (persisted in `timeline.json` next to the storage files) and the live
//! state the management API reports as `TimelineInfo`.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::ids::{TenantId, TimelineId};

/// Name of the metadata file inside a timeline directory.
pub const TIMELINE_METADATA_FILE: &str = "timeline.json";
/// The only PostgreSQL major version this pageserver serves.
pub const PG_VERSION: u32 = 15;

/// What is persisted about a timeline: fixed at creation, never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineMetadata {
    /// The timeline.
    pub timeline_id: TimelineId,
    /// Parent timeline, if this is a branch.
    pub ancestor_timeline_id: Option<TimelineId>,
    /// Branch point on the parent.
    pub ancestor_lsn: Option<Lsn>,
    /// PostgreSQL major version of the data.
    pub pg_version: u32,
    /// End of the initdb checkpoint (bootstrap) or the branch point (branch).
    pub initdb_lsn: Lsn,
}

impl TimelineMetadata {
    /// Reads `timeline.json` from a timeline directory.
    pub fn load(dir: &Path) -> std::io::Result<TimelineMetadata> {
        let bytes = std::fs::read(dir.join(TIMELINE_METADATA_FILE))?;
        serde_json::from_slice(&bytes)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
    }

    /// Writes `timeline.json` durably.
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        durable::write_file(&dir.join(TIMELINE_METADATA_FILE), &bytes)
    }
}

/// Lifecycle of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TimelineState {
    /// Serving reads.
    Active,
    /// Being deleted.
    Stopping,
    /// Could not be loaded; the reason is kept for the API.
    Broken {
        /// Why.
        reason: String,
    },
}

impl TimelineState {
    /// The name the API reports.
    pub fn name(&self) -> &'static str {
        match self {
            TimelineState::Active => "Active",
            TimelineState::Stopping => "Stopping",
            TimelineState::Broken { .. } => "Broken",
        }
    }
}

/// A timeline loaded in memory.
#[derive(Debug)]
pub struct Timeline {
    tenant_id: TenantId,
    dir: PathBuf,
    metadata: TimelineMetadata,
    state: Mutex<TimelineState>,
}

impl Timeline {
    /// Wraps a timeline whose directory and metadata exist.
    pub fn new(tenant_id: TenantId, dir: PathBuf, metadata: TimelineMetadata) -> Timeline {
        Timeline {
            tenant_id,
            dir,
            metadata,
            state: Mutex::new(TimelineState::Active),
        }
    }

    /// The timeline id.
    pub fn id(&self) -> TimelineId {
        self.metadata.timeline_id
    }

    /// The tenant it belongs to.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Persisted identity and ancestry.
    pub fn metadata(&self) -> &TimelineMetadata {
        &self.metadata
    }

    /// Parent timeline id, if this is a branch.
    pub fn ancestor_timeline_id(&self) -> Option<TimelineId> {
        self.metadata.ancestor_timeline_id
    }

    /// Current state.
    pub fn state(&self) -> TimelineState {
        self.state.lock().clone()
    }

    /// Changes the state.
    pub fn set_state(&self, state: TimelineState) {
        *self.state.lock() = state;
    }

    /// Bytes of files under the timeline directory.
    pub fn physical_size_bytes(&self) -> u64 {
        durable::directory_size_bytes(&self.dir)
    }

    /// Last LSN that is fully ingested.
    pub fn last_record_lsn(&self) -> Lsn {
        self.metadata.initdb_lsn
    }

    /// The `TimelineInfo` the API returns.
    pub fn info(&self) -> TimelineInfo {
        let last_record_lsn = self.last_record_lsn();
        TimelineInfo {
            tenant_id: self.tenant_id,
            timeline_id: self.id(),
            ancestor_timeline_id: self.metadata.ancestor_timeline_id,
            ancestor_lsn: self.metadata.ancestor_lsn,
            last_record_lsn,
            prev_record_lsn: None,
            disk_consistent_lsn: last_record_lsn,
            remote_consistent_lsn: last_record_lsn,
            remote_consistent_lsn_visible: last_record_lsn,
            latest_gc_cutoff_lsn: Lsn::INVALID,
            initdb_lsn: self.metadata.initdb_lsn,
            current_logical_size: None,
            current_physical_size: Some(self.physical_size_bytes()),
            wal_source_connstr: None,
            last_received_msg_lsn: None,
            last_received_msg_ts: None,
            state: self.state().name().to_owned(),
            pg_version: self.metadata.pg_version,
        }
    }
}

/// `TimelineInfo` of the management API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineInfo {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The timeline.
    pub timeline_id: TimelineId,
    /// Parent, for branches.
    pub ancestor_timeline_id: Option<TimelineId>,
    /// Branch point on the parent.
    pub ancestor_lsn: Option<Lsn>,
    /// Last ingested record's end.
    pub last_record_lsn: Lsn,
    /// Start of the last ingested record.
    pub prev_record_lsn: Option<Lsn>,
    /// Everything up to here is on local disk.
    pub disk_consistent_lsn: Lsn,
    /// Everything up to here is in remote storage.
    pub remote_consistent_lsn: Lsn,
    /// Remote-consistent LSN as visible to readers of remote storage.
    pub remote_consistent_lsn_visible: Lsn,
    /// Reads and branches below this LSN are refused.
    pub latest_gc_cutoff_lsn: Lsn,
    /// Where the timeline's history starts.
    pub initdb_lsn: Lsn,
    /// Sum of relation sizes at the head, in bytes.
    pub current_logical_size: Option<u64>,
    /// Bytes of layer files on local disk.
    pub current_physical_size: Option<u64>,
    /// WAL receiver source, when streaming.
    pub wal_source_connstr: Option<String>,
    /// LSN of the last WAL message received.
    pub last_received_msg_lsn: Option<Lsn>,
    /// Time (microseconds since the epoch) of the last WAL message received.
    pub last_received_msg_ts: Option<u64>,
    /// `Active`, `Stopping` or `Broken`.
    pub state: String,
    /// PostgreSQL major version.
    pub pg_version: u32,
}
