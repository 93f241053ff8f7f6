//! Attaching a tenant from remote storage: deciding whether the remote has
//! it and whether our generation may take it (fast, answered before the
//! API's 202), then downloading every timeline's newest index at or below
//! our generation, its metadata file and its layer files into a directory
//! that the caller renames into place once everything is durable.
//!
//! Layers are downloaded eagerly and verified (size and CRC-32C from the
//! index); a layer that does not match is refused by name, never written.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use remote_storage::layout::{self, IndexChoice};
use remote_storage::{Generation, IndexPart, Remote, RemoteError};
use storage::metadata::METADATA_FILE_NAME;

use crate::durable;
use crate::ids::{TenantId, TimelineId};

/// Layer downloads in flight at once per attach.
const DOWNLOAD_CONCURRENCY: usize = 8;

/// Why an attach was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The remote holds nothing for the tenant.
    #[error("tenant {0} has no data in remote storage")]
    NotFound(TenantId),
    /// A newer generation exists: attaching with ours would be split brain.
    #[error("generation {ours} is stale: remote storage already has generation {newer} of tenant {tenant}")]
    Stale {
        /// The tenant.
        tenant: TenantId,
        /// Requested.
        ours: Generation,
        /// Found.
        newer: Generation,
    },
    /// Remote storage failed.
    #[error("remote storage: {0}")]
    Remote(#[from] RemoteError),
    /// An index could not be read.
    #[error("index {path}: {reason}")]
    BadIndex {
        /// The object.
        path: String,
        /// Why.
        reason: String,
    },
    /// Writing locally failed.
    #[error("cannot write {path}: {source}")]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What the remote holds for a tenant: the index generation to load per
/// timeline.
#[derive(Debug, Clone)]
pub struct RemotePlan {
    /// Timeline id → generation of the index to load.
    pub indexes: Vec<(TimelineId, Generation)>,
}

/// Checks that the remote has the tenant and that `generation` is not stale.
pub async fn plan(
    remote: &Remote,
    tenant: TenantId,
    generation: Generation,
) -> Result<RemotePlan, AttachError> {
    let tenant_text = tenant.to_string();
    let listing = remote.list(&layout::tenant_path(&tenant_text)?).await?;
    let paths: Vec<_> = listing.iter().map(|m| &m.path).collect();
    let marker = layout::latest_marker(paths.iter().copied());
    if let Some(newer) = marker.filter(|m| *m > generation) {
        return Err(AttachError::Stale {
            tenant,
            ours: generation,
            newer,
        });
    }
    let by_timeline = layout::indexes_by_timeline(paths.iter().copied());
    if by_timeline.is_empty() && marker.is_none() {
        return Err(AttachError::NotFound(tenant));
    }
    let mut indexes = Vec::new();
    for (timeline, generations) in by_timeline {
        let Ok(id) = timeline.parse::<TimelineId>() else {
            continue;
        };
        match layout::choose_index(&generations, generation) {
            IndexChoice::Load(found) => indexes.push((id, found)),
            IndexChoice::Stale { newer } => {
                return Err(AttachError::Stale {
                    tenant,
                    ours: generation,
                    newer,
                })
            }
            IndexChoice::Missing => {}
        }
    }
    Ok(RemotePlan { indexes })
}

/// Downloads every timeline of `plan` into `<tenant_dir>/timelines/`.
/// Returns the indexes, which the uploader starts from.
pub async fn download(
    remote: &Remote,
    tenant: TenantId,
    plan: &RemotePlan,
    tenant_dir: &Path,
) -> Result<Vec<(TimelineId, IndexPart)>, AttachError> {
    let mut indexes = Vec::new();
    for (timeline, generation) in &plan.indexes {
        let index = fetch_index(remote, tenant, *timeline, *generation).await?;
        let dir = tenant_dir
            .join(storage::repository::TIMELINES_DIR_NAME)
            .join(timeline.to_string());
        download_timeline(remote, tenant, *timeline, &index, &dir).await?;
        indexes.push((*timeline, index));
    }
    Ok(indexes)
}

/// Reads and validates one index.
pub async fn fetch_index(
    remote: &Remote,
    tenant: TenantId,
    timeline: TimelineId,
    generation: Generation,
) -> Result<IndexPart, AttachError> {
    let path = layout::index_path(&tenant.to_string(), &timeline.to_string(), generation)?;
    let bytes = remote.get(&path).await?;
    let index = IndexPart::decode(&bytes).map_err(|error| AttachError::BadIndex {
        path: path.to_string(),
        reason: error.to_string(),
    })?;
    if index.timeline_id != timeline.to_string() {
        return Err(AttachError::BadIndex {
            path: path.to_string(),
            reason: format!("it describes timeline {}", index.timeline_id),
        });
    }
    Ok(index)
}

async fn download_timeline(
    remote: &Remote,
    tenant: TenantId,
    timeline: TimelineId,
    index: &IndexPart,
    dir: &Path,
) -> Result<(), AttachError> {
    let local = |path: PathBuf| move |source| AttachError::Local { path, source };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(local(dir.to_owned()))?;
    futures::stream::iter(index.layers.iter().map(Ok))
        .try_for_each_concurrent(DOWNLOAD_CONCURRENCY, |(name, layer)| async move {
            let object = layout::layer_path(
                &tenant.to_string(),
                &timeline.to_string(),
                name,
                layer.generation,
            )?;
            let data = remote
                .get_verified(&object, layer.file_size, layer.crc32c)
                .await?;
            write_durably(dir.join(name), data.to_vec()).await
        })
        .await?;
    // The metadata goes last: a timeline directory with metadata is complete.
    let metadata = index.metadata().ok_or_else(|| AttachError::BadIndex {
        path: format!("timeline {timeline}"),
        reason: "metadata_bytes is not hex".into(),
    })?;
    write_durably(dir.join(METADATA_FILE_NAME), metadata).await?;
    Ok(())
}

async fn write_durably(path: PathBuf, bytes: Vec<u8>) -> Result<(), AttachError> {
    let target = path.clone();
    tokio::task::spawn_blocking(move || durable::write_file(&target, &bytes))
        .await
        .map_err(|error| AttachError::Local {
            path: path.clone(),
            source: std::io::Error::other(error),
        })?
        .map_err(|source| AttachError::Local { path, source })
}
