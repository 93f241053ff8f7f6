//! Uploading a tenant to remote storage, and keeping it there.
//!
//! One [`RemoteTenant`] per tenant holds its generation and what was last
//! uploaded per timeline (the last `index_part.json` written). An upload
//! round, run every second by the tenant's upload task and once more at
//! shutdown, does for each timeline:
//!
//! 1. snapshot the timeline: its metadata file bytes, then its layer files
//!    (`storage::Timeline::layer_files`), then the metadata again — retried
//!    until both reads agree, so the snapshot is one the storage crate
//!    itself would reopen consistently;
//! 2. upload every layer file the last index does not hold (named
//!    `<layer>-<our generation>`, verified by size; the index records size
//!    and CRC-32C);
//! 3. only then write `index_part.json-<our generation>`, so an index never
//!    names a missing object;
//! 4. queue the objects of layers the new index dropped (GC, compaction) for
//!    deletion ([`super::deletion`]), which runs only after validating, in
//!    a listing taken after the index uploads, that no newer generation
//!    exists.
//!
//! WAL objects a round uploaded are remembered ([`Unnamed`]) until an
//! index of the timeline is uploaded: if the round's index upload failed,
//! the next successful index either names them again or they are
//! orphans and go through the deletion queue like dropped objects.
//!
//! Detecting layers by diffing the layer list with the index works however
//! the storage crate produces its files (flush, compaction, image layers).
//! A tenant whose generation turns out to be stale stops uploading and
//! deleting for good ([`RemoteTenant::is_stale`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use remote_storage::layout;
use remote_storage::{Generation, IndexPart, LayerMetadata, Remote, RemoteError, RemotePath};
use storage::metadata::{TimelineMetadata, METADATA_FILE_NAME};

use super::deletion::DeletionQueue;
use super::remote_wal;
use crate::ids::{TenantId, TimelineId};
use crate::timeline::Timeline;

/// How often the upload task looks for new layers.
pub const UPLOAD_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Why an upload round stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// Remote storage failed (after retries) or was cancelled.
    #[error("remote storage: {0}")]
    Remote(#[from] RemoteError),
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Local {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The local timeline changed under the snapshot too often.
    #[error("timeline {0} kept changing while being snapshotted")]
    Unstable(TimelineId),
    /// A newer generation holds the tenant: this pageserver must not write.
    #[error("attachment is stale: generation {newer} is newer than ours ({ours})")]
    Stale {
        /// Ours.
        ours: Generation,
        /// The newer one.
        newer: Generation,
    },
}

/// The remote side of one tenant.
#[derive(Debug)]
pub struct RemoteTenant {
    remote: Remote,
    tenant_id: String,
    generation: Generation,
    /// Last index uploaded (or downloaded at attach) per timeline.
    uploaded: Mutex<HashMap<TimelineId, IndexPart>>,
    /// Set once a newer generation is seen, or by `location_config`
    /// `AttachedStale`: no more uploads or deletions.
    stale: AtomicBool,
    deletions: DeletionQueue,
    /// WAL objects uploaded that no uploaded index names yet.
    unnamed: Mutex<Unnamed>,
    /// Serialises upload rounds (the task's and the final one at shutdown).
    round_lock: tokio::sync::Mutex<()>,
}

/// A consistent local picture of one timeline.
struct Snapshot {
    metadata_bytes: Vec<u8>,
    metadata: TimelineMetadata,
    layers: Vec<String>,
}

impl RemoteTenant {
    /// The remote side of `tenant_id` in `generation`.
    pub fn new(remote: Remote, tenant_id: TenantId, generation: Generation) -> RemoteTenant {
        RemoteTenant {
            deletions: DeletionQueue::new(remote.clone(), tenant_id.to_string(), generation),
            remote,
            tenant_id: tenant_id.to_string(),
            generation,
            uploaded: Mutex::new(HashMap::new()),
            stale: AtomicBool::new(false),
            unnamed: Mutex::new(Unnamed::default()),
            round_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The remote storage handle.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Our generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Whether uploads and deletions are stopped.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Stops (or resumes) uploads and deletions.
    pub fn set_stale(&self, stale: bool) {
        self.stale.store(stale, Ordering::Relaxed);
    }

    /// Remembers indexes downloaded at attach, so only new layers upload.
    pub fn seed(&self, indexes: Vec<(TimelineId, IndexPart)>) {
        self.uploaded.lock().extend(indexes);
    }

    /// The last index uploaded (or downloaded) for a timeline.
    pub fn uploaded_index(&self, timeline: TimelineId) -> Option<IndexPart> {
        self.uploaded.lock().get(&timeline).cloned()
    }

    /// Every index uploaded (or downloaded), to seed a successor (a
    /// generation raise copies the index forward instead of uploading
    /// every layer again).
    pub fn uploaded_indexes(&self) -> Vec<(TimelineId, IndexPart)> {
        let uploaded = self.uploaded.lock();
        uploaded.iter().map(|(id, i)| (*id, i.clone())).collect()
    }

    /// The newest remote index of a timeline at or below our generation,
    /// dropping layers whose local file (or eviction marker) has another
    /// size: after a restart the others need no upload. `None` when
    /// there is none or it cannot be read (then everything uploads).
    async fn remote_index(&self, id: TimelineId, dir: &Path) -> Option<IndexPart> {
        let timeline = id.to_string();
        let listing = self
            .remote
            .list(&layout::timeline_path(&self.tenant_id, &timeline).ok()?)
            .await
            .ok()?;
        let by_timeline = layout::indexes_by_timeline(listing.iter().map(|m| &m.path));
        let generations = by_timeline.get(&timeline)?;
        let layout::IndexChoice::Load(found) = layout::choose_index(generations, self.generation)
        else {
            return None;
        };
        let tenant = self.tenant_id.parse().ok()?;
        let mut index = super::attach::fetch_index(&self.remote, tenant, id, found)
            .await
            .ok()?;
        let mut kept = BTreeMap::new();
        for (name, layer) in std::mem::take(&mut index.layers) {
            let local = dir.join(&name);
            let size = match tokio::fs::metadata(&local).await {
                Ok(meta) => Some(meta.len()),
                Err(_) => evicted_layer_metadata(&local).await.map(|m| m.file_size),
            };
            // Absent locally: kept, so the new index's diff queues it for
            // deletion. Different locally: uploaded again.
            if size.is_none_or(|size| size == layer.file_size) {
                kept.insert(name, layer);
            }
        }
        index.layers = kept;
        Some(index)
    }

    /// What the last index uploaded for a timeline makes durable remotely
    /// (layers and WAL objects).
    pub fn remote_consistent_lsn(&self, timeline: TimelineId) -> Option<u64> {
        self.uploaded
            .lock()
            .get(&timeline)
            .map(IndexPart::remote_consistent_lsn)
    }

    /// Writes the attachment marker of our generation (`generation-<gen>`).
    pub async fn write_marker(&self) -> Result<(), RemoteError> {
        let path = layout::generation_marker_path(&self.tenant_id, self.generation)?;
        self.remote.put(&path, Bytes::new()).await
    }

    /// Fails with `Stale` if a newer generation's marker exists.
    pub async fn validate_generation(&self) -> Result<(), UploadError> {
        let tenant = layout::tenant_path(&self.tenant_id)?;
        let listing = self.remote.list(&tenant).await?;
        let newest = layout::latest_marker(listing.iter().map(|m| &m.path));
        match newest {
            Some(newer) if newer > self.generation => {
                if !self.stale.swap(true, Ordering::Relaxed) {
                    tracing::warn!(tenant_id = %self.tenant_id, ours = %self.generation, %newer,
                        "a newer generation holds this tenant: uploads and deletions stop");
                }
                Err(UploadError::Stale {
                    ours: self.generation,
                    newer,
                })
            }
            _ => Ok(()),
        }
    }

    /// Uploads every timeline's new layers and index, then runs the
    /// validated deletions.
    pub async fn upload_round(&self, timelines: &[Arc<Timeline>]) -> Result<(), UploadError> {
        let _round = self.round_lock.lock().await;
        if self.is_stale() {
            return Ok(());
        }
        // Validated (one listing) before the first write of the round, so
        // an idle tenant costs no requests and a stale one writes nothing.
        let mut validated = false;
        for timeline in timelines {
            if timeline.storage().broken_reason().is_some() {
                continue;
            }
            self.upload_timeline(timeline, &mut validated).await?;
        }
        if !self.deletions.is_empty() {
            // A fresh validation *after* the round's index uploads, never
            // the one from its start: an attach lists indexes only after
            // writing its marker, so either this listing sees that marker
            // (we are stale: nothing is deleted) or the attach sees the
            // index just uploaded, which names none of these objects.
            self.validate_generation().await?;
            self.deletions.run().await?;
        }
        Ok(())
    }

    async fn ensure_validated(&self, validated: &mut bool) -> Result<(), UploadError> {
        if !*validated {
            self.validate_generation().await?;
            *validated = true;
        }
        Ok(())
    }

    /// Uploads one timeline; true when a new index was written.
    async fn upload_timeline(
        &self,
        timeline: &Timeline,
        validated: &mut bool,
    ) -> Result<bool, UploadError> {
        let storage = Arc::clone(timeline.storage());
        let snapshot = tokio::task::spawn_blocking(move || snapshot(&storage))
            .await
            .map_err(|error| UploadError::Local {
                path: "snapshot".into(),
                source: std::io::Error::other(error),
            })??;
        let id = timeline.id();
        let known = self.uploaded.lock().get(&id).cloned();
        let previous = match known {
            Some(index) => Some(index),
            None => {
                let found = self.remote_index(id, timeline.dir()).await;
                if let Some(index) = &found {
                    timeline.set_remote_consistent_lsn(postgres_wal::Lsn(
                        index.remote_consistent_lsn(),
                    ));
                    self.uploaded.lock().insert(id, index.clone());
                }
                found
            }
        };
        let mut layers: BTreeMap<String, LayerMetadata> = BTreeMap::new();
        for name in &snapshot.layers {
            if let Some(known) = previous.as_ref().and_then(|index| index.layers.get(name)) {
                layers.insert(name.clone(), known.clone());
                continue;
            }
            self.ensure_validated(validated).await?;
            match self.upload_layer(timeline.dir(), id, name).await {
                Ok(uploaded) => {
                    layers.insert(name.clone(), uploaded);
                }
                // Removed locally (GC, compaction) since the snapshot: the
                // next round's snapshot will not list it.
                Err(UploadError::Local { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(false)
                }
                Err(other) => return Err(other),
            }
        }
        let previous_wal = previous.as_ref().map(|i| i.wal.clone()).unwrap_or_default();
        let planned = remote_wal::plan(
            timeline,
            &previous_wal,
            snapshot.metadata.disk_consistent_lsn,
        );
        if planned.uploads() {
            self.ensure_validated(validated).await?;
        }
        let wal =
            remote_wal::upload(&self.remote, &self.tenant_id, self.generation, id, planned).await?;
        // Remembered before the index upload: if that fails, nothing names
        // them and a later round's chain may not either.
        let written = wal
            .uploaded
            .iter()
            .map(|object| layout::wal_path(&self.tenant_id, &id.to_string(), object))
            .collect::<Result<Vec<_>, _>>()?;
        self.unnamed.lock().uploaded(id, written);
        let mut index = self.build_index(id, &snapshot, layers, timeline.branch_name());
        index.wal = wal.chain;
        if let Some(previous) = previous.as_ref().filter(|previous| **previous == index) {
            // Nothing new: the last index stays the newest, so what it does
            // not name from earlier failed rounds is garbage now.
            self.settle_unnamed(id, previous)?;
            return Ok(false);
        }
        self.ensure_validated(validated).await?;
        let path = layout::index_path(&self.tenant_id, &id.to_string(), self.generation)?;
        self.remote.put(&path, Bytes::from(index.encode())).await?;
        self.settle_unnamed(id, &index)?;
        if let Some(previous) = previous {
            for (name, layer) in &previous.layers {
                if !index.layers.contains_key(name) {
                    let object = layout::layer_path(
                        &self.tenant_id,
                        &id.to_string(),
                        name,
                        layer.generation,
                    )?;
                    self.deletions.push(object);
                }
            }
        }
        for object in &wal.dropped {
            // A name the new chain still holds is never deleted.
            if !index
                .wal
                .iter()
                .any(|o| o.name() == object.name() && o.generation == object.generation)
            {
                self.deletions
                    .push(layout::wal_path(&self.tenant_id, &id.to_string(), object)?);
            }
        }
        tracing::debug!(tenant_id = %self.tenant_id, timeline_id = %id,
            layers = index.layers.len(), lsn = index.disk_consistent_lsn,
            wal_objects = index.wal.len(), remote_lsn = index.remote_consistent_lsn(), "index uploaded");
        timeline.set_remote_consistent_lsn(postgres_wal::Lsn(index.remote_consistent_lsn()));
        self.uploaded.lock().insert(id, index);
        Ok(true)
    }

    /// `index` (of timeline `id`) is uploaded and the newest: queues the
    /// WAL objects uploaded earlier that it does not name for deletion, and
    /// unqueues any object it names (the same name uploaded again).
    fn settle_unnamed(&self, id: TimelineId, index: &IndexPart) -> Result<(), UploadError> {
        let named = index_objects(&self.tenant_id, id, index)?;
        let orphans = self.unnamed.lock().settle(id, &named);
        for orphan in orphans {
            tracing::debug!(tenant_id = %self.tenant_id, timeline_id = %id, %orphan,
                "WAL object named by no index: queued for deletion");
            self.deletions.push(orphan);
        }
        self.deletions.forget(|path| named.contains(path));
        Ok(())
    }

    async fn upload_layer(
        &self,
        dir: &Path,
        timeline: TimelineId,
        name: &str,
    ) -> Result<LayerMetadata, UploadError> {
        let file = dir.join(name);
        let data = match tokio::fs::read(&file).await {
            Ok(data) => data,
            Err(source) => {
                // An evicted layer is already in remote storage: its marker
                // says where (after a restart the index is not seeded).
                if let Some(metadata) = evicted_layer_metadata(&file).await {
                    return Ok(metadata);
                }
                return Err(UploadError::Local {
                    path: file.display().to_string(),
                    source,
                });
            }
        };
        let metadata = LayerMetadata {
            file_size: data.len() as u64,
            crc32c: crc32c::crc32c(&data),
            generation: self.generation,
        };
        let path = layout::layer_path(
            &self.tenant_id,
            &timeline.to_string(),
            name,
            self.generation,
        )?;
        self.remote.put(&path, Bytes::from(data)).await?;
        Ok(metadata)
    }

    fn build_index(
        &self,
        id: TimelineId,
        snapshot: &Snapshot,
        layers: BTreeMap<String, LayerMetadata>,
        branch_name: Option<String>,
    ) -> IndexPart {
        let m = &snapshot.metadata;
        IndexPart {
            version: remote_storage::index::INDEX_FORMAT_VERSION,
            generation: self.generation,
            timeline_id: id.to_string(),
            disk_consistent_lsn: m.disk_consistent_lsn.0,
            prev_record_lsn: m.prev_record_lsn.0,
            ancestor_timeline_id: m.ancestor.map(|(a, _)| a.to_string()),
            ancestor_lsn: m.ancestor.map(|(_, lsn)| lsn.0),
            gc_cutoff_lsn: m.gc_cutoff.0,
            initdb_lsn: m.initdb_lsn.0,
            pg_version: m.pg_version,
            metadata_bytes: IndexPart::encode_metadata(&snapshot.metadata_bytes),
            layers,
            wal: Vec::new(),
            branch_name,
        }
    }

    /// Forgets a timeline and deletes its remote objects (after validating
    /// our generation). Used by timeline deletion.
    pub async fn delete_timeline(&self, id: TimelineId) -> Result<(), UploadError> {
        let _round = self.round_lock.lock().await;
        self.uploaded.lock().remove(&id);
        if self.is_stale() {
            return Ok(());
        }
        self.validate_generation().await?;
        let prefix = layout::timeline_path(&self.tenant_id, &id.to_string())?;
        for object in self.remote.list(&prefix).await? {
            self.remote.delete(&object.path).await?;
        }
        Ok(())
    }

    /// Deletes every remote object of the tenant (tenant deletion), after
    /// validating our generation.
    pub async fn delete_all(&self) -> Result<(), UploadError> {
        let _round = self.round_lock.lock().await;
        self.uploaded.lock().clear();
        match self.validate_generation().await {
            // A newer attachment owns the remote data: only local goes.
            Err(UploadError::Stale { .. }) => return Ok(()),
            other => other?,
        }
        let prefix = layout::tenant_path(&self.tenant_id)?;
        for object in self.remote.list(&prefix).await? {
            self.remote.delete(&object.path).await?;
        }
        Ok(())
    }
}

/// WAL objects uploaded that no uploaded index names yet, per timeline.
/// An upload round writes its WAL objects before its index; if the index
/// upload then fails, nothing names them, and the next round may plan a
/// different chain (a longer object replacing a partial one, a higher
/// `disk_consistent_lsn`). The next index that is uploaded (or, if nothing
/// changed, the last one) decides: what it does not name is an orphan.
/// Lost on restart and on a generation raise (a new [`RemoteTenant`]):
/// those orphans stay until the timeline or tenant is deleted.
#[derive(Debug, Default)]
struct Unnamed {
    pending: HashMap<TimelineId, BTreeSet<RemotePath>>,
}

impl Unnamed {
    /// Objects just written for timeline `id`.
    fn uploaded(&mut self, id: TimelineId, paths: impl IntoIterator<Item = RemotePath>) {
        let mut paths = paths.into_iter().peekable();
        if paths.peek().is_some() {
            self.pending.entry(id).or_default().extend(paths);
        }
    }

    /// An index of `id` naming `named` is now the newest uploaded one: the
    /// pending objects it does not name, to delete. Forgets them all.
    fn settle(&mut self, id: TimelineId, named: &HashSet<RemotePath>) -> Vec<RemotePath> {
        let Some(pending) = self.pending.remove(&id) else {
            return Vec::new();
        };
        pending
            .into_iter()
            .filter(|path| !named.contains(path))
            .collect()
    }
}

/// Every object an index of timeline `id` names (layers and WAL).
fn index_objects(
    tenant_id: &str,
    id: TimelineId,
    index: &IndexPart,
) -> Result<HashSet<RemotePath>, RemoteError> {
    let timeline = id.to_string();
    let mut named = HashSet::new();
    for (name, layer) in &index.layers {
        named.insert(layout::layer_path(
            tenant_id,
            &timeline,
            name,
            layer.generation,
        )?);
    }
    for object in &index.wal {
        named.insert(layout::wal_path(tenant_id, &timeline, object)?);
    }
    Ok(named)
}

/// Reads metadata, layers, metadata until the two metadata reads agree.
/// The index entry of an evicted layer file, from its marker.
async fn evicted_layer_metadata(file: &Path) -> Option<LayerMetadata> {
    let bytes = tokio::fs::read(storage::io::marker_path(file)).await.ok()?;
    let marker = storage::io::EvictedMarker::decode(&bytes).ok()?;
    let object = marker.source.rsplit('/').next()?;
    let (_, generation) = Generation::parse_suffixed(object)?;
    Some(LayerMetadata {
        file_size: marker.file_size,
        crc32c: marker.crc32c,
        generation,
    })
}

fn snapshot(storage: &storage::Timeline) -> Result<Snapshot, UploadError> {
    let path = storage.dir().join(METADATA_FILE_NAME);
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| UploadError::Local {
            path: path.display().to_string(),
            source,
        })
    };
    for _ in 0..10 {
        let before = read(&path)?;
        let layers: Vec<String> = storage
            .layer_files()
            .iter()
            .map(|desc| desc.file_name())
            .collect();
        let after = read(&path)?;
        if before == after {
            let metadata =
                TimelineMetadata::decode(&after).map_err(|error| UploadError::Local {
                    path: path.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
                })?;
            // Files above the durable LSN are not committed yet; the storage
            // crate deletes them when it reopens, so they are not uploaded.
            let committed = storage
                .layer_files()
                .iter()
                .filter(|desc| desc.lsn_range.end.0 <= metadata.disk_consistent_lsn.0 + 1)
                .map(|desc| desc.file_name())
                .filter(|name| layers.contains(name))
                .collect();
            return Ok(Snapshot {
                metadata_bytes: after,
                metadata,
                layers: committed,
            });
        }
    }
    Err(UploadError::Unstable(storage.id()))
}

/// Runs upload rounds every [`UPLOAD_PERIOD`] until the tenant is gone or
/// cancelled; failures are logged and retried next round (the timeline
/// keeps serving meanwhile). The tenant's current [`RemoteTenant`] is read
/// each round, so a generation change takes effect at once.
pub async fn upload_task(
    tenant: std::sync::Weak<super::Tenant>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut marker_written: Option<Generation> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(UPLOAD_PERIOD) => {}
        }
        let Some(tenant) = tenant.upgrade() else {
            return;
        };
        let Some(remote) = tenant.remote() else {
            continue;
        };
        if marker_written != Some(remote.generation()) && !remote.is_stale() {
            match remote.write_marker().await {
                Ok(()) => marker_written = Some(remote.generation()),
                Err(error) => {
                    tracing::warn!(tenant_id = %tenant.id(), %error, "cannot write the generation marker");
                    continue;
                }
            }
        }
        let timelines = tenant.timelines();
        drop(tenant);
        if let Err(error) = remote.upload_round(&timelines).await {
            if !matches!(
                error,
                UploadError::Stale { .. } | UploadError::Remote(RemoteError::Cancelled)
            ) {
                tracing::warn!(tenant_id = %remote.tenant_id, %error, "upload round failed; retrying");
            }
        }
    }
}

/// How long the final upload at shutdown or detach may take.
pub const FINAL_UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Flushes every timeline's open layer to a layer file and uploads what is
/// new, within [`FINAL_UPLOAD_TIMEOUT`] (graceful shutdown, detach, and
/// `location_config` transitions that ask for a flush). Failures are
/// logged: nothing is lost locally, the next attachment uploads it.
pub async fn final_upload(tenant: &super::Tenant) {
    final_upload_within(tenant, FINAL_UPLOAD_TIMEOUT).await;
}

/// [`final_upload`] with a chosen time limit (`location_config`'s `flush_ms`).
pub async fn final_upload_within(tenant: &super::Tenant, limit: std::time::Duration) {
    let Some(remote) = tenant.remote() else {
        return;
    };
    if remote.is_stale() {
        return;
    }
    let timelines = tenant.timelines();
    for timeline in &timelines {
        let storage = Arc::clone(timeline.storage());
        if storage.broken_reason().is_some() {
            continue;
        }
        let flushed = tokio::task::spawn_blocking(move || storage.freeze_and_flush()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(tenant_id = %tenant.id(), timeline_id = %timeline.id(), %error,
                "flush before the final upload failed");
        }
    }
    match tokio::time::timeout(limit, remote.upload_round(&timelines)).await {
        Ok(Ok(())) => tracing::info!(tenant_id = %tenant.id(), "final upload done"),
        Ok(Err(error)) => tracing::warn!(tenant_id = %tenant.id(), %error, "final upload failed"),
        Err(_) => tracing::warn!(tenant_id = %tenant.id(), "final upload timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remote_storage::WalObject;

    const TENANT: &str = "0123456789abcdef0123456789abcdef";

    fn timeline() -> TimelineId {
        crate::ids::parse_timeline_id("fedcba9876543210fedcba9876543210").expect("valid id")
    }

    fn object(start: u64, end: u64, generation: u32) -> WalObject {
        WalObject {
            start_lsn: start,
            end_lsn: end,
            crc32c: 7,
            generation: Generation(generation),
            stream_lsn: 0,
        }
    }

    fn path(object: &WalObject) -> RemotePath {
        layout::wal_path(TENANT, &timeline().to_string(), object).expect("valid path")
    }

    fn index_naming(wal: Vec<WalObject>) -> IndexPart {
        IndexPart {
            version: remote_storage::index::INDEX_FORMAT_VERSION,
            generation: Generation(2),
            timeline_id: timeline().to_string(),
            disk_consistent_lsn: 0,
            prev_record_lsn: 0,
            ancestor_timeline_id: None,
            ancestor_lsn: None,
            gc_cutoff_lsn: 0,
            initdb_lsn: 0,
            pg_version: 15,
            metadata_bytes: String::new(),
            layers: BTreeMap::from([(
                "layer".to_owned(),
                LayerMetadata {
                    file_size: 1,
                    crc32c: 1,
                    generation: Generation(1),
                },
            )]),
            wal,
            branch_name: None,
        }
    }

    /// A round's index upload failed after it wrote `0..200`; the next
    /// round's plan (still from the old index) writes `0..300` and its
    /// index names only that: `0..200` is the orphan, `0..300` is not.
    #[test]
    fn objects_of_a_round_whose_index_failed_are_orphans_of_the_next_index() {
        let mut unnamed = Unnamed::default();
        let failed_round = object(0, 200, 2);
        unnamed.uploaded(timeline(), [path(&failed_round)]);
        let next_round = object(0, 300, 2);
        unnamed.uploaded(timeline(), [path(&next_round)]);
        let index = index_naming(vec![next_round]);
        let named = index_objects(TENANT, timeline(), &index).expect("paths");
        assert_eq!(named.len(), 2, "the layer and the WAL object: {named:?}");
        assert_eq!(
            unnamed.settle(timeline(), &named),
            vec![path(&failed_round)]
        );
        // Settled: nothing is reported twice.
        assert!(unnamed.settle(timeline(), &named).is_empty());
    }

    /// The same range uploaded again and named by the next index is kept.
    #[test]
    fn an_object_the_next_index_names_is_not_an_orphan() {
        let mut unnamed = Unnamed::default();
        let again = object(0, 200, 2);
        unnamed.uploaded(timeline(), [path(&again)]);
        unnamed.uploaded(timeline(), [path(&again)]);
        let named = index_objects(TENANT, timeline(), &index_naming(vec![again])).expect("paths");
        assert!(unnamed.settle(timeline(), &named).is_empty());
    }

    /// Objects of another timeline are not settled by this one's index.
    #[test]
    fn settling_is_per_timeline() {
        let mut unnamed = Unnamed::default();
        let other =
            crate::ids::parse_timeline_id("00000000000000000000000000000001").expect("valid id");
        let object = object(0, 100, 2);
        unnamed.uploaded(other, [path(&object)]);
        let named = index_objects(TENANT, timeline(), &index_naming(vec![])).expect("paths");
        assert!(unnamed.settle(timeline(), &named).is_empty());
        assert_eq!(unnamed.settle(other, &HashSet::new()), vec![path(&object)]);
    }
}
