//! The one place where the pageserver calls the storage crate's layer
//! lifecycle (compaction and image creation, sizes, layer statistics) and
//! turns its results into what the API and the metrics report.

use std::collections::HashMap;

use postgres_wal::Lsn;

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

/// Logical size at `lsn`: the bytes of every file a base backup at `lsn`
/// would hold (relations, SLRUs, control files). Computed through the base
/// backup's file list rather than `Timeline::logical_size_bytes`, because
/// only the data-directory layer knows which relations a database's
/// relation directory still lists (a dropped relation keeps its size key).
pub fn logical_size_bytes(timeline: &storage::Timeline, lsn: Lsn) -> Result<u64, LogicalSizeError> {
    datadir::Basebackup::prepare(timeline, Some(lsn))
        .map(|backup| backup.total_size_bytes())
        .map_err(|error| LogicalSizeError {
            lsn,
            reason: error.to_string(),
        })
}
