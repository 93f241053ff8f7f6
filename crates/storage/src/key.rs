//! The key space: every piece of a PostgreSQL data directory as a small,
//! fixed-size, ordered key.
//!
//! A [`Key`] is 18 bytes compared as bytes. The layout is
//! `tag u8 | f1 u32 | f2 u32 | f3 u32 | f4 u8 | f5 u32`, all big-endian so
//! that byte order is numeric order. The tag decides what the fields mean
//! (see [`KeyKind`]); tags not listed there are reserved for future kinds and
//! are still stored and ordered like any other key. Because the relation tag
//! is 0 and its fields are `(spc, db, rel, fork, blkno)`, one relation fork's
//! blocks are contiguous and a database's relations are adjacent.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use postgres_wal::record::{ForkNumber, RelFileNode};

/// Size of an encoded key in bytes.
pub const KEY_SIZE: usize = 18;

/// Block number used for the "relation size" and "SLRU segment size" keys;
/// `InvalidBlockNumber` in PostgreSQL, so never a real block.
const SIZE_BLKNO: u32 = u32::MAX;

const TAG_REL: u8 = 0x00;
const TAG_DB_DIR: u8 = 0x10;
const TAG_REL_DIR: u8 = 0x11;
const TAG_SLRU: u8 = 0x20;
const TAG_SLRU_DIR: u8 = 0x21;
const TAG_TWOPHASE_DIR: u8 = 0x30;
const TAG_TWOPHASE_FILE: u8 = 0x31;
const TAG_RELMAP: u8 = 0x40;
const TAG_CONTROL: u8 = 0x50;
const TAG_CHECKPOINT: u8 = 0x51;

/// An SLRU ("simple LRU") directory whose pages are versioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum SlruKind {
    /// `pg_xact`: commit status, 2 bits per transaction.
    Clog = 0,
    /// `pg_multixact/offsets`.
    MultiXactOffsets = 1,
    /// `pg_multixact/members`.
    MultiXactMembers = 2,
}

impl SlruKind {
    /// The kind for its key byte, or `None`.
    pub fn from_u8(value: u8) -> Option<SlruKind> {
        match value {
            0 => Some(SlruKind::Clog),
            1 => Some(SlruKind::MultiXactOffsets),
            2 => Some(SlruKind::MultiXactMembers),
            _ => None,
        }
    }

    /// Directory of the kind inside a data directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            SlruKind::Clog => "pg_xact",
            SlruKind::MultiXactOffsets => "pg_multixact/offsets",
            SlruKind::MultiXactMembers => "pg_multixact/members",
        }
    }
}

/// A versioned key. Construct with the named constructors; decode with
/// [`Key::kind`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key([u8; KEY_SIZE]);

/// Hashes the 18 bytes as two words and a half-word: the derived hash of a
/// byte array goes through the hasher's byte-string path (length prefix,
/// then a loop), which was a visible part of every put on the write path.
/// Equal keys have equal bytes, so this agrees with `Eq`.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, c0, c1] = self.0;
        state.write_u64(u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]));
        state.write_u64(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]));
        state.write_u16(u16::from_le_bytes([c0, c1]));
    }
}

/// What a key addresses, decoded from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// One block of a relation fork.
    RelBlock {
        rel: RelFileNode,
        fork: ForkNumber,
        blkno: u32,
    },
    /// Number of blocks of a relation fork (value: [`crate::Value::rel_size`]).
    RelSize { rel: RelFileNode, fork: ForkNumber },
    /// The list of databases.
    DbDir,
    /// The list of relations of one database (or of the shared catalogs
    /// when `db_node` is 0).
    RelDir { spc_node: u32, db_node: u32 },
    /// One page of an SLRU segment.
    SlruBlock {
        kind: SlruKind,
        segno: u32,
        blkno: u32,
    },
    /// Number of pages of an SLRU segment.
    SlruSegmentSize { kind: SlruKind, segno: u32 },
    /// The list of segments of an SLRU.
    SlruDir { kind: SlruKind },
    /// The list of prepared transactions' state files.
    TwoPhaseDir,
    /// One `pg_twophase` state file.
    TwoPhaseFile { xid: u32 },
    /// A relmapper file (`pg_filenode.map`) of a database, or the global one.
    RelMapFile { spc_node: u32, db_node: u32 },
    /// The `pg_control` contents.
    ControlFile,
    /// The latest checkpoint state (next xid/oid/multi, oldest xids, ...).
    Checkpoint,
    /// A key with a tag this version does not interpret (reserved space).
    Unknown,
}

impl Key {
    /// The smallest key.
    pub const MIN: Key = Key([0; KEY_SIZE]);
    /// The largest key.
    pub const MAX: Key = Key([0xff; KEY_SIZE]);

    fn from_fields(tag: u8, f1: u32, f2: u32, f3: u32, f4: u8, f5: u32) -> Key {
        let mut b = [0u8; KEY_SIZE];
        b[0] = tag;
        b[1..5].copy_from_slice(&f1.to_be_bytes());
        b[5..9].copy_from_slice(&f2.to_be_bytes());
        b[9..13].copy_from_slice(&f3.to_be_bytes());
        b[13] = f4;
        b[14..18].copy_from_slice(&f5.to_be_bytes());
        Key(b)
    }

    fn field(&self, start: usize) -> u32 {
        let mut v = [0u8; 4];
        v.copy_from_slice(&self.0[start..start + 4]);
        u32::from_be_bytes(v)
    }

    /// A key from its 18 encoded bytes (any bytes are a valid key).
    pub fn from_bytes(bytes: [u8; KEY_SIZE]) -> Key {
        Key(bytes)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_SIZE] {
        &self.0
    }

    /// Block `blkno` of a relation fork.
    pub fn rel_block(rel: RelFileNode, fork: ForkNumber, blkno: u32) -> Key {
        Key::from_fields(
            TAG_REL,
            rel.spc_node,
            rel.db_node,
            rel.rel_node,
            fork as u8,
            blkno,
        )
    }

    /// The size (in blocks) of a relation fork.
    pub fn rel_size(rel: RelFileNode, fork: ForkNumber) -> Key {
        Key::rel_block(rel, fork, SIZE_BLKNO)
    }

    /// All block keys of a relation fork (the size key excluded).
    pub fn rel_block_range(rel: RelFileNode, fork: ForkNumber) -> Range<Key> {
        Key::rel_block(rel, fork, 0)..Key::rel_size(rel, fork)
    }

    /// All keys (blocks and sizes of every fork) of the relations of one
    /// database.
    pub fn db_relations_range(spc_node: u32, db_node: u32) -> Range<Key> {
        let start = Key::from_fields(TAG_REL, spc_node, db_node, 0, 0, 0);
        let end = Key::from_fields(TAG_REL, spc_node, db_node, u32::MAX, u8::MAX, u32::MAX);
        start..end.next()
    }

    /// The list of databases.
    pub fn db_dir() -> Key {
        Key::from_fields(TAG_DB_DIR, 0, 0, 0, 0, 0)
    }

    /// The list of relations of a database.
    pub fn rel_dir(spc_node: u32, db_node: u32) -> Key {
        Key::from_fields(TAG_REL_DIR, spc_node, db_node, 0, 0, 0)
    }

    /// Page `blkno` of SLRU segment `segno`.
    pub fn slru_block(kind: SlruKind, segno: u32, blkno: u32) -> Key {
        Key::from_fields(TAG_SLRU, kind as u32, segno, 0, 0, blkno)
    }

    /// Number of pages of an SLRU segment.
    pub fn slru_segment_size(kind: SlruKind, segno: u32) -> Key {
        Key::slru_block(kind, segno, SIZE_BLKNO)
    }

    /// Every page and size key of one SLRU.
    pub fn slru_range(kind: SlruKind) -> Range<Key> {
        Key::from_fields(TAG_SLRU, kind as u32, 0, 0, 0, 0)
            ..Key::from_fields(TAG_SLRU, kind as u32 + 1, 0, 0, 0, 0)
    }

    /// The list of segments of an SLRU.
    pub fn slru_dir(kind: SlruKind) -> Key {
        Key::from_fields(TAG_SLRU_DIR, kind as u32, 0, 0, 0, 0)
    }

    /// The list of two-phase state files.
    pub fn twophase_dir() -> Key {
        Key::from_fields(TAG_TWOPHASE_DIR, 0, 0, 0, 0, 0)
    }

    /// The two-phase state file of transaction `xid`.
    pub fn twophase_file(xid: u32) -> Key {
        Key::from_fields(TAG_TWOPHASE_FILE, xid, 0, 0, 0, 0)
    }

    /// Every two-phase state file key.
    pub fn twophase_file_range() -> Range<Key> {
        Key::from_fields(TAG_TWOPHASE_FILE, 0, 0, 0, 0, 0)
            ..Key::from_fields(TAG_TWOPHASE_FILE + 1, 0, 0, 0, 0, 0)
    }

    /// The relmapper file of a database (`db_node` 0 and the global
    /// tablespace for the shared one).
    pub fn relmap_file(spc_node: u32, db_node: u32) -> Key {
        Key::from_fields(TAG_RELMAP, spc_node, db_node, 0, 0, 0)
    }

    /// The `pg_control` file.
    pub fn control_file() -> Key {
        Key::from_fields(TAG_CONTROL, 0, 0, 0, 0, 0)
    }

    /// The checkpoint state.
    pub fn checkpoint() -> Key {
        Key::from_fields(TAG_CHECKPOINT, 0, 0, 0, 0, 0)
    }

    /// The key right after this one (saturating at [`Key::MAX`]).
    pub fn next(&self) -> Key {
        let mut b = self.0;
        for byte in b.iter_mut().rev() {
            if *byte == 0xff {
                *byte = 0;
            } else {
                *byte += 1;
                return Key(b);
            }
        }
        Key::MAX
    }

    /// Decodes what the key addresses.
    pub fn kind(&self) -> KeyKind {
        let (f1, f2, f3, f4, f5) = (
            self.field(1),
            self.field(5),
            self.field(9),
            self.0[13],
            self.field(14),
        );
        let zero_tail = f3 == 0 && f4 == 0;
        match self.0[0] {
            TAG_REL => match ForkNumber::from_u8(f4) {
                Some(fork) => {
                    let rel = RelFileNode {
                        spc_node: f1,
                        db_node: f2,
                        rel_node: f3,
                    };
                    if f5 == SIZE_BLKNO {
                        KeyKind::RelSize { rel, fork }
                    } else {
                        KeyKind::RelBlock {
                            rel,
                            fork,
                            blkno: f5,
                        }
                    }
                }
                None => KeyKind::Unknown,
            },
            TAG_DB_DIR if self.0[1..].iter().all(|b| *b == 0) => KeyKind::DbDir,
            TAG_REL_DIR if zero_tail && f5 == 0 => KeyKind::RelDir {
                spc_node: f1,
                db_node: f2,
            },
            TAG_SLRU if zero_tail => match u8::try_from(f1).ok().and_then(SlruKind::from_u8) {
                Some(kind) if f5 == SIZE_BLKNO => KeyKind::SlruSegmentSize { kind, segno: f2 },
                Some(kind) => KeyKind::SlruBlock {
                    kind,
                    segno: f2,
                    blkno: f5,
                },
                None => KeyKind::Unknown,
            },
            TAG_SLRU_DIR if f2 == 0 && zero_tail && f5 == 0 => {
                match u8::try_from(f1).ok().and_then(SlruKind::from_u8) {
                    Some(kind) => KeyKind::SlruDir { kind },
                    None => KeyKind::Unknown,
                }
            }
            TAG_TWOPHASE_DIR if *self == Key::twophase_dir() => KeyKind::TwoPhaseDir,
            TAG_TWOPHASE_FILE if *self == Key::twophase_file(f1) => {
                KeyKind::TwoPhaseFile { xid: f1 }
            }
            TAG_RELMAP if zero_tail && f5 == 0 => KeyKind::RelMapFile {
                spc_node: f1,
                db_node: f2,
            },
            TAG_CONTROL if *self == Key::control_file() => KeyKind::ControlFile,
            TAG_CHECKPOINT if *self == Key::checkpoint() => KeyKind::Checkpoint,
            _ => KeyKind::Unknown,
        }
    }

    /// Whether this key is a relation block (the keys native redo applies to).
    pub fn is_rel_block(&self) -> bool {
        matches!(self.kind(), KeyKind::RelBlock { .. })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Why a string is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key {input:?}: expected {} hexadecimal characters", KEY_SIZE * 2)]
pub struct KeyParseError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for Key {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Key, KeyParseError> {
        let error = || KeyParseError {
            input: s.to_owned(),
        };
        if s.len() != KEY_SIZE * 2 || !s.is_ascii() {
            return Err(error());
        }
        let mut b = [0u8; KEY_SIZE];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| error())?;
        }
        Ok(Key(b))
    }
}

/// A hash map keyed by [`Key`] with [`KeyHashBuilder`]: what the write
/// path's per-record maps use (the open layer's index, hot-key counts).
pub type KeyMap<V> = std::collections::HashMap<Key, V, KeyHashBuilder>;

/// Hashing for the write path's maps. SipHash (the standard map's default)
/// costs more than the rest of a put; foldhash does not, and is seeded
/// randomly per map, so colliding keys cannot be prepared offline (the keys
/// come from the tenant's own WAL in any case). Its quality variant: with
/// the fast one, about one seed in twenty spread a relation's consecutive
/// blocks over only 28–36 k of 65 k bucket indexes (the test below failed
/// that often).
pub type KeyHashBuilder = foldhash::quality::RandomState;

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(n: u32) -> RelFileNode {
        RelFileNode {
            spc_node: 1663,
            db_node: 5,
            rel_node: n,
        }
    }

    #[test]
    fn relation_blocks_are_contiguous_and_ordered() {
        let a = Key::rel_block(rel(10), ForkNumber::Main, 0);
        let b = Key::rel_block(rel(10), ForkNumber::Main, 1);
        let size = Key::rel_size(rel(10), ForkNumber::Main);
        let fsm = Key::rel_block(rel(10), ForkNumber::Fsm, 0);
        let other = Key::rel_block(rel(11), ForkNumber::Main, 0);
        assert!(a < b && b < size && size < fsm && fsm < other);
        let range = Key::rel_block_range(rel(10), ForkNumber::Main);
        assert!(range.contains(&b) && !range.contains(&size));
        assert!(Key::db_relations_range(1663, 5).contains(&other));
        assert!(!Key::db_relations_range(1663, 5).contains(&Key::rel_dir(1663, 5)));
    }

    #[test]
    fn kinds_decode_back() {
        let cases = [
            (
                Key::rel_block(rel(7), ForkNumber::VisibilityMap, 3),
                KeyKind::RelBlock {
                    rel: rel(7),
                    fork: ForkNumber::VisibilityMap,
                    blkno: 3,
                },
            ),
            (
                Key::rel_size(rel(7), ForkNumber::Init),
                KeyKind::RelSize {
                    rel: rel(7),
                    fork: ForkNumber::Init,
                },
            ),
            (Key::db_dir(), KeyKind::DbDir),
            (
                Key::rel_dir(1663, 5),
                KeyKind::RelDir {
                    spc_node: 1663,
                    db_node: 5,
                },
            ),
            (
                Key::slru_block(SlruKind::Clog, 2, 9),
                KeyKind::SlruBlock {
                    kind: SlruKind::Clog,
                    segno: 2,
                    blkno: 9,
                },
            ),
            (
                Key::slru_segment_size(SlruKind::MultiXactMembers, 4),
                KeyKind::SlruSegmentSize {
                    kind: SlruKind::MultiXactMembers,
                    segno: 4,
                },
            ),
            (
                Key::slru_dir(SlruKind::MultiXactOffsets),
                KeyKind::SlruDir {
                    kind: SlruKind::MultiXactOffsets,
                },
            ),
            (Key::twophase_dir(), KeyKind::TwoPhaseDir),
            (Key::twophase_file(77), KeyKind::TwoPhaseFile { xid: 77 }),
            (
                Key::relmap_file(1664, 0),
                KeyKind::RelMapFile {
                    spc_node: 1664,
                    db_node: 0,
                },
            ),
            (Key::control_file(), KeyKind::ControlFile),
            (Key::checkpoint(), KeyKind::Checkpoint),
            (Key::MAX, KeyKind::Unknown),
        ];
        for (key, kind) in cases {
            assert_eq!(key.kind(), kind, "{key}");
            assert_eq!(key.to_string().parse::<Key>().unwrap(), key);
        }
    }

    #[test]
    fn next_is_the_successor() {
        assert_eq!(Key::MIN.next().as_bytes()[KEY_SIZE - 1], 1);
        assert_eq!(Key::MAX.next(), Key::MAX);
        let k = Key::rel_block(rel(1), ForkNumber::Main, u32::MAX - 1);
        assert_eq!(k.next(), Key::rel_size(rel(1), ForkNumber::Main));
        assert!(
            Key::slru_range(SlruKind::Clog).contains(&Key::slru_segment_size(SlruKind::Clog, 9))
        );
    }

    #[test]
    fn key_hashes_spread_over_low_and_high_bits() {
        use std::hash::BuildHasher;
        // Consecutive blocks of one relation differ in a few bytes only:
        // the worst case for a weak hash. A hash table indexes buckets by
        // the low bits and tags them with the top 7.
        let builder = KeyHashBuilder::default();
        let hashes: Vec<u64> = (0..65_536)
            .map(|blkno| builder.hash_one(Key::rel_block(rel(7), ForkNumber::Main, blkno)))
            .collect();
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0xffff).collect();
        let top: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        // Random hashes fill 1 - 1/e ≈ 63% of 2^16 slots.
        assert!(low.len() > 38_000, "{} distinct low 16 bits", low.len());
        assert_eq!(top.len(), 128);
        let mut map: KeyMap<u32> = KeyMap::default();
        map.insert(Key::checkpoint(), 1);
        assert_eq!(map.get(&Key::checkpoint()), Some(&1));
    }
}
