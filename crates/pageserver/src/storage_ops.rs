//! The one place where the pageserver calls the storage crate's layer
//! lifecycle: compaction and image creation, sizes, layer statistics.
//!
//! The storage crate is growing a real LSM (issue #11: compressed v2
//! layers, L0→L1 compaction, image layers by key partition, GC that frees,
//! size accessors). Until that lands, these adapters call what exists today
//! and compute the rest from what the timeline exposes; every caller goes
//! through here, so switching to the new API touches this file only. Each
//! function says what it maps to once the storage side is merged.

use std::collections::HashMap;
use std::path::Path;

use postgres_wal::Lsn;
use storage::{LayerDesc, LayerKind};

/// When compaction and image creation run (mirrors the agreed
/// `storage::policy::CompactionPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Number of L0 delta layers that triggers an L0→L1 compaction.
    pub compaction_threshold: usize,
    /// Target size of an L1 layer file, bytes.
    pub compaction_target_size: u64,
    /// Delta layers above the last image of a key range that trigger a new
    /// image layer for it.
    pub image_creation_threshold: usize,
}

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Image layers written.
    pub images_created: usize,
    /// L0 layers rewritten into L1 layers.
    pub l0_compacted: usize,
}

/// One compaction pass: L0→L1 compaction and image creation as the policy
/// says. Today storage has whole-key-space image creation only
/// (`create_image_layer_if_due`); the storage side replaces this with
/// `Timeline::compact(&policy)`.
pub fn compact(
    timeline: &storage::Timeline,
    policy: &CompactionPolicy,
) -> Result<CompactionOutcome, storage::WriteError> {
    let created = timeline.create_image_layer_if_due(policy.image_creation_threshold)?;
    Ok(CompactionOutcome {
        images_created: usize::from(created.is_some()),
        l0_compacted: 0,
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

    /// Level of a layer. Today every delta is written by a flush (L0); the
    /// storage side's `layer_stats()` will tell L1 apart.
    fn of(desc: &LayerDesc) -> LayerLevel {
        match desc.kind {
            LayerKind::Delta => LayerLevel::L0,
            LayerKind::Image => LayerLevel::Image,
        }
    }
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
    let mut stats: HashMap<LayerLevel, LevelStats> = HashMap::new();
    for desc in timeline.layer_files() {
        let entry = stats.entry(LayerLevel::of(&desc)).or_default();
        entry.count += 1;
        entry.bytes += file_size(timeline.dir(), &desc);
    }
    stats
}

/// Bytes of the timeline's layer files (those its layer map reads from; a
/// temporary or orphaned file is not part of the timeline). Maps to
/// `Timeline::physical_size_bytes()`.
pub fn physical_size_bytes(timeline: &storage::Timeline) -> u64 {
    timeline
        .layer_files()
        .iter()
        .map(|desc| file_size(timeline.dir(), desc))
        .sum()
}

/// Sizes of the timeline's layer files by name, taken before a GC run so
/// that the bytes it freed can be reported (`GcResult::bytes_removed` on
/// the storage side).
pub fn layer_file_sizes(timeline: &storage::Timeline) -> HashMap<String, u64> {
    timeline
        .layer_files()
        .iter()
        .map(|desc| (desc.file_name(), file_size(timeline.dir(), desc)))
        .collect()
}

/// Bytes of the removed layers according to sizes taken before the run.
pub fn bytes_removed(before: &HashMap<String, u64>, removed: &[LayerDesc]) -> u64 {
    removed
        .iter()
        .filter_map(|desc| before.get(&desc.file_name()))
        .sum()
}

fn file_size(dir: &Path, desc: &LayerDesc) -> u64 {
    std::fs::metadata(dir.join(desc.file_name())).map_or(0, |m| m.len())
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
/// would hold (relations, SLRUs, control files). Maps to
/// `Timeline::logical_size_bytes(lsn)`.
pub fn logical_size_bytes(timeline: &storage::Timeline, lsn: Lsn) -> Result<u64, LogicalSizeError> {
    datadir::Basebackup::prepare(timeline, Some(lsn))
        .map(|backup| backup.total_size_bytes())
        .map_err(|error| LogicalSizeError {
            lsn,
            reason: error.to_string(),
        })
}

/// Records applied per page reconstruction since the last call. Storage
/// does not count them yet (its `reconstruct` stat is part of #11's storage
/// half); until then there is nothing to report.
pub fn take_reconstruct_samples(_timeline: &storage::Timeline) -> Vec<u64> {
    Vec::new()
}
