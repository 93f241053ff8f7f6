//! Relation names at an LSN, read from the stored catalog pages:
//! `pg_class`, `pg_namespace` and `pg_database` heap pages are read through
//! the timeline (a handful of pages, nothing materialised) and their tuples
//! filtered by visibility at that LSN using the stored commit log.
//!
//! Only what a "which relation is file node N" answer needs is decoded: the
//! fixed-width prefix of each catalog row, whose offsets are the PostgreSQL
//! 15 catalog layout (`oid`, a 64-byte `name`, then 4-byte columns). The
//! mapped catalogs (`pg_class` itself, `pg_database`, ...) have file node 0
//! in `pg_class` and are found through the relmapper files.

use std::collections::HashMap;

use bytes::Bytes;
use postgres_wal::record::{ForkNumber, RelFileNode};
use postgres_wal::Lsn;
use storage::{GetError, Key, SlruKind, Timeline};

use crate::error::HistoryError;
use crate::layout::{DEFAULT_TABLESPACE_OID, GLOBAL_TABLESPACE_OID};

/// OID of `pg_class`.
const PG_CLASS_OID: u32 = 1259;
/// OID of `pg_namespace` (not a mapped catalog).
const PG_NAMESPACE_OID: u32 = 2615;
/// OID of `pg_database` (a mapped shared catalog).
const PG_DATABASE_OID: u32 = 1262;
/// First OID handed to user objects (`FirstNormalObjectId`).
pub const FIRST_NORMAL_OID: u32 = 16384;
const RELMAP_MAGIC: u32 = 0x0059_2717;
const NAME_LEN: usize = 64;
const PAGE_SIZE: usize = 8192;
const PAGE_HEADER_SIZE: usize = 24;
const XIDS_PER_CLOG_PAGE: u32 = 32768;
const CLOG_PAGES_PER_SEGMENT: u32 = 32;
const FROZEN_XID: u32 = 2;

/// One relation as the catalog names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationName {
    /// `pg_class.oid`.
    pub oid: u32,
    /// Schema name (`pg_namespace.nspname`), or the OID in brackets if the
    /// schema row is not visible.
    pub schema: String,
    /// `pg_class.relname`.
    pub name: String,
    /// `pg_class.relkind` (`r` table, `i` index, `t` TOAST, `S` sequence...).
    pub kind: char,
}

impl RelationName {
    /// `schema.name`, as psql prints it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The relations of one database at one LSN, by file node.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    by_file_node: HashMap<u32, RelationName>,
}

impl Catalog {
    /// Reads the catalog of database `db` (default tablespace) at `lsn`.
    pub fn read(timeline: &Timeline, db: u32, lsn: Lsn) -> Result<Catalog, HistoryError> {
        let reader = Reader { timeline, lsn };
        let local_map = reader.relmap(DEFAULT_TABLESPACE_OID, db)?;
        let global_map = reader.relmap(GLOBAL_TABLESPACE_OID, 0)?;
        let pg_class_node = lookup_map(&local_map, PG_CLASS_OID).ok_or_else(|| {
            HistoryError::Catalog(format!("database {db} has no pg_class mapping at {lsn}"))
        })?;
        let class_rel = RelFileNode {
            spc_node: DEFAULT_TABLESPACE_OID,
            db_node: db,
            rel_node: pg_class_node,
        };
        let mut rows = Vec::new();
        reader.visible_rows(class_rel, 116, |data| {
            rows.push(ClassRow {
                oid: le_u32(data, 0),
                name: name_at(data, 4),
                namespace: le_u32(data, 68),
                file_node: le_u32(data, 88),
                shared: data[113] != 0,
                kind: char::from(data[115]),
            });
        })?;
        let namespaces = reader.namespaces(db, &rows)?;
        let mut by_file_node = HashMap::new();
        for row in rows {
            let file_node = match row.file_node {
                0 if row.shared => lookup_map(&global_map, row.oid),
                0 => lookup_map(&local_map, row.oid),
                node => Some(node),
            };
            let Some(file_node) = file_node else { continue };
            let schema = namespaces
                .get(&row.namespace)
                .cloned()
                .unwrap_or_else(|| format!("[{}]", row.namespace));
            by_file_node.insert(
                file_node,
                RelationName {
                    oid: row.oid,
                    schema,
                    name: row.name,
                    kind: row.kind,
                },
            );
        }
        Ok(Catalog { by_file_node })
    }

    /// The relation stored under `file_node`, if the catalog names one.
    pub fn by_file_node(&self, file_node: u32) -> Option<&RelationName> {
        self.by_file_node.get(&file_node)
    }
}

/// Database names by OID at `lsn` (from the shared `pg_database`).
pub fn database_names(timeline: &Timeline, lsn: Lsn) -> Result<HashMap<u32, String>, HistoryError> {
    let reader = Reader { timeline, lsn };
    let global_map = reader.relmap(GLOBAL_TABLESPACE_OID, 0)?;
    let node = lookup_map(&global_map, PG_DATABASE_OID)
        .ok_or_else(|| HistoryError::Catalog(format!("no pg_database mapping at {lsn}")))?;
    let rel = RelFileNode {
        spc_node: GLOBAL_TABLESPACE_OID,
        db_node: 0,
        rel_node: node,
    };
    let mut names = HashMap::new();
    reader.visible_rows(rel, 4 + NAME_LEN, |data| {
        names.insert(le_u32(data, 0), name_at(data, 4));
    })?;
    Ok(names)
}

struct ClassRow {
    oid: u32,
    name: String,
    namespace: u32,
    file_node: u32,
    shared: bool,
    kind: char,
}

struct Reader<'a> {
    timeline: &'a Timeline,
    lsn: Lsn,
}

impl Reader<'_> {
    fn get(&self, key: Key) -> Result<Option<Bytes>, HistoryError> {
        match self.timeline.get(key, self.lsn) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(GetError::KeyNotFound { .. }) => Ok(None),
            Err(source) => Err(HistoryError::Read {
                key,
                lsn: self.lsn,
                source,
            }),
        }
    }

    fn relmap(&self, spc: u32, db: u32) -> Result<Vec<(u32, u32)>, HistoryError> {
        let Some(bytes) = self.get(Key::relmap_file(spc, db))? else {
            return Ok(Vec::new());
        };
        if bytes.len() < 8 || le_u32(&bytes, 0) != RELMAP_MAGIC {
            return Err(HistoryError::Catalog(format!(
                "relmapper file of {spc}/{db} at {} is malformed",
                self.lsn
            )));
        }
        let count = (le_u32(&bytes, 4) as usize).min((bytes.len() - 8) / 8);
        Ok((0..count)
            .map(|i| (le_u32(&bytes, 8 + i * 8), le_u32(&bytes, 12 + i * 8)))
            .collect())
    }

    /// `pg_namespace` names; its file node comes from the `pg_class` rows.
    fn namespaces(&self, db: u32, rows: &[ClassRow]) -> Result<HashMap<u32, String>, HistoryError> {
        let Some(row) = rows.iter().find(|r| r.oid == PG_NAMESPACE_OID) else {
            return Ok(HashMap::new());
        };
        let rel = RelFileNode {
            spc_node: DEFAULT_TABLESPACE_OID,
            db_node: db,
            rel_node: row.file_node,
        };
        let mut names = HashMap::new();
        self.visible_rows(rel, 4 + NAME_LEN, |data| {
            names.insert(le_u32(data, 0), name_at(data, 4));
        })?;
        Ok(names)
    }

    /// Calls `row` with the user data of every tuple of `rel` visible at
    /// the LSN that has at least `min_len` bytes of data.
    fn visible_rows(
        &self,
        rel: RelFileNode,
        min_len: usize,
        mut row: impl FnMut(&[u8]),
    ) -> Result<(), HistoryError> {
        let blocks = self
            .timeline
            .get_rel_size(rel, ForkNumber::Main, self.lsn)
            .map_err(|source| HistoryError::Read {
                key: Key::rel_size(rel, ForkNumber::Main),
                lsn: self.lsn,
                source,
            })?
            .unwrap_or(0);
        let mut clog = ClogCache::default();
        for blkno in 0..blocks {
            let Some(page) = self.get(Key::rel_block(rel, ForkNumber::Main, blkno))? else {
                continue;
            };
            for tuple in heap_tuples(&page) {
                if tuple.data.len() >= min_len && self.visible(&tuple, &mut clog)? {
                    row(tuple.data);
                }
            }
        }
        Ok(())
    }

    fn visible(&self, tuple: &Tuple<'_>, clog: &mut ClogCache) -> Result<bool, HistoryError> {
        const XMIN_COMMITTED: u16 = 0x0100;
        const XMIN_INVALID: u16 = 0x0200;
        const XMAX_COMMITTED: u16 = 0x0400;
        const XMAX_INVALID: u16 = 0x0800;
        const XMAX_LOCK_ONLY: u16 = 0x0080;
        const XMAX_IS_MULTI: u16 = 0x1000;
        let mask = tuple.infomask;
        // Frozen is both xmin bits set.
        let xmin_ok = if mask & XMIN_COMMITTED != 0 {
            true
        } else if mask & XMIN_INVALID != 0 {
            false
        } else {
            tuple.xmin <= FROZEN_XID || self.committed(tuple.xmin, clog)?
        };
        if !xmin_ok {
            return Ok(false);
        }
        // A multixact xmax of a catalog row is a lock in practice (updates
        // of catalog rows hold a plain xid); treat it as not deleting.
        if tuple.xmax == 0 || mask & (XMAX_INVALID | XMAX_LOCK_ONLY | XMAX_IS_MULTI) != 0 {
            return Ok(true);
        }
        if mask & XMAX_COMMITTED != 0 {
            return Ok(false);
        }
        Ok(!self.committed(tuple.xmax, clog)?)
    }

    /// Whether `xid` committed at or before the LSN (the stored CLOG then).
    fn committed(&self, xid: u32, clog: &mut ClogCache) -> Result<bool, HistoryError> {
        let page_no = xid / XIDS_PER_CLOG_PAGE;
        let page = match clog.pages.get(&page_no) {
            Some(page) => page.clone(),
            None => {
                let key = Key::slru_block(
                    SlruKind::Clog,
                    page_no / CLOG_PAGES_PER_SEGMENT,
                    page_no % CLOG_PAGES_PER_SEGMENT,
                );
                let page = self.get(key)?;
                clog.pages.insert(page_no, page.clone());
                page
            }
        };
        let byte = ((xid % XIDS_PER_CLOG_PAGE) / 4) as usize;
        let shift = (xid % 4) * 2;
        Ok(page
            .as_ref()
            .and_then(|p| p.get(byte))
            .is_some_and(|b| (b >> shift) & 3 == 1))
    }
}

#[derive(Default)]
struct ClogCache {
    pages: HashMap<u32, Option<Bytes>>,
}

/// A heap tuple's visibility fields and user data.
struct Tuple<'a> {
    xmin: u32,
    xmax: u32,
    infomask: u16,
    data: &'a [u8],
}

/// The normal line pointers of a heap page; malformed ones are skipped
/// (a name lookup must not fail on one odd page).
fn heap_tuples(page: &[u8]) -> Vec<Tuple<'_>> {
    const LP_NORMAL: u32 = 1;
    const TUPLE_HEADER_SIZE: usize = 23;
    if page.len() != PAGE_SIZE {
        return Vec::new();
    }
    let lower = usize::from(u16::from_le_bytes([page[12], page[13]])).min(PAGE_SIZE);
    let mut tuples = Vec::new();
    let mut at = PAGE_HEADER_SIZE;
    while at + 4 <= lower {
        let item = le_u32(page, at);
        at += 4;
        let (off, flags, len) = (
            (item & 0x7fff) as usize,
            (item >> 15) & 3,
            (item >> 17) as usize,
        );
        if flags != LP_NORMAL || len < TUPLE_HEADER_SIZE || off + len > PAGE_SIZE {
            continue;
        }
        let tuple = &page[off..off + len];
        let hoff = usize::from(tuple[22]);
        if hoff < TUPLE_HEADER_SIZE || hoff > len {
            continue;
        }
        tuples.push(Tuple {
            xmin: le_u32(tuple, 0),
            xmax: le_u32(tuple, 4),
            infomask: u16::from_le_bytes([tuple[20], tuple[21]]),
            data: &tuple[hoff..],
        });
    }
    tuples
}

fn lookup_map(map: &[(u32, u32)], oid: u32) -> Option<u32> {
    map.iter().find(|(o, _)| *o == oid).map(|(_, node)| *node)
}

/// A `name` column: NUL-padded, 64 bytes. Callers checked the length.
fn name_at(data: &[u8], at: usize) -> String {
    let raw = &data[at..at + NAME_LEN];
    let end = raw.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// A little-endian u32 at `at`; callers checked the bounds.
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_page_parsing_skips_malformed_pointers() {
        let mut page = vec![0u8; PAGE_SIZE];
        // Two line pointers: one normal tuple of 30 bytes at 8000, one
        // pointing past the page.
        page[12..14].copy_from_slice(&32u16.to_le_bytes());
        let lp = |off: u32, len: u32| off | (1 << 15) | (len << 17);
        page[24..28].copy_from_slice(&lp(8000, 30).to_le_bytes());
        page[28..32].copy_from_slice(&lp(8190, 30).to_le_bytes());
        page[8000..8004].copy_from_slice(&7u32.to_le_bytes());
        page[8000 + 22] = 24;
        page[8024..8030].copy_from_slice(b"abcdef");
        let tuples = heap_tuples(&page);
        assert_eq!(tuples.len(), 1);
        assert_eq!(tuples[0].xmin, 7);
        assert_eq!(tuples[0].data, b"abcdef");
        assert!(heap_tuples(&page[..100]).is_empty());
    }
}
