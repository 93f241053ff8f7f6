//! Model-based property test: random interleavings of put, branch, freeze,
//! flush, compaction (L0 → L1, images per partition), explicit image
//! creation, materialised images (explicit at random LSNs, the hot-key
//! pass at the head, and fills by reads after a replay, in a cache small
//! enough to evict), GC with children's branch points retained, delete,
//! clean reopen and simulated power loss,
//! checked against a trivial in-memory model of versioned keys. Every `get`
//! and `list_keys` on every timeline at random LSNs must give the model's
//! answer (value or error kind).
//!
//! The store runs on `MemoryFileIo`, so a "crash" loses exactly what was
//! not fsynced, and thousands of cases run in seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use proptest::prelude::*;
use storage::io::MemoryFileIo;
use storage::{
    apply_derived, CompactionPolicy, DerivedOp, FreezePolicy, GetError, Key, Reconstruct,
    RedoError, Repository, RepositoryConfig, RepositoryError, TimelineId, Value, WriteError,
};

const KEYS: u8 = 6;

fn key(i: u8) -> Key {
    if i == KEYS - 1 {
        return Key::checkpoint();
    }
    let rel = RelFileNode {
        spc_node: 1663,
        db_node: 1,
        rel_node: 100 + u32::from(i / 2),
    };
    Key::rel_block(rel, ForkNumber::Main, u32::from(i % 2))
}

/// Test redo: WAL records append their bytes (or replace the value when
/// will-init); derived operations go to the built-in `apply_derived`.
struct AppendRedo;

impl Reconstruct for AppendRedo {
    fn reconstruct(
        &self,
        _key: Key,
        _lsn: Lsn,
        base: Option<Bytes>,
        records: &[(Lsn, Value)],
    ) -> Result<Bytes, RedoError> {
        let mut page: Option<Vec<u8>> = base.map(|b| b.to_vec());
        for (_, value) in records {
            model_apply(&mut page, value)?;
        }
        page.map(Bytes::from).ok_or(RedoError::NoBase {
            records: records.len(),
        })
    }
}

fn model_apply(page: &mut Option<Vec<u8>>, value: &Value) -> Result<(), RedoError> {
    match value {
        Value::Image(b) => *page = Some(b.to_vec()),
        Value::WalRecord {
            will_init: true,
            rec,
        } => *page = Some(rec.to_vec()),
        Value::WalRecord {
            will_init: false,
            rec,
        } => match page {
            Some(p) => p.extend_from_slice(rec),
            None => return Err(RedoError::NoBase { records: 1 }),
        },
        Value::Derived(op) => match page {
            Some(p) => apply_derived(p, op)?,
            None => return Err(RedoError::NoBase { records: 1 }),
        },
        _ => unreachable!("test generates no other values"),
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        tl: usize,
        writes: Vec<(u8, u8, u8)>,
        lsn_step: u64,
    },
    Branch {
        from: usize,
        lsn_pick: u64,
    },
    Freeze {
        tl: usize,
    },
    Flush {
        tl: usize,
    },
    FreezeAndFlush {
        tl: usize,
    },
    Image {
        tl: usize,
        lsn_pick: u64,
    },
    Gc {
        tl: usize,
        lsn_pick: u64,
    },
    Compact {
        tl: usize,
        threshold: usize,
        target_pick: u8,
        image_threshold: usize,
    },
    Delete {
        tl: usize,
    },
    Materialize {
        tl: usize,
        key: u8,
        lsn_pick: u64,
    },
    MaterializeHot {
        tl: usize,
        threshold: usize,
    },
    Reopen,
    Crash,
    Get {
        tl: usize,
        key: u8,
        lsn_pick: u64,
    },
    ListKeys {
        tl: usize,
        lsn_pick: u64,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let tl = 0usize..6;
    prop_oneof![
        8 => (tl.clone(), prop::collection::vec((0..KEYS, 0u8..5, any::<u8>()), 0..4), 1u64..20)
            .prop_map(|(tl, writes, lsn_step)| Op::Put { tl, writes, lsn_step }),
        2 => (tl.clone(), any::<u64>()).prop_map(|(from, lsn_pick)| Op::Branch { from, lsn_pick }),
        1 => tl.clone().prop_map(|tl| Op::Freeze { tl }),
        1 => tl.clone().prop_map(|tl| Op::Flush { tl }),
        2 => tl.clone().prop_map(|tl| Op::FreezeAndFlush { tl }),
        1 => (tl.clone(), any::<u64>()).prop_map(|(tl, lsn_pick)| Op::Image { tl, lsn_pick }),
        1 => (tl.clone(), any::<u64>()).prop_map(|(tl, lsn_pick)| Op::Gc { tl, lsn_pick }),
        3 => (tl.clone(), 0usize..4, 0u8..4, 0usize..3).prop_map(|(tl, threshold, target_pick, image_threshold)| {
            Op::Compact { tl, threshold, target_pick, image_threshold }
        }),
        1 => tl.clone().prop_map(|tl| Op::Delete { tl }),
        2 => (tl.clone(), 0..KEYS, any::<u64>()).prop_map(|(tl, key, lsn_pick)| Op::Materialize { tl, key, lsn_pick }),
        2 => (tl.clone(), 0usize..4).prop_map(|(tl, threshold)| Op::MaterializeHot { tl, threshold }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        8 => (tl.clone(), 0..KEYS, any::<u64>()).prop_map(|(tl, key, lsn_pick)| Op::Get { tl, key, lsn_pick }),
        2 => (tl, any::<u64>()).prop_map(|(tl, lsn_pick)| Op::ListKeys { tl, lsn_pick }),
    ]
}

fn make_value(kind: u8, byte: u8) -> Value {
    match kind {
        0 => Value::Image(Bytes::from(vec![byte; 4])),
        1 => Value::WalRecord {
            will_init: true,
            rec: Bytes::from(vec![byte; 2]),
        },
        2 => Value::WalRecord {
            will_init: false,
            rec: Bytes::from(vec![byte]),
        },
        3 => Value::Derived(DerivedOp::WriteBytes {
            offset: u32::from(byte % 4),
            bytes: Bytes::from(vec![byte]),
        }),
        _ => Value::Derived(DerivedOp::ClogSetStatus {
            status: byte % 4,
            slots: vec![u16::from(byte % 16)],
        }),
    }
}

/// The model of one timeline: every version, and the LSN bookkeeping.
#[derive(Clone, Debug)]
struct ModelTimeline {
    id: TimelineId,
    ancestor: Option<(usize, Lsn)>,
    versions: BTreeMap<(u8, Lsn), Value>,
    last: Lsn,
    disk_consistent: Lsn,
    gc_cutoff: Lsn,
    open_start: Lsn,
    frozen_upto: Option<Lsn>,
    deleted: bool,
}

/// What a timeline lost in a restart: its last record LSN before the
/// restart and the versions above its disk-consistent LSN.
type Lost = (Lsn, BTreeMap<(u8, Lsn), Value>);

/// Outcome of a read, comparable between model and store.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Value(Vec<u8>),
    NotFound,
    BelowCutoff,
    Ahead,
    RedoFailed,
}

struct Model {
    timelines: Vec<ModelTimeline>,
    auto_freeze_bytes: u64,
    materialize_after_records: usize,
}

impl Model {
    fn live(&self, pick: usize) -> Option<usize> {
        let live: Vec<usize> = (0..self.timelines.len())
            .filter(|i| !self.timelines[*i].deleted)
            .collect();
        (!live.is_empty()).then(|| live[pick % live.len()])
    }

    fn pick_lsn(&self, tl: usize, pick: u64) -> Lsn {
        // Mostly inside gc_cutoff..=last, sometimes just outside it.
        let t = &self.timelines[tl];
        let low = t.gc_cutoff.0.saturating_sub(2);
        // After a restart the cutoff may be above the last record (it was
        // set before the restart, the WAL above disk_consistent_lsn is not
        // re-fed yet): then every LSN is unreadable.
        let high = (t.last.0 + 2).max(low + 4);
        Lsn(low + pick % (high - low + 1))
    }

    fn get(&self, tl: usize, key: u8, lsn: Lsn) -> Answer {
        let t = &self.timelines[tl];
        if lsn < t.gc_cutoff {
            return Answer::BelowCutoff;
        }
        if lsn > t.last || !self.ancestors_caught_up(tl) {
            return Answer::Ahead;
        }
        // Newest first, down to the first will-init version.
        let mut chain = Vec::new();
        let (mut cur, mut upto) = (tl, lsn);
        'walk: loop {
            let m = &self.timelines[cur];
            for ((_, l), v) in m.versions.range((key, Lsn(0))..=(key, upto)).rev() {
                chain.push((*l, v.clone()));
                if v.will_init() {
                    break 'walk;
                }
            }
            match m.ancestor {
                Some((a, at)) => {
                    upto = upto.min(at);
                    cur = a;
                }
                None => break,
            }
        }
        if chain.is_empty() {
            return Answer::NotFound;
        }
        let mut page = None;
        for (_, v) in chain.iter().rev() {
            if model_apply(&mut page, v).is_err() {
                return Answer::RedoFailed;
            }
        }
        page.map_or(Answer::RedoFailed, Answer::Value)
    }

    fn list_keys(&self, tl: usize, lsn: Lsn) -> Option<Vec<Key>> {
        let t = &self.timelines[tl];
        if lsn < t.gc_cutoff || lsn > t.last || !self.ancestors_caught_up(tl) {
            return None;
        }
        let mut keys = std::collections::BTreeSet::new();
        let (mut cur, mut upto) = (tl, lsn);
        loop {
            let m = &self.timelines[cur];
            keys.extend(
                m.versions
                    .keys()
                    .filter(|(_, l)| *l <= upto)
                    .map(|(k, _)| key(*k)),
            );
            match m.ancestor {
                Some((a, at)) => {
                    upto = upto.min(at);
                    cur = a;
                }
                None => return Some(keys.into_iter().collect()),
            }
        }
    }

    /// Whether every ancestor holds its history up to the branch point
    /// (after a restart it may still wait for WAL to be re-fed).
    fn ancestors_caught_up(&self, tl: usize) -> bool {
        let mut cur = tl;
        while let Some((a, at)) = self.timelines[cur].ancestor {
            if self.timelines[a].last < at {
                return false;
            }
            cur = a;
        }
        true
    }

    /// After a batch, the store's freeze policy may have frozen and flushed
    /// everything (only when the test enabled it); mirror that.
    fn follow_freeze_policy(&mut self, tl: usize, timeline: &storage::Timeline) {
        let durable = timeline.disk_consistent_lsn();
        if durable != self.timelines[tl].disk_consistent {
            assert!(self.auto_freeze_bytes != u64::MAX);
            assert_eq!(durable, self.timelines[tl].last);
            self.freeze(tl);
            self.flush(tl);
        }
    }

    fn freeze(&mut self, tl: usize) {
        let t = &mut self.timelines[tl];
        if t.open_start <= t.last {
            t.frozen_upto = Some(t.last);
            t.open_start = Lsn(t.last.0 + 1);
        }
    }

    fn flush(&mut self, tl: usize) {
        let t = &mut self.timelines[tl];
        if let Some(upto) = t.frozen_upto.take() {
            t.disk_consistent = upto;
        }
    }

    /// What survives a restart: everything at or below disk_consistent_lsn.
    /// Returns what each timeline lost, for re-feeding.
    fn restart(&mut self) -> Vec<Lost> {
        let mut lost = Vec::new();
        for t in &mut self.timelines {
            let dcl = t.disk_consistent;
            let gone = t.versions.split_off(&(0, Lsn(0)));
            let (kept, gone): (BTreeMap<_, _>, BTreeMap<_, _>) =
                gone.into_iter().partition(|((_, l), _)| *l <= dcl);
            t.versions = kept;
            lost.push((t.last, gone));
            t.last = dcl;
            t.open_start = Lsn(dcl.0 + 1);
            t.frozen_upto = None;
        }
        lost
    }
}

fn answer_of(result: Result<Bytes, GetError>) -> Answer {
    match result {
        Ok(b) => Answer::Value(b.to_vec()),
        Err(GetError::KeyNotFound { .. }) => Answer::NotFound,
        Err(GetError::BelowGcCutoff { .. }) => Answer::BelowCutoff,
        Err(GetError::LsnAhead { .. }) => Answer::Ahead,
        Err(GetError::Redo { .. }) => Answer::RedoFailed,
        Err(e) => panic!("unexpected read error: {e}"),
    }
}

/// Opens the store; `auto_freeze_bytes` is the freeze policy's size
/// threshold (`u64::MAX`: freezing is driven by the test's operations
/// only); reads that applied `materialize_after_records` records fill the
/// materialised image cache (0: never). The cache holds a handful of
/// entries, so entries are evicted and replaced all the time.
fn open(
    io: &Arc<MemoryFileIo>,
    auto_freeze_bytes: u64,
    materialize_after_records: usize,
) -> Repository {
    let config = RepositoryConfig {
        freeze: FreezePolicy {
            max_open_bytes: auto_freeze_bytes,
            max_lsn_distance: u64::MAX,
            max_age: std::time::Duration::MAX,
        },
        page_cache_bytes: 4096,
        max_frozen_layers: 0,
        materialized_cache_bytes: 800,
        materialize_after_records,
    };
    Repository::open_with(Path::new("/repo"), config, io.clone(), Arc::new(AppendRedo)).unwrap()
}

fn run(ops: Vec<Op>, auto_freeze_bytes: u64, materialize_after_records: usize) {
    let io = Arc::new(MemoryFileIo::new());
    let mut repo = open(&io, auto_freeze_bytes, materialize_after_records);
    let root = TimelineId([0; 16]);
    repo.create_timeline(root, 15, Lsn(1)).unwrap();
    let mut model = Model {
        timelines: vec![ModelTimeline {
            id: root,
            ancestor: None,
            versions: BTreeMap::new(),
            last: Lsn(0),
            disk_consistent: Lsn(0),
            gc_cutoff: Lsn(0),
            open_start: Lsn(1),
            frozen_upto: None,
            deleted: false,
        }],
        auto_freeze_bytes,
        materialize_after_records,
    };
    for op in ops {
        step(&io, &mut repo, &mut model, op);
    }
    // Final sweep: every key at every readable LSN of every timeline.
    for (tl, t) in model
        .timelines
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.deleted)
    {
        let timeline = repo.timeline(t.id).unwrap();
        assert_eq!(timeline.last_record_lsn(), t.last);
        assert_eq!(timeline.disk_consistent_lsn(), t.disk_consistent);
        for lsn in t.gc_cutoff.0..=t.last.0 {
            for k in 0..KEYS {
                assert_eq!(
                    answer_of(timeline.get(key(k), Lsn(lsn))),
                    model.get(tl, k, Lsn(lsn)),
                    "{t:?} key {k} at {lsn}"
                );
            }
        }
    }
}

fn step(io: &Arc<MemoryFileIo>, repo: &mut Repository, model: &mut Model, op: Op) {
    match op {
        Op::Put {
            tl,
            writes,
            lsn_step,
        } => {
            let Some(tl) = model.live(tl) else { return };
            let t = &mut model.timelines[tl];
            let timeline = repo.timeline(t.id).unwrap();
            let end = Lsn(t.last.0 + lsn_step);
            let mut writer = timeline.writer();
            for (i, (k, kind, byte)) in writes.into_iter().enumerate() {
                // Spread the batch over the LSNs it covers.
                let lsn = Lsn(t.last.0 + 1 + (i as u64 % lsn_step));
                let value = make_value(kind, byte);
                writer.put(key(k), lsn, value.clone()).unwrap();
                t.versions.insert((k, lsn), value);
            }
            writer.finish(end).unwrap();
            t.last = end;
            model.follow_freeze_policy(tl, &timeline);
        }
        Op::Branch { from, lsn_pick } => {
            let Some(from) = model.live(from) else { return };
            if model.timelines.len() >= 8 {
                return;
            }
            let lsn = model.pick_lsn(from, lsn_pick);
            let parent = &model.timelines[from];
            let id = TimelineId([model.timelines.len() as u8; 16]);
            let result = repo.branch_timeline(id, parent.id, lsn);
            if lsn < parent.gc_cutoff {
                assert!(
                    matches!(result, Err(RepositoryError::BranchBelowGcCutoff { .. })),
                    "{result:?}"
                );
            } else if lsn > parent.last {
                assert!(
                    matches!(result, Err(RepositoryError::BranchBeyondHead { .. })),
                    "{result:?}"
                );
            } else {
                result.unwrap();
                model.timelines.push(ModelTimeline {
                    id,
                    ancestor: Some((from, lsn)),
                    versions: BTreeMap::new(),
                    last: lsn,
                    disk_consistent: lsn,
                    gc_cutoff: lsn,
                    open_start: Lsn(lsn.0 + 1),
                    frozen_upto: None,
                    deleted: false,
                });
            }
        }
        Op::Freeze { tl } => {
            let Some(tl) = model.live(tl) else { return };
            repo.timeline(model.timelines[tl].id)
                .unwrap()
                .freeze()
                .unwrap();
            model.freeze(tl);
        }
        Op::Flush { tl } => {
            let Some(tl) = model.live(tl) else { return };
            repo.timeline(model.timelines[tl].id)
                .unwrap()
                .flush_frozen()
                .unwrap();
            model.flush(tl);
        }
        Op::FreezeAndFlush { tl } => {
            let Some(tl) = model.live(tl) else { return };
            repo.timeline(model.timelines[tl].id)
                .unwrap()
                .freeze_and_flush()
                .unwrap();
            model.freeze(tl);
            model.flush(tl);
        }
        Op::Image { tl, lsn_pick } => {
            let Some(tl) = model.live(tl) else { return };
            let lsn = model.pick_lsn(tl, lsn_pick);
            let timeline = repo.timeline(model.timelines[tl].id).unwrap();
            let result = timeline.create_image_layer(Key::MIN..Key::MAX, lsn);
            // Creation reconstructs every existing key: it fails exactly when
            // listing the keys or reading one of them fails.
            let expect_ok = model.list_keys(tl, lsn).is_some_and(|keys| {
                (0..KEYS)
                    .filter(|k| keys.contains(&key(*k)))
                    .all(|k| matches!(model.get(tl, k, lsn), Answer::Value(_)))
            });
            assert_eq!(result.is_ok(), expect_ok, "image at {lsn}: {result:?}");
        }
        Op::Gc { tl, lsn_pick } => {
            let Some(tl) = model.live(tl) else { return };
            let t = &mut model.timelines[tl];
            let timeline = repo.timeline(t.id).unwrap();
            let lsn = Lsn(t.gc_cutoff.0 + lsn_pick % (t.last.0 - t.gc_cutoff.0.min(t.last.0) + 3));
            let result = timeline.set_gc_cutoff(lsn);
            if lsn > t.last {
                assert!(
                    matches!(result, Err(WriteError::GcCutoffOutOfRange { .. })),
                    "{result:?}"
                );
            } else {
                result.unwrap();
                t.gc_cutoff = lsn;
            }
            repo.gc_timeline(t.id).unwrap();
        }
        Op::Compact {
            tl,
            threshold,
            target_pick,
            image_threshold,
        } => {
            let Some(tl) = model.live(tl) else { return };
            let timeline = repo.timeline(model.timelines[tl].id).unwrap();
            // Tiny targets split L1s and image partitions per key or two.
            let target = [1, 40, 16384, 1 << 30][usize::from(target_pick)];
            let policy = CompactionPolicy {
                compaction_threshold: threshold,
                compaction_target_size: target,
                image_creation_threshold: image_threshold,
            };
            let before = timeline.layer_stats();
            let result = timeline.compact(&policy).unwrap();
            let after = timeline.layer_stats();
            if !result.layers_removed.is_empty() {
                assert_eq!(after.l0_count, 0, "{result:?}");
                assert!(after.l1_count > before.l1_count || after.l1_count > 0);
            }
            assert_eq!(
                after.image_count,
                before.image_count + result.images_created
            );
        }
        Op::Delete { tl } => {
            let Some(tl) = model.live(tl) else { return };
            let has_children = model
                .timelines
                .iter()
                .any(|c| !c.deleted && c.ancestor.is_some_and(|(a, _)| a == tl));
            let result = repo.delete_timeline(model.timelines[tl].id);
            if has_children {
                assert!(
                    matches!(result, Err(RepositoryError::HasChildren { .. })),
                    "{result:?}"
                );
            } else {
                result.unwrap();
                model.timelines[tl].deleted = true;
            }
        }
        Op::Reopen => {
            *repo = open(io, model.auto_freeze_bytes, model.materialize_after_records);
            let lost = model.restart();
            refeed(repo, model, lost);
        }
        Op::Crash => {
            io.crash();
            *repo = open(io, model.auto_freeze_bytes, model.materialize_after_records);
            let lost = model.restart();
            refeed(repo, model, lost);
        }
        Op::Materialize {
            tl,
            key: k,
            lsn_pick,
        } => {
            let Some(tl) = model.live(tl) else { return };
            let lsn = model.pick_lsn(tl, lsn_pick);
            let timeline = repo.timeline(model.timelines[tl].id).unwrap();
            assert_eq!(
                answer_of(timeline.materialize(key(k), lsn)),
                model.get(tl, k, lsn),
                "materialise key {k} at {lsn}"
            );
        }
        Op::MaterializeHot { tl, threshold } => {
            let Some(tl) = model.live(tl) else { return };
            let timeline = repo.timeline(model.timelines[tl].id).unwrap();
            let result = timeline.materialize_hot(threshold, 3).unwrap();
            assert!(result.materialized + result.skipped <= 3, "{result:?}");
        }
        Op::Get {
            tl,
            key: k,
            lsn_pick,
        } => {
            let Some(tl) = model.live(tl) else { return };
            let lsn = model.pick_lsn(tl, lsn_pick);
            let timeline = repo.timeline(model.timelines[tl].id).unwrap();
            assert_eq!(
                answer_of(timeline.get(key(k), lsn)),
                model.get(tl, k, lsn),
                "key {k} at {lsn}"
            );
        }
        Op::ListKeys { tl, lsn_pick } => {
            let Some(tl) = model.live(tl) else { return };
            let lsn = model.pick_lsn(tl, lsn_pick);
            let timeline = repo.timeline(model.timelines[tl].id).unwrap();
            let got = timeline.list_keys(Key::MIN..Key::MAX, lsn).ok();
            assert_eq!(got, model.list_keys(tl, lsn), "keys at {lsn}");
        }
    }
}

/// The durability contract: after a restart the WAL source re-feeds what
/// was lost, identically. Re-feed each timeline up to its children's branch
/// points (so branches see the same history as before); above that, the
/// test is free to write a different future.
fn refeed(repo: &Repository, model: &mut Model, lost: Vec<Lost>) {
    for (tl, (old_last, versions)) in lost.into_iter().enumerate() {
        let children_need = model
            .timelines
            .iter()
            .filter(|c| !c.deleted)
            .filter_map(|c| c.ancestor.filter(|(a, _)| *a == tl).map(|(_, at)| at))
            .max();
        let Some(target) = children_need.filter(|t| *t > model.timelines[tl].last) else {
            continue;
        };
        assert!(target <= old_last);
        let timeline = repo.timeline(model.timelines[tl].id).unwrap();
        let mut by_lsn: BTreeMap<Lsn, Vec<(u8, Value)>> = BTreeMap::new();
        for ((k, lsn), v) in versions.into_iter().filter(|((_, l), _)| *l <= target) {
            by_lsn.entry(lsn).or_default().push((k, v));
        }
        for (lsn, batch) in by_lsn {
            let mut writer = timeline.writer();
            for (k, v) in batch {
                writer.put(key(k), lsn, v.clone()).unwrap();
                model.timelines[tl].versions.insert((k, lsn), v);
            }
            writer.finish(lsn).unwrap();
            model.timelines[tl].last = lsn;
            model.follow_freeze_policy(tl, &timeline);
        }
        timeline.writer().finish(target).unwrap();
        model.timelines[tl].last = target;
        model.follow_freeze_policy(tl, &timeline);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES overrides for long soak runs.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(4000),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model(
        ops in prop::collection::vec(op_strategy(), 1..60),
        auto_freeze_bytes in prop_oneof![3 => Just(u64::MAX), 1 => 1u64..40],
        materialize_after_records in 0usize..3,
    ) {
        run(ops, auto_freeze_bytes, materialize_after_records);
    }
}
