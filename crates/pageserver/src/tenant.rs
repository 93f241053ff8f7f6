//! One tenant: its settings, its timelines, and the operations on them
//! (create by bootstrap or branch, delete, load after restart).
//!
//! On disk a tenant is `<workdir>/tenants/<tenant_id>/` holding
//! `tenant.json` (its settings) and the storage repository
//! (`timelines/<timeline_id>/`, owned by the `storage` crate). Root
//! timelines are bootstrapped by `datadir::bootstrap` (stock initdb, then
//! import); a bootstrap interrupted by a crash leaves a timeline with nothing
//! on disk, which the next load removes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use postgres_wal::Lsn;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub mod attach;
mod deletion;
pub mod endpoints;
pub mod eviction;
pub mod ondemand;
pub mod remote_wal;
pub mod upload;

use crate::config::PageServerConf;
use crate::ids::{TenantId, TimelineId};
use crate::tenant_config::TenantConfig;
use crate::timeline::{Timeline, PG_VERSION};

/// How long a branch request waits for a branch point just past the head
/// of a streaming parent.
const BRANCH_POINT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Name of the tenant's persisted settings file.
pub const TENANT_FILE: &str = "tenant.json";

/// What is persisted about a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// The tenant's own setting overrides.
    pub config: TenantConfig,
    /// Attachment generation given at creation, if any.
    pub generation: Option<u32>,
    /// `location_config` `AttachedStale`: uploads and deletions stay
    /// stopped across restarts. Written only when set, so a file of an
    /// attached tenant in any other mode reads as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attached_stale: bool,
}

/// Lifecycle of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantState {
    /// Serving.
    Active,
    /// Being attached from remote storage (`attachment_status` `maybe`).
    Attaching,
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
    /// Human name ([`crate::branch_names`]), unique within the tenant.
    pub branch_name: Option<String>,
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
    /// Another timeline of the tenant has (or is being created with) the
    /// branch name.
    #[error("branch name {name:?} is already timeline {existing} of this tenant{}", if *.creating { " (still being created)" } else { "" })]
    NameTaken {
        /// The name asked for.
        name: String,
        /// The timeline that has it.
        existing: TimelineId,
        /// Whether that timeline is still being created.
        creating: bool,
    },
    /// The timeline exists under another name (or none): re-creating it
    /// does not rename it.
    #[error("timeline {timeline_id} already exists {}", match .existing { Some(name) => format!("as branch {name:?}"), None => "without a branch name".to_owned() })]
    Renaming {
        /// The timeline.
        timeline_id: TimelineId,
        /// Its current name.
        existing: Option<String>,
    },
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
    /// The storage layer failed.
    #[error("storage error: {0}")]
    Storage(#[from] storage::RepositoryError),
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
    /// The storage layer failed.
    #[error("storage error: {0}")]
    Storage(storage::RepositoryError),
}

/// Why a GC run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// No such timeline.
    #[error("timeline {0} not found")]
    NotFound(TimelineId),
    /// The tenant's retention settings are unusable.
    #[error("{0}")]
    Config(String),
    /// Moving the timeline's GC cutoff failed.
    #[error("garbage collection failed moving the cutoff: {0}")]
    Cutoff(#[source] storage::WriteError),
    /// Deleting the layer files below the cutoff failed.
    #[error("garbage collection failed: {0}")]
    Storage(#[source] storage::RepositoryError),
}

/// What one GC run of a timeline did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// The GC cutoff after the run.
    pub cutoff: Lsn,
    /// Layer files deleted.
    pub layers_removed: Vec<storage::LayerDesc>,
    /// Layer files kept.
    pub layers_kept: usize,
    /// Bytes of the deleted files.
    pub bytes_removed: u64,
}

/// A tenant loaded in memory.
#[derive(Debug)]
pub struct Tenant {
    id: TenantId,
    dir: PathBuf,
    conf: Arc<PageServerConf>,
    file: Mutex<TenantFile>,
    state: Mutex<TenantState>,
    /// The storage repository; `None` until loaded (and for broken tenants).
    repo: Mutex<Option<Arc<storage::Repository>>>,
    timelines: Mutex<BTreeMap<TimelineId, Arc<Timeline>>>,
    /// Creations under way, with their parameters, so that a repeated
    /// request can be told apart from a conflicting one.
    creating: Mutex<HashMap<TimelineId, CreateTimelineRequest>>,
    cancel: CancellationToken,
    /// Background compaction or GC passes running now (deletion waits for
    /// them so none writes into a directory being removed).
    background_passes: Arc<std::sync::atomic::AtomicUsize>,
    /// The tenant's background task (flushes, materialising, compaction,
    /// GC); deletion awaits it after cancelling, so no flush it started
    /// writes into a directory being removed.
    background_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The remote side (uploads, generation), when remote storage is on.
    remote: Mutex<Option<Arc<upload::RemoteTenant>>>,
    /// File I/O of the storage: evicts layers, downloads them on demand.
    io: storage::io::OnDemandIo,
    /// Where evicted layers come back from.
    downloader: Arc<ondemand::RemoteLayerDownloader>,
    /// Endpoints the CLI registered ([`endpoints`]).
    endpoints: endpoints::EndpointRegistry,
}

/// Counts a background pass as running while it lives.
#[derive(Debug)]
pub struct BackgroundPassGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BackgroundPassGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
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
        let downloader = Arc::new(ondemand::RemoteLayerDownloader::new(id));
        let io = storage::io::OnDemandIo::new(Arc::new(storage::io::StdFileIo), downloader.clone());
        Tenant {
            id,
            endpoints: endpoints::EndpointRegistry::new(&dir),
            dir,
            conf,
            file: Mutex::new(file),
            state: Mutex::new(TenantState::Active),
            repo: Mutex::new(None),
            timelines: Mutex::new(BTreeMap::new()),
            creating: Mutex::new(HashMap::new()),
            cancel,
            background_passes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            background_tasks: Mutex::new(Vec::new()),
            remote: Mutex::new(None),
            io,
            downloader,
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

    /// The remote side of the tenant, if remote storage is on.
    pub fn remote(&self) -> Option<Arc<upload::RemoteTenant>> {
        self.remote.lock().clone()
    }

    /// The storage's file I/O (eviction, download counters).
    pub fn on_demand_io(&self) -> &storage::io::OnDemandIo {
        &self.io
    }

    /// Where evicted layers are downloaded from.
    pub fn downloader(&self) -> &ondemand::RemoteLayerDownloader {
        &self.downloader
    }

    /// The endpoints registered with the tenant.
    pub fn endpoints(&self) -> &endpoints::EndpointRegistry {
        &self.endpoints
    }

    /// Sets the remote side (at load, attach, or a generation change).
    pub fn set_remote(&self, remote: Option<Arc<upload::RemoteTenant>>) {
        *self.remote.lock() = remote;
    }

    /// Changes the attachment generation and persists it.
    pub fn set_generation(&self, generation: Option<u32>) -> std::io::Result<()> {
        let mut file = self.file.lock();
        let updated = TenantFile {
            config: file.config.clone(),
            generation,
            attached_stale: file.attached_stale,
        };
        write_tenant_file(&self.dir, &updated)?;
        *file = updated;
        Ok(())
    }

    /// Replaces the tenant's overrides and persists them.
    pub fn set_config(&self, config: TenantConfig) -> std::io::Result<()> {
        let mut file = self.file.lock();
        let updated = TenantFile {
            config,
            generation: file.generation,
            attached_stale: file.attached_stale,
        };
        write_tenant_file(&self.dir, &updated)?;
        *file = updated;
        Ok(())
    }

    /// Whether the location is `AttachedStale` (persisted).
    pub fn attached_stale(&self) -> bool {
        self.file.lock().attached_stale
    }

    /// Persists the `AttachedStale` mode (set or cleared) in `tenant.json`,
    /// so a restart keeps uploads and deletions stopped.
    pub fn set_attached_stale(&self, stale: bool) -> std::io::Result<()> {
        let mut file = self.file.lock();
        if file.attached_stale == stale {
            return Ok(());
        }
        let updated = TenantFile {
            attached_stale: stale,
            ..file.clone()
        };
        write_tenant_file(&self.dir, &updated)?;
        *file = updated;
        Ok(())
    }

    /// Marks a background pass as running until the guard drops.
    pub fn background_pass(&self) -> BackgroundPassGuard {
        self.background_passes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        BackgroundPassGuard(Arc::clone(&self.background_passes))
    }

    /// Keeps the handle of a background task of the tenant.
    pub fn add_background_task(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.background_tasks.lock();
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    /// Takes the handles of the background tasks (to await them once the
    /// tenant's token is cancelled).
    pub fn take_background_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *self.background_tasks.lock())
    }

    /// Waits until the tenant's background work has stopped (call after
    /// cancelling its token): the background task, which waits for the
    /// flush, materialising, compaction or GC pass it started, and any
    /// pass still counted. Afterwards nothing of it writes into the
    /// tenant's directory.
    pub async fn wait_background_stopped(&self) {
        for task in self.take_background_tasks() {
            let _ = task.await;
        }
        while self.background_passes_running() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Number of background passes running.
    pub fn background_passes_running(&self) -> usize {
        self.background_passes
            .load(std::sync::atomic::Ordering::SeqCst)
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
        fileio::directory_size_bytes(&self.dir)
    }

    /// The storage counters of the tenant's repository (none while it is
    /// not loaded).
    pub fn storage_stats(&self) -> Option<storage::StatsSnapshot> {
        self.repo
            .lock()
            .as_ref()
            .map(|repo| repo.stats().snapshot())
    }

    fn repo(&self) -> Result<Arc<storage::Repository>, CreateTimelineError> {
        self.repo
            .lock()
            .clone()
            .ok_or(CreateTimelineError::TenantNotActive(self.id))
    }

    /// Stops every timeline (waiters get `ShuttingDown`).
    pub fn shutdown(&self) {
        self.cancel.cancel();
        if let Some(repo) = self.repo.lock().as_ref() {
            repo.shutdown();
        }
    }

    /// Restarts the WAL receivers of timelines that had a WAL source when
    /// the pageserver stopped. A source that cannot be resumed is logged and
    /// left persisted: the next restart tries again.
    pub fn resume_wal_sources(&self) {
        for timeline in self.timelines() {
            let resumed = crate::wal_source::resume(
                &self.dir,
                &timeline,
                self.cancel.clone(),
                self.receiver_settings(),
            );
            if let Err(error) = resumed {
                tracing::error!(tenant_id = %self.id, timeline_id = %timeline.id(), %error,
                    "cannot resume the WAL source");
            }
        }
    }

    /// How this tenant's WAL receivers connect and where their streaming
    /// threads run.
    pub fn receiver_settings(&self) -> crate::wal_source::ReceiverSettings {
        crate::wal_source::ReceiverSettings {
            connect_timeout: self.effective_config().connect_timeout(),
            placement: self.conf.wal_stream_cpus.clone(),
        }
    }

    /// Stops every WAL receiver (pageserver shutdown, tenant deletion). The
    /// sources stay persisted.
    pub async fn stop_wal_receivers(&self) {
        for timeline in self.timelines() {
            let _serial = timeline.wal_source_lock().lock().await;
            if let Some(active) = timeline.set_wal_source(None) {
                active.receiver.stop().await;
            }
        }
    }

    /// Opens the tenant's storage repository and loads its timelines.
    /// A root timeline whose bootstrap never completed (nothing on disk) is
    /// removed: its creation was interrupted and never acknowledged.
    pub fn load_timelines(&self) -> Result<(), storage::RepositoryError> {
        // Native redo turns stored WAL records into pages; the built-in redo
        // only knows images and derived operations.
        let repo = storage::Repository::open_with(
            &self.dir,
            storage::RepositoryConfig {
                // The background task freezes by the tenant's settings;
                // writers only guard memory between its ticks.
                freeze: crate::background::inline_freeze_policy(),
                ..storage::RepositoryConfig::default()
            },
            Arc::new(self.io.clone()),
            Arc::new(walingest::NativeRedo),
        )?;
        for timeline in repo.list_timelines() {
            if timeline.ancestor().is_none() && !timeline.disk_consistent_lsn().is_valid() {
                tracing::info!(tenant_id = %self.id, timeline_id = %timeline.id(), "removing interrupted bootstrap");
                repo.delete_timeline(timeline.id())?;
            }
        }
        let loaded = repo
            .list_timelines()
            .into_iter()
            .map(|t| (t.id(), Arc::new(Timeline::new(self.id, t))))
            .collect();
        *self.timelines.lock() = loaded;
        *self.repo.lock() = Some(Arc::new(repo));
        self.endpoints.load();
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
        self.wait_for_branch_point(&request).await;
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

    /// A branch point just past the head of a parent that is streaming WAL
    /// is usually WAL the endpoint has flushed and is sending right now (an
    /// LSN read from `pg_current_wal_lsn()` a moment ago): give it a few
    /// seconds to arrive. A point that does not arrive is refused afterwards
    /// as beyond the head.
    async fn wait_for_branch_point(&self, request: &CreateTimelineRequest) {
        let (Some(ancestor_id), Some(lsn)) =
            (request.ancestor_timeline_id, request.ancestor_start_lsn)
        else {
            return;
        };
        let Some(ancestor) = self.timeline(ancestor_id) else {
            return;
        };
        if lsn <= ancestor.last_record_lsn() || ancestor.wal_source_connstr().is_none() {
            return;
        }
        let wait = ancestor.storage().wait_lsn_async(lsn);
        if tokio::time::timeout(BRANCH_POINT_WAIT, wait).await.is_err() {
            tracing::info!(tenant_id = %self.id, %ancestor_id, %lsn,
                "branch point did not arrive from the WAL source in time");
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
        // Both maps stay locked until the new id is in `creating`: that
        // makes "is the id free, is the name free" and "take them" one step,
        // so two racing creations cannot both get a name.
        let timelines = self.timelines.lock();
        let mut creating = self.creating.lock();
        let id = request.new_timeline_id;
        if let Some(existing) = timelines.get(&id) {
            if !same_parameters(existing, request) {
                return Err(CreateTimelineError::Conflict(id));
            }
            let name = existing.branch_name();
            if request.branch_name.is_some() && request.branch_name != name {
                return Err(CreateTimelineError::Renaming {
                    timeline_id: id,
                    existing: name,
                });
            }
            return Ok(Begin::Existing(Arc::clone(existing)));
        }
        if creating.contains_key(&id) {
            return Err(CreateTimelineError::AlreadyCreating(id));
        }
        if let Some(name) = &request.branch_name {
            check_name_free(name, &timelines, &creating)?;
        }
        if let Some(ancestor_id) = request.ancestor_timeline_id {
            let ancestor = timelines
                .get(&ancestor_id)
                .ok_or(CreateTimelineError::AncestorNotFound(ancestor_id))?;
            if !ancestor.is_active() {
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
        let repo = self.repo()?;
        let tenant = Arc::clone(self);
        let cancel = self.cancel.clone();
        // Storage and initdb are blocking: run them off the async workers.
        let work = tokio::task::spawn_blocking(move || {
            // The name is on disk before the timeline exists, so the
            // timeline is never visible (to the API, to uploads) unnamed.
            tenant.write_branch_name(&request)?;
            let created = match request.ancestor_timeline_id {
                Some(ancestor_id) => tenant.branch(&repo, &request, ancestor_id),
                None => tenant.bootstrap(&repo, request.new_timeline_id),
            };
            if created.is_err() && request.branch_name.is_some() {
                // A leftover file would only name a timeline that does not
                // exist (names are read per loaded timeline), but tidy up.
                let _ = crate::branch_names::remove(&tenant.dir, request.new_timeline_id);
            }
            created
        });
        // The blocking work cannot be interrupted; waiting for it keeps this
        // creation counted as in progress, which tenant deletion waits out.
        let storage_timeline = work.await.map_err(|error| {
            CreateTimelineError::Bootstrap(format!("creation task failed: {error}"))
        })??;
        if cancel.is_cancelled() {
            return Err(CreateTimelineError::ShuttingDown);
        }
        let timeline = Arc::new(Timeline::new(self.id, storage_timeline));
        self.timelines
            .lock()
            .insert(timeline.id(), Arc::clone(&timeline));
        tracing::info!(tenant_id = %self.id, timeline_id = %timeline.id(), "timeline created");
        Ok(timeline)
    }

    fn write_branch_name(
        &self,
        request: &CreateTimelineRequest,
    ) -> Result<(), CreateTimelineError> {
        match &request.branch_name {
            Some(name) => crate::branch_names::write(&self.dir, request.new_timeline_id, name)
                .map_err(|error| {
                    CreateTimelineError::Bootstrap(format!("cannot save the branch name: {error}"))
                }),
            None => Ok(()),
        }
    }

    fn branch(
        &self,
        repo: &storage::Repository,
        request: &CreateTimelineRequest,
        ancestor_id: TimelineId,
    ) -> Result<Arc<storage::Timeline>, CreateTimelineError> {
        let ancestor = self
            .timeline(ancestor_id)
            .ok_or(CreateTimelineError::AncestorNotFound(ancestor_id))?;
        let lsn = match request.ancestor_start_lsn {
            Some(lsn) => {
                check_branch_point(&ancestor, lsn)?;
                lsn
            }
            None => ancestor.last_record_lsn(),
        };
        repo.branch_timeline(request.new_timeline_id, ancestor_id, lsn)
            .map_err(|error| match error {
                storage::RepositoryError::BranchBelowGcCutoff { .. }
                | storage::RepositoryError::BranchBeyondHead { .. } => {
                    CreateTimelineError::AncestorLsn(error.to_string())
                }
                storage::RepositoryError::TimelineNotFound(id) => {
                    CreateTimelineError::AncestorNotFound(id)
                }
                other => CreateTimelineError::Storage(other),
            })
    }

    /// Runs stock initdb, then imports its output as a new root timeline
    /// whose `initdb_lsn` is the cluster's checkpoint. (`datadir::bootstrap`
    /// does both in one call, but it needs the timeline before the LSN is
    /// known, leaving `initdb_lsn` unset; branch-point checks need it.)
    fn bootstrap(
        &self,
        repo: &storage::Repository,
        id: TimelineId,
    ) -> Result<Arc<storage::Timeline>, CreateTimelineError> {
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            CreateTimelineError::Bootstrap(format!("{what}: {error}"))
        };
        let scratch = tempfile::Builder::new()
            .prefix("sediment-initdb-")
            .tempdir()
            .map_err(|error| fail("cannot create a scratch directory", &error))?;
        datadir::bootstrap::give_to_postgres(scratch.path())
            .map_err(|error| fail("cannot prepare the scratch directory", &error))?;
        let pgdata = scratch.path().join("pgdata");
        datadir::run_initdb(&self.conf.pg_bin_dir, &pgdata)
            .map_err(|error| fail("initdb", &error))?;
        let control = std::fs::read(pgdata.join("global/pg_control"))
            .map_err(|error| fail("cannot read pg_control", &error))?;
        let control = postgres_wal::control::ControlFile::parse(&control)
            .map_err(|error| fail("bad pg_control", &error))?;
        self.import_into(repo, id, &pgdata, Lsn(control.checkpoint))
    }

    /// Imports a cleanly shut down PostgreSQL 15 data directory as a new
    /// root timeline (what bootstrap does with initdb's output; tools and
    /// benchmarks use it for larger clusters). The directory is only read.
    pub fn import_root_timeline(
        &self,
        id: TimelineId,
        pgdata: &Path,
    ) -> Result<Arc<Timeline>, CreateTimelineError> {
        let repo = self.repo()?;
        if self.timeline(id).is_some() || self.creating.lock().contains_key(&id) {
            return Err(CreateTimelineError::Conflict(id));
        }
        let control = std::fs::read(pgdata.join("global/pg_control")).map_err(|error| {
            CreateTimelineError::Bootstrap(format!("cannot read pg_control: {error}"))
        })?;
        let control = postgres_wal::control::ControlFile::parse(&control)
            .map_err(|error| CreateTimelineError::Bootstrap(format!("bad pg_control: {error}")))?;
        let storage_timeline = self.import_into(&repo, id, pgdata, Lsn(control.checkpoint))?;
        let timeline = Arc::new(Timeline::new(self.id, storage_timeline));
        self.timelines.lock().insert(id, Arc::clone(&timeline));
        Ok(timeline)
    }

    /// Creates root timeline `id` at `initdb_lsn` and imports `pgdata`;
    /// removes the timeline again if the import fails.
    fn import_into(
        &self,
        repo: &storage::Repository,
        id: TimelineId,
        pgdata: &Path,
        initdb_lsn: Lsn,
    ) -> Result<Arc<storage::Timeline>, CreateTimelineError> {
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            CreateTimelineError::Bootstrap(format!("{what}: {error}"))
        };
        let timeline = repo.create_timeline(id, PG_VERSION, initdb_lsn)?;
        match datadir::import_datadir(&timeline, pgdata) {
            Ok(stats) => {
                tracing::info!(tenant_id = %self.id, timeline_id = %id, lsn = %stats.lsn,
                    pages = stats.relation_pages, "initdb imported");
                Ok(timeline)
            }
            Err(error) => {
                drop(timeline);
                if let Err(cleanup) = repo.delete_timeline(id) {
                    tracing::warn!(tenant_id = %self.id, timeline_id = %id, %cleanup,
                        "cannot remove the failed bootstrap; the next restart will");
                }
                Err(fail("import", &error))
            }
        }
    }

    /// Garbage-collects a timeline now: moves its GC cutoff up to what the
    /// tenant's retention asks for (the older of `gc_horizon` bytes of WAL
    /// below the head and `pitr_interval` of commit time before `now`; never
    /// below a child's branch point, which storage keeps readable) and
    /// deletes the layer files no read at or above it needs.
    pub fn gc_timeline(
        &self,
        id: TimelineId,
        now: std::time::SystemTime,
    ) -> Result<GcReport, GcError> {
        let repo = self.repo.lock().clone().ok_or(GcError::NotFound(id))?;
        let timeline = self.timeline(id).ok_or(GcError::NotFound(id))?;
        let config = self.effective_config();
        let storage = timeline.storage();
        let head = storage.last_record_lsn();
        let by_horizon = Lsn(head.0.saturating_sub(config.gc_horizon.unwrap_or(0)));
        let pitr = match config.pitr_interval.as_deref() {
            Some(text) => humantime::parse_duration(text)
                .map_err(|error| GcError::Config(format!("pitr_interval {text:?}: {error}")))?,
            None => std::time::Duration::ZERO,
        };
        let keep_from = now
            .checked_sub(pitr)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MIN, |d| {
                i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
            });
        let by_time = match timeline.commit_times().lsn_for_time(keep_from, head) {
            crate::commit_times::LsnForTime::Present(lsn) => lsn,
            crate::commit_times::LsnForTime::Future => head,
            // Commits older than the window are not known: keep everything.
            crate::commit_times::LsnForTime::Past | crate::commit_times::LsnForTime::NoData => {
                Lsn::INVALID
            }
        };
        let cutoff = by_horizon.min(by_time).max(storage.gc_cutoff());
        if cutoff != storage.gc_cutoff() {
            storage.set_gc_cutoff(cutoff).map_err(GcError::Cutoff)?;
        }
        let result = repo.gc_timeline(id).map_err(GcError::Storage)?;
        let bytes_removed = result.bytes_removed;
        tracing::info!(tenant_id = %self.id, timeline_id = %id, %cutoff,
            removed = result.layers_removed.len(), kept = result.layers_kept, bytes_removed,
            "garbage collected");
        Ok(GcReport {
            cutoff: storage.gc_cutoff(),
            layers_removed: result.layers_removed,
            layers_kept: result.layers_kept,
            bytes_removed,
        })
    }

    /// Deletes a timeline that has no children.
    pub fn delete_timeline(&self, id: TimelineId) -> Result<(), DeleteTimelineError> {
        let repo = self
            .repo
            .lock()
            .clone()
            .ok_or(DeleteTimelineError::NotFound(id))?;
        {
            let timelines = self.timelines.lock();
            let creating = self.creating.lock();
            if !timelines.contains_key(&id) {
                return Err(if creating.contains_key(&id) {
                    DeleteTimelineError::InProgress(id)
                } else {
                    DeleteTimelineError::NotFound(id)
                });
            }
            // A branch still being created counts as a child too.
            let pending: Vec<TimelineId> = creating
                .values()
                .filter(|pending| pending.ancestor_timeline_id == Some(id))
                .map(|pending| pending.new_timeline_id)
                .collect();
            if !pending.is_empty() {
                return Err(DeleteTimelineError::HasChildren {
                    timeline_id: id,
                    children: pending,
                });
            }
        }
        repo.delete_timeline(id).map_err(|error| match error {
            storage::RepositoryError::HasChildren { timeline, children } => {
                DeleteTimelineError::HasChildren {
                    timeline_id: timeline,
                    children,
                }
            }
            storage::RepositoryError::TimelineNotFound(id) => DeleteTimelineError::NotFound(id),
            other => DeleteTimelineError::Storage(other),
        })?;
        if let Some(remote) = self.remote() {
            // Remote objects go after the local timeline; a failure leaves
            // garbage no index names, which the next tenant deletion removes.
            let tenant_id = self.id;
            tokio::runtime::Handle::current().spawn(async move {
                if let Err(error) = remote.delete_timeline(id).await {
                    tracing::warn!(%tenant_id, timeline_id = %id, %error,
                        "cannot delete the timeline's remote objects");
                }
            });
        }
        if let Some(timeline) = self.timelines.lock().remove(&id) {
            if let Err(error) = timeline.commit_times().remove() {
                tracing::warn!(tenant_id = %self.id, timeline_id = %id, %error,
                    "cannot remove the timeline's commit times");
            }
            if let Err(error) = crate::branch_names::remove(&self.dir, id) {
                tracing::warn!(tenant_id = %self.id, timeline_id = %id, %error,
                    "cannot remove the timeline's branch name");
            }
            if let Err(error) = self.endpoints.remove_timeline(id) {
                tracing::warn!(tenant_id = %self.id, timeline_id = %id, %error,
                    "cannot remove the timeline's endpoint registrations");
            }
        }
        tracing::info!(tenant_id = %self.id, timeline_id = %id, "timeline deleted");
        Ok(())
    }
}

enum Begin {
    Existing(Arc<Timeline>),
    New(CreatingGuard),
}

fn same_parameters(existing: &Timeline, request: &CreateTimelineRequest) -> bool {
    let ancestor = existing.storage().ancestor();
    ancestor.map(|(id, _)| id) == request.ancestor_timeline_id
        && request
            .ancestor_start_lsn
            .is_none_or(|lsn| Some(lsn) == ancestor.map(|(_, at)| at))
        && request.pg_version.unwrap_or(PG_VERSION) == existing.storage().pg_version()
}

/// A name is free when no timeline has it and no creation under way asks
/// for it.
fn check_name_free(
    name: &str,
    timelines: &BTreeMap<TimelineId, Arc<Timeline>>,
    creating: &HashMap<TimelineId, CreateTimelineRequest>,
) -> Result<(), CreateTimelineError> {
    let taken = |existing: TimelineId, creating: bool| CreateTimelineError::NameTaken {
        name: name.to_owned(),
        existing,
        creating,
    };
    if let Some(timeline) = timelines
        .values()
        .find(|t| t.branch_name().as_deref() == Some(name))
    {
        return Err(taken(timeline.id(), false));
    }
    if let Some(pending) = creating
        .values()
        .find(|pending| pending.branch_name.as_deref() == Some(name))
    {
        return Err(taken(pending.new_timeline_id, true));
    }
    Ok(())
}

/// A branch point must lie within the parent's readable history.
fn check_branch_point(ancestor: &Timeline, lsn: Lsn) -> Result<(), CreateTimelineError> {
    let storage = ancestor.storage();
    let last_record_lsn = storage.last_record_lsn();
    if lsn > last_record_lsn {
        return Err(CreateTimelineError::AncestorLsn(format!(
            "{lsn} is beyond the ancestor's last record LSN {last_record_lsn}: no WAL up to there has reached the pageserver"
        )));
    }
    let gc_cutoff = storage.gc_cutoff();
    if lsn < gc_cutoff {
        return Err(CreateTimelineError::AncestorLsn(format!(
            "{lsn} is below the ancestor's GC cutoff {gc_cutoff}"
        )));
    }
    // Storage would accept a branch point below a root's initdb LSN (its GC
    // cutoff starts at 0/0), but there is no data there to read.
    let history_start = storage
        .ancestor()
        .map_or(storage.initdb_lsn(), |(_, at)| at);
    if lsn < history_start {
        return Err(CreateTimelineError::AncestorLsn(format!(
            "{lsn} is before the ancestor's history starts at {history_start}"
        )));
    }
    Ok(())
}

/// Writes `tenant.json` durably.
pub fn write_tenant_file(dir: &Path, file: &TenantFile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    fileio::replace_file(&dir.join(TENANT_FILE), &bytes)
}

/// Reads `tenant.json`.
pub fn read_tenant_file(dir: &Path) -> std::io::Result<TenantFile> {
    let bytes = std::fs::read(dir.join(TENANT_FILE))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}
