//! The set of tenants this pageserver holds: creating, finding, listing and
//! deleting them, and loading them all back from `<workdir>/tenants/` after a
//! restart. Moving tenants between pageservers (attach, detach, ignore,
//! load, location_config) lives in [`mobility`].

pub mod mobility;
pub mod secondary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::config::PageServerConf;
use crate::ids::TenantId;
use crate::tenant::{self, Tenant, TenantFile, TenantState};
use crate::tenant_config::TenantConfig;
use fileio::{DELETED_SUFFIX, TEMP_SUFFIX};

/// Subdirectory of the work directory holding the tenants.
pub const TENANTS_DIR: &str = "tenants";
/// A file in a tenant directory that keeps it from loading (`/ignore`).
pub const IGNORED_MARK: &str = "ignored";

/// Why a tenant operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantError {
    /// No such tenant.
    #[error("tenant {0} not found")]
    NotFound(TenantId),
    /// The tenant id is taken.
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantId),
    /// The tenant is being deleted.
    #[error("tenant {0} is being deleted; poll until it is gone")]
    Deleting(TenantId),
    /// The tenant failed to load.
    #[error("tenant {id} is broken: {reason}")]
    Broken {
        /// The tenant.
        id: TenantId,
        /// Why.
        reason: String,
    },
    /// The pageserver is shutting down.
    #[error("the pageserver is shutting down")]
    ShuttingDown,
    /// The request is invalid (missing generation, unknown mode, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The tenant is known in a way that conflicts with the request.
    #[error("{0}")]
    Conflict(String),
    /// Remote storage does not have the tenant.
    #[error("tenant {0} is not in remote storage: nothing to attach")]
    NotInRemote(TenantId),
    /// Remote storage is not configured or failed.
    #[error("remote storage: {0}")]
    Remote(String),
    /// A file operation failed.
    #[error("tenant storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// The API's tenant types (shared with the CLI).
pub use api_types::{AttachmentStatus, AttachmentStatusData, TenantInfo};

/// All tenants of this pageserver.
#[derive(Debug)]
pub struct TenantManager {
    conf: Arc<PageServerConf>,
    tenants_dir: PathBuf,
    /// Remote storage, unless switched off.
    remote: Option<remote_storage::Remote>,
    tenants: RwLock<HashMap<TenantId, Arc<Tenant>>>,
    shutdown: CancellationToken,
    /// Set once the server runs background tasks: new tenants get one too.
    background: parking_lot::Mutex<Option<crate::metrics::Metrics>>,
    /// `Secondary` locations: the refresh task of each.
    secondaries: parking_lot::Mutex<HashMap<TenantId, tokio::task::JoinHandle<()>>>,
    /// Where secondary locations keep their copies.
    secondary_root: PathBuf,
    /// Secondary locations found at load, started with the background tasks.
    resume_secondaries: parking_lot::Mutex<Vec<TenantId>>,
}

impl TenantManager {
    /// Loads every tenant under `<workdir>/tenants/`. A tenant that fails to
    /// load is kept as broken (and reported), not dropped.
    pub fn load(
        conf: Arc<PageServerConf>,
        workdir: &Path,
        shutdown: CancellationToken,
    ) -> std::io::Result<TenantManager> {
        let tenants_dir = workdir.join(TENANTS_DIR);
        std::fs::create_dir_all(&tenants_dir)?;
        // Persisted secondary locations resume (see `secondary`) once the
        // background tasks start; unfinished copies are removed.
        let secondary_root = workdir.join(secondary::SECONDARY_DIR);
        let resume_secondaries = secondary::resumable(&secondary_root)?;
        let remote = conf
            .remote_config(workdir)
            .and_then(|config| config.map(|c| c.open()).transpose())
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?
            .map(crate::remote_faults::maybe_wrap)
            .map(remote_storage::Remote::new);
        let mut tenants = HashMap::new();
        for entry in std::fs::read_dir(&tenants_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMP_SUFFIX) || name.ends_with(DELETED_SUFFIX) {
                tracing::info!(leftover = %name, "removing leftover tenant directory");
                std::fs::remove_dir_all(entry.path())?;
                continue;
            }
            let Ok(id) = name.parse::<TenantId>() else {
                tracing::warn!(entry = %name, "ignoring unexpected entry in tenants directory");
                continue;
            };
            if entry.path().join(IGNORED_MARK).exists() {
                tracing::info!(tenant_id = %id, "tenant is ignored; not loading it");
                continue;
            }
            let tenant = Arc::new(load_tenant(&conf, id, entry.path(), shutdown.child_token()));
            if tenant.state() == TenantState::Active {
                mobility::start_remote(remote.as_ref(), &tenant, Vec::new());
            }
            tenants.insert(id, tenant);
        }
        tracing::info!(count = tenants.len(), "tenants loaded");
        Ok(TenantManager {
            conf,
            tenants_dir,
            remote,
            tenants: RwLock::new(tenants),
            shutdown,
            background: parking_lot::Mutex::new(None),
            secondaries: parking_lot::Mutex::default(),
            secondary_root,
            resume_secondaries: parking_lot::Mutex::new(resume_secondaries),
        })
    }

    /// Starts the background task of every active tenant, and of every
    /// tenant created from now on (needs a tokio runtime).
    pub fn start_background_tasks(&self, metrics: crate::metrics::Metrics) {
        for tenant in self.list() {
            if tenant.state() == TenantState::Active {
                crate::background::spawn(tenant, metrics.clone());
            }
        }
        *self.background.lock() = Some(metrics);
        let resume = std::mem::take(&mut *self.resume_secondaries.lock());
        for id in resume {
            match self.start_secondary(id) {
                Ok(()) => tracing::info!(tenant_id = %id, "secondary location resumed"),
                Err(error) => {
                    tracing::warn!(tenant_id = %id, %error, "cannot resume the secondary location");
                }
            }
        }
    }

    /// The pageserver configuration.
    pub fn conf(&self) -> &Arc<PageServerConf> {
        &self.conf
    }

    /// Creates a tenant with a fresh id unless one is given.
    pub fn create_tenant(
        &self,
        id: Option<TenantId>,
        config: TenantConfig,
        generation: Option<u32>,
    ) -> Result<Arc<Tenant>, TenantError> {
        if self.shutdown.is_cancelled() {
            return Err(TenantError::ShuttingDown);
        }
        let id = id.unwrap_or_else(TenantId::generate);
        let mut tenants = self.tenants.write();
        if tenants.contains_key(&id) {
            return Err(TenantError::AlreadyExists(id));
        }
        let final_dir = self.tenants_dir.join(id.to_string());
        let temp_dir = self.tenants_dir.join(format!("{id}{TEMP_SUFFIX}"));
        if temp_dir.exists() {
            std::fs::remove_dir_all(&temp_dir)?;
        }
        std::fs::create_dir_all(&temp_dir)?;
        let file = TenantFile {
            config,
            generation,
            attached_stale: false,
        };
        tenant::write_tenant_file(&temp_dir, &file)?;
        std::fs::rename(&temp_dir, &final_dir)?;
        fileio::sync_dir(&self.tenants_dir)?;
        let tenant = Arc::new(Tenant::new(
            id,
            final_dir.clone(),
            Arc::clone(&self.conf),
            file,
            self.shutdown.child_token(),
        ));
        if let Err(error) = tenant.load_timelines() {
            // Never leave a directory that a restart would load as a tenant
            // the client was told does not exist.
            let _ = std::fs::remove_dir_all(&final_dir);
            return Err(TenantError::Io(std::io::Error::other(format!(
                "cannot open tenant storage: {error}"
            ))));
        }
        mobility::start_remote(self.remote.as_ref(), &tenant, Vec::new());
        tenants.insert(id, Arc::clone(&tenant));
        if let Some(metrics) = self.background.lock().clone() {
            crate::background::spawn(Arc::clone(&tenant), metrics);
        }
        tracing::info!(tenant_id = %id, "tenant created");
        Ok(tenant)
    }

    /// The tenant, whatever its state.
    pub fn get(&self, id: TenantId) -> Result<Arc<Tenant>, TenantError> {
        self.tenants
            .read()
            .get(&id)
            .cloned()
            .ok_or(TenantError::NotFound(id))
    }

    /// The tenant, only if it is serving.
    pub fn get_active(&self, id: TenantId) -> Result<Arc<Tenant>, TenantError> {
        let tenant = self.get(id)?;
        match tenant.state() {
            TenantState::Active => Ok(tenant),
            TenantState::Stopping => Err(TenantError::Deleting(id)),
            TenantState::Attaching => Err(TenantError::Conflict(format!(
                "tenant {id} is still being attached; poll its attachment_status"
            ))),
            TenantState::Broken { reason } => Err(TenantError::Broken { id, reason }),
        }
    }

    /// All tenants, ordered by id.
    pub fn list(&self) -> Vec<Arc<Tenant>> {
        let mut tenants: Vec<_> = self.tenants.read().values().cloned().collect();
        tenants.sort_by_key(|tenant| tenant.id());
        tenants
    }

    /// Starts deleting a tenant. Returns at once; the tenant stays visible
    /// (state `Stopping`, and a repeated delete answers `Deleting`) until its
    /// files are gone, after which it is not found.
    pub fn start_delete(self: &Arc<Self>, id: TenantId) -> Result<(), TenantError> {
        let tenant = self.get(id)?;
        {
            // The state check and change happen under the map lock so two
            // concurrent deletes cannot both start.
            let _tenants = self.tenants.write();
            if tenant.state() == TenantState::Stopping {
                return Err(TenantError::Deleting(id));
            }
            tenant.set_state(TenantState::Stopping);
        }
        tenant.cancel_token().cancel();
        let manager = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = manager.finish_delete(&tenant).await {
                tracing::error!(tenant_id = %id, %error, "tenant deletion failed");
                tenant.set_state(TenantState::Broken {
                    reason: format!("deletion failed: {error}"),
                });
            }
        });
        Ok(())
    }

    async fn finish_delete(&self, tenant: &Tenant) -> std::io::Result<()> {
        // Creations observe the cancelled token and stop; wait for them so
        // none writes into a directory being removed.
        while tenant.creations_in_progress() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tenant.stop_wal_receivers().await;
        tenant.shutdown();
        // The background task sees the cancelled token between ticks; a
        // flush or materialising pass it started may still be writing layer
        // files into the tenant's directory, and a compaction or GC pass
        // stops at its next timeline. None may outlive deletion.
        tenant.wait_background_stopped().await;
        let id = tenant.id();
        if let Some(remote) = tenant.remote() {
            // Remote first: a failure leaves the tenant visible (broken) so
            // the delete can be retried, instead of orphaning remote data.
            remote
                .delete_all()
                .await
                .map_err(|error| std::io::Error::other(format!("remote deletion: {error}")))?;
        }
        let doomed = self.tenants_dir.join(format!("{id}{DELETED_SUFFIX}"));
        let source = tenant.dir().to_path_buf();
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
        self.tenants.write().remove(&id);
        tracing::info!(tenant_id = %id, "tenant deleted");
        Ok(())
    }

    /// `TenantInfo` of one tenant.
    pub fn tenant_info(tenant: &Tenant) -> TenantInfo {
        let state = tenant.state();
        let (state_name, attachment_status) = match &state {
            TenantState::Active => ("Active", attached()),
            TenantState::Attaching => (
                "Attaching",
                AttachmentStatus {
                    slug: "maybe".to_owned(),
                    data: AttachmentStatusData::default(),
                },
            ),
            TenantState::Stopping => ("Stopping", attached()),
            TenantState::Broken { reason } => (
                "Broken",
                AttachmentStatus {
                    slug: "failed".to_owned(),
                    data: AttachmentStatusData {
                        reason: Some(reason.clone()),
                    },
                },
            ),
        };
        TenantInfo {
            id: tenant.id().to_string(),
            state: state_name.to_owned(),
            current_physical_size: tenant.physical_size_bytes(),
            attachment_status,
            generation: tenant.generation(),
        }
    }
}

fn attached() -> AttachmentStatus {
    AttachmentStatus {
        slug: "attached".to_owned(),
        data: AttachmentStatusData::default(),
    }
}

pub(crate) fn load_tenant(
    conf: &Arc<PageServerConf>,
    id: TenantId,
    dir: PathBuf,
    cancel: CancellationToken,
) -> Tenant {
    let file = match tenant::read_tenant_file(&dir) {
        Ok(file) => file,
        Err(error) => {
            tracing::error!(tenant_id = %id, %error, "cannot read tenant settings");
            return Tenant::broken(
                id,
                dir,
                Arc::clone(conf),
                format!("cannot read settings: {error}"),
            );
        }
    };
    let tenant = Tenant::new(id, dir, Arc::clone(conf), file, cancel);
    if let Err(error) = tenant.load_timelines() {
        tracing::error!(tenant_id = %id, %error, "cannot load timelines");
        tenant.set_state(TenantState::Broken {
            reason: format!("cannot load timelines: {error}"),
        });
    }
    tenant
}
