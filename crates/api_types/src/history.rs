//! `GET .../timeline/{timeline_id}/diff` (an extension): which relations
//! changed between two LSNs. Optional fields are `null` on the wire here
//! (the served schema declares them `nullable`): a relation whose catalog
//! row is gone has no name, a relation that did not exist has no size.

use serde::{Deserialize, Serialize};

/// The answer of the diff endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineDiffResponse {
    /// Start point (exclusive).
    pub from: crate::Lsn,
    /// End point (inclusive).
    pub to: crate::Lsn,
    /// One entry per relation that changed.
    pub relations: Vec<RelationChangeInfo>,
}

/// How one relation changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationChangeInfo {
    /// Database oid.
    pub database_oid: u32,
    /// Database name, when the catalog knows it.
    pub database: Option<String>,
    /// The relation's file node.
    pub file_node: u32,
    /// Its `pg_class` oid, when found.
    pub oid: Option<u32>,
    /// Its schema, when found.
    pub schema: Option<String>,
    /// Its name, when found.
    pub name: Option<String>,
    /// Its `relkind` (`r`, `i`, `t`, `S`, `m`, `p`, `I`), when found.
    pub relkind: Option<String>,
    /// Whether it is a system catalog (or one of their indexes and toasts).
    pub system: bool,
    /// `created`, `dropped`, `truncated` or `changed`.
    pub change: String,
    /// Main-fork pages written in the range.
    pub pages_changed: u64,
    /// Bytes of the stored records and images in the range.
    pub bytes_changed: u64,
    /// Main-fork size in blocks at `from` (absent if it did not exist).
    pub blocks_before: Option<u32>,
    /// Main-fork size in blocks at `to` (absent if it is gone).
    pub blocks_after: Option<u32>,
}

/// `GET /v1/status`: the node id plus (extensions) the natively redone
/// resource managers and the `wal_consistency_checking` value endpoints run
/// with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The pageserver's node id.
    pub id: u64,
    /// Resource managers redone natively.
    #[serde(default)]
    pub native_redo_rmgrs: Vec<String>,
    /// What endpoints must set `wal_consistency_checking` to.
    #[serde(default)]
    pub wal_consistency_checking: String,
}
