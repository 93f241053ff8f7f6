//! `Secondary` locations: a warm copy of a tenant attached elsewhere.
//!
//! A secondary location ingests nothing, uploads nothing and deletes
//! nothing remote. A task downloads, every [`SECONDARY_PERIOD`], the newest
//! index of every timeline of the tenant and the layers it names into
//! `<workdir>/secondary/<tenant>/<timeline>/` (verified by size and
//! CRC-32C), and removes local layers the index no longer names. When the
//! location later becomes attached (`location_config` with a new
//! generation), the lazy attach moves these files into place instead of
//! leaving eviction markers, so the first reads need no download.
//!
//! The mode is persisted: starting a secondary location writes
//! [`MODE_FILE`] into its directory (atomically), and a restarted
//! pageserver resumes the refresh task of every copy that has it, keeping
//! the warm layers ([`resumable`]); a directory without it (a copy whose
//! start crashed before the file was written) is removed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use remote_storage::{Generation, Remote};
use tokio_util::sync::CancellationToken;

use crate::ids::{TenantId, TimelineId};
use crate::tenant::attach;

/// How often a secondary location refreshes its copy.
pub const SECONDARY_PERIOD: Duration = Duration::from_secs(1);

/// Directory (under the work directory) holding secondary copies.
pub const SECONDARY_DIR: &str = "secondary";

/// The file in a warm copy's directory that says the location is
/// `Secondary` (content: the mode's name).
pub const MODE_FILE: &str = "location_mode";

/// Records in `dir` (created if absent) that it is a secondary location,
/// crash-safely: the copy survives restarts from now on.
pub fn persist_mode(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        fileio::sync_dir(parent)?;
    }
    fileio::write_atomic(&fileio::StdFileIo, dir, MODE_FILE, b"Secondary\n")?;
    Ok(())
}

/// At startup: the tenants under `root` whose warm copy is a persisted
/// secondary location (to resume); every other entry is removed.
pub fn resumable(root: &Path) -> std::io::Result<Vec<TenantId>> {
    let mut tenants = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(tenants);
    };
    for entry in entries {
        let entry = entry?;
        let id = entry.file_name().to_string_lossy().parse::<TenantId>().ok();
        match id {
            Some(id) if entry.path().join(MODE_FILE).is_file() => tenants.push(id),
            _ => {
                tracing::info!(leftover = %entry.path().display(), "removing an unfinished secondary copy");
                if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(entry.path())?;
                } else {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
    }
    Ok(tenants)
}

/// The directory of one tenant's warm copy.
pub fn tenant_dir(secondary_root: &Path, tenant: TenantId) -> PathBuf {
    secondary_root.join(tenant.to_string())
}

/// One refresh: newest indexes, their missing layers, stale layers
/// removed. Returns the bytes downloaded.
pub async fn refresh(remote: &Remote, tenant: TenantId, dir: &Path) -> Result<u64, String> {
    let plan = attach::plan(remote, tenant, Generation(u32::MAX))
        .await
        .map_err(|e| e.to_string())?;
    let mut downloaded = 0;
    for (timeline, generation) in &plan.indexes {
        let index = attach::fetch_index(remote, tenant, *timeline, *generation)
            .await
            .map_err(|e| e.to_string())?;
        let timeline_dir = dir.join(timeline.to_string());
        downloaded += attach::download_layers(remote, tenant, *timeline, &index, &timeline_dir)
            .await
            .map_err(|e| e.to_string())?;
        let keep: HashSet<String> = index.layers.keys().cloned().collect();
        remove_unlisted(&timeline_dir, &keep).map_err(|e| e.to_string())?;
    }
    Ok(downloaded)
}

fn remove_unlisted(dir: &Path, keep: &HashSet<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Refreshes until `cancel`; errors are logged and retried next period.
pub async fn run(remote: Remote, tenant: TenantId, dir: PathBuf, cancel: CancellationToken) {
    loop {
        match refresh(&remote, tenant, &dir).await {
            Ok(0) => {}
            Ok(bytes) => tracing::info!(tenant_id = %tenant, bytes, "secondary copy refreshed"),
            Err(error) => tracing::warn!(tenant_id = %tenant, %error, "secondary refresh failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SECONDARY_PERIOD) => {}
        }
    }
}

/// Moves warm layer files of `timeline` from the secondary copy into the
/// attach's timeline directory, replacing their eviction markers when the
/// size matches the marker's. Returns how many were moved.
pub fn adopt_layers(
    secondary: &Path,
    timeline: TimelineId,
    target: &Path,
) -> std::io::Result<usize> {
    let source = secondary.join(timeline.to_string());
    let Ok(entries) = std::fs::read_dir(&source) else {
        return Ok(0);
    };
    let mut moved = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let layer = target.join(&name);
        let marker_file = storage::io::marker_path(&layer);
        let Ok(bytes) = std::fs::read(&marker_file) else {
            continue; // Not in the index we attach with.
        };
        let Ok(marker) = storage::io::EvictedMarker::decode(&bytes) else {
            continue;
        };
        // Same name does not promise same bytes (two pageservers may
        // write a layer of the same ranges): only an exact copy is adopted.
        if entry.metadata()?.len() != marker.file_size
            || crc32c::crc32c(&std::fs::read(entry.path())?) != marker.crc32c
        {
            continue;
        }
        std::fs::rename(entry.path(), &layer)?;
        std::fs::remove_file(&marker_file)?;
        moved += 1;
    }
    fileio::sync_dir(target)?;
    Ok(moved)
}
