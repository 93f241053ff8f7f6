//! The one place where the pageserver calls the storage crate's layer
//! lifecycle (compaction and image creation, sizes, layer statistics) and
//! turns its results into what the API and the metrics report.

use std::collections::{HashMap, HashSet};

use datadir::layout;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use storage::{GetError, Key};

pub use storage::CompactionPolicy;

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Image layers written.
    pub images_created: usize,
    /// L0 layers rewritten into L1 layers.
    pub l0_compacted: usize,
}

/// One compaction pass: L0→L1 compaction and image creation as the policy
/// says (`storage::Timeline::compact`; blocking).
pub fn compact(
    timeline: &storage::Timeline,
    policy: &CompactionPolicy,
) -> Result<CompactionOutcome, storage::WriteError> {
    let result = timeline.compact(policy)?;
    Ok(CompactionOutcome {
        images_created: result.images_created,
        l0_compacted: result.layers_removed.len(),
    })
}

/// Level of a layer file for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerLevel {
    /// Delta layers written by flushes.
    L0,
    /// Delta layers written by compaction.
    L1,
    /// Image layers.
    Image,
}

impl LayerLevel {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            LayerLevel::L0 => "L0",
            LayerLevel::L1 => "L1",
            LayerLevel::Image => "image",
        }
    }

    /// Every level, in label order.
    pub const ALL: [LayerLevel; 3] = [LayerLevel::L0, LayerLevel::L1, LayerLevel::Image];
}

/// Count and bytes of one level's layer files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Layer files.
    pub count: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// Layer files of a timeline by level.
pub fn layer_stats(timeline: &storage::Timeline) -> HashMap<LayerLevel, LevelStats> {
    let stats = timeline.layer_stats();
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    HashMap::from([
        (
            LayerLevel::L0,
            LevelStats {
                count: count(stats.l0_count),
                bytes: stats.l0_bytes,
            },
        ),
        (
            LayerLevel::L1,
            LevelStats {
                count: count(stats.l1_count),
                bytes: stats.l1_bytes,
            },
        ),
        (
            LayerLevel::Image,
            LevelStats {
                count: count(stats.image_count),
                bytes: stats.image_bytes,
            },
        ),
    ])
}

/// Bytes of the timeline's layer files (those its layer map reads from; a
/// temporary or orphaned file is not part of the timeline).
pub fn physical_size_bytes(timeline: &storage::Timeline) -> u64 {
    timeline.physical_size_bytes()
}

/// Why a logical size could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("logical size at {lsn}: {reason}")]
pub struct LogicalSizeError {
    /// The LSN asked for.
    pub lsn: Lsn,
    /// What failed.
    pub reason: String,
}

/// Logical size at `lsn`, as storage defines it
/// ([`storage::Timeline::logical_size_bytes_of`]: block count × 8 KiB
/// summed over relation forks), over the forks the relation directories
/// list at `lsn`. Storage owns the definition; this adds only what storage
/// cannot know, the directory encoding: ingest keeps a dropped relation's
/// size key and removes the relation from its database's directory.
/// Cost: the directories plus one read per listed fork.
pub fn logical_size_bytes(timeline: &storage::Timeline, lsn: Lsn) -> Result<u64, LogicalSizeError> {
    let listed = listed_forks(timeline, lsn)?;
    timeline
        .logical_size_bytes_of(lsn, listed)
        .map_err(|error| LogicalSizeError {
            lsn,
            reason: error.to_string(),
        })
}

/// Every relation fork the database list and the relation directories
/// (the shared catalogs' included) name at `lsn`.
fn listed_forks(
    timeline: &storage::Timeline,
    lsn: Lsn,
) -> Result<HashSet<(RelFileNode, ForkNumber)>, LogicalSizeError> {
    let failed = |reason: String| LogicalSizeError { lsn, reason };
    let get = |key: Key| match timeline.get(key, lsn) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(GetError::KeyNotFound { .. }) => Ok(None),
        Err(error) => Err(failed(error.to_string())),
    };
    let databases = match get(Key::db_dir())? {
        Some(bytes) => layout::decode_db_dir(&bytes)
            .ok_or_else(|| failed("the database list is malformed".into()))?,
        None => Vec::new(),
    };
    let mut forks = HashSet::new();
    for (spc_node, db_node) in std::iter::once((layout::GLOBAL_TABLESPACE_OID, 0)).chain(databases)
    {
        let Some(bytes) = get(Key::rel_dir(spc_node, db_node))? else {
            continue;
        };
        let rels = layout::decode_rel_dir(&bytes).ok_or_else(|| {
            failed(format!(
                "the relation list of database {db_node} in tablespace {spc_node} is malformed"
            ))
        })?;
        forks.extend(rels.into_iter().map(|(rel_node, fork)| {
            let rel = RelFileNode {
                spc_node,
                db_node,
                rel_node,
            };
            (rel, fork)
        }));
    }
    Ok(forks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use storage::{Repository, RepositoryConfig, TimelineId, Value};

    /// A dropped relation keeps its size key but leaves its database's
    /// directory: only listed forks count, the shared catalogs' included.
    #[test]
    fn logical_size_counts_the_forks_the_directories_list() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(dir.path(), RepositoryConfig::default()).unwrap();
        let timeline = repo
            .create_timeline(TimelineId([1; 16]), 15, Lsn(0x10))
            .unwrap();
        let rel = |spc_node, db_node, rel_node| RelFileNode {
            spc_node,
            db_node,
            rel_node,
        };
        let (db, global) = (
            layout::DEFAULT_TABLESPACE_OID,
            layout::GLOBAL_TABLESPACE_OID,
        );
        let (table, dropped, shared) = (rel(db, 5, 16384), rel(db, 5, 16385), rel(global, 0, 1262));
        let image = |bytes: Vec<u8>| Value::Image(Bytes::from(bytes));
        let lsn = Lsn(0x100);
        let mut writer = timeline.writer();
        let listed = [
            (Key::db_dir(), layout::encode_db_dir(&[(db, 5)])),
            (
                Key::rel_dir(db, 5),
                layout::encode_rel_dir(&[(16384, ForkNumber::Main), (16384, ForkNumber::Fsm)]),
            ),
            (
                Key::rel_dir(global, 0),
                layout::encode_rel_dir(&[(1262, ForkNumber::Main)]),
            ),
        ];
        for (key, bytes) in listed {
            writer.put(key, lsn, image(bytes)).unwrap();
        }
        for (rel, fork, blocks) in [
            (table, ForkNumber::Main, 10),
            (table, ForkNumber::Fsm, 3),
            (dropped, ForkNumber::Main, 100),
            (shared, ForkNumber::Main, 2),
        ] {
            writer
                .put(Key::rel_size(rel, fork), lsn, Value::rel_size(blocks))
                .unwrap();
        }
        writer.finish(lsn).unwrap();
        assert_eq!(logical_size_bytes(&timeline, lsn).unwrap(), 15 * 8192);
        // Storage alone cannot tell the dropped relation apart.
        assert_eq!(timeline.logical_size_bytes(lsn).unwrap(), 115 * 8192);
    }
}
