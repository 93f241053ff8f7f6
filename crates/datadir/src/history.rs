//! What changed between two LSNs of a timeline, per relation, from the
//! stored records alone ([`storage::Timeline::versions_in`]): nothing is
//! replayed and no page is materialised except a few catalog pages to name
//! the relations ([`crate::catalog`]).
//!
//! A relation is identified by its file node per database. Existence comes
//! from the `rel_dir` values at both points; names from the catalog at the
//! end point, or at the start for relations gone by then. A `pg_class` row
//! whose file node changed between the points (TRUNCATE, VACUUM FULL,
//! CLUSTER) is one relation whose storage was replaced: reported once as
//! `truncated` under the new file node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use storage::{GetError, Key, KeyKind, Timeline};

use crate::catalog::{self, Catalog, RelationName, FIRST_NORMAL_OID};
use crate::error::HistoryError;
use crate::layout;

/// How a relation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Exists at the end point, not at the start.
    Created,
    /// Exists at the start, not at the end point.
    Dropped,
    /// Its storage was replaced (new file node for the same `pg_class`
    /// row) or its main fork got shorter.
    Truncated,
    /// Same storage, records in between.
    Changed,
}

impl ChangeKind {
    /// Lower-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Dropped => "dropped",
            ChangeKind::Truncated => "truncated",
            ChangeKind::Changed => "changed",
        }
    }
}

/// One relation's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationChange {
    /// Database OID and name (if the catalog names it).
    pub db_oid: u32,
    pub db_name: Option<String>,
    /// File node at the end point (at the start for dropped relations).
    pub file_node: u32,
    /// The catalog's name for it; `None` if no visible row names it.
    pub relation: Option<RelationName>,
    pub kind: ChangeKind,
    /// Main-fork blocks with at least one stored record in the range.
    pub pages_changed: u64,
    /// Stored bytes of the records in the range, every fork.
    pub bytes_changed: u64,
    /// Main-fork size in blocks at the start and end (`None`: absent).
    pub blocks_before: Option<u32>,
    pub blocks_after: Option<u32>,
}

impl RelationChange {
    /// A system catalog or other built-in relation (OID below 16384).
    pub fn is_system(&self) -> bool {
        self.relation
            .as_ref()
            .is_some_and(|r| r.oid < FIRST_NORMAL_OID || r.schema.starts_with("pg_"))
    }
}

/// The changes between two points, sorted by database, kind and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineDiff {
    pub from: Lsn,
    pub to: Lsn,
    pub relations: Vec<RelationChange>,
}

/// Records per relation file node in one database: blocks touched (main
/// fork) and bytes (every fork).
#[derive(Default)]
struct Touched {
    main_blocks: BTreeSet<u32>,
    bytes: u64,
}

/// Computes what changed in `(from, to]` on `timeline`.
pub fn diff(timeline: &Timeline, from: Lsn, to: Lsn) -> Result<TimelineDiff, HistoryError> {
    if from >= to {
        return Err(HistoryError::BadRange { from, to });
    }
    for lsn in [from, to] {
        if let Err(source) = timeline.get_rel_size(probe_rel(), ForkNumber::Main, lsn) {
            return Err(HistoryError::LsnNotAvailable { lsn, source });
        }
    }
    let dbs_from = databases(timeline, from)?;
    let dbs_to = databases(timeline, to)?;
    let db_names_to = catalog::database_names(timeline, to)?;
    let db_names_from = catalog::database_names(timeline, from)?;
    let mut relations = Vec::new();
    for db in dbs_from.union(&dbs_to).copied() {
        let db_name = db_names_to
            .get(&db)
            .or_else(|| db_names_from.get(&db))
            .cloned();
        let mut changes = diff_database(timeline, db, from, to)?;
        for change in &mut changes {
            change.db_name.clone_from(&db_name);
        }
        relations.extend(changes);
    }
    relations.sort_by(|a, b| {
        let name = |c: &RelationChange| c.relation.as_ref().map(RelationName::qualified);
        (a.db_oid, a.kind, name(a), a.file_node).cmp(&(b.db_oid, b.kind, name(b), b.file_node))
    });
    Ok(TimelineDiff {
        from,
        to,
        relations,
    })
}

/// A relation that never exists: reading its size checks only that the
/// LSN is readable.
fn probe_rel() -> RelFileNode {
    RelFileNode {
        spc_node: layout::DEFAULT_TABLESPACE_OID,
        db_node: 0,
        rel_node: 0,
    }
}

/// Databases in the default tablespace at `lsn` (others are not diffed).
fn databases(timeline: &Timeline, lsn: Lsn) -> Result<BTreeSet<u32>, HistoryError> {
    let Some(bytes) = get_opt(timeline, Key::db_dir(), lsn)? else {
        return Ok(BTreeSet::new());
    };
    let dbs = layout::decode_db_dir(&bytes)
        .ok_or_else(|| HistoryError::Catalog(format!("database list at {lsn} is malformed")))?;
    Ok(dbs
        .into_iter()
        .filter(|(spc, _)| *spc == layout::DEFAULT_TABLESPACE_OID)
        .map(|(_, db)| db)
        .collect())
}

/// Relation file nodes of one database at `lsn`.
fn relations(timeline: &Timeline, db: u32, lsn: Lsn) -> Result<BTreeSet<u32>, HistoryError> {
    let key = Key::rel_dir(layout::DEFAULT_TABLESPACE_OID, db);
    let Some(bytes) = get_opt(timeline, key, lsn)? else {
        return Ok(BTreeSet::new());
    };
    let rels = layout::decode_rel_dir(&bytes).ok_or_else(|| {
        HistoryError::Catalog(format!(
            "relation list of database {db} at {lsn} is malformed"
        ))
    })?;
    Ok(rels.into_iter().map(|(rel, _)| rel).collect())
}

fn get_opt(timeline: &Timeline, key: Key, lsn: Lsn) -> Result<Option<bytes::Bytes>, HistoryError> {
    match timeline.get(key, lsn) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(GetError::KeyNotFound { .. }) => Ok(None),
        Err(source) => Err(HistoryError::Read { key, lsn, source }),
    }
}

/// Stored records of the database's relations in `(from, to]`.
fn touched(
    timeline: &Timeline,
    db: u32,
    from: Lsn,
    to: Lsn,
) -> Result<BTreeMap<u32, Touched>, HistoryError> {
    let keys = Key::db_relations_range(layout::DEFAULT_TABLESPACE_OID, db);
    let versions = timeline
        .versions_in(keys, Lsn(from.0 + 1)..Lsn(to.0 + 1))
        .map_err(|source| HistoryError::LsnNotAvailable { lsn: to, source })?;
    let mut touched: BTreeMap<u32, Touched> = BTreeMap::new();
    for version in versions {
        match version.key.kind() {
            KeyKind::RelBlock { rel, fork, blkno } => {
                let entry = touched.entry(rel.rel_node).or_default();
                entry.bytes += version.bytes;
                if fork == ForkNumber::Main {
                    entry.main_blocks.insert(blkno);
                }
            }
            KeyKind::RelSize { rel, .. } => {
                touched.entry(rel.rel_node).or_default().bytes += version.bytes;
            }
            _ => {}
        }
    }
    Ok(touched)
}

fn diff_database(
    timeline: &Timeline,
    db: u32,
    from: Lsn,
    to: Lsn,
) -> Result<Vec<RelationChange>, HistoryError> {
    let before = relations(timeline, db, from)?;
    let after = relations(timeline, db, to)?;
    let touched = touched(timeline, db, from, to)?;
    let catalog_to = if after.is_empty() {
        Catalog::default()
    } else {
        Catalog::read(timeline, db, to)?
    };
    let catalog_from = if before.is_empty() {
        Catalog::default()
    } else {
        Catalog::read(timeline, db, from)?
    };
    // pg_class OIDs whose storage was replaced: old file node -> new one.
    let mut replaced: HashMap<u32, u32> = HashMap::new();
    for node in after.difference(&before) {
        let Some(oid) = catalog_to.by_file_node(*node).map(|r| r.oid) else {
            continue;
        };
        if let Some(old) = before.difference(&after).find(|old| {
            catalog_from
                .by_file_node(**old)
                .is_some_and(|r| r.oid == oid)
        }) {
            replaced.insert(*old, *node);
        }
    }
    let size = |node: u32, lsn: Lsn| -> Result<Option<u32>, HistoryError> {
        let rel = RelFileNode {
            spc_node: layout::DEFAULT_TABLESPACE_OID,
            db_node: db,
            rel_node: node,
        };
        timeline
            .get_rel_size(rel, ForkNumber::Main, lsn)
            .map_err(|source| HistoryError::Read {
                key: Key::rel_size(rel, ForkNumber::Main),
                lsn,
                source,
            })
    };
    let mut changes = Vec::new();
    for node in before.union(&after).copied() {
        if replaced.contains_key(&node) {
            continue; // reported under its new file node
        }
        let old_node = replaced
            .iter()
            .find(|(_, new)| **new == node)
            .map(|(old, _)| *old);
        let (kind, relation) = match (before.contains(&node), after.contains(&node), old_node) {
            (_, true, Some(_)) => (ChangeKind::Truncated, catalog_to.by_file_node(node)),
            (false, true, None) => (ChangeKind::Created, catalog_to.by_file_node(node)),
            (true, false, _) => (ChangeKind::Dropped, catalog_from.by_file_node(node)),
            _ => (
                ChangeKind::Changed,
                catalog_to
                    .by_file_node(node)
                    .or_else(|| catalog_from.by_file_node(node)),
            ),
        };
        let blocks_before = if before.contains(&node) {
            size(node, from)?
        } else {
            old_node.map(|o| size(o, from)).transpose()?.flatten()
        };
        let blocks_after = if after.contains(&node) {
            size(node, to)?
        } else {
            None
        };
        let stats = touched.get(&node);
        let kind = match kind {
            ChangeKind::Changed if blocks_after < blocks_before => ChangeKind::Truncated,
            ChangeKind::Changed if stats.is_none() => continue,
            kind => kind,
        };
        changes.push(RelationChange {
            db_oid: db,
            db_name: None,
            file_node: node,
            relation: relation.cloned(),
            kind,
            pages_changed: stats.map_or(0, |s| s.main_blocks.len() as u64),
            bytes_changed: stats.map_or(0, |s| s.bytes),
            blocks_before,
            blocks_after,
        });
    }
    Ok(changes)
}
