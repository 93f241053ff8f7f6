//! The tenant size model of `GET /v1/tenant/{id}/size` and
//! `GET /v1/tenant/{id}/synthetic_size`: what it costs to keep everything a
//! tenant can still read, independent of how layers happen to be laid out.
//!
//! Each timeline is cut into segments at its points of interest: where its
//! retained history starts (the root's GC cutoff or initdb LSN, a branch's
//! branch point), the branch points of its children, its GC cutoff, and its
//! head. The size is
//! - for every root: its logical size where its retained history starts
//!   (a snapshot), plus the WAL from there to its head;
//! - for every branch: the WAL from where its readable history starts to its
//!   head; when GC moved its cutoff above its branch point, also the cheaper
//!   of the WAL from the branch point to the cutoff and a snapshot at the
//!   cutoff.
//!
//! The parent's data at a branch point is counted once, on the parent.
//! [`compute`] is pure; [`gather`] reads the timelines (logical sizes walk
//! every relation, so it runs on a blocking thread).

use std::collections::BTreeMap;

use postgres_wal::Lsn;
use serde::Serialize;

use crate::ids::{self, TimelineId};
use crate::tenant::Tenant;

/// What the model knows about one timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineFacts {
    /// The timeline.
    pub id: TimelineId,
    /// Parent and branch point, for branches.
    pub ancestor: Option<(TimelineId, Lsn)>,
    /// Where a root's history starts.
    pub initdb_lsn: Lsn,
    /// Reads below this are refused.
    pub gc_cutoff: Lsn,
    /// Last ingested record.
    pub head: Lsn,
}

impl TimelineFacts {
    /// First LSN of the timeline's own history.
    fn start(&self) -> Lsn {
        self.ancestor.map_or(self.initdb_lsn, |(_, lsn)| lsn)
    }

    /// First LSN still readable on it.
    fn retention_start(&self) -> Lsn {
        self.start().max(self.gc_cutoff).min(self.head)
    }
}

/// Kind of a segment's end point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PointKind {
    /// Where the timeline's retained history starts.
    BranchStart,
    /// A child's branch point.
    BranchPoint,
    /// The timeline's GC cutoff (above its start).
    GcCutOff,
    /// The timeline's head.
    BranchEnd,
}

/// One point of the model (`SegmentData` of the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentData {
    /// The point.
    pub segment: Segment,
    /// The timeline it lies on.
    #[serde(with = "ids::hex")]
    pub timeline_id: TimelineId,
    /// What the point is.
    pub kind: PointKind,
}

/// The point itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Index of the previous point (on the same timeline, or the parent's
    /// branch point for a branch start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    /// The LSN, as an integer.
    pub lsn: u64,
    /// Logical size at the LSN (absent with `inputs_only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Whether the point is readable (at or above the retained history).
    pub needed: bool,
}

/// How a segment is paid for (`SegmentSize` of the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentSize {
    /// `SnapshotAfter` (a logical size), `Wal` (WAL bytes from the previous
    /// point) or `Skipped` (not retained).
    pub method: &'static str,
    /// Size counted along the path from the root up to this point.
    pub accum_size: u64,
}

/// A timeline's place in the tree (`TimelineInput` of the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineInput {
    /// The timeline.
    #[serde(with = "ids::hex")]
    pub timeline_id: TimelineId,
    /// Its parent.
    #[serde(with = "ids::optional_hex", skip_serializing_if = "Option::is_none")]
    pub ancestor_id: Option<TimelineId>,
    /// Its branch point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ancestor_lsn: Option<Lsn>,
}

/// The model's inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// The points.
    pub segments: Vec<SegmentData>,
    /// The tree.
    pub timeline_inputs: Vec<TimelineInput>,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeModel {
    /// Total bytes; `None` when sizes were not computed.
    pub size: Option<u64>,
    /// One entry per segment of `inputs`.
    pub segment_sizes: Vec<SegmentSize>,
    /// The inputs.
    pub inputs: Inputs,
}

/// Where the history the model counts starts: a branch's branch point; a
/// root's retained history, or a child's branch point below it (storage
/// keeps what a child needs).
fn history_start(timeline: &TimelineFacts, all: &[TimelineFacts]) -> Lsn {
    if timeline.ancestor.is_some() {
        return timeline.start().min(timeline.head);
    }
    all.iter()
        .filter_map(|child| child.ancestor)
        .filter(|(parent, lsn)| *parent == timeline.id && *lsn >= timeline.initdb_lsn)
        .map(|(_, lsn)| lsn)
        .fold(timeline.retention_start(), Lsn::min)
}

/// Points of interest of a timeline, in LSN order, with their kinds.
fn points(timeline: &TimelineFacts, all: &[TimelineFacts]) -> Vec<(Lsn, PointKind)> {
    let start = history_start(timeline, all);
    let mut points = BTreeMap::new();
    points.insert(start, PointKind::BranchStart);
    for child in all {
        if let Some((parent, lsn)) = child.ancestor {
            if parent == timeline.id && lsn > start {
                points.insert(lsn, PointKind::BranchPoint);
            }
        }
    }
    if timeline.gc_cutoff > start && timeline.gc_cutoff < timeline.head {
        points
            .entry(timeline.gc_cutoff)
            .or_insert(PointKind::GcCutOff);
    }
    points.entry(timeline.head).or_insert(PointKind::BranchEnd);
    points.into_iter().collect()
}

/// Parents before children; timelines whose parent is missing are treated
/// as roots.
fn tree_order(timelines: &[TimelineFacts]) -> Vec<&TimelineFacts> {
    let mut order: Vec<&TimelineFacts> = Vec::new();
    let known = |id: TimelineId| timelines.iter().any(|t| t.id == id);
    let mut frontier: Vec<&TimelineFacts> = timelines
        .iter()
        .filter(|t| t.ancestor.is_none_or(|(parent, _)| !known(parent)))
        .collect();
    while let Some(next) = frontier.pop() {
        order.push(next);
        frontier.extend(
            timelines
                .iter()
                .filter(|t| t.ancestor.is_some_and(|(parent, _)| parent == next.id)),
        );
    }
    order
}

/// How the segment ending at `lsn` is paid for, and what it costs.
/// `from` is the previous point on the same timeline (none for its first);
/// `keep_from` where its counted history starts; `size` the logical size
/// at `lsn` if known.
fn segment_cost(
    is_branch: bool,
    from: Option<Lsn>,
    lsn: Lsn,
    keep_from: Lsn,
    size: Option<u64>,
) -> (&'static str, u64) {
    match from {
        // A root's first point is a snapshot; a branch's first point is its
        // parent's data, counted on the parent.
        None if !is_branch => ("SnapshotAfter", size.unwrap_or(0)),
        None => ("Wal", 0),
        // Up to the readable history: only a branch bridges its branch
        // point to its cutoff, by WAL or by a snapshot, whichever is less.
        Some(from) if lsn <= keep_from => {
            if is_branch && lsn == keep_from {
                let wal = lsn.0.saturating_sub(from.0);
                match size {
                    Some(snapshot) if snapshot < wal => ("SnapshotAfter", snapshot),
                    _ => ("Wal", wal),
                }
            } else {
                ("Skipped", 0)
            }
        }
        Some(from) => ("Wal", lsn.0.saturating_sub(from.0.max(keep_from.0))),
    }
}

/// Computes the model. `logical_size(timeline, lsn)` gives the logical size
/// at a point; `None` (inputs only) leaves sizes out.
pub fn compute(
    timelines: &[TimelineFacts],
    mut logical_size: Option<&mut dyn FnMut(TimelineId, Lsn) -> Option<u64>>,
) -> SizeModel {
    let mut segments: Vec<SegmentData> = Vec::new();
    let mut sizes: Vec<SegmentSize> = Vec::new();
    let mut total: Option<u64> = logical_size.as_ref().map(|_| 0);
    // Index of every point by (timeline, lsn), to link branch starts.
    let mut index: BTreeMap<(TimelineId, Lsn), usize> = BTreeMap::new();
    for timeline in tree_order(timelines) {
        let keep_from = if timeline.ancestor.is_some() {
            timeline.retention_start()
        } else {
            history_start(timeline, timelines)
        };
        let mut previous: Option<(usize, Lsn, u64)> = None;
        for (lsn, kind) in points(timeline, timelines) {
            let size = logical_size.as_mut().and_then(|f| f(timeline.id, lsn));
            let parent = match (previous, timeline.ancestor) {
                (Some((i, _, _)), _) => Some(i),
                (None, Some((parent, at))) => index.get(&(parent, at)).copied(),
                (None, None) => None,
            };
            let parent_accum = parent
                .and_then(|i| sizes.get(i))
                .map_or(0, |s| s.accum_size);
            let is_branch = timeline.ancestor.is_some();
            let from = previous.map(|(_, from, _)| from);
            let (method, cost) = segment_cost(is_branch, from, lsn, keep_from, size);
            if let Some(sum) = total.as_mut() {
                *sum += cost;
            }
            let accum = parent_accum + cost;
            index.insert((timeline.id, lsn), segments.len());
            segments.push(SegmentData {
                segment: Segment {
                    parent,
                    lsn: lsn.0,
                    size,
                    needed: lsn >= keep_from,
                },
                timeline_id: timeline.id,
                kind,
            });
            sizes.push(SegmentSize {
                method,
                accum_size: accum,
            });
            previous = Some((segments.len() - 1, lsn, accum));
        }
    }
    SizeModel {
        size: total,
        segment_sizes: sizes,
        inputs: Inputs {
            segments,
            timeline_inputs: timelines
                .iter()
                .map(|t| TimelineInput {
                    timeline_id: t.id,
                    ancestor_id: t.ancestor.map(|(id, _)| id),
                    ancestor_lsn: t.ancestor.map(|(_, lsn)| lsn),
                })
                .collect(),
        },
    }
}

/// Reads the tenant's timelines and computes the model (blocking: logical
/// sizes walk every relation). A point whose logical size cannot be read
/// (history below the cutoff) counts as unknown. `retention_period` (bytes
/// of WAL below each head) replaces the GC cutoffs where it keeps less; it
/// cannot bring back history GC already dropped.
pub fn gather(tenant: &Tenant, inputs_only: bool, retention_period: Option<u64>) -> SizeModel {
    let timelines = tenant.timelines();
    let facts: Vec<TimelineFacts> = timelines
        .iter()
        .map(|t| {
            let storage = t.storage();
            let head = storage.last_record_lsn();
            let by_retention =
                retention_period.map_or(Lsn::INVALID, |bytes| Lsn(head.0.saturating_sub(bytes)));
            TimelineFacts {
                id: t.id(),
                ancestor: storage.ancestor(),
                initdb_lsn: storage.initdb_lsn(),
                gc_cutoff: storage.gc_cutoff().max(by_retention),
                head,
            }
        })
        .collect();
    if inputs_only {
        return compute(&facts, None);
    }
    let mut logical = |id: TimelineId, lsn: Lsn| {
        let timeline = timelines.iter().find(|t| t.id() == id)?;
        // Below the cutoff the parent refuses reads, but a child branched
        // there still reads it (storage keeps what the child needs).
        let reader = if lsn >= timeline.storage().gc_cutoff() {
            timeline
        } else {
            timelines
                .iter()
                .find(|child| child.storage().ancestor() == Some((id, lsn)))?
        };
        crate::storage_ops::logical_size_bytes(reader.storage(), lsn).ok()
    };
    compute(&facts, Some(&mut logical))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TimelineId {
        crate::ids::parse_timeline_id(&format!("{n:032x}")).unwrap()
    }

    fn facts(n: u8, ancestor: Option<(u8, u64)>, cutoff: u64, head: u64) -> TimelineFacts {
        TimelineFacts {
            id: id(n),
            ancestor: ancestor.map(|(p, lsn)| (id(p), Lsn(lsn))),
            initdb_lsn: Lsn(100),
            gc_cutoff: Lsn(cutoff),
            head: Lsn(head),
        }
    }

    #[test]
    fn root_is_a_snapshot_at_its_cutoff_plus_retained_wal() {
        let model = compute(&[facts(1, None, 600, 1000)], Some(&mut |_, _| Some(5000)));
        // A snapshot at the cutoff, then the WAL from there to the head.
        assert_eq!(model.size, Some(5000 + 400));
        let kinds: Vec<_> = model.inputs.segments.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [PointKind::BranchStart, PointKind::BranchEnd]);
        assert_eq!(model.inputs.segments[0].segment.lsn, 600);
        assert_eq!(model.segment_sizes[1].accum_size, 5400);
    }

    #[test]
    fn a_branch_adds_its_own_wal_and_links_to_the_parent_point() {
        let timelines = [facts(1, None, 0, 1000), facts(2, Some((1, 700)), 0, 900)];
        let model = compute(&timelines, Some(&mut |_, _| Some(10)));
        // Root: 10 + 900 of WAL; branch: 200 of WAL.
        assert_eq!(model.size, Some(10 + 900 + 200));
        let branch_start = model
            .inputs
            .segments
            .iter()
            .position(|s| s.timeline_id == id(2))
            .unwrap();
        let parent = model.inputs.segments[branch_start].segment.parent.unwrap();
        assert_eq!(model.inputs.segments[parent].segment.lsn, 700);
        assert_eq!(model.inputs.segments[parent].kind, PointKind::BranchPoint);
        assert!(compute(&timelines, None).size.is_none());
    }

    #[test]
    fn a_branch_cutoff_is_bridged_by_the_cheaper_of_wal_and_snapshot() {
        let timelines = [facts(1, None, 0, 1000), facts(2, Some((1, 200)), 800, 900)];
        let cheap_snapshot = compute(&timelines, Some(&mut |_, _| Some(50)));
        assert_eq!(cheap_snapshot.size, Some(50 + 900 + 50 + 100));
        let dear_snapshot = compute(&timelines, Some(&mut |_, _| Some(5000)));
        assert_eq!(dear_snapshot.size, Some(5000 + 900 + 600 + 100));
    }
}
