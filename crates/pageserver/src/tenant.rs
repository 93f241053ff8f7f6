//! One tenant: its settings, its timelines, and the operations on them
//! (create by bootstrap or branch, delete, load after restart).
//!
//! On disk a tenant is `<workdir>/tenants/<tenant_id>/` holding
//! `tenant.json` and `timelines/<timeline_id>/`. A timeline directory is
//! built under a temporary name and renamed into place only when complete, so
//! a crash mid-creation leaves nothing that a restart would mistake for a
//! timeline.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bootstrap;
use crate::config::PageServerConf;
use crate::durable::{self, DELETED_SUFFIX, TEMP_SUFFIX};
use crate::ids::{TenantId, TimelineId};
use crate::tenant_config::TenantConfig;
use crate::timeline::{Timeline, TimelineMetadata, TimelineState, PG_VERSION};

/// Name of the tenant's persisted settings file.
pub const TENANT_FILE: &str = "tenant.json";
/// Subdirectory holding the timelines.
pub const TIMELINES_DIR: &str = "timelines";

/// What is persisted about a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// The tenant's own setting overrides.
    pub config: TenantConfig,
    /// Attachment generation given at creation, if any.
    pub generation: Option<u32>,
}

/// Lifecycle of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantState {
    /// Serving.
    Active,
    /// Being deleted.
    Stopping,
    /// Could not be loaded.
    Broken {
        /// Why.
        reason: String,
    },
}

/// A request to create a timeline, as the API receives it (ids parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTimelineRequest {
    /// Id of the new timeline.
    pub new_timeline_id: TimelineId,
    /// Parent to branch from; `None` bootstraps with initdb.
    pub ancestor_timeline_id: Option<TimelineId>,
    /// Branch point; `None` means the parent's head.
    pub ancestor_start_lsn: Option<Lsn>,
    /// PostgreSQL major version; `None` means 15.
    pub pg_version: Option<u32>,
}

/// Why a timeline could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateTimelineError {
    /// The request is inconsistent or asks for something unsupported.
    #[error("{0}")]
    InvalidRequest(String),
    /// A timeline with that id exists with different parameters.
    #[error("timeline {0} already exists with different parameters")]
    Conflict(TimelineId),
    /// A creation of that id is still running.
    #[error("timeline {0} is still being created; retry later")]
    AlreadyCreating(TimelineId),
    /// The parent does not exist.
    #[error("ancestor timeline {0} not found")]
    AncestorNotFound(TimelineId),
    /// The parent is not serving (being deleted or broken).
    #[error("ancestor timeline {0} is not active")]
    AncestorNotActive(TimelineId),
    /// The branch point is outside the parent's readable history.
    #[error("invalid ancestor start LSN: {0}")]
    AncestorLsn(String),
    /// The tenant is not serving.
    #[error("tenant {0} is not active")]
    TenantNotActive(TenantId),
    /// The pageserver or tenant is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// Running initdb or importing its output failed.
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
    /// Writing the timeline to disk failed.
    #[error("cannot write timeline files: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a timeline could not be deleted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteTimelineError {
    /// No such timeline.
    #[error("timeline {0} not found")]
    NotFound(TimelineId),
    /// Branches still point at it.
    #[error("timeline {timeline_id} has child timelines: {children:?}")]
    HasChildren {
        /// The timeline.
        timeline_id: TimelineId,
        /// Its children.
        children: Vec<TimelineId>,
    },
    /// It is being created or already being deleted.
    #[error("timeline {0} is being created or deleted; retry later")]
    InProgress(TimelineId),
    /// Removing its files failed.
    #[error("cannot remove timeline files: {0}")]
    Io(#[from] std::io::Error),
}

/// A tenant loaded in memory.
#[derive(Debug)]
pub struct Tenant {
    id: TenantId,
    dir: PathBuf,
    conf: Arc<PageServerConf>,
    file: Mutex<TenantFile>,
    state: Mutex<TenantState>,
    timelines: Mutex<BTreeMap<TimelineId, Arc<Timeline>>>,
    /// Creations under way, with their parameters, so that a repeated
    /// request can be told apart from a conflicting one.
    creating: Mutex<HashMap<TimelineId, CreateTimelineRequest>>,
    cancel: CancellationToken,
}

/// Removes a timeline id from the "being created" set when creation ends,
/// however it ends (success, error, or the task being dropped).
struct CreatingGuard {
    tenant: Arc<Tenant>,
    timeline_id: TimelineId,
}

impl Drop for CreatingGuard {
    fn drop(&mut self) {
        self.tenant.creating.lock().remove(&self.timeline_id);
    }
}

impl Tenant {
    /// Wraps a tenant whose directory exists; timelines are added by `load`.
    pub fn new(
        id: TenantId,
        dir: PathBuf,
        conf: Arc<PageServerConf>,
        file: TenantFile,
        cancel: CancellationToken,
    ) -> Tenant {
        Tenant {
            id,
            dir,
            conf,
            file: Mutex::new(file),
            state: Mutex::new(TenantState::Active),
            timelines: Mutex::new(BTreeMap::new()),
            creating: Mutex::new(HashMap::new()),
            cancel,
        }
    }

    /// A tenant that failed to load; it is listed so operators can see why.
    pub fn broken(id: TenantId, dir: PathBuf, conf: Arc<PageServerConf>, reason: String) -> Tenant {
        let tenant = Tenant::new(
            id,
            dir,
            conf,
            TenantFile::default(),
            CancellationToken::new(),
        );
        tenant.set_state(TenantState::Broken { reason });
        tenant
    }

    /// The tenant id.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its current state.
    pub fn state(&self) -> TenantState {
        self.state.lock().clone()
    }

    /// Changes its state.
    pub fn set_state(&self, state: TenantState) {
        *self.state.lock() = state;
    }

    /// Cancelled when the tenant is deleted or the pageserver stops.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The tenant's own setting overrides.
    pub fn config(&self) -> TenantConfig {
        self.file.lock().config.clone()
    }

    /// Settings in force: own overrides, then pageserver defaults, then built-ins.
    pub fn effective_config(&self) -> TenantConfig {
        self.config()
            .or(&self.conf.tenant_config)
            .or(&TenantConfig::builtin_defaults())
    }

    /// Generation number given at creation.
    pub fn generation(&self) -> Option<u32> {
        self.file.lock().generation
    }

    /// Replaces the tenant's overrides and persists them.
    pub fn set_config(&self, config: TenantConfig) -> std::io::Result<()> {
        let mut file = self.file.lock();
        let updated = TenantFile {
            config,
            generation: file.generation,
        };
        write_tenant_file(&self.dir, &updated)?;
        *file = updated;
        Ok(())
    }

    /// Number of timeline creations still running.
    pub fn creations_in_progress(&self) -> usize {
        self.creating.lock().len()
    }

    /// All timelines, ordered by id.
    pub fn timelines(&self) -> Vec<Arc<Timeline>> {
        self.timelines.lock().values().cloned().collect()
    }

    /// One timeline.
    pub fn timeline(&self, id: TimelineId) -> Option<Arc<Timeline>> {
        self.timelines.lock().get(&id).cloned()
    }

    /// Bytes of files under the tenant directory.
    pub fn physical_size_bytes(&self) -> u64 {
        durable::directory_size_bytes(&self.dir)
    }

    fn timelines_dir(&self) -> PathBuf {
        self.dir.join(TIMELINES_DIR)
    }

    /// Loads every complete timeline from disk, dropping leftovers of
    /// interrupted creations and deletions.
    pub fn load_timelines(&self) -> std::io::Result<()> {
        let dir = self.timelines_dir();
        std::fs::create_dir_all(&dir)?;
        let mut loaded = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMP_SUFFIX) || name.ends_with(DELETED_SUFFIX) {
                tracing::info!(tenant_id = %self.id, leftover = %name, "removing leftover directory");
                std::fs::remove_dir_all(entry.path())?;
                continue;
            }
            let Ok(timeline_id) = name.parse::<TimelineId>() else {
                tracing::warn!(tenant_id = %self.id, entry = %name, "ignoring unexpected entry");
                continue;
            };
            let metadata = TimelineMetadata::load(&entry.path())?;
            let timeline = Timeline::new(self.id, entry.path(), metadata);
            loaded.insert(timeline_id, Arc::new(timeline));
        }
        // A branch whose parent is missing cannot serve reads below its
        // branch point: keep it visible, but broken.
        for timeline in loaded.values() {
            if let Some(ancestor) = timeline.ancestor_timeline_id() {
                if !loaded.contains_key(&ancestor) {
                    timeline.set_state(TimelineState::Broken {
                        reason: format!("ancestor timeline {ancestor} is missing"),
                    });
                }
            }
        }
        *self.timelines.lock() = loaded;
        Ok(())
    }

    /// Creates a timeline, or returns the existing one when an identical
    /// request already succeeded. The bool says whether it was created now.
    pub async fn create_timeline(
        self: &Arc<Self>,
        request: CreateTimelineRequest,
    ) -> Result<(Arc<Timeline>, bool), CreateTimelineError> {
        if let Some(version) = request.pg_version {
            if version != PG_VERSION {
                return Err(CreateTimelineError::InvalidRequest(format!(
                    "unsupported pg_version {version}: this pageserver serves PostgreSQL {PG_VERSION} only"
                )));
            }
        }
        if request.ancestor_start_lsn.is_some() && request.ancestor_timeline_id.is_none() {
            return Err(CreateTimelineError::InvalidRequest(
                "ancestor_start_lsn given without ancestor_timeline_id".to_owned(),
            ));
        }
        let guard = match self.begin_creation(&request)? {
            Begin::Existing(timeline) => return Ok((timeline, false)),
            Begin::New(guard) => guard,
        };
        // The work runs in its own task: if the HTTP client goes away, the
        // creation still finishes (or fails) and releases its slot.
        let tenant = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _guard = guard;
            tenant.build_timeline(request).await
        });
        match task.await {
            Ok(result) => result.map(|timeline| (timeline, true)),
            Err(join_error) => Err(CreateTimelineError::Bootstrap(format!(
                "creation task failed: {join_error}"
            ))),
        }
    }

    fn begin_creation(
        self: &Arc<Self>,
        request: &CreateTimelineRequest,
    ) -> Result<Begin, CreateTimelineError> {
        if self.cancel.is_cancelled() {
            return Err(CreateTimelineError::ShuttingDown);
        }
        if self.state() != TenantState::Active {
            return Err(CreateTimelineError::TenantNotActive(self.id));
        }
        let timelines = self.timelines.lock();
        let mut creating = self.creating.lock();
        let id = request.new_timeline_id;
        if let Some(existing) = timelines.get(&id) {
            return if same_parameters(existing.metadata(), request) {
                Ok(Begin::Existing(Arc::clone(existing)))
            } else {
                Err(CreateTimelineError::Conflict(id))
            };
        }
        if creating.contains_key(&id) {
            return Err(CreateTimelineError::AlreadyCreating(id));
        }
        if let Some(ancestor_id) = request.ancestor_timeline_id {
            let ancestor = timelines
                .get(&ancestor_id)
                .ok_or(CreateTimelineError::AncestorNotFound(ancestor_id))?;
            if ancestor.state() != TimelineState::Active {
                return Err(CreateTimelineError::AncestorNotActive(ancestor_id));
            }
            if let Some(lsn) = request.ancestor_start_lsn {
                check_branch_point(ancestor, lsn)?;
            }
        }
        creating.insert(id, request.clone());
        Ok(Begin::New(CreatingGuard {
            tenant: Arc::clone(self),
            timeline_id: id,
        }))
    }

    /// Does the actual work of a creation that `begin_creation` admitted.
    async fn build_timeline(
        self: &Arc<Self>,
        request: CreateTimelineRequest,
    ) -> Result<Arc<Timeline>, CreateTimelineError> {
        let id = request.new_timeline_id;
        let final_dir = self.timelines_dir().join(id.to_string());
        let temp_dir = self.timelines_dir().join(format!("{id}.{TEMP_SUFFIX}"));
        if temp_dir.exists() {
            std::fs::remove_dir_all(&temp_dir)?;
        }
        std::fs::create_dir_all(&temp_dir)?;
        let metadata = match request.ancestor_timeline_id {
            Some(ancestor_id) => self.prepare_branch(&request, ancestor_id)?,
            None => self.prepare_bootstrap(&request, &temp_dir).await?,
        };
        metadata.store(&temp_dir)?;
        if self.cancel.is_cancelled() {
            std::fs::remove_dir_all(&temp_dir)?;
            return Err(CreateTimelineError::ShuttingDown);
        }
        std::fs::rename(&temp_dir, &final_dir)?;
        durable::sync_dir(&self.timelines_dir())?;
        let timeline = Arc::new(Timeline::new(self.id, final_dir, metadata));
        self.timelines.lock().insert(id, Arc::clone(&timeline));
        tracing::info!(tenant_id = %self.id, timeline_id = %id, "timeline created");
        Ok(timeline)
    }

    fn prepare_branch(
        &self,
        request: &CreateTimelineRequest,
        ancestor_id: TimelineId,
    ) -> Result<TimelineMetadata, CreateTimelineError> {
        let ancestor = self
            .timeline(ancestor_id)
            .ok_or(CreateTimelineError::AncestorNotFound(ancestor_id))?;
        let branch_lsn = match request.ancestor_start_lsn {
            Some(lsn) => {
                check_branch_point(&ancestor, lsn)?;
                lsn
            }
            None => ancestor.last_record_lsn(),
        };
        Ok(TimelineMetadata {
            timeline_id: request.new_timeline_id,
            ancestor_timeline_id: Some(ancestor_id),
            ancestor_lsn: Some(branch_lsn),
            pg_version: PG_VERSION,
            initdb_lsn: branch_lsn,
        })
    }

    async fn prepare_bootstrap(
        &self,
        request: &CreateTimelineRequest,
        _timeline_dir: &Path,
    ) -> Result<TimelineMetadata, CreateTimelineError> {
        let pg_bin_dir = self.conf.pg_bin_dir.clone();
        let os_user = self.conf.pg_os_user.clone();
        let cancel = self.cancel.clone();
        let work =
            tokio::task::spawn_blocking(move || bootstrap::run_initdb(&pg_bin_dir, &os_user));
        let cluster = tokio::select! {
            result = work => result
                .map_err(|error| CreateTimelineError::Bootstrap(error.to_string()))?
                .map_err(|error| CreateTimelineError::Bootstrap(error.to_string()))?,
            () = cancel.cancelled() => return Err(CreateTimelineError::ShuttingDown),
        };
        let initdb_lsn = read_checkpoint_lsn(&cluster.pgdata())?;
        Ok(TimelineMetadata {
            timeline_id: request.new_timeline_id,
            ancestor_timeline_id: None,
            ancestor_lsn: None,
            pg_version: PG_VERSION,
            initdb_lsn,
        })
    }

    /// Deletes a timeline that has no children.
    pub fn delete_timeline(&self, id: TimelineId) -> Result<(), DeleteTimelineError> {
        let timeline = {
            let mut timelines = self.timelines.lock();
            let creating = self.creating.lock();
            let Some(timeline) = timelines.get(&id).cloned() else {
                return Err(if creating.contains_key(&id) {
                    DeleteTimelineError::InProgress(id)
                } else {
                    DeleteTimelineError::NotFound(id)
                });
            };
            let mut children: Vec<TimelineId> = timelines
                .values()
                .filter(|other| other.ancestor_timeline_id() == Some(id))
                .map(|other| other.id())
                .collect();
            children.extend(
                creating
                    .values()
                    .filter(|pending| pending.ancestor_timeline_id == Some(id))
                    .map(|pending| pending.new_timeline_id),
            );
            if !children.is_empty() {
                return Err(DeleteTimelineError::HasChildren {
                    timeline_id: id,
                    children,
                });
            }
            timeline.set_state(TimelineState::Stopping);
            timelines.remove(&id);
            timeline
        };
        // Rename first so that a crash mid-removal leaves a directory that
        // startup recognises as garbage rather than a half-deleted timeline.
        let doomed = self.timelines_dir().join(format!("{id}.{DELETED_SUFFIX}"));
        std::fs::rename(timeline.dir(), &doomed)?;
        durable::sync_dir(&self.timelines_dir())?;
        std::fs::remove_dir_all(&doomed)?;
        tracing::info!(tenant_id = %self.id, timeline_id = %id, "timeline deleted");
        Ok(())
    }
}

enum Begin {
    Existing(Arc<Timeline>),
    New(CreatingGuard),
}

fn same_parameters(existing: &TimelineMetadata, request: &CreateTimelineRequest) -> bool {
    existing.ancestor_timeline_id == request.ancestor_timeline_id
        && request
            .ancestor_start_lsn
            .is_none_or(|lsn| Some(lsn) == existing.ancestor_lsn)
        && request.pg_version.unwrap_or(PG_VERSION) == existing.pg_version
}

/// A branch point must lie within the parent's readable history.
fn check_branch_point(ancestor: &Timeline, lsn: Lsn) -> Result<(), CreateTimelineError> {
    let info = ancestor.info();
    if lsn > info.last_record_lsn {
        return Err(CreateTimelineError::AncestorLsn(format!(
            "{lsn} is beyond the ancestor's last record LSN {}",
            info.last_record_lsn
        )));
    }
    if lsn < info.latest_gc_cutoff_lsn {
        return Err(CreateTimelineError::AncestorLsn(format!(
            "{lsn} is below the ancestor's GC cutoff {}",
            info.latest_gc_cutoff_lsn
        )));
    }
    if lsn < info.initdb_lsn {
        return Err(CreateTimelineError::AncestorLsn(format!(
            "{lsn} is before the ancestor's history starts at {}",
            info.initdb_lsn
        )));
    }
    Ok(())
}

/// Reads the latest checkpoint location from `global/pg_control` (the
/// `checkPoint` field, bytes 32..40, little-endian on every platform we run).
fn read_checkpoint_lsn(pgdata: &Path) -> Result<Lsn, CreateTimelineError> {
    let bytes = std::fs::read(pgdata.join("global/pg_control"))?;
    let field: [u8; 8] = bytes
        .get(32..40)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(|| CreateTimelineError::Bootstrap("pg_control is too short".to_owned()))?;
    Ok(Lsn(u64::from_le_bytes(field)))
}

/// Writes `tenant.json` durably.
pub fn write_tenant_file(dir: &Path, file: &TenantFile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    durable::write_file(&dir.join(TENANT_FILE), &bytes)
}

/// Reads `tenant.json`.
pub fn read_tenant_file(dir: &Path) -> std::io::Result<TenantFile> {
    let bytes = std::fs::read(dir.join(TENANT_FILE))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}
