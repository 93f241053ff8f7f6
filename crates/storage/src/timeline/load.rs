//! Creating a timeline directory, and reopening one after a restart.
//!
//! Reopening applies the durability contract: temp files are garbage from an
//! interrupted write, and layer files above the disk-consistent LSN were
//! never committed by a metadata update, so both are deleted; the WAL source
//! re-feeds everything above `disk_consistent_lsn`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres_wal::Lsn;

use super::Timeline;
use crate::error::RepositoryError;
use crate::id::TimelineId;
use crate::io::{write_atomic, FileIo, TEMP_SUFFIX};
use crate::layer::{LayerDesc, LayerHandle, LayerKind};
use crate::layer_map::LayerMap;
use crate::metadata::{TimelineMetadata, METADATA_FILE_NAME};
use crate::repository::Shared;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RepositoryError + '_ {
    move |source| RepositoryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads and validates a timeline's metadata file.
pub(crate) fn read_metadata(
    io: &dyn FileIo,
    timeline_dir: &Path,
) -> Result<TimelineMetadata, RepositoryError> {
    let path = timeline_dir.join(METADATA_FILE_NAME);
    let bytes = io.read_file(&path).map_err(io_error(&path))?;
    TimelineMetadata::decode(&bytes).map_err(|e| RepositoryError::Corrupt {
        path,
        reason: format!("timeline metadata: {e}"),
    })
}

impl Timeline {
    /// Creates the directory of a new timeline atomically: it is built under
    /// a temp name and renamed into place once its metadata is durable.
    pub(crate) fn create(
        timelines_dir: &Path,
        id: TimelineId,
        metadata: &TimelineMetadata,
        ancestor: Option<Arc<Timeline>>,
        shared: Arc<Shared>,
    ) -> Result<Timeline, RepositoryError> {
        let io = shared.io.as_ref();
        let temp_dir = timelines_dir.join(format!("{id}{TEMP_SUFFIX}"));
        let final_dir = timelines_dir.join(id.to_string());
        if io.list_dir(&temp_dir).is_ok() {
            io.remove_dir_all(&temp_dir).map_err(io_error(&temp_dir))?;
        }
        io.create_dir_all(&temp_dir).map_err(io_error(&temp_dir))?;
        write_atomic(io, &temp_dir, METADATA_FILE_NAME, &metadata.encode())
            .map_err(io_error(&temp_dir))?;
        io.rename(&temp_dir, &final_dir)
            .map_err(io_error(&final_dir))?;
        io.sync_dir(timelines_dir)
            .map_err(io_error(timelines_dir))?;
        let map = LayerMap::new(Lsn(metadata.disk_consistent_lsn.0 + 1));
        Ok(Timeline::from_parts(
            id, final_dir, metadata, ancestor, shared, map,
        ))
    }

    /// Reopens a timeline directory whose metadata has been read.
    pub(crate) fn load(
        dir: PathBuf,
        id: TimelineId,
        metadata: &TimelineMetadata,
        ancestor: Option<Arc<Timeline>>,
        shared: Arc<Shared>,
    ) -> Result<Timeline, RepositoryError> {
        let map = load_layer_map(shared.io.as_ref(), &dir, metadata.disk_consistent_lsn)?;
        Ok(Timeline::from_parts(
            id, dir, metadata, ancestor, shared, map,
        ))
    }
}

/// Builds the layer map from a directory listing, deleting what the
/// durability contract says is not there.
fn load_layer_map(
    io: &dyn FileIo,
    dir: &Path,
    disk_consistent_lsn: Lsn,
) -> Result<LayerMap, RepositoryError> {
    let mut map = LayerMap::new(Lsn(disk_consistent_lsn.0 + 1));
    let mut removed_any = false;
    for entry in io.list_dir(dir).map_err(io_error(dir))? {
        let path = dir.join(&entry.name);
        if entry.is_dir || entry.name == METADATA_FILE_NAME {
            continue;
        }
        if entry.name.ends_with(TEMP_SUFFIX) {
            io.remove_file(&path).map_err(io_error(&path))?;
            removed_any = true;
            continue;
        }
        let Some(desc) = LayerDesc::parse_file_name(&entry.name) else {
            continue; // Not ours; leave it alone.
        };
        if !is_committed(&desc, disk_consistent_lsn) {
            io.remove_file(&path).map_err(io_error(&path))?;
            removed_any = true;
            continue;
        }
        let handle = Arc::new(LayerHandle::new(desc.clone(), path));
        match desc.kind {
            LayerKind::Delta => map.insert_delta(handle),
            LayerKind::Image => map.insert_image(handle),
        }
    }
    if removed_any {
        io.sync_dir(dir).map_err(io_error(dir))?;
    }
    check_deltas_disjoint(&map, dir)?;
    Ok(map)
}

/// Whether a layer file lies entirely at or below the disk-consistent LSN
/// (a delta from a flush ends at `disk_consistent_lsn + 1` at most).
fn is_committed(desc: &LayerDesc, disk_consistent_lsn: Lsn) -> bool {
    desc.lsn_range.end.0 <= disk_consistent_lsn.0.saturating_add(1)
}

/// The read path relies on delta files covering disjoint LSN ranges.
fn check_deltas_disjoint(map: &LayerMap, dir: &Path) -> Result<(), RepositoryError> {
    for pair in map.deltas.windows(2) {
        if pair[0].desc().lsn_range.end > pair[1].desc().lsn_range.start {
            return Err(RepositoryError::Corrupt {
                path: dir.to_owned(),
                reason: format!(
                    "delta layers {} and {} overlap in LSN",
                    pair[0].desc(),
                    pair[1].desc()
                ),
            });
        }
    }
    Ok(())
}
