//! Attaching a tenant from remote storage: deciding whether the remote has
//! it and whether our generation may take it (fast, answered before the
//! API's 202), then downloading every timeline's newest index at or below
//! our generation and its metadata file into a directory that the caller
//! renames into place once everything is durable.
//!
//! Attach is lazy: instead of the layer files it writes their eviction
//! markers (size, CRC-32C, object path from the index), so the tenant is
//! usable as soon as the indexes are read and each layer is downloaded by
//! the first read that needs it (`storage::io::OnDemandIo`). Eager download
//! ([`download_layers`], verified by size and CRC-32C; a layer that does not
//! match is refused by name, never written) serves secondary locations,
//! which keep a warm copy.

use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use remote_storage::layout::{self, IndexChoice};
use remote_storage::{Generation, IndexPart, Remote, RemoteError};
use storage::io::{marker_path, EvictedMarker};
use storage::metadata::METADATA_FILE_NAME;

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

/// Prepares every timeline of `plan` in `<tenant_dir>/timelines/`: its
/// metadata and an eviction marker per layer (nothing else is downloaded).
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
        prepare_timeline(tenant, *timeline, &index, &dir).await?;
        restore_branch_name(tenant_dir, *timeline, &index).await?;
        indexes.push((*timeline, index));
    }
    Ok(indexes)
}

/// Writes the branch name the index carries into the tenant directory, where
/// the timeline reads it when it is opened. An invalid name is skipped (a
/// label is never a reason to fail an attach).
async fn restore_branch_name(
    tenant_dir: &Path,
    timeline: TimelineId,
    index: &IndexPart,
) -> Result<(), AttachError> {
    let Some(name) = index.branch_name.clone() else {
        return Ok(());
    };
    if crate::branch_names::validate(&name).is_err() {
        tracing::warn!(%timeline, "ignoring an invalid branch name in the index");
        return Ok(());
    }
    let dir = tenant_dir.to_owned();
    tokio::task::spawn_blocking(move || crate::branch_names::write(&dir, timeline, &name))
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written)
        .map_err(|source| AttachError::Local {
            path: tenant_dir.join("branch_names"),
            source,
        })
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

/// Writes the timeline directory of a lazy attach: one marker per layer,
/// then the metadata (a timeline directory with metadata is complete).
async fn prepare_timeline(
    tenant: TenantId,
    timeline: TimelineId,
    index: &IndexPart,
    dir: &Path,
) -> Result<(), AttachError> {
    let mut markers = Vec::with_capacity(index.layers.len());
    for (name, layer) in &index.layers {
        let object = layout::layer_path(
            &tenant.to_string(),
            &timeline.to_string(),
            name,
            layer.generation,
        )?;
        let marker = EvictedMarker {
            file_size: layer.file_size,
            crc32c: layer.crc32c,
            source: object.as_str().to_owned(),
        };
        markers.push((marker_path(&dir.join(name)), marker.encode()));
    }
    let metadata = index.metadata().ok_or_else(|| AttachError::BadIndex {
        path: format!("timeline {timeline}"),
        reason: "metadata_bytes is not hex".into(),
    })?;
    let dir = dir.to_owned();
    let failed = dir.clone();
    tokio::task::spawn_blocking(move || -> Result<(), AttachError> {
        let local = |path: &Path| {
            let path = path.to_owned();
            move |source| AttachError::Local { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(local(&dir))?;
        // The directory is a temporary one renamed into place after: each
        // file needs its data synced, the directory once.
        for (path, bytes) in &markers {
            write_synced(path, bytes).map_err(local(path))?;
        }
        fileio::sync_dir(&dir).map_err(local(&dir))?;
        fileio::replace_file(&dir.join(METADATA_FILE_NAME), &metadata)
            .map_err(local(&dir.join(METADATA_FILE_NAME)))
    })
    .await
    .map_err(|error| AttachError::Local {
        path: failed,
        source: std::io::Error::other(error),
    })?
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Downloads the layers of `index` that `dir` does not hold at their size,
/// verified, each written durably. Returns
/// the bytes downloaded. Used by secondary locations.
pub async fn download_layers(
    remote: &Remote,
    tenant: TenantId,
    timeline: TimelineId,
    index: &IndexPart,
    dir: &Path,
) -> Result<u64, AttachError> {
    let local = |path: PathBuf| move |source| AttachError::Local { path, source };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(local(dir.to_owned()))?;
    let total = std::sync::atomic::AtomicU64::new(0);
    let total_ref = &total;
    futures::stream::iter(index.layers.iter().map(Ok))
        .try_for_each_concurrent(DOWNLOAD_CONCURRENCY, |(name, layer)| async move {
            let path = dir.join(name);
            let size = tokio::fs::metadata(&path).await.map(|m| m.len()).ok();
            if size == Some(layer.file_size) {
                return Ok(());
            }
            let object = layout::layer_path(
                &tenant.to_string(),
                &timeline.to_string(),
                name,
                layer.generation,
            )?;
            let data = remote
                .get_verified(&object, layer.file_size, layer.crc32c)
                .await?;
            total_ref.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
            write_durably(path, data.to_vec()).await
        })
        .await?;
    Ok(total.into_inner())
}

async fn write_durably(path: PathBuf, bytes: Vec<u8>) -> Result<(), AttachError> {
    let target = path.clone();
    tokio::task::spawn_blocking(move || fileio::replace_file(&target, &bytes))
        .await
        .map_err(|error| AttachError::Local {
            path: path.clone(),
            source: std::io::Error::other(error),
        })?
        .map_err(|source| AttachError::Local { path, source })
}
