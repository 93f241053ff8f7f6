//! Creating a timeline directory, and reopening one after a restart.
//!
//! Reopening applies the durability contract: temp files are garbage from an
//! interrupted write, and layer files above the disk-consistent LSN were
//! never committed by a metadata update, so both are deleted; the WAL source
//! re-feeds everything above `disk_consistent_lsn`. Leftovers of an
//! interrupted compaction (a partial L1 set, or L0s an L1 set replaced) are
//! deleted too ([`crate::policy::interrupted_compaction_garbage`]).

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
use crate::policy::{interrupted_compaction_garbage, LayerInfo};
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
    let mut found = Vec::new();
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
        found.push((desc, path));
    }
    // A compaction interrupted between writing its L1 files and deleting
    // the L0s they replace leaves both; keep exactly one copy.
    let deltas: Vec<(usize, LayerInfo)> = found
        .iter()
        .enumerate()
        .filter(|(_, (d, _))| d.kind == LayerKind::Delta)
        .map(|(i, (d, _))| {
            let info = LayerInfo {
                is_image: false,
                key_range: d.key_range.clone(),
                lsn_range: d.lsn_range.clone(),
            };
            (i, info)
        })
        .collect();
    let infos: Vec<LayerInfo> = deltas.iter().map(|(_, info)| info.clone()).collect();
    let garbage: Vec<usize> = interrupted_compaction_garbage(&infos)
        .into_iter()
        .map(|g| deltas[g].0)
        .collect();
    for (i, (desc, path)) in found.into_iter().enumerate() {
        if garbage.contains(&i) {
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

/// The read path relies on the delta files holding any one key covering
/// disjoint LSN ranges (deltas sorted by LSN start).
fn check_deltas_disjoint(map: &LayerMap, dir: &Path) -> Result<(), RepositoryError> {
    for (i, a) in map.deltas.iter().enumerate() {
        let (a, rest) = (a.desc(), &map.deltas[i + 1..]);
        for b in rest.iter().map(|b| b.desc()) {
            if b.lsn_range.start >= a.lsn_range.end {
                break;
            }
            if a.key_range.start < b.key_range.end && b.key_range.start < a.key_range.end {
                return Err(RepositoryError::Corrupt {
                    path: dir.to_owned(),
                    reason: format!("delta layers {a} and {b} overlap in keys and LSNs"),
                });
            }
        }
    }
    Ok(())
}
