//! How the files of a PostgreSQL 15 data directory map onto storage keys,
//! and the encodings of the "directory" values that list them.
//!
//! This is the contract between import, WAL ingest and base backup: ingest
//! must keep these values current when WAL creates or drops relations,
//! databases, SLRU segments or prepared transactions, and base backup trusts
//! them to know what exists at an LSN (storage never deletes keys).
//!
//! | data directory                         | key                                   | value |
//! |----------------------------------------|---------------------------------------|-------|
//! | `base/<db>/<rel>[_fsm/_vm/_init][.N]`  | `rel_block(1663, db, rel, fork, blk)` | 8 KiB page image |
//! | (size of a fork)                       | `rel_size`                            | u32 LE blocks ([`storage::Value::rel_size`]) |
//! | (relations of a database)              | `rel_dir(spc, db)`                    | [`encode_rel_dir`]: sorted (rel u32 LE, fork u8) |
//! | `global/<rel>...`                      | same, spc 1664, db 0                  | |
//! | `base/<db>` (databases)                | `db_dir`                              | [`encode_db_dir`]: sorted (spc u32 LE, db u32 LE) |
//! | `pg_xact`, `pg_multixact/*` segment N  | `slru_block(kind, N, page)`           | 8 KiB page; `slru_segment_size` = pages; `slru_dir` = [`encode_u32_list`] of segments |
//! | `pg_twophase/<XID>`                    | `twophase_file(xid)`                  | file bytes; `twophase_dir` = [`encode_u32_list`] of xids |
//! | `global/pg_filenode.map`               | `relmap_file(1664, 0)`                | 512-byte file |
//! | `base/<db>/pg_filenode.map`            | `relmap_file(1663, db)`               | 512-byte file |
//! | `global/pg_control`                    | `control_file`                        | 8192-byte file as last written |
//! | (checkpoint state: next xid/oid/multi) | `checkpoint`                          | 88-byte `CheckPoint` body |
//!
//! Tablespaces other than the two built-in ones keep their OID as `spc` and
//! live under `pg_tblspc/<spc>/PG_15_<catversion>/<db>/`. `PG_VERSION` files
//! are not stored: they are the timeline's major version.

use postgres_wal::record::ForkNumber;

/// OID of the `pg_default` tablespace (`base/`).
pub const DEFAULT_TABLESPACE_OID: u32 = 1663;
/// OID of the `pg_global` tablespace (`global/`).
pub const GLOBAL_TABLESPACE_OID: u32 = 1664;
/// Blocks per relation segment file (`RELSEG_SIZE`, 1 GiB of 8 KiB pages).
pub const RELSEG_SIZE_BLOCKS: u32 = 131072;
/// Name of the per-tablespace version directory of PostgreSQL 15.
pub const TABLESPACE_VERSION_DIRECTORY: &str = "PG_15_202209061";
/// Size of a relmapper file (`RELMAPPER_FILESIZE`).
pub const RELMAP_FILE_SIZE: usize = 512;

/// A relation file name parsed: `<relnode>[_fork][.segno]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelFileName {
    pub rel_node: u32,
    pub fork: ForkNumber,
    pub segno: u32,
}

/// The file-name suffix of a fork (`""`, `_fsm`, `_vm`, `_init`).
pub fn fork_suffix(fork: ForkNumber) -> &'static str {
    match fork {
        ForkNumber::Main => "",
        ForkNumber::Fsm => "_fsm",
        ForkNumber::VisibilityMap => "_vm",
        ForkNumber::Init => "_init",
    }
}

/// Parses a relation file name; `None` for anything else in the directory
/// (`PG_VERSION`, `pg_filenode.map`, `pg_internal.init`, temp files
/// `t3_1234`, ...).
pub fn parse_rel_file_name(name: &str) -> Option<RelFileName> {
    let (stem, segno) = match name.split_once('.') {
        Some((stem, seg)) => (stem, parse_decimal(seg)?),
        None => (name, 0),
    };
    let (rel, fork) = match stem.split_once('_') {
        Some((rel, "fsm")) => (rel, ForkNumber::Fsm),
        Some((rel, "vm")) => (rel, ForkNumber::VisibilityMap),
        Some((rel, "init")) => (rel, ForkNumber::Init),
        Some(_) => return None,
        None => (stem, ForkNumber::Main),
    };
    Some(RelFileName {
        rel_node: parse_decimal(rel)?,
        fork,
        segno,
    })
}

/// Formats a relation file name (the inverse of [`parse_rel_file_name`]).
pub fn rel_file_name(rel_node: u32, fork: ForkNumber, segno: u32) -> String {
    let suffix = fork_suffix(fork);
    if segno == 0 {
        format!("{rel_node}{suffix}")
    } else {
        format!("{rel_node}{suffix}.{segno}")
    }
}

/// Strictly decimal digits (no sign, no leading `+`), fitting a u32.
fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The directory (relative to the data directory) of a database's files.
pub fn db_path(spc_node: u32, db_node: u32) -> String {
    match spc_node {
        GLOBAL_TABLESPACE_OID => "global".to_owned(),
        DEFAULT_TABLESPACE_OID => format!("base/{db_node}"),
        spc => format!("pg_tblspc/{spc}/{TABLESPACE_VERSION_DIRECTORY}/{db_node}"),
    }
}

/// Encodes the list of databases (`db_dir` value).
pub fn encode_db_dir(dbs: &[(u32, u32)]) -> Vec<u8> {
    let mut sorted = dbs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
        .iter()
        .flat_map(|(spc, db)| spc.to_le_bytes().into_iter().chain(db.to_le_bytes()))
        .collect()
}

/// Decodes a `db_dir` value; `None` if its length is not a multiple of 8.
pub fn decode_db_dir(bytes: &[u8]) -> Option<Vec<(u32, u32)>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| (le_u32(&c[0..4]), le_u32(&c[4..8])))
            .collect(),
    )
}

/// Encodes the relation forks of one database (`rel_dir` value).
pub fn encode_rel_dir(rels: &[(u32, ForkNumber)]) -> Vec<u8> {
    let mut sorted = rels.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
        .iter()
        .flat_map(|(rel, fork)| rel.to_le_bytes().into_iter().chain([*fork as u8]))
        .collect()
}

/// Decodes a `rel_dir` value; `None` if malformed.
pub fn decode_rel_dir(bytes: &[u8]) -> Option<Vec<(u32, ForkNumber)>> {
    if !bytes.len().is_multiple_of(5) {
        return None;
    }
    bytes
        .chunks_exact(5)
        .map(|c| Some((le_u32(&c[0..4]), ForkNumber::from_u8(c[4])?)))
        .collect()
}

/// Encodes a sorted list of u32 (SLRU segment numbers, two-phase xids).
pub fn encode_u32_list(values: &[u32]) -> Vec<u8> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes [`encode_u32_list`]; `None` if the length is not a multiple of 4.
pub fn decode_u32_list(bytes: &[u8]) -> Option<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.chunks_exact(4).map(le_u32).collect())
}

/// Edits of directory values for WAL ingest: each takes the current value
/// (`None` when the key has none yet) and returns the new one, or `None`
/// when the stored value is malformed. Re-adding or removing an absent
/// entry is not an error (WAL replay is idempotent).
pub mod edit {
    use super::*;

    /// Adds a relation fork to a `rel_dir` value (smgr create).
    pub fn rel_dir_add(value: Option<&[u8]>, rel_node: u32, fork: ForkNumber) -> Option<Vec<u8>> {
        let mut rels = decode_rel_dir(value.unwrap_or_default())?;
        rels.push((rel_node, fork));
        Some(encode_rel_dir(&rels))
    }

    /// Removes every fork of a relation from a `rel_dir` value (drop).
    pub fn rel_dir_remove(value: Option<&[u8]>, rel_node: u32) -> Option<Vec<u8>> {
        let mut rels = decode_rel_dir(value.unwrap_or_default())?;
        rels.retain(|(rel, _)| *rel != rel_node);
        Some(encode_rel_dir(&rels))
    }

    /// Adds a database to the `db_dir` value (database create).
    pub fn db_dir_add(value: Option<&[u8]>, spc_node: u32, db_node: u32) -> Option<Vec<u8>> {
        let mut dbs = decode_db_dir(value.unwrap_or_default())?;
        dbs.push((spc_node, db_node));
        Some(encode_db_dir(&dbs))
    }

    /// Removes a database from the `db_dir` value (database drop).
    pub fn db_dir_remove(value: Option<&[u8]>, spc_node: u32, db_node: u32) -> Option<Vec<u8>> {
        let mut dbs = decode_db_dir(value.unwrap_or_default())?;
        dbs.retain(|d| *d != (spc_node, db_node));
        Some(encode_db_dir(&dbs))
    }

    /// Adds a number to a `slru_dir` / `twophase_dir` value.
    pub fn u32_list_add(value: Option<&[u8]>, item: u32) -> Option<Vec<u8>> {
        let mut items = decode_u32_list(value.unwrap_or_default())?;
        items.push(item);
        Some(encode_u32_list(&items))
    }

    /// Removes a number from a `slru_dir` / `twophase_dir` value.
    pub fn u32_list_remove(value: Option<&[u8]>, item: u32) -> Option<Vec<u8>> {
        let mut items = decode_u32_list(value.unwrap_or_default())?;
        items.retain(|i| *i != item);
        Some(encode_u32_list(&items))
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Converts between our SLRU kinds and storage's. Commit timestamps have no
/// storage key kind yet, so they map to `None`.
pub fn storage_slru(kind: postgres_wal::slru::SlruKind) -> Option<storage::SlruKind> {
    use postgres_wal::slru::SlruKind as K;
    match kind {
        K::Clog => Some(storage::SlruKind::Clog),
        K::MultiXactOffsets => Some(storage::SlruKind::MultiXactOffsets),
        K::MultiXactMembers => Some(storage::SlruKind::MultiXactMembers),
        K::CommitTs => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_file_names() {
        let cases = [
            ("1259", 1259, ForkNumber::Main, 0),
            ("1259_fsm", 1259, ForkNumber::Fsm, 0),
            ("16384_vm", 16384, ForkNumber::VisibilityMap, 0),
            ("16384_init", 16384, ForkNumber::Init, 0),
            ("16384.2", 16384, ForkNumber::Main, 2),
            ("16384_fsm.1", 16384, ForkNumber::Fsm, 1),
        ];
        for (name, rel_node, fork, segno) in cases {
            let parsed = parse_rel_file_name(name).unwrap();
            assert_eq!(
                parsed,
                RelFileName {
                    rel_node,
                    fork,
                    segno
                },
                "{name}"
            );
            assert_eq!(rel_file_name(rel_node, fork, segno), name);
        }
        for bad in [
            "PG_VERSION",
            "pg_filenode.map",
            "pg_internal.init",
            "t3_1234",
            "1259_x",
            "1259.",
            "+12",
            "99999999999",
            "",
        ] {
            assert_eq!(parse_rel_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn directory_values_round_trip_sorted() {
        let dbs = encode_db_dir(&[(1663, 5), (1663, 1), (1663, 5)]);
        assert_eq!(decode_db_dir(&dbs).unwrap(), vec![(1663, 1), (1663, 5)]);
        let rels = encode_rel_dir(&[(20, ForkNumber::Fsm), (10, ForkNumber::Main)]);
        assert_eq!(
            decode_rel_dir(&rels).unwrap(),
            vec![(10, ForkNumber::Main), (20, ForkNumber::Fsm)]
        );
        assert_eq!(decode_rel_dir(&[1, 0, 0, 0, 9]), None);
        assert_eq!(decode_db_dir(&[1, 2, 3]), None);
        assert_eq!(
            decode_u32_list(&encode_u32_list(&[3, 1])).unwrap(),
            vec![1, 3]
        );
        assert_eq!(decode_u32_list(&[1]), None);
    }

    #[test]
    fn edits_are_idempotent_and_reject_malformed_values() {
        let v = edit::rel_dir_add(None, 10, ForkNumber::Main).unwrap();
        let v = edit::rel_dir_add(Some(&v), 10, ForkNumber::Main).unwrap();
        let v = edit::rel_dir_add(Some(&v), 10, ForkNumber::Fsm).unwrap();
        let v = edit::rel_dir_add(Some(&v), 11, ForkNumber::Main).unwrap();
        assert_eq!(decode_rel_dir(&v).unwrap().len(), 3);
        let v = edit::rel_dir_remove(Some(&v), 10).unwrap();
        assert_eq!(decode_rel_dir(&v).unwrap(), vec![(11, ForkNumber::Main)]);
        assert_eq!(edit::rel_dir_add(Some(&[1, 2]), 1, ForkNumber::Main), None);
        let d = edit::db_dir_add(None, 1663, 5).unwrap();
        assert_eq!(
            edit::db_dir_remove(Some(&d), 1663, 5).unwrap(),
            Vec::<u8>::new()
        );
        let l = edit::u32_list_add(Some(&encode_u32_list(&[3])), 1).unwrap();
        assert_eq!(decode_u32_list(&l).unwrap(), vec![1, 3]);
        assert_eq!(
            edit::u32_list_remove(Some(&l), 3).unwrap(),
            encode_u32_list(&[1])
        );
    }

    #[test]
    fn database_paths() {
        assert_eq!(db_path(GLOBAL_TABLESPACE_OID, 0), "global");
        assert_eq!(db_path(DEFAULT_TABLESPACE_OID, 5), "base/5");
        assert_eq!(db_path(16400, 5), "pg_tblspc/16400/PG_15_202209061/5");
    }
}
