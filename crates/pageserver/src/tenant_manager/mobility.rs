//! Tenant mobility: attach from remote storage, detach, ignore, load, and
//! `location_config`, the declarative form of all of them.
//!
//! Attach follows the `attachment_status` contract (spec, seed `001`): the
//! fast checks (is remote storage on, is a generation given, does the
//! remote have the tenant, is the generation stale) and the write of our
//! generation marker happen before the API answers 202; the download of
//! the indexes (layers stay remote until read: a lazy attach) runs
//! in the background with the tenant listed as `Attaching` (status
//! `maybe`), and ends `Active` (`attached`) or `Broken` (`failed`, with a
//! reason). The download goes to a temporary directory renamed into place
//! when complete, so a crash mid-attach leaves nothing that loads as a
//! tenant; the client's retry of `/attach` starts over.

use std::sync::Arc;
use std::time::Duration;

use remote_storage::{Generation, IndexPart};

use super::{TenantError, TenantManager, IGNORED_MARK};
use crate::ids::{TenantId, TimelineId};
use crate::tenant::attach::{self, AttachError};
use crate::tenant::upload::{self, RemoteTenant};
use crate::tenant::{self as tenant_mod, Tenant, TenantFile, TenantState};
use crate::tenant_config::TenantConfig;
use crate::tenant_manager::secondary;
use fileio::{DELETED_SUFFIX, TEMP_SUFFIX};

/// `mode` of a `location_config` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationMode {
    /// Attached, the only attachment.
    AttachedSingle,
    /// Attached while another pageserver may be too (a migration).
    AttachedMulti,
    /// Attached but superseded: serves reads, no uploads or deletions.
    AttachedStale,
    /// A warm standby location: layers downloaded, nothing ingested,
    /// uploaded or deleted (`secondary`).
    Secondary,
    /// Not here at all.
    Detached,
}

impl std::str::FromStr for LocationMode {
    type Err = TenantError;
    fn from_str(text: &str) -> Result<LocationMode, TenantError> {
        Ok(match text {
            "AttachedSingle" => LocationMode::AttachedSingle,
            "AttachedMulti" => LocationMode::AttachedMulti,
            "AttachedStale" => LocationMode::AttachedStale,
            "Secondary" => LocationMode::Secondary,
            "Detached" => LocationMode::Detached,
            other => {
                return Err(TenantError::BadRequest(format!(
                    "unknown location mode {other:?}: expected AttachedSingle, AttachedMulti, AttachedStale, Secondary or Detached"
                )))
            }
        })
    }
}

/// Gives a tenant its remote side and starts its upload task. Without
/// remote storage (or outside a runtime) the tenant runs local-only.
pub fn start_remote(
    remote: Option<&remote_storage::Remote>,
    tenant: &Arc<Tenant>,
    seed: Vec<(TimelineId, IndexPart)>,
) {
    let Some(remote) = remote else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(tenant_id = %tenant.id(), "no runtime: uploads not started");
        return;
    };
    tenant
        .downloader()
        .set_remote(remote.clone(), runtime.clone());
    let generation = Generation(tenant.generation().unwrap_or(0));
    let remote_tenant = Arc::new(RemoteTenant::new(remote.clone(), tenant.id(), generation));
    for (id, index) in &seed {
        if let Some(timeline) = tenant.timeline(*id) {
            timeline.set_remote_consistent_lsn(postgres_wal::Lsn(index.remote_consistent_lsn()));
        }
    }
    remote_tenant.seed(seed);
    // `AttachedStale` persisted in tenant.json survives a restart.
    remote_tenant.set_stale(tenant.attached_stale());
    tenant.set_remote(Some(remote_tenant));
    runtime.spawn(upload::upload_task(
        Arc::downgrade(tenant),
        tenant.cancel_token().clone(),
    ));
}

fn attach_error(error: AttachError) -> TenantError {
    match error {
        AttachError::NotFound(id) => TenantError::NotInRemote(id),
        AttachError::Stale { .. } => TenantError::Conflict(error.to_string()),
        other => TenantError::Remote(other.to_string()),
    }
}

impl TenantManager {
    fn require_remote(&self) -> Result<&remote_storage::Remote, TenantError> {
        self.remote.as_ref().ok_or_else(|| {
            TenantError::BadRequest(
                "this pageserver has no remote storage (remote_storage = \"none\")".into(),
            )
        })
    }

    /// `POST /attach`: checks, writes our generation marker, then downloads
    /// in the background. `stale` attaches in `AttachedStale` mode.
    pub async fn attach(
        self: &Arc<Self>,
        id: TenantId,
        generation: Option<u32>,
        config: TenantConfig,
        stale: bool,
    ) -> Result<(), TenantError> {
        if self.tenants.read().contains_key(&id) {
            return Err(TenantError::AlreadyExists(id));
        }
        let remote = self.require_remote()?.clone();
        let generation = generation.ok_or_else(|| {
            TenantError::BadRequest("generation is required to attach a tenant".into())
        })?;
        // Checked before anything is written (404, 409); the indexes come
        // from a second listing after our marker (below).
        attach::plan(&remote, id, Generation(generation))
            .await
            .map_err(attach_error)?;
        let final_dir = self.tenants_dir.join(id.to_string());
        let file = TenantFile {
            config,
            generation: Some(generation),
            attached_stale: stale,
        };
        let tenant = Arc::new(Tenant::new(
            id,
            final_dir,
            Arc::clone(&self.conf),
            file.clone(),
            self.shutdown.child_token(),
        ));
        tenant.set_state(TenantState::Attaching);
        {
            let mut tenants = self.tenants.write();
            if tenants.contains_key(&id) {
                return Err(TenantError::AlreadyExists(id));
            }
            tenants.insert(id, Arc::clone(&tenant));
        }
        let marker = RemoteTenant::new(remote.clone(), id, Generation(generation));
        if let Err(error) = marker.write_marker().await {
            self.tenants.write().remove(&id);
            return Err(TenantError::Remote(error.to_string()));
        }
        // The indexes are chosen from a listing taken *after* our marker
        // is written: a stale pageserver that validates (lists markers)
        // after its index upload either sees our marker and deletes
        // nothing, or uploaded that index before this listing, so we load
        // it (and it names what it did not delete).
        let plan = match attach::plan(&remote, id, Generation(generation)).await {
            Ok(plan) => plan,
            Err(error) => {
                self.tenants.write().remove(&id);
                return Err(attach_error(error));
            }
        };
        // A secondary location becomes attached: its warm layers are used.
        let warm = self.stop_secondary(id).await;
        let manager = Arc::clone(self);
        tokio::spawn(async move {
            let result = manager
                .finish_attach(&tenant, &remote, &plan, &file, warm.as_deref())
                .await;
            match result {
                Ok(seed) => {
                    start_remote(Some(&remote), &tenant, seed);
                    if let Some(remote_tenant) = tenant.remote() {
                        remote_tenant.set_stale(stale);
                    }
                    tenant.set_state(TenantState::Active);
                    tracing::info!(tenant_id = %id, generation, "tenant attached");
                }
                Err(reason) => {
                    tracing::error!(tenant_id = %id, %reason, "attach failed");
                    tenant.set_state(TenantState::Broken { reason });
                }
            }
        });
        Ok(())
    }

    async fn finish_attach(
        &self,
        tenant: &Arc<Tenant>,
        remote: &remote_storage::Remote,
        plan: &attach::RemotePlan,
        file: &TenantFile,
        warm: Option<&std::path::Path>,
    ) -> Result<Vec<(TimelineId, IndexPart)>, String> {
        let id = tenant.id();
        let temp_dir = self.tenants_dir.join(format!("{id}{TEMP_SUFFIX}"));
        if temp_dir.exists() {
            std::fs::remove_dir_all(&temp_dir).map_err(|e| e.to_string())?;
        }
        std::fs::create_dir_all(&temp_dir).map_err(|e| e.to_string())?;
        let indexes = attach::download(remote, id, plan, &temp_dir)
            .await
            .map_err(|e| e.to_string())?;
        // Layers are markers until read: reads download from here on,
        // including any the opening itself does.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tenant.downloader().set_remote(remote.clone(), runtime);
        }
        let final_dir = tenant.dir().to_owned();
        let tenants_dir = self.tenants_dir.clone();
        let file = file.clone();
        let opened = Arc::clone(tenant);
        let timelines: Vec<TimelineId> = indexes.iter().map(|(id, _)| *id).collect();
        let warm = warm.map(std::path::Path::to_owned);
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            if let Some(warm) = &warm {
                let mut moved = 0;
                for timeline in timelines {
                    let target = temp_dir
                        .join(storage::repository::TIMELINES_DIR_NAME)
                        .join(timeline.to_string());
                    moved += secondary::adopt_layers(warm, timeline, &target)
                        .map_err(|e| format!("cannot adopt the secondary copy: {e}"))?;
                }
                tracing::info!(tenant_id = %id, moved, "layers adopted from the secondary copy");
                if let Err(error) = std::fs::remove_dir_all(warm) {
                    tracing::warn!(%error, "cannot remove the secondary copy");
                }
            }
            tenant_mod::write_tenant_file(&temp_dir, &file).map_err(|e| e.to_string())?;
            std::fs::rename(&temp_dir, &final_dir).map_err(|e| e.to_string())?;
            fileio::sync_dir(&tenants_dir).map_err(|e| e.to_string())?;
            opened
                .load_timelines()
                .map_err(|e| format!("cannot open the downloaded timelines: {e}"))
        })
        .await
        .map_err(|e| e.to_string())??;
        // WAL uploaded above the layers comes back before the tenant is
        // active: reads and branches see everything remote storage held.
        crate::tenant::remote_wal::recover_tenant(tenant, remote, &indexes)
            .await
            .map_err(|e| e.to_string())?;
        Ok(indexes)
    }

    /// Takes a tenant out of the map and stops it; `flush` uploads first.
    async fn stop_and_remove(
        &self,
        id: TenantId,
        flush: Option<Duration>,
    ) -> Result<Arc<Tenant>, TenantError> {
        let tenant = {
            let mut tenants = self.tenants.write();
            let tenant = tenants.get(&id).cloned().ok_or(TenantError::NotFound(id))?;
            match tenant.state() {
                TenantState::Attaching => {
                    return Err(TenantError::Broken {
                        id,
                        reason: "still attaching; retry in a few seconds".into(),
                    })
                }
                TenantState::Stopping => return Err(TenantError::Deleting(id)),
                _ => {}
            }
            tenants.remove(&id);
            tenant
        };
        tenant.stop_wal_receivers().await;
        if let Some(limit) = flush {
            upload::final_upload_within(&tenant, limit).await;
        }
        tenant.cancel_token().cancel();
        tenant.shutdown();
        // Detach removes the directory and ignore marks it: no flush or
        // pass of the tenant may still be writing there.
        tenant.wait_background_stopped().await;
        Ok(tenant)
    }

    /// `POST /detach`: removes the tenant from memory and disk; remote data
    /// stays. With `detach_ignored`, an ignored tenant's directory goes too.
    pub async fn detach(
        &self,
        id: TenantId,
        detach_ignored: bool,
        flush: Duration,
    ) -> Result<(), TenantError> {
        let dir = self.tenants_dir.join(id.to_string());
        if !self.tenants.read().contains_key(&id) {
            if detach_ignored && dir.join(IGNORED_MARK).exists() {
                return self.remove_dir(id).await;
            }
            return Err(TenantError::NotFound(id));
        }
        self.stop_and_remove(id, Some(flush)).await?;
        self.remove_dir(id).await?;
        tracing::info!(tenant_id = %id, "tenant detached");
        Ok(())
    }

    async fn remove_dir(&self, id: TenantId) -> Result<(), TenantError> {
        let source = self.tenants_dir.join(id.to_string());
        let doomed = self.tenants_dir.join(format!("{id}{DELETED_SUFFIX}"));
        let tenants_dir = self.tenants_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // A leftover of an earlier removal that failed half-way: renaming
            // onto a non-empty directory fails with "Directory not empty".
            if std::fs::symlink_metadata(&doomed).is_ok() {
                std::fs::remove_dir_all(&doomed)?;
            }
            std::fs::rename(&source, &doomed)?;
            fileio::sync_dir(&tenants_dir)?;
            std::fs::remove_dir_all(&doomed)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(())
    }

    /// `POST /ignore`: forgets the tenant in memory and marks its directory
    /// so restarts do not load it; files stay.
    pub async fn ignore(&self, id: TenantId) -> Result<(), TenantError> {
        let tenant = self
            .stop_and_remove(id, Some(upload::FINAL_UPLOAD_TIMEOUT))
            .await?;
        fileio::replace_file(&tenant.dir().join(IGNORED_MARK), b"")?;
        tracing::info!(tenant_id = %id, "tenant ignored");
        Ok(())
    }

    /// `POST /load`: loads an ignored (or otherwise unloaded) tenant from
    /// its directory, as a restart would.
    pub fn load_tenant(&self, id: TenantId, generation: Option<u32>) -> Result<(), TenantError> {
        let dir = self.tenants_dir.join(id.to_string());
        if self.tenants.read().contains_key(&id) {
            return Err(TenantError::AlreadyExists(id));
        }
        if !dir.join(tenant_mod::TENANT_FILE).exists() {
            // Nothing to load: 404, as for any unknown tenant.
            return Err(TenantError::NotFound(id));
        }
        let mark = dir.join(IGNORED_MARK);
        if mark.exists() {
            std::fs::remove_file(&mark)?;
            fileio::sync_dir(&dir)?;
        }
        let tenant = Arc::new(super::load_tenant(
            &self.conf,
            id,
            dir,
            self.shutdown.child_token(),
        ));
        if let Some(generation) = generation {
            tenant.set_generation(Some(generation))?;
        }
        if tenant.state() == TenantState::Active {
            start_remote(self.remote.as_ref(), &tenant, Vec::new());
            tenant.resume_wal_sources();
        }
        let mut tenants = self.tenants.write();
        if tenants.contains_key(&id) {
            return Err(TenantError::AlreadyExists(id));
        }
        tenants.insert(id, tenant);
        tracing::info!(tenant_id = %id, "tenant loaded");
        Ok(())
    }

    /// `PUT /location_config`: makes this pageserver hold the tenant as
    /// `mode` says.
    pub async fn location_config(
        self: &Arc<Self>,
        id: TenantId,
        mode: LocationMode,
        generation: Option<u32>,
        config: Option<TenantConfig>,
        flush: Option<Duration>,
    ) -> Result<(), TenantError> {
        let present = self.tenants.read().get(&id).cloned();
        match mode {
            LocationMode::AttachedSingle
            | LocationMode::AttachedMulti
            | LocationMode::AttachedStale => {
                let generation = generation.ok_or_else(|| {
                    TenantError::BadRequest(format!("generation is required for mode {mode:?}"))
                })?;
                let stale = mode == LocationMode::AttachedStale;
                match present {
                    None => {
                        let config = config.unwrap_or_default();
                        self.attach(id, Some(generation), config, stale).await
                    }
                    Some(tenant) => {
                        self.reconfigure(&tenant, generation, config, stale, flush)
                            .await
                    }
                }
            }
            LocationMode::Secondary | LocationMode::Detached => {
                if present.is_some() {
                    let limit = flush.unwrap_or(upload::FINAL_UPLOAD_TIMEOUT);
                    self.detach(id, false, limit).await?;
                }
                if mode == LocationMode::Secondary {
                    self.start_secondary(id)
                } else {
                    if let Some(dir) = self.stop_secondary(id).await {
                        remove_dir_quietly(dir).await;
                    }
                    Ok(())
                }
            }
        }
    }

    /// Makes this pageserver a secondary location of `id` (idempotent).
    /// The mode is persisted first, so the copy is resumed after a restart.
    pub(crate) fn start_secondary(&self, id: TenantId) -> Result<(), TenantError> {
        let remote = self.require_remote()?.clone();
        if self
            .secondaries
            .lock()
            .get(&id)
            .is_some_and(|task| !task.is_finished())
        {
            return Ok(());
        }
        let dir = secondary::tenant_dir(&self.secondary_root, id);
        // A small file, written before the lock is taken again.
        secondary::persist_mode(&dir)?;
        let mut secondaries = self.secondaries.lock();
        if secondaries.get(&id).is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        let task = tokio::spawn(secondary::run(remote, id, dir, self.shutdown.child_token()));
        secondaries.insert(id, task);
        tracing::info!(tenant_id = %id, "secondary location started");
        Ok(())
    }

    /// Stops the secondary location of `id`, if any; returns its directory
    /// (the caller adopts or removes it).
    async fn stop_secondary(&self, id: TenantId) -> Option<std::path::PathBuf> {
        let task = self.secondaries.lock().remove(&id)?;
        task.abort();
        // An aborted download leaves at most a temp file of one layer.
        let _ = task.await;
        Some(secondary::tenant_dir(&self.secondary_root, id))
    }

    /// An attached tenant gets a new generation, config or staleness.
    async fn reconfigure(
        &self,
        tenant: &Arc<Tenant>,
        generation: u32,
        config: Option<TenantConfig>,
        stale: bool,
        flush: Option<Duration>,
    ) -> Result<(), TenantError> {
        if tenant.state() == TenantState::Attaching {
            return Ok(());
        }
        let current = tenant.generation().unwrap_or(0);
        if generation < current {
            return Err(TenantError::Conflict(format!(
                "generation {generation} is older than the tenant's current generation {current}"
            )));
        }
        if let Some(config) = config {
            tenant.set_config(config)?;
        }
        if stale {
            if let Some(limit) = flush {
                upload::final_upload_within(tenant, limit).await;
            }
        }
        if generation > current {
            tenant.set_generation(Some(generation))?;
            if let Some(old) = tenant.remote() {
                let fresh =
                    RemoteTenant::new(old.remote().clone(), tenant.id(), Generation(generation));
                fresh
                    .write_marker()
                    .await
                    .map_err(|e| TenantError::Remote(e.to_string()))?;
                // The index is copied forward: only new layers upload.
                fresh.seed(old.uploaded_indexes());
                tenant.set_remote(Some(Arc::new(fresh)));
            }
        }
        tenant.set_attached_stale(stale)?;
        if let Some(remote) = tenant.remote() {
            remote.set_stale(stale);
        }
        Ok(())
    }
}

async fn remove_dir_quietly(dir: std::path::PathBuf) {
    let result = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .await;
    if let Ok(Err(error)) = result {
        tracing::warn!(%error, "cannot remove a secondary copy");
    }
}
