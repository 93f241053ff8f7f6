//! Remote WAL: the WAL a timeline holds above its last uploaded layers,
//! uploaded from the local WAL store so that a pageserver whose disk is
//! lost loses at most one upload period (a second), and re-ingested from
//! remote storage when a tenant is attached.
//!
//! Upload ([`upload_wal`]) runs inside each upload round
//! ([`super::upload`]), after the round's layers and before its index: the
//! pure plan ([`remote_storage::wal::plan_upload`]) says which objects of
//! the last index stay, which go (wholly below the new index's
//! `disk_consistent_lsn`, or superseded), and which ranges to read from the
//! receiver's published [`walreceiver::ReadView`] (never the writer's
//! store: no lock is taken across the reads) and upload. The index then
//! lists the chain, and the dropped objects go through the deletion queue
//! like dropped layers. `remote_consistent_lsn` is the chain's end.
//!
//! Recovery ([`recover_tenant`]) runs at the end of an attach, once the
//! timelines are open at their index's `disk_consistent_lsn`: for each
//! timeline, parents first (a branch's WAL may read its parent's pages),
//! the objects above that LSN are downloaded (verified by size and CRC-32C)
//! and fed through the same ingest as streamed WAL
//! ([`crate::wal_source::IngestSink`]), starting where a WAL receiver
//! would (`max(last_record_lsn, first object's start)`); then the timeline
//! is flushed, so the re-ingested WAL is in local layers before the tenant
//! is active and uploads go on from there.

use std::sync::Arc;

use bytes::Bytes;
use postgres_wal::Lsn;
use remote_storage::wal::{self, LocalWal, WalObject};
use remote_storage::{layout, Generation, IndexPart, Remote, RemoteError};

use crate::ids::TimelineId;
use crate::timeline::Timeline;
use crate::wal_source::{cluster_facts, IngestSink};

/// A timeline's WAL chain after an upload round, and the objects of the
/// previous chain it no longer holds (to delete once the index naming the
/// new chain is uploaded).
#[derive(Debug, Default)]
pub struct WalRound {
    /// The new chain, oldest first.
    pub chain: Vec<WalObject>,
    /// Objects to delete after the index upload.
    pub dropped: Vec<WalObject>,
    /// Objects this round wrote or tried to write (a failed put may leave
    /// a torn one): the caller tracks them until an index names them or
    /// they are found orphaned (`upload::Unnamed`).
    pub uploaded: Vec<WalObject>,
}

/// What the local WAL store offers for the chain, from the running
/// receiver's last published view.
fn local_wal(timeline: &Timeline, disk_lsn: Lsn) -> Option<(Arc<walreceiver::ReadView>, LocalWal)> {
    let (view, stream_start, head) = timeline.durable_wal()?;
    let (start, end) = (view.start_lsn()?, view.end_lsn()?);
    let from = if start <= disk_lsn {
        Some(disk_lsn.0)
    } else if start == stream_start && head == Some(disk_lsn) {
        // A source attached at exactly these layers: its stream starts at
        // the synthesised checkpoint's place, the bytes between the layers'
        // end and it hold no record.
        Some(stream_start.0)
    } else {
        None
    };
    let local = LocalWal {
        stream_lsn: stream_start.0,
        range: start.0..end.0,
        from,
    };
    Some((view, local))
}

/// What an upload round will do with a timeline's WAL ([`plan`]).
pub struct PlannedWal {
    plan: wal::WalUploadPlan,
    local: Option<(Arc<walreceiver::ReadView>, LocalWal)>,
}

impl PlannedWal {
    /// Whether anything will be uploaded (the caller validates its
    /// generation first; an idle timeline costs no request).
    pub fn uploads(&self) -> bool {
        self.local.is_some() && !self.plan.upload.is_empty()
    }
}

/// Plans the WAL of the index about to be written at `disk_lsn` (its
/// `disk_consistent_lsn`), from the last index's chain and the local store.
pub fn plan(timeline: &Timeline, previous: &[WalObject], disk_lsn: Lsn) -> PlannedWal {
    let local = local_wal(timeline, disk_lsn);
    let plan = wal::plan_upload(previous, disk_lsn.0, local.as_ref().map(|(_, l)| l));
    PlannedWal { plan, local }
}

/// Uploads the planned ranges and returns the chain the new index lists.
/// Stops at the first piece it cannot read or upload (the chain then ends
/// before it: retried next round).
pub async fn upload(
    remote: &Remote,
    tenant_id: &str,
    generation: Generation,
    timeline_id: TimelineId,
    planned: PlannedWal,
) -> Result<WalRound, RemoteError> {
    let PlannedWal { plan, local } = planned;
    let mut round = WalRound {
        chain: plan.keep,
        dropped: plan.drop,
        uploaded: Vec::new(),
    };
    let Some((view, local)) = local else {
        return Ok(round);
    };
    let timeline_id = timeline_id.to_string();
    let mut replaced_ok = plan.replaces.is_empty();
    for range in plan.upload {
        let reader = Arc::clone(&view);
        let wanted = range.clone();
        let read = tokio::task::spawn_blocking(move || read_range(&reader, wanted)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => {
                // Truncated under the view (its layers are flushed): the
                // next round's plan starts above it.
                tracing::debug!(timeline_id = %timeline_id, %error, "local WAL not readable; retried next round");
                break;
            }
            Err(join) => {
                tracing::warn!(timeline_id = %timeline_id, %join, "local WAL read failed");
                break;
            }
        };
        let object = WalObject {
            start_lsn: range.start,
            end_lsn: range.end,
            crc32c: crc32c::crc32c(&bytes),
            generation,
            stream_lsn: local.stream_lsn,
        };
        let path = layout::wal_path(tenant_id, &timeline_id, &object)?;
        // Listed before the put: a failed (torn) put may leave it behind.
        round.uploaded.push(object);
        if let Err(error) = remote.put(&path, Bytes::from(bytes)).await {
            if matches!(error, RemoteError::Cancelled) {
                return Err(error);
            }
            tracing::warn!(timeline_id = %timeline_id, %error, %path, "WAL upload failed; retried next round");
            break;
        }
        replaced_ok = true;
        round.chain.push(object);
    }
    if !replaced_ok {
        // The merge failed: the pieces it was to replace stay.
        round
            .dropped
            .retain(|object| !plan.replaces.contains(object));
        round.chain.extend(plan.replaces);
    }
    Ok(round)
}

/// The bytes `range` of the view (blocking file reads).
fn read_range(
    view: &walreceiver::ReadView,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, walreceiver::StoreError> {
    let wanted = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(wanted);
    while bytes.len() < wanted {
        let at = Lsn(range.start + bytes.len() as u64);
        let chunk = view.read(at, wanted - bytes.len())?;
        if chunk.is_empty() {
            return Err(walreceiver::StoreError::OutOfRange {
                from: at,
                start: view.start_lsn().unwrap_or_default(),
                end: view.end_lsn().unwrap_or_default(),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Why re-ingesting remote WAL failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// A WAL object could not be downloaded or did not verify.
    #[error("remote WAL of timeline {timeline}: {source}")]
    Remote {
        /// The timeline.
        timeline: TimelineId,
        /// Why.
        source: RemoteError,
    },
    /// The timeline cannot ingest (unreadable pg_control, a record ingest
    /// refused, a failed flush); the timeline is Broken when ingest failed.
    #[error("cannot re-ingest the remote WAL of timeline {timeline}: {reason}")]
    Ingest {
        /// The timeline.
        timeline: TimelineId,
        /// Why.
        reason: String,
    },
}

/// Re-ingests every timeline's remote WAL above its layers (see the module
/// docs), parents before their branches.
pub async fn recover_tenant(
    tenant: &super::Tenant,
    remote: &Remote,
    indexes: &[(TimelineId, IndexPart)],
) -> Result<(), RecoverError> {
    let tenant_id = tenant.id().to_string();
    for (id, index) in parents_first(indexes) {
        let Some(timeline) = tenant.timeline(id) else {
            continue;
        };
        recover_timeline(&timeline, remote, &tenant_id, &index.wal).await?;
    }
    Ok(())
}

/// `indexes` ordered so that every timeline comes after its ancestor.
fn parents_first<'a>(indexes: &'a [(TimelineId, IndexPart)]) -> Vec<(TimelineId, &'a IndexPart)> {
    let depth = |mut index: &'a IndexPart| {
        let mut depth = 0usize;
        while let Some(parent) = index.ancestor_timeline_id.as_deref() {
            match indexes.iter().find(|(id, _)| id.to_string() == parent) {
                Some((_, parent_index)) if depth < indexes.len() => {
                    index = parent_index;
                    depth += 1;
                }
                _ => break,
            }
        }
        depth
    };
    let mut ordered: Vec<(usize, TimelineId, &'a IndexPart)> = indexes
        .iter()
        .map(|(id, index)| (depth(index), *id, index))
        .collect();
    ordered.sort_by_key(|(depth, id, _)| (*depth, id.to_string()));
    ordered
        .into_iter()
        .map(|(_, id, index)| (id, index))
        .collect()
}

async fn recover_timeline(
    timeline: &Timeline,
    remote: &Remote,
    tenant_id: &str,
    chain: &[WalObject],
) -> Result<(), RecoverError> {
    let id = timeline.id();
    let storage = Arc::clone(timeline.storage());
    let head = storage.last_record_lsn();
    let Some(first) = chain.first() else {
        return Ok(());
    };
    // Where a WAL receiver would resume: the head, unless the stream
    // starts later (a source attached at the head).
    let resume = head.max(Lsn(first.start_lsn));
    let end = Lsn(wal::chain_end(chain, 0));
    if end <= resume {
        return Ok(());
    }
    let ingest_error = |reason: String| RecoverError::Ingest {
        timeline: id,
        reason,
    };
    tracing::info!(timeline_id = %id, from = %resume, to = %end, "re-ingesting WAL from remote storage");
    let sink_storage = Arc::clone(&storage);
    let counters = timeline.ingest_counters();
    let times = Arc::clone(timeline.commit_times());
    let mut sink = tokio::task::spawn_blocking(move || {
        let facts = cluster_facts(&sink_storage, head)?;
        IngestSink::new(sink_storage, resume, facts, counters, times)
            .map_err(|error| format!("cannot start ingest: {error}"))
    })
    .await
    .map_err(|join| ingest_error(join.to_string()))?
    .map_err(ingest_error)?;
    let timeline_id = id.to_string();
    for object in chain.iter().filter(|o| Lsn(o.end_lsn) > resume) {
        let remote_error = |source| RecoverError::Remote {
            timeline: id,
            source,
        };
        let path = layout::wal_path(tenant_id, &timeline_id, object).map_err(remote_error)?;
        let bytes = remote
            .get_verified(&path, object.size_bytes(), object.crc32c)
            .await
            .map_err(remote_error)?;
        let skip = resume.0.saturating_sub(object.start_lsn);
        let from = Lsn(object.start_lsn + skip);
        sink = tokio::task::spawn_blocking(move || {
            let tail = bytes
                .get(usize::try_from(skip).unwrap_or(usize::MAX)..)
                .unwrap_or_default();
            use walreceiver::WalSink;
            sink.consume(from, tail).map(|_| sink)
        })
        .await
        .map_err(|join| ingest_error(join.to_string()))?
        .map_err(|error| ingest_error(error.to_string()))?;
    }
    drop(sink);
    let flushed = tokio::task::spawn_blocking(move || storage.freeze_and_flush())
        .await
        .map_err(|join| ingest_error(join.to_string()))?;
    flushed.map_err(|error| ingest_error(format!("flush after re-ingest: {error}")))?;
    tracing::info!(timeline_id = %id, last_record_lsn = %timeline.last_record_lsn(),
        "remote WAL re-ingested");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(id: TimelineId, parent: Option<TimelineId>) -> (TimelineId, IndexPart) {
        let index = IndexPart {
            version: remote_storage::index::INDEX_FORMAT_VERSION,
            generation: Generation(1),
            timeline_id: id.to_string(),
            disk_consistent_lsn: 0x100,
            prev_record_lsn: 0,
            ancestor_timeline_id: parent.map(|p| p.to_string()),
            ancestor_lsn: parent.map(|_| 0x80),
            gc_cutoff_lsn: 0,
            initdb_lsn: 0x10,
            pg_version: 15,
            metadata_bytes: IndexPart::encode_metadata(&[1u8; 128]),
            layers: Default::default(),
            wal: Vec::new(),
            branch_name: None,
        };
        (id, index)
    }

    /// A branch's WAL is re-ingested after its parent's (and the parent's
    /// parent's), whatever the order the indexes were listed in.
    #[test]
    fn parents_come_before_their_branches() {
        let (root, child, grandchild) = (
            TimelineId::generate(),
            TimelineId::generate(),
            TimelineId::generate(),
        );
        let indexes = vec![
            index(grandchild, Some(child)),
            index(child, Some(root)),
            index(root, None),
        ];
        let order: Vec<TimelineId> = parents_first(&indexes)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(order, vec![root, child, grandchild]);
    }
}
